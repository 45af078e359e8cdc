//! The SQLite backend: connection set-up, migrations, the batched insert and the queries.
//!
//! One connection writes (the background writer is the only writer, so it never waits on
//! itself); a small read-only pool answers queries, which WAL lets run beside the writes.
//! All SQL takes values as bound parameters; only fixed column names are ever spliced in.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::{Arc, RwLock};

use anyhow::Context;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};
use sqlx::{Connection, QueryBuilder, Row, Sqlite};

use super::query::{AuditFilter, Count, Latency, Order, StatusFilter, Summary};
use super::{AuditRecord, Feedback, StoreOptions, StoredRecord, SyncLevel, format_time};

#[derive(Debug, Clone)]
pub struct SqliteStore {
    /// The connections; replaced as a whole when the database file is deleted or replaced
    /// under a running service (see [`SqliteStore::write_batch`]).
    pools: Arc<RwLock<Pools>>,
    url: String,
    opts: StoreOptions,
    /// The database file (`None` for in-memory databases).
    path: Option<PathBuf>,
    /// Held while the file's identity is checked and the database reopened, so that the
    /// writer and a feedback write never reopen it twice.
    reopening: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct Pools {
    /// The single writing connection (absent when opened read-only).
    write: Option<Arc<OwnedConn>>,
    /// Read-only connections for queries.
    read: SqlitePool,
    /// The connection that checkpoints the WAL into the database file, off the writer's path
    /// (absent when opened read-only).
    checkpoint: Option<Arc<OwnedConn>>,
    /// Identity of the file the connections have open (`None` for in-memory databases).
    file: Option<FileId>,
    /// Identity of its write-ahead log and shared-memory files, to tell them from another
    /// database's (see [`SqliteStore::ensure_current_file`]).
    wal: Option<FileId>,
    shm: Option<FileId>,
}

/// Device and inode of a file: what tells the file we opened from one now at its path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

/// `audit.db` + `-wal`: the files SQLite keeps beside a database.
fn sidecar(db: &Path, suffix: &str) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

impl FileId {
    /// Whether the file at `path` is no longer `opened`. A path that cannot be read for another
    /// reason than being gone counts as unchanged: failing a commit that may have worked
    /// would write its owed rows twice.
    fn changed(path: &Path, opened: FileId) -> bool {
        use std::os::unix::fs::MetadataExt;
        match std::fs::metadata(path) {
            Ok(m) => (m.dev(), m.ino()) != (opened.dev, opened.ino),
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        }
    }

    fn of(path: &Path) -> Option<FileId> {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).ok().map(|m| FileId {
            dev: m.dev(),
            ino: m.ino(),
        })
    }
}

const COLUMNS: &str = "id, request_id, item, received_at, model, model_version, features, \
                       prediction, label, status, error_code, latency_us, client_addr, raw_body, \
                       outliers";

/// Rows per INSERT statement. A batch of up to [`EXACT_ROWS`] rows is one statement of its
/// exact size (one implicit transaction, one round trip to SQLite's thread). A larger batch is
/// written in one transaction as chunks of 2048, 1024, 512, 256, 128 or 64 rows and a final
/// exact chunk. Statements stay prepared per size, so the cache holds at most 64 small sizes
/// and 5 large ones: caching every size up to 512 rows took tens of MB once async batches
/// varied widely, and 64-row chunks alone cost a third of the batch throughput. (2048 rows of
/// 14 values stay under SQLite's limit of 32766 bound values per statement.)
const EXACT_ROWS: usize = 64;
const MAX_ROWS_PER_STATEMENT: usize = 2048;

/// Prepared statements the writing connection keeps (see [`EXACT_ROWS`]), plus the feedback
/// statements.
const WRITE_STATEMENT_CACHE: usize = EXACT_ROWS + 5 + 8;

/// WAL pages after which a commit checkpoints by itself (64 MiB at 4 KiB pages), if the
/// checkpointing connection has not kept the WAL shorter.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 16_384;

/// The WAL file is truncated back to this size after a checkpoint let it start over.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 << 20;

/// Rows of the next statement for `remaining` rows.
fn chunk_len(remaining: usize) -> usize {
    if remaining <= EXACT_ROWS {
        return remaining;
    }
    let mut n = MAX_ROWS_PER_STATEMENT;
    while n > remaining {
        n /= 2;
    }
    n
}

