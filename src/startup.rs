//! Building and running the HTTP application.
//!
//! [`Application::build`] loads the models, binds the listener (port 0 picks a free port, which
//! [`Application::port`] reads back — the tests rely on it) and assembles the actix server;
//! [`Application::run_until_stopped`] serves until SIGINT/SIGTERM (or a [`ServerHandle`] stop),
//! letting in-flight requests finish first.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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
    /// Time allowed for a request body to arrive.
    pub body_timeout: Duration,
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
    /// Requests being served now; shutdown waits for it to reach zero.
    pub in_flight: Arc<AtomicUsize>,
}

pub struct Application {
    server: Server,
    port: u16,
    logger: Logger,
    writer: WriterHandle,
    in_flight: Arc<AtomicUsize>,
    shutdown_timeout: Duration,
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
                max_bytes: (a.audit_max_mb > 0).then(|| a.audit_max_mb.saturating_mul(1 << 20)),
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
        let in_flight = Arc::new(AtomicUsize::new(0));
        let state = web::Data::new(AppState {
            models,
            logger: logger.clone(),
            max_body_bytes: args.max_body_bytes,
            max_batch: args.max_batch,
            body_timeout: Duration::from_millis(args.body_timeout_ms),
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
            in_flight: Arc::clone(&in_flight),
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
        // Signals are handled in `run_until_stopped`, which drains in-flight requests before
        // it stops the workers (see there).
        .disable_signals()
        .client_request_timeout(Duration::from_secs(10))
        .client_disconnect_timeout(Duration::from_secs(5))
        .max_connections(args.max_connections.max(1))
        .keep_alive(match args.keep_alive_s {
            0 => actix_web::http::KeepAlive::Disabled,
            s => actix_web::http::KeepAlive::Timeout(Duration::from_secs(s)),
        });
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
            in_flight,
            shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A handle to stop the server gracefully (what SIGTERM does).
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGTERM/SIGINT (or a [`ServerHandle`] stop); in-flight requests finish,
    /// then every queued audit row is committed, before this returns.
    ///
    /// On a signal the server first stops accepting connections and waits (up to the shutdown
    /// timeout) until no request is in progress, and only then stops its workers. Stopping the
    /// workers at once, as actix does on its own, races with its accept thread: a worker that
    /// sees the accept channel close before its stop message exits without finishing its
    /// connections (seen here as in-flight requests cut off under load).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let (log, in_flight, timeout) = (
            self.logger.clone(),
            Arc::clone(&self.in_flight),
            self.shutdown_timeout,
        );
        let signals = actix_web::rt::spawn(async move {
            let signal = wait_for_signal().await;
            info!(log, "shutdown signal received; finishing in-flight requests";
                "signal" => signal);
            handle.pause().await;
            let deadline = std::time::Instant::now() + timeout;
            while in_flight.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline {
                actix_web::rt::time::sleep(Duration::from_millis(5)).await;
            }
            handle.stop(true).await;
        });
        let served = self.server.await.context("running the HTTP server");
        signals.abort();
        info!(self.logger, "server stopped; draining the audit queue");
        self.writer.shutdown().await;
        info!(self.logger, "audit queue drained");
        served
    }
}

/// Resolves on SIGTERM or SIGINT, with the signal's name.
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        // Without signal handlers the process still stops on the default action.
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
