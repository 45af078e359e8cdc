//! Training: turn a smartcore dataset or a CSV file into a model [`Artifact`].
//!
//! Everything is seeded, so the same inputs and options give the same model, version and (with
//! `SOURCE_DATE_EPOCH` fixing `created_at`) the same bytes.

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, bail, ensure};
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::model_selection::train_test_split;
use smartcore::neighbors::knn_classifier::{KNNClassifier, KNNClassifierParameters};
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};

use super::{Algorithm, Artifact, Baseline, Classifier, FORMAT_VERSION, TrainingSummary};
use crate::cli::Dataset;

/// Labelled rows ready for training.
#[derive(Debug, Clone)]
pub struct TrainingData {
    /// Short name used as the default model name.
    pub name: String,
    pub source: String,
    pub feature_names: Vec<String>,
    pub class_names: Vec<String>,
    /// Row-major, `y.len()` × `feature_names.len()`, all finite.
    pub x: Vec<f64>,
    /// Class indices into `class_names`.
    pub y: Vec<u32>,
}

/// Turns a dataset column title such as `sepal length (cm)` into `sepal_length`, a name that is
/// easy to type as a JSON key.
pub fn normalize_feature_name(raw: &str) -> String {
    let mut out = String::new();
    let mut depth = 0usize;
    for ch in raw.chars() {
        match ch {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth > 0 => {}
            c if c.is_alphanumeric() => out.extend(c.to_lowercase()),
            _ => {
                if !out.is_empty() && !out.ends_with('_') {
                    out.push('_');
                }
            }
        }
    }
    while out.ends_with('_') {
        out.pop();
    }
    out
}

/// Loads one of the datasets embedded in smartcore.
pub fn load_dataset(dataset: Dataset) -> TrainingData {
    let (name, ds_x, ds_y, n, m, feature_names, target_names) = match dataset {
        Dataset::Iris => {
            let d = smartcore::dataset::iris::load_dataset();
            let y = d.target.iter().map(|&c| c as f32).collect::<Vec<_>>();
            (
                "iris",
                d.data,
                y,
                d.num_samples,
                d.num_features,
                d.feature_names,
                d.target_names,
            )
        }
        Dataset::BreastCancer => {
            let d = smartcore::dataset::breast_cancer::load_dataset();
            let y = d.target.iter().map(|&c| c as f32).collect::<Vec<_>>();
            let d_names = d.feature_names;
            (
                "breast_cancer",
                d.data,
                y,
                d.num_samples,
                d.num_features,
                d_names,
                d.target_names,
            )
        }
        Dataset::Digits => {
            let d = smartcore::dataset::digits::load_dataset();
            (
                "digits",
                d.data,
                d.target,
                d.num_samples,
                d.num_features,
                d.feature_names,
                vec![],
            )
        }
    };
    // smartcore's digits dataset carries iris's feature names; fall back to positional names
    // whenever the names do not match the columns.
    let mut features: Vec<String> = feature_names
        .iter()
        .map(|f| normalize_feature_name(f))
        .collect();
    let distinct: BTreeSet<&String> = features.iter().collect();
    if features.len() != m || distinct.len() != m || features.iter().any(String::is_empty) {
        features = (0..m).map(|j| format!("f{j}")).collect();
    }
    let classes: BTreeSet<u32> = ds_y.iter().map(|&c| c as u32).collect();
    let n_classes = classes.last().map_or(0, |&c| c as usize + 1);
    let class_names = if target_names.len() == n_classes {
        target_names
    } else {
        (0..n_classes).map(|c| c.to_string()).collect()
    };
    TrainingData {
        name: name.to_string(),
        source: format!("smartcore:{name}"),
        feature_names: features,
        class_names,
        x: ds_x.iter().take(n * m).map(|&v| f32_to_f64(v)).collect(),
        y: ds_y.iter().map(|&c| c as u32).collect(),
    }
}

/// Widens an f32 to the f64 with the same shortest decimal form (4.3f32 becomes 4.3, not
/// 4.300000190734863), so thresholds and statistics read as the dataset's own numbers.
fn f32_to_f64(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(f64::from(v))
}

/// Reads a CSV file with a header row: every column but `target` must hold finite numbers; the
/// `target` column holds class labels (any text; integers sort numerically).
pub fn load_csv(path: &Path, target: &str) -> anyhow::Result<TrainingData> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_reader(file);
    let headers = reader
        .headers()
        .with_context(|| format!("{}: reading the header row", path.display()))?
        .clone();
    let Some(target_col) = headers.iter().position(|h| h == target) else {
        bail!(
            "{}: no column named {target:?} in the header (columns: {})",
            path.display(),
            headers.iter().collect::<Vec<_>>().join(", ")
        );
    };
    let feature_names: Vec<String> = headers
        .iter()
        .enumerate()
        .filter(|&(j, _)| j != target_col)
        .map(|(_, h)| h.to_string())
        .collect();
    ensure!(
        !feature_names.is_empty(),
        "{}: no feature columns",
        path.display()
    );
    let mut x = Vec::new();
    let mut raw_labels = Vec::new();
    for record in reader.records() {
        let record = record.with_context(|| format!("{}: bad CSV", path.display()))?;
        let line = record.position().map_or(0, |p| p.line());
        if record.len() != headers.len() {
            bail!(
                "{}: line {line} has {} fields, the header has {}",
                path.display(),
                record.len(),
                headers.len()
            );
        }
        for (j, field) in record.iter().enumerate() {
            if j == target_col {
                if field.is_empty() {
                    bail!(
                        "{}: line {line}: the label {target:?} is empty",
                        path.display()
                    );
                }
                raw_labels.push(field.to_string());
                continue;
            }
            let value: f64 = field
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .with_context(|| {
                    format!(
                        "{}: line {line}: column {:?} holds {field:?}, not a finite number",
                        path.display(),
                        &headers[j]
                    )
                })?;
            x.push(value);
        }
    }
    ensure!(!raw_labels.is_empty(), "{}: no data rows", path.display());
    let mut class_names: Vec<String> = raw_labels
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    if class_names.iter().all(|c| c.parse::<i64>().is_ok()) {
        class_names.sort_by_key(|c| c.parse::<i64>().unwrap_or_default());
    }
    ensure!(
        class_names.len() >= 2,
        "{}: the label column needs at least two classes",
        path.display()
    );
    let y = raw_labels
        .iter()
        .map(|l| class_names.iter().position(|c| c == l).unwrap_or_default() as u32)
        .collect();
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".to_string());
    let file_name = path
        .file_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    Ok(TrainingData {
        name,
        source: format!("csv:{file_name}"),
        feature_names,
        class_names,
        x,
        y,
    })
}