impl SqliteStore {
    pub async fn open(url: &str, opts: &StoreOptions) -> anyhow::Result<SqliteStore> {
        let pools = connect(url, opts).await?;
        let path = SqliteConnectOptions::from_str(url).ok().and_then(|o| {
            let p = o.get_filename();
            (!p.as_os_str().is_empty() && p != Path::new(":memory:")).then(|| p.to_path_buf())
        });
        Ok(SqliteStore {
            pools: Arc::new(RwLock::new(pools)),
            url: url.to_string(),
            opts: opts.clone(),
            path,
            reopening: Arc::new(tokio::sync::Mutex::new(())),
        })
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
        let fresh = connect(&self.url, &self.opts).await.with_context(|| {
            format!(
                "the audit database {} was deleted or replaced while serving, and reopening it failed",
                path.display()
            )
        })?;
        *self.pools.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        // Queries went on reading the old file until the new one was in place.
        read.close().await;
        anyhow::bail!(
            "the audit database {} was deleted or replaced while serving; a new one was created \
             there and the batch will be written to it",
            path.display()
        )
    }

    /// Fails if the database file was replaced since `opened` was read: rows just committed
    /// went into a file that is no longer on record.
    fn check_unchanged(&self, opened: Option<FileId>) -> anyhow::Result<()> {
        if let (Some(path), Some(opened)) = (&self.path, opened)
            && FileId::changed(path, opened)
        {
            anyhow::bail!(
                "the audit database {} was deleted or replaced during a commit",
                path.display()
            );
        }
        Ok(())
    }

    /// Writes the batch in one transaction. The database file is checked before and after:
    /// rows committed into a file that was deleted meanwhile are not on record, so that is
    /// reported as a failure (durable requests get their 503, owed rows are retried into the
    /// new file).
    pub async fn write_batch(&self, records: &[&AuditRecord]) -> anyhow::Result<()> {
        self.ensure_current_file().await?;
        let (pool, opened) = self.write()?;
        self.insert_batch(&pool, records).await?;
        self.check_unchanged(opened)
    }

    /// Writes one row in a transaction that is rolled back: it needs the write lock, a
    /// writable file with room for a row, and the file at the path (see
    /// [`SqliteStore::ensure_current_file`]), and leaves nothing behind.
    pub async fn probe(&self) -> anyhow::Result<()> {
        self.ensure_current_file().await?;
        let (pool, _) = self.write()?;
        let probe = AuditRecord {
            request_id: "inferlog-store-probe".into(),
            item: 0,
            received_at: chrono::Utc::now(),
            model: None,
            model_version: None,
            features: None,
            prediction: None,
            label: None,
            status: 0,
            error_code: None,
            latency_us: 0,
            client_addr: None,
            // Big enough to need pages of its own (16 at SQLite's default 4 KiB), so a
            // full database fails the probe even when its last page has room for a small row.
            raw_body: Some(" ".repeat(64 * 1024)),
            outliers: None,
        };
        let mut guard = pool.lock().await?;
        let result = probe_rows(guard.conn(), &probe).await;
        // The probe runs only while the store is failing: it costs little to hand the writer
        // a fresh connection afterwards, whatever state the failures left this one in.
        guard.discard().await;
        result
    }

    async fn insert_batch(&self, pool: &OwnedConn, records: &[&AuditRecord]) -> anyhow::Result<()> {
        let mut guard = pool.lock().await?;
        let result = insert_rows(guard.conn(), records).await;
        guard.finish(result).await
    }

    pub async fn page(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredRecord>> {
        let mut qb = QueryBuilder::<Sqlite>::new(format!("select {COLUMNS} from prediction"));
        push_where(&mut qb, filter);
        if let Some(after) = after {
            qb.push(match filter.order {
                Order::Asc => " and id > ",
                Order::Desc => " and id < ",
            })
            .push_bind(after);
        }
        qb.push(match filter.order {
            Order::Asc => " order by id asc limit ",
            Order::Desc => " order by id desc limit ",
        })
        .push_bind(limit as i64);
        let rows = qb
            .build()
            .fetch_all(&self.read())
            .await
            .context("reading audit rows")?;
        rows.iter().map(stored).collect()
    }

    pub async fn request(&self, request_id: &str) -> anyhow::Result<Vec<StoredRecord>> {
        let rows = sqlx::query(&format!(
            "select {COLUMNS} from prediction where request_id = ? order by item, id"
        ))
        .bind(request_id)
        .fetch_all(&self.read())
        .await
        .context("reading a request's audit rows")?;
        rows.iter().map(stored).collect()
    }

    pub async fn summary(&self, filter: &AuditFilter) -> anyhow::Result<Summary> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "select count(*), count(distinct request_id) from prediction",
        );
        push_where(&mut qb, filter);
        let row = qb.build().fetch_one(&self.read()).await?;
        let rows: i64 = row.try_get(0)?;
        let requests: i64 = row.try_get(1)?;

