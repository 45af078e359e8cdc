//! Query-string parameters: the filters, cursor, limit and format of the audit routes, and the
//! model and time window of the monitoring routes. Unknown and repeated parameters are errors
//! that name the parameter: a typo in a filter must not silently widen what is returned.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::error::{ApiError, ParamError};
use crate::audit::{AuditFilter, Cursor, Order, StatusFilter};
use crate::model::Model;
use crate::model::registry::LiveModels;
use crate::text::escape_controls;

fn bad(name: &str, reason: impl Into<String>) -> ParamError {
    ParamError {
        name: name.to_string(),
        reason: reason.into(),
    }
}

/// A model name from a URL: no control characters (no model is named with one, and a name
/// holding one is refused rather than looked up and stored escaped).
pub fn check_model_name(name: &str) -> Result<(), ParamError> {
    if name.chars().any(char::is_control) {
        return Err(bad(
            "model",
            format!(
                "{} holds a control character; model names never do",
                crate::text::quote(name)
            ),
        ));
    }
    Ok(())
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
    /// One line per request in SageMaker's Data Capture layout.
    Sagemaker,
}

/// The query parameters of `GET /audit`, for the API's documentation ([`parse_query`] reads
/// them; a test holds the two to the same names).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct AuditParams {
    /// Rows received at or after this RFC 3339 time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// Rows received before this RFC 3339 time.
    #[param(format = DateTime)]
    until: Option<String>,
    #[param(min_length = 1)]
    model: Option<String>,
    #[param(min_length = 1)]
    model_version: Option<String>,
    /// Rows predicted with this label.
    #[param(min_length = 1)]
    label: Option<String>,
    /// `ok`, `rejected` or `all` (the default).
    #[param(pattern = "^(ok|rejected|all)$")]
    status: Option<String>,
    /// The server's id of a request.
    #[param(min_length = 1)]
    request_id: Option<String>,
    /// The `X-Request-Id` (or OIP `id`) a client sent.
    #[param(min_length = 1)]
    client_request_id: Option<String>,
    /// Rows at least this slow.
    #[param(minimum = 0)]
    min_latency_us: Option<i64>,
    /// `desc` (newest first, the default) or `asc`.
    #[param(pattern = "^(asc|desc)$")]
    order: Option<String>,
    /// Rows per page, 1–1000 (default 100).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page.
    #[param(min_length = 1)]
    cursor: Option<String>,
    /// `json` (a page, the default), `csv`, `jsonl` or `sagemaker` (the whole range, streamed).
    #[param(pattern = "^(json|csv|jsonl|sagemaker)$")]
    format: Option<String>,
}

/// The query parameters of `GET /audit/summary`: [`AuditParams`]' filters.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct SummaryParams {
    /// Rows received at or after this RFC 3339 time.
    #[param(format = DateTime)]
    since: Option<String>,
    /// Rows received before this RFC 3339 time.
    #[param(format = DateTime)]
    until: Option<String>,
    #[param(min_length = 1)]
    model: Option<String>,
    #[param(min_length = 1)]
    model_version: Option<String>,
    #[param(min_length = 1)]
    label: Option<String>,
    /// `ok`, `rejected` or `all` (the default).
    #[param(pattern = "^(ok|rejected|all)$")]
    status: Option<String>,
    #[param(min_length = 1)]
    request_id: Option<String>,
    #[param(min_length = 1)]
    client_request_id: Option<String>,
    #[param(minimum = 0)]
    min_latency_us: Option<i64>,
}

/// The query parameters of `GET /audit/timeseries`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct TimeseriesParams {
    /// `1m` (the default), `5m`, `15m`, `1h` or `1d`.
    #[param(pattern = "^(1m|5m|15m|1h|1d)$")]
    bucket: Option<String>,
    /// RFC 3339; rounded down to a bucket (default: 60 buckets before `until`).
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339; rounded up to a bucket (default: the end of the current one).
    #[param(format = DateTime)]
    until: Option<String>,
    #[param(min_length = 1)]
    model: Option<String>,
    #[param(min_length = 1)]
    model_version: Option<String>,
}

