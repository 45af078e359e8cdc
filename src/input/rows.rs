//! [`PredictInput`]: a validated request's rows, in the matrix the model predicts from; and
//! the documented shape of a `/predict` body.

use crate::model::Matrix;

/// Whether the client sent one row or a list of rows. Both are answered with lists of
/// predictions (`{"prediction": [2]}` for one row, as the tutorial's clients expect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Batch,
}

/// A validated request: `rows` × model features, row-major, every value finite. The values
/// live in the matrix the model predicts from, so they are never copied after parsing.
#[derive(Debug, Clone)]
pub struct PredictInput {
    pub shape: Shape,
    pub rows: usize,
    x: Matrix,
}

impl PartialEq for PredictInput {
    fn eq(&self, other: &Self) -> bool {
        (self.shape, self.rows) == (other.shape, other.rows) && self.values() == other.values()
    }
}

impl PredictInput {
    pub(crate) fn new(shape: Shape, rows: usize, cols: usize, values: Vec<f64>) -> PredictInput {
        // The parser pushed exactly `cols` values per row, so the sizes always agree.
        let x = Matrix::new(rows, cols, values, false)
            .expect("the parser builds rows of the model's width");
        PredictInput { shape, rows, x }
    }

    /// The matrix the model predicts from.
    pub fn matrix(&self) -> &Matrix {
        &self.x
    }

    /// All values, row-major.
    pub fn values(&self) -> &[f64] {
        self.x.iter().as_slice()
    }

    /// The features of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        let cols = self.values().len() / self.rows.max(1);
        &self.values()[i * cols..(i + 1) * cols]
    }
}

/// The body `POST /predict` takes, for the API's documentation: the request is parsed by
/// [`parse_predict_body`] (which keeps duplicate keys to refuse them), not by this type.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct PredictRequest {
    features: Features,
}

/// One row or a batch, by position (the model's feature order) or by feature name.
#[derive(serde::Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
pub enum Features {
    /// One row: `[5.8, 2.7, 5.1, 1.9]`.
    Row(Vec<f64>),
    /// Rows: `[[5.8, 2.7, 5.1, 1.9], [5.1, 3.5, 1.4, 0.2]]`.
    Rows(Vec<Vec<f64>>),
    /// One row by name: `{"sepal_length": 5.8, ...}`.
    Named(std::collections::BTreeMap<String, f64>),
    /// Rows by name.
    NamedRows(Vec<std::collections::BTreeMap<String, f64>>),
}
