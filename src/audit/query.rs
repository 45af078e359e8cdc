//! What `GET /audit` and `inferlog audit` ask of the store: filters, ordering, the pagination
//! cursor and the summary, parsed from query parameters with errors that name the parameter.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::StoredRecord;
#[cfg(test)]
use super::format_time;

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
    pub min_latency_us: Option<i64>,
    pub order: Order,
}

/// A parameter that could not be used, for a 400 that names it.
#[derive(Debug, thiserror::Error)]
#[error("query parameter {name}: {reason}")]
pub struct ParamError {
    pub name: String,
    pub reason: String,
}

fn bad(name: &str, reason: impl Into<String>) -> ParamError {
    ParamError {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// Most rows one page may hold.
pub const MAX_LIMIT: usize = 1000;
pub const DEFAULT_LIMIT: usize = 100;

/// Output of `GET /audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    #[default]
    Json,
    Csv,
    Jsonl,
}

/// Everything `GET /audit` accepts.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub limit: usize,
    pub cursor: Option<i64>,
    pub format: Format,
}

/// Parses `/audit` query pairs. Unknown and repeated parameters are errors: a typo in a filter
/// must not silently widen what is returned.
pub fn parse_query(pairs: &[(String, String)], summary: bool) -> Result<AuditQuery, ParamError> {
    let mut q = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in pairs {
        let k = key.as_str();
        if seen.contains(&k) {
            return Err(bad(k, "given more than once"));
        }
        let f = &mut q.filter;
        match k {
            "since" => f.since = Some(parse_time(k, value)?),
            "until" => f.until = Some(parse_time(k, value)?),
            "model" => f.model = Some(nonempty(k, value)?),
            "model_version" => f.model_version = Some(nonempty(k, value)?),
            "label" => f.label = Some(nonempty(k, value)?),
            "request_id" => f.request_id = Some(nonempty(k, value)?),
            "status" => {
                f.status = match value.as_str() {
                    "ok" => StatusFilter::Ok,
                    "rejected" => StatusFilter::Rejected,
                    "all" => StatusFilter::All,
                    _ => return Err(bad(k, "must be ok, rejected or all")),
                }
            }
            "min_latency_us" => {
                f.min_latency_us = Some(
                    value
                        .parse::<i64>()
                        .ok()
                        .filter(|v| *v >= 0)
                        .ok_or_else(|| bad(k, "must be a whole number of microseconds"))?,
                )
            }
            "order" if !summary => {
                f.order = match value.as_str() {
                    "asc" => Order::Asc,
                    "desc" => Order::Desc,
                    _ => return Err(bad(k, "must be asc or desc")),
                }
            }
            "limit" if !summary => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| bad(k, format!("must be a number from 1 to {MAX_LIMIT}")))?
            }
            "cursor" if !summary => q.cursor = Some(decode_cursor(value)?),
            "format" if !summary => {
                q.format = match value.as_str() {
                    "json" => Format::Json,
                    "csv" => Format::Csv,
                    "jsonl" => Format::Jsonl,
                    _ => return Err(bad(k, "must be json, csv or jsonl")),
                }
            }
            _ => {
                return Err(bad(
                    &crate::error::escape_controls(k),
                    "is not a known parameter",
                ));
            }
        }
        seen.push(k);
    }
    if let (Some(s), Some(u)) = (q.filter.since, q.filter.until)
        && s > u
    {
        return Err(bad("since", "is later than until"));
    }
    Ok(q)
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ParamError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .map_err(|_| {
            bad(
                name,
                "must be an RFC 3339 time such as 2026-11-27T10:00:00Z",
            )
        })
}

fn nonempty(name: &str, value: &str) -> Result<String, ParamError> {
    if value.is_empty() {
        Err(bad(name, "is empty"))
    } else {
        Ok(value.to_string())
    }
}

/// Cursors are opaque to clients; today they are the last row id, in hex, behind a prefix.
pub fn encode_cursor(id: i64) -> String {
    format!("c{id:x}")
}

pub fn decode_cursor(s: &str) -> Result<i64, ParamError> {
    s.strip_prefix('c')
        .and_then(|h| i64::from_str_radix(h, 16).ok())
        .filter(|id| *id >= 0)
        .ok_or_else(|| bad("cursor", "is not a cursor this service gave out"))
}

/// One page of records and where the next one starts.
#[derive(Debug, Serialize)]
pub struct Page {
    pub records: Vec<StoredRecord>,
    pub next_cursor: Option<String>,
}

/// Counts and latency percentiles over a filtered range.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Summary {
    pub rows: i64,
    pub requests: i64,
    pub by_model: Vec<Count>,
    pub by_label: Vec<Count>,
    pub by_status: Vec<Count>,
    pub by_error_code: Vec<Count>,
    pub latency_us: Latency,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Count {
    pub key: Option<String>,
    pub count: i64,
}

/// Latency of the rows in the range (nearest-rank percentiles); null when there are none.
#[derive(Debug, Clone, Serialize, PartialEq, Default)]
pub struct Latency {
    pub p50: Option<i64>,
    pub p90: Option<i64>,
    pub p99: Option<i64>,
    pub max: Option<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_every_parameter() {
        let q = parse_query(
            &pairs(&[
                ("since", "2026-11-27T10:00:00Z"),
                ("until", "2026-11-27T12:00:00+01:00"),
                ("model", "iris"),
                ("status", "rejected"),
                ("min_latency_us", "50"),
                ("limit", "10"),
                ("order", "asc"),
                ("cursor", &encode_cursor(255)),
                ("format", "csv"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(q.limit, 10);
        assert_eq!(q.cursor, Some(255));
        assert_eq!(q.format, Format::Csv);
        assert_eq!(q.filter.status, StatusFilter::Rejected);
        assert_eq!(q.filter.order, Order::Asc);
        assert_eq!(
            format_time(&q.filter.until.unwrap()),
            "2026-11-27T11:00:00.000000Z"
        );
    }

    #[test]
    fn errors_name_the_parameter() {
        for (k, v) in [
            ("since", "yesterday"),
            ("limit", "0"),
            ("limit", "1001"),
            ("status", "fine"),
            ("cursor", "123"),
            ("order", "up"),
            ("min_latency_us", "-1"),
            ("model", ""),
            ("colour", "red"),
        ] {
            let e = parse_query(&pairs(&[(k, v)]), false).unwrap_err();
            assert_eq!(e.name, k, "{e}");
        }
        let e = parse_query(&pairs(&[("model", "a"), ("model", "b")]), false).unwrap_err();
        assert_eq!(e.name, "model");
        assert!(parse_query(&pairs(&[("limit", "5")]), true).is_err());
    }
}
