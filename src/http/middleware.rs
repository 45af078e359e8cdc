//! The middleware every request passes through: it fixes the request's [`RequestMeta`] (id,
//! arrival, client, clock), counts it in flight, and once the handler is done records the
//! metrics, writes the JSON error body and writes the request's one log line.
//!
//! The latency in the metrics and the log line is the one the handler recorded when its answer
//! was ready (for `/predict`, the one in its audit rows), else the time until the handler
//! returned. Handlers leave what they want logged (for `/predict`, the [`Prediction`]) in the
//! response extensions. Rejected requests are logged at WARN with their error code and reason,
//! server errors at ERROR with the whole cause chain.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::ConnectionType;
use actix_web::http::header::{self, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use slog::{debug, error, info, warn};

use super::connections::Connection;
use super::error::{ErrorInfo, code_for_status, error_body, oip_error_body};
use super::log_values::{self, Features, IfPresent, Path};
use super::request::{CLIENT_REQUEST_ID_HEADER, REQUEST_ID_HEADER, RequestId, RequestMeta};
use super::routes::{PREDICT_ROUTES, PROBE_ROUTES, is_oip, route_label};
use super::state::AppState;
use std::sync::Arc;
use std::time::Instant;

use crate::audit::micros_between;
use crate::metrics::{HttpLabels, Metrics, ReasonLabels, RouteLabels, method_label};
use crate::prediction::Prediction;
use crate::text::{cap, escape_controls};

/// Longest path written to a log line, in bytes.
const MAX_LOGGED_PATH: usize = 256;

pub async fn request_middleware(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let meta = RequestMeta::arrive(req.request());
    // The connection serves a request until this future ends: shutdown leaves it open.
    let _busy = req
        .request()
        .conn_data::<Arc<Connection>>()
        .map(Connection::enter);
    req.extensions_mut().insert(meta.clone());
    // Counts the request as in progress until this future ends (or is dropped).
    let _in_flight = req.app_data::<web::Data<AppState>>().map(|state| {
        // Filtered out before the log queue at the default level; at debug it shows requests
        // that are in progress (for hangs, and for the shutdown test).
        debug!(state.logger, "request started";
            "path" => ?req.path(), "method" => req.method().as_str(),
            "client_request_id" => IfPresent(meta.client_id().as_ref().map(|c| c.as_str())),
            "request_id" => %meta.id);
        state.in_flight.enter()
    });

    // Errors of the handlers arrive as responses; an `Err` here would come from actix itself
    // and is passed on as it is. (No clone of the request may be held across this call: the
    // router needs it unshared.)
    let res = next.call(req).await?.map_into_boxed_body();
    // The log line carries the latency the handler recorded (the audit row's); the duration
    // metric measures arrival to response, as its help text says.
    let latency_us = meta.latency_us();
    let duration_us = micros_between(meta.clock, Instant::now());
    let http_req = res.request().clone();
    let Some(state) = http_req.app_data::<web::Data<AppState>>() else {
        return Ok(res);
    };
    let route = route_label(&http_req);
    record_metrics(&state.metrics, &http_req, route, &res, duration_us);
    let mut res = log_and_shape(state, &http_req, route, res, &meta, latency_us);
    if let Ok(v) = HeaderValue::from_str(meta.id.as_str()) {
        res.headers_mut().insert(REQUEST_ID_HEADER, v);
    }
    if state.in_flight.closing() {
        // Shutting down: the client opens its next request elsewhere.
        res.response_mut()
            .head_mut()
            .set_connection_type(ConnectionType::Close);
    }
    if let Some(client) = &meta.client_id()
        && let Ok(v) = HeaderValue::from_str(client.as_str())
    {
        res.headers_mut().insert(CLIENT_REQUEST_ID_HEADER, v);
    }
    Ok(res)
}

/// Writes the request's log line and gives an error response the JSON error body.
fn log_and_shape(
    state: &AppState,
    http_req: &HttpRequest,
    route: &'static str,
    res: ServiceResponse<BoxBody>,
    meta: &RequestMeta,
    latency_us: u64,
) -> ServiceResponse<BoxBody> {
    let client = meta.client_id();
    // Paths come from clients: a 64 KB one is logged cut, not in full.
    let path = cap(http_req.path(), MAX_LOGGED_PATH);
    let line = Line {
        log: &state.logger,
        id: &meta.id,
        client_id: IfPresent(client.as_ref().map(|c| c.as_str())),
        status: res.status(),
        method: http_req.method().as_str(),
        path: &path,
        latency_us,
    };
    if line.status.is_client_error() || line.status.is_server_error() {
        return line.failed(state, res);
    }
    line.served(route, res.response().extensions().get::<Prediction>());
    res
}

/// What a request's log line names besides its message.
///
/// slog-term prints key-value pairs last-to-first, so the macros below list them in reverse
/// for lines that read `request_id, …, latency_us`.
struct Line<'a> {
    log: &'a slog::Logger,
    id: &'a RequestId,
    client_id: IfPresent<'a>,
    status: actix_web::http::StatusCode,
    method: &'a str,
    path: &'a str,
    latency_us: u64,
}

