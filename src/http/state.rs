//! [`AppState`]: what every handler shares, built once by [`crate::startup`].

use std::sync::Arc;

use crate::audit::{AuditSink, Store};
use crate::config::HttpSettings;
use crate::metrics::Metrics;
use crate::model::registry::LiveModels;
use crate::monitor::drift::DriftRule;
use crate::monitor::outliers::OutlierRule;
use crate::monitor::window::DriftWindows;
use crate::throttle::Throttle;

use super::body::BodyBudget;
use super::readiness::StoreCheck;
use super::request::InFlight;

pub struct AppState {
    /// The models served, by name, and the default one; replaced as a whole on SIGHUP.
    pub models: Arc<LiveModels>,
    /// The root logger; the middleware writes each request's one line through it.
    pub logger: slog::Logger,
    /// Body size, body deadline and batch limits.
    pub limits: HttpSettings,
    /// The bytes of request bodies being read, across all connections.
    pub body_budget: Arc<BodyBudget>,
    /// Hands audit rows to the background writer.
    pub audit: AuditSink,
    /// Reads for the audit and monitoring routes.
    pub store: Store,
    /// SHA-256 of `AUDIT_TOKEN`, when set (see [`super::access`]).
    pub audit_token_digest: Option<[u8; 32]>,
    pub metrics: Arc<Metrics>,
    /// Recent inputs per model, for the drift gauges.
    pub drift_windows: Arc<DriftWindows>,
    pub outlier_rule: OutlierRule,
    pub drift_rule: DriftRule,
    /// Answers with a confidence below it count as low in `/audit/timeseries`.
    pub low_confidence: f64,
    /// Requests being served now; shutdown waits until there are none.
    pub in_flight: Arc<InFlight>,
    /// Lets the ERROR line of a request refused by a failing audit store through once per
    /// interval (see [`crate::http::middleware`]).
    pub store_error_log: Throttle,
    /// Lets the line of a request refused for load (`overloaded`) through once per interval.
    pub overload_log: Throttle,
    /// This replica's name, in each audit row's `writer` (`INFERLOG_INSTANCE`).
    pub instance: Arc<str>,
    /// The store's answer to readiness probes.
    pub store_check: StoreCheck,
}

impl AppState {
    /// Why the service cannot serve predictions now, if it cannot: shutting down, the audit
    /// store's last commit failed, or the store does not answer (what `/health/ready` and
    /// `/v2/health/ready` follow).
    pub async fn not_ready(&self) -> Option<String> {
        if self.in_flight.closing() {
            return Some("shutting down".into());
        }
        if let Some(problem) = self.audit.health.problem() {
            return Some(format!("audit store: {problem}"));
        }
        self.store_check.problem(&self.store, &self.logger).await
    }
}
