//! The writer's settings.

use std::time::Duration;

use super::metrics::WriterMetrics;
use crate::audit::modes::AuditMode;

/// Most rows written in one transaction.
pub const MAX_BATCH_ROWS: usize = 16_384;

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Writers committing side by side, each its own share of the jobs (1 for SQLite).
    pub writers: usize,
    pub mode: AuditMode,
    /// Rows the queue holds, counting those being committed or retried: the most an
    /// abrupt exit (SIGKILL) can lose in async mode.
    pub queue_rows: usize,
    pub queue_timeout: Duration,
    pub commit_timeout: Duration,
    /// Longest wait between retries of a failing commit.
    pub max_backoff: Duration,
    pub metrics: WriterMetrics,
    /// Where rows go that cannot be committed by the shutdown deadline (`None`: to the log).
    pub spill: Option<std::path::PathBuf>,
}

impl WriterOptions {
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(2);
}
