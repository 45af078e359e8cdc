//! Liveness and readiness probes.

use actix_web::route;
use actix_web::{HttpResponse, web};
use serde::Serialize;
use utoipa::ToSchema;

use crate::audit::AuditMode;
use crate::http::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct Live {
    /// `ok`.
    status: &'static str,
}

#[derive(Serialize, ToSchema)]
pub struct Ready {
    /// `ready`.
    status: &'static str,
    models: usize,
    default_model: String,
    #[schema(value_type = String)]
    audit_mode: AuditMode,
    /// Audit rows waiting to be written.
    audit_queue_rows: usize,
}

#[derive(Serialize, ToSchema)]
pub struct NotReady {
    /// `not_ready`.
    status: &'static str,
    /// `shutting down`, or what is wrong with the audit store.
    reason: String,
}

/// The process is up and answering HTTP.
#[utoipa::path(get, path = "/health/live", tag = "health", operation_id = "health_live",
    responses((status = 200, description = "Alive", body = Live)))]
#[route("/health/live", method = "GET", method = "HEAD", name = "/health/live")]
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(Live { status: "ok" })
}

/// The service can serve predictions: models are loaded (they always are once the server
/// listens, since start-up fails otherwise) and the audit store's last commit worked.
#[utoipa::path(get, path = "/health/ready", tag = "health", operation_id = "health_ready",
    responses(
        (status = 200, description = "Ready", body = Ready),
        (status = 503, description = "Not ready: shutting down, or the audit store is failing", body = NotReady),
    ))]
#[route(
    "/health/ready",
    method = "GET",
    method = "HEAD",
    name = "/health/ready"
)]
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if let Some(reason) = state.not_ready().await {
        return HttpResponse::ServiceUnavailable().json(NotReady {
            status: "not_ready",
            reason,
        });
    }
    let models = state.models.current();
    HttpResponse::Ok().json(Ready {
        status: "ready",
        models: models.all().len(),
        default_model: models.default_model().name().to_string(),
        audit_mode: state.audit.mode,
        audit_queue_rows: state.audit.queued_rows(),
    })
}
