//! What the audit store holds: [`AuditRecord`] (a row as the service writes it),
//! [`StoredRecord`] (a row as it is read back) and [`Feedback`] (a true label).

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// How long a request took, from its arrival until its answer was ready to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Latency {
    /// Known when the record was made: the answer did not wait for the store (async mode,
    /// rejected requests).
    Answered(u64),
    /// The answer waits for the record's commit (durable mode): the backend stamps the moment
    /// it writes the row, once it holds the store's write lock, so queueing and lock waits
    /// count. `Instant` is the request's arrival.
    UntilStored(Instant),
}

impl Latency {
    /// Microseconds, for a row written at `stored_at`.
    pub fn micros(&self, stored_at: Instant) -> u64 {
        match *self {
            Latency::Answered(us) => us,
            Latency::UntilStored(arrived) => micros_between(arrived, stored_at),
        }
    }
}

/// What a write did: when its rows were written (the store's write lock held), and how many
/// of them were new (a row already stored under its request id and item is skipped).
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub at: Instant,
    pub inserted: u64,
}

/// What storing a feedback did.
#[derive(Debug, Clone, PartialEq)]
pub enum FeedbackStored {
    /// Stored; the truth it replaces, if the item had one.
    New { replaced: Option<Truth> },
    /// An identical feedback (same request, item, truth and time) was there already: nothing
    /// stored (copies only).
    Already,
}

impl Written {
    /// An empty batch's: nothing written, now.
    pub fn nothing() -> Written {
        Written {
            at: Instant::now(),
            inserted: 0,
        }
    }
}

/// Whole microseconds from `from` to `to` (zero if `to` is earlier): the one way every layer
/// turns two instants into a latency, so the audit row and the log line agree to the
/// microsecond.
pub fn micros_between(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_micros() as u64
}

/// One audit row. Shared strings are `Arc<str>` so the rows of a batch do not copy them.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditRecord {
    /// The server's id of the request: unique per request.
    pub request_id: Arc<str>,
    /// The `X-Request-Id` the client sent, if any: not unique (clients reuse theirs).
    pub client_request_id: Option<Arc<str>>,
    /// Index of the row within its request.
    pub item: u32,
    pub received_at: DateTime<Utc>,
    pub model: Option<Arc<str>>,
    pub model_version: Option<Arc<str>>,
    /// The row's features in model order.
    pub features: Option<NumberList>,
    pub prediction: Option<u32>,
    pub label: Option<Arc<str>>,
    pub status: u16,
    pub error_code: Option<Arc<str>>,
    pub latency: Latency,
    pub client_addr: Option<Arc<str>>,
    /// Rejected requests: the body (lossy UTF-8), cut to [`RAW_BODY_LIMIT`] bytes.
    pub raw_body: Option<String>,
    /// JSON array of the names of features flagged as outliers; `None` when none were.
    pub outliers: Option<String>,
    /// The replica that wrote the row; `None` for rows from before the column existed.
    pub writer: Option<Arc<str>>,
    /// The probability of each class, in class order (answered rows of classifiers).
    pub probabilities: Option<NumberList>,
    /// A regressor's answer (answered rows of regressors).
    pub value: Option<f64>,
}

/// A row's numbers (its features, its class probabilities): kept as numbers until the store
/// writes them (JSON text is made there, off the request's thread, and drift bins are counted
/// from the features); or the JSON text a stored row held (a copy, a replay), kept as it was.
#[derive(Debug, Clone, PartialEq)]
pub enum NumberList {
    Values(Vec<f64>),
    Json(String),
}

impl NumberList {
    /// The JSON array as stored.
    pub fn to_json(&self) -> std::borrow::Cow<'_, str> {
        match self {
            // Serialising a slice of finite f64 cannot fail.
            NumberList::Values(v) => serde_json::to_string(v).unwrap_or_default().into(),
            NumberList::Json(s) => s.as_str().into(),
        }
    }

    /// The numbers; `None` for stored text that is not an array of numbers.
    pub fn values(&self) -> Option<std::borrow::Cow<'_, [f64]>> {
        match self {
            NumberList::Values(v) => Some(v.as_slice().into()),
            NumberList::Json(s) => serde_json::from_str::<Vec<f64>>(s).ok().map(Into::into),
        }
    }
}

impl From<&str> for NumberList {
    fn from(json: &str) -> NumberList {
        NumberList::Json(json.to_string())
    }
}

impl From<String> for NumberList {
    fn from(json: String) -> NumberList {
        NumberList::Json(json)
    }
}

/// Where and when a request came in: what every audit row of it shares.
#[derive(Debug, Clone)]
pub struct Origin {
    pub request_id: Arc<str>,
    pub client_request_id: Option<Arc<str>>,
    pub received_at: DateTime<Utc>,
    /// The clock every latency of the request is measured from.
    pub arrived: Instant,
    pub client_addr: Option<Arc<str>>,
    /// This replica's name (`INFERLOG_INSTANCE`).
    pub writer: Option<Arc<str>>,
}

impl AuditRecord {
    /// The one row of a rejected request: why, and whatever of the body was read.
    pub fn rejected(
        origin: &Origin,
        model: Option<Arc<str>>,
        model_version: Option<Arc<str>>,
        status: u16,
        error_code: Arc<str>,
        body: Option<&[u8]>,
    ) -> AuditRecord {
        AuditRecord {
            request_id: Arc::clone(&origin.request_id),
            client_request_id: origin.client_request_id.clone(),
            item: 0,
            received_at: origin.received_at,
            model,
            model_version,
            features: None,
            prediction: None,
            label: None,
            status,
            error_code: Some(error_code),
            latency: Latency::UntilStored(origin.arrived),
            client_addr: origin.client_addr.clone(),
            raw_body: body.map(cut_body),
            outliers: None,
            writer: origin.writer.clone(),
            probabilities: None,
            value: None,
        }
    }
}

