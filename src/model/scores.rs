//! What a classifier answers for each row: its class and a probability per class.
//!
//! Every algorithm `inferlog train` offers defines one, and each is computed the way the
//! algorithm decides its class, so the most probable class is always the one served:
//!
//! - **Random forest:** the share of trees voting each class (the compiled walk counts the
//!   votes it already takes; without it, smartcore's own trees, read from the artifact, vote).
//! - **Logistic regression:** the softmax of the class scores smartcore takes the largest of
//!   (`x·coefficientsᵀ + intercept`); with two classes, the sigmoid smartcore compares with ½.
//! - **Decision tree:** smartcore's `predict_proba`, the class of the leaf reached (smartcore
//!   keeps no class counts per leaf, so each probability is 0 or 1).
//! - **k-NN:** smartcore's `predict_proba`, the share of neighbours of each class.
//!
//! Ties go to the first class in class order, as smartcore breaks them (`argmax`,
//! `which_max`): with two classes at ½ each, a logistic regression answers the first.
//! Probabilities are in class order ([`crate::model::Artifact::class_names`]); a class the
//! model never saw in training has probability 0.

use serde::{Deserialize, Serialize};
use smartcore::error::Failed;
use smartcore::linalg::basic::arrays::{Array, Array2};
use smartcore::numbers::realnum::RealNumber;
use smartcore::tree::decision_tree_classifier::DecisionTreeClassifier;

use super::estimator::{Classifier, Labels, Matrix};

/// What a model answers for a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Answers {
    /// A classifier's classes and probabilities.
    Classes(Scores),
    /// A regressor's number per row, every one finite.
    Values(Vec<f64>),
}

impl Answers {
    pub fn rows(&self) -> usize {
        match self {
            Answers::Classes(s) => s.classes.len(),
            Answers::Values(v) => v.len(),
        }
    }
}

/// Classes and class probabilities of a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// The class of each row.
    pub classes: Vec<u32>,
    pub probabilities: Probabilities,
}

/// One probability per class for each row, row-major.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Probabilities {
    width: usize,
    values: Vec<f64>,
}

impl Probabilities {
    /// Room for `rows` rows of `width` classes.
    pub fn with_rows(width: usize, rows: usize) -> Probabilities {
        Probabilities {
            width,
            values: Vec::with_capacity(width * rows),
        }
    }

    pub fn rows(&self) -> usize {
        self.values.len().checked_div(self.width).unwrap_or(0)
    }

    /// The probabilities of row `i`, in class order.
    pub fn row(&self, i: usize) -> &[f64] {
        &self.values[i * self.width..(i + 1) * self.width]
    }

    /// The probability of the class row `i` was answered (the largest).
    pub fn confidence(&self, i: usize, class: u32) -> f64 {
        self.row(i)[class as usize]
    }

    /// Appends a row of zeros and returns it, to be filled.
    fn push_zeros(&mut self) -> &mut [f64] {
        let start = self.values.len();
        self.values.resize(start + self.width, 0.0);
        &mut self.values[start..]
    }
}

impl Serialize for Probabilities {
    /// As rows: `[[0.02, 0.11, 0.87]]`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((0..self.rows()).map(|i| self.row(i)))
    }
}

/// The index of the first largest value (smartcore's tie rule: `argmax`, `which_max`); 0 when
/// `v` is empty.
pub fn first_max<T: PartialOrd>(v: &[T]) -> usize {
    let mut best = 0;
    for (k, x) in v.iter().enumerate().skip(1) {
        if *x > v[best] {
            best = k;
        }
    }
    best
}

/// How a classifier's probabilities are computed without the compiled walk: the class each
/// column of smartcore's output stands for, and a random forest's trees.
#[derive(Debug)]
pub struct Scorer {
    /// smartcore's classes, in its column order (read from the fitted model).
    columns: Vec<u32>,
    /// A random forest's trees, which vote.
    trees: Vec<DecisionTreeClassifier<f64, u32, Matrix, Labels>>,
    /// Classes the artifact names (the width of every row of probabilities).
    width: usize,
}

// The fields of smartcore's serialized models this module reads (serde skips the others).
#[derive(Deserialize)]
struct ClassesForm {
    classes: Option<Vec<u32>>,
}

#[derive(Deserialize)]
struct TreesForm {
    trees: Option<Vec<DecisionTreeClassifier<f64, u32, Matrix, Labels>>>,
}

