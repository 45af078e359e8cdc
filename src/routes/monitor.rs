//! `GET /metrics` (Prometheus) and `GET /monitor/drift` (drift of audited inputs against the
//! training baseline).

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

use crate::audit::AuditFilter;
use crate::audit::query::{ParamError, parse_query};
use crate::error::ApiError;
use crate::error::escape_controls;
use crate::model::Model;
use crate::monitor::drift;
use crate::routes::audit::authorize;
use crate::startup::AppState;

pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state
        .metrics
        .encode()
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("encoding metrics: {e}")))?;
    Ok(HttpResponse::Ok().content_type(CONTENT_TYPE).body(text))
}

/// `?model=&since=&until=`: the model defaults to the default model, the range to everything.
pub async fn drift(
    req: HttpRequest,
    state: web::Data<AppState>,
    params: web::Query<Vec<(String, String)>>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let (model, filter) = model_window(&state, &params)?;
    let (values, classes) = state
        .store
        .drift_rows(model.name(), model.n_features(), &filter)
        .await
        .map_err(|e| ApiError::store("the recent inputs could not be read", &e))?;
    let report = web::block(move || drift::report(&model, &values, &classes, &state.drift_rule))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("drift task failed: {e}")))?;
    Ok(HttpResponse::Ok().json(report))
}

/// The `model`, `since` and `until` parameters of the monitoring routes: the model (default:
/// the default model; 404 if not served) and the time range as an audit filter.
pub fn model_window(
    state: &AppState,
    params: &[(String, String)],
) -> Result<(Arc<Model>, AuditFilter), ApiError> {
    let mut model_name = None;
    let mut range = Vec::new();
    for (k, v) in params {
        match k.as_str() {
            "model" => model_name = Some(v.clone()),
            "since" | "until" => range.push((k.clone(), v.clone())),
            _ => {
                return Err(ApiError::BadParameter(ParamError {
                    name: escape_controls(k).into_owned(),
                    reason: "is not a known parameter (model, since, until)".into(),
                }));
            }
        }
    }
    let filter = parse_query(&range, true)?.filter;
    let model = match model_name {
        Some(name) => state
            .models
            .get(&name)
            .cloned()
            .ok_or(ApiError::UnknownModel(name))?,
        None => Arc::clone(state.models.default_model()),
    };
    Ok((model, filter))
}
