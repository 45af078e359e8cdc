//! The Open Inference Protocol v2 (REST), as KServe, Triton and Seldon MLServer clients call
//! it (`tritonclient`, `kserve`): server and model metadata, health, and inference. Inference
//! is served like `/predict` (the same audit rows, log line and metrics, in
//! [`crate::http::serving`]); the request's `id` is the client's request id, stored and echoed.
//! Errors are `{"error": "<message>"}` with inferlog's `code` and `request_id` beside it (the
//! middleware shapes them for these routes); parsing is in [`crate::oip`].

use actix_web::{get, post};
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::http::body::check_content_type;
use crate::http::error::{ApiError, OipErrorBody};
use crate::http::params::check_model_name;
use crate::http::request::{RequestId, RequestMeta};
use crate::http::serving::{Protocol, audited};
use crate::http::state::AppState;
use crate::input::{InputError, PredictInput};
use crate::model::Model;
use crate::oip::{
    self, InferRequest, InferResponse, ModelMetadata, Output, RawRequest, ServerMetadata,
};
use crate::prediction::Prediction;
use crate::text::{cap, escape_controls};

/// Longest model name kept in an audit row, in bytes (as `/models/{name}/predict` keeps).
const MAX_MODEL_NAME: usize = 256;

/// Server metadata (Open Inference Protocol).
#[utoipa::path(get, path = "/v2", tag = "open inference protocol",
    responses((status = 200, description = "Name, version, extensions", body = ServerMetadata)))]
#[get("/v2", name = "/v2")]
pub async fn server_metadata() -> HttpResponse {
    HttpResponse::Ok().json(oip::server_metadata())
}

#[derive(Serialize, ToSchema)]
#[schema(as = V2Live)]
pub struct Live {
    live: bool,
}

#[derive(Serialize, ToSchema)]
#[schema(as = V2Ready)]
pub struct Ready {
    ready: bool,
    /// Why not, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = V2ModelReady)]
pub struct ModelReady {
    name: String,
    ready: bool,
    /// Why not, when not ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// Server liveness (Open Inference Protocol).
#[utoipa::path(get, path = "/v2/health/live", tag = "open inference protocol", operation_id = "v2_live",
    responses((status = 200, description = "Alive", body = Live)))]
#[get("/v2/health/live", name = "/v2/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Live { live: true })
}

/// Server readiness (Open Inference Protocol): follows `/health/ready`.
#[utoipa::path(get, path = "/v2/health/ready", tag = "open inference protocol", operation_id = "v2_ready",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready, and why", body = Ready),
    ))]
#[get("/v2/health/ready", name = "/v2/health/ready")]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    match state.not_ready().await {
        None => HttpResponse::Ok().json(Ready {
            ready: true,
            reason: None,
        }),
        Some(reason) => HttpResponse::ServiceUnavailable().json(Ready {
            ready: false,
            reason: Some(reason),
        }),
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

/// Model metadata (Open Inference Protocol).
#[utoipa::path(get, path = "/v2/models/{name}", tag = "open inference protocol",
    params(("name" = String, Path, description = "A model served")),
    responses(
        (status = 200, description = "Name, versions, inputs, outputs", body = ModelMetadata),
        (status = 404, description = "No such model (`unknown_model`)", body = OipErrorBody),
    ))]
#[get("/v2/models/{name}", name = "/v2/models/{name}")]
pub async fn model_metadata(
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    metadata(&state, &path)
}

/// Model metadata at a version (Open Inference Protocol): 404 for a version not served.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}", tag = "open inference protocol",
    params(
        ("name" = String, Path, description = "A model served"),
        ("version" = String, Path, description = "The version it serves"),
    ),
    responses(
        (status = 200, description = "Name, versions, inputs, outputs", body = ModelMetadata),
        (status = 404, description = "No such model or version (`unknown_model`, `not_found`)", body = OipErrorBody),
    ))]
#[get(
    "/v2/models/{name}/versions/{version}",
    name = "/v2/models/{name}/versions/{version}"
)]
pub async fn model_metadata_at(
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    metadata(&state, &path)
}

/// A model's metadata, at the version the path names or the one served.
fn metadata(state: &AppState, path: &ModelPath) -> Result<HttpResponse, ApiError> {
    let model = served(state, &path.name, path.version.as_deref())?;
    Ok(HttpResponse::Ok().json(oip::model_metadata(&model)))
}

/// Model readiness (Open Inference Protocol): the model is served and the server is ready.
#[utoipa::path(get, path = "/v2/models/{name}/ready", tag = "open inference protocol",
    params(("name" = String, Path, description = "A model served")),
    responses(
        (status = 200, description = "Ready", body = ModelReady),
        (status = 404, description = "No such model (`unknown_model`)", body = OipErrorBody),
        (status = 503, description = "Not ready, and why", body = ModelReady),
    ))]
#[get("/v2/models/{name}/ready", name = "/v2/models/{name}/ready")]
pub async fn model_ready(
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    readiness(&state, &path).await
}

