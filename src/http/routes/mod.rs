//! The routes, one file per resource, and the table that registers them. No route file imports
//! another: what they share lives beside this folder (state, access, body, params, errors).

mod audit;
mod dashboard;
mod feedback;
mod health;
mod models;
mod monitor;
mod oip;
mod predict;

use std::sync::{Arc, OnceLock};

use actix_web::{HttpRequest, HttpResponse, web};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::error::{ApiError, ErrorBody};
use crate::text::escape_controls;

/// Route patterns, also the `route` label of the HTTP metrics (a fixed set: label values stay
/// bounded whatever paths clients ask for).
pub const ROUTES: [&str; 29] = [
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
    "/openapi.json",
    "/docs",
    "/docs/{file}",
    "/dashboard",
    "/",
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

/// Whether a request path (or a route pattern) is under the Open Inference Protocol's `/v2`:
/// every error there, on a known route or not, is `{"error": "<message>"}`, the shape the
/// protocol's clients parse.
pub fn is_oip(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// A resource named by its own pattern, so the middleware can read it back without allocating.
/// Every route is registered through here, and each is in [`ROUTES`] (a test checks the
/// reverse: every entry is routed to its resource).
fn resource(pattern: &'static str) -> actix_web::Resource {
    assert!(
        ROUTES.contains(&pattern),
        "route {pattern} is not in ROUTES (nor, then, in the API documentation)"
    );
    web::resource(pattern).name(pattern)
}

/// Registers the routes of the main address: every route, but `/metrics` only when there is
/// no admin address (`with_metrics`).
pub fn configure(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    if with_metrics {
        cfg.service(resource("/metrics").route(web::get().to(monitor::metrics)));
    }
    // actix tries resources in the order they are registered: the busiest routes first.
    cfg.service(resource("/predict").route(web::post().to(predict::predict_default)))
        .configure(probes)
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
        .service(resource("/openapi.json").route(web::get().to(openapi_json)))
        .service(resource("/docs").route(web::get().to(docs_index)))
        .service(resource("/docs/{file}").route(web::get().to(docs_file)))
        .service(resource("/dashboard").route(web::get().to(dashboard::page)))
        .service(resource("/").route(web::get().to(dashboard::root)))
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
                .route(web::get().to(oip::model_metadata_at)),
        )
        .service(resource("/v2/models/{name}/ready").route(web::get().to(oip::model_ready)))
        .service(
            resource("/v2/models/{name}/versions/{version}/ready")
                .route(web::get().to(oip::model_ready_at)),
        )
        .service(resource("/v2/models/{name}/infer").route(web::post().to(oip::infer)))
        .service(
            resource("/v2/models/{name}/versions/{version}/infer")
                .route(web::post().to(oip::infer_at)),
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

/// The API's OpenAPI 3.1 document, generated from the handlers' `#[utoipa::path]` attributes
/// and the types they name.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "inferlog",
        description = "Predictions from smartcore models, every one logged and audited.",
        license(name = "MIT OR Apache-2.0"),
    ),
    paths(
        predict::predict_default,
        predict::predict_named,
        models::list,
        models::show,
        audit::list,
        audit::summary,
        audit::timeseries,
        audit::by_request,
        monitor::metrics,
        monitor::drift,
        monitor::performance,
        feedback::post,
        health::live,
        health::ready,
        oip::server_metadata,
        oip::live,
        oip::ready,
        oip::model_metadata,
        oip::model_metadata_at,
        oip::model_ready,
        oip::model_ready_at,
        oip::infer,
        oip::infer_at,
        openapi_json,
        docs_index,
        docs_file,
        dashboard::page,
        dashboard::root,
    ),
    modifiers(&BearerToken),
    tags(
        (name = "predict", description = "Predictions, audited"),
        (name = "models", description = "The models served"),
        (name = "audit", description = "The audit trail: rows, summaries, time series, exports"),
        (name = "monitoring", description = "Metrics, drift, feedback and performance"),
        (name = "health", description = "Probes"),
        (name = "open inference protocol", description = "KServe / Triton / MLServer clients (v2 REST)"),
        (name = "docs", description = "This document and its interactive page"),
    ),
)]
pub struct ApiDoc;

/// The `bearer` scheme the audit routes take when `AUDIT_TOKEN` is set (without it they
/// answer loopback clients only).
struct BearerToken;

impl utoipa::Modify for BearerToken {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        let components = api.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "AUDIT_TOKEN; without one set, the audit and monitoring routes answer \
                         loopback clients only",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as served, built once. Descriptions come from doc comments, whose rustdoc
/// links (``[`parse_infer`]``) mean nothing to a reader of `/docs`: they are shown as code.
pub fn openapi_text() -> &'static str {
    static TEXT: OnceLock<String> = OnceLock::new();
    TEXT.get_or_init(|| {
        let json = ApiDoc::openapi().to_json().unwrap_or_default();
        json.replace("[`", "`").replace("`]", "`")
    })
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi_text())
}

/// The interactive documentation (Swagger UI, served from the binary: no network needed).
#[utoipa::path(get, path = "/docs", tag = "docs",
    responses((status = 308, description = "To `/docs/index.html`")))]
async fn docs_index() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((actix_web::http::header::LOCATION, "/docs/index.html"))
        .finish()
}

/// A file of the interactive documentation.
#[utoipa::path(get, path = "/docs/{file}", tag = "docs",
    params(("file" = String, Path, description = "`index.html`, its scripts and styles")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/html"), (String = "text/javascript"), (String = "text/css"))),
        (status = 404, description = "No such file (`not_found`)", body = ErrorBody),
    ))]
async fn docs_file(file: web::Path<String>) -> Result<HttpResponse, ApiError> {
    static CONFIG: OnceLock<Arc<utoipa_swagger_ui::Config<'static>>> = OnceLock::new();
    // The page reads this server's document; "none": no call to a public validator.
    let config = CONFIG.get_or_init(|| {
        Arc::new(utoipa_swagger_ui::Config::from("/openapi.json").validator_url("none"))
    });
    match utoipa_swagger_ui::serve(&file, Arc::clone(config)) {
        Ok(Some(f)) => Ok(HttpResponse::Ok()
            .content_type(f.content_type)
            .body(f.bytes.into_owned())),
        Ok(None) => Err(ApiError::NotFound(format!(
            "no documentation file {}",
            crate::text::quote(&file)
        ))),
        Err(e) => Err(ApiError::Internal(anyhow::anyhow!(
            "serving the documentation: {e}"
        ))),
    }
}
