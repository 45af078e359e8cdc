//! `GET /dashboard`: one page showing what the service knows — traffic, latency, labels,
//! rejects, drift, outliers, accuracy and the latest audit records — drawn in the browser from
//! the JSON routes (`/audit/timeseries`, `/audit/summary`, `/monitor/*`, `/audit`). Everything
//! is in the binary (HTML, CSS and script in one file, charts drawn as SVG): no CDN, no build
//! step. The page itself holds no data; its data routes follow the access rule of `/audit`,
//! and with a token the page asks for it once and keeps it in the tab's session storage.

use actix_web::HttpResponse;
use actix_web::get;
use actix_web::http::header;

/// The page: `src/http/dashboard.html`.
const PAGE: &str = include_str!("../dashboard.html");

/// Only this server, and inline script and style: the page can load nothing from elsewhere.
const CSP: &str = "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
                   connect-src 'self'; img-src 'self' data: blob:; form-action 'none'; \
                   base-uri 'none'; frame-ancestors 'none'";

/// The dashboard page.
#[utoipa::path(get, path = "/dashboard", tag = "docs",
    responses((status = 200, description = "The dashboard (HTML)", body = String, content_type = "text/html")))]
#[get("/dashboard", name = "/dashboard")]
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(PAGE)
}

/// `/` leads to the dashboard.
#[utoipa::path(get, path = "/", tag = "docs",
    responses((status = 308, description = "To `/dashboard`")))]
#[get("/", name = "/")]
pub async fn root() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/dashboard"))
        .finish()
}
