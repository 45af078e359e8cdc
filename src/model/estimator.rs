//! The learning algorithms and the fitted smartcore classifiers an artifact holds: a leaf
//! that the model's other files share.

use std::fmt;

use serde::{Deserialize, Serialize};
use smartcore::ensemble::random_forest_classifier::RandomForestClassifier;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::logistic_regression::LogisticRegression;
use smartcore::metrics::distance::euclidian::Euclidian;
use smartcore::neighbors::knn_classifier::KNNClassifier;
use smartcore::tree::decision_tree_classifier::DecisionTreeClassifier;

/// The learning algorithms `inferlog train` offers.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    RandomForest,
    LogisticRegression,
    DecisionTree,
    Knn,
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::RandomForest => "random-forest",
            Algorithm::LogisticRegression => "logistic-regression",
            Algorithm::DecisionTree => "decision-tree",
            Algorithm::Knn => "knn",
        })
    }
}

/// Row-major input rows, as smartcore takes them.
pub type Matrix = DenseMatrix<f64>;
pub(super) type Labels = Vec<u32>;

/// A fitted smartcore classifier. Classes are indices into
/// [`super::Artifact::class_names`].
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Classifier {
    RandomForest(RandomForestClassifier<f64, u32, Matrix, Labels>),
    LogisticRegression(LogisticRegression<f64, u32, Matrix, Labels>),
    DecisionTree(DecisionTreeClassifier<f64, u32, Matrix, Labels>),
    Knn(KNNClassifier<f64, u32, Matrix, Labels, Euclidian<f64>>),
}

impl Classifier {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Classifier::RandomForest(_) => Algorithm::RandomForest,
            Classifier::LogisticRegression(_) => Algorithm::LogisticRegression,
            Classifier::DecisionTree(_) => Algorithm::DecisionTree,
            Classifier::Knn(_) => Algorithm::Knn,
        }
    }

    /// Predicts through smartcore. [`super::Model::predict`] walks compiled trees instead
    /// when it can ([`super::compiled`]); this stays for the other algorithms, for training,
    /// and to compare.
    pub fn predict(&self, x: &Matrix) -> Result<Labels, smartcore::error::Failed> {
        match self {
            Classifier::RandomForest(m) => m.predict(x),
            Classifier::LogisticRegression(m) => m.predict(x),
            Classifier::DecisionTree(m) => m.predict(x),
            Classifier::Knn(m) => m.predict(x),
        }
    }
}
