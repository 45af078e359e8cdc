//! Training: turn [`TrainingData`] into a model [`Artifact`].
//!
//! Everything is seeded, so the same inputs and options give the same model, version and (with
//! `SOURCE_DATE_EPOCH` fixing `created_at`) the same bytes.

use anyhow::{Context, ensure};
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

use super::data::TrainingData;
use super::{Algorithm, Artifact, Baseline, Classifier, FORMAT_VERSION, TrainingSummary};

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
