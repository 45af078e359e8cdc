//! `GET /metrics` (Prometheus) and `GET /monitor/drift` (drift of audited inputs against the
//! training baseline).

use actix_web::{HttpRequest, HttpResponse, web};
use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

use crate::audit::query::parse_query;
use crate::error::ApiError;
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
    let mut model_name = None;
    let mut rest = Vec::new();
    for (k, v) in params.iter() {
        match k.as_str() {
            "model" => model_name = Some(v.clone()),
            "since" | "until" => rest.push((k.clone(), v.clone())),
            _ => {
                return Err(ApiError::BadParameter(crate::audit::query::ParamError {
                    name: crate::error::escape_controls(k).into_owned(),
                    reason: "is not a known parameter (model, since, until)".into(),
                }));
            }
        }
    }
    let q = parse_query(&rest, true)?;
    let model = match model_name {
        Some(name) => state
            .models
            .get(&name)
            .cloned()
            .ok_or(ApiError::UnknownModel(name))?,
        None => state.models.default_model().clone(),
    };
    let (values, classes) = state
        .store
        .drift_rows(model.name(), model.n_features(), &q.filter)
        .await
        .map_err(ApiError::Internal)?;
    let report = web::block(move || drift::report(&model, &values, &classes, &state.drift_rule))
        .await
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("drift task failed: {e}")))?;
    Ok(HttpResponse::Ok().json(report))
}
