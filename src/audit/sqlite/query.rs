//! The SQLite backend's own side of reads (the queries themselves are shared:
//! [`crate::audit::sql::reads`]): a read connection whose statements stop at a time limit.

use anyhow::Context;
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteConnection, SqlitePool};

/// A connection of the read pool whose statements stop with `SQLITE_INTERRUPT` once a time
/// limit has passed since it was acquired: an HTTP read of the rows never holds a snapshot
/// (and so the WAL's checkpoints) for longer. SQLite checks the limit every 1,000 virtual
/// machine steps (microseconds).
pub(crate) struct BoundedRead {
    conn: sqlx::pool::PoolConnection<Sqlite>,
    /// Cleared when dropped: the handler stays on the pooled connection until the next
    /// bounded read replaces it, and must then stop nothing.
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BoundedRead {
    pub(super) async fn acquire(
        read: &SqlitePool,
        limit: std::time::Duration,
    ) -> anyhow::Result<BoundedRead> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut conn = read.acquire().await.context("opening a read")?;
        let armed = std::sync::Arc::new(AtomicBool::new(true));
        let deadline = std::time::Instant::now() + limit;
        let live = std::sync::Arc::clone(&armed);
        conn.lock_handle()
            .await
            .context("opening a read")?
            .set_progress_handler(1000, move || {
                !live.load(Ordering::Relaxed) || std::time::Instant::now() < deadline
            });
        Ok(BoundedRead { conn, armed })
    }
}

impl std::ops::Deref for BoundedRead {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for BoundedRead {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Drop for BoundedRead {
    fn drop(&mut self) {
        self.armed
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}
