//! Drift of live inputs and predictions against the training baseline.
//!
//! Per feature: the population stability index (PSI) over the baseline's decile bins and the
//! two-sample Kolmogorov–Smirnov statistic against the training sample kept in the artifact,
//! with its asymptotic p-value. For predictions: the PSI of the predicted-class distribution
//! against the training class proportions. Each gets a status from its PSI — `ok`, `warn`,
//! `alert` — or `insufficient_data` when the window holds fewer rows than a verdict needs
//! (small windows make PSI jump and raise false alarms).

use serde::Serialize;

use super::outliers::non_negative;
use crate::model::Model;
use crate::stats::{bin_counts, class_counts, ks_two_sample, proportions, psi};

/// Thresholds of the verdicts, and how many rows a report reads (also the flags that set
/// them, for the service and `inferlog drift`).
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct DriftRule {
    /// PSI from which a feature's drift is `warn`.
    #[arg(long = "drift-psi-warn", env = "INFERLOG_DRIFT_PSI_WARN",
        default_value_t = DriftRule::default().psi_warn, value_parser = non_negative)]
    pub psi_warn: f64,
    /// PSI from which a feature's drift is `alert`.
    #[arg(long = "drift-psi-alert", env = "INFERLOG_DRIFT_PSI_ALERT",
        default_value_t = DriftRule::default().psi_alert, value_parser = non_negative)]
    pub psi_alert: f64,
    /// Fewer rows than this give `insufficient_data` instead of a verdict.
    #[arg(long = "drift-min-rows", env = "INFERLOG_DRIFT_MIN_ROWS",
        default_value_t = DriftRule::default().min_rows)]
    pub min_rows: usize,
    /// Most rows a report compares when it reads rows for everything (the most recent of its
    /// range), or reads from the partial minutes at the edges of its range (the whole minutes
    /// come from the rollups): a report's time and memory stay bounded on millions of rows.
    #[arg(long = "drift-max-rows", env = "INFERLOG_DRIFT_MAX_ROWS",
        default_value_t = DriftRule::default().max_rows)]
    pub max_rows: usize,
    /// When PSI and class counts come from the rollups (all rows of the range): the most
    /// recent rows read for what needs raw values (Kolmogorov–Smirnov, live means).
    #[arg(long = "drift-sample-rows", env = "INFERLOG_DRIFT_SAMPLE_ROWS",
        default_value_t = DriftRule::default().sample_rows)]
    pub sample_rows: usize,
}

impl DriftRule {
    /// At least one row read where a report reads rows.
    pub fn bounded(self) -> DriftRule {
        DriftRule {
            max_rows: self.max_rows.max(1),
            sample_rows: self.sample_rows.max(1),
            ..self
        }
    }
}

