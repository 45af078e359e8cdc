//! The fitted smartcore models an artifact holds: classifiers, which answer a class (and
//! class probabilities, [`super::scores`]), and regressors, which answer a number.

use std::fmt;

use serde::de::{self, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use smartcore::ensemble::random_forest_classifier::RandomForestClassifier;
use smartcore::ensemble::random_forest_regressor::RandomForestRegressor;
use smartcore::error::Failed;
use smartcore::linalg::basic::matrix::DenseMatrix;
use smartcore::linear::elastic_net::ElasticNet;
use smartcore::linear::lasso::Lasso;
use smartcore::linear::linear_regression::LinearRegression;
use smartcore::linear::logistic_regression::LogisticRegression;
use smartcore::linear::ridge_regression::RidgeRegression;
use smartcore::metrics::distance::euclidian::Euclidian;
use smartcore::neighbors::knn_classifier::KNNClassifier;
use smartcore::neighbors::knn_regressor::KNNRegressor;
use smartcore::tree::decision_tree_classifier::DecisionTreeClassifier;
use smartcore::tree::decision_tree_regressor::DecisionTreeRegressor;

/// Row-major input rows, as smartcore takes them.
pub type Matrix = DenseMatrix<f64>;
pub(super) type Labels = Vec<u32>;
type Values = Vec<f64>;

/// What a model predicts: a class, or a number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Task {
    Classification,
    Regression,
}

impl fmt::Display for Task {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Task::Classification => "classification",
            Task::Regression => "regression",
        })
    }
}

/// The learning algorithms `inferlog train` offers. Random forests, decision trees and k-NN
/// do both tasks; logistic regression classifies; the linear models regress.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "kebab-case")]
pub enum Algorithm {
    RandomForest,
    LogisticRegression,
    DecisionTree,
    Knn,
    LinearRegression,
    Ridge,
    Lasso,
    ElasticNet,
}

impl Algorithm {
    pub const ALL: [Algorithm; 8] = [
        Algorithm::RandomForest,
        Algorithm::LogisticRegression,
        Algorithm::DecisionTree,
        Algorithm::Knn,
        Algorithm::LinearRegression,
        Algorithm::Ridge,
        Algorithm::Lasso,
        Algorithm::ElasticNet,
    ];

    /// Whether the algorithm can learn `task`.
    pub fn does(self, task: Task) -> bool {
        match self {
            Algorithm::RandomForest | Algorithm::DecisionTree | Algorithm::Knn => true,
            Algorithm::LogisticRegression => task == Task::Classification,
            Algorithm::LinearRegression
            | Algorithm::Ridge
            | Algorithm::Lasso
            | Algorithm::ElasticNet => task == Task::Regression,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Algorithm::RandomForest => "random-forest",
            Algorithm::LogisticRegression => "logistic-regression",
            Algorithm::DecisionTree => "decision-tree",
            Algorithm::Knn => "knn",
            Algorithm::LinearRegression => "linear-regression",
            Algorithm::Ridge => "ridge",
            Algorithm::Lasso => "lasso",
            Algorithm::ElasticNet => "elastic-net",
        })
    }
}

/// A fitted smartcore classifier. Classes are indices into
/// [`super::Artifact::class_names`].
#[derive(Debug, Serialize)]
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
    pub fn predict(&self, x: &Matrix) -> Result<Labels, Failed> {
        match self {
            Classifier::RandomForest(m) => m.predict(x),
            Classifier::LogisticRegression(m) => m.predict(x),
            Classifier::DecisionTree(m) => m.predict(x),
            Classifier::Knn(m) => m.predict(x),
        }
    }
}

/// A fitted smartcore regressor. Its variants are named apart from the classifiers' (the
/// artifact's `model` says which kind it holds by its one key).
#[derive(Debug, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Regressor {
    RandomForestRegressor(RandomForestRegressor<f64, f64, Matrix, Values>),
    DecisionTreeRegressor(DecisionTreeRegressor<f64, f64, Matrix, Values>),
    KnnRegressor(KNNRegressor<f64, f64, Matrix, Values, Euclidian<f64>>),
    LinearRegression(LinearRegression<f64, f64, Matrix, Values>),
    Ridge(RidgeRegression<f64, f64, Matrix, Values>),
    Lasso(Lasso<f64, f64, Matrix, Values>),
    ElasticNet(ElasticNet<f64, f64, Matrix, Values>),
}

