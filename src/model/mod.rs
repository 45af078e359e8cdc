//! Models: the artifact format, loading, prediction (random forests through a compiled walk of
//! the same trees, [`compiled`]), training data ([`data`]), training ([`train`]) and the
//! models being served ([`registry`]).
//!
//! An artifact is one JSON file holding everything needed to serve and to monitor a model: its
//! identity (name, content-hash version, algorithm, creation time), the feature and (for a
//! classifier) class names that give inputs and outputs their meaning, a training summary, the
//! training baseline that drift and outlier monitoring compare against ([`baseline`]), and the
//! fitted smartcore model: a classifier, which answers a class and class probabilities
//! ([`scores`]), or a regressor, which answers a number ([`estimator`]).
//! serde_json's `float_roundtrip` feature makes a reloaded model bit-identical to the saved one.

pub mod baseline;
pub mod compiled;
pub mod data;
pub mod estimator;
pub mod registry;
pub mod scores;
pub mod train;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use smartcore::linalg::basic::arrays::Array;

pub use crate::stats::RegressionErrors;
pub use baseline::{Baseline, ConfidenceBaseline, FeatureStats};
pub use estimator::{Algorithm, Classifier, Fitted, Matrix, Regressor, Task};
pub use scores::{Answers, Probabilities, Scores};

/// Version of the artifact layout this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;

/// How the model was trained and how well it did on rows it never saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct TrainingSummary {
    /// Where the rows came from (`smartcore:iris`, `csv:flowers.csv`).
    pub source: String,
    pub rows: usize,
    pub train_rows: usize,
    pub test_rows: usize,
    pub seed: u64,
    /// A classifier's share of held-out rows it answered right.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_accuracy: Option<f64>,
    /// A regressor's errors on the held-out rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held_out_errors: Option<RegressionErrors>,
}

/// One model file, as written by `inferlog train` and read by `inferlog serve`.
#[derive(Debug, Serialize, Deserialize)]
pub struct Artifact {
    pub format_version: u32,
    pub name: String,
    /// First 16 hex digits of a SHA-256 over everything that determines predictions (not the
    /// creation time), so retraining the same data the same way gives the same version.
    pub version: String,
    pub algorithm: Algorithm,
    /// UTC RFC 3339; taken from `SOURCE_DATE_EPOCH` when set, for reproducible files.
    pub created_at: String,
    pub feature_names: Vec<String>,
    /// A classifier's classes, in the order of its class indices (absent for a regressor).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub class_names: Vec<String>,
    pub training: TrainingSummary,
    pub baseline: Baseline,
    pub model: Fitted,
}

impl Artifact {
    /// Whether the model answers classes or numbers.
    pub fn task(&self) -> Task {
        self.model.task()
    }

