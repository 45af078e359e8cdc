//! Monitoring against the training baseline: outlier flags on every input row
//! ([`outliers`]), drift statistics (PSI and Kolmogorov–Smirnov, [`drift`]) over audited
//! inputs, a rolling window of recent inputs that keeps the drift gauges of `/metrics` current
//! without touching the database ([`window`]), and accuracy from ground truth
//! ([`performance`]).
//!
//! Nothing here reads the audit store: callers pass rows in as plain values.

pub mod drift;
pub mod outliers;
pub mod performance;
pub mod window;
