//! Monitoring against the training baseline: outlier flags on every input row
//! ([`outliers`]), drift statistics (PSI and Kolmogorov–Smirnov, [`drift`]) over audited
//! windows, and a rolling window of recent inputs that keeps the drift gauges of `/metrics`
//! current without touching the database ([`window`]).

pub mod drift;
pub mod outliers;
pub mod window;
