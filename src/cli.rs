//! The command line: clap structs only. Every setting has a flag and an environment variable,
//! and a default (in [`defaults`], shared with [`crate::config::Settings::default`]) that makes
//! `inferlog serve` work from the repository root with no setup. `main` loads `.env` (through
//! dotenvy) before clap reads the environment, so `.env.example` copied to `.env` is honoured.
//! [`crate::config`] turns these into plain settings; nothing else reads them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::filter::FilterArgs;
use crate::audit::{AuditMode, Order, SyncLevel};
use crate::model::data::Dataset;
use crate::model::{Algorithm, Task};
use crate::monitor::drift::DriftRule;
use crate::monitor::outliers::OutlierRule;

/// The defaults of the service's settings, one place for clap (and so for
/// [`crate::config::Settings::default`], which clap builds). Durations are in milliseconds, as
/// the flags take them. The outlier and drift thresholds' defaults are their rules' own
/// ([`OutlierRule`], [`DriftRule`]).
pub mod defaults {
    pub const BIND: &str = "127.0.0.1:8080";
    pub const MODELS: &str = "models";
    pub const DEFAULT_MODEL: &str = "iris";
    pub const DATABASE_URL: &str = "sqlite://inferlog.db";
    pub const MAX_BODY_BYTES: usize = 1024 * 1024;
    pub const BODY_BUDGET_BYTES: usize = 256 * 1024 * 1024;
    pub const BODY_TIMEOUT_MS: u64 = 10_000;
    pub const MAX_BATCH: usize = 1000;
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const KEEP_ALIVE_S: u64 = 5;
    pub const SHUTDOWN_TIMEOUT_S: u64 = 30;
    pub const AUDIT_BUSY_TIMEOUT_MS: &str = "5000";
    pub const AUDIT_QUEUE_ROWS: usize = 16_384;
    pub const PG_POOL_SIZE: u32 = 4;
    pub const PG_WRITERS: usize = 2;
    pub const PG_ACQUIRE_TIMEOUT_MS: &str = "5000";
    pub const PG_CATCH_UP_MS: &str = "500";
    pub const AUDIT_READ_TIMEOUT_MS: &str = "5000";
    pub const AUDIT_QUEUE_TIMEOUT_MS: &str = "1000";
    pub const AUDIT_COMMIT_TIMEOUT_MS: &str = "10000";
    pub const DRIFT_WINDOW: usize = 1000;
    pub const LOW_CONFIDENCE: f64 = 0.5;
    pub const LOG_LEVEL: &str = "info";
    pub const LOG_QUEUE_SIZE: usize = 65_536;
}

/// Serve smartcore model predictions with every request logged and audited.
#[derive(Debug, Parser)]
#[command(
    name = "inferlog",
    version,
    about,
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    /// Settings for `serve`, which also runs when no subcommand is given.
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve predictions over HTTP (the default).
    Serve(Box<ServeArgs>),
    /// Train a model and write its artifact (a JSON file) for `serve` to load.
    Train(TrainArgs),
    /// Query the audit database directly (works while the server runs).
    Audit(AuditCliArgs),
    /// Drift report of audited inputs against a model's training baseline.
    Drift(DriftCliArgs),
}

