//! `POST /feedback`: the truth of an audited prediction, a classifier's true label or a
//! regressor's true value. It follows the access rule of `/audit`: truths are derived from
//! users' data.

use actix_web::post;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use crate::audit::{Feedback, ServedRow, Truth};
use crate::http::access::AuditAccess;
use crate::http::body::{check_content_type, decode_json, read_body};
use crate::http::error::{ApiError, ErrorBody, Unprocessable};
use crate::http::lookup::by_client_id;
use crate::http::request::RequestMeta;
use crate::http::state::AppState;
use crate::input::near_non_finite_token;
use crate::model::{Model, Task};
use crate::text::quote;

/// Largest feedback body.
const FEEDBACK_BODY_LIMIT: usize = 16 * 1024;

/// The truth of an audited prediction: `label` for a classifier's, `value` for a regressor's
/// (exactly one of them).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FeedbackBody {
    /// The server's id of the request, or the client's id if exactly one request sent it.
    request_id: String,
    /// The row of a batch (0 for a single row).
    #[serde(default)]
    item: u32,
    /// A classifier's: one of the model's class names.
    #[serde(default)]
    label: Option<String>,
    /// A regressor's: the true number (finite).
    #[serde(default)]
    value: Option<f64>,
}

/// Feedback stored.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct FeedbackStored {
    /// The server's id of the request.
    request_id: String,
    item: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<f64>,
    /// The truth this one replaces (a label or a value), if the item had one.
    replaced: Option<Truth>,
}

/// What a feedback body's JSON looks like, for messages.
const EXPECTED: &str =
    r#"{"request_id": "...", "item": 0, "label": "..."} (or "value": 1.5 for a regression model)"#;

/// Stores the truth of an audited prediction (the latest one counts for scoring).
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
        (status = 422, description = "Not a feedback body, a label the model does not have, a label for a regression model or a value for a classifier, a value that is not a finite number (`invalid_body`, `unknown_label`, `wrong_truth_kind`, `non_finite_value`, `unknown_model`)", body = ErrorBody),
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
    let fb = parse(&body)?;
    let truth = match (fb.label, fb.value) {
        (Some(label), None) => Truth::Label(label),
        (None, Some(value)) => Truth::Value(value),
        _ => {
            return Err(ApiError::Unprocessable {
                code: Unprocessable::InvalidBody,
                message: format!(
                    "send exactly one of \"label\" (a classifier's true class) and \"value\" \
                     (a regression model's true number): expected {EXPECTED}"
                ),
            });
        }
    };
    let item = i64::from(fb.item);
    let (request_id, model_name, label) = labelled_row(&state, &fb.request_id, item).await?;
    check_truth(&state, &model_name, label.is_some(), &truth)?;
    let previous = state
        .store
        .insert_feedback(&Feedback {
            request_id: request_id.clone(),
            item,
            truth: truth.clone(),
            received_at: meta.received_at,
            client_addr: meta.peer.map(|ip| ip.to_string()),
        })
        .await
        .map_err(|e| ApiError::store("the feedback could not be stored", &e))?;
    Ok(HttpResponse::Created().json(FeedbackStored {
        request_id,
        item,
        label: truth.label().map(str::to_string),
        value: truth.value(),
        replaced: previous,
    }))
}

/// The body; a number JSON or a 64-bit float cannot carry (`NaN`, `Infinity`, `1e400`) is a
/// 422 naming it.
fn parse(body: &[u8]) -> Result<FeedbackBody, ApiError> {
    match serde_json::from_slice(body) {
        Ok(fb) => Ok(fb),
        Err(e)
            if e.to_string().starts_with("number out of range")
                || near_non_finite_token(&e, body) =>
        {
            Err(ApiError::Unprocessable {
                code: Unprocessable::NonFiniteValue,
                message: format!(
                    "value must be a finite number: JSON has no NaN or Infinity, and a 64-bit \
                     float holds up to about 1.8e308 ({e})"
                ),
            })
        }
        Err(_) => decode_json(body, EXPECTED),
    }
}

/// The server's request id, the model and the label of the answered row `(id, item)` (a
/// regression model's row has none): `id` is the server's id, else a client's id if exactly
/// one request sent it (several are a 409 listing them).
async fn labelled_row(
    state: &AppState,
    id: &str,
    item: i64,
) -> Result<(String, String, Option<String>), ApiError> {
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
    let Some((request_id, ServedRow { model, label })) = found else {
        return Err(ApiError::NotFound(format!(
            "no answered prediction for request {} item {item}",
            quote(id)
        )));
    };
    Ok((request_id, model.unwrap_or_default(), label))
}

/// `truth` is of the kind the row was answered with (a class, or a regression model's number:
/// a model's name may change task between versions, the row says which it answered), and a
/// class the model (still served) has, or a finite number.
fn check_truth(
    state: &AppState,
    model_name: &str,
    answered_class: bool,
    truth: &Truth,
) -> Result<(), ApiError> {
    let model = state
        .models
        .current()
        .get(model_name)
        .cloned()
        .ok_or_else(|| ApiError::Unprocessable {
            code: Unprocessable::UnknownModel,
            message: format!("model {model_name:?} of that prediction is no longer served"),
        })?;
    let wrong = |message: String| {
        Err(ApiError::Unprocessable {
            code: Unprocessable::WrongTruthKind,
            message,
        })
    };
    match (answered_class, truth) {
        (true, Truth::Label(label)) if model.artifact.task() == Task::Classification => {
            check_label(&model, label)
        }
        (true, Truth::Label(_)) => wrong(format!(
            "that prediction answered a class, and model {} now answers numbers: its classes \
             are not known to check the label against",
            model.name()
        )),
        (false, Truth::Value(v)) if v.is_finite() => Ok(()),
        (false, Truth::Value(_)) => Err(ApiError::Unprocessable {
            code: Unprocessable::NonFiniteValue,
            message: "value must be a finite number".to_string(),
        }),
        (false, Truth::Label(_)) => wrong(format!(
            "that prediction of model {} answered a number (a regression model): send its true \
             number as \"value\", not a \"label\"",
            model.name()
        )),
        (true, Truth::Value(_)) => wrong(format!(
            "that prediction of model {} answered a class (a classifier): send its true class \
             as \"label\" (one of {}), not a \"value\"",
            model.name(),
            model.artifact.class_names.join(", ")
        )),
    }
}

/// `label` is a class of `model`.
fn check_label(model: &Model, label: &str) -> Result<(), ApiError> {
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