/// The query parameters of `/monitor/performance`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct WindowParams {
    /// A model served (default: the default model).
    #[param(min_length = 1)]
    model: Option<String>,
    /// RFC 3339: rows received at or after.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339: rows received before.
    #[param(format = DateTime)]
    until: Option<String>,
}

/// The query parameters of `/monitor/drift`.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct DriftParams {
    /// A model served (default: the default model).
    #[param(min_length = 1)]
    model: Option<String>,
    /// A version of the model (default: the one served now): an older one, served earlier
    /// since start, is compared with its own training baseline.
    #[param(min_length = 1)]
    model_version: Option<String>,
    /// RFC 3339: rows received at or after.
    #[param(format = DateTime)]
    since: Option<String>,
    /// RFC 3339: rows received before.
    #[param(format = DateTime)]
    until: Option<String>,
}

/// Everything `GET /audit` accepts.
#[derive(Debug, Clone, Default)]
pub struct AuditQuery {
    pub filter: AuditFilter,
    pub limit: usize,
    pub cursor: Option<Cursor>,
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
            "client_request_id" => f.client_request_id = Some(nonempty(k, value)?),
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
                    "sagemaker" => Format::Sagemaker,
                    _ => return Err(bad(k, "must be json, csv, jsonl or sagemaker")),
                }
            }
            _ => {
                return Err(bad(&escape_controls(k), "is not a known parameter"));
            }
        }
        seen.push(k);
    }
    if let (Some(s), Some(u)) = (q.filter.since, q.filter.until)
        && s > u
    {
        return Err(bad("since", "is later than until"));
    }
    // Data Capture records gather the rows of a request, which are consecutive oldest first.
    if q.format == Format::Sagemaker {
        if seen.contains(&"order") && q.filter.order == Order::Desc {
            return Err(bad(
                "order",
                "must be asc with format=sagemaker (requests oldest first)",
            ));
        }
        q.filter.order = Order::Asc;
    }
    Ok(q)
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ParamError> {
    DateTime::parse_from_rfc3339(value)
        .map(|t| t.to_utc())
        .map_err(|_| {
            // A `+` sent unencoded in a query string arrives as a space.
            let hint = if value.contains(' ') {
                "; a + in the offset must be sent encoded, as %2B"
            } else {
                ""
            };
            bad(
                name,
                format!("must be an RFC 3339 time such as 2026-11-27T10:00:00Z{hint}"),
            )
        })
}

fn nonempty(name: &str, value: &str) -> Result<String, ParamError> {
    if value.is_empty() {
        Err(bad(name, "is empty"))
    } else if value.contains('\0') {
        // Nothing stored holds one, and PostgreSQL refuses it as a parameter.
        Err(bad(name, "contains a NUL character"))
    } else {
        Ok(value.to_string())
    }
}

/// `/audit/timeseries`: buckets of `bucket_minutes` from `since` to `until` (minutes since the
/// epoch, on bucket boundaries), for one model or all.
#[derive(Debug, Clone, PartialEq)]
pub struct TimeseriesQuery {
    pub bucket: &'static str,
    pub bucket_minutes: i64,
    pub since: i64,
    pub until: i64,
    pub model: Option<String>,
    pub model_version: Option<String>,
}

/// Buckets `/audit/timeseries` answers at most.
pub const MAX_BUCKETS: i64 = 10_080;

/// Buckets by default: the 60 up to and including the current one.
const DEFAULT_BUCKETS: i64 = 60;