/// Model readiness at a version (Open Inference Protocol): 404 for a version not served.
#[utoipa::path(get, path = "/v2/models/{name}/versions/{version}/ready", tag = "open inference protocol",
    params(
        ("name" = String, Path, description = "A model served"),
        ("version" = String, Path, description = "The version it serves"),
    ),
    responses(
        (status = 200, description = "Ready", body = ModelReady),
        (status = 404, description = "No such model or version (`unknown_model`, `not_found`)", body = OipErrorBody),
        (status = 503, description = "Not ready, and why", body = ModelReady),
    ))]
#[get(
    "/v2/models/{name}/versions/{version}/ready",
    name = "/v2/models/{name}/versions/{version}/ready"
)]
pub async fn model_ready_at(
    state: web::Data<AppState>,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    readiness(&state, &path).await
}

/// A model's readiness, at the version the path names or the one served.
async fn readiness(state: &AppState, path: &ModelPath) -> Result<HttpResponse, ApiError> {
    let model = served(state, &path.name, path.version.as_deref())?;
    Ok(match state.not_ready().await {
        None => HttpResponse::Ok().json(ModelReady {
            name: model.name().to_string(),
            ready: true,
            reason: None,
        }),
        Some(reason) => HttpResponse::ServiceUnavailable().json(ModelReady {
            name: model.name().to_string(),
            ready: false,
            reason: Some(reason),
        }),
    })
}

/// The protocol's inference request and answer.
struct Infer;

impl Protocol for Infer {
    type Parsed = (Option<String>, Vec<Output>);

    /// Binary tensor data (Triton's extension) is refused before the body is read: it would
    /// not parse as JSON. The type is checked as `/predict` checks it: none (what tritonclient
    /// sends) or JSON is read, a declared other type is a 415.
    fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        if req.headers().contains_key(oip::BINARY_HEADER) {
            return Err(oip::binary_refused().into());
        }
        check_content_type(req)
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

/// Inference (Open Inference Protocol), served and audited as `/predict`.
#[utoipa::path(post, path = "/v2/models/{name}/infer", tag = "open inference protocol",
    params(("name" = String, Path, description = "A model served")),
    request_body(content = RawRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The outputs asked for", body = InferResponse),
        (status = 400, description = "Not JSON (`malformed_json`), or a model name holding a control character (`invalid_parameter`)", body = OipErrorBody),
        (status = 404, description = "No such model or version (`unknown_model`, `not_found`)", body = OipErrorBody),
        (status = 413, description = "Body or batch too large (`body_too_large`, `batch_too_large`)", body = OipErrorBody),
        (status = 415, description = "A Content-Type other than JSON (`unsupported_media_type`); none is read as JSON", body = OipErrorBody),
        (status = 422, description = "Not a valid request for the model (`invalid_tensor`, `unsupported_datatype`, `binary_data_unsupported`, …)", body = OipErrorBody),
        (status = 503, description = "Not audited, so not served (`audit_unavailable`)", body = OipErrorBody),
    ))]
#[post("/v2/models/{name}/infer", name = "/v2/models/{name}/infer")]
pub async fn infer(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    inference(&req, body, &state, &meta, &path).await
}

/// Inference at a version (Open Inference Protocol): 404 for a version not served.
#[utoipa::path(post, path = "/v2/models/{name}/versions/{version}/infer", tag = "open inference protocol",
    params(
        ("name" = String, Path, description = "A model served"),
        ("version" = String, Path, description = "The version it serves"),
    ),
    request_body(content = RawRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The outputs asked for", body = InferResponse),
        (status = 400, description = "Not JSON (`malformed_json`), or a model name holding a control character (`invalid_parameter`)", body = OipErrorBody),
        (status = 404, description = "No such model or version (`unknown_model`, `not_found`)", body = OipErrorBody),
        (status = 413, description = "Body or batch too large (`body_too_large`, `batch_too_large`)", body = OipErrorBody),
        (status = 415, description = "A Content-Type other than JSON (`unsupported_media_type`); none is read as JSON", body = OipErrorBody),
        (status = 422, description = "Not a valid request for the model (`invalid_tensor`, `unsupported_datatype`, `binary_data_unsupported`, …)", body = OipErrorBody),
        (status = 503, description = "Not audited, so not served (`audit_unavailable`)", body = OipErrorBody),
    ))]
#[post(
    "/v2/models/{name}/versions/{version}/infer",
    name = "/v2/models/{name}/versions/{version}/infer"
)]
pub async fn infer_at(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
    path: web::Path<ModelPath>,
) -> Result<HttpResponse, ApiError> {
    inference(&req, body, &state, &meta, &path).await
}

/// An inference, with the model (and version) the path names.
async fn inference(
    req: &HttpRequest,
    body: web::Payload,
    state: &AppState,
    meta: &RequestMeta,
    path: &ModelPath,
) -> Result<HttpResponse, ApiError> {
    let model = check_model_name(&path.name)
        .map_err(ApiError::from)
        .and_then(|()| served(state, &path.name, path.version.as_deref()));
    let name: Arc<str> = cap(&escape_controls(&path.name), MAX_MODEL_NAME).into();
    audited(&Infer, req, body, state, meta, name, model).await
}
