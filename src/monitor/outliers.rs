//! Outlier checks of input rows against the training statistics.
//!
//! A value is flagged when it lies outside the training range widened by `range_margin` times
//! the range on each side, or further than `std_k` standard deviations from the training mean.
//! Flagged rows are still predicted: the response, the audit row, the metrics and a WARN log
//! line say which features were flagged.

use crate::model::FeatureStats;

/// Thresholds of the outlier check (also the flags that set them).
#[derive(Debug, Clone, Copy, PartialEq, clap::Args)]
pub struct OutlierRule {
    /// Flag values outside the training range widened by this fraction of it on each side.
    #[arg(long = "outlier-range-margin", env = "INFERLOG_OUTLIER_RANGE_MARGIN",
        default_value_t = OutlierRule::default().range_margin, value_parser = non_negative)]
    pub range_margin: f64,
    /// Flag values further than this many training standard deviations from the mean.
    #[arg(long = "outlier-std-k", env = "INFERLOG_OUTLIER_STD_K",
        default_value_t = OutlierRule::default().std_k, value_parser = non_negative)]
    pub std_k: f64,
}

/// A threshold: a finite number, zero or more (NaN, infinities and negative values would make
/// every verdict or flag meaningless).
pub fn non_negative(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err("must be a finite number, zero or more".to_string()),
        Err(_) => Err("must be a number".to_string()),
    }
}

impl Default for OutlierRule {
    fn default() -> Self {
        OutlierRule {
            range_margin: 0.1,
            std_k: 4.0,
        }
    }
}

impl OutlierRule {
    /// Whether `value` is an outlier for a feature with these training statistics.
    pub fn is_outlier(&self, stats: &FeatureStats, value: f64) -> bool {
        let margin = (stats.max - stats.min) * self.range_margin;
        let outside_range = value < stats.min - margin || value > stats.max + margin;
        let far_from_mean = stats.std > 0.0 && (value - stats.mean).abs() > self.std_k * stats.std;
        outside_range || far_from_mean
    }

    /// Indices of the flagged features of one row.
    pub fn flag_row(&self, stats: &[FeatureStats], row: &[f64]) -> Vec<usize> {
        stats
            .iter()
            .zip(row)
            .enumerate()
            .filter(|(_, (s, v))| self.is_outlier(s, **v))
            .map(|(j, _)| j)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats() -> FeatureStats {
        FeatureStats::from_values("x", &[1.0, 2.0, 3.0, 4.0, 5.0])
    }

    #[test]
    fn flags_values_beyond_the_widened_range() {
        let rule = OutlierRule {
            range_margin: 0.1,
            std_k: 100.0,
        };
        let s = stats(); // range 1..5, margin 0.4
        assert!(!rule.is_outlier(&s, 0.6));
        assert!(rule.is_outlier(&s, 0.5));
        assert!(!rule.is_outlier(&s, 5.4));
        assert!(rule.is_outlier(&s, 5.5));
    }

    #[test]
    fn flags_values_far_from_the_mean() {
        let rule = OutlierRule {
            range_margin: 10.0,
            std_k: 1.0,
        };
        let s = stats(); // mean 3, sample std ≈ 1.58
        assert!(!rule.is_outlier(&s, 4.5));
        assert!(rule.is_outlier(&s, 4.6));
        assert_eq!(rule.flag_row(&[s.clone(), s], &[3.0, 9.0]), vec![1]);
    }
}