        let mut counts = Vec::new();
        for column in ["model", "label", "cast(status as text)", "error_code"] {
            let mut qb = QueryBuilder::<Sqlite>::new(format!(
                "select {column} as k, count(*) from prediction"
            ));
            push_where(&mut qb, filter);
            qb.push(" group by k order by count(*) desc, k");
            let list = qb
                .build()
                .fetch_all(&self.read())
                .await?
                .iter()
                .map(|r| {
                    Ok(Count {
                        key: r.try_get(0)?,
                        count: r.try_get(1)?,
                    })
                })
                .collect::<Result<Vec<_>, sqlx::Error>>()?;
            counts.push(list);
        }

        let mut latency = Latency::default();
        if rows > 0 {
            let nearest_rank = |p: f64| ((p * rows as f64).ceil() as i64 - 1).clamp(0, rows - 1);
            let mut at = Vec::new();
            for offset in [
                nearest_rank(0.5),
                nearest_rank(0.9),
                nearest_rank(0.99),
                rows - 1,
            ] {
                let mut qb = QueryBuilder::<Sqlite>::new("select latency_us from prediction");
                push_where(&mut qb, filter);
                qb.push(" order by latency_us limit 1 offset ")
                    .push_bind(offset);
                at.push(
                    qb.build()
                        .fetch_optional(&self.read())
                        .await?
                        .map(|r| r.get::<i64, _>(0)),
                );
            }
            latency = Latency {
                p50: at[0],
                p90: at[1],
                p99: at[2],
                max: at[3],
            };
        }
        let mut counts = counts.into_iter();
        Ok(Summary {
            rows,
            requests,
            by_model: counts.next().unwrap_or_default(),
            by_label: counts.next().unwrap_or_default(),
            by_status: counts.next().unwrap_or_default(),
            by_error_code: counts.next().unwrap_or_default(),
            latency_us: latency,
        })
    }

    /// Features and predicted classes of the answered rows of `model` in a time range, for
    /// drift: row-major values of the rows that have `n_features` features.
    pub async fn drift_rows(
        &self,
        model: &str,
        n_features: usize,
        filter: &AuditFilter,
    ) -> anyhow::Result<(Vec<f64>, Vec<u32>)> {
        use futures_util::TryStreamExt;
        let mut qb = QueryBuilder::<Sqlite>::new("select features, prediction from prediction");
        push_where(&mut qb, filter);
        qb.push(" and status = 200 and model = ")
            .push_bind(model.to_string());
        let query = qb.build();
        let read = self.read();
        let mut rows = query.fetch(&read);
        let (mut values, mut classes) = (Vec::new(), Vec::new());
        while let Some(row) = rows.try_next().await.context("reading audited inputs")? {
            let features: Option<String> = row.try_get(0)?;
            let class: Option<i64> = row.try_get(1)?;
            let (Some(features), Some(class)) = (features, class) else {
                continue;
            };
            let Ok(parsed) = serde_json::from_str::<Vec<f64>>(&features) else {
                continue;
            };
            if parsed.len() == n_features {
                values.extend(parsed);
                classes.push(class as u32);
            }
        }
        Ok((values, classes))
    }

    /// The model and predicted label of an answered row, if it exists.
    pub async fn served_row(
        &self,
        request_id: &str,
        item: i64,
    ) -> anyhow::Result<Option<(Option<String>, Option<String>)>> {
        let row = sqlx::query(
            "select model, label from prediction \
             where request_id = ? and item = ? and status = 200 order by id limit 1",
        )
        .bind(request_id)
        .bind(item)
        .fetch_optional(&self.read())
        .await
        .context("looking up an audited prediction")?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    /// Stores a true label; returns the label it replaces, if any.
    pub async fn insert_feedback(&self, fb: &Feedback) -> anyhow::Result<Option<String>> {
        self.ensure_current_file().await?;
        let (pool, opened) = self.write()?;
        let mut guard = pool.lock().await?;
        let result: anyhow::Result<_> = async {
            let conn = guard.conn();
            let mut tx = conn
                .begin()
                .await
                .context("starting a feedback transaction")?;
            let previous: Option<String> = sqlx::query_scalar(
                "select label from feedback where request_id = ? and item = ? \
                 order by id desc limit 1",
            )
            .bind(&fb.request_id)
            .bind(fb.item)
            .fetch_optional(&mut *tx)
            .await?;
            sqlx::query(
                "insert into feedback (request_id, item, label, received_at, client_addr) \
                 values (?, ?, ?, ?, ?)",
            )
            .bind(&fb.request_id)
            .bind(fb.item)
            .bind(&fb.label)
            .bind(format_time(&fb.received_at))
            .bind(fb.client_addr.as_deref())
            .execute(&mut *tx)
            .await
            .context("storing feedback")?;
            tx.commit().await.context("committing feedback")?;
            Ok(previous)
        }
        .await;
        let previous = guard.finish(result).await?;
        self.check_unchanged(opened)?;
        Ok(previous)
    }

    /// (predicted label, true label, count) of the labelled rows of `model` in a range.
    pub async fn confusion(
        &self,
        model: &str,
        filter: &AuditFilter,
    ) -> anyhow::Result<Vec<(String, String, i64)>> {
        let mut qb = QueryBuilder::<Sqlite>::new(
            "select p.label, t.true_label, count(*) from prediction p \
             join ground_truth t on t.request_id = p.request_id and t.item = p.item",
        );
        push_where_on(&mut qb, filter, "p.");
        qb.push(" and p.status = 200 and p.model = ")
            .push_bind(model.to_string())
            .push(" group by p.label, t.true_label");
        let rows = qb
            .build()
            .fetch_all(&self.read())
            .await
            .context("joining feedback with predictions")?;
        rows.iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?, r.try_get(2)?)))
            .collect()
    }

    pub async fn close(&self) {
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

    /// Copies committed WAL frames into the database file without waiting for the writer or
    /// readers (a passive checkpoint).
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        let pool = self
            .pools
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .checkpoint
            .clone();
        let Some(conn) = pool else {
            return Ok(());
        };
        let mut guard = conn.lock().await?;
        let result: anyhow::Result<_> = async {
            let c = guard.conn();
            sqlx::query("pragma wal_checkpoint(passive)")
                .execute(c)
                .await
                .context("checkpointing the audit WAL")?;
            Ok(())
        }
        .await;
        guard.finish(result).await
    }
}

