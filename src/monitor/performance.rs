//! Live model performance from ground truth. A classifier's: accuracy, per-class precision and
//! recall, and the confusion matrix, from (predicted label, true label, count) triples that
//! the audit store joins from predictions and feedback. A regressor's: MAE, RMSE, R², the mean
//! error and percentiles of the absolute error, from (answer, true value) pairs or from the
//! sums and the histogram the rollups keep.

use serde::Serialize;

pub use super::drift::Source;
use crate::stats::{ErrorSums, nearest_rank, quantile};

/// What `/monitor/performance` reports: a classifier's scores or a regressor's errors.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
#[serde(untagged)]
pub enum PerformanceReport {
    Classification(Performance),
    Regression(RegressionPerformance),
}

/// A regression model's errors over its predictions with a true value (fields in alphabetical
/// order). The error of a row is its answer minus the truth; the figures are scikit-learn's
/// `mean_absolute_error`, `mean_squared_error` (its root) and `r2_score`.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct RegressionPerformance {
    /// Percentiles of the absolute error: exact from rows (numpy's linear interpolation),
    /// within 4% from the rollups' histogram. `null` without true values.
    pub abs_error_percentiles: Option<ErrorPercentiles>,
    /// Predictions with a true value.
    pub labelled: i64,
    pub mae: Option<f64>,
    /// The bias: positive when the model answers too high.
    pub mean_error: Option<f64>,
    pub model: String,
    /// `null` below two true values (undefined, as scikit-learn says).
    pub r2: Option<f64>,
    pub rmse: Option<f64>,
    /// `rollups` (counted as feedback arrived) or `rows` (joined now).
    pub source: Source,
    /// Pairs left out: an error or truth too large to square within a 64-bit float's range.
    pub unscored: i64,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ErrorPercentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// The percentiles reported.
const PERCENTILES: [f64; 3] = [0.5, 0.9, 0.99];

/// The errors of the (answer, truth) `pairs`, each as the rows hold it: two passes, so R²
/// does not lose digits to a large mean.
pub fn regression_errors(
    model: &str,
    pairs: &[(f64, f64)],
    source: Source,
) -> RegressionPerformance {
    let scored: Vec<(f64, f64)> = pairs
        .iter()
        .copied()
        .filter(|&(a, t)| ErrorSums::terms(a, t).is_some())
        .collect();
    let unscored = (pairs.len() - scored.len()) as i64;
    let mut sums = ErrorSums::default();
    for &(a, t) in &scored {
        sums.add(a, t);
    }
    let mut abs: Vec<f64> = scored.iter().map(|(a, t)| (a - t).abs()).collect();
    abs.sort_by(f64::total_cmp);
    let percentiles = (!abs.is_empty()).then(|| {
        let [p50, p90, p99] = PERCENTILES.map(|q| quantile(&abs, q));
        ErrorPercentiles { p50, p90, p99 }
    });
    let mut report = from_sums(model, &sums, percentiles, unscored, source);
    if scored.len() >= 2 {
        let n = scored.len() as f64;
        let mean = scored.iter().map(|(_, t)| t).sum::<f64>() / n;
        let total: f64 = scored.iter().map(|(_, t)| (t - mean) * (t - mean)).sum();
        let residual: f64 = scored.iter().map(|(a, t)| (a - t) * (a - t)).sum();
        report.r2 = Some(r2(residual, total));
    }
    report
}

/// The errors from the sums the rollups keep and their histogram of absolute errors
/// (`(the error a bucket stands for, count)`, in any order).
pub fn regression_errors_of_sums(
    model: &str,
    sums: &ErrorSums,
    histogram: &mut [(f64, i64)],
    unscored: i64,
    source: Source,
) -> RegressionPerformance {
    histogram.sort_by(|a, b| a.0.total_cmp(&b.0));
    let sorted: &[(f64, i64)] = histogram;
    let percentiles = match PERCENTILES.map(|q| nearest_rank(sorted, q)) {
        [Some(p50), Some(p90), Some(p99)] => Some(ErrorPercentiles { p50, p90, p99 }),
        _ => None,
    };
    from_sums(model, sums, percentiles, unscored, source)
}

fn from_sums(
    model: &str,
    sums: &ErrorSums,
    abs_error_percentiles: Option<ErrorPercentiles>,
    unscored: i64,
    source: Source,
) -> RegressionPerformance {
    let errors = sums.errors();
    RegressionPerformance {
        abs_error_percentiles,
        labelled: sums.n.max(0) + unscored,
        mae: errors.map(|e| e.mae),
        mean_error: errors.map(|e| e.mean_error),
        model: model.to_string(),
        r2: errors.filter(|_| sums.n >= 2).map(|e| e.r2),
        rmse: errors.map(|e| e.rmse),
        source,
        unscored,
    }
}

