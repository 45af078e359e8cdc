//! inferlog: serve smartcore model predictions over HTTP, with every request logged.
//!
//! Layout:
//! - [`cli`]: command line and configuration (flags with environment variables).
//! - [`telemetry`]: slog set-up (term or JSON, through an async drain) and the `log` bridge.
//! - [`startup`]: builds the actix application from the settings and runs it.
//! - [`middleware`]: request id, the per-request log line and JSON error bodies.
//! - [`routes`]: the HTTP handlers, one file per resource.
//! - [`input`]: parsing and validation of prediction requests.
//! - [`model`]: the model artifact format, loading, prediction and training.
//! - [`audit`]: the audit store (SQLite through sqlx), its background writer and queries.
//! - [`monitor`]: outlier flags, drift statistics and the recent-input window.
//! - [`metrics`]: Prometheus instruments and the `/metrics` exposition.
//! - [`error`]: the HTTP error type and its JSON body.

pub mod audit;
pub mod cli;
pub mod error;
pub mod input;
pub mod metrics;
pub mod middleware;
pub mod model;
pub mod monitor;
pub mod routes;
pub mod startup;
pub mod telemetry;
