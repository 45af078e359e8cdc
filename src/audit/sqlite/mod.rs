//! The SQLite backend: the embedded default, one file that the `sqlite3` shell reads.
//!
//! One connection writes (the background writer is the only writer, so it never waits on
//! itself); a small read-only pool answers queries, which WAL lets run beside the writes; a
//! third connection checkpoints the WAL off the writer's path. Every call ends in a
//! [`StoreFault`] classified here, by SQLite's result codes and by type, never by message text.
//!
//! - [`connection`]: the connections and their settings, migrations.
//! - [`file_identity`]: noticing the database file deleted or replaced under the service.
//! - [`insert`]: the batched INSERTs and the write lock.
//! - [`query`]: reads bounded by a time limit (the queries are shared:
//!   [`crate::audit::sql::reads`]).

mod connection;
mod file_identity;
mod insert;
mod query;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use slog::{Logger, warn};
use sqlx::Sqlite;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool};

use self::connection::{OwnedConn, Pools, connect};
use self::file_identity::{FileId, FileReplaced, sidecar};
use crate::audit::backend::{Backend, Capabilities};
use crate::audit::columns;
use crate::audit::fault::{FaultKind, StoreFault};
use crate::audit::modes::{RowsDone, StoreOptions};
use crate::audit::record::{AuditRecord, Feedback, FeedbackStored, Written};
use crate::audit::sql::writes;
use crate::throttle::Throttle;

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The connections; replaced as a whole when the database file is deleted or replaced
    /// under a running service (see [`SqliteStore::write_batch`]).
    pools: Arc<RwLock<Pools>>,
    /// What the connections open, for a reopen.
    connect: Arc<SqliteConnectOptions>,
    opts: StoreOptions,
    /// The database file (`None` for in-memory databases).
    path: Option<PathBuf>,
    /// Held while the file's identity is checked and the database reopened, so that the
    /// writer and a feedback write never reopen it twice.
    reopening: Arc<tokio::sync::Mutex<()>>,
    /// The select list of a whole row: the columns a store opened read-only before its last
    /// migrations lacks (an old file being copied) are read as null.
    select: Arc<str>,
}

/// The write-ahead log passed its share of the configured size cap.
#[derive(Debug, thiserror::Error)]
#[error("the audit write-ahead log holds {wal} bytes, more than a quarter of the {max}-byte limit")]
struct OverCap {
    wal: u64,
    max: u64,
}

/// The class of a failure, from SQLite's result code where there is one.
fn fault(e: anyhow::Error) -> StoreFault {
    let code = e
        .chain()
        .find_map(|c| c.downcast_ref::<sqlx::Error>())
        .and_then(insert::primary_code);
    let kind = if let Some(code) = code {
        match code {
            5 => FaultKind::LockedByOther,
            6 => FaultKind::Locked,
            8 => FaultKind::ReadOnly,
            10 => FaultKind::Io,
            13 => FaultKind::Full,
            9 => FaultKind::ReadTooLong,
            14 => FaultKind::CannotOpen,
            _ => FaultKind::Refused,
        }
    } else if e.chain().any(|c| c.is::<OverCap>()) {
        FaultKind::Full
    } else if e.downcast_ref::<FileReplaced>().is_some()
        || e.chain().any(|c| c.is::<FileReplaced>())
    {
        FaultKind::Replaced
    } else {
        FaultKind::Other
    };
    StoreFault::new(kind, &e)
}

/// How often committed writes are checkpointed into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// WAL frames (pages) after which a checkpoint also makes the WAL start over (48 MiB at 4 KiB
/// pages; see [`SqliteStore::copy_rest_for_restart`]): each start over holds commits back for
/// a few milliseconds, so it is rare, and well below the writer's own fallback (see
/// `WRITER_AUTOCHECKPOINT_PAGES` in [`connection`]).
const RESTART_AFTER_FRAMES: i64 = 12_288;

/// How often rollup deltas are merged (see `migrations/sqlite/0006_rollup.sql`).
const MERGE_EVERY: Duration = Duration::from_secs(1);

