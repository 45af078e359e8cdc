//! Reading request bodies: the content type, the size limit and the deadline, and decoding a
//! small JSON body into a typed value with errors that say what was expected.

use actix_web::http::header;
use actix_web::{HttpRequest, web};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use super::error::{ApiError, Unprocessable};
use crate::text::escape_controls;

/// JSON is expected. A request without a Content-Type is read as JSON too (the tutorial's
/// clients and plain `curl --data` users get an answer, not a 415); any other type is a 415.
pub fn check_content_type(req: &HttpRequest) -> Result<(), ApiError> {
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
        escape_controls(&format!("{ct:?}"))
    )))
}

/// Reads the whole body, refusing it as soon as it passes `limit` bytes, or when it has not
/// arrived within `timeout`.
pub async fn read_body(
    req: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<web::BytesMut, ApiError> {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::BodyTooLarge { limit });
    }
    // A client that trickles its body (a byte a second) gets a 408 instead of holding the
    // request, its connection and the shutdown drain for as long as it likes.
    let read = async {
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
    };
    actix_web::rt::time::timeout(timeout, read)
        .await
        .map_err(|_| ApiError::BodyTimeout { after: timeout })?
}

/// Decodes a JSON body into `T`: 400 when it is not JSON, 422 naming `expected` when it does
/// not have T's shape.
pub fn decode_json<T: DeserializeOwned>(body: &[u8], expected: &str) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| match e.classify() {
        serde_json::error::Category::Data => ApiError::Unprocessable {
            code: Unprocessable::InvalidBody,
            message: format!("expected {expected}: {e}"),
        },
        _ => ApiError::MalformedJson(format!("request body is not valid JSON: {e}")),
    })
}
