//! The Open Inference Protocol v2 (REST), as KServe, Triton and Seldon MLServer clients call
//! it (`tritonclient`, `kserve`): server and model metadata, health, and inference. Inference
//! is served like `/predict` (the same audit rows, log line and metrics, in
//! [`crate::http::serving`]); the request's `id` is the client's request id, stored and echoed.
//! Errors are `{"error": "<message>"}` with inferlog's `code` and `request_id` beside it (the
//! middleware shapes them for these routes); parsing is in [`crate::oip`].

use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::http::error::ApiError;
use crate::http::request::{RequestId, RequestMeta};
use crate::http::serving::{Protocol, audited};
use crate::http::state::AppState;
use crate::input::{InputError, PredictInput};
use crate::model::Model;
use crate::oip::{self, InferRequest, Output};
use crate::prediction::Prediction;
use crate::text::{cap, escape_controls};

/// Longest model name kept in an audit row, in bytes (as `/models/{name}/predict` keeps).
const MAX_MODEL_NAME: usize = 256;

/// `GET /v2`.
pub async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(oip::server_metadata())
}

/// `GET /v2/health/live`.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"live": true}))
}

/// `GET /v2/health/ready`: follows `/health/ready`.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.not_ready() {
        None => HttpResponse::Ok().json(json!({"ready": true})),
        Some(reason) => {
            HttpResponse::ServiceUnavailable().json(json!({"ready": false, "reason": reason}))
        }
    }
}

/// The model a path names: `{name}`, and `{version}` when given (the version it serves).
fn served(state: &AppState, name: &str, version: Option<&str>) -> Result<Arc<Model>, ApiError> {
    let model = state
        .models
        .current()
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownModel(name.to_string()))?;
    match version {
        Some(v) if v != model.artifact.version => Err(ApiError::NotFound(format!(
            "model {} has no version {}; it serves version {}",
            crate::text::quote(name),
            crate::text::quote(v),
            model.artifact.version
        ))),
        _ => Ok(model),
    }
}

/// `{name}` or `{name}` and `{version}` of a path.
#[derive(serde::Deserialize)]
pub struct ModelPath {
    name: String,
    version: Option<String>,
}

/// `GET /v2/models/{name}[/versions/{version}]`.
pub async fn model_metadata(
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    let model = served(&state, &path.name, path.version.as_deref())?;
    Ok(HttpResponse::Ok().json(oip::model_metadata(&model)))
}

/// `GET /v2/models/{name}[/versions/{version}]/ready`: the model is served and the server is
/// ready.
pub async fn model_ready(
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    let model = served(&state, &path.name, path.version.as_deref())?;
    Ok(match state.not_ready() {
        None => HttpResponse::Ok().json(json!({"name": model.name(), "ready": true})),
        Some(reason) => HttpResponse::ServiceUnavailable().json(json!({
            "name": model.name(), "ready": false, "reason": reason,
        })),
    })
}

/// The protocol's inference request and answer.
struct Infer;

impl Protocol for Infer {
    type Parsed = (Option<String>, Vec<Output>);

    /// Binary tensor data (Triton's extension) is refused before the body is read: it would
    /// not parse as JSON.
    fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if req.headers().contains_key(oip::BINARY_HEADER) {
            return Err(oip::binary_refused().into());
        }
        crate::http::body::check_content_type(req)
    }

    fn parse(
        &self,
        body: &[u8],
        model: &Model,
        max_batch: usize,
    ) -> Result<(PredictInput, Self::Parsed), InputError> {
        let InferRequest { id, outputs, input } = oip::parse_infer(body, model, max_batch)?;
        Ok((input, (id, outputs)))
    }

    fn client_id(&self, (id, _): &Self::Parsed) -> Option<RequestId> {
        id.as_deref().map(|id| RequestId(id.into()))
    }

    fn respond(
        &self,
        prediction: &Prediction,
        meta: &RequestMeta,
        (id, outputs): Self::Parsed,
    ) -> HttpResponse {
        HttpResponse::Ok().json(oip::infer_response(
            prediction,
            &outputs,
            id.as_deref(),
            meta.id.as_str(),
        ))
    }
}

/// `POST /v2/models/{name}[/versions/{version}]/infer`.
pub async fn infer(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    let model = served(&state, &path.name, path.version.as_deref());
    let name: Arc<str> = cap(&escape_controls(&path.name), MAX_MODEL_NAME).into();
    audited(&Infer, &req, body, &state, &meta, name, model).await
}