impl Scorer {
    /// Reads what scoring needs from a fitted classifier naming `width` classes; a random
    /// forest's trees only `with_trees` (a forest walked compiled does not need them).
    pub fn new(model: &Classifier, width: usize, with_trees: bool) -> Result<Scorer, String> {
        let value = match model {
            Classifier::RandomForest(m) => serde_json::to_value(m),
            Classifier::LogisticRegression(m) => serde_json::to_value(m),
            Classifier::DecisionTree(m) => serde_json::to_value(m),
            Classifier::Knn(m) => serde_json::to_value(m),
        }
        .map_err(|e| e.to_string())?;
        let read = |e: serde_json::Error| e.to_string();
        let form = ClassesForm::deserialize(&value).map_err(read)?;
        let columns = form.classes.ok_or("the model is not fitted")?;
        if let Some(bad) = columns.iter().find(|&&c| c as usize >= width) {
            return Err(format!("class {bad} has no name"));
        }
        let mut trees = Vec::new();
        if with_trees && matches!(model, Classifier::RandomForest(_)) {
            let form = TreesForm::deserialize(&value).map_err(read)?;
            trees = form.trees.unwrap_or_default();
            if trees.is_empty() {
                return Err("the forest has no trees".into());
            }
        }
        Ok(Scorer {
            columns,
            trees,
            width,
        })
    }

    /// The classes and probabilities of the rows of `x`, through smartcore.
    pub fn scores(&self, model: &Classifier, x: &Matrix) -> Result<Scores, Failed> {
        let rows = x.shape().0;
        let mut out = Scores {
            classes: Vec::with_capacity(rows),
            probabilities: Probabilities::with_rows(self.width, rows),
        };
        match model {
            Classifier::RandomForest(_) => self.forest(x, &mut out)?,
            Classifier::LogisticRegression(m) => {
                let (coefficients, intercept) = (m.coefficients(), m.intercept());
                if self.columns.len() == 2 {
                    let z = x.ab(false, coefficients, true);
                    let b = *intercept.get((0, 0));
                    for i in 0..rows {
                        let p = (*z.get((i, 0)) + b).sigmoid();
                        self.push(&mut out, &[1.0 - p, p], usize::from(p > f64::half()));
                    }
                } else {
                    let z = x.matmul(&coefficients.transpose());
                    let mut row = vec![0.0; self.columns.len()];
                    for i in 0..rows {
                        for (c, v) in row.iter_mut().enumerate() {
                            *v = *z.get((i, c)) + *intercept.get((c, 0));
                        }
                        let best = first_max(&row);
                        softmax(&mut row);
                        self.push(&mut out, &row, best);
                    }
                }
            }
            Classifier::DecisionTree(m) => {
                let p = m.predict_proba(x)?;
                let mut row = vec![0.0; self.columns.len()];
                for i in 0..rows {
                    for (c, v) in row.iter_mut().enumerate() {
                        *v = *p.get((i, c));
                    }
                    self.push(&mut out, &row, first_max(&row));
                }
            }
            Classifier::Knn(m) => {
                for row in m.predict_proba(x)? {
                    self.push(&mut out, &row, first_max(&row));
                }
            }
        }
        Ok(out)
    }

    /// Each tree votes (as smartcore's forest counts them); the share of votes per class.
    fn forest(&self, x: &Matrix, out: &mut Scores) -> Result<(), Failed> {
        if self.trees.is_empty() {
            return Err(Failed::predict("the forest's trees were not read"));
        }
        let rows = x.shape().0;
        let mut votes = vec![0.0; rows * self.columns.len()];
        for tree in &self.trees {
            for (i, class) in tree.predict(x)?.into_iter().enumerate() {
                let column = self
                    .columns
                    .iter()
                    .position(|&c| c == class)
                    .ok_or_else(|| {
                        Failed::predict(&format!("a tree answered class {class}, not the forest's"))
                    })?;
                votes[i * self.columns.len() + column] += 1.0;
            }
        }
        let n = self.trees.len() as f64;
        for row in votes.chunks_exact_mut(self.columns.len()) {
            let best = first_max(row);
            row.iter_mut().for_each(|v| *v /= n);
            self.push(out, row, best);
        }
        Ok(())
    }

    /// One row: smartcore's columns `p` placed in class order, answered column `best`.
    fn push(&self, out: &mut Scores, p: &[f64], best: usize) {
        let row = out.probabilities.push_zeros();
        for (&class, &v) in self.columns.iter().zip(p) {
            row[class as usize] = v;
        }
        out.classes.push(self.columns[best]);
    }
}

/// In place, the largest score subtracted first so no exponential overflows.
fn softmax(v: &mut [f64]) {
    let max = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for x in v.iter_mut() {
        *x = (*x - max).exp();
        sum += *x;
    }
    v.iter_mut().for_each(|x| *x /= sum);
}

/// Used by [`super::compiled`]: a forest's votes per class of one row become its scores.
pub(super) fn push_votes(out: &mut Scores, votes: &[u32], classes: &[u32], trees: usize) {
    let best = first_max(votes);
    let row = out.probabilities.push_zeros();
    for (&class, &v) in classes.iter().zip(votes) {
        row[class as usize] = f64::from(v) / trees as f64;
    }
    out.classes.push(classes[best]);
}
