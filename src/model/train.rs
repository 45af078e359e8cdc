//! Training: turn [`TrainingData`] into a model [`Artifact`].
//!
//! Everything is seeded, so the same inputs and options give the same model, version and (with
//! `SOURCE_DATE_EPOCH` fixing `created_at`) the same bytes.

use anyhow::{Context, bail, ensure};
use smartcore::ensemble::random_forest_classifier::{
    RandomForestClassifier, RandomForestClassifierParameters,
};
use smartcore::ensemble::random_forest_regressor::{
    RandomForestRegressor, RandomForestRegressorParameters,
};
use smartcore::linalg::basic::arrays::Array;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::elastic_net::{ElasticNet, ElasticNetParameters};
use smartcore::linear::lasso::{Lasso, LassoParameters};
use smartcore::linear::linear_regression::{LinearRegression, LinearRegressionParameters};
use smartcore::linear::logistic_regression::{LogisticRegression, LogisticRegressionParameters};
use smartcore::linear::ridge_regression::{RidgeRegression, RidgeRegressionParameters};
use smartcore::model_selection::train_test_split;
use smartcore::neighbors::knn_classifier::{KNNClassifier, KNNClassifierParameters};
use smartcore::neighbors::knn_regressor::{KNNRegressor, KNNRegressorParameters};
use smartcore::tree::decision_tree_classifier::{
    DecisionTreeClassifier, DecisionTreeClassifierParameters,
};
use smartcore::tree::decision_tree_regressor::{
    DecisionTreeRegressor, DecisionTreeRegressorParameters,
};

use super::data::{Target, TrainingData};
use super::{
    Algorithm, Artifact, Baseline, Classifier, FORMAT_VERSION, Fitted, Regressor, TrainingSummary,
};
use crate::stats::ErrorSums;

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
    let rows = data.target.rows();
    ensure!(
        rows >= 10,
        "need at least 10 rows to train and hold some out, got {rows}"
    );
    ensure!(
        opts.test_size > 0.0 && opts.test_size < 1.0,
        "test size must be between 0 and 1, got {}",
        opts.test_size
    );
    let task = data.target.task();
    if !opts.algorithm.does(task) {
        let offered: Vec<String> = Algorithm::ALL
            .iter()
            .filter(|a| a.does(task))
            .map(|a| a.to_string())
            .collect();
        bail!(
            "{} does not do {task}; for {task} use one of: {}",
            opts.algorithm,
            offered.join(", ")
        );
    }
    let x = DenseMatrix::new(rows, cols, data.x.clone(), false).map_err(anyhow::Error::msg)?;
    let fitted = match &data.target {
        Target::Classes { names, y } => classifier(&x, y, &data.feature_names, names.len(), opts)?,
        Target::Values(y) => regressor(&x, y, &data.feature_names, opts)?,
    };
    let mut artifact = Artifact {
        format_version: FORMAT_VERSION,
        name: opts.name.clone(),
        version: String::new(),
        algorithm: opts.algorithm,
        created_at: opts.created_at.clone(),
        feature_names: data.feature_names.clone(),
        class_names: data
            .target
            .classes()
            .map(|(names, _)| names.to_vec())
            .unwrap_or_default(),
        training: TrainingSummary {
            source: data.source.clone(),
            rows,
            train_rows: fitted.train_rows,
            test_rows: rows - fitted.train_rows,
            seed: opts.seed,
            held_out_accuracy: fitted.accuracy,
            held_out_errors: fitted.errors.errors(),
        },
        baseline: fitted.baseline,
        model: fitted.model,
    };
    artifact.version = artifact.content_version()?;
    Ok(artifact)
}

/// A fitted model with what training measured of it.
struct Trained {
    model: Fitted,
    baseline: Baseline,
    train_rows: usize,
    accuracy: Option<f64>,
    errors: ErrorSums,
}

