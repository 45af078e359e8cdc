//! Drift of live inputs and predictions against the training baseline.
//!
//! Per feature: the population stability index (PSI) over the baseline's decile bins and the
//! two-sample Kolmogorov–Smirnov statistic against the training sample kept in the artifact,
//! with its asymptotic p-value. For predictions: the PSI of the predicted-class distribution
//! against the training class proportions. Each gets a status from its PSI — `ok`, `warn`,
//! `alert` — or `insufficient_data` when the window holds fewer rows than a verdict needs
//! (small windows make PSI jump and raise false alarms).

use serde::Serialize;

use crate::model::Model;
use crate::model::baseline::bin_index;

/// Proportions below this are raised to it, so empty bins do not make PSI infinite.
const PSI_FLOOR: f64 = 1e-4;

/// Thresholds of the verdicts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DriftRule {
    pub psi_warn: f64,
    pub psi_alert: f64,
    pub min_rows: usize,
}

impl Default for DriftRule {
    fn default() -> Self {
        DriftRule {
            psi_warn: 0.1,
            psi_alert: 0.25,
            min_rows: 100,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Warn,
    Alert,
    InsufficientData,
}

impl DriftRule {
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

/// PSI = Σ (a − e) · ln(a / e) over bins, with `expected` proportions and `actual` counts.
pub fn psi(expected: &[f64], actual_counts: &[u64]) -> f64 {
    let n: u64 = actual_counts.iter().sum();
    if n == 0 {
        return 0.0;
    }
    expected
        .iter()
        .zip(actual_counts)
        .map(|(&e, &c)| {
            let a = (c as f64 / n as f64).max(PSI_FLOOR);
            let e = e.max(PSI_FLOOR);
            (a - e) * (a / e).ln()
        })
        .sum()
}

/// Two-sample Kolmogorov–Smirnov: the largest gap between the empirical CDFs of two sorted
/// samples, and its asymptotic p-value (Numerical Recipes' `probks` with the small-sample
/// correction of Stephens).
pub fn ks_two_sample(a_sorted: &[f64], b_sorted: &[f64]) -> (f64, f64) {
    let (n, m) = (a_sorted.len(), b_sorted.len());
    if n == 0 || m == 0 {
        return (0.0, 1.0);
    }
    let (mut i, mut j, mut d) = (0usize, 0usize, 0f64);
    while i < n && j < m {
        let x = a_sorted[i].min(b_sorted[j]);
        while i < n && a_sorted[i] <= x {
            i += 1;
        }
        while j < m && b_sorted[j] <= x {
            j += 1;
        }
        d = d.max((i as f64 / n as f64 - j as f64 / m as f64).abs());
    }
    let en = ((n * m) as f64 / (n + m) as f64).sqrt();
    (d, kolmogorov_p((en + 0.12 + 0.11 / en) * d))
}

/// Q_KS(λ) = 2 Σ_{k≥1} (−1)^{k−1} e^{−2k²λ²}.
fn kolmogorov_p(lambda: f64) -> f64 {
    if lambda < 1e-3 {
        return 1.0;
    }
    let mut sum = 0.0;
    let mut sign = 1.0;
    for k in 1..=100 {
        let term = (-2.0 * (k * k) as f64 * lambda * lambda).exp();
        sum += sign * term;
        if term < 1e-12 {
            break;
        }
        sign = -sign;
    }
    (2.0 * sum).clamp(0.0, 1.0)
}

#[derive(Debug, Clone, Serialize)]
pub struct FeatureDrift {
    pub feature: String,
    pub psi: f64,
    pub ks_statistic: f64,
    pub ks_p_value: f64,
    pub live_mean: Option<f64>,
    pub baseline_mean: f64,
    pub status: Status,
}

#[derive(Debug, Clone, Serialize)]
pub struct PredictionDrift {
    pub psi: f64,
    pub live_proportions: Vec<f64>,
    pub baseline_proportions: Vec<f64>,
    pub status: Status,
}

#[derive(Debug, Clone, Serialize)]
pub struct DriftReport {
    pub model: String,
    pub model_version: String,
    pub rows: usize,
    pub min_rows: usize,
    /// The worst status of all features and the predictions.
    pub status: Status,
    pub features: Vec<FeatureDrift>,
    pub prediction: PredictionDrift,
}

/// Compares `rows` live input rows (row-major in `values`) and their predicted `classes` with
/// the model's baseline.
pub fn report(model: &Model, values: &[f64], classes: &[u32], rule: &DriftRule) -> DriftReport {
    let baseline = &model.artifact.baseline;
    let cols = model.n_features();
    let rows = classes.len();
    let mut features = Vec::with_capacity(cols);
    for (j, stats) in baseline.features.iter().enumerate() {
        let mut column: Vec<f64> = (0..rows).map(|i| values[i * cols + j]).collect();
        let mut counts = vec![0u64; stats.bin_proportions.len()];
        for &v in &column {
            counts[bin_index(&stats.bin_edges, v)] += 1;
        }
        column.sort_by(f64::total_cmp);
        let p = psi(&stats.bin_proportions, &counts);
        let (d, p_value) = ks_two_sample(&stats.sample, &column);
        features.push(FeatureDrift {
            feature: stats.name.clone(),
            psi: p,
            ks_statistic: d,
            ks_p_value: p_value,
            live_mean: (rows > 0).then(|| column.iter().sum::<f64>() / rows as f64),
            baseline_mean: stats.mean,
            status: rule.status(p, rows),
        });
    }
    let n_classes = baseline.class_proportions.len();
    let mut class_counts = vec![0u64; n_classes];
    for &c in classes {
        if let Some(slot) = class_counts.get_mut(c as usize) {
            *slot += 1;
        }
    }
    let class_psi = psi(&baseline.class_proportions, &class_counts);
    let prediction = PredictionDrift {
        psi: class_psi,
        live_proportions: class_counts
            .iter()
            .map(|&c| {
                if rows > 0 {
                    c as f64 / rows as f64
                } else {
                    0.0
                }
            })
            .collect(),
        baseline_proportions: baseline.class_proportions.clone(),
        status: rule.status(class_psi, rows),
    };
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
        status,
        features,
        prediction,
    }
}

/// `inferlog drift`: the report of `/monitor/drift`, read from the database file.
pub async fn offline_report(args: &crate::cli::DriftCliArgs) -> anyhow::Result<DriftReport> {
    use crate::audit::{Store, StoreOptions, SyncLevel, query::parse_query};
    let models = crate::model::ModelRegistry::load_dir(&args.models, &args.model)?;
    let model = models.default_model();
    let mut pairs = Vec::new();
    if let Some(s) = &args.since {
        pairs.push(("since".to_string(), s.clone()));
    }
    if let Some(u) = &args.until {
        pairs.push(("until".to_string(), u.clone()));
    }
    let q = parse_query(&pairs, true)?;
    let url = if args.database_url.starts_with("sqlite:") {
        args.database_url.clone()
    } else {
        format!("sqlite://{}", args.database_url)
    };
    let store = Store::open(
        &url,
        &StoreOptions {
            sync: SyncLevel::Normal,
            busy_timeout: std::time::Duration::from_secs(5),
            read_only: true,
            max_bytes: None,
        },
    )
    .await?;
    let (values, classes) = store
        .drift_rows(model.name(), model.n_features(), &q.filter)
        .await?;
    store.close().await;
    Ok(report(model, &values, &classes, &args.drift.rule()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psi_matches_a_hand_computed_value() {
        // expected 25% in each of 4 bins; actual counts 10, 20, 30, 40 of 100.
        // PSI = (0.1−0.25)ln(0.4) + (0.2−0.25)ln(0.8) + (0.3−0.25)ln(1.2) + (0.4−0.25)ln(1.6)
        //     = 0.137444 + 0.011157 + 0.009116 + 0.070500 = 0.228217
        let v = psi(&[0.25; 4], &[10, 20, 30, 40]);
        assert!((v - 0.228_217).abs() < 1e-5, "{v}");
        assert_eq!(psi(&[0.5, 0.5], &[7, 7]), 0.0);
    }

    #[test]
    fn ks_matches_a_hand_computed_value() {
        // a = 1..5, b = 3..7: the CDFs differ most at x = 2 (a: 2/5, b: 0) and x = 5/6;
        // D = 0.4. en = sqrt(25/10) = 1.5811; λ = (1.5811 + 0.12 + 0.0696) · 0.4 = 0.70828;
        // Q(λ) = 2(e^{−2λ²} − e^{−8λ²} + …) = 0.69740
        let a = [1.0, 2.0, 3.0, 4.0, 5.0];
        let b = [3.0, 4.0, 5.0, 6.0, 7.0];
        let (d, p) = ks_two_sample(&a, &b);
        assert!((d - 0.4).abs() < 1e-12);
        assert!((p - 0.6974).abs() < 1e-4, "{p}");
        let (d, p) = ks_two_sample(&a, &a);
        assert_eq!(d, 0.0);
        assert_eq!(p, 1.0);
    }

    #[test]
    fn verdicts_follow_the_thresholds() {
        let rule = DriftRule::default();
        assert_eq!(rule.status(0.05, 500), Status::Ok);
        assert_eq!(rule.status(0.1, 500), Status::Warn);
        assert_eq!(rule.status(0.3, 500), Status::Alert);
        assert_eq!(rule.status(0.3, 99), Status::InsufficientData);
    }
}
