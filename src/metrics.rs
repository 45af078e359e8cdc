//! Prometheus metrics, served at `GET /metrics` in the Prometheus text format (0.0.4) through
//! the Prometheus project's `prometheus-client` crate.
//!
//! Counters and histograms are updated where things happen: the request middleware (requests,
//! latency, rejections), [`Metrics::record_prediction`] (labels and outliers of a
//! [`Prediction`]), and the audit writer, which owns its instruments
//! ([`crate::audit::writer::WriterMetrics`]) and has them registered here. Values that already live elsewhere — the audit queue
//! depth, dropped log records, model identity, the drift of the recent-input window — are read
//! at scrape time by [`LiveCollector`], so the request path does no extra work for them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::audit::writer::WriterMetrics;
use crate::audit::{AuditSink, Store};
use crate::model::registry::LiveModels;
use crate::monitor::window::DriftWindows;
use crate::prediction::{Answer, Prediction};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The matched route pattern (`/models/{name}/predict`), `unmatched` otherwise: bounded.
    pub route: &'static str,
    pub method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: &'static str,
}

/// The `method` label: the standard methods by name, anything else as `other`.
pub fn method_label(m: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method;
    match *m {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PredictionLabels {
    pub model: Arc<str>,
    pub label: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ModelLabels {
    pub model: Arc<str>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FeatureLabels {
    pub model: Arc<str>,
    pub feature: Arc<str>,
}

/// Every instrument the service updates.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: Family<HttpLabels, Counter>,
    pub http_duration: Family<RouteLabels, Histogram>,
    pub predictions: Family<PredictionLabels, Counter>,
    pub rejected: Family<ReasonLabels, Counter>,
    pub outliers: Family<FeatureLabels, Counter>,
    pub confidence: Family<ModelLabels, Histogram>,
}

impl Metrics {
    /// The registry with every instrument, the audit writer's `writer` included.
    pub fn new(writer: WriterMetrics) -> Metrics {
        let mut registry = Registry::with_prefix("inferlog");
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route pattern, method and status",
            http_requests.clone(),
        );
        let http_duration = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_05, 2.5, 14))
        });
        registry.register(
            "http_request_duration_seconds",
            "Time from request arrival to response, by route pattern",
            http_duration.clone(),
        );
        let predictions = Family::<PredictionLabels, Counter>::default();
        registry.register(
            "predictions",
            "Rows predicted and answered, by model and predicted label",
            predictions.clone(),
        );
        let rejected = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "rejected_requests",
            "Prediction requests rejected, by error code",
            rejected.clone(),
        );
        let outliers = Family::<FeatureLabels, Counter>::default();
        registry.register(
            "outlier_features",
            "Input values outside the training range or spread, by model and feature",
            outliers.clone(),
        );
        // Tenths up to 1: a share below a threshold is one bucket over the count.
        let confidence = Family::<ModelLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
        });
        registry.register(
            "prediction_confidence",
            "Probability of the served class per row answered, by model",
            confidence.clone(),
        );
        register_writer(&mut registry, writer);
        Metrics {
            registry,
            http_requests,
            http_duration,
            predictions,
            rejected,
            outliers,
            confidence,
        }
    }

    /// Counts a served prediction's rows by label and its flagged features.
    pub fn record_prediction(&self, p: &Prediction) {
        let shared = &p.model.shared;
        let Answer::Classes {
            classes,
            probabilities,
            ..
        } = &p.answer
        else {
            // A regressor's rows have no label.
            self.predictions
                .get_or_create(&PredictionLabels {
                    model: Arc::clone(&shared.name),
                    label: "".into(),
                })
                .inc_by(p.input.rows as u64);
            self.record_outliers(p);
            return;
        };
        let mut per_class = vec![0u64; shared.labels.len()];
        for &c in classes {
            per_class[c as usize] += 1;
        }
        for (c, &n) in per_class.iter().enumerate().filter(|(_, n)| **n > 0) {
            self.predictions
                .get_or_create(&PredictionLabels {
                    model: Arc::clone(&shared.name),
                    label: Arc::clone(&shared.labels[c]),
                })
                .inc_by(n);
        }
        let confidence = self.confidence.get_or_create(&ModelLabels {
            model: Arc::clone(&shared.name),
        });
        for (i, &c) in classes.iter().enumerate() {
            confidence.observe(probabilities.confidence(i, c));
        }
        self.record_outliers(p);
    }

    /// Counts a served prediction's flagged features.
    fn record_outliers(&self, p: &Prediction) {
        let shared = &p.model.shared;
        for row in &p.outliers {
            for feature in &row.features {
                self.outliers
                    .get_or_create(&FeatureLabels {
                        model: Arc::clone(&shared.name),
                        feature: Arc::clone(feature),
                    })
                    .inc();
            }
        }
    }

    /// Adds the values read at scrape time.
    pub fn register_live(&mut self, live: LiveCollector) {
        self.registry.register_collector(Box::new(live));
    }

    /// [`Metrics::new`] with the gauges read at each scrape ([`Metrics::register_live`]).
    pub fn with_live(writer: WriterMetrics, live: LiveCollector) -> Metrics {
        let mut metrics = Metrics::new(writer);
        metrics.register_live(live);
        metrics
    }

    /// The exposition text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::with_capacity(16 * 1024);
        prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new(WriterMetrics::default())
    }
}