/// Parses `/audit/timeseries` query pairs at `now`. `since` is rounded down and `until` up to
/// bucket boundaries; without them, the range is the 60 buckets up to the current one.
pub fn parse_timeseries(
    pairs: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<TimeseriesQuery, ParamError> {
    let mut bucket = ("1m", 1i64);
    let (mut since, mut until, mut model, mut model_version) = (None, None, None, None);
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in pairs {
        let k = key.as_str();
        if seen.contains(&k) {
            return Err(bad(k, "given more than once"));
        }
        match k {
            "bucket" => {
                bucket = match value.as_str() {
                    "1m" => ("1m", 1),
                    "5m" => ("5m", 5),
                    "15m" => ("15m", 15),
                    "1h" => ("1h", 60),
                    "1d" => ("1d", 1440),
                    _ => return Err(bad(k, "must be 1m, 5m, 15m, 1h or 1d")),
                }
            }
            "since" => since = Some(parse_time(k, value)?),
            "until" => until = Some(parse_time(k, value)?),
            "model" => model = Some(nonempty(k, value)?),
            "model_version" => model_version = Some(nonempty(k, value)?),
            _ => return Err(bad(&escape_controls(k), "is not a known parameter")),
        }
        seen.push(k);
    }
    let b = bucket.1;
    let minute = |t: &DateTime<Utc>| t.timestamp().div_euclid(60);
    let round_up = |t: &DateTime<Utc>| {
        let m = minute(t)
            + i64::from(t.timestamp().rem_euclid(60) > 0 || t.timestamp_subsec_nanos() > 0);
        (m + b - 1).div_euclid(b) * b
    };
    let until = match &until {
        Some(t) => round_up(t),
        None => (minute(&now).div_euclid(b) + 1) * b,
    };
    let since = match &since {
        Some(t) => minute(t).div_euclid(b) * b,
        None => until - DEFAULT_BUCKETS * b,
    };
    if since > until {
        return Err(bad("since", "is later than until"));
    }
    if (until - since) / b > MAX_BUCKETS {
        return Err(bad(
            "since",
            format!(
                "asks for more than {MAX_BUCKETS} buckets; use a wider bucket or a shorter range"
            ),
        ));
    }
    Ok(TimeseriesQuery {
        bucket: bucket.0,
        bucket_minutes: b,
        since,
        until,
        model,
        model_version,
    })
}

/// Cursors are opaque to clients: a position in hex behind a prefix, `c<id>` (after a row id)
/// or `t<txid>-<id>` (after a row of a transaction, PostgreSQL's ascending order).
pub fn encode_cursor(c: Cursor) -> String {
    match (c.txid, c.at) {
        (Some(txid), _) => format!("t{txid:x}-{:x}", c.id),
        (None, Some(at)) if at >= 0 => format!("d{at:x}-{:x}", c.id),
        _ => format!("c{:x}", c.id),
    }
}

pub fn decode_cursor(s: &str) -> Result<Cursor, ParamError> {
    // Hex digits only, as they were given out: `from_str_radix` alone would take a sign too.
    let hex = |h: &str| {
        let digits = !h.is_empty() && h.len() <= 16 && h.bytes().all(|b| b.is_ascii_hexdigit());
        digits
            .then(|| i64::from_str_radix(h, 16).ok())
            .flatten()
            .filter(|v| *v >= 0)
    };
    let cursor = if let Some(id) = s.strip_prefix('c') {
        hex(id).map(Cursor::after_id)
    } else if let Some(rest) = s.strip_prefix('t') {
        rest.split_once('-').and_then(|(txid, id)| {
            Some(Cursor {
                id: hex(id)?,
                txid: Some(hex(txid)?),
                at: None,
            })
        })
    } else if let Some(rest) = s.strip_prefix('d') {
        rest.split_once('-').and_then(|(at, id)| {
            Some(Cursor {
                id: hex(id)?,
                txid: None,
                at: Some(hex(at)?),
            })
        })
    } else {
        None
    };
    cursor.ok_or_else(|| bad("cursor", "is not a cursor this service gave out"))
}

/// The `model`, `since` and `until` parameters of the monitoring routes: the model (default:
/// the default model; 404 if not served) and the time range as an audit filter.
///
/// With `versioned` (`/monitor/drift`), `model_version` names a version of that model other
/// than the one served: served earlier since start (a reload replaced it), its rows are
/// compared with its own baseline; a version this server never loaded is a 404.
pub fn model_window(
    models: &LiveModels,
    params: &[(String, String)],
    versioned: bool,
) -> Result<(Arc<Model>, AuditFilter), ApiError> {
    let mut model_name = None;
    let mut version = None;
    let mut range = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "model" if model_name.is_some() => {
                return Err(ApiError::BadParameter(bad("model", "given more than once")));
            }
            "model" => model_name = Some(v.clone()),
            "model_version" if versioned && version.is_some() => {
                return Err(ApiError::BadParameter(bad(
                    "model_version",
                    "given more than once",
                )));
            }
            "model_version" if versioned => version = Some(v.clone()),
            "since" | "until" => range.push((k.clone(), v.clone())),
            _ => {
                return Err(ApiError::BadParameter(bad(
                    &escape_controls(k),
                    if versioned {
                        "is not a known parameter (model, model_version, since, until)"
                    } else {
                        "is not a known parameter (model, since, until)"
                    },
                )));
            }
        }
    }
    let filter = parse_query(&range, true)?.filter;
    let current = models.current();
    let model = match model_name {
        Some(name) => current
            .get(&name)
            .cloned()
            .ok_or(ApiError::UnknownModel(name))?,
        None => Arc::clone(current.default_model()),
    };
    match version {
        Some(v) if v != model.artifact.version => {
            let older = models.version(model.name(), &v).ok_or_else(|| {
                ApiError::NotFound(format!(
                    "model {} has no version {} known to this server (known: {}); a version's \
                     baseline is its artifact, loaded at start or by a reload",
                    crate::text::quote(model.name()),
                    crate::text::quote(&v),
                    models.versions(model.name()).join(", ")
                ))
            })?;
            Ok((older, filter))
        }
        _ => Ok((model, filter)),
    }
}

