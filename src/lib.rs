//! inferlog: serve smartcore model predictions over HTTP, with every request logged and every
//! answer audited.
//!
//! # Module map
//!
//! A request's stages each live in the file their name promises: the body is read in
//! [`http::body`], parsed and validated in [`input`], predicted into a [`prediction`], audited
//! through [`audit`], logged by [`http::middleware`] and answered by [`http::routes`].
//!
//! Domain (no HTTP, no command line, no process set-up):
//! - [`text`]: escaping and quoting client text for messages and logs; [`throttle`]: one log
//!   line per interval for failures that repeat per request.
//! - [`stats`]: bins, class counts, PSI and Kolmogorov–Smirnov, once for training and drift.
//! - [`model`]: the artifact format, loading, prediction (a compiled walk for random forests),
//!   training data and training.
//! - [`input`]: parsing and validating prediction requests, with typed errors.
//! - [`monitor`]: outlier flags, drift, the recent-input window, accuracy from feedback.
//! - [`audit`]: the audit store: records, the column list, the backend trait and the SQL both
//!   backends share, the SQLite and PostgreSQL backends, typed store faults, the background
//!   writer, exports.
//! - [`prediction`]: one served prediction, from which the response, audit rows, metrics and
//!   log line are built.
//! - [`reports`]: drift and performance reports read from the audit store (its rollups, or
//!   its rows), for the routes and the command line.
//! - [`oip`]: the Open Inference Protocol v2: inference requests parsed into the same input
//!   `/predict` makes, and the protocol's answers built from a prediction.
//!
//! Edges:
//! - [`metrics`]: the Prometheus registry and `/metrics` exposition.
//! - [`http`]: actix: shared state, request facts, middleware, errors, body reading, access,
//!   parameters, and the routes.
//! - [`cli`]: the clap structs; [`config`]: plain [`config::Settings`] built from them (or by
//!   tests); [`telemetry`]: slog set-up from settings.
//! - [`startup`]: the composition root: builds the application and runs it with one drain.
//! - [`commands`]: the subcommands; `main` only parses and calls them.
//!
//! # Import rules
//!
//! Lowest first: `text`, `throttle`, `stats` ← `model` ← {`input`, `monitor`, `audit`} ← `prediction` ← {`reports`, `oip`} ←
//! `metrics` ← `http` ← `startup` ← `commands` ← `main`; `cli` ← `config` ← `telemetry` sit
//! beside `http` and below `startup`.
//!
//! - A domain module (`text`, `throttle`, `stats`, `model`, `input`, `monitor`, `audit`,
//!   `prediction`, `reports`, `oip`)
//!   never imports `http`, `cli`, `config`, `metrics`, `telemetry`, `startup` or `commands`.
//!   (`cli` may name domain enums, such as `AuditMode`.)
//! - `monitor` never imports `audit`: drift and performance take rows as plain values.
//! - `http` never imports `startup`; no file of `http::routes` imports another.
//! - Inside a folder, a `mod.rs` that imports from its children is never imported by them:
//!   what children share lives in leaf files (`audit/record.rs`, `audit/writer/options.rs`).
//! - No import circles, between files or folders.

pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod http;
pub mod input;
pub mod metrics;
pub mod model;
pub mod monitor;
pub mod oip;
pub mod prediction;
pub mod reports;
pub mod startup;
pub mod stats;
pub mod telemetry;
pub mod text;
pub mod throttle;
