//! What a reader asks of the store: row filters, the walk order, and the summary it gets back.
//! The filters are declared once ([`FilterArgs`]): the query parameters of the audit routes,
//! the flags of `inferlog audit` and their documentation all come from it.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::record::StoredRecord;

/// Which rows by HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum StatusFilter {
    /// Answered predictions (status 200).
    Ok,
    /// Rejected requests (any other status).
    Rejected,
    #[default]
    All,
}

/// Order of the walk, by insertion (the row id, which follows arrival).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    Asc,
    /// Newest first (the default).
    #[default]
    Desc,
}

/// The audit reads' filters, declared once: `inferlog audit` takes them as flags (clap), the
/// HTTP routes as query parameters of the same names (parsed through the same declaration,
/// `--name=value` for `name=value`), and the API documentation lists them from here.
#[derive(Debug, Clone, Default, PartialEq, clap::Args, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FilterArgs {
    /// Rows received at or after this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub since: Option<DateTime<Utc>>,
    /// Rows received before this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub until: Option<DateTime<Utc>>,
    /// Rows of this model.
    #[arg(long, value_parser = nonempty)]
    #[param(min_length = 1)]
    pub model: Option<String>,
    /// Rows of this version of a model.
    #[arg(long, value_parser = nonempty)]
    #[param(min_length = 1)]
    pub model_version: Option<String>,
    /// Rows predicted with this label.
    #[arg(long, value_parser = nonempty)]
    #[param(min_length = 1)]
    pub label: Option<String>,
    /// `ok` (answered), `rejected` or `all` (the default).
    #[arg(long, value_enum, default_value_t = StatusFilter::All)]
    #[param(value_type = Option<String>, pattern = "^(ok|rejected|all)$")]
    pub status: StatusFilter,
    /// The server's id of a request.
    #[arg(long, value_parser = nonempty)]
    #[param(min_length = 1)]
    pub request_id: Option<String>,
    /// The `X-Request-Id` (or OIP `id`) a client sent (several requests may share one).
    #[arg(long, value_parser = nonempty)]
    #[param(min_length = 1)]
    pub client_request_id: Option<String>,
    /// Rows at least this slow, in microseconds.
    #[arg(long, value_parser = latency_us)]
    #[param(minimum = 0)]
    pub min_latency_us: Option<i64>,
}

impl FilterArgs {
    /// The filter of a walk in `order`; refused when `since` is later than `until` (the name
    /// of the bound at fault, and why).
    pub fn in_order(&self, order: Order) -> Result<AuditFilter, (&'static str, &'static str)> {
        if let (Some(s), Some(u)) = (self.since, self.until)
            && s > u
        {
            return Err(("since", "is later than until"));
        }
        Ok(AuditFilter {
            since: self.since,
            until: self.until,
            model: self.model.clone(),
            model_version: self.model_version.clone(),
            label: self.label.clone(),
            status: self.status,
            request_id: self.request_id.clone(),
            client_request_id: self.client_request_id.clone(),
            min_latency_us: self.min_latency_us,
            order,
        })
    }
}

/// An RFC 3339 time (a value of a filter; the error says what it must be).
pub fn parse_time(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .map_err(|_| {
            // A `+` sent unencoded in a query string arrives as a space.
            let hint = if value.contains(' ') {
                "; a + in the offset must be sent encoded, as %2B"
            } else {
                ""
            };
            format!("must be an RFC 3339 time such as 2026-11-27T10:00:00Z{hint}")
        })
}

/// A text filter: not empty, no NUL (nothing stored holds one, and PostgreSQL refuses it as a
/// parameter).
pub fn nonempty(value: &str) -> Result<String, String> {
    if value.is_empty() {
        Err("is empty".into())
    } else if value.contains('\0') {
        Err("contains a NUL character".into())
    } else {
        Ok(value.to_string())
    }
}

/// A latency bound: a whole number of microseconds, zero or more.
fn latency_us(value: &str) -> Result<i64, String> {
    value
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| "must be a whole number of microseconds".into())
}

/// Row filters; every one that is set must hold.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuditFilter {
    /// Inclusive lower bound on `received_at`.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound on `received_at`.
    pub until: Option<DateTime<Utc>>,
    pub model: Option<String>,
    pub model_version: Option<String>,
    pub label: Option<String>,
    pub status: StatusFilter,
    pub request_id: Option<String>,
    /// The `X-Request-Id` clients sent (several requests may share one).
    pub client_request_id: Option<String>,
    pub min_latency_us: Option<i64>,
    pub order: Order,
}