    /// The content hash that becomes [`Artifact::version`].
    pub fn content_version(&self) -> anyhow::Result<String> {
        #[derive(Serialize)]
        struct Content<'a> {
            format_version: u32,
            algorithm: Algorithm,
            feature_names: &'a [String],
            #[serde(skip_serializing_if = "<[String]>::is_empty")]
            class_names: &'a [String],
            training: &'a TrainingSummary,
            baseline: &'a Baseline,
            model: &'a Fitted,
        }
        let bytes = serde_json::to_vec(&Content {
            format_version: self.format_version,
            algorithm: self.algorithm,
            feature_names: &self.feature_names,
            class_names: &self.class_names,
            training: &self.training,
            baseline: &self.baseline,
            model: &self.model,
        })?;
        let digest = Sha256::digest(&bytes);
        Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
    }

    /// Writes the artifact as pretty JSON (it is meant to be read by people too).
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        let mut bytes = serde_json::to_vec_pretty(self).context("serialising the model")?;
        bytes.push(b'\n');
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("creating folder {}", dir.display()))?;
        }
        std::fs::write(path, bytes).with_context(|| format!("writing {}", path.display()))
    }

    /// Reads and checks an artifact; every error names what is wrong with the file.
    pub fn load(path: &Path) -> anyhow::Result<Artifact> {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        let artifact: Artifact = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid model artifact", path.display()))?;
        artifact
            .check()
            .with_context(|| format!("{} is not a valid model artifact", path.display()))?;
        Ok(artifact)
    }

    fn check(&self) -> anyhow::Result<()> {
        if self.format_version != FORMAT_VERSION {
            bail!(
                "format_version {} is not supported (this build reads {FORMAT_VERSION})",
                self.format_version
            );
        }
        if self.name.is_empty() {
            bail!("name is empty");
        }
        if self.feature_names.is_empty() {
            bail!("feature_names is empty");
        }
        let mut names: Vec<&String> = self.feature_names.iter().collect();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            bail!("feature name {:?} appears twice", w[0]);
        }
        if self.algorithm != self.model.algorithm() {
            bail!(
                "algorithm says {} but the model is {}",
                self.algorithm,
                self.model.algorithm()
            );
        }
        match &self.model {
            Fitted::Classifier(model) => {
                if self.class_names.is_empty() {
                    bail!("class_names is empty");
                }
                scores::Scorer::new(model, self.class_names.len(), false).map_err(|e| {
                    anyhow::anyhow!("the model cannot give class probabilities: {e}")
                })?;
            }
            Fitted::Regressor(_) => {
                if !self.class_names.is_empty() {
                    bail!("a regressor has no class_names");
                }
                if self.baseline.output.is_none() {
                    bail!("the baseline of a regressor has no output distribution");
                }
            }
        }
        if self.baseline.features.len() != self.feature_names.len() {
            bail!(
                "baseline has {} features, feature_names has {}",
                self.baseline.features.len(),
                self.feature_names.len()
            );
        }
        Ok(())
    }
}

/// A loaded model, shared by all workers.
#[derive(Debug)]
pub struct Model {
    pub artifact: Artifact,
    /// The file it came from, for messages.
    pub path: PathBuf,
    /// Name, version and class names as shared strings, so audit rows reuse them.
    pub shared: SharedNames,
    /// The trees laid out for prediction, when the model is a random forest ([`compiled`]);
    /// `None` predicts through smartcore.
    trees: Option<compiled::Trees>,
    /// How smartcore's answers become classes and probabilities (see [`scores`]); why not,
    /// for a model that cannot give them (only one not loaded through [`Artifact::load`],
    /// which refuses such files).
    scorer: Result<scores::Scorer, String>,
}

#[derive(Debug, Clone)]
pub struct SharedNames {
    pub name: Arc<str>,
    pub version: Arc<str>,
    pub labels: Vec<Arc<str>>,
    pub features: Vec<Arc<str>>,
}

/// Why a prediction could not be made although the input was valid.
#[derive(Debug, thiserror::Error)]
#[error("model {model} failed to predict: {reason}")]
pub struct PredictError {
    model: String,
    reason: String,
    pub kind: Failure,
}

/// Whose fault a [`PredictError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The model could not answer valid input (a broken artifact, a bug).
    Model,
    /// A regressor's answer overflowed: the input, though finite, is too far out for it.
    NotFinite,
}

impl Model {
    pub fn new(artifact: Artifact, path: PathBuf) -> Model {
        let shared = SharedNames {
            name: artifact.name.as_str().into(),
            version: artifact.version.as_str().into(),
            labels: artifact
                .class_names
                .iter()
                .map(|c| c.as_str().into())
                .collect(),
            features: artifact
                .feature_names
                .iter()
                .map(|f| f.as_str().into())
                .collect(),
        };
        let width = artifact.feature_names.len();
        let n_classes = artifact.class_names.len();
        let trees = match &artifact.model {
            Fitted::Classifier(Classifier::RandomForest(m)) => compiled::Trees::forest(m, width)
                .ok()
                .filter(|t| t.classes().iter().all(|&c| (c as usize) < n_classes)),
            Fitted::Regressor(Regressor::RandomForestRegressor(m)) => {
                compiled::Trees::regression_forest(m, width).ok()
            }
            Fitted::Classifier(_) | Fitted::Regressor(_) => None,
        };
        let scorer = match &artifact.model {
            // A forest walked compiled needs smartcore's trees only to compare (tests).
            Fitted::Classifier(m) => scores::Scorer::new(m, n_classes, trees.is_none()),
            Fitted::Regressor(_) => Err("a regressor answers numbers, not classes".into()),
        };
        Model {
            artifact,
            path,
            shared,
            trees,
            scorer,
        }
    }