/// Options of one training run.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub name: String,
    pub algorithm: Algorithm,
    pub seed: u64,
    pub test_size: f32,
    /// RFC 3339 creation time written into the artifact.
    pub created_at: String,
}

/// Splits, fits, scores on the held-out rows and assembles the artifact.
pub fn train(data: &TrainingData, opts: &TrainOptions) -> anyhow::Result<Artifact> {
    let cols = data.feature_names.len();
    let rows = data.y.len();
    ensure!(
        rows >= 10,
        "need at least 10 rows to train and hold some out, got {rows}"
    );
    ensure!(
        opts.test_size > 0.0 && opts.test_size < 1.0,
        "test size must be between 0 and 1, got {}",
        opts.test_size
    );
    let x = DenseMatrix::new(rows, cols, data.x.clone(), false).map_err(anyhow::Error::msg)?;
    let (x_train, x_test, y_train, y_test) =
        train_test_split(&x, &data.y, opts.test_size, true, Some(opts.seed));

    let model = fit(opts.algorithm, &x_train, &y_train, opts.seed)
        .with_context(|| format!("training {}", opts.algorithm))?;
    let predicted = model.predict(&x_test).map_err(anyhow::Error::msg)?;
    let correct = predicted
        .iter()
        .zip(&y_test)
        .filter(|(p, t)| p == t)
        .count();
    let held_out_accuracy = correct as f64 / y_test.len().max(1) as f64;

    let train_rows = y_train.len();
    let mut train_x = Vec::with_capacity(train_rows * cols);
    for i in 0..train_rows {
        for j in 0..cols {
            train_x.push(*smartcore::linalg::basic::arrays::Array::get(
                &x_train,
                (i, j),
            ));
        }
    }
    let baseline = Baseline::compute(
        &data.feature_names,
        &train_x,
        &y_train,
        data.class_names.len(),
    );

    let mut artifact = Artifact {
        format_version: FORMAT_VERSION,
        name: opts.name.clone(),
        version: String::new(),
        algorithm: opts.algorithm,
        created_at: opts.created_at.clone(),
        feature_names: data.feature_names.clone(),
        class_names: data.class_names.clone(),
        training: TrainingSummary {
            source: data.source.clone(),
            rows,
            train_rows,
            test_rows: y_test.len(),
            seed: opts.seed,
            held_out_accuracy,
        },
        baseline,
        model,
    };
    artifact.version = artifact.content_version()?;
    Ok(artifact)
}

fn fit(
    algorithm: Algorithm,
    x: &DenseMatrix<f64>,
    y: &Vec<u32>,
    seed: u64,
) -> anyhow::Result<Classifier> {
    let model =
        match algorithm {
            Algorithm::RandomForest => {
                let params = RandomForestClassifierParameters {
                    n_trees: 100,
                    seed,
                    ..Default::default()
                };
                Classifier::RandomForest(RandomForestClassifier::fit(x, y, params)?)
            }
            Algorithm::LogisticRegression => Classifier::LogisticRegression(
                LogisticRegression::fit(x, y, LogisticRegressionParameters::default())?,
            ),
            Algorithm::DecisionTree => {
                let params = DecisionTreeClassifierParameters {
                    seed: Some(seed),
                    ..Default::default()
                };
                Classifier::DecisionTree(DecisionTreeClassifier::fit(x, y, params)?)
            }
            Algorithm::Knn => Classifier::Knn(KNNClassifier::fit(
                x,
                y,
                KNNClassifierParameters::default().with_k(5),
            )?),
        };
    Ok(model)
}

/// The creation time to stamp: `SOURCE_DATE_EPOCH` (seconds) when set, else now.
pub fn creation_time() -> anyhow::Result<String> {
    let when = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(s) => {
            let secs: i64 = s
                .trim()
                .parse()
                .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is not a number of seconds"))?;
            chrono::DateTime::from_timestamp(secs, 0)
                .with_context(|| format!("SOURCE_DATE_EPOCH={s:?} is out of range"))?
        }
        Err(_) => chrono::Utc::now(),
    };
    Ok(when.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_dataset_column_titles() {
        assert_eq!(normalize_feature_name("sepal length (cm)"), "sepal_length");
        assert_eq!(normalize_feature_name("Mean Radius"), "mean_radius");
        assert_eq!(normalize_feature_name("  a--b  "), "a_b");
    }

    #[test]
    fn iris_has_named_features_and_classes() {
        let d = load_dataset(Dataset::Iris);
        assert_eq!(
            d.feature_names,
            ["sepal_length", "sepal_width", "petal_length", "petal_width"]
        );
        assert_eq!(d.class_names, ["setosa", "versicolor", "virginica"]);
        assert_eq!(d.y.len(), 150);
        assert_eq!(d.x.len(), 600);
    }
}