/// Aborts a task when dropped: the merge loop stops with the checkpoint task that owns it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Checkpoints in a row that copied nothing while frames waited (2 s) before the WAL is
/// reported as starved.
const STARVED_ROUNDS: u32 = 20;

impl SqliteStore {
    /// Opens (creating and migrating, unless read-only) the database `connect` names.
    pub async fn open(
        connect: SqliteConnectOptions,
        opts: &StoreOptions,
    ) -> anyhow::Result<SqliteStore> {
        let pools = self::connect(&connect, opts).await?;
        let path = {
            let p = connect.get_filename();
            (!p.as_os_str().is_empty() && p != Path::new(":memory:")).then(|| p.to_path_buf())
        };
        let present: Vec<String> =
            sqlx::query_scalar("select name from pragma_table_info('prediction')")
                .fetch_all(&pools.read)
                .await
                .context("reading the audit table's columns")?;
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
                .map_err(|f| anyhow::anyhow!("building the audit rollups: {}", f.detail()))?;
        }
        Ok(())
    }

    /// Merges rollup deltas into the rollups (see `migrations/sqlite/0006_rollup.sql`); the
    /// number merged.
    pub async fn merge_rollups(&self) -> Result<usize, StoreFault> {
        let result: anyhow::Result<usize> = async {
            let (conn, _) = self.write()?;
            let Some(deltas) = insert::fold_oldest_deltas(&self.read()).await? else {
                return Ok(0);
            };
            let mut guard = conn.lock().await?;
            let merged = insert::merge_folded(guard.conn(), self.opts.busy_timeout, deltas).await;
            guard.finish(merged).await
        }
        .await;
        result.map_err(fault)
    }

    pub fn file(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    fn read(&self) -> SqlitePool {
        self.pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .read
            .clone()
    }

    fn write(&self) -> anyhow::Result<(Arc<OwnedConn>, Option<FileId>)> {
        let pools = self.pools.read().unwrap_or_else(|p| p.into_inner());
        let write = pools
            .write
            .clone()
            .context("the audit database was opened read-only")?;
        Ok((write, pools.file))
    }

    /// Makes sure the connections write to the file now at the database path. If it was deleted
    /// or replaced, the old connections (which would keep writing into the unlinked file, lost
    /// at exit) are closed and the database is opened afresh, created and migrated as at
    /// start-up.
    async fn ensure_current_file(&self) -> anyhow::Result<()> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        let _reopening = self.reopening.lock().await;
        let (write, checkpoint, read, opened, wal, shm) = {
            let p = self.pools.read().unwrap_or_else(|p| p.into_inner());
            (
                p.write.clone(),
                p.checkpoint.clone(),
                p.read.clone(),
                p.file,
                p.wal,
                p.shm,
            )
        };
        // A file whose identity could not be read at open cannot be tracked.
        let Some(opened) = opened else {
            return Ok(());
        };
        if !FileId::changed(path, opened) {
            return Ok(());
        }
        if let Some(c) = checkpoint {
            c.close().await;
        }
        if let Some(w) = write {
            w.close().await;
        }
        // SQLite leaves the write-ahead log and shared-memory files of a database that was
        // moved or deleted. Opened beside whatever file is now at the path, that log would be
        // replayed into it and corrupt it. Ours are removed; files that came with the new
        // database are kept.
        for (suffix, ours) in [("-wal", wal), ("-shm", shm)] {
            let f = sidecar(path, suffix);
            if ours.is_some() && FileId::of(&f) == ours {
                let _ = std::fs::remove_file(&f);
            }
        }
        let replaced = |when: String| FileReplaced {
            path: path.display().to_string(),
            when,
        };
        // The cause stays in the chain, so a reopen that fails (read-only folder, locked)
        // is reported as that fault, not as the replacement.
        let fresh = connect(&self.connect, &self.opts)
            .await
            .context(replaced("while serving, and reopening it failed".into()))?;
        *self.pools.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        // Queries went on reading the old file until the new one was in place.
        read.close().await;
        Err(replaced(
            "while serving; a new one was created there and the batch will be written to it".into(),
        )
        .into())
    }

    /// Fails if the database file was replaced since `opened` was read: rows just committed
    /// went into a file that is no longer on record.
    fn check_unchanged(&self, opened: Option<FileId>) -> anyhow::Result<()> {
        if let (Some(path), Some(opened)) = (&self.path, opened)
            && FileId::changed(path, opened)
        {
            return Err(FileReplaced {
                path: path.display().to_string(),
                when: "during a commit".into(),
            }
            .into());
        }
        Ok(())
    }

    /// Checkpoints at a steady pace so that commits never have to (see
    /// `WRITER_AUTOCHECKPOINT_PAGES` in [`connection`]), until the task is aborted. `None`
    /// for a read-only store.
    pub fn spawn_checkpoints(&self, log: Logger) -> Option<tokio::task::JoinHandle<()>> {
        self.write().ok()?;
        let store = self.clone();
        Some(tokio::spawn(async move {
            let mut failing = false;
            // Checkpoints in a row that could not copy anything while frames were waiting.
            let mut stuck_rounds = 0u32;
            let mut last_copied = -1i64;
            let starved_log = Throttle::new(Duration::from_secs(60));
            // Rollup deltas are merged beside the checkpoints, never delaying them.
            let merges = {
                let (store, log) = (store.clone(), log.clone());
                async move {
                    let mut failing = false;
                    loop {
                        tokio::time::sleep(MERGE_EVERY).await;
                        match store.merge_rollups().await {
                            Ok(_) => failing = false,
                            Err(e) if !failing => {
                                failing = true;
                                warn!(log, "merging audit rollups failed; will retry"; "error" => e.detail());
                            }
                            Err(_) => {}
                        }
                    }
                }
            };
            let merges = tokio::spawn(merges);
            let _stop_merges_with_this_task = AbortOnDrop(merges);
            loop {
                tokio::time::sleep(CHECKPOINT_EVERY).await;
                match store.checkpoint().await {
                    Ok((waiting, copied)) => {
                        failing = false;
                        // A reader that holds an old snapshot (a long `sqlite3` session) stops
                        // checkpoints at its mark, and the WAL grows without bound: say so.
                        if copied < waiting && copied == last_copied {
                            stuck_rounds += 1;
                        } else {
                            stuck_rounds = 0;
                        }
                        last_copied = copied;
                        if stuck_rounds >= STARVED_ROUNDS
                            && let Some(held_back) = starved_log.admit()
                        {
                            warn!(log, "audit WAL is not being checkpointed: a long read transaction on the database (for example an open sqlite3 session) holds an old snapshot; use inferlog audit snapshot for long analyses";
                                "wal_bytes" => store.wal_file_bytes(),
                                "frames_waiting" => waiting - copied.max(0),
                                "warnings_not_logged" => held_back);
                        }
                    }
                    // Once per failure streak: the writer reports the store's state itself.
                    Err(e) if !failing => {
                        failing = true;
                        warn!(log, "audit checkpoint failed; will retry"; "error" => format!("{e:#}"));
                    }
                    Err(_) => {}
                }
            }
        }))
    }

    /// With a size cap: fails once the write-ahead log file is larger than its share of the
    /// cap ([`connection::wal_share`]). The database's page limit keeps it within the rest, so
    /// the store's files stay within the cap (give or take one batch). A WAL past its share is
    /// restarted and truncated by the next checkpoint once no reader holds an old snapshot
    /// (see [`SqliteStore::checkpoint`]).
    fn check_size(&self) -> anyhow::Result<()> {
        let Some(max) = self.opts.max_bytes else {
            return Ok(());
        };
        let wal = self.wal_file_bytes();
        if wal > connection::wal_share(max) {
            return Err(OverCap { wal, max }.into());
        }
        Ok(())
    }

    /// Size of the write-ahead log file, in bytes (0 when there is none).
    fn wal_file_bytes(&self) -> u64 {
        self.path
            .as_ref()
            .and_then(|p| std::fs::metadata(sidecar(p, "-wal")).ok())
            .map_or(0, |m| m.len())
    }

    /// Copies committed WAL frames into the database file without waiting for the writer or
    /// readers (a passive checkpoint); returns the frames in the WAL and those copied. With a
    /// size cap and a WAL file past its share (writes are refused meanwhile) whose frames are
    /// all copied, it then starts the WAL over and truncates it, waiting for the connection's
    /// busy timeout at most: a passive checkpoint never shrinks the file, and refused writes
    /// would never start it over.
    async fn checkpoint(&self) -> anyhow::Result<(i64, i64)> {
        let conn = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoint
            .clone();
        let Some(conn) = conn else {
            return Ok((0, 0));
        };
        let mut guard = conn.lock().await?;
        let result: anyhow::Result<(i64, i64)> = async {
            let (_busy, waiting, copied) =
                sqlx::query_as::<_, (i64, i64, i64)>("pragma wal_checkpoint(passive)")
                    .fetch_one(guard.conn())
                    .await
                    .context("checkpointing the audit WAL")?;
            let over = self
                .opts
                .max_bytes
                .is_some_and(|max| self.wal_file_bytes() > connection::wal_share(max));
            if over && copied == waiting {
                sqlx::query("pragma wal_checkpoint(truncate)")
                    .execute(guard.conn())
                    .await
                    .context("truncating the audit WAL")?;
            } else if waiting > RESTART_AFTER_FRAMES && copied == waiting {
                self.copy_rest_for_restart(guard.conn()).await?;
            }
            Ok((waiting, copied))
        }
        .await;
        guard.finish(result).await
    }

    /// Lets the WAL start over at the writer's next commit, instead of growing until that
    /// commit must checkpoint it itself (`wal_autocheckpoint`: SQLite copies every frame not
    /// yet copied and syncs both files inside that commit: 10-20 ms, each time the WAL reaches
    /// its size).
    /// A commit starts the WAL over only if every frame was copied when it began, which a
    /// checkpoint running beside commits never achieves: it copies what was there when it
    /// started while commits add more. So, right after a passive checkpoint, the writer's
    /// connection is held for a second one that copies only the frames committed meanwhile
    /// (milliseconds' worth), and the next commit finds the WAL fully copied.
    async fn copy_rest_for_restart(&self, conn: &mut sqlx::SqliteConnection) -> anyhow::Result<()> {
        // Once more without the lock, so that the one with it has only a few frames to copy.
        sqlx::query("pragma wal_checkpoint(passive)")
            .execute(&mut *conn)
            .await
            .context("checkpointing the audit WAL")?;
        let (writer, _) = self.write()?;
        let no_commit_meanwhile = writer.lock().await?;
        let copied = sqlx::query("pragma wal_checkpoint(passive)")
            .execute(conn)
            .await
            .map(|_| ())
            .context("checkpointing the audit WAL");
        // The writer's connection was not used: it is kept as it was.
        no_commit_meanwhile.finish(Ok(())).await?;
        copied
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
    async fn write_batch(&self, records: &[&AuditRecord]) -> Result<Written, StoreFault> {
        let result: anyhow::Result<Written> = async {
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
        .await;
        result.map_err(fault)
    }

    /// Writes one row in a transaction that is rolled back: it needs the write lock, a
    /// writable file with room for a row, and the file at the path (see
    /// [`SqliteStore::ensure_current_file`]), and leaves nothing behind.
    async fn probe(&self) -> Result<(), StoreFault> {
        let result: anyhow::Result<()> = async {
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
        .await;
        result.map_err(fault)
    }

    /// The feedback and its rollup counts in one transaction, under the write lock.
    async fn store_feedback(
        &self,
        fb: &Feedback,
        copy: bool,
    ) -> Result<FeedbackStored, StoreFault> {
        let result = async {
            self.ensure_current_file().await?;
            let (conn, opened) = self.write()?;
            let mut guard = conn.lock().await?;
            let written = in_transaction(guard.conn(), self.opts.busy_timeout, fb, copy).await;
            let stored = guard.finish(written).await?;
            self.check_unchanged(opened)?;
            anyhow::Ok(stored)
        }
        .await;
        result.map_err(fault)
    }

    /// Recomputes the rollups from the rows, in one transaction, 10,000 rows at a time.
    async fn rebuild_rollups(&self, done: RowsDone<'_>) -> Result<(), StoreFault> {
        let result: anyhow::Result<()> = async {
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
        .await;
        result.map_err(fault)
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
