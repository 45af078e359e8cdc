//! The middleware every request passes through: it assigns the request id, measures latency,
//! writes the request's log line and gives every error response the JSON error body.
//!
//! One log line per request, written here: handlers leave what they want logged (for
//! `/predict`, a [`PredictionLog`]) in the response extensions. Rejected requests are logged at
//! WARN with their error code and reason, server errors at ERROR with the whole cause chain.

use std::fmt;
use std::future::{Ready, ready};
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, web};
use slog::{debug, error, info, warn};

use crate::error::{ErrorInfo, code_for_status, error_body};
use crate::input::{PredictInput, Shape};
use crate::metrics::{HttpLabels, Metrics, ReasonLabels, RouteLabels, method_label};
use crate::model::Model;
use crate::startup::AppState;

pub const REQUEST_ID_HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// Longest client-supplied request id kept; longer ones are replaced.
const MAX_REQUEST_ID_LEN: usize = 128;

/// The id that ties a request's response, log line and audit rows together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

impl RequestId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A fresh, time-ordered id (UUID v7).
    pub fn generate() -> RequestId {
        RequestId(uuid::Uuid::now_v7().to_string().into())
    }

    /// Keeps a client's `X-Request-Id` only if it is short and made of safe characters, so it
    /// can be echoed in headers and logs without forging anything.
    pub fn from_client(value: &HeaderValue) -> Option<RequestId> {
        let s = value.to_str().ok()?;
        let ok = !s.is_empty()
            && s.len() <= MAX_REQUEST_ID_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.:/+=@".contains(&b));
        ok.then(|| RequestId(s.into()))
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromRequest for RequestId {
    type Error = actix_web::Error;
    type Future = Ready<Result<RequestId, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let id = req.extensions().get::<RequestId>().cloned();
        ready(Ok(id.unwrap_or_else(RequestId::generate)))
    }
}

/// Holds one count of [`AppState::in_flight`] while a request is served.
struct InFlight(Arc<std::sync::atomic::AtomicUsize>);

impl InFlight {
    fn enter(counter: &Arc<std::sync::atomic::AtomicUsize>) -> InFlight {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// When the request arrived: the clock for latency, the calendar for the audit trail.
#[derive(Debug, Clone, Copy)]
pub struct RequestStart {
    pub instant: Instant,
    pub received_at: chrono::DateTime<chrono::Utc>,
}

impl RequestStart {
    pub fn now() -> RequestStart {
        RequestStart {
            instant: Instant::now(),
            received_at: chrono::Utc::now(),
        }
    }
}

impl FromRequest for RequestStart {
    type Error = actix_web::Error;
    type Future = Ready<Result<RequestStart, actix_web::Error>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let start = req.extensions().get::<RequestStart>().copied();
        ready(Ok(start.unwrap_or_else(RequestStart::now)))
    }
}

/// What `/predict` leaves for the request's log line.
pub struct PredictionLog {
    pub model: Arc<Model>,
    pub input: Arc<PredictInput>,
    pub classes: Arc<[u32]>,
    /// Rows with features flagged as outliers: (row, feature indices).
    pub outliers: Vec<(usize, Vec<usize>)>,
}

pub async fn request_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let start = RequestStart::now();
    let id = req
        .headers()
        .get(&REQUEST_ID_HEADER)
        .and_then(RequestId::from_client)
        .unwrap_or_else(RequestId::generate);
    req.extensions_mut().insert(id.clone());
    req.extensions_mut().insert(start);
    // Counts the request as in progress until this future ends (or is dropped).
    let _in_flight = req.app_data::<web::Data<AppState>>().map(|state| {
        // Filtered out before the log queue at the default level; at debug it shows requests
        // that are in progress (for hangs, and for the shutdown test).
        debug!(state.logger, "request started";
            "path" => ?req.path(), "method" => req.method().as_str(), "request_id" => %id);
        InFlight::enter(&state.in_flight)
    });