impl Default for DriftRule {
    fn default() -> Self {
        DriftRule {
            psi_warn: 0.1,
            psi_alert: 0.25,
            min_rows: 100,
            max_rows: 100_000,
            sample_rows: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Alert,
    InsufficientData,
}

impl DriftRule {
    /// Refuses thresholds that cannot give the verdicts their names promise: the names are the
    /// settings' flags, for the start-up error.
    pub fn check(&self) -> Result<(), String> {
        for (value, flag) in [
            (self.psi_warn, "--drift-psi-warn (INFERLOG_DRIFT_PSI_WARN)"),
            (
                self.psi_alert,
                "--drift-psi-alert (INFERLOG_DRIFT_PSI_ALERT)",
            ),
        ] {
            if !value.is_finite() || value < 0.0 {
                return Err(format!(
                    "{flag} must be a finite number, zero or more; got {value}"
                ));
            }
        }
        if self.psi_warn > self.psi_alert {
            return Err(format!(
                "--drift-psi-warn (INFERLOG_DRIFT_PSI_WARN) {} is above --drift-psi-alert \
                 (INFERLOG_DRIFT_PSI_ALERT) {}: a drift would alert before it warns",
                self.psi_warn, self.psi_alert
            ));
        }
        Ok(())
    }

    pub fn status(&self, psi: f64, rows: usize) -> Status {
        if rows < self.min_rows {
            Status::InsufficientData
        } else if psi >= self.psi_alert {
            Status::Alert
        } else if psi >= self.psi_warn {
            Status::Warn
        } else {
            Status::Ok
        }
    }
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeatureDrift {
    pub feature: String,
    pub psi: f64,
    pub ks_statistic: f64,
    pub ks_p_value: f64,
    pub live_mean: Option<f64>,
    pub baseline_mean: f64,
    pub status: Status,
}

/// Drift of the answers: a classifier's class proportions, or the share of a regression
/// model's answers in each bin of its training output, against the baseline's (PSI); for a
/// regression model also the Kolmogorov–Smirnov test of the sampled answers against the
/// training output's sample, and the means.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct PredictionDrift {
    pub psi: f64,
    pub live_proportions: Vec<f64>,
    pub baseline_proportions: Vec<f64>,
    pub status: Status,
    /// A regression model's: the edges of its training output's bins (bin `i` holds answers
    /// in `[edges[i-1], edges[i])`, the first and last are open).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bin_edges: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_statistic: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ks_p_value: Option<f64>,
    /// The mean of the sampled answers (absent without any).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub live_mean: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_mean: Option<f64>,
}

/// Where a report's counts come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// PSI and class drift over every row of the range, from the rollups; KS and live means
    /// over the most recent `sample_rows`.
    Rollups,
    /// As `Rollups` for the range's whole minutes, with the partial minutes at its edges
    /// (time bounds inside a minute) counted from their rows.
    RollupsAndEdgeRows,
    /// Everything over the most recent rows of the range (at most `max_rows`), read.
    Rows,
}

#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DriftReport {
    pub model: String,
    pub model_version: String,
    /// Answered rows of the model version the PSI and class drift cover.
    pub rows: usize,
    /// Fewer answered rows than this give `insufficient_data` (the PSI is still shown, but
    /// it is no verdict: small windows make it jump).
    pub min_rows: usize,
    /// The PSI from which a status is `warn`, and `alert` (the service's settings).
    pub psi_warn: f64,
    pub psi_alert: f64,
    /// The most rows a report reads (the most recent of the range, or of its edge minutes).
    pub max_rows: usize,
    /// Some figure covers only the most recent rows of the range: with `source: rows`, the
    /// range held more than `max_rows`; with `source: rollups_and_edge_rows`, the edge
    /// minutes did; KS and live means cover `sample_rows` of `rows`.
    pub truncated: bool,
    pub source: Source,
    /// The rows behind the Kolmogorov–Smirnov statistics and live means: the most recent of
    /// the range.
    pub sample_rows: usize,
    /// The worst status of all features and the predictions.
    pub status: Status,
    pub features: Vec<FeatureDrift>,
    pub prediction: PredictionDrift,
    /// A classifier's confidence against its held-out rows'; absent for a regression model.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<ConfidenceDrift>,
}

/// The confidence (the served class's probability) of the answered rows by tenth, against
/// the held-out rows' at training time (PSI).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ConfidenceDrift {
    /// Answered rows with class probabilities.
    pub rows: usize,
    /// Their share in each tenth of confidence, `[0, 0.1)` … `[0.9, 1]`.
    pub live_proportions: Vec<f64>,
    /// The held-out rows' shares; `null` for an artifact trained before they were kept
    /// (`baseline_missing`), which `inferlog train` makes anew.
    pub baseline_proportions: Option<Vec<f64>>,
    pub baseline_mean: Option<f64>,
    pub psi: Option<f64>,
    /// `null` without a baseline. Not part of the report's `status`: held-out rows number a
    /// fifth of the training set, and a model is more sure of rows like those it learned
    /// from, so this verdict is a signal to watch beside the inputs', not one of them.
    pub status: Option<Status>,
    pub baseline_missing: bool,
}

/// What the live rows of a range hold, counted over the baseline's bins and classes.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveCounts {
    pub rows: usize,
    /// Per feature (model order), rows per bin of the baseline's edges.
    pub bins: Vec<Vec<u64>>,
    /// Rows per class, in class order.
    pub classes: Vec<u64>,
    /// Answered rows by the tenth of their confidence (classifiers).
    pub confidence: Vec<u64>,
}

/// Compares `rows` live input rows (row-major in `values`) and their predicted `classes` (a
/// regression model's: the bins of its `answers`) with the model's baseline, all read from
/// the rows.
/// `truncated`: the range held more than `rule.max_rows` rows, and these are the most recent.
pub fn report(
    model: &Model,
    values: &[f64],
    classes: &[u32],
    answers: &[f64],
    rule: &DriftRule,
    truncated: bool,
) -> DriftReport {
    let baseline = &model.artifact.baseline;
    let cols = model.n_features();
    let rows = classes.len();
    let counts = LiveCounts {
        rows,
        bins: baseline
            .features
            .iter()
            .enumerate()
            .map(|(j, stats)| bin_counts(&stats.bin_edges, (0..rows).map(|i| values[i * cols + j])))
            .collect(),
        classes: class_counts(classes.iter().copied(), baseline.answer_proportions().len()),
        // The rows read here carry no probabilities: confidence drift counts from the rollups.
        confidence: vec![0; 10],
    };
    let mut report = report_counts(model, &counts, values, answers, rows, rule, Source::Rows);
    report.truncated = truncated;
    report
}

