//! The training baseline: per-feature statistics of the rows a model was trained on, and what
//! it answered: the class proportions of a classifier's training rows, the distribution of a
//! regressor's answers. Outlier checks use the range and spread; drift checks compare live
//! inputs with the decile bins, and live answers with the class proportions or the output's
//! bins.

use serde::{Deserialize, Serialize};

use crate::stats::{bin_counts, class_counts, proportions, quantile};

/// Statistics of one feature over the training rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureStats {
    pub name: String,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
    /// Sample standard deviation (n − 1).
    pub std: f64,
    /// Interior cut points at the deciles, ascending, with repeats removed (features with many
    /// equal values get fewer bins). Bin 0 is `(-inf, e0)`, bin i is `[e(i-1), e(i))`, the last
    /// bin is `[e(k-1), +inf)`, so every real value falls in exactly one bin.
    pub bin_edges: Vec<f64>,
    /// Share of training rows in each bin; `bin_edges.len() + 1` values summing to 1.
    pub bin_proportions: Vec<f64>,
    /// The training values, sorted; beyond [`SAMPLE_SIZE`] rows, that many evenly spaced order
    /// statistics. The two-sample Kolmogorov–Smirnov test of drift compares against it.
    pub sample: Vec<f64>,
}

/// Most training values kept per feature for the Kolmogorov–Smirnov test.
pub const SAMPLE_SIZE: usize = 1000;

/// What a model's inputs and outputs looked like at training time.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    pub features: Vec<FeatureStats>,
    /// A classifier's share of training rows in each class, in `class_names` order (empty for
    /// a regressor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_proportions: Vec<f64>,
    /// A regressor's answers on every row of its data set (training and held-out), as a
    /// feature's statistics: the reference live answers drift from. Absent for a classifier.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<FeatureStats>,
    /// A classifier's confidence (the served class's probability) on its held-out rows, what
    /// live confidence drifts from. Absent for a regressor, and in artifacts trained before
    /// it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confidence: Option<ConfidenceBaseline>,
}

/// The confidence of a classifier's held-out rows: their share in each tenth
/// ([`crate::stats::tenth`] of their hundredth) and their mean.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfidenceBaseline {
    pub rows: usize,
    pub tenths: Vec<f64>,
    pub mean: f64,
}

impl ConfidenceBaseline {
    /// From the held-out rows' confidences (none without rows).
    pub fn of(confidences: &[f64]) -> Option<ConfidenceBaseline> {
        if confidences.is_empty() {
            return None;
        }
        let mut counts = vec![0u64; 10];
        for &p in confidences {
            counts[crate::stats::tenth(crate::stats::hundredth(p))] += 1;
        }
        Some(ConfidenceBaseline {
            rows: confidences.len(),
            tenths: proportions(&counts),
            mean: confidences.iter().sum::<f64>() / confidences.len() as f64,
        })
    }
}

impl FeatureStats {
    /// Computes the statistics of one column. `values` must be non-empty and finite.
    pub fn from_values(name: &str, values: &[f64]) -> FeatureStats {
        let n = values.len() as f64;
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let mean = values.iter().sum::<f64>() / n;
        let var = if values.len() > 1 {
            values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
        } else {
            0.0
        };
        let mut bin_edges: Vec<f64> = (1..10)
            .map(|i| quantile(&sorted, i as f64 / 10.0))
            .collect();
        bin_edges.dedup();
        let counts = bin_counts(&bin_edges, values.iter().copied());
        let sample = if sorted.len() <= SAMPLE_SIZE {
            sorted.clone()
        } else {
            (0..SAMPLE_SIZE)
                .map(|i| sorted[i * (sorted.len() - 1) / (SAMPLE_SIZE - 1)])
                .collect()
        };
        FeatureStats {
            name: name.to_string(),
            min: sorted[0],
            max: sorted[sorted.len() - 1],
            mean,
            std: var.sqrt(),
            bin_edges,
            bin_proportions: proportions(&counts),
            sample,
        }
    }
}

impl Baseline {
    /// The statistics of each column of row-major `x` (`rows` × `names.len()`).
    pub fn features(names: &[String], x: &[f64], rows: usize) -> Vec<FeatureStats> {
        let cols = names.len();
        names
            .iter()
            .enumerate()
            .map(|(j, name)| {
                let column: Vec<f64> = (0..rows).map(|i| x[i * cols + j]).collect();
                FeatureStats::from_values(name, &column)
            })
            .collect()
    }

    /// A classifier's baseline: `features`, the proportions of class indices `y` and the
    /// held-out rows' `confidences`.
    pub fn of_classes(
        features: Vec<FeatureStats>,
        y: &[u32],
        n_classes: usize,
        confidences: &[f64],
    ) -> Baseline {
        Baseline {
            features,
            class_proportions: proportions(&class_counts(y.iter().copied(), n_classes)),
            output: None,
            confidence: ConfidenceBaseline::of(confidences),
        }
    }

    /// What answers are compared with for drift: a classifier's class proportions, or the
    /// share of a regressor's answers in each bin of its output (a live answer's "class" is
    /// then its bin, [`Baseline::answer_bin`]).
    pub fn answer_proportions(&self) -> &[f64] {
        match &self.output {
            Some(output) => &output.bin_proportions,
            None => &self.class_proportions,
        }
    }

    /// The bin of a regressor's answer (0 for a classifier, which has no output bins).
    pub fn answer_bin(&self, value: f64) -> u32 {
        self.output
            .as_ref()
            .map_or(0, |o| crate::stats::bin_index(&o.bin_edges, value) as u32)
    }

    /// A regressor's baseline: `features` and the distribution of its `answers`.
    pub fn of_values(features: Vec<FeatureStats>, answers: &[f64]) -> Baseline {
        Baseline {
            features,
            class_proportions: Vec::new(),
            output: Some(FeatureStats::from_values("prediction", answers)),
            confidence: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_of_one_to_ten() {
        let v: Vec<f64> = (1..=10).map(f64::from).collect();
        let s = FeatureStats::from_values("x", &v);
        assert_eq!((s.min, s.max, s.mean), (1.0, 10.0, 5.5));
        // sample variance of 1..=10 is 55/6
        assert!((s.std - (55.0f64 / 6.0).sqrt()).abs() < 1e-12);
        // deciles of 1..=10 with linear interpolation: 1.9, 2.8, ..., 9.1
        assert_eq!(s.bin_edges.len(), 9);
        assert!((s.bin_edges[0] - 1.9).abs() < 1e-12);
        assert!((s.bin_edges[8] - 9.1).abs() < 1e-12);
        assert_eq!(s.bin_proportions.len(), 10);
        assert!((s.bin_proportions.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert!(s.bin_proportions.iter().all(|&p| (p - 0.1).abs() < 1e-12));
        assert_eq!(s.sample, v);
    }

    #[test]
    fn large_columns_keep_evenly_spaced_order_statistics() {
        let v: Vec<f64> = (0..5000).rev().map(f64::from).collect();
        let s = FeatureStats::from_values("x", &v);
        assert_eq!(s.sample.len(), SAMPLE_SIZE);
        assert_eq!((s.sample[0], s.sample[SAMPLE_SIZE - 1]), (0.0, 4999.0));
        assert!(s.sample.windows(2).all(|w| w[0] <= w[1]));
    }

    #[test]
    fn repeated_values_collapse_bins() {
        let v = [3.0; 20];
        let s = FeatureStats::from_values("x", &v);
        assert_eq!(s.bin_edges, vec![3.0]);
        assert_eq!(s.bin_proportions, vec![0.0, 1.0]);
        assert_eq!(s.std, 0.0);
    }
}
