//! Parsing and validation of prediction requests.
//!
//! A body is parsed once into a small JSON tree that, unlike `serde_json::Value`, keeps
//! duplicate keys (so `{"a": 1, "a": 2}` can be refused instead of silently taking the last) and
//! then checked against the model into a [`PredictInput`]: a row-major matrix of finite numbers
//! in the model's feature order. Every failure is an [`ApiError`] whose message says what was
//! wrong and what was expected, naming features and positions.

use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::error::ApiError;
use crate::model::Model;

/// Whether the client sent one row or a list of rows. Both are answered with lists of
/// predictions (`{"prediction": [2]}` for one row, as the tutorial's clients expect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Single,
    Batch,
}

/// A validated request: `rows` × model features, row-major, every value finite.
#[derive(Debug, Clone, PartialEq)]
pub struct PredictInput {
    pub shape: Shape,
    pub rows: usize,
    pub values: Vec<f64>,
}

impl PredictInput {
    /// The features of row `i`.
    pub fn row(&self, i: usize) -> &[f64] {
        let cols = self.values.len() / self.rows.max(1);
        &self.values[i * cols..(i + 1) * cols]
    }
}

/// A JSON value as far as validation cares.
#[derive(Debug, Clone, PartialEq)]
enum Node {
    Null,
    Bool,
    Num(f64),
    Str,
    Arr(Vec<Node>),
    Obj(Vec<(String, Node)>),
}

