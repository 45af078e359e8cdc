//! Building and running the HTTP application: the composition root.
//!
//! [`Application::build`] loads the models, opens the audit store, starts its writer, binds
//! the listener (port 0 picks a free port, which [`Application::port`] reads back — the tests
//! rely on it) and assembles the actix server from plain [`Settings`].
//! [`Application::run`] serves until the shutdown future it is given resolves — SIGTERM or
//! SIGINT in production ([`shutdown_signal`]), a test's own trigger in tests — and then always
//! drains the same way: stop accepting, let in-flight requests finish (up to the shutdown
//! timeout), stop the workers, commit every queued audit row.

mod audit;
mod listener;
mod reload;
mod server;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use actix_web::dev::Server;
use actix_web::web;
use anyhow::Context;
use slog::{Logger, info, warn};

use self::reload::Reloader;
use crate::audit::Baselines;
use crate::audit::writer::WriterHandle;
use crate::config::Settings;
use crate::http::AppState;
use crate::http::body::BodyBudget;
use crate::http::connections::Connections;
use crate::http::readiness::StoreCheck;
use crate::http::request::InFlight;
use crate::metrics::{LiveCollector, Metrics};
use crate::model::registry::{LiveModels, ModelRegistry};
use crate::telemetry::LogFile;
use crate::throttle::Throttle;

pub struct Application {
    /// The actix server, running once built; it stops when [`Application::run`] drains it.
    server: Server,
    port: u16,
    /// The admin server (`/metrics`, probes) and its port, when it has its own address.
    admin: Option<(Server, u16)>,
    logger: Logger,
    /// The audit writer: shut down after the server, so every row a handler queued commits.
    writer: WriterHandle,
    /// Requests in progress: the drain waits until there are none.
    in_flight: Arc<InFlight>,
    /// The listening socket, closed when shutdown begins.
    listening: TcpListener,
    /// The open client connections: the idle ones are closed when shutdown begins.
    connections: Arc<Connections>,
    /// Reloads the models folder on SIGHUP.
    reload: Reloader,
    /// From the shutdown signal to the exit.
    shutdown_timeout: Duration,
}

/// The shortest shutdown: time to commit (or spill) what the writer holds.
const MIN_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

/// The audit writer's share of the shutdown time, after the HTTP server has stopped: a
/// fifth of it, at most this much.
const WRITER_SHARE_MAX: Duration = Duration::from_secs(5);

impl Application {
    /// `log_dropped` is the logger's count of dropped records, for `/metrics`.
    pub async fn build(
        settings: Settings,
        logger: Logger,
        log_dropped: Arc<AtomicU64>,
    ) -> anyhow::Result<Application> {
        settings.monitor.drift.check().map_err(anyhow::Error::msg)?;
        let (registry, baselines) = load_models(&settings, &logger)?;
        let audited = audit::start(&settings, &logger, &baselines).await?;
        let m = &settings.monitor;
        let drift_windows = audit::drift_windows(&logger, &audited.store, &registry, m).await;
        let models = Arc::new(LiveModels::new(
            registry,
            &settings.models,
            &settings.default_model,
        ));
        follow_served(&baselines, &models);
        let metrics = Metrics::with_live(
            audited.metrics,
            LiveCollector {
                audit: audited.sink.clone(),
                store: audited.store.clone(),
                log_dropped,
                models: Arc::clone(&models),
                drift: Arc::clone(&drift_windows),
            },
        );
        let in_flight = Arc::new(InFlight::default());
        let (limits, workers) = listener::limits(&settings, &logger);
        let state = web::Data::new(AppState {
            models: Arc::clone(&models),
            logger: logger.clone(),
            limits: limits.clone(),
            body_budget: BodyBudget::new(
                limits.body_budget_bytes,
                limits.body_budget_per_client_bytes,
            ),
            audit: audited.sink,
            store: audited.store,
            audit_token_digest: audit::token_digest(&settings, &logger),
            metrics: Arc::new(metrics),
            drift_windows: Arc::clone(&drift_windows),
            outlier_rule: m.outliers,
            drift_rule: m.drift,
            low_confidence: m.low_confidence,
            in_flight: Arc::clone(&in_flight),
            store_error_log: Throttle::new(Duration::from_secs(10)),
            overload_log: Throttle::new(Duration::from_secs(10)),
            instance: audited.instance,
            store_check: StoreCheck::default(),
        });
        let (listener, listening, addr) = listener::bind(&logger, settings.bind)?;
        server::check_origins(&logger, &limits.cors_origins)?;
        let metrics_here = settings.admin_bind.is_none();
        let admin = (settings.admin_bind)
            .map(|bind| server::admin(&logger, bind, state.clone()))
            .transpose()?;
        let connections = Arc::new(Connections::default());
        let server = server::main(
            state,
            &limits,
            workers,
            metrics_here,
            listener,
            Arc::clone(&connections),
        )?;
        info!(logger, "listening"; "addr" => %addr);
        Ok(Application {
            server,
            port: addr.port(),
            admin,
            logger,
            writer: audited.writer,
            in_flight,
            listening,
            connections,
            reload: Reloader::new(models, drift_windows),
            shutdown_timeout: limits.shutdown_timeout.max(MIN_SHUTDOWN_TIMEOUT),
        })
    }

