//! `POST /predict` (the default model) and `POST /models/{name}/predict`.
//!
//! A request goes through its stages in order, each in the module its name promises: the body
//! is read ([`crate::http::body`]), parsed and validated once ([`crate::input`]), the model
//! answers and a [`Prediction`] is made ([`crate::prediction`]), its audit rows are handed to
//! the writer ([`crate::audit::AuditSink`]), and the response is built here from the same
//! `Prediction`; the middleware writes the log line from it ([`crate::http::middleware`]).
//!
//! In durable audit mode the answer waits for the rows' commit; a request that cannot be
//! audited is answered 503 and its prediction is not served. Rejected requests are audited
//! too (status, error code, client address and the start of the body).

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, ResponseError, web};
use slog::warn;

use crate::audit::AuditRecord;
use crate::http::body::{check_content_type, read_body};
use crate::http::error::ApiError;
use crate::http::request::RequestMeta;
use crate::http::state::AppState;
use crate::input::{PredictInput, parse_predict_body};
use crate::model::Model;
use crate::prediction::Prediction;
use crate::text::{cap, escape_controls};

/// Longest model name kept in an audit row, in bytes (longer names are cut and marked `…`).
const MAX_MODEL_NAME: usize = 256;

/// Batches with more rows than this are predicted on the blocking pool, so a large batch does
/// not stall the other requests of its worker.
const INLINE_ROWS: usize = 64;

pub async fn predict_default(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
) -> Result<HttpResponse, ApiError> {
    let model = Arc::clone(state.models.current().default_model());
    let name = Arc::clone(&model.shared.name);
    audited(&req, body, &state, &meta, name, Ok(model)).await
}

pub async fn predict_named(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let model = state
        .models
        .current()
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownModel(name.to_string()));
    // The name the client asked for goes into the audit row, escaped and cut like any text a
    // client chooses.
    let name: Arc<str> = cap(&escape_controls(&name), MAX_MODEL_NAME).into();
    audited(&req, body, &state, &meta, name, model).await
}

/// A failed attempt, with whatever of the body was read (for the audit row).
struct Failure {
    error: ApiError,
    body: Option<web::BytesMut>,
}

impl From<ApiError> for Failure {
    fn from(error: ApiError) -> Failure {
        Failure { error, body: None }
    }
}

/// Serves the request; a rejection is queued for the audit trail before it is answered.
async fn audited(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    meta: &RequestMeta,
    model_name: Arc<str>,
    model: Result<Arc<Model>, ApiError>,
) -> Result<HttpResponse, ApiError> {
    let Failure { error, body } = match serve(req, payload, state, meta, model).await {
        Ok(res) => return Ok(res),
        Err(f) => f,
    };
    // An audit failure cannot itself be audited.
    if matches!(error, ApiError::NotAudited(_)) {
        return Err(error);
    }
    let version = state
        .models
        .current()
        .get(&model_name)
        .map(|m| Arc::clone(&m.shared.version));
    let record = AuditRecord::rejected(
        &meta.origin(),
        Some(model_name),
        version,
        error.status_code().as_u16(),
        error.code().into(),
        body.as_deref(),
    );
    match state.audit.submit_rejected(record, meta.clock).await {
        Ok(latency_us) => meta.answered(latency_us),
        Err(e) => warn!(state.logger, "audit row of a rejected request not queued";
            "error" => %e, "request_id" => %meta.id),
    }
    Err(error)
}

async fn serve(
    req: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
    meta: &RequestMeta,
    model: Result<Arc<Model>, ApiError>,
) -> Result<HttpResponse, Failure> {
    let model = model?;
    check_content_type(req)?;
    let limits = &state.limits;
    // The permit keeps the body's share of the body budget until the body is dropped.
    let (body, permit) = read_body(
        req,
        payload,
        limits.max_body_bytes,
        &state.body_budget,
        limits.body_timeout,
    )
    .await?;
    let input = match parse_predict_body(&body, &model, limits.max_batch) {
        Ok(input) => input,
        Err(e) => {
            return Err(Failure {
                error: e.into(),
                body: Some(body),
            });
        }
    };
    drop(body);
    drop(permit);

    let (input, classes) = predict(&model, input).await?;
    let prediction = Prediction::new(model, input, classes, &state.outlier_rule);
    let latency_us = state
        .audit
        .submit(prediction.audit_records(&meta.origin()), meta.clock)
        .await
        .map_err(ApiError::NotAudited)?;
    meta.answered(latency_us);
    state.metrics.record_prediction(&prediction);
    state.drift_windows.record(
        &prediction.model,
        prediction.input.values(),
        &prediction.classes,
    );
    let mut res = HttpResponse::Ok().json(prediction.response(
        meta.id.as_str(),
        meta.client_id.as_ref().map(|c| c.as_str()),
    ));
    res.extensions_mut().insert(prediction);
    Ok(res)
}

/// The model's classes for `input` (which is handed back, to become part of the prediction).
async fn predict(
    model: &Arc<Model>,
    input: PredictInput,
) -> Result<(PredictInput, Vec<u32>), ApiError> {
    if input.rows <= INLINE_ROWS {
        let classes = model
            .predict(input.matrix())
            .map_err(|e| ApiError::Internal(e.into()))?;
        return Ok((input, classes));
    }
    let m = Arc::clone(model);
    let (input, classes) = web::block(move || {
        let classes = m.predict(input.matrix());
        (input, classes)
    })
    .await
    .map_err(|e| ApiError::Internal(anyhow::anyhow!("prediction task failed: {e}")))?;
    Ok((input, classes.map_err(|e| ApiError::Internal(e.into()))?))
}