/// Everything the HTTP service needs to start.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address and port to listen on (port 0 picks a free port).
    #[arg(long, env = "INFERLOG_BIND", default_value = defaults::BIND)]
    pub bind: SocketAddr,

    /// A second address for operators: `/metrics` and the health probes. When set,
    /// `/metrics` is served there only (the main address answers it 404), so the main port
    /// can face clients while metrics stay on an internal network.
    #[arg(long, env = "INFERLOG_ADMIN_BIND")]
    pub admin_bind: Option<SocketAddr>,

    /// Folder of model artifacts (`*.json`); every one is loaded at start-up.
    #[arg(long, env = "INFERLOG_MODELS", default_value = defaults::MODELS)]
    pub models: PathBuf,

    /// Model that answers `POST /predict`.
    #[arg(long, env = "INFERLOG_DEFAULT_MODEL", default_value = defaults::DEFAULT_MODEL)]
    pub default_model: String,

    #[command(flatten)]
    pub store: StoreArg,

    /// This replica's name in each audit row's `writer` column (default: the host name and
    /// the process's start time, `host@2026-12-06T10:00:00Z`).
    #[arg(long, env = "INFERLOG_INSTANCE", value_parser = nonempty)]
    pub instance: Option<String>,

    #[command(flatten)]
    pub log: LogArgs,

    #[command(flatten)]
    pub audit: AuditSettings,

    #[command(flatten)]
    pub monitor: MonitorSettings,

    /// Largest request body accepted, in bytes (larger gets 413).
    #[arg(long, env = "INFERLOG_MAX_BODY_BYTES", default_value_t = defaults::MAX_BODY_BYTES)]
    pub max_body_bytes: usize,

    /// Bytes of request bodies all connections together may hold while they are read; past it
    /// a request gets 503 `overloaded`. Bounds memory by configuration, not by the number of
    /// connections trickling bodies in.
    #[arg(long, env = "INFERLOG_BODY_BUDGET_BYTES", default_value_t = defaults::BODY_BUDGET_BYTES)]
    pub body_budget_bytes: usize,

    /// Bytes of that budget one client address may hold (default: a quarter of it), so one
    /// client cannot take it from the others. Behind a proxy every client has the proxy's
    /// address: set it to the whole budget there.
    #[arg(long, env = "INFERLOG_BODY_BUDGET_PER_CLIENT_BYTES")]
    pub body_budget_per_client_bytes: Option<usize>,

    /// Time a client has to send a request body once its headers arrived (more gets 408).
    #[arg(long, env = "INFERLOG_BODY_TIMEOUT_MS", default_value_t = defaults::BODY_TIMEOUT_MS)]
    pub body_timeout_ms: u64,

    /// Most rows one `/predict` batch may carry (more gets 413).
    #[arg(long, env = "INFERLOG_MAX_BATCH", default_value_t = defaults::MAX_BATCH)]
    pub max_batch: usize,

    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "INFERLOG_WORKERS")]
    pub workers: Option<usize>,

    /// Open connections each worker serves at once; further clients wait in the listen
    /// backlog until one closes. Bounds memory and file descriptors under a connection flood.
    #[arg(long, env = "INFERLOG_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Origins allowed to call the API from a browser (CORS), comma-separated, e.g.
    /// `https://app.example.com`. Empty (the default): no CORS headers, as before.
    #[arg(long, env = "INFERLOG_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,

    /// Seconds an idle keep-alive connection is kept open (0: close after each response).
    #[arg(long, env = "INFERLOG_KEEP_ALIVE_S", default_value_t = defaults::KEEP_ALIVE_S)]
    pub keep_alive_s: u64,

    /// Seconds given to in-flight requests to finish after SIGTERM/SIGINT.
    #[arg(long, env = "INFERLOG_SHUTDOWN_TIMEOUT", default_value_t = defaults::SHUTDOWN_TIMEOUT_S)]
    pub shutdown_timeout: u64,
}

/// How predictions are recorded in the audit store: the flags, and the settings `serve` runs
/// with ([`crate::config::Settings`] holds this same struct).
#[derive(Debug, Clone, Args)]
pub struct AuditSettings {
    /// `durable`: answer only after the audit rows committed (503 if they cannot be).
    /// `async`: answer at once; rows are queued and committed moments later.
    #[arg(long = "audit-mode", env = "INFERLOG_AUDIT_MODE", value_enum, default_value_t = AuditMode::Durable)]
    pub mode: AuditMode,

