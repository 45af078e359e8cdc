//! The SQLite backend: the embedded default, one file that the `sqlite3` shell reads.
//!
//! One connection writes (the background writer is the only writer, so it never waits on
//! itself); a small read-only pool answers queries, which WAL lets run beside the writes; a
//! third connection checkpoints the WAL off the writer's path. Every call ends in a
//! [`StoreFault`] classified here, by SQLite's result codes and by type, never by message text.
//!
//! - [`connection`]: the connections and their settings, migrations.
//! - [`file_identity`]: noticing the database file deleted or replaced under the service.
//! - [`store`]: the store's state (connections, file identity, size cap) and fault classes.
//! - [`checkpoint`]: WAL checkpoints and rollup merges in the background.
//! - [`insert`]: the batched INSERTs and the write lock.
//! - [`query`]: reads bounded by a time limit (the queries are shared:
//!   [`crate::audit::sql::reads`]).

mod checkpoint;
mod connection;
mod file_identity;
mod insert;
mod query;
mod store;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use slog::Logger;
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::SqliteConnectOptions;

pub use self::store::SqliteStore;
use self::store::fault;
use crate::audit::backend::{Backend, Capabilities};
use crate::audit::columns;
use crate::audit::fault::StoreFault;
use crate::audit::modes::{RowsDone, StoreOptions};
use crate::audit::record::{AuditRecord, Feedback, FeedbackStored, Written};
use crate::audit::sql::writes;

/// The columns of `table` (a file opened read-only may be from before the last migrations).
async fn columns_of(pool: &sqlx::SqlitePool, table: &str) -> anyhow::Result<Vec<String>> {
    sqlx::query_scalar("select name from pragma_table_info(?)")
        .bind(table)
        .fetch_all(pool)
        .await
        .with_context(|| format!("reading the columns of the {table} table"))
}

impl SqliteStore {
    /// Opens (creating and migrating, unless read-only) the database `connect` names.
    pub async fn open(
        connect: SqliteConnectOptions,
        opts: &StoreOptions,
    ) -> anyhow::Result<SqliteStore> {
        let pools = connection::connect(&connect, opts).await?;
        let path = {
            let p = connect.get_filename();
            (!p.as_os_str().is_empty() && p != Path::new(":memory:")).then(|| p.to_path_buf())
        };
        let present = columns_of(&pools.read, "prediction").await?;
        let feedback_value = if columns_of(&pools.read, "feedback")
            .await?
            .iter()
            .any(|c| c == "value")
        {
            "value"
        } else {
            "null"
        };
        let select = columns::ALL
            .iter()
            .map(|c| {
                if present.iter().any(|p| p == c.name()) {
                    c.name().to_string()
                } else {
                    format!("null as {}", c.name())
                }
            })
            .collect::<Vec<_>>()
            .join(", ")
            .into();
        let store = SqliteStore {
            pools: Arc::new(RwLock::new(pools)),
            connect: Arc::new(connect),
            opts: opts.clone(),
            path,
            reopening: Arc::new(tokio::sync::Mutex::new(())),
            select,
            feedback_value,
        };
        if !opts.read_only {
            store.build_missing_rollups().await?;
        }
        Ok(store)
    }

    /// A store with rows but no rollups (rows written before rollups existed, migration 6)
    /// gets them built once.
    async fn build_missing_rollups(&self) -> anyhow::Result<()> {
        let missing: bool = sqlx::query_scalar(
            "select exists (select 1 from prediction) and not exists (select 1 from rollup) \
             and not exists (select 1 from rollup_delta)",
        )
        .fetch_one(&self.read())
        .await
        .context("checking the audit rollups")?;
        if missing {
            self.rebuild_rollups(&|_| {})
                .await
                .context("building the audit rollups")?;
        }
        Ok(())
    }
}

impl Backend for SqliteStore {
    type Db = Sqlite;
    type Read = PoolConnection<Sqlite>;
    type BoundedRead = query::BoundedRead;

    async fn reader(&self) -> anyhow::Result<PoolConnection<Sqlite>> {
        self.read().acquire().await.context("opening a read")
    }

    /// See [`query::BoundedRead`].
    async fn bounded_reader(&self) -> anyhow::Result<query::BoundedRead> {
        query::BoundedRead::acquire(&self.read(), self.opts.read_timeout).await
    }

