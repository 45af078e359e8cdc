//! Liveness and readiness probes.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::startup::AppState;

/// The process is up and answering HTTP.
pub async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// The service can serve predictions: models are loaded (they always are once the server
/// listens, since start-up fails otherwise).
pub async fn ready(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok().json(json!({
        "status": "ready",
        "models": state.models.all().len(),
        "default_model": state.models.default_model().name(),
    }))
}
