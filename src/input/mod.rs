//! Parsing and validation of prediction requests.
//!
//! A body is parsed once into a small JSON tree that, unlike `serde_json::Value`, keeps
//! duplicate keys (so `{"a": 1, "a": 2}` can be refused instead of silently taking the last) and
//! then checked against the model into a [`PredictInput`]: a row-major matrix of finite numbers
//! in the model's feature order. Every failure is an [`InputError`] whose message says what was
//! wrong and what was expected, naming features and positions; the HTTP layer maps it to a
//! status code.
//!
//! - [`error`]: [`InputError`] and its codes; [`rows`]: [`PredictInput`]; [`tree`]: the JSON
//!   tree and the limits it is read against.

pub mod error;
pub mod rows;
mod tree;

use std::cell::Cell;
use std::fmt;

pub(crate) use self::error::invalid;
pub use self::error::{InputCode, InputError};
pub use self::rows::{Features, PredictInput, PredictRequest, Shape};
use self::tree::{Limits, Node, Over, parse_tree};
use crate::model::Model;
use crate::text::quote;

/// Parses and validates a `/predict` body for `model`.
pub fn parse_predict_body(
    body: &[u8],
    model: &Model,
    max_batch: usize,
) -> Result<PredictInput, InputError> {
    let over = Cell::new(Over::No);
    // Past the model's features with room to spare, so that a row a little too long is
    // still counted exactly in its error; a row of thousands is refused at this point.
    let row_values = model.n_features() * 2 + 16;
    let limits = Limits {
        max_batch,
        row_values,
        over: &over,
    };
    let root = parse_tree(body, limits).map_err(|e| match over.get() {
        Over::No => json_error(&e, body),
        Over::Batch => InputError::BatchTooLarge { max: max_batch },
        Over::Row(at) => {
            let at = at.map_or(At::Features, At::Row);
            invalid(
                InputCode::WrongFeatureCount,
                format!("{at}: {}, got more than {row_values}", expected(model)),
            )
        }
    })?;
    let Node::Obj(fields) = root else {
        return Err(invalid(
            InputCode::InvalidBody,
            format!(
                "the body must be a JSON object like {{\"features\": [...]}}, got {}",
                root.kind()
            ),
        ));
    };
    let mut features = None;
    for (key, value) in fields {
        if key != "features" {
            return Err(invalid(
                InputCode::InvalidBody,
                format!(
                    "unknown field {}; the body takes only \"features\"",
                    quote(&key)
                ),
            ));
        }
        if features.replace(value).is_some() {
            return Err(invalid(
                InputCode::InvalidBody,
                "field \"features\" appears twice",
            ));
        }
    }
    let Some(features) = features else {
        return Err(invalid(
            InputCode::MissingFeatures,
            format!("the body has no \"features\" field; {}", expected(model)),
        ));
    };
    validate(features, model)
}

/// Where a value sits in the body, for messages: `features` or `features[i]`. Formatted only
/// when a message needs it, so a valid request allocates no location strings.
#[derive(Debug, Clone, Copy)]
enum At {
    Features,
    Row(usize),
}

impl fmt::Display for At {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            At::Features => f.write_str("features"),
            At::Row(i) => write!(f, "features[{i}]"),
        }
    }
}

fn validate(features: Node, model: &Model) -> Result<PredictInput, InputError> {
    let n = model.n_features();
    match features {
        Node::Arr(items) if items.is_empty() => Err(invalid(
            InputCode::EmptyFeatures,
            format!("\"features\" is empty; {}", expected(model)),
        )),
        Node::Arr(items) if matches!(items[0], Node::Arr(_) | Node::Obj(_)) => {
            let rows = items.len();
            let mut values = Vec::with_capacity(rows * n);
            let first_len = match &items[0] {
                Node::Arr(a) => Some(a.len()),
                _ => None,
            };
            for (i, item) in items.into_iter().enumerate() {
                let at = At::Row(i);
                match item {
                    Node::Arr(row) => {
                        if let Some(first) = first_len.filter(|&f| f != row.len() && i > 0) {
                            return Err(invalid(
                                InputCode::RaggedBatch,
                                format!(
                                    "{at} has {} values but features[0] has {first}; every row needs {n} ({})",
                                    row.len(),
                                    names(model)
                                ),
                            ));
                        }
                        push_row(&mut values, row, at, model)?;
                    }
                    Node::Obj(entries) => push_named(&mut values, entries, at, model)?,
                    other => {
                        return Err(invalid(
                            InputCode::InvalidFeature,
                            format!(
                                "{at} is {}, but a batch is a list of rows (lists or objects)",
                                other.kind()
                            ),
                        ));
                    }
                }
            }
            Ok(PredictInput::new(Shape::Batch, rows, n, values))
        }
        Node::Arr(row) => {
            let mut values = Vec::with_capacity(n);
            push_row(&mut values, row, At::Features, model)?;
            Ok(PredictInput::new(Shape::Single, 1, n, values))
        }
        Node::Obj(entries) => {
            let mut values = Vec::with_capacity(n);
            push_named(&mut values, entries, At::Features, model)?;
            Ok(PredictInput::new(Shape::Single, 1, n, values))
        }
        other => Err(invalid(
            InputCode::InvalidFeatures,
            format!(
                "\"features\" is {}; send a list of numbers, a list of rows, or an object of named features",
                other.kind()
            ),
        )),
    }
}

