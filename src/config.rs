//! [`Settings`]: everything `serve` needs, as plain values. Built from the command line
//! ([`Settings::from_args`]) or directly by tests, so nothing in a developer's environment
//! (`AUDIT_TOKEN`, `LOG_FORMAT`, …) changes an in-process test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::audit::url::DatabaseUrl;
use crate::audit::{AuditMode, SyncLevel};
use crate::cli::{DriftSettings as DriftArgs, LogFormat, ServeArgs, defaults};
use crate::monitor::drift::DriftRule;
use crate::monitor::outliers::OutlierRule;

#[derive(Debug, Clone)]
pub struct Settings {
    /// Address and port to listen on (port 0 picks a free port).
    pub bind: SocketAddr,
    /// The operators' address (`/metrics` and the probes); `None`: all on `bind`.
    pub admin_bind: Option<SocketAddr>,
    /// Folder of model artifacts.
    pub models: PathBuf,
    /// Model that answers `POST /predict`.
    pub default_model: String,
    /// Audit database URL.
    pub database_url: DatabaseUrl,
    /// This replica's name in the audit rows; `None`: host name and start time.
    pub instance: Option<String>,
    pub log: LogSettings,
    pub audit: AuditSettings,
    pub monitor: MonitorSettings,
    pub http: HttpSettings,
}

/// Where log lines go and how they look.
#[derive(Debug, Clone)]
pub struct LogSettings {
    /// Append lines to this file instead of writing them to stderr.
    pub file: Option<PathBuf>,
    pub format: LogFormat,
    /// Least severe level written.
    pub level: slog::Level,
    /// Records the async queue holds before it drops (and counts) new ones.
    pub queue_size: usize,
}

/// How predictions are recorded in the audit store.
#[derive(Debug, Clone)]
pub struct AuditSettings {
    pub mode: AuditMode,
    pub sync: SyncLevel,
    /// How long a write waits for a lock held by another process.
    pub busy_timeout: Duration,
    /// Largest size of the audit database; `None`: no limit.
    pub max_bytes: Option<u64>,
    /// PostgreSQL: connections each replica keeps to the audit database.
    pub pg_pool_size: u32,
    /// PostgreSQL: the longest a store call waits for a connection.
    pub pg_acquire_timeout: Duration,
    /// PostgreSQL: how long an oldest-first read at the end of the rows waits for the
    /// transactions open when it began.
    pub pg_catch_up: Duration,
    /// The longest an HTTP read of the audit rows may run.
    pub read_timeout: Duration,
    /// PostgreSQL: writers committing side by side.
    pub pg_writers: usize,
    /// Rows the writer may hold (queued, being committed or retried).
    pub queue_rows: usize,
    /// Where rows go that cannot be committed by the shutdown deadline; `None`: beside the
    /// database file.
    pub spill_file: Option<PathBuf>,
    /// How long a request waits for room in a full queue before a 503.
    pub queue_timeout: Duration,
    /// Durable mode: how long a request waits for its commit before a 503.
    pub commit_timeout: Duration,
    /// Bearer token required by the audit routes; `None`: loopback clients only.
    pub token: Option<String>,
}

/// Outlier and drift thresholds.
#[derive(Debug, Clone)]
pub struct MonitorSettings {
    pub outliers: OutlierRule,
    pub drift: DriftRule,
    /// Recent rows per model behind the drift gauges of `/metrics`.
    pub drift_window: usize,
}

/// Limits of the HTTP server.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted (larger gets 413).
    pub max_body_bytes: usize,
    /// Bytes of bodies all requests together may hold while reading them (more gets 503).
    pub body_budget_bytes: usize,
    /// Bytes of that budget one client address may hold; `None`: a quarter of it.
    pub body_budget_per_client_bytes: Option<usize>,
    /// Time a client has to send a request body (more gets 408).
    pub body_timeout: Duration,
    /// Most rows one `/predict` batch may carry (more gets 413).
    pub max_batch: usize,
    /// Worker threads; `None`: one per CPU core.
    pub workers: Option<usize>,
    /// Open connections each worker serves at once.
    pub max_connections: usize,
    /// How long an idle keep-alive connection is kept; zero closes after each response.
    pub keep_alive: Duration,
    /// The longest a shutdown takes, from the signal to the exit (at least a second).
    pub shutdown_timeout: Duration,
    /// Origins allowed to call from a browser (CORS); empty: CORS off.
    pub cors_origins: Vec<String>,
}