    /// SQLite `synchronous`: `normal` survives process crashes, `full` also power loss.
    #[arg(long = "audit-sync", env = "INFERLOG_AUDIT_SYNC", value_enum, default_value_t = SyncLevel::Normal)]
    pub sync: SyncLevel,

    /// How long a write waits for a lock held by another process before failing, in ms.
    #[arg(long = "audit-busy-timeout-ms", env = "INFERLOG_AUDIT_BUSY_TIMEOUT_MS", default_value = defaults::AUDIT_BUSY_TIMEOUT_MS, value_name = "MS", value_parser = millis)]
    pub busy_timeout: Duration,

    /// Largest size the audit database and its write-ahead log may grow to together, in MiB
    /// (0: no limit; the log takes at most a quarter). At the limit,
    /// durable predictions answer 503 until space is freed (deleted rows are reused) or the
    /// limit is raised: a cap keeps the audit store from filling a disk shared with others.
    // The full path: clap reads the flag's value into the whole option (0 is none).
    #[arg(long = "audit-max-mb", env = "INFERLOG_AUDIT_MAX_MB", default_value = "0", value_name = "MIB", value_parser = size_cap)]
    pub max_bytes: ::std::option::Option<u64>,

    /// Audit rows the writer may hold (queued, being committed or retried); past it,
    /// requests wait for room (back pressure), then get 503. The most a SIGKILL can lose in
    /// async mode. At least one batch (`INFERLOG_MAX_BATCH`).
    #[arg(long = "audit-queue-rows", env = "INFERLOG_AUDIT_QUEUE_ROWS", default_value_t = defaults::AUDIT_QUEUE_ROWS)]
    pub queue_rows: usize,

    /// PostgreSQL: connections this replica keeps to the audit database. Each writer needs
    /// one at a time; the rest serve reads (`/audit`, `/monitor/*`, feedback). Mind the
    /// server's `max_connections` across replicas.
    #[arg(long, env = "INFERLOG_PG_POOL_SIZE", default_value_t = defaults::PG_POOL_SIZE)]
    pub pg_pool_size: u32,

    /// PostgreSQL: audit writers committing side by side, each its own batches on its own
    /// connection (one PostgreSQL backend runs one statement on one core). At most the pool
    /// size less one; SQLite always has one (one write lock).
    #[arg(long, env = "INFERLOG_PG_WRITERS", default_value_t = defaults::PG_WRITERS)]
    pub pg_writers: usize,

    /// PostgreSQL: the longest a store call waits for a connection, in ms; while the server
    /// is unreachable, durable requests get their 503 after this long (at most the commit
    /// timeout).
    #[arg(long = "pg-acquire-timeout-ms", env = "INFERLOG_PG_ACQUIRE_TIMEOUT_MS", default_value = defaults::PG_ACQUIRE_TIMEOUT_MS, value_name = "MS", value_parser = millis)]
    pub pg_acquire_timeout: Duration,

    /// PostgreSQL: how long an oldest-first read (`order=asc`, the exports) that reaches the
    /// end of the rows waits for the writing transactions open when it began to end, in ms,
    /// so that it holds every row committed before it began. A transaction open longer holds
    /// the newest rows back from that read (they show in the next one); 0: never wait.
    #[arg(long = "pg-catch-up-ms", env = "INFERLOG_PG_CATCH_UP_MS", default_value = defaults::PG_CATCH_UP_MS, value_name = "MS", value_parser = millis)]
    pub pg_catch_up: Duration,

    /// The longest an HTTP read of the audit rows (a summary the rollups cannot answer) may
    /// run, in ms: past it, the read stops and answers 503 naming `inferlog audit snapshot`,
    /// since a read holding one snapshot for long keeps SQLite from checkpointing its WAL
    /// (which then grows, and slows every commit) and PostgreSQL from cleaning up.
    #[arg(long = "audit-read-timeout-ms", env = "INFERLOG_AUDIT_READ_TIMEOUT_MS", default_value = defaults::AUDIT_READ_TIMEOUT_MS, value_name = "MS", value_parser = millis)]
    pub read_timeout: Duration,