fn push_row(
    values: &mut Vec<f64>,
    row: Vec<Node>,
    at: At,
    model: &Model,
) -> Result<(), InputError> {
    let n = model.n_features();
    if row.is_empty() {
        return Err(invalid(
            InputCode::EmptyFeatures,
            format!("{at} is empty; {}", expected(model)),
        ));
    }
    if row.len() != n {
        return Err(invalid(
            InputCode::WrongFeatureCount,
            format!("{at}: {}, got {}", expected(model), row.len()),
        ));
    }
    for (j, cell) in row.into_iter().enumerate() {
        let feature = &model.artifact.feature_names[j];
        values.push(number(cell, || format!("{at}[{j}] ({feature})"))?);
    }
    Ok(())
}

fn push_named(
    values: &mut Vec<f64>,
    entries: Vec<(String, Node)>,
    at: At,
    model: &Model,
) -> Result<(), InputError> {
    let feature_names = &model.artifact.feature_names;
    let start = values.len();
    values.resize(start + feature_names.len(), f64::NAN);
    let mut seen = vec![false; feature_names.len()];
    for (key, cell) in entries {
        let Some(j) = feature_names.iter().position(|f| *f == key) else {
            return Err(invalid(
                InputCode::UnknownFeature,
                format!(
                    "{at} has unknown feature {}; model {} takes {}",
                    quote(&key),
                    model.name(),
                    names(model)
                ),
            ));
        };
        if std::mem::replace(&mut seen[j], true) {
            return Err(invalid(
                InputCode::DuplicateFeature,
                format!("{at} gives feature {key} twice"),
            ));
        }
        values[start + j] = number(cell, || format!("{at}.{key} ({key})"))?;
    }
    let missing: Vec<&str> = feature_names
        .iter()
        .zip(&seen)
        .filter(|(_, s)| !**s)
        .map(|(f, _)| f.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(invalid(
            InputCode::MissingFeature,
            format!("{at} lacks {}; {}", missing.join(", "), expected(model)),
        ));
    }
    Ok(())
}

/// A cell's number; `place` names the cell (`features[1] (sepal_width)`) for a message.
fn number(cell: Node, place: impl FnOnce() -> String) -> Result<f64, InputError> {
    match cell {
        Node::Num(v) if v.is_finite() => Ok(v),
        Node::Num(_) => Err(invalid(
            InputCode::NonFiniteFeature,
            format!("{} is not a finite number", place()),
        )),
        other => Err(invalid(
            InputCode::InvalidFeature,
            format!("{} must be a number, got {}", place(), other.kind()),
        )),
    }
}

fn names(model: &Model) -> String {
    model.artifact.feature_names.join(", ")
}

fn expected(model: &Model) -> String {
    format!(
        "expected {} features ({})",
        model.n_features(),
        names(model)
    )
}

/// Maps a JSON syntax error to the client's error. NaN and Infinity (which Python's json module
/// writes) and numbers beyond f64 are reported as non-finite features, not as bad JSON.
fn json_error(e: &serde_json::Error, body: &[u8]) -> InputError {
    use serde_json::error::Category;
    let msg = e.to_string();
    if msg.starts_with("number out of range") {
        return invalid(
            InputCode::NonFiniteFeature,
            format!("a number is too large for a 64-bit float ({msg})"),
        );
    }
    if matches!(e.classify(), Category::Syntax) && near_non_finite_token(e, body) {
        return invalid(
            InputCode::NonFiniteFeature,
            "features contain NaN or Infinity, which JSON cannot carry; send finite numbers",
        );
    }
    match e.classify() {
        Category::Eof if body.iter().all(u8::is_ascii_whitespace) => InputError::MalformedJson(
            "request body is empty; send {\"features\": [...]}".to_string(),
        ),
        Category::Data => invalid(InputCode::InvalidBody, msg),
        _ => InputError::MalformedJson(format!("request body is not valid JSON: {msg}")),
    }
}

/// Whether a JSON error sits at `NaN` or `Infinity` in `body` (tokens JSON does not have,
/// which Python's json module writes for non-finite floats).
pub(crate) fn near_non_finite_token(e: &serde_json::Error, body: &[u8]) -> bool {
    // Byte offset of the error position: start of line `e.line()` plus `e.column()`.
    let mut offset = 0;
    for _ in 1..e.line() {
        match body[offset..].iter().position(|&b| b == b'\n') {
            Some(p) => offset += p + 1,
            None => break,
        }
    }
    offset = (offset + e.column()).min(body.len());
    let window = &body[offset.saturating_sub(10)..(offset + 10).min(body.len())];
    [&b"NaN"[..], b"Infinity", b"nan", b"inf"]
        .iter()
        .any(|t| window.windows(t.len()).any(|w| w == *t))
}

#[cfg(test)]
mod tests;
