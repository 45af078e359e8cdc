//! The writer's instruments. The writer owns them; [`crate::metrics`] registers them for
//! `/metrics` (clones share the registered metric).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};

#[derive(Clone, Debug)]
pub struct WriterMetrics {
    pub rows_written: Counter,
    pub batch_rows: Histogram,
    pub commit_seconds: Histogram,
    pub write_errors: Counter,
    /// Rows written to the spill file at shutdown.
    pub spilled_rows: Counter,
    /// Rows replayed from a spill file at start-up (new to the store).
    pub replayed_rows: Counter,
}

impl Default for WriterMetrics {
    fn default() -> Self {
        WriterMetrics {
            rows_written: Counter::default(),
            batch_rows: Histogram::new(exponential_buckets(1.0, 4.0, 9)),
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 3.0, 12)),
            write_errors: Counter::default(),
            spilled_rows: Counter::default(),
            replayed_rows: Counter::default(),
        }
    }
}