    /// The log file to reopen on SIGHUP (with the models), for `logrotate`.
    pub fn reopening(mut self, log_file: Option<LogFile>) -> Application {
        self.reload.log_file = log_file;
        self
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The admin address's port, when there is one.
    pub fn admin_port(&self) -> Option<u16> {
        self.admin.as_ref().map(|(_, port)| *port)
    }

    /// Serves until `shutdown` resolves, then drains within the shutdown timeout, counted
    /// from the signal:
    ///
    /// 1. the listening socket is closed (new connections are refused at once, so a load
    ///    balancer moves on), keep-alive connections serving no request are closed at once
    ///    ([`Connections::close_idle`]), and every response from now on carries
    ///    `Connection: close`;
    /// 2. requests in flight finish, for up to the timeout less the writer's share;
    /// 3. the server stops (a request still running at that point is cut off unanswered);
    /// 4. the audit writer commits everything queued, and spills to the spill file what the
    ///    store cannot take by the deadline.
    ///
    /// The workers are stopped only once no request is in flight: stopping them at once, as
    /// actix does on its own, races with its accept thread (a worker that sees the accept
    /// channel close before its stop message exits without finishing its connections).
    pub async fn run(
        self,
        shutdown: impl Future<Output = &'static str> + 'static,
    ) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let (log, in_flight, timeout) = (
            self.logger.clone(),
            Arc::clone(&self.in_flight),
            self.shutdown_timeout,
        );
        let listening = self.listening;
        let connections = self.connections;
        let reloads = actix_web::rt::spawn(self.reload.on_sighup(self.logger.clone()));
        let admin = self.admin.map(|(server, _)| {
            let handle = server.handle();
            (handle, actix_web::rt::spawn(server))
        });
        let (deadline_tx, deadline_rx) = tokio::sync::oneshot::channel();
        let drain = actix_web::rt::spawn(async move {
            let cause = shutdown.await;
            let deadline = Instant::now() + timeout;
            let _ = deadline_tx.send(deadline);
            info!(log, "shutdown signal received; finishing in-flight requests";
                "signal" => cause, "timeout_s" => timeout.as_secs_f64());
            in_flight.close_connections();
            handle.pause().await;
            listener::close_listener(&log, &listening);
            let closed = connections.close_idle();
            info!(log, "listener and idle connections closed"; "idle_connections_closed" => closed);
            let writer_share = (timeout / 5).min(WRITER_SHARE_MAX);
            let http_deadline = deadline - writer_share;
            if tokio::time::timeout_at(http_deadline.into(), in_flight.idle())
                .await
                .is_err()
            {
                warn!(
                    log,
                    "requests still in flight at the shutdown deadline are cut off"
                );
            }
            handle.stop(false).await;
        });
        let served = self.server.await.context("running the HTTP server");
        drain.abort();
        reloads.abort();
        if let Some((handle, task)) = admin {
            handle.stop(false).await;
            let _ = task.await;
        }
        let deadline = match deadline_rx.await {
            Ok(deadline) => deadline,
            Err(_) => Instant::now() + self.shutdown_timeout,
        };
        info!(self.logger, "server stopped; draining the audit queue");
        self.writer.shutdown(deadline).await;
        info!(self.logger, "audit queue drained");
        served
    }
}

/// Loads the models folder, logging each model, and registers their training baselines.
fn load_models(settings: &Settings, logger: &Logger) -> anyhow::Result<(ModelRegistry, Baselines)> {
    let registry = ModelRegistry::load_dir(&settings.models, &settings.default_model)?;
    let baselines = Baselines::default();
    for m in registry.all() {
        info!(logger, "model loaded";
            "model" => m.name(), "version" => &m.artifact.version,
            "algorithm" => %m.artifact.algorithm, "path" => %m.path.display());
        baselines.register(m);
    }
    Ok((registry, baselines))
}

/// Baselines of versions served after a reload are found among the models served.
fn follow_served(baselines: &Baselines, models: &Arc<LiveModels>) {
    let served = Arc::clone(models);
    baselines.follow(Arc::new(move |name: &str, version: &str| {
        served
            .current()
            .get(name)
            .filter(|m| m.artifact.version == version)
            .cloned()
    }));
}

/// Installs the SIGTERM and SIGINT handlers now, and returns what resolves on either, with
/// the signal's name. Made before [`Application::build`] logs `listening`, so a signal sent as
/// soon as the server says it listens drains it instead of killing it by the default action.
pub fn shutdown_signal() -> impl Future<Output = &'static str> + 'static {
    use tokio::signal::unix::{SignalKind, signal};
    let term = signal(SignalKind::terminate()).ok();
    let int = signal(SignalKind::interrupt()).ok();
    async move {
        let (Some(mut term), Some(mut int)) = (term, int) else {
            // Without signal handlers the process still stops on the default action.
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        }
    }
}