impl Node {
    fn kind(&self) -> &'static str {
        match self {
            Node::Null => "null",
            Node::Bool => "a boolean",
            Node::Num(_) => "a number",
            Node::Str => "a string",
            Node::Arr(_) => "a list",
            Node::Obj(_) => "an object",
        }
    }
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Node, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_unit<E>(self) -> Result<Node, E> {
        Ok(Node::Null)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Node, E> {
        Ok(Node::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
        Ok(Node::Num(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Node, E> {
        Ok(Node::Num(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
        Ok(Node::Num(v))
    }
    fn visit_str<E>(self, _: &str) -> Result<Node, E> {
        Ok(Node::Str)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(4096));
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Node::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Node>()? {
            entries.push((k, v));
        }
        Ok(Node::Obj(entries))
    }
}

/// Parses and validates a `/predict` body for `model`.
pub fn parse_predict_body(
    body: &[u8],
    model: &Model,
    max_batch: usize,
) -> Result<PredictInput, ApiError> {
    let root: Node = serde_json::from_slice(body).map_err(|e| json_error(&e, body))?;
    let Node::Obj(fields) = root else {
        return Err(ApiError::invalid(
            "invalid_body",
            format!(
                "the body must be a JSON object like {{\"features\": [...]}}, got {}",
                root.kind()
            ),
        ));
    };
    let mut features = None;
    for (key, value) in fields {
        if key != "features" {
            return Err(ApiError::invalid(
                "invalid_body",
                format!(
                    "unknown field {}; the body takes only \"features\"",
                    quote(&key)
                ),
            ));
        }
        if features.replace(value).is_some() {
            return Err(ApiError::invalid(
                "invalid_body",
                "field \"features\" appears twice",
            ));
        }
    }
    let Some(features) = features else {
        return Err(ApiError::invalid(
            "missing_features",
            format!("the body has no \"features\" field; {}", expected(model)),
        ));
    };
    validate(features, model, max_batch)
}

fn validate(features: Node, model: &Model, max_batch: usize) -> Result<PredictInput, ApiError> {
    let n = model.n_features();
    match features {
        Node::Arr(items) if items.is_empty() => Err(ApiError::invalid(
            "empty_features",
            format!("\"features\" is empty; {}", expected(model)),
        )),
        Node::Arr(items) if matches!(items[0], Node::Arr(_) | Node::Obj(_)) => {
            if items.len() > max_batch {
                return Err(ApiError::BatchTooLarge {
                    rows: items.len(),
                    max: max_batch,
                });
            }
            let rows = items.len();
            let mut values = Vec::with_capacity(rows * n);
            let first_len = match &items[0] {
                Node::Arr(a) => Some(a.len()),
                _ => None,
            };
            for (i, item) in items.into_iter().enumerate() {
                let at = format!("features[{i}]");
                match item {
                    Node::Arr(row) => {
                        if let Some(first) = first_len.filter(|&f| f != row.len() && i > 0) {
                            return Err(ApiError::invalid(
                                "ragged_batch",
                                format!(
                                    "{at} has {} values but features[0] has {first}; every row needs {n} ({})",
                                    row.len(),
                                    names(model)
                                ),
                            ));
                        }
                        push_row(&mut values, row, &at, model)?;
                    }
                    Node::Obj(entries) => push_named(&mut values, entries, &at, model)?,
                    other => {
                        return Err(ApiError::invalid(
                            "invalid_feature",
                            format!(
                                "{at} is {}, but a batch is a list of rows (lists or objects)",
                                other.kind()
                            ),
                        ));
                    }
                }
            }
            Ok(PredictInput {
                shape: Shape::Batch,
                rows,
                values,
            })
        }
        Node::Arr(row) => {
            let mut values = Vec::with_capacity(n);
            push_row(&mut values, row, "features", model)?;
            Ok(PredictInput {
                shape: Shape::Single,
                rows: 1,
                values,
            })
        }
        Node::Obj(entries) => {
            let mut values = Vec::with_capacity(n);
            push_named(&mut values, entries, "features", model)?;
            Ok(PredictInput {
                shape: Shape::Single,
                rows: 1,
                values,
            })
        }
        other => Err(ApiError::invalid(
            "invalid_features",
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
    at: &str,
    model: &Model,
) -> Result<(), ApiError> {
    let n = model.n_features();
    if row.is_empty() {
        return Err(ApiError::invalid(
            "empty_features",
            format!("{at} is empty; {}", expected(model)),
        ));
    }
    if row.len() != n {
        return Err(ApiError::invalid(
            "wrong_feature_count",
            format!("{at}: {}, got {}", expected(model), row.len()),
        ));
    }
    for (j, cell) in row.into_iter().enumerate() {
        values.push(number(
            cell,
            &format!("{at}[{j}]"),
            &model.artifact.feature_names[j],
        )?);
    }
    Ok(())
}

fn push_named(
    values: &mut Vec<f64>,
    entries: Vec<(String, Node)>,
    at: &str,
    model: &Model,
) -> Result<(), ApiError> {
    let feature_names = &model.artifact.feature_names;
    let start = values.len();
    values.resize(start + feature_names.len(), f64::NAN);
    let mut seen = vec![false; feature_names.len()];
    for (key, cell) in entries {
        let Some(j) = feature_names.iter().position(|f| *f == key) else {
            return Err(ApiError::invalid(
                "unknown_feature",
                format!(
                    "{at} has unknown feature {}; model {} takes {}",
                    quote(&key),
                    model.name(),
                    names(model)
                ),
            ));
        };
        if std::mem::replace(&mut seen[j], true) {
            return Err(ApiError::invalid(
                "duplicate_feature",
                format!("{at} gives feature {key} twice"),
            ));
        }
        values[start + j] = number(cell, &format!("{at}.{key}"), &key)?;
    }
    let missing: Vec<&str> = feature_names
        .iter()
        .zip(&seen)
        .filter(|(_, s)| !**s)
        .map(|(f, _)| f.as_str())
        .collect();
    if !missing.is_empty() {
        return Err(ApiError::invalid(
            "missing_feature",
            format!("{at} lacks {}; {}", missing.join(", "), expected(model)),
        ));
    }
    Ok(())
}

fn number(cell: Node, at: &str, feature: &str) -> Result<f64, ApiError> {
    match cell {
        Node::Num(v) if v.is_finite() => Ok(v),
        Node::Num(_) => Err(ApiError::invalid(
            "non_finite_feature",
            format!("{at} ({feature}) is not a finite number"),
        )),
        other => Err(ApiError::invalid(
            "invalid_feature",
            format!("{at} ({feature}) must be a number, got {}", other.kind()),
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

/// Quotes client text for a message: escaped, and cut so a huge key cannot bloat errors/logs.
fn quote(s: &str) -> String {
    const MAX: usize = 64;
    if s.chars().count() > MAX {
        let cut: String = s.chars().take(MAX).collect();
        format!("{cut:?}…")
    } else {
        format!("{s:?}")
    }
}

/// Maps a JSON syntax error to the client's error. NaN and Infinity (which Python's json module
/// writes) and numbers beyond f64 are reported as non-finite features, not as bad JSON.
fn json_error(e: &serde_json::Error, body: &[u8]) -> ApiError {
    use serde_json::error::Category;
    let msg = e.to_string();
    if msg.starts_with("number out of range") {
        return ApiError::invalid(
            "non_finite_feature",
            format!("a number is too large for a 64-bit float ({msg})"),
        );
    }
    if matches!(e.classify(), Category::Syntax) && near_non_finite_token(e, body) {
        return ApiError::invalid(
            "non_finite_feature",
            "features contain NaN or Infinity, which JSON cannot carry; send finite numbers",
        );
    }
    match e.classify() {
        Category::Eof if body.iter().all(u8::is_ascii_whitespace) => {
            ApiError::MalformedJson("request body is empty; send {\"features\": [...]}".to_string())
        }
        Category::Data => ApiError::invalid("invalid_body", msg),
        _ => ApiError::MalformedJson(format!("request body is not valid JSON: {msg}")),
    }
}

fn near_non_finite_token(e: &serde_json::Error, body: &[u8]) -> bool {
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
mod tests {
    use super::*;

    #[test]
    fn keeps_duplicate_keys() {
        let n: Node = serde_json::from_str(r#"{"a": 1, "a": [true, null, "x"]}"#).unwrap();
        assert_eq!(
            n,
            Node::Obj(vec![
                ("a".into(), Node::Num(1.0)),
                (
                    "a".into(),
                    Node::Arr(vec![Node::Bool, Node::Null, Node::Str])
                ),
            ])
        );
    }

    #[test]
    fn quote_escapes_and_cuts() {
        assert_eq!(quote("a\nb"), "\"a\\nb\"");
        assert!(quote(&"x".repeat(500)).len() < 80);
    }
}
