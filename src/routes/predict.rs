//! `POST /predict` (the default model) and `POST /models/{name}/predict`.
//!
//! The body is read under the size limit, parsed and validated once into a [`PredictInput`],
//! the model answers, and the same values feed the response and the request's log line.

use std::sync::Arc;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use futures_util::StreamExt;
use serde::Serialize;

use crate::error::ApiError;
use crate::input::parse_predict_body;
use crate::middleware::{PredictionLog, RequestId};
use crate::model::Model;
use crate::startup::AppState;

/// Batches with more rows than this are predicted on the blocking pool, so a large batch does
/// not stall the other requests of its worker.
const INLINE_ROWS: usize = 64;

pub async fn predict_default(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    id: RequestId,
) -> Result<HttpResponse, ApiError> {
    let model = Arc::clone(state.models.default_model());
    serve(req, body, &state, id, model).await
}

pub async fn predict_named(
    req: HttpRequest,
    body: web::Payload,
    state: web::Data<AppState>,
    id: RequestId,
    name: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let model = state
        .models
        .get(&name)
        .cloned()
        .ok_or_else(|| ApiError::UnknownModel(name.into_inner()))?;
    serve(req, body, &state, id, model).await
}

#[derive(Serialize)]
struct PredictResponse<'a> {
    prediction: &'a [u32],
    labels: Vec<&'a str>,
    model: &'a str,
    model_version: &'a str,
    request_id: &'a str,
}

async fn serve(
    req: HttpRequest,
    body: web::Payload,
    state: &AppState,
    id: RequestId,
    model: Arc<Model>,
) -> Result<HttpResponse, ApiError> {
    check_content_type(&req)?;
    let body = read_body(&req, body, state.max_body_bytes).await?;
    let input = Arc::new(parse_predict_body(&body, &model, state.max_batch)?);

    let classes: Arc<[u32]> = if input.rows <= INLINE_ROWS {
        model.predict(input.rows, &input.values)
    } else {
        let (m, i) = (Arc::clone(&model), Arc::clone(&input));
        web::block(move || m.predict(i.rows, &i.values))
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("prediction task failed: {e}")))?
    }
    .map_err(|e| ApiError::Internal(e.into()))?
    .into();

    let mut res = HttpResponse::Ok().json(PredictResponse {
        prediction: &classes,
        labels: classes.iter().map(|&c| model.label(c)).collect(),
        model: model.name(),
        model_version: &model.artifact.version,
        request_id: id.as_str(),
    });
    res.extensions_mut().insert(PredictionLog {
        model,
        input,
        classes,
    });
    Ok(res)
}

/// JSON is expected. A request without a Content-Type is read as JSON too (the tutorial's
/// clients and plain `curl --data` users get an answer, not a 415); any other type is a 415.
fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(value) = req.headers().get(header::CONTENT_TYPE) else {
        return Ok(());
    };
    let ct = value.to_str().unwrap_or("").trim();
    let essence = ct
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    if essence == "application/json" || essence.ends_with("+json") {
        return Ok(());
    }
    Err(ApiError::UnsupportedMediaType(format!(
        "Content-Type must be application/json, got {}",
        crate::error::escape_controls(&format!("{ct:?}"))
    )))
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes.
async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    let mut body = web::BytesMut::with_capacity(declared.unwrap_or(256).min(limit));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|e| {
            ApiError::MalformedJson(format!("could not read the request body: {e}"))
        })?;
        if body.len() + chunk.len() > limit {
            return Err(ApiError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}