/// A connection used by one task at a time, kept outside sqlx's pool: the pool pings a
/// connection when it is taken and again when it is given back, two more round trips to the
/// connection's thread per commit than the insert itself, each a pair of thread wake-ups that
/// cost more than the insert on two shared cores.
#[derive(Debug)]
struct OwnedConn {
    options: SqliteConnectOptions,
    /// Most bytes the database may hold (`max_page_count`), applied on every connect.
    max_bytes: Option<u64>,
    conn: Arc<tokio::sync::Mutex<Option<SqliteConnection>>>,
    /// Set by [`OwnedConn::close`]: a closed store is not reconnected behind its back.
    closed: std::sync::atomic::AtomicBool,
}

impl OwnedConn {
    async fn open(
        options: SqliteConnectOptions,
        max_bytes: Option<u64>,
    ) -> anyhow::Result<OwnedConn> {
        let owned = OwnedConn {
            options,
            max_bytes,
            conn: Arc::new(tokio::sync::Mutex::new(None)),
            closed: std::sync::atomic::AtomicBool::new(false),
        };
        let conn = owned.connect().await?;
        *owned.conn.lock().await = Some(conn);
        Ok(owned)
    }

    async fn connect(&self) -> anyhow::Result<SqliteConnection> {
        let mut conn = SqliteConnection::connect_with(&self.options).await?;
        if let Some(max) = self.max_bytes {
            // max_page_count counts pages, whose size belongs to the file.
            let page: i64 = sqlx::query_scalar("pragma page_size")
                .fetch_one(&mut conn)
                .await?;
            let pages = (max / page.max(512) as u64).max(1);
            sqlx::query(&format!("pragma max_page_count = {pages}"))
                .execute(&mut conn)
                .await?;
        }
        Ok(conn)
    }

