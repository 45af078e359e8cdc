//! The audit store: a durable record of every prediction and every rejected request.
//!
//! - [`AuditRecord`] is one row: what came in, what the model answered, which model version,
//!   when, for whom and how long it took.
//! - [`writer`] owns all writes: handlers hand records to a background task through a bounded
//!   channel; it group-commits whatever is queued as multi-row inserts in one transaction.
//!   In `durable` mode a handler answers only after its rows committed; in `async` mode it
//!   answers at once and the queue (bounded, with back pressure) carries the rows.
//! - [`query`] holds the filters, pagination cursor and summaries of `GET /audit`.
//! - [`sqlite`] is the one backend today. The HTTP layer sees only [`Store`] and
//!   [`writer::AuditSink`]; a PostgreSQL backend is a new variant of [`Store`] and a module
//!   beside `sqlite`, with no change above this module.

pub mod export;
pub mod query;
pub mod report;
pub mod sqlite;
pub mod writer;

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub use query::{AuditFilter, Order, Page, StatusFilter, Summary};
pub use writer::{AuditSink, StoreHealth, WriterHandle};

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

/// One audit row. Shared strings are `Arc<str>` so the rows of a batch do not copy them.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    pub request_id: Arc<str>,
    /// Index of the row within its request.
    pub item: u32,
    pub received_at: DateTime<Utc>,
    pub model: Option<Arc<str>>,
    pub model_version: Option<Arc<str>>,
    /// JSON array of the row's features in model order.
    pub features: Option<String>,
    pub prediction: Option<u32>,
    pub label: Option<Arc<str>>,
    pub status: u16,
    pub error_code: Option<Arc<str>>,
    pub latency_us: u64,
    pub client_addr: Option<Arc<str>>,
    /// Rejected requests: the body (lossy UTF-8), cut to [`RAW_BODY_LIMIT`] bytes.
    pub raw_body: Option<String>,
    /// JSON array of the names of features flagged as outliers; `None` when none were.
    pub outliers: Option<String>,
}

/// A true label for an audited prediction.
#[derive(Debug, Clone)]
pub struct Feedback {
    pub request_id: String,
    pub item: i64,
    pub label: String,
    pub received_at: DateTime<Utc>,
    pub client_addr: Option<String>,
}

/// Most bytes of a rejected body kept in the audit row.
pub const RAW_BODY_LIMIT: usize = 4096;

/// The text form of timestamps in the store: RFC 3339, UTC, microseconds, `Z`.
pub fn format_time(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
}

/// Keeps at most [`RAW_BODY_LIMIT`] bytes of a body, cut on a character boundary.
pub fn cut_body(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(RAW_BODY_LIMIT + 4)]);
    let mut end = text.len().min(RAW_BODY_LIMIT);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

/// A row as read back from the store.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredRecord {
    pub id: i64,
    pub request_id: String,
    pub item: i64,
    pub received_at: String,
    pub model: Option<String>,
    pub model_version: Option<String>,
    /// Kept as the JSON text stored, so it is written out as a JSON array without re-parsing.
    pub features: Option<Box<serde_json::value::RawValue>>,
    pub prediction: Option<i64>,
    pub label: Option<String>,
    pub status: i64,
    pub error_code: Option<String>,
    pub latency_us: i64,
    pub client_addr: Option<String>,
    pub raw_body: Option<String>,
    pub outliers: Option<Box<serde_json::value::RawValue>>,
}

/// The audit backend. Every method the service and the CLI use goes through here.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(sqlite::SqliteStore),
}

impl Store {
    /// Opens the store named by a database URL, creating and migrating it as needed.
    pub async fn open(url: &str, opts: &StoreOptions) -> anyhow::Result<Store> {
        if url.starts_with("sqlite:") {
            Ok(Store::Sqlite(sqlite::SqliteStore::open(url, opts).await?))
        } else {
            anyhow::bail!(
                "unsupported database URL {url:?}: this build supports sqlite://PATH only"
            )
        }
    }

    /// Writes `records` in one transaction: all or none.
    pub async fn write_batch(&self, records: &[&AuditRecord]) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(s) => s.write_batch(records).await,
        }
    }

    /// Checks that a write would succeed now, writing nothing: how the writer finds out that
    /// a failing store works again when no rows are waiting to be written.
    pub async fn probe(&self) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(s) => s.probe().await,
        }
    }

    /// Moves committed writes from the write-ahead log into the database file, off the
    /// writer's path.
    pub async fn checkpoint(&self) -> anyhow::Result<()> {
        match self {
            Store::Sqlite(s) => s.checkpoint().await,
        }
    }

    pub async fn page(
        &self,
        filter: &AuditFilter,
        after: Option<i64>,
        limit: usize,
    ) -> anyhow::Result<Vec<StoredRecord>> {
        match self {
            Store::Sqlite(s) => s.page(filter, after, limit).await,
        }
    }

    pub async fn request(&self, request_id: &str) -> anyhow::Result<Vec<StoredRecord>> {
        match self {
            Store::Sqlite(s) => s.request(request_id).await,
        }
    }

    pub async fn summary(&self, filter: &AuditFilter) -> anyhow::Result<Summary> {
        match self {
            Store::Sqlite(s) => s.summary(filter).await,
        }
    }

    pub async fn drift_rows(
        &self,
        model: &str,
        n_features: usize,
        filter: &AuditFilter,
    ) -> anyhow::Result<(Vec<f64>, Vec<u32>)> {
        match self {
            Store::Sqlite(s) => s.drift_rows(model, n_features, filter).await,
        }
    }

    /// The model and label answered for `(request_id, item)`; `None` if no such answered row.
    pub async fn served_row(
        &self,
        request_id: &str,
        item: i64,
    ) -> anyhow::Result<Option<(Option<String>, Option<String>)>> {
        match self {
            Store::Sqlite(s) => s.served_row(request_id, item).await,
        }
    }

    pub async fn insert_feedback(&self, fb: &Feedback) -> anyhow::Result<Option<String>> {
        match self {
            Store::Sqlite(s) => s.insert_feedback(fb).await,
        }
    }

    pub async fn confusion(
        &self,
        model: &str,
        filter: &AuditFilter,
    ) -> anyhow::Result<Vec<(String, String, i64)>> {
        match self {
            Store::Sqlite(s) => s.confusion(model, filter).await,
        }
    }

    pub async fn close(&self) {
        match self {
            Store::Sqlite(s) => s.close().await,
        }
    }
}

/// Settings of the store connection.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub sync: SyncLevel,
    pub busy_timeout: std::time::Duration,
    /// Open read-only (the `audit` CLI): never creates, migrates or writes.
    pub read_only: bool,
    /// Most bytes the database file may hold (SQLite's `max_page_count`); `None`: no limit.
    pub max_bytes: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_body_keeps_char_boundaries() {
        let body = "é".repeat(3000); // 6000 bytes
        let cut = cut_body(body.as_bytes());
        assert!(cut.len() <= RAW_BODY_LIMIT);
        assert!(cut.chars().all(|c| c == 'é'));
        assert_eq!(cut_body(b"\xff{}"), "\u{fffd}{}");
    }

    #[test]
    fn time_format_has_micros_and_z() {
        let t = DateTime::parse_from_rfc3339("2026-11-27T10:00:00.5+02:00")
            .unwrap()
            .to_utc();
        assert_eq!(format_time(&t), "2026-11-27T08:00:00.500000Z");
    }
}
