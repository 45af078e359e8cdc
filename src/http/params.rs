//! Query-string parameters: the filters, cursor, limit and format of the audit routes, and the
//! model and time window of the monitoring routes. Unknown and repeated parameters are errors
//! that name the parameter: a typo in a filter must not silently widen what is returned.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::error::{ApiError, ParamError};
use std::sync::OnceLock;

use clap::{Args, FromArgMatches};

use crate::audit::filter::{self, FilterArgs};
use crate::audit::{AuditFilter, Cursor, Order};
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

/// The paging parameters of `GET /audit`, for the API's documentation (its filters are
/// [`FilterArgs`]; [`parse_query`] reads both, and a test holds the documentation to the names
/// it takes).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
pub struct PageParams {
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

/// Parses `/audit` query pairs (`summary`: the filters only). Unknown and repeated parameters
/// are errors: a typo in a filter must not silently widen what is returned.
pub fn parse_query(pairs: &[(String, String)], summary: bool) -> Result<AuditQuery, ParamError> {
    let mut q = AuditQuery {
        limit: DEFAULT_LIMIT,
        ..AuditQuery::default()
    };
    let mut order = None;
    let mut filters = Vec::new();
    let mut seen: Vec<&str> = Vec::new();
    for (key, value) in pairs {
        let k = key.as_str();
        if seen.contains(&k) {
            return Err(bad(k, "given more than once"));
        }
        match k {
            "order" if !summary => order = Some(parse_order(value)?),
            "limit" if !summary => {
                q.limit = value
                    .parse::<usize>()
                    .ok()
                    .filter(|l| (1..=MAX_LIMIT).contains(l))
                    .ok_or_else(|| bad(k, format!("must be a number from 1 to {MAX_LIMIT}")))?
            }
            "cursor" if !summary => q.cursor = Some(decode_cursor(value)?),
            "format" if !summary => q.format = parse_format(value)?,
            _ if is_filter(k) => filters.push((k, value.as_str())),
            _ => return Err(bad(&escape_controls(k), "is not a known parameter")),
        }
        seen.push(k);
    }
    // Data Capture records gather the rows of a request, which are consecutive oldest first.
    if q.format == Format::Sagemaker {
        if order == Some(Order::Desc) {
            return Err(bad(
                "order",
                "must be asc with format=sagemaker (requests oldest first)",
            ));
        }
        order = Some(Order::Asc);
    }
    q.filter = parse_filters(&filters)?
        .in_order(order.unwrap_or_default())
        .map_err(|(name, reason)| bad(name, reason))?;
    Ok(q)
}

fn parse_order(value: &str) -> Result<Order, ParamError> {
    match value {
        "asc" => Ok(Order::Asc),
        "desc" => Ok(Order::Desc),
        _ => Err(bad("order", "must be asc or desc")),
    }
}

fn parse_format(value: &str) -> Result<Format, ParamError> {
    match value {
        "json" => Ok(Format::Json),
        "csv" => Ok(Format::Csv),
        "jsonl" => Ok(Format::Jsonl),
        "sagemaker" => Ok(Format::Sagemaker),
        _ => Err(bad("format", "must be json, csv, jsonl or sagemaker")),
    }
}

/// The filters as clap reads `inferlog audit`'s flags ([`FilterArgs`]), without help or
/// version flags: a query's filters go through the same declaration.
fn filter_command() -> &'static clap::Command {
    static COMMAND: OnceLock<clap::Command> = OnceLock::new();
    COMMAND.get_or_init(|| {
        FilterArgs::augment_args(
            clap::Command::new("filters")
                .no_binary_name(true)
                .disable_help_flag(true)
                .disable_version_flag(true),
        )
    })
}

fn is_filter(name: &str) -> bool {
    filter_command().get_arguments().any(|a| a.get_id() == name)
}

/// Filter pairs, each `name=value` read as the flag `--name=value`.
fn parse_filters(pairs: &[(&str, &str)]) -> Result<FilterArgs, ParamError> {
    let flags = pairs
        .iter()
        .map(|(name, value)| format!("--{}={value}", name.replace('_', "-")));
    let matches = filter_command()
        .clone()
        .try_get_matches_from(flags)
        .map_err(refusal)?;
    FilterArgs::from_arg_matches(&matches).map_err(refusal)
}

/// A filter clap refused, as the parameter and why (the value parsers' own words, or the
/// values a choice takes).
fn refusal(e: clap::Error) -> ParamError {
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    let name = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(flag)) => flag
            .trim_start_matches('-')
            .split([' ', '='])
            .next()
            .unwrap_or_default()
            .replace('-', "_"),
        _ => String::from("query"),
    };
    let reason = match (e.kind(), e.get(ContextKind::ValidValue)) {
        (ErrorKind::InvalidValue, Some(ContextValue::Strings(values))) => {
            format!("must be {}", one_of(values))
        }
        _ => std::error::Error::source(&e)
            .map(ToString::to_string)
            .unwrap_or_else(|| "is not valid".to_string()),
    };
    bad(&name, reason)
}

/// `a, b or c`.
fn one_of(values: &[String]) -> String {
    match values {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

fn parse_time(name: &str, value: &str) -> Result<DateTime<Utc>, ParamError> {
    filter::parse_time(value).map_err(|reason| bad(name, reason))
}

fn nonempty(name: &str, value: &str) -> Result<String, ParamError> {
    filter::nonempty(value).map_err(|reason| bad(name, reason))
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
mod tests;
