//! Building and running the HTTP application.
//!
//! [`Application::build`] loads the models, binds the listener (port 0 picks a free port, which
//! [`Application::port`] reads back — the tests rely on it) and assembles the actix server;
//! [`Application::run_until_stopped`] serves until SIGINT/SIGTERM (or a [`ServerHandle`] stop),
//! letting in-flight requests finish first.

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use slog::{Logger, info};

use crate::cli::ServeArgs;
use crate::middleware::request_middleware;
use crate::model::ModelRegistry;
use crate::routes;

/// What every handler shares.
pub struct AppState {
    pub models: Arc<ModelRegistry>,
    pub logger: Logger,
    /// Largest accepted `/predict` body, in bytes.
    pub max_body_bytes: usize,
    /// Most rows accepted in one `/predict` batch.
    pub max_batch: usize,
}

pub struct Application {
    server: Server,
    port: u16,
    logger: Logger,
}

impl Application {
    pub async fn build(args: &ServeArgs, logger: Logger) -> anyhow::Result<Application> {
        let models = ModelRegistry::load_dir(&args.models, &args.default_model)?;
        for m in models.all() {
            info!(logger, "model loaded";
                "model" => m.name(), "version" => &m.artifact.version,
                "algorithm" => %m.artifact.algorithm, "path" => %m.path.display());
        }
        let state = web::Data::new(AppState {
            models: Arc::new(models),
            logger: logger.clone(),
            max_body_bytes: args.max_body_bytes,
            max_batch: args.max_batch,
        });
        let listener =
            TcpListener::bind(args.bind).with_context(|| format!("binding {}", args.bind))?;
        let addr = listener.local_addr()?;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .wrap(from_fn(request_middleware))
                .configure(routes::configure)
        })
        .shutdown_timeout(args.shutdown_timeout)
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(5));
        if let Some(workers) = args.workers {
            server = server.workers(workers.max(1));
        }
        let server = server
            .listen(listener)
            .with_context(|| format!("listening on {addr}"))?
            .run();
        info!(logger, "listening"; "addr" => %addr);
        Ok(Application {
            server,
            port: addr.port(),
            logger,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully (what SIGTERM does).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped; in-flight requests finish before this returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.server.await.context("running the HTTP server")?;
        info!(self.logger, "server stopped");
        Ok(())
    }
}
