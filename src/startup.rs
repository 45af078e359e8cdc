//! Building and running the HTTP application.
//!
//! [`Application::build`] loads the models, binds the listener (port 0 picks a free port, which
//! [`Application::port`] reads back — the tests rely on it) and assembles the actix server;
//! [`Application::run_until_stopped`] serves until SIGINT/SIGTERM (or a [`ServerHandle`] stop),
//! letting in-flight requests finish first.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use sha2::{Digest, Sha256};
use slog::{Logger, info, warn};

use crate::audit::writer::{self, WriterHandle, WriterOptions};
use crate::audit::{AuditSink, Store, StoreOptions};
use crate::cli::ServeArgs;
use crate::metrics::{LiveCollector, Metrics};
use crate::middleware::request_middleware;
use crate::model::ModelRegistry;
use crate::monitor::drift::DriftRule;
use crate::monitor::outliers::OutlierRule;
use crate::monitor::window::DriftWindows;
use crate::routes;

/// What every handler shares.
pub struct AppState {
    pub models: Arc<ModelRegistry>,
    pub logger: Logger,
    /// Largest accepted `/predict` body, in bytes.
    pub max_body_bytes: usize,
    /// Most rows accepted in one `/predict` batch.
    pub max_batch: usize,
    /// Hands audit rows to the background writer.
    pub audit: AuditSink,
    /// Reads for `/audit`.
    pub store: Store,
    /// SHA-256 of `AUDIT_TOKEN`, when set.
    pub audit_token_digest: Option<[u8; 32]>,
    pub metrics: Arc<Metrics>,
    /// Recent inputs per model, for the drift gauges.
    pub drift_windows: Arc<DriftWindows>,
    pub outlier_rule: OutlierRule,
    pub drift_rule: DriftRule,
}

pub struct Application {
    server: Server,
    port: u16,
    logger: Logger,
    writer: WriterHandle,
}

impl Application {
    /// `log_dropped` is the logger's count of dropped records, for `/metrics`.
    pub async fn build(
        args: &ServeArgs,
        logger: Logger,
        log_dropped: Arc<AtomicU64>,
    ) -> anyhow::Result<Application> {
        let models = Arc::new(ModelRegistry::load_dir(&args.models, &args.default_model)?);
        for m in models.all() {
            info!(logger, "model loaded";
                "model" => m.name(), "version" => &m.artifact.version,
                "algorithm" => %m.artifact.algorithm, "path" => %m.path.display());
        }
        let a = &args.audit;
        let store = Store::open(
            &args.database_url,
            &StoreOptions {
                sync: a.audit_sync,
                busy_timeout: Duration::from_millis(a.audit_busy_timeout_ms),
                read_only: false,
            },
        )
        .await?;
        info!(logger, "audit store open";
            "mode" => ?a.audit_mode, "database" => &args.database_url);
        let mut metrics = Metrics::new();
        let (audit, writer) = writer::spawn(
            store.clone(),
            &WriterOptions {
                mode: a.audit_mode,
                queue_capacity: a.audit_queue,
                queue_timeout: Duration::from_millis(a.audit_queue_timeout_ms),
                commit_timeout: Duration::from_millis(a.audit_commit_timeout_ms),
                metrics: metrics.writer.clone(),
            },
            logger.new(slog::o!("component" => "audit")),
        );
        let audit_token_digest = a
            .audit_token
            .as_deref()
            .filter(|t| !t.trim().is_empty())
            .map(|t| Sha256::digest(t.trim().as_bytes()).into());
        if audit_token_digest.is_none() {
            warn!(
                logger,
                "AUDIT_TOKEN is not set: /audit answers loopback clients only"
            );
        }
        let m = &args.monitor;
        let drift_rule = m.drift.rule();
        let drift_windows = Arc::new(DriftWindows::new(
            &models,
            m.drift_window,
            drift_rule.min_rows,
        ));
        metrics.register_live(LiveCollector {
            audit: audit.clone(),
            log_dropped,
            models: Arc::clone(&models),
            drift: Arc::clone(&drift_windows),
        });
        let state = web::Data::new(AppState {
            models,
            logger: logger.clone(),
            max_body_bytes: args.max_body_bytes,
            max_batch: args.max_batch,
            audit,
            store,
            audit_token_digest,
            metrics: Arc::new(metrics),
            drift_windows,
            outlier_rule: OutlierRule {
                range_margin: m.outlier_range_margin,
                std_k: m.outlier_std_k,
            },
            drift_rule,
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
            writer,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully (what SIGTERM does).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped; in-flight requests finish, then every queued audit row is
    /// committed, before this returns.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await.context("running the HTTP server");
        info!(self.logger, "server stopped; draining the audit queue");
        self.writer.shutdown().await;
        info!(self.logger, "audit queue drained");
        served
    }
}