#[cfg(test)]
mod documented {
    use super::*;
    use utoipa::IntoParams;

    fn names<P: IntoParams>() -> Vec<String> {
        P::into_params(|| None)
            .into_iter()
            .map(|p| p.name)
            .collect()
    }

    /// The documented parameters are the ones the parsers take: each is accepted, and a name
    /// not documented is refused.
    #[test]
    fn documented_parameters_are_the_accepted_ones() {
        let value = |name: &str| match name {
            "since" | "until" => "2026-11-27T00:00:00Z",
            "status" => "ok",
            "order" => "asc",
            "format" => "csv",
            "limit" | "min_latency_us" => "5",
            "cursor" => "c0",
            "bucket" => "5m",
            _ => "x",
        };
        let pairs = |list: &[String]| -> Vec<(String, String)> {
            list.iter()
                .map(|n| (n.clone(), value(n).to_string()))
                .collect()
        };
        let audit = names::<AuditParams>();
        assert_eq!(audit.len(), 13);
        parse_query(&pairs(&audit), false).unwrap();
        let summary = names::<SummaryParams>();
        parse_query(&pairs(&summary), true).unwrap();
        for extra in ["order", "limit", "cursor", "format"] {
            assert!(!summary.contains(&extra.to_string()));
            assert!(
                parse_query(&pairs(&[extra.to_string()]), true).is_err(),
                "{extra}"
            );
        }
        assert!(parse_query(&pairs(&["colour".into()]), false).is_err());
        let now = chrono::Utc::now();
        parse_timeseries(&pairs(&names::<TimeseriesParams>()), now).unwrap();
        assert!(parse_timeseries(&pairs(&["limit".into()]), now).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::format_time;

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
                ("cursor", &encode_cursor(Cursor::after_id(255))),
                ("format", "csv"),
            ]),
            false,
        )
        .unwrap();
        assert_eq!(q.limit, 10);
        assert_eq!(q.cursor, Some(Cursor::after_id(255)));
        let tail = Cursor {
            id: 7,
            txid: Some(1234),
            at: None,
        };
        assert_eq!(decode_cursor(&encode_cursor(tail)).unwrap(), tail);
        let newest_first = Cursor {
            id: 9,
            txid: None,
            at: Some(1_795_737_600_123_456),
        };
        assert_eq!(
            decode_cursor(&encode_cursor(newest_first)).unwrap(),
            newest_first
        );
        assert!(decode_cursor("t12").is_err());
        for signed in [
            "c+10",
            "c-1",
            "t+1-2",
            "t1-+2",
            "d+5-1",
            "c",
            "c 10",
            "c10000000000000000",
        ] {
            assert!(decode_cursor(signed).is_err(), "{signed}");
        }
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
        let e = parse_query(&pairs(&[("since", "2026-11-27T10:00:00 01:00")]), false).unwrap_err();
        assert!(e.reason.contains("%2B"), "{e}");
        let e = parse_query(&pairs(&[("model", "a"), ("model", "b")]), false).unwrap_err();
        assert_eq!(e.name, "model");
        assert!(parse_query(&pairs(&[("limit", "5")]), true).is_err());
    }
}