/// scikit-learn's R² of the residual and total sums of squares (every truth equal: 1 when
/// every answer is right, else 0).
fn r2(residual: f64, total: f64) -> f64 {
    if total > 0.0 {
        1.0 - residual / total
    } else if residual == 0.0 {
        1.0
    } else {
        0.0
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ClassScore {
    pub label: String,
    /// Rows truly of this class.
    pub support: i64,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
}

/// Fields in alphabetical order, as the JSON of earlier releases had them.
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct ConfusionMatrix {
    #[schema(value_type = String)]
    pub columns: &'static str,
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<i64>>,
    pub labels: Vec<String>,
    #[schema(value_type = String)]
    pub rows: &'static str,
}

/// What `/monitor/performance` reports for one model (fields in alphabetical order, as the
/// JSON of earlier releases had them).
#[derive(Debug, Clone, Serialize, PartialEq, utoipa::ToSchema)]
pub struct Performance {
    pub accuracy: Option<f64>,
    pub confusion_matrix: ConfusionMatrix,
    /// Predictions with a (known-class) true label.
    pub labelled: i64,
    pub model: String,
    pub per_class: Vec<ClassScore>,
    /// `rollups` (counted as feedback arrived) or `rows` (joined now).
    pub source: Source,
    /// Labelled rows whose predicted or true label is not a class of the model.
    pub unmatched_labels: i64,
}

/// Scores `pairs` of (predicted label, true label, count) against the model's `classes`.
pub fn score<'a>(
    model: &str,
    classes: &[String],
    pairs: impl IntoIterator<Item = (&'a str, &'a str, i64)>,
    source: Source,
) -> Performance {
    let k = classes.len();
    let mut matrix = vec![vec![0i64; k]; k];
    let mut unmatched = 0i64;
    for (predicted, actual, n) in pairs {
        match (
            classes.iter().position(|c| c == actual),
            classes.iter().position(|c| c == predicted),
        ) {
            (Some(t), Some(p)) => matrix[t][p] += n,
            _ => unmatched += n,
        }
    }
    let labelled: i64 = matrix.iter().flatten().sum();
    let correct: i64 = (0..k).map(|i| matrix[i][i]).sum();
    let ratio = |num: i64, den: i64| (den > 0).then(|| num as f64 / den as f64);
    let per_class = (0..k)
        .map(|c| {
            let support: i64 = matrix[c].iter().sum();
            let predicted: i64 = (0..k).map(|t| matrix[t][c]).sum();
            ClassScore {
                label: classes[c].clone(),
                support,
                precision: ratio(matrix[c][c], predicted),
                recall: ratio(matrix[c][c], support),
            }
        })
        .collect();
    Performance {
        model: model.to_string(),
        labelled,
        unmatched_labels: unmatched,
        accuracy: ratio(correct, labelled),
        per_class,
        source,
        confusion_matrix: ConfusionMatrix {
            labels: classes.to_vec(),
            rows: "true label",
            columns: "predicted label",
            counts: matrix,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regression_errors_match_scikit_learns_example() {
        // scikit-learn's docs: y_true = [3, -0.5, 2, 7], y_pred = [2.5, 0.0, 2, 8] give
        // MAE 0.5, MSE 0.375 and R² 0.948... (= 1 − 1.5 / 29.1875).
        let pairs = [(2.5, 3.0), (0.0, -0.5), (2.0, 2.0), (8.0, 7.0)];
        let rows = regression_errors("m", &pairs, Source::Rows);
        assert_eq!(rows.mae, Some(0.5));
        assert_eq!(rows.rmse, Some(0.375f64.sqrt()));
        assert!((rows.r2.unwrap() - (1.0 - 1.5 / 29.1875)).abs() < 1e-15);
        assert_eq!(rows.mean_error, Some(0.25));
        // |errors| sorted 0, 0.5, 0.5, 1: numpy's median 0.5, p90 0.85.
        let p = rows.abs_error_percentiles.unwrap();
        assert_eq!(p.p50, 0.5);
        assert!((p.p90 - 0.85).abs() < 1e-12, "{p:?}");
        let mut sums = ErrorSums::default();
        for (a, t) in pairs {
            sums.add(a, t);
        }
        let mut histogram = [(1.0, 1), (0.0, 1), (0.5, 2)];
        let rollups = regression_errors_of_sums("m", &sums, &mut histogram, 0, Source::Rollups);
        assert_eq!((rollups.labelled, rollups.mae), (4, Some(0.5)));
        assert!((rollups.r2.unwrap() - rows.r2.unwrap()).abs() < 1e-12);
        let p = rollups.abs_error_percentiles.unwrap();
        assert_eq!((p.p50, p.p90, p.p99), (0.5, 1.0, 1.0));
    }

    #[test]
    fn one_true_value_has_no_r2_and_a_huge_pair_is_left_out() {
        let one = regression_errors("m", &[(1.0, 2.0)], Source::Rows);
        assert_eq!((one.labelled, one.r2, one.mae), (1, None, Some(1.0)));
        let huge = regression_errors("m", &[(1.0, 2.0), (1e200, 0.0)], Source::Rows);
        assert_eq!((huge.labelled, huge.unscored, huge.mae), (2, 1, Some(1.0)));
        let none = regression_errors("m", &[], Source::Rows);
        assert_eq!(
            (none.labelled, none.mae, none.abs_error_percentiles),
            (0, None, None)
        );
    }

    #[test]
    fn scores_a_small_confusion() {
        let classes = ["a".to_string(), "b".to_string()];
        let pairs = [("a", "a", 3), ("b", "a", 1), ("b", "b", 2), ("a", "zzz", 5)];
        let p = score("m", &classes, pairs, Source::Rows);
        assert_eq!((p.labelled, p.unmatched_labels), (6, 5));
        assert_eq!(p.accuracy, Some(5.0 / 6.0));
        assert_eq!(p.per_class[0].precision, Some(1.0));
        assert_eq!(p.per_class[0].recall, Some(0.75));
        assert_eq!(p.per_class[1].precision, Some(2.0 / 3.0));
        assert_eq!(p.confusion_matrix.counts, vec![vec![3, 1], vec![0, 2]]);
    }
}
