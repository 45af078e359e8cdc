//! Building and running the HTTP application: the composition root.
//!
//! [`Application::build`] loads the models, opens the audit store, starts its writer, binds
//! the listener (port 0 picks a free port, which [`Application::port`] reads back — the tests
//! rely on it) and assembles the actix server from plain [`Settings`].
//! [`Application::run`] serves until the shutdown future it is given resolves — SIGTERM or
//! SIGINT in production ([`shutdown_signal`]), a test's own trigger in tests — and then always
//! drains the same way: stop accepting, let in-flight requests finish (up to the shutdown
//! timeout), stop the workers, commit every queued audit row.

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use actix_cors::Cors;
use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpServer, web};
use anyhow::Context;
use slog::{Logger, info, warn};

use crate::audit::writer::{self, WriterHandle, WriterMetrics, WriterOptions};
use crate::audit::{Baselines, Store, StoreOptions, spill};
use crate::config::Settings;
use crate::http::access::token_digest;
use crate::http::body::BodyBudget;
use crate::http::connections::Connections;
use crate::http::middleware::request_middleware;
use crate::http::readiness::StoreCheck;
use crate::http::request::InFlight;
use crate::http::{self, AppState};
use crate::metrics::{LiveCollector, Metrics};
use crate::model::{LiveModels, ModelRegistry};
use crate::monitor::window::DriftWindows;
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
        let registry = ModelRegistry::load_dir(&settings.models, &settings.default_model)?;
        for m in registry.all() {
            info!(logger, "model loaded";
                "model" => m.name(), "version" => &m.artifact.version,
                "algorithm" => %m.artifact.algorithm, "path" => %m.path.display());
        }
        let baselines = Baselines::default();
        for m in registry.all() {
            baselines.register(m);
        }
        let a = &settings.audit;
        let store = Store::open(
            &settings.database_url,
            &StoreOptions {
                sync: a.sync,
                busy_timeout: a.busy_timeout,
                read_only: false,
                max_bytes: a.max_bytes,
                pool_size: a.pg_pool_size,
                acquire_timeout: a.pg_acquire_timeout,
                catch_up: a.pg_catch_up,
                read_timeout: a.read_timeout,
                baselines: baselines.clone(),
            },
        )
        .await?;
        let instance: Arc<str> = settings
            .instance
            .clone()
            .unwrap_or_else(default_instance)
            .into();
        info!(logger, "audit store open";
            "instance" => &*instance, "mode" => ?a.mode,
            "database" => %settings.database_url);
        let writer_metrics = WriterMetrics::default();
        let capabilities = store.capabilities();
        let spill_file = a
            .spill_file
            .clone()
            .or_else(|| spill::default_path(&capabilities));
        match &spill_file {
            Some(path) => replay_spill(&logger, &store, path, &writer_metrics).await,
            None => warn!(
                logger,
                "no spill file (in-memory database, no INFERLOG_AUDIT_SPILL_FILE): rows the store cannot take at shutdown go to the log"
            ),
        }
        // A batch must fit in the queue: it takes its rows' places all at once.
        let queue_rows = a.queue_rows.max(settings.http.max_batch).max(1);
        if queue_rows > a.queue_rows {
            warn!(logger, "audit queue raised to hold one whole batch";
                "queue_rows" => queue_rows, "configured" => a.queue_rows);
        }
        // PostgreSQL takes several writers' commits at once; SQLite has one write lock.
        let writers = a.pg_writers.clamp(1, capabilities.writers);
        if capabilities.writers > 1 && writers != a.pg_writers {
            warn!(logger, "PostgreSQL writers limited to the pool size less one";
                "writers" => writers, "configured" => a.pg_writers, "pool_size" => a.pg_pool_size);
        }
        let (audit, writer) = writer::spawn(
            store.clone(),
            &WriterOptions {
                writers,
                mode: a.mode,
                queue_rows,
                queue_timeout: a.queue_timeout,
                commit_timeout: a.commit_timeout,
                max_backoff: WriterOptions::DEFAULT_MAX_BACKOFF,
                metrics: writer_metrics.clone(),
                spill: spill_file,
            },
            logger.new(slog::o!("component" => "audit")),
        )
        .await;
        let audit_token_digest = token_digest(a.token.as_deref());
        // On a loopback address (the default) only local clients reach the service anyway;
        // on another one, remote clients are refused the audit routes: worth a warning.
        if audit_token_digest.is_none() {
            if settings.bind.ip().is_loopback() {
                info!(
                    logger,
                    "AUDIT_TOKEN is not set: /audit answers loopback clients only"
                );
            } else {
                warn!(
                    logger,
                    "AUDIT_TOKEN is not set: /audit answers loopback clients only";
                    "bind" => %settings.bind
                );
            }
        }
        let m = &settings.monitor;
        let drift_windows = Arc::new(DriftWindows::new(
            &registry,
            m.drift_window,
            m.drift.min_rows,
        ));
        seed_drift_windows(&logger, &store, &registry, &drift_windows, m.drift_window).await;
        let models = Arc::new(LiveModels::new(
            registry,
            &settings.models,
            &settings.default_model,
        ));
        let served = Arc::clone(&models);
        baselines.follow(Arc::new(move |name: &str, version: &str| {
            served
                .current()
                .get(name)
                .filter(|m| m.artifact.version == version)
                .cloned()
        }));
        let mut metrics = Metrics::new(writer_metrics);
        metrics.register_live(LiveCollector {
            audit: audit.clone(),
            store: store.clone(),
            log_dropped,
            models: Arc::clone(&models),
            drift: Arc::clone(&drift_windows),
        });
        let in_flight = Arc::new(InFlight::default());
        let mut limits = settings.http.clone();
        let workers = limits
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        limits.max_connections = connection_cap(&logger, limits.max_connections, workers);
        let state = web::Data::new(AppState {
            models: Arc::clone(&models),
            logger: logger.clone(),
            limits: limits.clone(),
            body_budget: BodyBudget::new(
                limits.body_budget_bytes,
                limits.body_budget_per_client_bytes,
            ),
            audit,
            store,
            audit_token_digest,
            metrics: Arc::new(metrics),
            drift_windows: Arc::clone(&drift_windows),
            outlier_rule: m.outliers,
            drift_rule: m.drift,
            in_flight: Arc::clone(&in_flight),
            store_error_log: Throttle::new(Duration::from_secs(10)),
            overload_log: Throttle::new(Duration::from_secs(10)),
            instance: Arc::clone(&instance),
            store_check: StoreCheck::default(),
        });
        let listener = TcpListener::bind(settings.bind)
            .with_context(|| format!("binding {}", settings.bind))?;
        let addr = listener.local_addr()?;
        widen_backlog(&logger, &listener);
        // The same socket, kept to close it at shutdown (actix owns the listener).
        let listening = listener
            .try_clone()
            .context("keeping the listening socket")?;
        let cors_origins = limits.cors_origins.clone();
        for origin in &cors_origins {
            let ok = origin
                .strip_prefix("https://")
                .or_else(|| origin.strip_prefix("http://"))
                .is_some_and(|host| !host.is_empty() && !host.contains(['/', '*', ' ']));
            anyhow::ensure!(
                ok,
                "INFERLOG_CORS_ORIGINS: {origin:?} is not an origin such as https://app.example.com"
            );
        }
        if !cors_origins.is_empty() {
            info!(logger, "CORS on"; "origins" => cors_origins.join(","));
        }
        // The same server with or without CORS. The CORS middleware is left out entirely when
        // it is off (a disabled `Condition` layer measurably cost the request path), which
        // makes two application types: the macro spells the shared settings once.
        let connections = Arc::new(Connections::default());
        let registry = Arc::clone(&connections);
        macro_rules! run_server {
            ($app:expr) => {
                HttpServer::new($app)
                    .on_connect({
                        let registry = Arc::clone(&registry);
                        move |stream, data| {
                            if let Some(c) = registry.register(stream) {
                                data.insert(c);
                            }
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
        let metrics_here = settings.admin_bind.is_none();
        let admin = match settings.admin_bind {
            Some(bind) => {
                let listener = TcpListener::bind(bind)
                    .with_context(|| format!("binding the admin address {bind}"))?;
                let admin_addr = listener.local_addr()?;
                let state = state.clone();
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
                Some((server, admin_addr.port()))
            }
            None => None,
        };
        let server = if cors_origins.is_empty() {
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
        };
        info!(logger, "listening"; "addr" => %addr);
        Ok(Application {
            server,
            port: addr.port(),
            admin,
            logger,
            writer,
            in_flight,
            listening,
            connections,
            reload: Reloader {
                models: Arc::clone(&models),
                drift: drift_windows,
                // Taken over now, before the first request: its default action kills.
                hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
                log_file: None,
            },
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
            close_listener(&log, &listening);
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

/// Starts each model's drift window from the rows stored before this start (from the
/// rollups), so the drift gauges describe the recent traffic at once. A store that cannot
/// be read leaves the windows empty (they fill with live rows as before).
async fn seed_drift_windows(
    log: &Logger,
    store: &Store,
    registry: &ModelRegistry,
    windows: &DriftWindows,
    capacity: usize,
) {
    for m in registry.all() {
        match crate::reports::recent_counts(store, m, capacity).await {
            Ok(counts) => {
                let rows = windows.seed(m, &counts);
                if rows > 0 {
                    info!(log, "drift window started from stored rows";
                        "model" => m.name(), "rows" => rows);
                }
            }
            Err(e) => warn!(log, "drift window starts empty: stored rows could not be read";
                "model" => m.name(), "error" => e.detail()),
        }
    }
}

/// The models folder's reload, with what depends on the models served.
struct Reloader {
    models: Arc<LiveModels>,
    drift: Arc<DriftWindows>,
    hangup: Option<tokio::signal::unix::Signal>,
    /// Reopened first on SIGHUP, so `logrotate` can move it away.
    log_file: Option<LogFile>,
}

impl Reloader {
    /// Reloads the models folder on every SIGHUP until dropped: the convention of
    /// long-running servers, and what a closing terminal sends (its default action would
    /// kill the process).
    async fn on_sighup(mut self, log: Logger) {
        let Some(mut hup) = self.hangup.take() else {
            warn!(log, "SIGHUP cannot be handled: it would stop the process");
            return;
        };
        while hup.recv().await.is_some() {
            if let Some(file) = &self.log_file {
                match file.reopen() {
                    Ok(()) => info!(log, "log file reopened"; "path" => %file.path().display()),
                    Err(e) => slog::error!(log, "log file not reopened; writing to the one open";
                        "error" => format!("{e:#}")),
                }
            }
            info!(log, "SIGHUP received; reloading the models folder");
            self.reload(&log).await;
        }
    }

    /// Loads the models folder again (off the request threads) and serves the result.
    async fn reload(&self, log: &Logger) {
        let models = Arc::clone(&self.models);
        let done = tokio::task::spawn_blocking(move || models.reload()).await;
        let report = match done {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => {
                slog::error!(log, "models not reloaded; serving the models loaded before";
                    "error" => format!("{e:#}"));
                return;
            }
            Err(e) => {
                slog::error!(log, "models not reloaded; serving the models loaded before";
                    "error" => %e);
                return;
            }
        };
        self.drift.sync(&self.models.current());
        for (model, why) in &report.kept {
            slog::error!(log, "model artifact not reloaded; the loaded model stays served";
                "error" => why.as_str(), "model" => model.as_str());
        }
        for why in &report.refused {
            slog::error!(log, "model artifact not loaded"; "error" => why.as_str());
        }
        for m in self.models.current().all() {
            if report
                .added
                .iter()
                .chain(&report.changed)
                .any(|n| n == m.name())
            {
                info!(log, "model loaded";
                    "model" => m.name(), "version" => &m.artifact.version,
                    "algorithm" => %m.artifact.algorithm, "path" => %m.path.display());
            }
        }
        info!(log, "models reloaded";
            "removed" => report.removed.join(","), "changed" => report.changed.join(","),
            "added" => report.added.join(","),
            "models" => self.models.current().all().len());
    }
}

/// The name a replica gives its audit rows when `INFERLOG_INSTANCE` is not set: the host
/// name and the process's start time (`web-1@2026-12-06T10:00:00Z`), which tells replicas of
/// one host apart across restarts.
fn default_instance() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let host = if ok {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let host = if host.is_empty() {
        "inferlog".into()
    } else {
        host
    };
    format!(
        "{host}@{}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
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

/// Replays a spill file left by an earlier shutdown into the store, and removes it once
/// every row is in (rows the store holds already are skipped, so an interrupted replay can
/// run again). A replay that fails keeps the file for the next start and lets the service
/// start: the rows stay safe in the file.
async fn replay_spill(
    logger: &Logger,
    store: &Store,
    path: &std::path::Path,
    metrics: &WriterMetrics,
) {
    if !path.exists() {
        return;
    }
    info!(logger, "replaying audit rows from the spill file"; "file" => %path.display());
    match spill::replay(store, path, spill::TornFile::Append, &|_| {}).await {
        Ok(done) => {
            metrics.replayed_rows.inc_by(done.inserted);
            info!(logger, "spill file replayed into the audit store";
                "already_stored" => done.rows - done.inserted, "written" => done.inserted,
                "rows" => done.rows, "file" => %path.display());
            if let Some(kept) = &done.torn_file {
                warn!(logger, "the spill file held torn lines (an append cut short); every whole row was replayed, the torn bytes are kept for a person to look at";
                    "torn_file" => %kept.display(), "torn_bytes" => done.torn_bytes,
                    "torn_pieces" => done.torn_pieces, "file" => %path.display());
            }
            if let Err(e) = std::fs::remove_file(path) {
                warn!(logger, "could not remove the replayed spill file; the next start replays it again, writing nothing twice";
                    "error" => %e, "file" => %path.display());
            }
        }
        Err(e) => {
            slog::error!(logger, "could not replay the spill file; it is kept for the next start";
                "error" => format!("{e:#}"), "file" => %path.display());
        }
    }
}

/// File descriptors kept free for everything but client connections: the listener, the audit
/// database and its WAL (several connections), the log file, sqlx's and the runtime's own.
const RESERVED_FDS: u64 = 64;

/// Raises the open-file limit to what the system allows, and cuts the per-worker connection
/// cap to what that limit can hold: with 2 workers × 10,000 connections against the usual
/// 1,024 files, new connections would fail in `accept` and requests time out instead of
/// waiting in the backlog. Logs what it chose.
fn connection_cap(logger: &Logger, wanted: usize, workers: usize) -> usize {
    /// Connections per worker below which a lowered cap is a warning.
    const LOW_CONNECTION_CAP: usize = 1024;
    let Some((before, limit, hard)) = raise_open_files_limit() else {
        warn!(logger, "could not read the open-file limit; connection cap as configured";
            "max_connections_per_worker" => wanted);
        return wanted;
    };
    // Two descriptors per connection: its socket, and the duplicate kept to close it at
    // shutdown (see `http::connections`).
    let fit = (limit.saturating_sub(RESERVED_FDS) / (2 * workers.max(1) as u64)).max(1) as usize;
    let cap = wanted.min(fit);
    if cap < wanted {
        // Lowered from a high default on a normal machine, it still serves thousands of
        // connections: worth a line, not a warning. A cap this low is one.
        let reason = "each connection takes two descriptors; 64 are kept for the store and logs";
        if cap < LOW_CONNECTION_CAP {
            warn!(logger, "connection cap lowered to fit the open-file limit";
                "reason" => reason,
                "max_connections_per_worker" => cap, "configured" => wanted, "workers" => workers,
                "open_files_limit" => limit, "raised_from" => before, "hard_limit" => hard);
        } else {
            info!(logger, "connection cap lowered to fit the open-file limit";
                "reason" => reason,
                "max_connections_per_worker" => cap, "configured" => wanted, "workers" => workers,
                "open_files_limit" => limit, "raised_from" => before, "hard_limit" => hard);
        }
    } else {
        info!(logger, "open-file limit";
            "max_connections_per_worker" => cap, "workers" => workers,
            "open_files_limit" => limit, "raised_from" => before, "hard_limit" => hard);
    }
    cap
}

/// Sets the soft limit of open files to the hard limit; returns (soft before, soft now, hard).
fn raise_open_files_limit() -> Option<(u64, u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given, which lives on this stack.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return None;
    }
    let before = lim.rlim_cur;
    // An unlimited hard limit still cannot be the soft limit of open files: the kernel caps
    // it (nr_open, 1,048,576 by default).
    let target = lim.rlim_max.min(1 << 20);
    if lim.rlim_cur < target {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: lim.rlim_max,
        };
        // SAFETY: setrlimit only reads the struct it is given.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            lim.rlim_cur = target;
        }
    }
    Some((before, lim.rlim_cur, lim.rlim_max))
}

/// Connections the kernel may hold for the listener before it is accepted (capped by
/// `net.core.somaxconn`, 4,096 on current kernels).
const LISTEN_BACKLOG: i32 = 4096;

/// Raises the listen backlog from the standard library's 128: a burst of connections (a
/// reconnecting fleet, or a flood of idle ones) would overflow it, and every client whose SYN is
/// dropped waits a second for its retry (measured: a health probe at 1,005 ms while 2,000
/// connections opened at once).
fn widen_backlog(log: &Logger, listener: &TcpListener) {
    use std::os::fd::AsRawFd;
    // SAFETY: listen(2) on a socket this process owns and already listens on (Linux changes
    // the backlog of a listening socket in place); it touches no memory.
    if unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) } != 0 {
        warn!(log, "could not raise the listen backlog";
            "error" => %std::io::Error::last_os_error());
    }
}

/// Closes the listening socket for good: connections waiting in its backlog and new ones are
/// refused (they were never read, so nothing is lost), instead of hanging until the exit.
fn close_listener(log: &Logger, listening: &TcpListener) {
    use std::os::fd::AsRawFd;
    crate::telemetry::listener_closed();
    // SAFETY: shutdown(2) on a socket this process owns; it touches no memory.
    if unsafe { libc::shutdown(listening.as_raw_fd(), libc::SHUT_RDWR) } != 0 {
        warn!(log, "could not close the listening socket";
            "error" => %std::io::Error::last_os_error());
    }
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