    /// The columns a store opened read-only before its last migrations lacks (an old file
    /// being copied) are read as null.
    fn select_list(&self) -> &str {
        &self.select
    }

    fn feedback_value(&self) -> &str {
        self.feedback_value
    }

    fn fault(e: anyhow::Error) -> StoreFault {
        fault(e)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            file: self.file().map(Path::to_path_buf),
            on_server: false,
            writers: 1,
        }
    }

    fn spawn_maintenance(&self, log: Logger) -> Option<tokio::task::JoinHandle<()>> {
        self.spawn_checkpoints(log)
    }

    /// Writes the batch in one transaction and returns the moment the rows were written. The
    /// database file is checked before and after: rows committed into a file that was deleted
    /// meanwhile are not on record, so that is reported as a failure (durable requests get
    /// their 503, owed rows are retried into the new file).
    async fn write_batch(&self, records: &[&AuditRecord]) -> anyhow::Result<Written> {
        self.ensure_current_file().await?;
        self.check_size()?;
        let (conn, opened) = self.write()?;
        let mut guard = conn.lock().await?;
        let written = insert::write_rows(
            guard.conn(),
            records,
            self.opts.busy_timeout,
            &self.opts.baselines,
        )
        .await;
        let stored_at = guard.finish(written).await?;
        self.check_unchanged(opened)?;
        Ok(stored_at)
    }

    /// Writes one row in a transaction that is rolled back: it needs the write lock, a
    /// writable file with room for a row, and the file at the path (see
    /// [`SqliteStore::ensure_current_file`]), and leaves nothing behind.
    async fn probe(&self) -> anyhow::Result<()> {
        self.ensure_current_file().await?;
        self.check_size()?;
        let (conn, _) = self.write()?;
        // Its body is big enough to need pages of its own (16 at SQLite's default 4 KiB),
        // so a full database fails the probe even when its last page has room for a small
        // row.
        let probe = AuditRecord::probe(Some(" ".repeat(64 * 1024)));
        let mut guard = conn.lock().await?;
        let result = insert::probe_rows(guard.conn(), &probe, self.opts.busy_timeout).await;
        // The probe runs only while the store is failing: it costs little to hand the
        // writer a fresh connection afterwards, whatever state the failures left this one
        // in.
        guard.discard().await;
        result
    }

    /// The feedback and its rollup counts in one transaction, under the write lock.
    async fn store_feedback(&self, fb: &Feedback, copy: bool) -> anyhow::Result<FeedbackStored> {
        self.ensure_current_file().await?;
        let (conn, opened) = self.write()?;
        let mut guard = conn.lock().await?;
        let written = in_transaction(guard.conn(), self.opts.busy_timeout, fb, copy).await;
        let stored = guard.finish(written).await?;
        self.check_unchanged(opened)?;
        Ok(stored)
    }

    /// Recomputes the rollups from the rows, in one transaction, 10,000 rows at a time.
    async fn rebuild_rollups(&self, done: RowsDone<'_>) -> anyhow::Result<()> {
        let (conn, _) = self.write()?;
        let mut guard = conn.lock().await?;
        let rebuilt = insert::rebuild_rollups(
            guard.conn(),
            self.opts.busy_timeout,
            &self.opts.baselines,
            done,
        )
        .await;
        guard.finish(rebuilt).await
    }

    /// One prune batch in an immediate transaction on the writing connection: the server's
    /// writer (in this or another process) waits at most one short batch.
    async fn prune_batch(
        &self,
        before: &chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> anyhow::Result<writes::Pruned> {
        self.ensure_current_file().await?;
        let (conn, _) = self.write()?;
        let mut guard = conn.lock().await?;
        let c = guard.conn();
        insert::begin_immediate(c, self.opts.busy_timeout).await?;
        let pruned = match writes::prune_batch::<Sqlite>(c, before, limit).await {
            Ok(p) => sqlx::query("commit")
                .execute(&mut *c)
                .await
                .context("committing a prune")
                .map(|_| p),
            Err(e) => {
                let _ = sqlx::query("rollback").execute(&mut *c).await;
                Err(e)
            }
        };
        guard.finish(pruned).await
    }

    /// `VACUUM INTO file`: one read transaction, so the copy is consistent however long it
    /// takes, and writers are not held up (unlike the shell's `.backup`, which restarts
    /// whenever the database changes under it).
    async fn snapshot(&self, file: &Path) -> Result<(), StoreFault> {
        let target = file.to_string_lossy().into_owned();
        sqlx::query("vacuum into ?")
            .bind(target)
            .execute(&self.read())
            .await
            .map(|_| ())
            .with_context(|| format!("writing a snapshot to {}", file.display()))
            .map_err(fault)
    }

    fn wal_bytes(&self) -> u64 {
        self.wal_file_bytes()
    }

    async fn close(&self) {
        let (write, read, checkpoint) = {
            let pools = self.pools.read().unwrap_or_else(|p| p.into_inner());
            (
                pools.write.clone(),
                pools.read.clone(),
                pools.checkpoint.clone(),
            )
        };
        if let Some(c) = checkpoint {
            c.close().await;
        }
        read.close().await;
        // Last, so that closing it checkpoints the whole WAL into the file.
        if let Some(w) = write {
            w.close().await;
        }
    }
}

