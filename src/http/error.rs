//! The HTTP error type: every failure a client can see, its status code and its JSON body
//! `{"error": {"code": "...", "message": "...", "request_id": "..."}}`.
//!
//! Handlers return [`ApiError`]; domain errors convert into it ([`InputError`] from parsing,
//! [`StoreFault`] through [`ApiError::store`]). The request middleware adds the request id
//! and also turns actix's own plain-text errors (unknown route, wrong method) into the same JSON
//! shape, so clients see one error format whatever failed. Internal errors keep their whole
//! cause chain for the log and tell the client only that something went wrong.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::audit::{RequestRef, StoreFault, SubmitError};

/// Most candidates an `ambiguous_request_id` error lists.
pub const MAX_CANDIDATES: usize = 20;
use crate::input::InputError;
use crate::model::{Failure, PredictError};
use crate::text::{escape_controls, quote};

/// A parameter that could not be used, for a 400 that names it.
#[derive(Debug, thiserror::Error)]
#[error("query parameter {name}: {reason}")]
pub struct ParamError {
    pub name: String,
    pub reason: String,
}

/// Why a feedback body that is valid JSON cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unprocessable {
    InvalidBody,
    /// The prediction's model is no longer served.
    UnknownModel,
    /// The label is not a class of the model.
    UnknownLabel,
    /// A label for a regressor's answer, or a value for a classifier's.
    WrongTruthKind,
    /// A true value that is not a finite number.
    NonFiniteValue,
    /// A regressor's answer to finite input overflowed (input far outside its training range).
    AnswerNotFinite,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A `/predict` body that is not JSON, not a valid request, or too large a batch.
    #[error(transparent)]
    Input(#[from] InputError),

    /// Another body that is not JSON at all, or could not be read.
    #[error("{0}")]
    MalformedJson(String),

    /// JSON, but not a valid request.
    #[error("{message}")]
    Unprocessable {
        code: Unprocessable,
        message: String,
    },

    #[error("{0}")]
    UnsupportedMediaType(String),

    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },

    #[error("the request body did not arrive within {after:?}")]
    BodyTimeout { after: std::time::Duration },

    /// The request bodies being read together passed their budget.
    #[error("{}", overloaded(*.budget, *.client_share))]
    Overloaded {
        budget: usize,
        /// Set when it is this client's share of the budget that is full.
        client_share: Option<usize>,
    },

    /// The name is quoted and cut (to 64 characters) in the message.
    #[error("no model named {}; GET /models lists the models served", quote(.0))]
    UnknownModel(String),

    #[error("{0}")]
    NotFound(String),

    /// A client's request id that several requests sent: the server's ids of the candidates
    /// (oldest first, at most [`MAX_CANDIDATES`]) are listed so the client can name one.
    #[error(
        "request id {} was sent by {} requests{}; name one by the request_id the server gave it: {}",
        quote(.id), .candidates.len(), if .candidates.len() >= MAX_CANDIDATES { " or more" } else { "" },
        .candidates.iter().map(|c| c.request_id.as_str()).collect::<Vec<_>>().join(", ")
    )]
    AmbiguousRequestId {
        id: String,
        candidates: Vec<RequestRef>,
    },

    #[error(transparent)]
    BadParameter(#[from] ParamError),

    #[error("{0}")]
    Unauthorized(String),

    #[error("{0}")]
    Forbidden(String),

    /// The prediction was made but could not be audited, so it is not served.
    #[error("the prediction was not served because it could not be audited: {0}")]
    NotAudited(SubmitError),

    /// The audit store failed a read or a write: clients get the class of fault, the log line
    /// the whole error chain (`detail`, one line).
    #[error("{message}")]
    StoreUnavailable { message: String, detail: String },

    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    /// A 503 `audit_unavailable` for a failed store call: `what` could not be done, and why, in
    /// words without paths or SQL.
    pub fn store(what: &str, fault: &StoreFault) -> ApiError {
        ApiError::StoreUnavailable {
            message: format!("{what}: {}", fault.cause()),
            detail: fault.detail().to_string(),
        }
    }

    /// Stable machine-readable code, documented in the README.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::Input(InputError::MalformedJson(_)) | ApiError::MalformedJson(_) => {
                "malformed_json"
            }
            ApiError::Input(InputError::Invalid { code, .. }) => code.as_str(),
            ApiError::Input(InputError::BatchTooLarge { .. }) => "batch_too_large",
            ApiError::Unprocessable { code, .. } => match code {
                Unprocessable::InvalidBody => "invalid_body",
                Unprocessable::UnknownModel => "unknown_model",
                Unprocessable::UnknownLabel => "unknown_label",
                Unprocessable::WrongTruthKind => "wrong_truth_kind",
                Unprocessable::NonFiniteValue => "non_finite_value",
                Unprocessable::AnswerNotFinite => "answer_not_finite",
            },
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::UnknownModel(_) => "unknown_model",
            ApiError::NotFound(_) => "not_found",
            ApiError::AmbiguousRequestId { .. } => "ambiguous_request_id",
            ApiError::BadParameter(_) => "invalid_parameter",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotAudited(_) | ApiError::StoreUnavailable { .. } => "audit_unavailable",
            ApiError::Internal(_) => "internal_error",
        }
    }

    /// What the client is told. Internal details never leave the process.
    pub fn public_message(&self) -> String {
        match self {
            ApiError::Internal(_) => "internal error; the server log has the details".to_string(),
            other => other.to_string(),
        }
    }
}

