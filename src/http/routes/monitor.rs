//! `GET /metrics` (Prometheus), `GET /monitor/drift` (drift of audited inputs against the
//! training baseline) and `GET /monitor/performance` (accuracy from feedback). The monitoring
//! routes follow the access rule of `/audit`: they are derived from users' data.

use actix_web::get;
use actix_web::{HttpResponse, web};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

use crate::http::access::{AuditAccess, MetricsAccess};
use crate::http::error::{ApiError, ErrorBody};
use crate::http::params::{DriftParams, WindowParams, model_window};
use crate::http::state::AppState;
use crate::monitor::drift::DriftReport;
use crate::monitor::performance::PerformanceReport;
use crate::reports;

/// Prometheus metrics. Open, unless a token is set: per-label counts and per-feature drift
/// describe users' data.
#[utoipa::path(get, path = "/metrics", tag = "monitoring",
    responses(
        (status = 200, description = "The Prometheus text exposition", body = String,
         content_type = "text/plain; version=0.0.4; charset=utf-8"),
        (status = 401, description = "The token is needed (`unauthorized`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
#[get("/metrics", name = "/metrics")]
pub async fn metrics(
    _access: MetricsAccess,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}

/// `?model=&model_version=&since=&until=`: the model defaults to the default model, its
/// version to the one served, the range to everything. Whole-minute ranges read the rollups.
#[utoipa::path(get, path = "/monitor/drift", tag = "monitoring", params(DriftParams),
    responses(
        (status = 200, description = "Drift of the model version's rows against its training baseline", body = DriftReport),
        (status = 404, description = "No such model (`unknown_model`), or a version this server never loaded (`not_found`)", body = ErrorBody),
        (status = 400, description = "A parameter is unknown, repeated or malformed (`invalid_parameter`)", body = ErrorBody),
        (status = 401, description = "The token is needed (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a loopback client and no token set (`forbidden`)", body = ErrorBody),
        (status = 503, description = "The store could not be read (`audit_unavailable`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
#[get("/monitor/drift", name = "/monitor/drift")]
pub async fn drift(
    _access: AuditAccess,
    state: web::Data<AppState>,
    params: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (model, filter) = model_window(&state.models, &params, true)?;
    let report = reports::drift(&state.store, &model, &filter, &state.drift_rule)
        .await
        .map_err(|e| ApiError::store("the recent inputs could not be read", &e))?;
    Ok(HttpResponse::Ok().json(report))
}

/// `?model=&since=&until=`: performance over the predictions made in the range that have
/// feedback.
#[utoipa::path(get, path = "/monitor/performance", tag = "monitoring", params(WindowParams),
    responses(
        (status = 200, description = "A classifier's accuracy, per-class scores and confusion matrix, or a regression model's MAE, RMSE, R², mean error and absolute-error percentiles", body = PerformanceReport),
        (status = 404, description = "No such model (`unknown_model`)", body = ErrorBody),
        (status = 400, description = "A parameter is unknown, repeated or malformed (`invalid_parameter`)", body = ErrorBody),
        (status = 401, description = "The token is needed (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a loopback client and no token set (`forbidden`)", body = ErrorBody),
        (status = 503, description = "The store could not be read (`audit_unavailable`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
#[get("/monitor/performance", name = "/monitor/performance")]
pub async fn performance(
    _access: AuditAccess,
    state: web::Data<AppState>,
    params: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    let (model, filter) = model_window(&state.models, &params, false)?;
    let report = reports::performance(&state.store, &model, &filter)
        .await
        .map_err(|e| ApiError::store("the labelled predictions could not be read", &e))?;
    Ok(HttpResponse::Ok().json(report))
}