    /// Where acknowledged rows go that the store cannot take before the shutdown deadline
    /// (JSON lines, fsynced); the next start replays them. Default: beside the database,
    /// `inferlog.db-spill.jsonl`. Put it on another disk to survive a full one.
    #[arg(long = "audit-spill-file", env = "INFERLOG_AUDIT_SPILL_FILE")]
    pub spill_file: Option<PathBuf>,

    /// How long a request waits for room in a full queue before a 503, in ms.
    #[arg(long = "audit-queue-timeout-ms", env = "INFERLOG_AUDIT_QUEUE_TIMEOUT_MS", default_value = defaults::AUDIT_QUEUE_TIMEOUT_MS, value_name = "MS", value_parser = millis)]
    pub queue_timeout: Duration,

    /// Durable mode: how long a request waits for its commit before a 503, in ms.
    #[arg(long = "audit-commit-timeout-ms", env = "INFERLOG_AUDIT_COMMIT_TIMEOUT_MS", default_value = defaults::AUDIT_COMMIT_TIMEOUT_MS, value_name = "MS", value_parser = millis)]
    pub commit_timeout: Duration,

    /// Bearer token required by /audit. Unset: /audit answers loopback clients only.
    #[arg(long = "audit-token", env = "AUDIT_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
}

/// Outlier and drift thresholds: the flags, and the settings `serve` runs with.
#[derive(Debug, Clone, Args)]
pub struct MonitorSettings {
    #[command(flatten)]
    pub outliers: OutlierRule,

    #[command(flatten)]
    pub drift: DriftRule,

    /// Recent rows per model behind the drift gauges of /metrics.
    #[arg(long, env = "INFERLOG_DRIFT_WINDOW", default_value_t = defaults::DRIFT_WINDOW)]
    pub drift_window: usize,

    /// A classifier's answer with a confidence (the served class's probability) below this
    /// counts as low in /audit/timeseries.
    #[arg(long, env = "INFERLOG_LOW_CONFIDENCE", default_value_t = defaults::LOW_CONFIDENCE,
        value_parser = unit_interval)]
    pub low_confidence: f64,
}

/// A number from 0 to 1.
fn unit_interval(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| (0.0..=1.0).contains(v))
        .ok_or_else(|| "must be a number from 0 to 1".to_string())
}

/// Milliseconds, as a duration.
fn millis(s: &str) -> Result<Duration, String> {
    s.parse::<u64>()
        .map(Duration::from_millis)
        .map_err(|_| "must be a whole number of milliseconds".to_string())
}

/// A size cap in MiB, as bytes; 0 is none.
fn size_cap(s: &str) -> Result<Option<u64>, String> {
    let mb = s
        .parse::<u64>()
        .map_err(|_| "must be a whole number of MiB (0: no limit)".to_string())?;
    Ok((mb > 0).then(|| mb.saturating_mul(1 << 20)))
}

/// The audit store, for every command that opens one (`inferlog audit replay` requires it
/// instead: see there).
#[derive(Debug, Clone, Args)]
pub struct StoreArg {
    /// Audit database: `sqlite://PATH` or a plain path (an SQLite file, created when
    /// missing), or `postgres://…` (`--db` is an older name).
    #[arg(
        long,
        visible_alias = "db",
        env = "DATABASE_URL",
        default_value = defaults::DATABASE_URL
    )]
    pub database_url: String,
}

/// `inferlog drift`: the `/monitor/drift` report, run on the database file.
#[derive(Debug, Clone, Args)]
pub struct DriftCliArgs {
    #[command(flatten)]
    pub store: StoreArg,
    #[arg(long, env = "INFERLOG_MODELS", default_value = defaults::MODELS)]
    pub models: PathBuf,
    #[arg(long, env = "INFERLOG_DEFAULT_MODEL", default_value = defaults::DEFAULT_MODEL)]
    pub model: String,
    /// Rows received at or after this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    pub since: Option<DateTime<Utc>>,
    /// Rows received before this RFC 3339 time.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<DateTime<Utc>>,
    #[command(flatten)]
    pub drift: DriftRule,
}