impl From<PredictError> for ApiError {
    fn from(e: PredictError) -> ApiError {
        match e.kind {
            Failure::NotFinite => ApiError::Unprocessable {
                code: Unprocessable::AnswerNotFinite,
                message: e.to_string(),
            },
            Failure::Model => ApiError::Internal(e.into()),
        }
    }
}

/// Code and message of an error response, left in the response extensions for the middleware
/// that writes the final body and the log line.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: Cow<'static, str>,
    pub message: String,
    /// `ambiguous_request_id`: the requests the id could name.
    pub candidates: Option<serde_json::Value>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::Input(InputError::MalformedJson(_))
            | ApiError::MalformedJson(_)
            | ApiError::BadParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Input(InputError::Invalid { .. }) | ApiError::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge { .. } | ApiError::Input(InputError::BatchTooLarge { .. }) => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnknownModel(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::AmbiguousRequestId { .. } => StatusCode::CONFLICT,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::NotAudited(_)
            | ApiError::StoreUnavailable { .. }
            | ApiError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let info = ErrorInfo {
            code: Cow::Borrowed(self.code()),
            message: escape_controls(&self.public_message()).into_owned(),
            candidates: match self {
                ApiError::AmbiguousRequestId { candidates, .. } => {
                    serde_json::to_value(candidates).ok()
                }
                _ => None,
            },
        };
        let mut builder = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            builder.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        if matches!(self, ApiError::Overloaded { .. }) {
            builder.insert_header((actix_web::http::header::RETRY_AFTER, "1"));
        }
        // The JSON body is written once, with the request id, by the middleware.
        let mut res = builder.finish();
        res.extensions_mut().insert(info);
        res
    }
}

/// The error body of every route but the Open Inference Protocol's.
#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorFields,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct ErrorFields {
    /// Stable machine-readable code (README, "Errors").
    pub code: String,
    /// What was wrong, for people.
    pub message: String,
    /// The server's id of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// `ambiguous_request_id`: the requests the id names (oldest first).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<RequestRef>>)]
    pub candidates: Option<serde_json::Value>,
}

/// The JSON error body every error response carries.
pub fn error_body(info: &ErrorInfo, request_id: Option<&str>) -> serde_json::Value {
    serde_json::to_value(ErrorBody {
        error: ErrorFields {
            code: info.code.to_string(),
            message: info.message.clone(),
            request_id: request_id.map(str::to_string),
            candidates: info.candidates.clone(),
        },
    })
    .unwrap_or_default()
}

/// The error body of the Open Inference Protocol's routes.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OipErrorBody {
    /// What was wrong: a string, which clients such as `tritonclient` print.
    pub error: String,
    /// inferlog's code (README, "Errors").
    pub code: String,
    /// The server's id of the request.
    pub request_id: String,
}

/// The error body of the Open Inference Protocol's routes: `error` is the message (a string,
/// which clients such as `tritonclient` print), with inferlog's code and request id beside.
pub fn oip_error_body(info: &ErrorInfo, request_id: &str) -> serde_json::Value {
    serde_json::to_value(OipErrorBody {
        error: info.message.clone(),
        code: info.code.to_string(),
        request_id: request_id.to_string(),
    })
    .unwrap_or_default()
}

/// Code for an error response that did not come from [`ApiError`] (actix's own errors).
pub fn code_for_status(status: StatusCode) -> &'static str {
    match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::REQUEST_TIMEOUT => "request_timeout",
        StatusCode::PAYLOAD_TOO_LARGE => "body_too_large",
        StatusCode::URI_TOO_LONG => "uri_too_long",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid_request",
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => "headers_too_large",
        StatusCode::SERVICE_UNAVAILABLE => "unavailable",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    }
}

/// The message of [`ApiError::Overloaded`].
fn overloaded(budget: usize, client_share: Option<usize>) -> String {
    match client_share {
        Some(share) => format!(
            "this client address holds its share of {share} bytes of request bodies being read (of the server's {budget}); retry shortly"
        ),
        None => format!(
            "the server holds its limit of {budget} bytes of request bodies being read; retry shortly"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::FaultKind;
    use crate::input::InputCode;

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::Internal(anyhow::anyhow!("disk at /secret/path failed"));
        assert!(!e.public_message().contains("/secret"));
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn input_errors_map_to_400_422_and_413() {
        let cases = [
            (InputError::MalformedJson("x".into()), 400, "malformed_json"),
            (
                InputError::Invalid {
                    code: InputCode::RaggedBatch,
                    message: "x".into(),
                },
                422,
                "ragged_batch",
            ),
            (InputError::BatchTooLarge { max: 5 }, 413, "batch_too_large"),
        ];
        for (input, status, code) in cases {
            let e = ApiError::from(input);
            assert_eq!(e.status_code().as_u16(), status);
            assert_eq!(e.code(), code);
        }
    }

    #[test]
    fn store_failures_are_503_with_the_class_of_fault_only() {
        let cause = anyhow::anyhow!("opening /secret/path/audit.db").context("reading audit rows");
        let fault = StoreFault::new(FaultKind::Io, &cause);
        let e = ApiError::store("the audit records could not be read", &fault);
        assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "audit_unavailable");
        assert_eq!(
            e.public_message(),
            "the audit records could not be read: an I/O error in the audit database"
        );
        // The log line (the error's Debug form) keeps the whole chain.
        assert!(format!("{e:?}").contains("/secret/path/audit.db"));
    }
}
