//! The operator's choices of how audit rows are written and how the store is opened.

use std::time::Duration;

use super::baselines::Baselines;

use serde::{Deserialize, Serialize};

/// How `/predict` waits for its audit rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AuditMode {
    /// Answer only after the rows committed; 503 if they cannot be.
    Durable,
    /// Answer at once; rows are queued (bounded, with back pressure) and committed shortly.
    Async,
}

/// SQLite's `synchronous` setting for the audit database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SyncLevel {
    /// Durable against process crashes; a power loss may lose the last commits (WAL default).
    Normal,
    /// Also durable against power loss, at the cost of an fsync per commit.
    Full,
}

/// Settings of the store connection.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub sync: SyncLevel,
    /// How long a write waits for a lock held by another process before failing.
    pub busy_timeout: Duration,
    /// Open read-only (the CLI): never creates, migrates or writes.
    pub read_only: bool,
    /// Most bytes the database file may hold; `None`: no limit.
    pub max_bytes: Option<u64>,
    /// PostgreSQL: connections in the pool.
    pub pool_size: u32,
    /// PostgreSQL: the longest a call waits for a connection (while the server is down, this
    /// is how long a durable request waits before its 503).
    pub acquire_timeout: Duration,
    /// PostgreSQL: how long an oldest-first read that reaches the end of the rows waits for
    /// the transactions open when it began to end.
    pub catch_up: Duration,
    /// The longest a read of the rows for an analysis (a summary from the rows) may run.
    pub read_timeout: Duration,
    /// The training bins of the model versions served, for the rollups' drift counts.
    pub baselines: Baselines,
}

impl StoreOptions {
    /// For the CLI's writes (a spill file's replay): the service's defaults.
    pub fn writable() -> StoreOptions {
        StoreOptions {
            read_only: false,
            ..StoreOptions::read_only()
        }
    }

    /// For the CLI's reads beside a running server.
    pub fn read_only() -> StoreOptions {
        StoreOptions {
            sync: SyncLevel::Normal,
            busy_timeout: Duration::from_secs(5),
            read_only: true,
            max_bytes: None,
            pool_size: 2,
            acquire_timeout: Duration::from_secs(5),
            catch_up: Duration::from_millis(500),
            read_timeout: Duration::from_secs(5),
            baselines: Baselines::default(),
        }
    }
}

/// Told how many rows a long piece of work (a rebuild of the rollups) has done so far, after
/// each step: for a command's progress line.
pub type RowsDone<'a> = &'a (dyn Fn(u64) + Send + Sync);