/// A request named by the server's id, with its arrival time.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RequestRef {
    pub request_id: String,
    pub received_at: String,
}

impl AuditRecord {
    /// The row a store's probe writes and rolls back: it only has to be a valid row.
    pub fn probe(raw_body: Option<String>) -> AuditRecord {
        AuditRecord {
            request_id: "inferlog-store-probe".into(),
            client_request_id: None,
            item: 0,
            received_at: Utc::now(),
            model: None,
            model_version: None,
            features: None,
            prediction: None,
            label: None,
            status: 0,
            error_code: None,
            latency: Latency::Answered(0),
            client_addr: None,
            raw_body,
            outliers: None,
            writer: None,
            probabilities: None,
            value: None,
        }
    }
}

/// What an audited prediction should have answered: a classifier's class name, a regressor's
/// number (finite). In JSON, the string or the number.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum Truth {
    Label(String),
    Value(f64),
}

impl Truth {
    /// From the `label` and `value` columns of a feedback row (exactly one is set).
    pub fn of_columns(label: Option<String>, value: Option<f64>) -> anyhow::Result<Truth> {
        match (label, value) {
            (Some(label), None) => Ok(Truth::Label(label)),
            (None, Some(value)) => Ok(Truth::Value(value)),
            _ => anyhow::bail!("a feedback row holds neither or both of a label and a value"),
        }
    }

    pub fn label(&self) -> Option<&str> {
        match self {
            Truth::Label(label) => Some(label),
            Truth::Value(_) => None,
        }
    }

    pub fn value(&self) -> Option<f64> {
        match self {
            Truth::Label(_) => None,
            Truth::Value(v) => Some(*v),
        }
    }
}

/// The truth of an audited prediction, as `POST /feedback` or a copy brings it.
#[derive(Debug, Clone)]
pub struct Feedback {
    pub request_id: String,
    pub item: i64,
    pub truth: Truth,
    pub received_at: DateTime<Utc>,
    pub client_addr: Option<String>,
}

/// A feedback row read back, with its id in the store (the position a copy resumes from).
#[derive(Debug, Clone)]
pub struct StoredFeedback {
    pub id: i64,
    pub feedback: Feedback,
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

/// A row as read back from the store. Fields are in the order of
/// [`crate::audit::columns::ALL`] (a test holds them to it), which is also the order of
/// the JSON-lines export.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StoredRecord {
    /// Assigned by the store (absent from a spill file's lines, which are not stored yet).
    #[serde(default)]
    pub id: i64,
    pub request_id: String,
    pub item: i64,
    pub received_at: String,
    pub model: Option<String>,
    pub model_version: Option<String>,
    /// Kept as the JSON text stored, so it is written out as a JSON array without re-parsing.
    #[schema(value_type = Option<Vec<f64>>)]
    pub features: Option<Box<serde_json::value::RawValue>>,
    pub prediction: Option<i64>,
    pub label: Option<String>,
    pub status: i64,
    pub error_code: Option<String>,
    pub latency_us: i64,
    pub client_addr: Option<String>,
    pub raw_body: Option<String>,
    #[schema(value_type = Option<Vec<String>>)]
    pub outliers: Option<Box<serde_json::value::RawValue>>,
    pub client_request_id: Option<String>,
    /// The replica that wrote the row (absent from older spill files' lines).
    #[serde(default)]
    pub writer: Option<String>,
    /// The probability of each class, in class order (answered rows of classifiers; absent
    /// from older rows and spill files' lines).
    #[serde(default)]
    #[schema(value_type = Option<Vec<f64>>)]
    pub probabilities: Option<Box<serde_json::value::RawValue>>,
    /// A regressor's answer (answered rows of regressors; absent from older rows and spill
    /// files' lines).
    #[serde(default)]
    pub value: Option<f64>,
}

impl StoredRecord {
    /// The row as a record to write again (to another store, or from a spill file): its
    /// latency as stored, its time parsed back.
    pub fn into_record(self) -> anyhow::Result<AuditRecord> {
        use anyhow::Context;
        let received_at = DateTime::parse_from_rfc3339(&self.received_at)
            .context("received_at is not an RFC 3339 time")?
            .with_timezone(&Utc);
        let text = |v: Option<String>| v.map(Arc::<str>::from);
        Ok(AuditRecord {
            request_id: self.request_id.into(),
            client_request_id: text(self.client_request_id),
            item: u32::try_from(self.item).context("item out of range")?,
            received_at,
            model: text(self.model),
            model_version: text(self.model_version),
            features: self.features.map(|f| NumberList::Json(f.get().to_string())),
            prediction: self
                .prediction
                .map(u32::try_from)
                .transpose()
                .context("prediction out of range")?,
            label: text(self.label),
            status: u16::try_from(self.status).context("status out of range")?,
            error_code: text(self.error_code),
            latency: Latency::Answered(u64::try_from(self.latency_us).unwrap_or(0)),
            client_addr: text(self.client_addr),
            raw_body: self.raw_body,
            outliers: self.outliers.map(|f| f.get().to_string()),
            writer: text(self.writer),
            probabilities: self
                .probabilities
                .map(|p| NumberList::Json(p.get().to_string())),
            value: self.value,
        })
    }
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

    #[test]
    fn durable_latency_counts_until_the_row_is_stored() {
        let arrived = Instant::now();
        let stored = arrived + std::time::Duration::from_micros(1500);
        assert_eq!(Latency::UntilStored(arrived).micros(stored), 1500);
        assert_eq!(Latency::Answered(7).micros(stored), 7);
        assert_eq!(micros_between(stored, arrived), 0);
    }
}
