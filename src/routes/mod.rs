//! HTTP routes, one file per resource.

pub mod audit;
pub mod feedback;
pub mod health;
pub mod models;
pub mod monitor;
pub mod predict;

use actix_web::{HttpRequest, HttpResponse, web};

use crate::error::{ApiError, escape_controls};

/// Registers every route of the service.
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/predict").route(web::post().to(predict::predict_default)))
        .service(
            web::resource("/models/{name}/predict").route(web::post().to(predict::predict_named)),
        )
        .service(web::resource("/models").route(web::get().to(models::list)))
        .service(web::resource("/models/{name}").route(web::get().to(models::show)))
        .service(web::resource("/audit").route(web::get().to(audit::list)))
        .service(web::resource("/audit/summary").route(web::get().to(audit::summary)))
        .service(web::resource("/audit/{request_id}").route(web::get().to(audit::by_request)))
        .service(web::resource("/metrics").route(web::get().to(monitor::metrics)))
        .service(web::resource("/monitor/drift").route(web::get().to(monitor::drift)))
        .service(web::resource("/monitor/performance").route(web::get().to(feedback::performance)))
        .service(web::resource("/feedback").route(web::post().to(feedback::post)))
        .service(web::resource("/health/live").route(web::get().to(health::live)))
        .service(web::resource("/health/ready").route(web::get().to(health::ready)))
        .default_service(web::to(not_found));
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        escape_controls(req.path())
    )))
}