/// A report from counts (PSI, class drift) and a sample of the most recent rows (`values`,
/// row-major, `sample` rows, and a regression model's `answers` to them: Kolmogorov–Smirnov
/// and live means).
pub fn report_counts(
    model: &Model,
    counts: &LiveCounts,
    values: &[f64],
    answers: &[f64],
    sample: usize,
    rule: &DriftRule,
    source: Source,
) -> DriftReport {
    let baseline = &model.artifact.baseline;
    let cols = model.n_features();
    let rows = counts.rows;
    let mut features = Vec::with_capacity(cols);
    for (j, stats) in baseline.features.iter().enumerate() {
        let mut column: Vec<f64> = (0..sample).map(|i| values[i * cols + j]).collect();
        column.sort_by(f64::total_cmp);
        let empty = Vec::new();
        let p = psi(&stats.bin_proportions, counts.bins.get(j).unwrap_or(&empty));
        let (d, p_value) = ks_two_sample(&stats.sample, &column);
        features.push(FeatureDrift {
            feature: stats.name.clone(),
            psi: p,
            ks_statistic: d,
            ks_p_value: p_value,
            live_mean: (sample > 0).then(|| column.iter().sum::<f64>() / sample as f64),
            baseline_mean: stats.mean,
            status: rule.status(p, rows),
        });
    }
    let class_psi = psi(baseline.answer_proportions(), &counts.classes);
    let mut prediction = PredictionDrift {
        psi: class_psi,
        live_proportions: proportions(&counts.classes),
        baseline_proportions: baseline.answer_proportions().to_vec(),
        status: rule.status(class_psi, rows),
        bin_edges: None,
        ks_statistic: None,
        ks_p_value: None,
        live_mean: None,
        baseline_mean: None,
    };
    if let Some(output) = &baseline.output {
        let mut sorted = answers.to_vec();
        sorted.sort_by(f64::total_cmp);
        let (d, p_value) = ks_two_sample(&output.sample, &sorted);
        prediction.ks_statistic = Some(d);
        prediction.ks_p_value = Some(p_value);
        prediction.live_mean =
            (!sorted.is_empty()).then(|| sorted.iter().sum::<f64>() / sorted.len() as f64);
        prediction.baseline_mean = Some(output.mean);
        prediction.bin_edges = Some(output.bin_edges.clone());
    }
    let confidence = (!model.artifact.class_names.is_empty()).then(|| {
        let rows = counts.confidence.iter().sum::<u64>() as usize;
        let base = baseline.confidence.as_ref();
        let psi = base.map(|b| psi(&b.tenths, &counts.confidence));
        ConfidenceDrift {
            rows,
            live_proportions: proportions(&counts.confidence),
            baseline_proportions: base.map(|b| b.tenths.clone()),
            baseline_mean: base.map(|b| b.mean),
            psi,
            status: psi.map(|p| rule.status(p, rows)),
            baseline_missing: base.is_none(),
        }
    });
    let status = features
        .iter()
        .map(|f| f.status)
        .chain([prediction.status])
        .max_by_key(|s| match s {
            Status::Ok => 0,
            Status::InsufficientData => 1,
            Status::Warn => 2,
            Status::Alert => 3,
        })
        .unwrap_or(Status::Ok);
    DriftReport {
        model: model.name().to_string(),
        model_version: model.artifact.version.clone(),
        rows,
        min_rows: rule.min_rows,
        psi_warn: rule.psi_warn,
        psi_alert: rule.psi_alert,
        max_rows: rule.max_rows,
        truncated: sample < rows,
        source,
        sample_rows: sample,
        status,
        features,
        prediction,
        confidence,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_follow_the_thresholds() {
        let rule = DriftRule::default();
        assert_eq!(rule.status(0.05, 500), Status::Ok);
        assert_eq!(rule.status(0.1, 500), Status::Warn);
        assert_eq!(rule.status(0.3, 500), Status::Alert);
        assert_eq!(rule.status(0.3, 99), Status::InsufficientData);
    }

    #[test]
    fn thresholds_that_cannot_be_meant_are_refused_naming_the_flag() {
        assert_eq!(DriftRule::default().check(), Ok(()));
        let rule = |psi_warn, psi_alert| DriftRule {
            psi_warn,
            psi_alert,
            ..DriftRule::default()
        };
        let e = rule(0.3, 0.2).check().unwrap_err();
        assert!(
            e.contains("--drift-psi-warn") && e.contains("above --drift-psi-alert"),
            "{e}"
        );
        let e = rule(f64::NAN, 0.2).check().unwrap_err();
        assert!(e.starts_with("--drift-psi-warn"), "{e}");
        let e = rule(0.1, -1.0).check().unwrap_err();
        assert!(e.starts_with("--drift-psi-alert"), "{e}");
        assert_eq!(rule(0.2, 0.2).check(), Ok(()));
    }
}
