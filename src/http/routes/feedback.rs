//! `POST /feedback`: the true label of an audited prediction. It follows the access rule of
//! `/audit`: labels are derived from users' data.

use actix_web::post;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::audit::{Feedback, ServedRow};
use crate::http::access::AuditAccess;
use crate::http::body::{check_content_type, decode_json, read_body};
use crate::http::error::{ApiError, ErrorBody, Unprocessable};
use crate::http::lookup::by_client_id;
use crate::http::request::RequestMeta;
use crate::http::state::AppState;
use crate::text::quote;

/// Largest feedback body.
const FEEDBACK_BODY_LIMIT: usize = 16 * 1024;

/// The true label of an audited prediction.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    /// The server's id of the request, or the client's id if exactly one request sent it.
    request_id: String,
    /// The row of a batch (0 for a single row).
    #[serde(default)]
    item: u32,
    /// One of the model's class names.
    label: String,
}

/// Feedback stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedbackStored {
    /// The server's id of the request.
    request_id: String,
    item: i64,
    label: String,
    /// The true label this one replaces, if the item had one.
    replaced: Option<String>,
}

/// Stores the true label of an audited prediction (the latest one counts for scoring).
#[utoipa::path(post, path = "/feedback", tag = "monitoring",
    request_body(content = FeedbackBody, content_type = "application/json"),
    responses(
        (status = 201, description = "Stored", body = FeedbackStored),
        (status = 400, description = "Not JSON (`malformed_json`)", body = ErrorBody),
        (status = 401, description = "The token is needed (`unauthorized`)", body = ErrorBody),
        (status = 403, description = "Not a loopback client and no token set (`forbidden`)", body = ErrorBody),
        (status = 404, description = "No answered row with that request id and item (`not_found`)", body = ErrorBody),
        (status = 409, description = "A client's id that names several requests (`ambiguous_request_id`)", body = ErrorBody),
        (status = 413, description = "Body too large (`body_too_large`)", body = ErrorBody),
        (status = 415, description = "Not JSON (`unsupported_media_type`)", body = ErrorBody),
        (status = 422, description = "Not a feedback body, or a label the model does not have (`invalid_body`, `unknown_label`, `unknown_model`)", body = ErrorBody),
        (status = 503, description = "The store could not be written (`audit_unavailable`)", body = ErrorBody),
    ),
    security((), ("bearer" = [])))]
#[post("/feedback", name = "/feedback")]
pub async fn post(
    _access: AuditAccess,
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    meta: RequestMeta,
) -> Result<HttpResponse, ApiError> {
    check_content_type(&req)?;
    let (body, _permit) = read_body(
        &req,
        payload,
        FEEDBACK_BODY_LIMIT,
        &state.body_budget,
        state.limits.body_timeout,
    )
    .await?;
    let fb: FeedbackBody =
        decode_json(&body, r#"{"request_id": "...", "item": 0, "label": "..."}"#)?;
    let item = i64::from(fb.item);
    let (request_id, model_name) = labelled_row(&state, &fb.request_id, item).await?;
    check_label(&state, &model_name, &fb.label)?;
    let previous = state
        .store
        .insert_feedback(&Feedback {
            request_id: request_id.clone(),
            item,
            label: fb.label.clone(),
            received_at: meta.received_at,
            client_addr: meta.peer.map(|ip| ip.to_string()),
        })
        .await
        .map_err(|e| ApiError::store("the feedback could not be stored", &e))?;
    Ok(HttpResponse::Created().json(FeedbackStored {
        request_id,
        item,
        label: fb.label,
        replaced: previous,
    }))
}

/// The server's request id and the model of the answered row `(id, item)`: `id` is the
/// server's id, else a client's id if exactly one request sent it (several are a 409 listing
/// them).
async fn labelled_row(state: &AppState, id: &str, item: i64) -> Result<(String, String), ApiError> {
    let served = |id: String| {
        let store = state.store.clone();
        async move {
            store
                .served_row(&id, item)
                .await
                .map(|row| row.map(|r| (id, r)))
                .map_err(|e| ApiError::store("the prediction could not be looked up", &e))
        }
    };
    let mut found = served(id.to_string()).await?;
    if found.is_none()
        && let Some(server_id) = by_client_id(&state.store, id).await?
    {
        found = served(server_id).await?;
    }
    let Some((request_id, ServedRow { model, .. })) = found else {
        return Err(ApiError::NotFound(format!(
            "no answered prediction for request {} item {item}",
            quote(id)
        )));
    };
    Ok((request_id, model.unwrap_or_default()))
}

/// `label` is a class of the model (still served) that answered.
fn check_label(state: &AppState, model_name: &str, label: &str) -> Result<(), ApiError> {
    let model = state
        .models
        .current()
        .get(model_name)
        .cloned()
        .ok_or_else(|| ApiError::Unprocessable {
            code: Unprocessable::UnknownModel,
            message: format!("model {model_name:?} of that prediction is no longer served"),
        })?;
    if !model.artifact.class_names.iter().any(|c| c == label) {
        return Err(ApiError::Unprocessable {
            code: Unprocessable::UnknownLabel,
            message: format!(
                "label {} is not a class of model {}; its classes are {}",
                quote(label),
                model.name(),
                model.artifact.class_names.join(", ")
            ),
        });
    }
    Ok(())
}