/// Values read when `/metrics` is scraped.
#[derive(Debug)]
pub struct LiveCollector {
    pub audit: AuditSink,
    /// The store, for the size of its write-ahead log.
    pub store: Store,
    pub log_dropped: Arc<AtomicU64>,
    pub models: Arc<LiveModels>,
    pub drift: Arc<DriftWindows>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelInfoLabels {
    model: String,
    version: String,
    algorithm: String,
}

impl Collector for LiveCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        gauge(
            &mut encoder,
            "audit_queue_rows",
            "Audit rows held for the writer: queued, being committed or retried (what SIGKILL would lose in async mode)",
            self.audit.queued_rows() as i64,
        )?;
        gauge(
            &mut encoder,
            "audit_queue_capacity_rows",
            "Audit rows the queue holds at most (INFERLOG_AUDIT_QUEUE_ROWS)",
            self.audit.capacity_rows() as i64,
        )?;
        let dropped = ConstCounter::new(self.log_dropped.load(Ordering::Relaxed));
        dropped.encode(encoder.encode_descriptor(
            "log_records_dropped",
            "Log records dropped because the log queue was full",
            None,
            MetricType::Counter,
        )?)?;
        gauge(
            &mut encoder,
            "audit_wal_bytes",
            "Size of the audit database's write-ahead log file, in bytes",
            self.store.wal_bytes() as i64,
        )?;
        gauge(
            &mut encoder,
            "audit_store_failing",
            "1 while the last audit commit failed",
            i64::from(self.audit.health.problem().is_some()),
        )?;
        self.encode_models(&mut encoder)?;
        self.encode_drift(&mut encoder)
    }
}

/// One gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    ConstGauge::new(value).encode(encoder.encode_descriptor(name, help, None, MetricType::Gauge)?)
}

impl LiveCollector {
    /// `model_info`: one series per model served.
    fn encode_models(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut info = encoder.encode_descriptor(
            "model_info",
            "Models served (value is always 1)",
            None,
            MetricType::Gauge,
        )?;
        for m in self.models.current().all() {
            let labels = ModelInfoLabels {
                model: m.name().to_string(),
                version: m.artifact.version.clone(),
                algorithm: m.artifact.algorithm.to_string(),
            };
            ConstGauge::new(1i64).encode(info.encode_family(&labels)?)?;
        }
        Ok(())
    }

    /// The drift gauges of the recent-input window: PSI per model and feature, and the rows
    /// they describe.
    fn encode_drift(&self, encoder: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let snapshots = self.drift.snapshot();
        let mut psi = encoder.encode_descriptor(
            "drift_psi",
            "Population stability index of the recent-input window against the training \
             baseline, per model and feature (feature=\"prediction\": predicted classes)",
            None,
            MetricType::Gauge,
        )?;
        for s in &snapshots {
            for (feature, value) in &s.psi {
                let labels = FeatureLabels {
                    model: s.model.clone(),
                    feature: feature.clone(),
                };
                ConstGauge::new(*value).encode(psi.encode_family(&labels)?)?;
            }
        }
        let mut rows = encoder.encode_descriptor(
            "drift_window_rows",
            "Rows in the recent-input window that the drift gauges describe",
            None,
            MetricType::Gauge,
        )?;
        for s in &snapshots {
            let labels = ModelLabel {
                model: s.model.clone(),
            };
            ConstGauge::new(s.rows as i64).encode(rows.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabel {
    model: Arc<str>,
}

/// The audit writer's instruments.
fn register_writer(registry: &mut Registry, writer: WriterMetrics) {
    registry.register(
        "audit_rows_written",
        "Audit rows committed",
        writer.rows_written,
    );
    registry.register(
        "audit_batch_rows",
        "Rows per audit commit",
        writer.batch_rows,
    );
    registry.register(
        "audit_commit_duration_seconds",
        "Time to write and commit one audit batch",
        writer.commit_seconds,
    );
    registry.register(
        "audit_write_errors",
        "Audit commits that failed",
        writer.write_errors,
    );
    registry.register(
        "audit_spilled_rows",
        "Acknowledged audit rows written to the spill file at shutdown because the store could not take them",
        writer.spilled_rows,
    );
    registry.register(
        "audit_replayed_rows",
        "Audit rows replayed from a spill file at start-up (rows the store did not hold yet)",
        writer.replayed_rows,
    );
}