impl Default for Settings {
    /// The embedded defaults: the shipped model folder, `inferlog.db`, durable audit.
    fn default() -> Self {
        Settings {
            bind: defaults::BIND.parse().expect("the default address parses"),
            admin_bind: None,
            models: defaults::MODELS.into(),
            default_model: defaults::DEFAULT_MODEL.into(),
            database_url: defaults::DATABASE_URL
                .parse()
                .expect("the default database URL parses"),
            instance: None,
            log: LogSettings {
                file: None,
                format: LogFormat::Term,
                level: slog::Level::Info,
                queue_size: defaults::LOG_QUEUE_SIZE,
            },
            audit: AuditSettings {
                mode: AuditMode::Durable,
                sync: SyncLevel::Normal,
                busy_timeout: Duration::from_millis(defaults::AUDIT_BUSY_TIMEOUT_MS),
                max_bytes: None,
                pg_pool_size: defaults::PG_POOL_SIZE,
                pg_acquire_timeout: Duration::from_millis(defaults::PG_ACQUIRE_TIMEOUT_MS),
                pg_catch_up: Duration::from_millis(defaults::PG_CATCH_UP_MS),
                read_timeout: Duration::from_millis(defaults::AUDIT_READ_TIMEOUT_MS),
                pg_writers: defaults::PG_WRITERS,
                queue_rows: defaults::AUDIT_QUEUE_ROWS,
                spill_file: None,
                queue_timeout: Duration::from_millis(defaults::AUDIT_QUEUE_TIMEOUT_MS),
                commit_timeout: Duration::from_millis(defaults::AUDIT_COMMIT_TIMEOUT_MS),
                token: None,
            },
            monitor: MonitorSettings {
                outliers: OutlierRule {
                    range_margin: defaults::OUTLIER_RANGE_MARGIN,
                    std_k: defaults::OUTLIER_STD_K,
                },
                drift: DriftRule {
                    psi_warn: defaults::DRIFT_PSI_WARN,
                    psi_alert: defaults::DRIFT_PSI_ALERT,
                    min_rows: defaults::DRIFT_MIN_ROWS,
                    max_rows: defaults::DRIFT_MAX_ROWS,
                    sample_rows: defaults::DRIFT_SAMPLE_ROWS,
                },
                drift_window: defaults::DRIFT_WINDOW,
            },
            http: HttpSettings {
                max_body_bytes: defaults::MAX_BODY_BYTES,
                body_budget_bytes: defaults::BODY_BUDGET_BYTES,
                body_budget_per_client_bytes: None,
                body_timeout: Duration::from_millis(defaults::BODY_TIMEOUT_MS),
                max_batch: defaults::MAX_BATCH,
                workers: None,
                max_connections: defaults::MAX_CONNECTIONS,
                keep_alive: Duration::from_secs(defaults::KEEP_ALIVE_S),
                shutdown_timeout: Duration::from_secs(defaults::SHUTDOWN_TIMEOUT_S),
                cors_origins: Vec::new(),
            },
        }
    }
}

/// The drift thresholds of the command line (shared by `serve` and `inferlog drift`).
pub fn drift_rule(args: &DriftArgs) -> DriftRule {
    DriftRule {
        psi_warn: args.drift_psi_warn,
        psi_alert: args.drift_psi_alert,
        min_rows: args.drift_min_rows,
        max_rows: args.drift_max_rows.max(1),
        sample_rows: args.drift_sample_rows.max(1),
    }
}

impl Settings {
    /// Fails only on a database URL that does not parse (the message shows it without its
    /// password).
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Settings> {
        let a = &args.audit;
        let m = &args.monitor;
        Ok(Settings {
            bind: args.bind,
            admin_bind: args.admin_bind,
            models: args.models.clone(),
            default_model: args.default_model.clone(),
            database_url: args.store.database_url.parse()?,
            instance: args.instance.clone(),
            log: LogSettings {
                file: args.log.log_file.clone(),
                format: args.log.log_format,
                level: args.log.log_level,
                queue_size: args.log.log_queue_size,
            },
            audit: AuditSettings {
                mode: a.audit_mode,
                sync: a.audit_sync,
                busy_timeout: Duration::from_millis(a.audit_busy_timeout_ms),
                max_bytes: (a.audit_max_mb > 0).then(|| a.audit_max_mb.saturating_mul(1 << 20)),
                pg_pool_size: a.pg_pool_size,
                pg_acquire_timeout: Duration::from_millis(a.pg_acquire_timeout_ms),
                pg_catch_up: Duration::from_millis(a.pg_catch_up_ms),
                read_timeout: Duration::from_millis(a.audit_read_timeout_ms),
                pg_writers: a.pg_writers,
                queue_rows: a.audit_queue_rows,
                spill_file: a.audit_spill_file.clone(),
                queue_timeout: Duration::from_millis(a.audit_queue_timeout_ms),
                commit_timeout: Duration::from_millis(a.audit_commit_timeout_ms),
                token: a.audit_token.clone(),
            },
            monitor: MonitorSettings {
                outliers: OutlierRule {
                    range_margin: m.outlier_range_margin,
                    std_k: m.outlier_std_k,
                },
                drift: drift_rule(&m.drift),
                drift_window: m.drift_window,
            },
            http: HttpSettings {
                max_body_bytes: args.max_body_bytes,
                body_budget_bytes: args.body_budget_bytes,
                body_budget_per_client_bytes: args.body_budget_per_client_bytes,
                body_timeout: Duration::from_millis(args.body_timeout_ms),
                max_batch: args.max_batch,
                workers: args.workers,
                max_connections: args.max_connections,
                keep_alive: Duration::from_secs(args.keep_alive_s),
                shutdown_timeout: Duration::from_secs(args.shutdown_timeout),
                cors_origins: args
                    .cors_origins
                    .iter()
                    .map(|o| o.trim().to_string())
                    .filter(|o| !o.is_empty())
                    .collect(),
            },
        })
    }
}
