//! [`Settings`]: everything `serve` needs, as plain values. Built from the command line
//! ([`Settings::from_args`]) or directly by tests, so nothing in a developer's environment
//! (`AUDIT_TOKEN`, `LOG_FORMAT`, …) changes an in-process test.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::audit::url::DatabaseUrl;
pub use crate::cli::{AuditSettings, MonitorSettings};
use crate::cli::{LogFormat, ServeArgs};

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
    /// The embedded defaults: the shipped model folder, `inferlog.db`, durable audit. Read
    /// from the flags' own defaults (clap, with no arguments and every environment variable
    /// ignored), so they are declared once.
    fn default() -> Self {
        use clap::{Args, FromArgMatches};
        let command =
            ServeArgs::augment_args(clap::Command::new("inferlog")).mut_args(|arg| arg.env(None));
        let matches = command
            .try_get_matches_from(["inferlog"])
            .expect("the flags' defaults parse");
        let args = ServeArgs::from_arg_matches(&matches).expect("the flags' defaults parse");
        Settings::from_args(&args).expect("the default settings are valid")
    }
}

impl Settings {
    /// Fails only on a database URL that does not parse (the message shows it without its
    /// password).
    pub fn from_args(args: &ServeArgs) -> anyhow::Result<Settings> {
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
            audit: args.audit.clone(),
            monitor: MonitorSettings {
                drift: args.monitor.drift.bounded(),
                ..args.monitor.clone()
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