    /// Whether predictions walk the compiled trees ([`compiled`]) rather than smartcore's.
    pub fn uses_compiled_trees(&self) -> bool {
        self.trees.is_some()
    }

    pub fn name(&self) -> &str {
        &self.artifact.name
    }

    pub fn n_features(&self) -> usize {
        self.artifact.feature_names.len()
    }

    /// The answers for the rows of `x` (validated: the model's feature count, every value
    /// finite): classes and class probabilities, or numbers.
    pub fn predict(&self, x: &Matrix) -> Result<Answers, PredictError> {
        let (rows, cols) = x.shape();
        let mut values = Vec::new();
        if self.trees.is_some() {
            values.reserve(rows * cols);
            for i in 0..rows {
                values.extend((0..cols).map(|j| *x.get((i, j))));
            }
        }
        self.predict_rows(x, &values)
    }

    /// [`Model::predict`] for a matrix whose values the caller also holds in row order
    /// (`row_major`, as a validated request does), so the compiled walk reads them without a
    /// copy.
    pub fn predict_rows(&self, x: &Matrix, row_major: &[f64]) -> Result<Answers, PredictError> {
        let regressor = match &self.artifact.model {
            Fitted::Regressor(m) => m,
            Fitted::Classifier(_) => return self.classify(x, row_major).map(Answers::Classes),
        };
        let (rows, cols) = x.shape();
        let values = match &self.trees {
            Some(trees) if cols == self.n_features() && row_major.len() == rows * cols => {
                trees.mean_values(row_major)
            }
            _ => regressor
                .predict(x)
                .map_err(|e| self.failed(e.to_string()))?,
        };
        if let Some(row) = values.iter().position(|v| !v.is_finite()) {
            return Err(PredictError {
                model: self.artifact.name.clone(),
                reason: format!(
                    "row {row}: the answer is not a finite number (inputs far outside the \
                     training range overflow the model)"
                ),
                kind: Failure::NotFinite,
            });
        }
        Ok(Answers::Values(values))
    }

    /// A classifier's classes and probabilities, through the compiled walk when there is one.
    fn classify(&self, x: &Matrix, row_major: &[f64]) -> Result<Scores, PredictError> {
        let (rows, cols) = x.shape();
        let scores = match &self.trees {
            Some(trees) if cols == self.n_features() && row_major.len() == rows * cols => {
                trees.scores(row_major, self.artifact.class_names.len())
            }
            _ => self.smartcore_scores(x)?,
        };
        if let Some(bad) = scores
            .classes
            .iter()
            .find(|&&c| c as usize >= self.artifact.class_names.len())
        {
            return Err(self.failed(format!("class index {bad} has no name")));
        }
        Ok(scores)
    }

    /// Classes and probabilities through smartcore's model (a forest's own trees voting),
    /// never the compiled walk: how [`Model::predict`] answers without one, and what tests
    /// hold the compiled walk to.
    pub fn smartcore_scores(&self, x: &Matrix) -> Result<Scores, PredictError> {
        let scorer = self.scorer.as_ref().map_err(|e| self.failed(e.clone()))?;
        let Fitted::Classifier(model) = &self.artifact.model else {
            return Err(self.failed("a regressor answers numbers, not classes".into()));
        };
        let scorer = match (model, &self.trees) {
            // Built without the trees, which the compiled walk has.
            (Classifier::RandomForest(_), Some(_)) => {
                &scores::Scorer::new(model, self.artifact.class_names.len(), true)
                    .map_err(|e| self.failed(e))?
            }
            _ => scorer,
        };
        scorer
            .scores(model, x)
            .map_err(|e| self.failed(e.to_string()))
    }

    fn failed(&self, reason: String) -> PredictError {
        PredictError {
            model: self.artifact.name.clone(),
            reason,
            kind: Failure::Model,
        }
    }