fn classifier(
    x: &DenseMatrix<f64>,
    y: &Vec<u32>,
    names: &[String],
    n_classes: usize,
    opts: &TrainOptions,
) -> anyhow::Result<Trained> {
    let (x_train, x_test, y_train, y_test) =
        train_test_split(x, y, opts.test_size, true, Some(opts.seed));
    let model = fit_classifier(opts.algorithm, &x_train, &y_train, opts.seed)
        .with_context(|| format!("training {}", opts.algorithm))?;
    let predicted = model.predict(&x_test).map_err(anyhow::Error::msg)?;
    let correct = predicted
        .iter()
        .zip(&y_test)
        .filter(|(p, t)| p == t)
        .count();
    // The held-out rows' confidence, as served: the served class's probability.
    let scored = super::scores::Scorer::new(&model, n_classes, true)
        .map_err(anyhow::Error::msg)?
        .scores(&model, &x_test)
        .map_err(anyhow::Error::msg)?;
    let confidences: Vec<f64> = (scored.classes.iter().enumerate())
        .map(|(i, &c)| scored.probabilities.confidence(i, c))
        .collect();
    let features = feature_stats(names, &x_train);
    Ok(Trained {
        model: model.into(),
        baseline: Baseline::of_classes(features, &y_train, n_classes, &confidences),
        train_rows: y_train.len(),
        accuracy: Some(correct as f64 / y_test.len().max(1) as f64),
        errors: ErrorSums::default(),
    })
}

fn regressor(
    x: &DenseMatrix<f64>,
    y: &Vec<f64>,
    names: &[String],
    opts: &TrainOptions,
) -> anyhow::Result<Trained> {
    let (x_train, x_test, y_train, y_test) =
        train_test_split(x, y, opts.test_size, true, Some(opts.seed));
    let model = fit_regressor(opts.algorithm, &x_train, &y_train, opts.seed)
        .with_context(|| format!("training {}", opts.algorithm))?;
    let predicted = model.predict(&x_test).map_err(anyhow::Error::msg)?;
    let mut errors = ErrorSums::default();
    for (&p, &t) in predicted.iter().zip(&y_test) {
        errors.add(p, t);
    }
    let answers = model.predict(x).map_err(anyhow::Error::msg)?;
    if answers.iter().any(|v| !v.is_finite()) {
        bail!(
            "{} answered a non-finite number on its own data",
            opts.algorithm
        );
    }
    let features = feature_stats(names, &x_train);
    Ok(Trained {
        model: model.into(),
        baseline: Baseline::of_values(features, &answers),
        train_rows: y_train.len(),
        accuracy: None,
        errors,
    })
}

/// The baseline statistics of the training rows' features.
fn feature_stats(names: &[String], x_train: &DenseMatrix<f64>) -> Vec<super::FeatureStats> {
    let (rows, cols) = x_train.shape();
    let mut values = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        values.extend((0..cols).map(|j| *x_train.get((i, j))));
    }
    Baseline::features(names, &values, rows)
}

fn fit_classifier(
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
            other => bail!("{other} does not classify"),
        };
    Ok(model)
}

/// smartcore's defaults, but for the forest's size (100 trees, as the classifier) and k = 5.
fn fit_regressor(
    algorithm: Algorithm,
    x: &DenseMatrix<f64>,
    y: &Vec<f64>,
    seed: u64,
) -> anyhow::Result<Regressor> {
    let model = match algorithm {
        Algorithm::RandomForest => {
            let params = RandomForestRegressorParameters {
                n_trees: 100,
                seed,
                ..Default::default()
            };
            Regressor::RandomForestRegressor(RandomForestRegressor::fit(x, y, params)?)
        }
        Algorithm::DecisionTree => {
            let params = DecisionTreeRegressorParameters {
                seed: Some(seed),
                ..Default::default()
            };
            Regressor::DecisionTreeRegressor(DecisionTreeRegressor::fit(x, y, params)?)
        }
        Algorithm::Knn => Regressor::KnnRegressor(KNNRegressor::fit(
            x,
            y,
            KNNRegressorParameters::default().with_k(5),
        )?),
        Algorithm::LinearRegression => Regressor::LinearRegression(LinearRegression::fit(
            x,
            y,
            LinearRegressionParameters::default(),
        )?),
        Algorithm::Ridge => Regressor::Ridge(RidgeRegression::fit(
            x,
            y,
            RidgeRegressionParameters::default(),
        )?),
        Algorithm::Lasso => Regressor::Lasso(Lasso::fit(x, y, LassoParameters::default())?),
        Algorithm::ElasticNet => {
            Regressor::ElasticNet(ElasticNet::fit(x, y, ElasticNetParameters::default())?)
        }
        other => bail!("{other} does not regress"),
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
