//! The connections of the SQLite backend: one writing connection owned outside sqlx's pool,
//! a small read-only pool for queries, and a connection that checkpoints the WAL.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use sqlx::Connection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteSynchronous,
};

use super::file_identity::{FileId, sidecar};
use super::insert::WRITE_STATEMENT_CACHE;
use crate::audit::modes::{StoreOptions, SyncLevel};

/// WAL pages after which a commit checkpoints by itself (128 MiB at 4 KiB pages), if the
/// checkpointing connection has not made the WAL start over before (it does at 48 MiB).
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 32_768;

/// SQLite's default page size, for turning a size in bytes into a number of WAL pages where
/// a rough figure will do.
const ASSUMED_PAGE_BYTES: u64 = 4096;

/// The WAL file is truncated back to this size after a checkpoint let it start over.
const WAL_SIZE_LIMIT_BYTES: u64 = 64 << 20;

/// The part of a size cap of `max` bytes the write-ahead log file may take (a quarter); the
/// database's page limit is the rest, so that the two files stay within the cap together and
/// the database always has room to take the WAL's pages in a checkpoint.
pub(super) fn wal_share(max: u64) -> u64 {
    max / 4
}

/// How long the checkpointing connection waits for a lock: only a checkpoint that restarts an
/// oversized WAL waits at all (a passive one never does), and it is retried soon after.
const CHECKPOINT_BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

#[derive(Debug)]
pub(super) struct Pools {
    /// The single writing connection (absent when opened read-only).
    pub write: Option<Arc<OwnedConn>>,
    /// Read-only connections for queries.
    pub read: SqlitePool,
    /// The connection that checkpoints the WAL into the database file, off the writer's path
    /// (absent when opened read-only).
    pub checkpoint: Option<Arc<OwnedConn>>,
    /// Identity of the file the connections have open (`None` for in-memory databases).
    pub file: Option<FileId>,
    /// Identity of its write-ahead log and shared-memory files, to tell them from another
    /// database's when the file is replaced.
    pub wal: Option<FileId>,
    pub shm: Option<FileId>,
}

/// A connection used by one task at a time, kept outside sqlx's pool: the pool pings a
/// connection when it is taken and again when it is given back, two more round trips to the
/// connection's thread per commit than the insert itself, each a pair of thread wake-ups that
/// cost more than the insert on two shared cores.
#[derive(Debug)]
pub(super) struct OwnedConn {
    options: SqliteConnectOptions,
    /// Most bytes the database may hold (`max_page_count`), applied on every connect.
    max_bytes: Option<u64>,
    /// The writer's connection: SQLite's busy handler is turned off once connected, and the
    /// writer waits for another process's lock itself (see `insert::write_rows`), so the time
    /// it waits is known and counted in the latency of the rows it then writes. Connecting
    /// (which reads the schema) still waits out a busy lock.
    own_busy_wait: bool,
    conn: Arc<tokio::sync::Mutex<Option<SqliteConnection>>>,
    /// Set by [`OwnedConn::close`]: a closed store is not reconnected behind its back.
    closed: AtomicBool,
}

impl OwnedConn {
    async fn open(
        options: SqliteConnectOptions,
        max_bytes: Option<u64>,
        own_busy_wait: bool,
    ) -> anyhow::Result<OwnedConn> {
        let owned = OwnedConn {
            options,
            max_bytes,
            own_busy_wait,
            conn: Arc::new(tokio::sync::Mutex::new(None)),
            closed: AtomicBool::new(false),
        };
        let conn = owned.connect().await?;
        *owned.conn.lock().await = Some(conn);
        Ok(owned)
    }

    async fn connect(&self) -> anyhow::Result<SqliteConnection> {
        let mut conn = SqliteConnection::connect_with(&self.options).await?;
        if let Some(max) = self.max_bytes {
            // max_page_count counts pages, whose size belongs to the file; the WAL's share of
            // the cap is not the database's.
            let page: i64 = sqlx::query_scalar("pragma page_size")
                .fetch_one(&mut conn)
                .await?;
            let pages = ((max - wal_share(max)) / page.max(512) as u64).max(1);
            sqlx::query(&format!("pragma max_page_count = {pages}"))
                .execute(&mut conn)
                .await?;
        }
        if self.own_busy_wait {
            sqlx::query("pragma busy_timeout = 0")
                .execute(&mut conn)
                .await?;
        }
        Ok(conn)
    }