impl Regressor {
    pub fn algorithm(&self) -> Algorithm {
        match self {
            Regressor::RandomForestRegressor(_) => Algorithm::RandomForest,
            Regressor::DecisionTreeRegressor(_) => Algorithm::DecisionTree,
            Regressor::KnnRegressor(_) => Algorithm::Knn,
            Regressor::LinearRegression(_) => Algorithm::LinearRegression,
            Regressor::Ridge(_) => Algorithm::Ridge,
            Regressor::Lasso(_) => Algorithm::Lasso,
            Regressor::ElasticNet(_) => Algorithm::ElasticNet,
        }
    }

    /// Predicts through smartcore.
    pub fn predict(&self, x: &Matrix) -> Result<Values, Failed> {
        match self {
            Regressor::RandomForestRegressor(m) => m.predict(x),
            Regressor::DecisionTreeRegressor(m) => m.predict(x),
            Regressor::KnnRegressor(m) => m.predict(x),
            Regressor::LinearRegression(m) => m.predict(x),
            Regressor::Ridge(m) => m.predict(x),
            Regressor::Lasso(m) => m.predict(x),
            Regressor::ElasticNet(m) => m.predict(x),
        }
    }
}

/// The model of an artifact: a classifier (written as every artifact before regressors was) or
/// a regressor; in JSON, an object whose one key names the kind (`{"random-forest": …}`,
/// `{"ridge": …}`).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Fitted {
    Classifier(Classifier),
    Regressor(Regressor),
}

impl Fitted {
    pub fn task(&self) -> Task {
        match self {
            Fitted::Classifier(_) => Task::Classification,
            Fitted::Regressor(_) => Task::Regression,
        }
    }

    pub fn algorithm(&self) -> Algorithm {
        match self {
            Fitted::Classifier(m) => m.algorithm(),
            Fitted::Regressor(m) => m.algorithm(),
        }
    }

    pub fn classifier(&self) -> Option<&Classifier> {
        match self {
            Fitted::Classifier(m) => Some(m),
            Fitted::Regressor(_) => None,
        }
    }

    pub fn regressor(&self) -> Option<&Regressor> {
        match self {
            Fitted::Regressor(m) => Some(m),
            Fitted::Classifier(_) => None,
        }
    }
}

/// The key naming a fitted model's kind, as [`Classifier`] and [`Regressor`] write it.
#[derive(Deserialize)]
#[serde(rename_all = "kebab-case")]
enum Kind {
    RandomForest,
    LogisticRegression,
    DecisionTree,
    Knn,
    RandomForestRegressor,
    DecisionTreeRegressor,
    KnnRegressor,
    LinearRegression,
    Ridge,
    Lasso,
    ElasticNet,
}

impl<'de> Deserialize<'de> for Fitted {
    /// Reads the one key first, so an unknown kind is named in the error (an untagged enum
    /// would only say that nothing matched).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Fitted, D::Error> {
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = Fitted;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a fitted model: an object with one key naming its kind")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Fitted, A::Error> {
                let kind: Kind = map
                    .next_key()?
                    .ok_or_else(|| de::Error::custom("the model object is empty"))?;
                let fitted = match kind {
                    Kind::RandomForest => Classifier::RandomForest(map.next_value()?).into(),
                    Kind::LogisticRegression => {
                        Classifier::LogisticRegression(map.next_value()?).into()
                    }
                    Kind::DecisionTree => Classifier::DecisionTree(map.next_value()?).into(),
                    Kind::Knn => Classifier::Knn(map.next_value()?).into(),
                    Kind::RandomForestRegressor => {
                        Regressor::RandomForestRegressor(map.next_value()?).into()
                    }
                    Kind::DecisionTreeRegressor => {
                        Regressor::DecisionTreeRegressor(map.next_value()?).into()
                    }
                    Kind::KnnRegressor => Regressor::KnnRegressor(map.next_value()?).into(),
                    Kind::LinearRegression => Regressor::LinearRegression(map.next_value()?).into(),
                    Kind::Ridge => Regressor::Ridge(map.next_value()?).into(),
                    Kind::Lasso => Regressor::Lasso(map.next_value()?).into(),
                    Kind::ElasticNet => Regressor::ElasticNet(map.next_value()?).into(),
                };
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom("the model object has more than one key"));
                }
                Ok(fitted)
            }
        }
        d.deserialize_map(Fields)
    }
}

impl From<Classifier> for Fitted {
    fn from(m: Classifier) -> Fitted {
        Fitted::Classifier(m)
    }
}

impl From<Regressor> for Fitted {
    fn from(m: Regressor) -> Fitted {
        Fitted::Regressor(m)
    }
}