    /// Takes the connection (connecting first if needed) until the guard is finished.
    async fn lock(&self) -> anyhow::Result<ConnGuard> {
        let mut slot = Arc::clone(&self.conn).lock_owned().await;
        if self.closed.load(std::sync::atomic::Ordering::Acquire) {
            anyhow::bail!("the audit database connection is closed");
        }
        if slot.is_none() {
            *slot = Some(
                self.connect()
                    .await
                    .context("reconnecting to the audit database")?,
            );
        }
        Ok(ConnGuard { slot, keep: false })
    }

    async fn close(&self) {
        let mut slot = self.conn.lock().await;
        self.closed
            .store(true, std::sync::atomic::Ordering::Release);
        if let Some(conn) = slot.take() {
            let _ = conn.close().await;
        }
    }
}

/// The connection of an [`OwnedConn`], held by one task.
struct ConnGuard {
    /// Always `Some` while the guard lives.
    slot: tokio::sync::OwnedMutexGuard<Option<SqliteConnection>>,
    /// Set by a successful [`ConnGuard::finish`]; otherwise the connection is dropped with the
    /// guard, as when the task using it was cancelled mid-transaction.
    keep: bool,
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if !self.keep {
            // Dropping the connection ends its thread, which closes the SQLite handle and
            // with it any transaction left open.
            drop(self.slot.take());
        }
    }
}

impl ConnGuard {
    fn conn(&mut self) -> &mut SqliteConnection {
        self.slot
            .as_mut()
            .expect("an OwnedConn guard always holds a connection")
    }

    /// Gives the connection back, or closes it if `result` is a failure; the next use opens a
    /// fresh one.
    ///
    /// SQLite rolls a transaction back by itself on some errors (a full database or disk, I/O
    /// errors) without sqlx noticing: sqlx would turn the next `BEGIN` into a `SAVEPOINT`
    /// inside a transaction that is never committed, and rows acknowledged after it would
    /// vanish when the connection closes. A connection therefore never outlives a failed
    /// write.
    async fn finish<T>(mut self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if result.is_ok() {
            self.keep = true;
        } else if let Some(conn) = self.slot.take() {
            let _ = conn.close().await;
        }
        result
    }

    /// Closes the connection whatever happened; the next use opens a fresh one.
    async fn discard(mut self) {
        if let Some(conn) = self.slot.take() {
            let _ = conn.close().await;
        }
    }
}

/// Opens the pools for `url`: read-only, or writing (created if missing, WAL, migrated) plus
/// read-only query connections and the checkpointing connection.
async fn connect(url: &str, opts: &StoreOptions) -> anyhow::Result<Pools> {
    let base = SqliteConnectOptions::from_str(url)
        .with_context(|| format!("bad database URL {url:?}"))?
        .busy_timeout(opts.busy_timeout);
    if opts.read_only {
        let read = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(base.read_only(true))
            .await
            .with_context(|| format!("opening {url} read-only"))?;
        return Ok(Pools {
            write: None,
            read,
            checkpoint: None,
            file: None,
            wal: None,
            shm: None,
        });
    }
    let sync = match opts.sync {
        SyncLevel::Normal => SqliteSynchronous::Normal,
        SyncLevel::Full => SqliteSynchronous::Full,
    };
    // SQLite opens a file it may not write read-only without a word, and every commit would
    // then fail; say so at once instead.
    let db_file = base.get_filename();
    if db_file.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(db_file)
            .with_context(|| format!("the audit database {} is not writable", db_file.display()))?;
    }
    let write = OwnedConn::open(
        base.clone()
            .statement_cache_capacity(WRITE_STATEMENT_CACHE)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(sync)
            // Checkpoints run on their own connection (`SqliteStore::checkpoint`); a commit
            // that crosses SQLite's default 1000 pages of WAL would otherwise copy them into the
            // database inside the commit, the slowest 1-2% of durable requests. This is the
            // fallback should that connection fall behind.
            .pragma(
                "wal_autocheckpoint",
                WRITER_AUTOCHECKPOINT_PAGES.to_string(),
            )
            .pragma("journal_size_limit", WAL_SIZE_LIMIT_BYTES.to_string()),
        opts.max_bytes,
    )
    .await
    .with_context(|| format!("opening the audit database {url}"))?;
    {
        let mut guard = write.lock().await?;
        let result = sqlx::migrate!("./migrations")
            .run_direct(guard.conn())
            .await
            .with_context(|| format!("migrating the audit database {url}"));
        guard.finish(result).await?;
    }
    let file = FileId::of(base.get_filename());
    let base_file = base.get_filename().to_path_buf();
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(base.clone().read_only(true))
        .await
        .with_context(|| format!("opening {url} for queries"))?;
    let checkpoint = OwnedConn::open(base, None)
        .await
        .with_context(|| format!("opening {url} for checkpoints"))?;
    Ok(Pools {
        write: Some(Arc::new(write)),
        read,
        checkpoint: Some(Arc::new(checkpoint)),
        file,
        wal: FileId::of(&sidecar(&base_file, "-wal")),
        shm: FileId::of(&sidecar(&base_file, "-shm")),
    })
}