    /// Takes the connection (connecting first if needed) until the guard is finished.
    pub async fn lock(&self) -> anyhow::Result<ConnGuard> {
        let mut slot = Arc::clone(&self.conn).lock_owned().await;
        if self.closed.load(Ordering::Acquire) {
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

    pub async fn close(&self) {
        let mut slot = self.conn.lock().await;
        self.closed.store(true, Ordering::Release);
        if let Some(conn) = slot.take() {
            let _ = conn.close().await;
        }
    }
}

/// The connection of an [`OwnedConn`], held by one task.
pub(super) struct ConnGuard {
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
    pub fn conn(&mut self) -> &mut SqliteConnection {
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
    pub async fn finish<T>(mut self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        if result.is_ok() {
            self.keep = true;
        } else if let Some(conn) = self.slot.take() {
            let _ = conn.close().await;
        }
        result
    }

    /// Closes the connection whatever happened; the next use opens a fresh one.
    pub async fn discard(mut self) {
        if let Some(conn) = self.slot.take() {
            let _ = conn.close().await;
        }
    }
}

/// The writing connection's options: created if missing, WAL, the sync level, a statement
/// cache for every batch size, and the WAL's size kept within its share of a size cap.
fn writer_options(base: &SqliteConnectOptions, opts: &StoreOptions) -> SqliteConnectOptions {
    let sync = match opts.sync {
        SyncLevel::Normal => SqliteSynchronous::Normal,
        SyncLevel::Full => SqliteSynchronous::Full,
    };
    base.clone()
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(sync)
        .statement_cache_capacity(WRITE_STATEMENT_CACHE)
        // Checkpoints run on their own connection (`SqliteStore::checkpoint`); a commit
        // that crosses SQLite's default 1000 pages of WAL would otherwise copy them into the
        // database inside the commit, the slowest 1-2% of durable requests. This is the
        // fallback should that connection fall behind.
        // With a size cap the fallback starts at a quarter of the WAL's share: a burst of
        // commits between two checkpoints would otherwise pass the share, and writes be
        // refused, while the database still has room.
        .pragma(
            "wal_autocheckpoint",
            opts.max_bytes
                .map_or(WRITER_AUTOCHECKPOINT_PAGES, |m| {
                    let pages = wal_share(m) / 4 / ASSUMED_PAGE_BYTES;
                    pages.clamp(1, u64::from(WRITER_AUTOCHECKPOINT_PAGES)) as u32
                })
                .to_string(),
        )
        // With a size cap, the WAL (which counts against it) is also cut back to its share
        // of the cap when checkpoints let it start over.
        .pragma(
            "journal_size_limit",
            opts.max_bytes
                .map_or(WAL_SIZE_LIMIT_BYTES, |m| {
                    wal_share(m).min(WAL_SIZE_LIMIT_BYTES)
                })
                .to_string(),
        )
}

/// Opens the connections for the database `base` names: read-only, or writing (created if
/// missing, WAL, migrated) plus read-only query connections and the checkpointing connection.
pub(super) async fn connect(
    base: &SqliteConnectOptions,
    opts: &StoreOptions,
) -> anyhow::Result<Pools> {
    // Messages name the database as its URL (an SQLite URL holds no password).
    let shown = format!("sqlite://{}", base.get_filename().display());
    let base = base.clone().busy_timeout(opts.busy_timeout);
    if opts.read_only {
        let read = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(base.read_only(true))
            .await
            .with_context(|| format!("opening {shown} read-only"))?;
        return Ok(Pools {
            write: None,
            read,
            checkpoint: None,
            file: None,
            wal: None,
            shm: None,
        });
    }
    // SQLite opens a file it may not write read-only without a word, and every commit would
    // then fail; say so at once instead.
    let db_file = base.get_filename();
    if db_file.exists() {
        std::fs::OpenOptions::new()
            .append(true)
            .open(db_file)
            .with_context(|| format!("the audit database {} is not writable", db_file.display()))?;
    }
    let write = OwnedConn::open(writer_options(&base, opts), opts.max_bytes, true)
        .await
        .with_context(|| format!("opening the audit database {shown}"))?;
    {
        let mut guard = write.lock().await?;
        let result = migrate(guard.conn(), opts.busy_timeout)
            .await
            .with_context(|| format!("migrating the audit database {shown}"));
        guard.finish(result).await?;
    }
    let file = FileId::of(base.get_filename());
    let base_file = base.get_filename().to_path_buf();
    let read = SqlitePoolOptions::new()
        .max_connections(4)
        .connect_with(base.clone().read_only(true))
        .await
        .with_context(|| format!("opening {shown} for queries"))?;
    let checkpoint = OwnedConn::open(base.busy_timeout(CHECKPOINT_BUSY_TIMEOUT), None, false)
        .await
        .with_context(|| format!("opening {shown} for checkpoints"))?;
    Ok(Pools {
        write: Some(Arc::new(write)),
        read,
        checkpoint: Some(Arc::new(checkpoint)),
        file,
        wal: FileId::of(&sidecar(&base_file, "-wal")),
        shm: FileId::of(&sidecar(&base_file, "-shm")),
    })
}

/// Checks the journal mode and brings the schema up to date. The writer connection waits for
/// another process's lock itself, so the busy timeout is on for the migrations only: start-up
/// waits out a lock like any other client.
async fn migrate(conn: &mut SqliteConnection, busy_timeout: Duration) -> anyhow::Result<()> {
    // Without WAL, a busy lock could fail a statement with its transaction left open, and the
    // writer's retry (see `insert::write_rows`) relies on that never happening.
    let mode: String = sqlx::query_scalar("pragma journal_mode")
        .fetch_one(&mut *conn)
        .await?;
    anyhow::ensure!(
        mode.eq_ignore_ascii_case("wal"),
        "the audit database is in journal mode {mode:?}, not WAL"
    );
    sqlx::query(&format!(
        "pragma busy_timeout = {}",
        busy_timeout.as_millis()
    ))
    .execute(&mut *conn)
    .await?;
    sqlx::migrate!("./migrations/sqlite")
        .run_direct(&mut *conn)
        .await?;
    sqlx::query("pragma busy_timeout = 0")
        .execute(&mut *conn)
        .await?;
    Ok(())
}