/// Where a walk through the audit rows stands: after row `id` in id order; for a store with
/// several writers read in ascending order (PostgreSQL), after row `id` of transaction `txid`
/// in commit-safe order (see the PostgreSQL backend's `page`); newest first, after row `id`
/// received at `at` (microseconds since 1970) in (arrival, id) order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub id: i64,
    pub txid: Option<i64>,
    pub at: Option<i64>,
}

impl Cursor {
    /// Before the first row.
    pub const START: Cursor = Cursor {
        id: 0,
        txid: None,
        at: None,
    };

    pub fn after_id(id: i64) -> Cursor {
        Cursor {
            id,
            txid: None,
            at: None,
        }
    }

    /// Newest first: after `record` in (arrival, id) order.
    pub fn before(record: &StoredRecord) -> Cursor {
        Cursor {
            id: record.id,
            txid: None,
            at: chrono::DateTime::parse_from_rfc3339(&record.received_at)
                .ok()
                .map(|t| t.timestamp_micros()),
        }
    }

    /// The arrival time of `at` as stored (RFC 3339, microseconds, UTC).
    pub fn at_text(&self) -> Option<String> {
        self.at
            .and_then(chrono::DateTime::from_timestamp_micros)
            .map(|t| super::record::format_time(&t))
    }
}

/// The most recent answered rows of a model, for drift: their values row-major (the rows that
/// have the model's number of features) and a classifier's predicted classes or a regression
/// model's answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DriftSample {
    pub values: Vec<f64>,
    pub classes: Vec<u32>,
    pub answers: Vec<f64>,
    /// The range held more rows than were asked for.
    pub truncated: bool,
}

impl DriftSample {
    /// The rows in the sample.
    pub fn rows(&self) -> usize {
        self.classes.len() + self.answers.len()
    }
}

/// What an answered row was answered with, for feedback on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServedRow {
    pub model: Option<String>,
    pub label: Option<String>,
}

/// Labelled answered rows with one predicted and one true label.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ConfusionCell {
    pub predicted: String,
    pub actual: String,
    pub count: i64,
}

/// One page of rows, each with the position a walk resumes from after it.
#[derive(Debug, Default)]
pub struct Page {
    pub records: Vec<StoredRecord>,
    pub positions: Vec<Cursor>,
}

impl Page {
    /// A page whose positions are its rows' ids (oldest first), or their arrival and ids
    /// (newest first).
    pub fn of(records: Vec<StoredRecord>, order: Order) -> Page {
        let positions = records
            .iter()
            .map(|r| match order {
                Order::Asc => Cursor::after_id(r.id),
                Order::Desc => Cursor::before(r),
            })
            .collect();
        Page { records, positions }
    }

    pub fn len(&self) -> usize {
        self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Keeps the first `n` rows.
    pub fn truncate(&mut self, n: usize) {
        self.records.truncate(n);
        self.positions.truncate(n);
    }
}

/// Counts and latency percentiles over a filtered range.
#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Summary {
    pub rows: i64,
    pub requests: i64,
    pub by_model: Vec<Count>,
    pub by_label: Vec<Count>,
    pub by_status: Vec<Count>,
    pub by_error_code: Vec<Count>,
    pub latency_us: LatencySummary,
    /// Where the figures come from: the per-minute rollups (latency percentiles within 4%);
    /// the rollups for whole minutes and the rows of the partial minutes at the range's
    /// edges (time bounds inside a minute); or the rows themselves (a filter rollups cannot
    /// answer: label, status, ids, latency).
    pub source: SummarySource,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SummarySource {
    Rollups,
    RollupsAndEdgeRows,
    Rows,
}

#[derive(Debug, Clone, Serialize, PartialEq, ToSchema)]
pub struct Count {
    pub key: Option<String>,
    pub count: i64,
}

/// Latency in µs, arrival to answer, per request (nearest-rank percentiles over one value per
/// request id: a batch of 400 rows counts once, as one answer); null when there are none.
#[derive(Debug, Clone, Serialize, PartialEq, Default, ToSchema)]
pub struct LatencySummary {
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub p95: Option<i64>,
    pub p99: Option<i64>,
    pub max: Option<i64>,
}
