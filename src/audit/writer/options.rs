//! The writer's settings.

use std::time::Duration;

use super::metrics::WriterMetrics;
use crate::audit::modes::AuditMode;

/// Most rows written in one transaction.
pub const MAX_BATCH_ROWS: usize = 16_384;

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub mode: AuditMode,
    /// Jobs the channel holds.
    pub queue_capacity: usize,
    pub queue_timeout: Duration,
    pub commit_timeout: Duration,
    /// Longest wait between retries of a failing commit; at shutdown, owed rows are given up
    /// (logged in full) once a retry after this wait has failed too.
    pub max_backoff: Duration,
    pub metrics: WriterMetrics,
}

impl WriterOptions {
    pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(2);
}