/// `inferlog audit`: the `/audit` query, run on the database file.
#[derive(Debug, Clone, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct AuditCliArgs {
    #[command(subcommand)]
    pub action: Option<AuditAction>,

    #[command(flatten)]
    pub store: StoreArg,
    #[command(flatten)]
    pub filters: FilterArgs,
    #[arg(long, value_enum, default_value_t = Order::Desc)]
    pub order: Order,
    /// Most rows printed (default: all that match).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print a summary (counts and latency percentiles) instead of rows.
    #[arg(long)]
    pub summary: bool,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

/// What `inferlog audit` does besides querying.
#[derive(Debug, Clone, Subcommand)]
pub enum AuditAction {
    /// Write a consistent copy of the audit database to FILE (SQLite's `VACUUM INTO`), also
    /// while the server writes: the way to take the store for offline analysis.
    Snapshot {
        /// The copy; it must not exist yet.
        file: PathBuf,
        #[command(flatten)]
        store: StoreArg,
    },
    /// Copy every audit row and every feedback from one store to another — typically a SQLite
    /// history into PostgreSQL when one machine is outgrown. Rows and feedback the target
    /// holds already are skipped, so running it twice copies nothing twice, and a copy that
    /// stopped half-way can be run again.
    Copy {
        /// The store to read: `sqlite://PATH`, a plain path, or `postgres://…`.
        #[arg(long)]
        from: String,
        /// The store to write (created and migrated if needed).
        #[arg(long)]
        to: String,
        /// Models folder: rows are counted over their model version's training bins (drift
        /// rollups); versions not there get no bin counts.
        #[arg(long, env = "INFERLOG_MODELS", default_value = defaults::MODELS)]
        models: PathBuf,
        /// Show progress on stderr (rows done, rate, time left) also when it is not a
        /// terminal; on a terminal it is shown anyway.
        #[arg(long)]
        progress: bool,
    },
    /// Recompute the rollups (`/audit/summary`, `/audit/timeseries`, `/monitor/drift`,
    /// `/monitor/performance`) from the audit rows and feedback, in one transaction: after rows were changed by hand, or to check them. The
    /// service keeps them itself, also for copied and replayed rows.
    RebuildRollups {
        #[command(flatten)]
        store: StoreArg,
        /// Models folder: rows are counted over their model version's training bins (drift
        /// rollups); versions not there get no bin counts.
        #[arg(long, env = "INFERLOG_MODELS", default_value = defaults::MODELS)]
        models: PathBuf,
        /// Show progress on stderr (rows done, rate, time left) also when it is not a
        /// terminal; on a terminal it is shown anyway.
        #[arg(long)]
        progress: bool,
    },
    /// Remove the audit rows received before a time, and the feedback on them, in batches of
    /// short transactions (the server may run meanwhile: it waits at most one batch). The
    /// rollups keep their counts, so summaries, time series and performance over the pruned
    /// period still answer; a rebuild of the rollups would lose them.
    Prune {
        #[command(flatten)]
        store: StoreArg,
        /// Rows received before this RFC 3339 time go.
        #[arg(long, value_parser = parse_time)]
        before: DateTime<Utc>,
        /// Count what would go; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Rows per transaction.
        #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..=100_000))]
        batch_rows: u64,
        /// Show progress on stderr also when it is not a terminal; on a terminal it is shown
        /// anyway.
        #[arg(long)]
        progress: bool,
    },
    /// Write the rows of a spill file (left by a shutdown while the store was failing) into
    /// the audit database. Rows it holds already are skipped, so a replay may be repeated.
    /// The service replays its own spill file at start-up; this is for a file moved to
    /// another machine. The file is left in place.
    Replay {
        /// The spill file (JSON lines).
        file: PathBuf,
        /// Audit database: `sqlite://PATH`, a plain path, or `postgres://…`. Required (flag or
        /// `DATABASE_URL`): replayed into a default `./inferlog.db` made up on the spot, the
        /// rows would be safe but nowhere anyone looks.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Models folder: rows are counted over their model version's training bins (drift
        /// rollups); versions not there get no bin counts.
        #[arg(long, env = "INFERLOG_MODELS", default_value = defaults::MODELS)]
        models: PathBuf,
        /// Show progress on stderr (rows done, rate, time left) also when it is not a
        /// terminal; on a terminal it is shown anyway.
        #[arg(long)]
        progress: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Csv,
    Jsonl,
    /// One line per request in SageMaker's Data Capture layout (oldest first).
    Sagemaker,
}

/// Where log lines go and how they look.
#[derive(Debug, Clone, Args)]
pub struct LogArgs {
    /// Write log lines to this file (appending) instead of stderr.
    #[arg(long, env = "LOG_FILE")]
    pub log_file: Option<PathBuf>,

