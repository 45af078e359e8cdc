//! The routes, one file per resource, and the table that registers them. No route file imports
//! another: what they share lives beside this folder (state, access, body, params, errors).

mod audit;
mod feedback;
mod health;
mod models;
mod monitor;
mod oip;
mod predict;

use actix_web::{HttpRequest, HttpResponse, web};

use super::error::ApiError;
use crate::text::escape_controls;

/// Route patterns, also the `route` label of the HTTP metrics (a fixed set: label values stay
/// bounded whatever paths clients ask for).
pub const ROUTES: [&str; 24] = [
    "/predict",
    "/models/{name}/predict",
    "/models",
    "/models/{name}",
    "/audit",
    "/audit/summary",
    "/audit/timeseries",
    "/audit/{request_id}",
    "/metrics",
    "/monitor/drift",
    "/monitor/performance",
    "/feedback",
    "/health/live",
    "/health/ready",
    "/v2",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2/models/{name}",
    "/v2/models/{name}/versions/{version}",
    "/v2/models/{name}/ready",
    "/v2/models/{name}/versions/{version}/ready",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
    "unmatched",
];

/// The prediction routes: their rejections are counted by reason.
pub const PREDICT_ROUTES: [&str; 4] = [
    "/predict",
    "/models/{name}/predict",
    "/v2/models/{name}/infer",
    "/v2/models/{name}/versions/{version}/infer",
];

/// The probes: logged at debug, since orchestrators call them every few seconds.
pub const PROBE_ROUTES: [&str; 4] = [
    "/health/live",
    "/health/ready",
    "/v2/health/live",
    "/v2/health/ready",
];

/// Whether a route is the Open Inference Protocol's: its errors are `{"error": "<message>"}`.
pub fn is_oip(route: &str) -> bool {
    route == "/v2" || route.starts_with("/v2/")
}

/// A resource named by its own pattern, so the middleware can read it back without allocating.
fn resource(pattern: &'static str) -> actix_web::Resource {
    web::resource(pattern).name(pattern)
}

/// Registers the routes of the main address: every route, but `/metrics` only when there is
/// no admin address (`with_metrics`).
pub fn configure(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    if with_metrics {
        cfg.service(resource("/metrics").route(web::get().to(monitor::metrics)));
    }
    cfg.service(resource("/predict").route(web::post().to(predict::predict_default)))
        .service(resource("/models/{name}/predict").route(web::post().to(predict::predict_named)))
        .service(resource("/models").route(web::get().to(models::list)))
        .service(resource("/models/{name}").route(web::get().to(models::show)))
        .service(resource("/audit").route(web::get().to(audit::list)))
        .service(resource("/audit/summary").route(web::get().to(audit::summary)))
        .service(resource("/audit/timeseries").route(web::get().to(audit::timeseries)))
        .service(resource("/audit/{request_id}").route(web::get().to(audit::by_request)))
        .service(resource("/monitor/drift").route(web::get().to(monitor::drift)))
        .service(resource("/monitor/performance").route(web::get().to(monitor::performance)))
        .service(resource("/feedback").route(web::post().to(feedback::post)))
        .configure(open_inference_protocol)
        .configure(probes)
        .default_service(web::to(not_found));
}

/// Registers the routes of the admin address (`INFERLOG_ADMIN_BIND`): `/metrics` and the
/// probes.
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/metrics").route(web::get().to(monitor::metrics)))
        .configure(probes)
        .default_service(web::to(not_found));
}

/// The Open Inference Protocol v2 (REST).
fn open_inference_protocol(cfg: &mut web::ServiceConfig) {
    cfg.service(resource("/v2").route(web::get().to(oip::server_metadata)))
        .service(resource("/v2/health/live").route(web::get().to(oip::live)))
        .service(resource("/v2/health/ready").route(web::get().to(oip::ready)))
        .service(resource("/v2/models/{name}").route(web::get().to(oip::model_metadata)))
        .service(
            resource("/v2/models/{name}/versions/{version}")
                .route(web::get().to(oip::model_metadata)),
        )
        .service(resource("/v2/models/{name}/ready").route(web::get().to(oip::model_ready)))
        .service(
            resource("/v2/models/{name}/versions/{version}/ready")
                .route(web::get().to(oip::model_ready)),
        )
        .service(resource("/v2/models/{name}/infer").route(web::post().to(oip::infer)))
        .service(
            resource("/v2/models/{name}/versions/{version}/infer")
                .route(web::post().to(oip::infer)),
        );
}

fn probes(cfg: &mut web::ServiceConfig) {
    cfg.service(
        resource("/health/live")
            .route(web::get().to(health::live))
            .route(web::head().to(health::live)),
    )
    .service(
        resource("/health/ready")
            .route(web::get().to(health::ready))
            .route(web::head().to(health::ready)),
    );
}

/// The `route` label of a request: its resource name when it matched one, else `unmatched`.
pub fn route_label(req: &HttpRequest) -> &'static str {
    req.match_name()
        .and_then(|name| ROUTES.iter().find(|r| **r == name).copied())
        .unwrap_or("unmatched")
}

async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        escape_controls(req.path())
    )))
}