    // Errors of the handlers arrive as responses; an `Err` here would come from actix itself
    // and is passed on as it is. (No clone of the request may be held across this call: the
    // router needs it unshared.)
    let mut res = next.call(req).await?.map_into_boxed_body();
    let latency_us = start.instant.elapsed().as_micros() as u64;
    let http_req = res.request().clone();
    let Some(state) = http_req.app_data::<web::Data<AppState>>() else {
        return Ok(res);
    };
    let log = &state.logger;
    record_metrics(&state.metrics, &http_req, &res, latency_us);
    // slog-term prints key-value pairs last-to-first, so the macros below list them in reverse
    // for lines that read `request_id, …, latency_us`.
    let status = res.status();
    let method = http_req.method().as_str();
    let path = http_req.path();

    let mut res = if status.is_client_error() || status.is_server_error() {
        let known = res.response().extensions().get::<ErrorInfo>().cloned();
        // A handler's own JSON answer with an error status (readiness) is left as it is.
        if known.is_none() && is_json(&res) {
            if let Ok(v) = HeaderValue::from_str(id.as_str()) {
                res.headers_mut().insert(REQUEST_ID_HEADER, v);
            }
            warn!(log, "request answered with an error status";
                "latency_us" => latency_us, "status" => status.as_u16(), "path" => ?path,
                "method" => method, "request_id" => %id);
            return Ok(res);
        }
        let info = known.unwrap_or_else(|| ErrorInfo {
            code: code_for_status(status).into(),
            message: fallback_message(&res),
        });
        if status.is_server_error() {
            let cause = res
                .response()
                .error()
                .map(|e| format!("{e:?}"))
                .unwrap_or_default();
            error!(log, "request failed";
                "latency_us" => latency_us, "cause" => %cause, "code" => %info.code,
                "status" => status.as_u16(), "path" => ?path, "method" => method,
                "request_id" => %id);
        } else {
            warn!(log, "request rejected";
                "latency_us" => latency_us, "reason" => %info.message, "code" => %info.code,
                "status" => status.as_u16(), "path" => ?path, "method" => method,
                "request_id" => %id);
        }
        json_error_response(res, &info, &id)
    } else {
        if let Some(p) = res.response().extensions().get::<PredictionLog>() {
            if !p.outliers.is_empty() {
                warn!(log, "outlier input";
                    "outliers" => %OutliersDisplay(&p.outliers, &p.model),
                    "model" => p.model.name(), "request_id" => %id);
            }
            info!(log, "prediction served";
                "latency_us" => latency_us,
                "labels" => %ClassesDisplay(&p.classes, Some(&p.model)),
                "prediction" => %ClassesDisplay(&p.classes, None),
                "features" => %FeaturesDisplay(&p.input),
                "model_version" => &p.model.artifact.version,
                "model" => p.model.name(), "request_id" => %id);
        } else if path.starts_with("/health") {
            debug!(log, "request served";
                "latency_us" => latency_us, "status" => status.as_u16(), "path" => ?path,
                "method" => method, "request_id" => %id);
        } else {
            info!(log, "request served";
                "latency_us" => latency_us, "status" => status.as_u16(), "path" => ?path,
                "method" => method, "request_id" => %id);
        }
        res
    };
    if let Ok(v) = HeaderValue::from_str(id.as_str()) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    Ok(res)
}

/// Request counters and the latency histogram, by route pattern (bounded label values).
fn record_metrics(
    metrics: &Metrics,
    req: &HttpRequest,
    res: &ServiceResponse<BoxBody>,
    latency_us: u64,
) {
    let route = crate::routes::route_label(req);
    let status = res.status();
    if status.is_client_error() && route.ends_with("predict") {
        let reason = res
            .response()
            .extensions()
            .get::<ErrorInfo>()
            .map(|i| i.code.to_string())
            .unwrap_or_else(|| code_for_status(status).to_string());
        metrics
            .rejected
            .get_or_create(&ReasonLabels { reason })
            .inc();
    }
    metrics
        .http_duration
        .get_or_create(&RouteLabels { route })
        .observe(latency_us as f64 / 1e6);
    metrics
        .http_requests
        .get_or_create(&HttpLabels {
            route,
            method: method_label(req.method()),
            status: status.as_u16(),
        })
        .inc();
}

