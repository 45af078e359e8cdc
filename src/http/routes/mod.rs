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

use actix_web::get;
use std::sync::{Arc, OnceLock};

use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_actix_web::AppExt;
use utoipa_actix_web::service_config::ServiceConfig;

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

/// Registers the routes of the main address: every route, but `/metrics` only when there is
/// no admin address (`with_metrics`). Each handler names its own pattern as its resource
/// name (the metrics' `route` label reads it back without allocating) and carries its
/// documentation, which the API document collects from this registration: the routes and
/// their documentation are one list (a test holds [`ROUTES`] to it).
pub fn configure(cfg: &mut web::ServiceConfig, with_metrics: bool) {
    routes(&mut ServiceConfig::new(cfg), with_metrics);
}

fn routes(cfg: &mut ServiceConfig, with_metrics: bool) {
    if with_metrics {
        cfg.service(monitor::metrics);
    }
    // actix tries resources in the order they are registered: the busiest routes first.
    cfg.service(predict::predict_default)
        .configure(probes)
        .service(predict::predict_named)
        .service(models::list)
        .service(models::show)
        .service(audit::list)
        .service(audit::summary)
        .service(audit::timeseries)
        .service(audit::by_request)
        .service(monitor::drift)
        .service(monitor::performance)
        .service(feedback::post)
        .configure(open_inference_protocol)
        .service(openapi_json)
        .service(docs_index)
        .service(docs_file)
        .service(dashboard::page)
        .service(dashboard::root);
    let default = if with_metrics {
        |_: &str| true
    } else {
        |pattern: &str| pattern != "/metrics"
    };
    cfg.default_service(web::to(move |req| unrouted(req, default)));
}

/// Registers the routes of the admin address (`INFERLOG_ADMIN_BIND`): `/metrics` and the
/// probes.
pub fn configure_admin(cfg: &mut web::ServiceConfig) {
    ServiceConfig::new(cfg)
        .service(monitor::metrics)
        .configure(probes)
        .default_service(web::to(|req| {
            unrouted(req, |pattern| {
                pattern == "/metrics" || matches!(pattern, "/health/live" | "/health/ready")
            })
        }));
}

/// The Open Inference Protocol v2 (REST).
fn open_inference_protocol(cfg: &mut ServiceConfig) {
    cfg.service(oip::server_metadata)
        .service(oip::live)
        .service(oip::ready)
        .service(oip::model_metadata)
        .service(oip::model_metadata_at)
        .service(oip::model_ready)
        .service(oip::model_ready_at)
        .service(oip::infer)
        .service(oip::infer_at);
}

fn probes(cfg: &mut ServiceConfig) {
    cfg.service(health::live).service(health::ready);
}

/// The `route` label of a request: its resource name when it matched one, else the pattern
/// its path has (a method the route does not answer), else `unmatched`.
pub fn route_label(req: &HttpRequest) -> &'static str {
    req.match_name()
        .and_then(|name| ROUTES.iter().find(|r| **r == name).copied())
        .or_else(|| req.extensions().get::<OtherMethod>().map(|m| m.0))
        .unwrap_or("unmatched")
}

/// The route pattern of a request answered 405 (another method than its route answers): the
/// metrics count it under that route.
struct OtherMethod(&'static str);

/// A request no route of this address took: 405 (with `Allow`) when its path is the path of
/// a route `here` serves, with another method; else 404. Each route is its own resource,
/// guarded by its method, so both kinds reach this default service.
async fn unrouted(req: HttpRequest, here: fn(&str) -> bool) -> Result<HttpResponse, ApiError> {
    if let Some((pattern, allow)) = route_of(req.path()).filter(|(p, _)| here(p)) {
        req.extensions_mut().insert(OtherMethod(pattern));
        return Ok(HttpResponse::MethodNotAllowed()
            .insert_header((actix_web::http::header::ALLOW, allow))
            .finish());
    }
    Err(ApiError::NotFound(format!(
        "no route for {} {}",
        req.method(),
        escape_controls(req.path())
    )))
}

/// The pattern (of [`ROUTES`]) that matches `path`, and the methods it answers (`GET, HEAD`
/// for the probes), from the document the registration makes.
fn route_of(path: &str) -> Option<(&'static str, &'static str)> {
    static TABLE: OnceLock<Vec<(&'static str, actix_web::dev::ResourceDef, String)>> =
        OnceLock::new();
    let table = TABLE.get_or_init(|| {
        let doc: serde_json::Value = serde_json::from_str(openapi_text()).unwrap_or_default();
        let Some(paths) = doc["paths"].as_object() else {
            return Vec::new();
        };
        paths
            .iter()
            .map(|(pattern, item)| {
                let mut methods: Vec<String> = ["get", "head", "post", "put", "patch", "delete"]
                    .into_iter()
                    .filter(|m| item.get(*m).is_some())
                    .map(str::to_uppercase)
                    .collect();
                if PROBE_ROUTES.contains(&pattern.as_str()) {
                    methods.insert(1, "HEAD".to_string());
                }
                let pattern = ROUTES.iter().find(|r| **r == pattern.as_str())?;
                let def = actix_web::dev::ResourceDef::new(*pattern);
                Some((*pattern, def, methods.join(", ")))
            })
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default()
    });
    table
        .iter()
        .find(|(_, def, _)| def.is_match(path))
        .map(|(pattern, _, allow)| (*pattern, allow.as_str()))
}

/// The API's OpenAPI 3.1 document: its title, tags and security scheme; the paths and the
/// types they name are collected from the routes as they are registered ([`openapi_text`]).
#[derive(OpenApi)]
#[openapi(
    info(
        title = "inferlog",
        description = "Predictions from smartcore models, every one logged and audited.",
        license(name = "MIT OR Apache-2.0"),
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
        let (_, api) = actix_web::App::new()
            .into_utoipa_app()
            .openapi(ApiDoc::openapi())
            .configure(|cfg| routes(cfg, true))
            .split_for_parts();
        let json = api.to_json().unwrap_or_default();
        json.replace("[`", "`").replace("`]", "`")
    })
}

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "docs",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = Object)))]
#[get("/openapi.json", name = "/openapi.json")]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi_text())
}

/// The interactive documentation (Swagger UI, served from the binary: no network needed).
#[utoipa::path(get, path = "/docs", tag = "docs",
    responses((status = 308, description = "To `/docs/index.html`")))]
#[get("/docs", name = "/docs")]
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
#[get("/docs/{file}", name = "/docs/{file}")]
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
