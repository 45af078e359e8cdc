//! The actix servers: the main one (with CORS when origins are configured) and the admin
//! one (`/metrics` and the probes on their own address).

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use slog::{Logger, info};

use crate::config::HttpSettings;
use crate::http::connections::Connections;
use crate::http::middleware::request_middleware;
use crate::http::{self, AppState};

/// Refuses anything in `INFERLOG_CORS_ORIGINS` that is not an origin, and logs the ones on.
pub(super) fn check_origins(logger: &Logger, origins: &[String]) -> anyhow::Result<()> {
    for origin in origins {
        let ok = origin
            .strip_prefix("https://")
            .or_else(|| origin.strip_prefix("http://"))
            .is_some_and(|host| !host.is_empty() && !host.contains(['/', '*', ' ']));
        anyhow::ensure!(
            ok,
            "INFERLOG_CORS_ORIGINS: {origin:?} is not an origin such as https://app.example.com"
        );
    }
    if !origins.is_empty() {
        info!(logger, "CORS on"; "origins" => origins.join(","));
    }
    Ok(())
}

/// The main server on `listener`, `limits.workers` workers, every connection registered in
/// `connections` (so shutdown can close the idle ones).
pub(super) fn main(
    state: web::Data<AppState>,
    limits: &HttpSettings,
    workers: usize,
    metrics_here: bool,
    listener: TcpListener,
    connections: Arc<Connections>,
) -> anyhow::Result<Server> {
    let addr = listener.local_addr()?;
    let cors_origins = limits.cors_origins.clone();
    // The same server with or without CORS. The CORS middleware is left out entirely when
    // it is off (a disabled `Condition` layer measurably cost the request path), which
    // makes two application types: the macro spells the shared settings once.
    macro_rules! run_server {
        ($app:expr) => {
            HttpServer::new($app)
                .on_connect(move |stream, data| {
                    if let Some(c) = connections.register(stream) {
                        data.insert(c);
                    }
                })
                .shutdown_timeout(limits.shutdown_timeout.as_secs())
                // Signals are handled by the shutdown future given to `run`, which drains
                // in-flight requests before it stops the workers (see there).
                .disable_signals()
                .client_request_timeout(Duration::from_secs(10))
                .client_disconnect_timeout(Duration::from_secs(5))
                .max_connections(limits.max_connections.max(1))
                .keep_alive(if limits.keep_alive.is_zero() {
                    actix_web::http::KeepAlive::Disabled
                } else {
                    actix_web::http::KeepAlive::Timeout(limits.keep_alive)
                })
                .workers(workers.max(1))
                .listen(listener)
                .with_context(|| format!("listening on {addr}"))?
                .run()
        };
    }
    Ok(if cors_origins.is_empty() {
        run_server!(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(request_middleware))
                .configure(|c| http::configure(c, metrics_here))
        })
    } else {
        run_server!(move || {
            App::new()
                .app_data(state.clone())
                // Inside the request middleware, so preflights get their log line.
                .wrap(cors(&cors_origins))
                .wrap(from_fn(request_middleware))
                .configure(|c| http::configure(c, metrics_here))
        })
    })
}

/// The admin server on `bind`: one worker, `/metrics` and the health probes.
pub(super) fn admin(
    logger: &Logger,
    bind: SocketAddr,
    state: web::Data<AppState>,
) -> anyhow::Result<(Server, u16)> {
    let listener =
        TcpListener::bind(bind).with_context(|| format!("binding the admin address {bind}"))?;
    let admin_addr = listener.local_addr()?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .wrap(from_fn(request_middleware))
            .configure(http::configure_admin)
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .with_context(|| format!("listening on {admin_addr}"))?
    .run();
    info!(logger, "admin address listening (/metrics, /health/*)"; "addr" => %admin_addr);
    Ok((server, admin_addr.port()))
}

/// Cross-origin access for browser clients from `origins`: the methods and headers the API
/// uses, the request id readable by scripts, preflights cached for an hour.
fn cors(origins: &[String]) -> Cors {
    let mut cors = Cors::default()
        .allowed_methods(["GET", "POST", "HEAD"])
        .allowed_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-request-id"),
        ])
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(3600);
    for origin in origins {
        cors = cors.allowed_origin(origin);
    }
    cors
}