    /// `term` for people, `json` (one object per line) for log shippers.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value_t = LogFormat::Term)]
    pub log_format: LogFormat,

    /// Least severe level written: trace, debug, info, warn, error or critical.
    #[arg(long, env = "LOG_LEVEL", default_value = defaults::LOG_LEVEL, value_parser = parse_level)]
    pub log_level: slog::Level,

    /// Log records the async queue holds before it drops (and counts) new ones.
    #[arg(long, env = "LOG_QUEUE_SIZE", default_value_t = defaults::LOG_QUEUE_SIZE)]
    pub log_queue_size: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Term,
    Json,
}

/// A threshold: a finite number, zero or more (NaN, infinities and negative values would make
/// every verdict or flag meaningless).
fn parse_time(s: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.to_utc())
        .map_err(|_| "must be an RFC 3339 time such as 2026-11-27T10:00:00Z".to_string())
}

fn nonempty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("is empty".to_string())
    } else {
        Ok(s.to_string())
    }
}

fn parse_level(s: &str) -> Result<slog::Level, String> {
    s.parse::<slog::Level>().map_err(|()| {
        format!("unknown log level {s:?}: use trace, debug, info, warn, error or critical")
    })
}

/// Training options; see `inferlog train --help`.
#[derive(Debug, Clone, Args)]
pub struct TrainArgs {
    /// A dataset that ships inside smartcore.
    #[arg(
        long,
        value_enum,
        conflicts_with = "csv",
        required_unless_present = "csv"
    )]
    pub dataset: Option<Dataset>,

    /// A CSV file with a header row: numeric feature columns plus one target column.
    #[arg(long, requires = "target")]
    pub csv: Option<PathBuf>,

    /// Name of the target column in `--csv`: class labels, or numbers with `--task
    /// regression`.
    #[arg(long)]
    pub target: Option<String>,

    /// What the model predicts: a class, or a number (regression). Default: classification
    /// for `--csv`, the dataset's own task for `--dataset`.
    #[arg(long, value_enum)]
    pub task: Option<Task>,

    /// Random forests, decision trees and k-NN do both tasks; logistic regression classifies;
    /// linear regression, ridge, lasso and elastic net regress.
    #[arg(long, value_enum, default_value_t = Algorithm::RandomForest)]
    pub algorithm: Algorithm,

    /// Model name (default: the dataset name or the CSV file's stem).
    #[arg(long)]
    pub name: Option<String>,

    /// Output file (default: `models/<name>.json`).
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Seed for the split and the algorithm: the same command writes the same model.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,

    /// Share of rows held out to measure accuracy.
    #[arg(long, default_value_t = 0.2)]
    pub test_size: f32,
}
