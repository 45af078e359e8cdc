//! The HTTP error type: every failure a client can see, its status code and its JSON body
//! `{"error": {"code": "...", "message": "...", "request_id": "..."}}`.
//!
//! Handlers return [`ApiError`]; the request middleware ([`crate::middleware`]) adds the request
//! id and also turns actix's own plain-text errors (unknown route, wrong method) into the same
//! JSON shape, so clients see one error format whatever failed. Internal errors keep their whole
//! cause chain for the log and tell the client only that something went wrong.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON at all (syntax error, truncated, invalid UTF-8).
    #[error("{0}")]
    MalformedJson(String),

    /// Parsed, but not a valid request: wrong shape, types, feature names or counts.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },

    #[error("{0}")]
    UnsupportedMediaType(String),

    #[error("request body is larger than the limit of {limit} bytes")]
    BodyTooLarge { limit: usize },

    #[error("the request body did not arrive within {after:?}")]
    BodyTimeout { after: std::time::Duration },

    #[error("batch has {rows} rows, more than the limit of {max}; split it into smaller batches")]
    BatchTooLarge { rows: usize, max: usize },

    #[error("no model named {0:?}; GET /models lists the models served")]
    UnknownModel(String),

    #[error("{0}")]
    NotFound(String),

    #[error(transparent)]
    BadParameter(#[from] crate::audit::query::ParamError),

    #[error("{0}")]
    Unauthorized(String),

    #[error("{0}")]
    Forbidden(String),

    /// The service cannot do this right now (for example the audit store is failing).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },

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
    pub fn store(what: &str, e: &anyhow::Error) -> ApiError {
        ApiError::StoreUnavailable {
            message: format!("{what}: {}", crate::audit::writer::cause(e)),
            detail: format!("{e:#}"),
        }
    }

    pub fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// Stable machine-readable code, documented in the README.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::Invalid { code, .. } => code,
            ApiError::UnsupportedMediaType(_) => "unsupported_media_type",
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::BodyTimeout { .. } => "body_timeout",
            ApiError::BatchTooLarge { .. } => "batch_too_large",
            ApiError::UnknownModel(_) => "unknown_model",
            ApiError::NotFound(_) => "not_found",
            ApiError::BadParameter(_) => "invalid_parameter",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::Unavailable { code, .. } => code,
            ApiError::StoreUnavailable { .. } => "audit_unavailable",
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

/// Code and message of an error response, left in the response extensions for the middleware
/// that writes the final body and the log line.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub code: Cow<'static, str>,
    pub message: String,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        match self {
            ApiError::MalformedJson(_) | ApiError::BadParameter(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTooLarge { .. } | ApiError::BatchTooLarge { .. } => {
                StatusCode::PAYLOAD_TOO_LARGE
            }
            ApiError::UnknownModel(_) | ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::BodyTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            ApiError::Unavailable { .. } | ApiError::StoreUnavailable { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let info = ErrorInfo {
            code: Cow::Borrowed(self.code()),
            message: escape_controls(&self.public_message()).into_owned(),
        };
        let mut builder = HttpResponse::build(self.status_code());
        if matches!(self, ApiError::Unauthorized(_)) {
            builder.insert_header((actix_web::http::header::WWW_AUTHENTICATE, "Bearer"));
        }
        let mut res = builder.json(error_body(&info, None));
        res.extensions_mut().insert(info);
        res
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    code: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    request_id: Option<&'a str>,
}

/// The JSON error body every error response carries.
pub fn error_body(info: &ErrorInfo, request_id: Option<&str>) -> serde_json::Value {
    serde_json::to_value(ErrorBody {
        error: ErrorFields {
            code: &info.code,
            message: &info.message,
            request_id,
        },
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

/// Escapes control characters (newlines included) so text that came from a client can never
/// start a new log line or hide inside a terminal escape sequence.
pub fn escape_controls(s: &str) -> Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_newlines_and_escape_sequences() {
        assert_eq!(escape_controls("a\nb\r\x1b[31m"), "a\\nb\\r\\u{1b}[31m");
        assert!(matches!(escape_controls("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn internal_errors_hide_their_cause() {
        let e = ApiError::Internal(anyhow::anyhow!("disk at /secret/path failed"));
        assert!(!e.public_message().contains("/secret"));
        assert_eq!(e.status_code(), StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn store_failures_are_503_with_the_class_of_fault_only() {
        let cause = anyhow::anyhow!("opening /secret/path/audit.db").context("reading audit rows");
        let e = ApiError::store("the audit records could not be read", &cause);
        assert_eq!(e.status_code(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code(), "audit_unavailable");
        assert!(
            !e.public_message().contains("/secret"),
            "{}",
            e.public_message()
        );
        // The log line (the error's Debug form) keeps the whole chain.
        assert!(format!("{e:?}").contains("/secret/path/audit.db"));
    }
}