fn is_json(res: &ServiceResponse<BoxBody>) -> bool {
    res.headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// A message for actix's own errors: its error text, or the status's reason phrase.
fn fallback_message(res: &ServiceResponse<BoxBody>) -> String {
    let status = res.status();
    match res.response().error() {
        Some(e) if !status.is_server_error() => {
            crate::error::escape_controls(&e.to_string()).into_owned()
        }
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}

/// Replaces the body of an error response with the JSON error body, keeping its headers.
fn json_error_response(
    res: ServiceResponse<BoxBody>,
    info: &ErrorInfo,
    id: &RequestId,
) -> ServiceResponse<BoxBody> {
    let (req, old) = res.into_parts();
    let mut builder = HttpResponse::build(old.status());
    for (name, value) in old.headers() {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            builder.append_header((name.clone(), value.clone()));
        }
    }
    let mut new = builder.json(error_body(info, Some(id.as_str())));
    new.extensions_mut().insert(info.clone());
    ServiceResponse::new(req, new)
}

/// Rows shown in full in a log line; the audit store has every row.
const LOGGED_ROWS: usize = 10;

struct FeaturesDisplay<'a>(&'a PredictInput);

impl fmt::Display for FeaturesDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let input = self.0;
        let write_row = |f: &mut fmt::Formatter<'_>, row: &[f64]| -> fmt::Result {
            f.write_str("[")?;
            for (j, v) in row.iter().enumerate() {
                if j > 0 {
                    f.write_str(",")?;
                }
                write!(f, "{v}")?;
            }
            f.write_str("]")
        };
        match input.shape {
            Shape::Single => write_row(f, input.row(0)),
            Shape::Batch => {
                f.write_str("[")?;
                for i in 0..input.rows.min(LOGGED_ROWS) {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write_row(f, input.row(i))?;
                }
                if input.rows > LOGGED_ROWS {
                    write!(f, ",… +{} rows", input.rows - LOGGED_ROWS)?;
                }
                f.write_str("]")
            }
        }
    }
}

struct OutliersDisplay<'a>(&'a [(usize, Vec<usize>)], &'a Model);

impl fmt::Display for OutliersDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, (row, features)) in self.0.iter().take(LOGGED_ROWS).enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            write!(f, "row {row}: ")?;
            for (k, &j) in features.iter().enumerate() {
                if k > 0 {
                    f.write_str(",")?;
                }
                f.write_str(&self.1.artifact.feature_names[j])?;
            }
        }
        if self.0.len() > LOGGED_ROWS {
            write!(f, "; … +{} rows", self.0.len() - LOGGED_ROWS)?;
        }
        Ok(())
    }
}

struct ClassesDisplay<'a>(&'a [u32], Option<&'a Model>);

impl fmt::Display for ClassesDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[")?;
        for (i, &c) in self.0.iter().take(LOGGED_ROWS).enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            match self.1 {
                Some(model) => write!(f, "{:?}", model.label(c))?,
                None => write!(f, "{c}")?,
            }
        }
        if self.0.len() > LOGGED_ROWS {
            write!(f, ",… +{}", self.0.len() - LOGGED_ROWS)?;
        }
        f.write_str("]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_sane_client_ids_only() {
        let ok = HeaderValue::from_static("req-42_a.b:c");
        assert_eq!(
            RequestId::from_client(&ok).unwrap().as_str(),
            "req-42_a.b:c"
        );
        for bad in ["", "has space", "quote\"", "tab\tx", "ünï"] {
            if let Ok(v) = HeaderValue::from_str(bad) {
                assert!(RequestId::from_client(&v).is_none(), "{bad:?} accepted");
            }
        }
        let long = HeaderValue::from_str(&"a".repeat(129)).unwrap();
        assert!(RequestId::from_client(&long).is_none());
    }
}
