//! Liveness and readiness probes.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::http::state::AppState;

/// The process is up and answering HTTP.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The service can serve predictions: models are loaded (they always are once the server
/// listens, since start-up fails otherwise) and the audit store's last commit worked.
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    if let Some(reason) = state.not_ready() {
        return HttpResponse::ServiceUnavailable().json(json!({
            "status": "not_ready",
            "reason": reason,
        }));
    }
    HttpResponse::Ok().json(json!({
        "status": "ready",
        "models": state.models.current().all().len(),
        "default_model": state.models.current().default_model().name(),
        "audit_mode": state.audit.mode,
        "audit_queue_rows": state.audit.queued_rows(),
    }))
}
