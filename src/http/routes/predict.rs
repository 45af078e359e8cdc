//! `POST /predict` (the default model) and `POST /models/{name}/predict`.
//!
//! The stages a request goes through are in [`crate::http::serving`]; this file has the
//! protocol's parsing and answer.

use actix_web::post;
use std::sync::Arc;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::http::error::{ApiError, ErrorBody};
use crate::http::params::check_model_name;
use crate::http::request::RequestMeta;
use crate::http::serving::{Protocol, audited};
use crate::http::state::AppState;
use crate::input::{InputError, PredictInput, PredictRequest, parse_predict_body};
use crate::model::Model;
use crate::prediction::{PredictResponse, Prediction};
use crate::text::{cap, escape_controls};

/// Longest model name kept in an audit row, in bytes (longer names are cut and marked `…`).
const MAX_MODEL_NAME: usize = 256;

/// Predicts with the default model; the answer waits for the audit rows' commit in durable
/// mode.
#[utoipa::path(post, path = "/predict", tag = "predict",
    request_body(content = PredictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The predictions", body = PredictResponse),
        (status = 400, description = "Not JSON (`malformed_json`)", body = ErrorBody),
        (status = 404, description = "No such model (`unknown_model`)", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "Body or batch too large (`body_too_large`, `batch_too_large`)", body = ErrorBody),
        (status = 415, description = "A Content-Type other than JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "Not a valid request for the model (the code names what: `wrong_feature_count`, `invalid_feature`, …)", body = ErrorBody),
        (status = 503, description = "Not audited, so not served (`audit_unavailable`), or the server holds its budget of bodies (`overloaded`)", body = ErrorBody),
    ))]
#[post("/predict", name = "/predict")]
pub async fn predict_default(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
) -> Result<HttpResponse, ApiError> {
    let model = Arc::clone(state.models.current().default_model());
    let name = Arc::clone(&model.shared.name);
    audited(&PredictJson, &req, body, &state, &meta, name, Ok(model)).await
}

/// Predicts with a named model.
#[utoipa::path(post, path = "/models/{name}/predict", tag = "predict",
    params(("name" = String, Path, description = "A model served")),
    request_body(content = PredictRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The predictions", body = PredictResponse),
        (status = 400, description = "Not JSON (`malformed_json`), or a model name holding a control character (`invalid_parameter`)", body = ErrorBody),
        (status = 404, description = "No such model (`unknown_model`)", body = ErrorBody),
        (status = 408, description = "The body did not arrive in time (`body_timeout`)", body = ErrorBody),
        (status = 413, description = "Body or batch too large (`body_too_large`, `batch_too_large`)", body = ErrorBody),
        (status = 415, description = "A Content-Type other than JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "Not a valid request for the model (the code names what: `wrong_feature_count`, `invalid_feature`, …)", body = ErrorBody),
        (status = 503, description = "Not audited, so not served (`audit_unavailable`), or the server holds its budget of bodies (`overloaded`)", body = ErrorBody),
    ))]
#[post("/models/{name}/predict", name = "/models/{name}/predict")]
pub async fn predict_named(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let model = check_model_name(&name)
        .map_err(ApiError::from)
        .and_then(|()| {
            state
                .models
                .current()
                .get(&name)
                .cloned()
                .ok_or_else(|| ApiError::UnknownModel(name.to_string()))
        });
    // The name the client asked for goes into the audit row, escaped and cut like any text a
    // client chooses.
    let name: Arc<str> = cap(&escape_controls(&name), MAX_MODEL_NAME).into();
    audited(&PredictJson, &req, body, &state, &meta, name, model).await
}

/// `/predict`'s JSON: `{"features": …}` in, `{"prediction": …, "labels": …}` out.
struct PredictJson;

impl Protocol for PredictJson {
    type Parsed = ();

    fn parse(
        &self,
        body: &[u8],
        model: &Model,
        max_batch: usize,
    ) -> Result<(PredictInput, ()), InputError> {
        parse_predict_body(body, model, max_batch).map(|input| (input, ()))
    }

    fn respond(&self, prediction: &Prediction, meta: &RequestMeta, _: ()) -> HttpResponse {
        let client_id = meta.client_id();
        HttpResponse::Ok()
            .json(prediction.response(meta.id.as_str(), client_id.as_ref().map(|c| c.as_str())))
    }
}