impl Line<'_> {
    /// The line of an answer with an error status, and the answer with the JSON error body.
    fn failed(&self, state: &AppState, res: ServiceResponse<BoxBody>) -> ServiceResponse<BoxBody> {
        let Line {
            log,
            id,
            client_id,
            status,
            method,
            path,
            latency_us,
        } = *self;
        let known = res.response().extensions().get::<ErrorInfo>().cloned();
        // A handler's own JSON answer with an error status (readiness) is left as it is.
        if known.is_none() && is_json(&res) {
            warn!(log, "request answered with an error status";
                "latency_us" => latency_us, "status" => status.as_u16(), "path" => Path::of(path),
                "method" => method, "request_id" => %id);
            return res;
        }
        let info = known.unwrap_or_else(|| ErrorInfo {
            code: code_for_status(status).into(),
            message: fallback_message(&res),
            candidates: None,
        });
        if status.is_server_error() {
            self.server_error(state, &res, &info);
        } else {
            warn!(log, "request rejected";
                "latency_us" => latency_us, "reason" => %info.message, "code" => %info.code,
                "status" => status.as_u16(), "path" => Path::of(path), "method" => method,
                "client_request_id" => client_id, "request_id" => %id);
        }
        json_error_response(res, &info, id)
    }

    /// A failing audit store refuses every durable request: its cause is an ERROR once per
    /// interval (with the count held back), the other refusals are warnings. Load shedding
    /// (`overloaded`) is a warning, also once per interval: clients can cause it at will.
    fn server_error(&self, state: &AppState, res: &ServiceResponse<BoxBody>, info: &ErrorInfo) {
        let Line {
            log,
            id,
            status,
            method,
            path,
            latency_us,
            ..
        } = *self;
        if info.code == "overloaded" {
            if let Some(held_back) = state.overload_log.admit() {
                warn!(log, "request refused: the server holds its budget of request bodies";
                    "latency_us" => latency_us, "code" => %info.code,
                    "status" => status.as_u16(), "path" => Path::of(path), "method" => method,
                    "refusals_not_logged" => held_back, "request_id" => %id);
            }
            return;
        }
        let admitted = if info.code == "audit_unavailable" {
            state.store_error_log.admit()
        } else {
            Some(0)
        };
        if let Some(held_back) = admitted {
            let cause = res
                .response()
                .error()
                .map(|e| format!("{e:?}"))
                .unwrap_or_default();
            error!(log, "request failed";
                "latency_us" => latency_us, "cause" => %cause, "code" => %info.code,
                "status" => status.as_u16(), "path" => Path::of(path), "method" => method,
                "failures_not_logged" => held_back, "request_id" => %id);
        } else {
            warn!(log, "request failed";
                "latency_us" => latency_us, "code" => %info.code,
                "status" => status.as_u16(), "path" => Path::of(path), "method" => method,
                "request_id" => %id);
        }
    }

    /// The line of an answer: a prediction's (with an outlier warning before it), a probe's
    /// (debug), any other's.
    fn served(&self, route: &'static str, prediction: Option<&Prediction>) {
        let Line {
            log,
            id,
            client_id,
            status,
            method,
            path,
            latency_us,
        } = *self;
        if let Some(p) = prediction {
            if !p.outliers.is_empty() {
                warn!(log, "outlier input";
                    "outliers" => %p.outliers_display(),
                    "model" => p.model.name(), "request_id" => %id);
            }
            info!(log, "prediction served";
                "latency_us" => latency_us,
                "labels" => log_values::labels(p),
                "confidence" => log_values::confidence(p),
                "prediction" => log_values::answers(p),
                "features" => Features::of(p),
                "model_version" => &p.model.artifact.version,
                "model" => p.model.name(), "client_request_id" => client_id, "request_id" => %id);
        } else if PROBE_ROUTES.contains(&route) {
            debug!(log, "request served";
                "latency_us" => latency_us, "status" => status.as_u16(), "path" => Path::of(path),
                "method" => method, "request_id" => %id);
        } else {
            info!(log, "request served";
                "latency_us" => latency_us, "status" => status.as_u16(), "path" => Path::of(path),
                "method" => method, "request_id" => %id);
        }
    }
}

/// Request counters and the latency histogram, by route pattern (bounded label values).
fn record_metrics(
    metrics: &Metrics,
    req: &HttpRequest,
    route: &'static str,
    res: &ServiceResponse<BoxBody>,
    duration_us: u64,
) {
    let status = res.status();
    if status.is_client_error() && PREDICT_ROUTES.contains(&route) {
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
        .observe(duration_us as f64 / 1e6);
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
        Some(e) if !status.is_server_error() => escape_controls(&e.to_string()).into_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_lowercase(),
    }
}

/// Gives an error response the JSON error body, keeping its headers (the error itself was
/// logged already).
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
    let body = if is_oip(req.path()) {
        oip_error_body(info, id.as_str())
    } else {
        error_body(info, Some(id.as_str()))
    };
    let mut new = builder.json(body);
    new.extensions_mut().insert(info.clone());
    ServiceResponse::new(req, new)
}