/// Writes `records` in one transaction: a batch of up to [`EXACT_ROWS`] is one statement (an
/// implicit transaction, a single round trip to SQLite's thread instead of three); a larger one
/// is chunked (see [`chunk_len`]) inside BEGIN/COMMIT.
async fn insert_rows(conn: &mut SqliteConnection, records: &[&AuditRecord]) -> anyhow::Result<()> {
    if records.len() <= EXACT_ROWS {
        insert(records)
            .execute(&mut *conn)
            .await
            .context("inserting audit rows")?;
        return Ok(());
    }
    let mut tx = conn
        .begin()
        .await
        .context("starting an audit transaction")?;
    let mut rest = records;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        rest = tail;
        insert(chunk)
            .execute(&mut *tx)
            .await
            .context("inserting audit rows")?;
    }
    tx.commit().await.context("committing audit rows")?;
    Ok(())
}

/// Inserts `probe` in a transaction and rolls it back.
async fn probe_rows(conn: &mut SqliteConnection, probe: &AuditRecord) -> anyhow::Result<()> {
    let mut tx = conn.begin().await.context("starting a probe transaction")?;
    insert(&[probe])
        .execute(&mut *tx)
        .await
        .context("inserting audit rows")?;
    tx.rollback().await.context("rolling back the probe")?;
    Ok(())
}

/// A multi-row INSERT of `rows` (at most [`MAX_ROWS_PER_STATEMENT`]), values bound.
fn insert<'a>(
    rows: &[&'a AuditRecord],
) -> sqlx::query::Query<'a, Sqlite, sqlx::sqlite::SqliteArguments<'a>> {
    let mut q = sqlx::query(insert_sql(rows.len()));
    // The rows of one request share their arrival time: format it once per request.
    let mut time: Option<(chrono::DateTime<chrono::Utc>, String)> = None;
    for r in rows {
        let received_at = match &time {
            Some((t, text)) if *t == r.received_at => text.clone(),
            _ => {
                let text = format_time(&r.received_at);
                time = Some((r.received_at, text.clone()));
                text
            }
        };
        q = q
            .bind(&*r.request_id)
            .bind(r.item as i64)
            .bind(received_at)
            .bind(r.model.as_deref())
            .bind(r.model_version.as_deref())
            .bind(r.features.as_deref())
            .bind(r.prediction.map(i64::from))
            .bind(r.label.as_deref())
            .bind(i64::from(r.status))
            .bind(r.error_code.as_deref())
            .bind(r.latency_us as i64)
            .bind(r.client_addr.as_deref())
            .bind(r.raw_body.as_deref())
            .bind(r.outliers.as_deref());
    }
    q
}

