//! Live model performance from ground truth: accuracy, per-class precision and recall, and the
//! confusion matrix, from (predicted label, true label, count) triples that the audit store
//! joins from predictions and feedback.

use serde::Serialize;

pub use super::drift::Source;

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