/// [`writes::store_feedback`] in a transaction that holds the write lock: committed, or
/// rolled back on any failure.
async fn in_transaction(
    conn: &mut sqlx::SqliteConnection,
    busy_timeout: Duration,
    fb: &Feedback,
    copy: bool,
) -> anyhow::Result<FeedbackStored> {
    insert::begin_immediate(conn, busy_timeout).await?;
    match writes::store_feedback::<Sqlite>(conn, fb, copy).await {
        Ok(stored) => {
            sqlx::query("commit")
                .execute(&mut *conn)
                .await
                .context("committing feedback")?;
            Ok(stored)
        }
        Err(e) => {
            let _ = sqlx::query("rollback").execute(&mut *conn).await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    //! The rollup merge on a real SQLite file.

    use super::*;
    use crate::audit::record::Latency;
    use crate::audit::rollup::{self, ReadPlan, RollupRange};

    fn row(request_id: &str) -> AuditRecord {
        AuditRecord {
            request_id: request_id.into(),
            client_request_id: None,
            item: 0,
            received_at: chrono::Utc::now(),
            model: Some("iris".into()),
            model_version: Some("v1".into()),
            features: None,
            prediction: Some(0),
            label: Some("setosa".into()),
            status: 200,
            error_code: None,
            latency: Latency::Answered(7),
            client_addr: None,
            raw_body: None,
            outliers: None,
            writer: None,
            probabilities: None,
            value: None,
        }
    }

    /// Rows counted in the rollups (merged or not).
    async fn rolled_up_rows(store: &SqliteStore) -> i64 {
        let range = RollupRange::default();
        let rows = store
            .rollup_rows(&range, &ReadPlan::of(&range, false))
            .await
            .unwrap();
        rollup::collect(&rows, &range, rollup::HOUR << 40)
            .unwrap()
            .iter()
            .filter(|r| r.kind == rollup::kind::ROWS)
            .map(|r| r.count)
            .sum()
    }

    /// Deltas folded without the lock are merged only if they are still the ones folded: a
    /// rebuild between the fold and the merge (which counts the rows afresh and drops every
    /// delta) makes the merge write nothing, so no row is counted twice.
    #[tokio::test]
    async fn a_merge_folded_before_a_rebuild_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteConnectOptions::new().filename(dir.path().join("audit.db"));
        let store = SqliteStore::open(file, &StoreOptions::writable())
            .await
            .unwrap();
        let rows: Vec<AuditRecord> = (0..3).map(|i| row(&format!("r{i}"))).collect();
        for r in &rows {
            store.write_batch(&[r]).await.unwrap();
        }
        assert_eq!(rolled_up_rows(&store).await, 3);

        let folded = insert::fold_oldest_deltas(&store.read())
            .await
            .unwrap()
            .expect("three deltas");
        store.rebuild_rollups(&|_| {}).await.unwrap();
        let (conn, _) = store.write().unwrap();
        let mut guard = conn.lock().await.unwrap();
        let merged = insert::merge_folded(guard.conn(), Duration::from_secs(1), folded).await;
        assert_eq!(guard.finish(merged).await.unwrap(), 0);
        assert_eq!(rolled_up_rows(&store).await, 3, "counted once");

        // Without a rebuild between them, the folded deltas are merged and removed.
        store.write_batch(&[&row("r3")]).await.unwrap();
        assert_eq!(store.merge_rollups().await.unwrap(), 1);
        assert_eq!(store.merge_rollups().await.unwrap(), 0);
        assert_eq!(rolled_up_rows(&store).await, 4);
        store.close().await;
    }
}