/// The text of the INSERT for `rows` rows, built once per size: every size a batch can be cut
/// into (see [`chunk_len`]) is one of the exact sizes up to [`EXACT_ROWS`] or a power of two
/// up to [`MAX_ROWS_PER_STATEMENT`].
fn insert_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<(usize, String)>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        let mut sizes: Vec<usize> = (1..=EXACT_ROWS).collect();
        let mut n = EXACT_ROWS * 2;
        while n <= MAX_ROWS_PER_STATEMENT {
            sizes.push(n);
            n *= 2;
        }
        sizes
            .into_iter()
            .map(|n| {
                let mut sql = String::from(
                    "insert into prediction (request_id, item, received_at, model, \
                     model_version, features, prediction, label, status, error_code, \
                     latency_us, client_addr, raw_body, outliers) values ",
                );
                for i in 0..n {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str("(?,?,?,?,?,?,?,?,?,?,?,?,?,?)");
                }
                (n, sql)
            })
            .collect()
    });
    match all.binary_search_by_key(&rows, |(n, _)| *n) {
        Ok(i) => &all[i].1,
        // chunk_len never asks for another size.
        Err(_) => unreachable!("no INSERT prepared for {rows} rows"),
    }
}

/// The filter as a WHERE clause; `p` qualifies the columns (`"p."` in joins, else `""`).
fn push_where_on(qb: &mut QueryBuilder<'_, Sqlite>, f: &AuditFilter, p: &str) {
    qb.push(" where 1 = 1");
    if let Some(t) = &f.since {
        qb.push(format!(" and {p}received_at >= "))
            .push_bind(format_time(t));
    }
    if let Some(t) = &f.until {
        qb.push(format!(" and {p}received_at < "))
            .push_bind(format_time(t));
    }
    if let Some(v) = &f.model {
        qb.push(format!(" and {p}model = ")).push_bind(v.clone());
    }
    if let Some(v) = &f.model_version {
        qb.push(format!(" and {p}model_version = "))
            .push_bind(v.clone());
    }
    if let Some(v) = &f.label {
        qb.push(format!(" and {p}label = ")).push_bind(v.clone());
    }
    if let Some(v) = &f.request_id {
        qb.push(format!(" and {p}request_id = "))
            .push_bind(v.clone());
    }
    if let Some(v) = f.min_latency_us {
        qb.push(format!(" and {p}latency_us >= ")).push_bind(v);
    }
    match f.status {
        StatusFilter::Ok => {
            qb.push(format!(" and {p}status = 200"));
        }
        StatusFilter::Rejected => {
            qb.push(format!(" and {p}status <> 200"));
        }
        StatusFilter::All => {}
    }
}

fn push_where(qb: &mut QueryBuilder<'_, Sqlite>, f: &AuditFilter) {
    push_where_on(qb, f, "");
}

fn stored(row: &SqliteRow) -> anyhow::Result<StoredRecord> {
    let features: Option<String> = row.try_get("features")?;
    let outliers: Option<String> = row.try_get("outliers")?;
    Ok(StoredRecord {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        item: row.try_get("item")?,
        received_at: row.try_get("received_at")?,
        model: row.try_get("model")?,
        model_version: row.try_get("model_version")?,
        features: features
            .map(serde_json::value::RawValue::from_string)
            .transpose()
            .context("a stored features value is not JSON")?,
        prediction: row.try_get("prediction")?,
        label: row.try_get("label")?,
        status: row.try_get("status")?,
        error_code: row.try_get("error_code")?,
        latency_us: row.try_get("latency_us")?,
        client_addr: row.try_get("client_addr")?,
        raw_body: row.try_get("raw_body")?,
        outliers: outliers
            .map(serde_json::value::RawValue::from_string)
            .transpose()
            .context("a stored outliers value is not JSON")?,
    })
}

#[cfg(test)]
mod tests {
    use super::{MAX_ROWS_PER_STATEMENT, chunk_len, insert_sql};
    use crate::audit::writer::MAX_BATCH_ROWS;

    #[test]
    fn chunks_are_exact_when_small_and_powers_of_two_when_large() {
        assert_eq!(chunk_len(1), 1);
        assert_eq!(chunk_len(64), 64);
        assert_eq!(chunk_len(65), 64);
        assert_eq!(chunk_len(300), 256);
        assert_eq!(chunk_len(5000), MAX_ROWS_PER_STATEMENT);
    }

    #[test]
    fn every_batch_is_cut_into_prepared_statement_sizes() {
        let mut checked = std::collections::HashSet::new();
        for total in 1..=MAX_BATCH_ROWS {
            let mut rest = total;
            while rest > 0 {
                let n = chunk_len(rest);
                if checked.insert(n) {
                    // One "(" for the column list, one per row.
                    assert_eq!(insert_sql(n).matches('(').count() - 1, n, "{total} rows");
                }
                rest -= n;
            }
        }
    }
}