    /// The class name of a predicted index (indices come from [`Model::predict`], which checks
    /// they are in range).
    pub fn label(&self, class: u32) -> &str {
        &self.artifact.class_names[class as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows spread over and beyond every feature's training range, and their values in row
    /// order.
    fn grid(model: &Model, steps: usize) -> (Matrix, Vec<f64>) {
        let features = &model.artifact.baseline.features;
        let cols = features.len();
        let rows = 400;
        let mut values = Vec::with_capacity(rows * cols);
        for i in 0..rows {
            for (j, f) in features.iter().enumerate() {
                let span = (f.max - f.min).max(1e-9);
                let k = (i * (j + 3) + j) % (steps + 1);
                values.push(f.min - span * 0.1 + span * 1.2 * k as f64 / steps as f64);
            }
        }
        (
            Matrix::new(rows, cols, values.clone(), false).unwrap(),
            values,
        )
    }

    /// Probabilities in [0, 1] summing to 1 (within 1e-9), the served class the most
    /// probable (the first of equals), and one probability per named class.
    fn assert_coherent(model: &Model, scores: &Scores) {
        let width = model.artifact.class_names.len();
        assert_eq!(scores.probabilities.rows(), scores.classes.len());
        for (i, &class) in scores.classes.iter().enumerate() {
            let p = scores.probabilities.row(i);
            assert_eq!(p.len(), width);
            assert!(p.iter().all(|v| (0.0..=1.0).contains(v)), "{p:?}");
            let sum: f64 = p.iter().sum();
            assert!(
                (sum - 1.0).abs() <= 1e-9,
                "{} row {i}: sum {sum}",
                model.name()
            );
            assert_eq!(
                scores::first_max(p),
                class as usize,
                "{} row {i}: {p:?}",
                model.name()
            );
            assert_eq!(scores.probabilities.confidence(i, class), p[class as usize]);
        }
    }

    /// A classifier's answers.
    fn scores(answers: Answers) -> Scores {
        match answers {
            Answers::Classes(s) => s,
            Answers::Values(_) => panic!("a classifier answered numbers"),
        }
    }

    fn smartcore_classes(model: &Model, x: &Matrix) -> Vec<u32> {
        model
            .artifact
            .model
            .classifier()
            .unwrap()
            .predict(x)
            .unwrap()
    }

    fn assert_same_as_smartcore(model: &Model) {
        assert!(
            model.uses_compiled_trees(),
            "{} walks compiled trees",
            model.name()
        );
        let (x, values) = grid(model, 37);
        let ours = scores(model.predict(&x).unwrap());
        let smartcore = smartcore_classes(model, &x);
        assert_eq!(ours.classes, smartcore, "{}", model.name());
        assert_eq!(scores(model.predict_rows(&x, &values).unwrap()), ours);
        // smartcore's own trees, voting, give the same shares as the compiled walk.
        assert_eq!(model.smartcore_scores(&x).unwrap(), ours);
        assert_coherent(model, &ours);
        assert!(
            ours.classes.iter().any(|&c| c != ours.classes[0]),
            "the grid reaches several classes"
        );
    }

    /// Every algorithm on a three-class and a two-class data set: the served classes are
    /// smartcore's own `predict` on the held-out rows and on a grid beyond them, with
    /// coherent probabilities.
    #[test]
    fn every_algorithm_answers_smartcores_class_with_coherent_probabilities() {
        for dataset in [data::Dataset::Iris, data::Dataset::BreastCancer] {
            for algorithm in [
                Algorithm::RandomForest,
                Algorithm::LogisticRegression,
                Algorithm::DecisionTree,
                Algorithm::Knn,
            ] {
                let data = data::load_dataset(dataset);
                let opts = train::TrainOptions {
                    name: format!("{dataset:?}-{algorithm}"),
                    algorithm,
                    seed: 5,
                    test_size: 0.25,
                    created_at: "2026-01-01T00:00:00Z".into(),
                };
                let model = Model::new(train::train(&data, &opts).unwrap(), PathBuf::new());
                let (x, _) = grid(&model, 23);
                let rows = data.target.rows();
                let all = Matrix::new(rows, model.n_features(), data.x.clone(), false).unwrap();
                for x in [&x, &all] {
                    let ours = scores(model.predict(x).unwrap());
                    let smartcore = smartcore_classes(&model, x);
                    assert_eq!(ours.classes, smartcore, "{}", model.name());
                    assert_eq!(model.smartcore_scores(x).unwrap(), ours, "{}", model.name());
                    assert_coherent(&model, &ours);
                }
            }
        }
    }

    /// Every regressor on both regression data sets: the served numbers are smartcore's own
    /// `predict`, on every row and on a grid beyond them, and survive a save and reload.
    #[test]
    fn every_regressor_answers_smartcores_numbers() {
        let dir = tempfile::tempdir().unwrap();
        for dataset in [data::Dataset::Boston, data::Dataset::Diabetes] {
            let data = data::load_dataset(dataset);
            for algorithm in Algorithm::ALL
                .into_iter()
                .filter(|a| a.does(Task::Regression))
            {
                let opts = train::TrainOptions {
                    name: format!("{dataset:?}-{algorithm}"),
                    algorithm,
                    seed: 5,
                    test_size: 0.25,
                    created_at: "2026-01-01T00:00:00Z".into(),
                };
                let artifact = train::train(&data, &opts).unwrap();
                assert_eq!(artifact.task(), Task::Regression);
                assert!(artifact.class_names.is_empty());
                let errors = artifact.training.held_out_errors.unwrap();
                assert!(errors.rmse >= errors.mae && errors.mae > 0.0, "{errors:?}");
                assert!(artifact.training.held_out_accuracy.is_none());
                let path = dir.path().join(format!("{}.json", opts.name));
                artifact.save(&path).unwrap();
                let model = Model::new(Artifact::load(&path).unwrap(), path);
                assert_eq!(
                    model.artifact.content_version().unwrap(),
                    model.artifact.version
                );
                // A forest walks the compiled trees, held here to smartcore's own walk.
                assert_eq!(
                    model.uses_compiled_trees(),
                    algorithm == Algorithm::RandomForest,
                    "{}",
                    model.name()
                );
                let (grid, _) = grid(&model, 23);
                let rows = data.target.rows();
                let all = Matrix::new(rows, model.n_features(), data.x.clone(), false).unwrap();
                for x in [&grid, &all] {
                    let smartcore = model
                        .artifact
                        .model
                        .regressor()
                        .unwrap()
                        .predict(x)
                        .unwrap();
                    let Answers::Values(ours) = model.predict(x).unwrap() else {
                        panic!("{}: a regressor answered classes", model.name())
                    };
                    assert_eq!(ours, smartcore, "{}", model.name());
                }
                let output = model.artifact.baseline.output.as_ref().unwrap();
                assert_eq!(output.bin_proportions.len(), output.bin_edges.len() + 1);
            }
        }
    }

    #[test]
    fn a_regressor_that_overflows_says_so_and_a_classifier_algorithm_is_refused() {
        let data = data::load_dataset(data::Dataset::Diabetes);
        let mut opts = train::TrainOptions {
            name: "d".into(),
            algorithm: Algorithm::LinearRegression,
            seed: 1,
            test_size: 0.2,
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        let model = Model::new(train::train(&data, &opts).unwrap(), PathBuf::new());
        let x = Matrix::new(1, 10, vec![f64::MAX; 10], false).unwrap();
        let e = model.predict(&x).unwrap_err();
        assert_eq!(e.kind, Failure::NotFinite);
        assert!(e.to_string().contains("row 0"), "{e}");
        opts.algorithm = Algorithm::LogisticRegression;
        let e = train::train(&data, &opts).unwrap_err().to_string();
        assert!(
            e.contains("logistic-regression does not do regression"),
            "{e}"
        );
        assert!(
            e.contains("linear-regression, ridge, lasso, elastic-net"),
            "{e}"
        );
    }

    #[test]
    fn the_shipped_forest_predicts_as_smartcore_does() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json");
        let model = Model::new(Artifact::load(&path).unwrap(), path);
        assert_same_as_smartcore(&model);
    }

    #[test]
    fn a_trained_forest_on_thirty_features_predicts_as_smartcore_does() {
        let data = data::load_dataset(data::Dataset::BreastCancer);
        let opts = train::TrainOptions {
            name: "cancer".into(),
            algorithm: Algorithm::RandomForest,
            seed: 3,
            test_size: 0.2,
            created_at: "2026-01-01T00:00:00Z".into(),
        };
        let model = Model::new(train::train(&data, &opts).unwrap(), PathBuf::new());
        assert_same_as_smartcore(&model);
    }
}
