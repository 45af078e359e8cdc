//! Parsing and validation of prediction requests.
//!
//! A body is parsed once into a small JSON tree that, unlike `serde_json::Value`, keeps
//! duplicate keys (so `{"a": 1, "a": 2}` can be refused instead of silently taking the last) and
//! then checked against the model into a [`PredictInput`]: a row-major matrix of finite numbers
//! in the model's feature order. Every failure is an [`InputError`] whose message says what was
//! wrong and what was expected, naming features and positions; the HTTP layer maps it to a
//! status code.

use std::fmt;

use std::cell::Cell;

use serde::de::{Deserialize, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};

use crate::model::{Matrix, Model};
use crate::text::quote;

/// Why a body was refused. Each variant is one stable error code of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputCode {
    /// Not a JSON object with only a `features` field.
    InvalidBody,
    MissingFeatures,
    EmptyFeatures,
    /// `features` is neither a list nor an object.
    InvalidFeatures,
    /// A cell or row is not a number or a row.
    InvalidFeature,
    NonFiniteFeature,
    WrongFeatureCount,
    RaggedBatch,
    UnknownFeature,
    DuplicateFeature,
    MissingFeature,
    /// Open Inference Protocol: a tensor whose shape, data or name cannot be used.
    InvalidTensor,
    /// Open Inference Protocol: a tensor datatype other than FP32 or FP64.
    UnsupportedDatatype,
    /// Open Inference Protocol: binary tensor data (Triton's extension), not supported.
    BinaryData,
    /// Open Inference Protocol: an output the model does not have.
    UnknownOutput,
}

impl InputCode {
    pub fn as_str(self) -> &'static str {
        match self {
            InputCode::InvalidBody => "invalid_body",
            InputCode::MissingFeatures => "missing_features",
            InputCode::EmptyFeatures => "empty_features",
            InputCode::InvalidFeatures => "invalid_features",
            InputCode::InvalidFeature => "invalid_feature",
            InputCode::NonFiniteFeature => "non_finite_feature",
            InputCode::WrongFeatureCount => "wrong_feature_count",
            InputCode::RaggedBatch => "ragged_batch",
            InputCode::UnknownFeature => "unknown_feature",
            InputCode::DuplicateFeature => "duplicate_feature",
            InputCode::MissingFeature => "missing_feature",
            InputCode::InvalidTensor => "invalid_tensor",
            InputCode::UnsupportedDatatype => "unsupported_datatype",
            InputCode::BinaryData => "binary_data_unsupported",
            InputCode::UnknownOutput => "unknown_output",
        }
    }
}

/// A `/predict` body that cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InputError {
    /// The body is not JSON at all (syntax error, truncated, invalid UTF-8, empty).
    #[error("{0}")]
    MalformedJson(String),

    /// JSON, but not a valid request: wrong shape, types, feature names or counts.
    #[error("{message}")]
    Invalid { code: InputCode, message: String },

    /// Found while parsing: the rows after the limit are not read.
    #[error("batch has more than {max} rows, the limit; split it into smaller batches")]
    BatchTooLarge { max: usize },
}

pub(crate) fn invalid(code: InputCode, message: impl Into<String>) -> InputError {
    InputError::Invalid {
        code,
        message: message.into(),
    }
}

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

/// The visits of JSON scalars, the same for every visitor that builds a [`Node`].
macro_rules! scalar_visits {
    () => {
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
    };
}

struct NodeVisitor;

impl<'de> Visitor<'de> for NodeVisitor {
    type Value = Node;

    scalar_visits!();
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

/// What ended a parse early: a limit passed, before the rest of the body was read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    /// Within the limits (an error, if any, is the body's own).
    No,
    /// `features` holds more than `max_batch` rows.
    Batch,
    /// A row holds more values than the model has features: `features` itself (one row), or
    /// its row `i`.
    Row(Option<usize>),
}

/// The limits a body is read against, and what passed one.
#[derive(Clone, Copy)]
struct Limits<'a> {
    max_batch: usize,
    /// Values a row may hold before the parse stops (validation counts the exact number).
    row_values: usize,
    over: &'a Cell<Over>,
}

impl Limits<'_> {
    fn passed<E: serde::de::Error>(&self, over: Over) -> E {
        self.over.set(over);
        E::custom("over a limit")
    }
}

/// Parses `body` into a tree, stopping as soon as `features` holds more than `max_batch` rows
/// or a row more than `row_values` values: a body of 300,000 empty rows, or of one row of
/// 500,000 numbers, costs no more than one just over the limit. `over` tells such an end from
/// a syntax error.
fn parse_tree(body: &[u8], limits: Limits<'_>) -> Result<Node, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let root = BodySeed(limits).deserialize(&mut de)?;
    de.end()?;
    Ok(root)
}

/// The whole body: like [`Node`], except that the value of a top-level `features` field is
/// read with [`FeaturesSeed`].
struct BodySeed<'a>(Limits<'a>);

impl<'de> DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Node;

    scalar_visits!();
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Node, A::Error> {
        NodeVisitor.visit_seq(seq)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = if key == "features" {
                map.next_value_seed(FeaturesSeed(self.0))?
            } else {
                map.next_value::<Node>()?
            };
            entries.push((key, value));
        }
        Ok(Node::Obj(entries))
    }
}

/// The value of `features`: a [`Node`], but a list of rows ends with an error (flagged in
/// `over`) at its `max_batch + 1`-th row, and a row at its `row_values + 1`-th value, before
/// the rest is read.
struct FeaturesSeed<'a>(Limits<'a>);

impl<'de> DeserializeSeed<'de> for FeaturesSeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FeaturesSeed<'_> {
    type Value = Node;

    scalar_visits!();
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Node, A::Error> {
        RowSeed(self.0, None).visit_map(map)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let limits = self.0;
        let mut items: Vec<Node> = Vec::with_capacity(seq.size_hint().unwrap_or(4).min(4096));
        let mut scalars = 0usize;
        while let Some(item) = seq.next_element_seed(RowSeed(limits, Some(items.len())))? {
            // Only a list of rows is a batch; a list of numbers is one row.
            if matches!(item, Node::Arr(_) | Node::Obj(_)) {
                if items.len() >= limits.max_batch {
                    return Err(limits.passed(Over::Batch));
                }
            } else {
                scalars += 1;
                if scalars > limits.row_values {
                    return Err(limits.passed(Over::Row(None)));
                }
            }
            items.push(item);
        }
        Ok(Node::Arr(items))
    }
}

/// One element of `features`: a row (a list or an object) ends with an error at its
/// `row_values + 1`-th value; `at` is its index in `features` (`None`: `features` itself).
struct RowSeed<'a>(Limits<'a>, Option<usize>);

impl<'de> DeserializeSeed<'de> for RowSeed<'_> {
    type Value = Node;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for RowSeed<'_> {
    type Value = Node;

    scalar_visits!();
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
        let mut items = Vec::with_capacity(self.0.row_values.min(4096));
        while let Some(item) = seq.next_element()? {
            if items.len() >= self.0.row_values {
                return Err(self.0.passed(Over::Row(self.1)));
            }
            items.push(item);
        }
        Ok(Node::Arr(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
        let mut entries = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, Node>()? {
            if entries.len() >= self.0.row_values {
                return Err(self.0.passed(Over::Row(self.1)));
            }
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
    use crate::model::Artifact;

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

    fn iris() -> &'static Model {
        static MODEL: std::sync::OnceLock<Model> = std::sync::OnceLock::new();
        MODEL.get_or_init(|| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json");
            Model::new(Artifact::load(&path).unwrap(), path)
        })
    }

    #[test]
    fn parses_single_rows_batches_and_named_features() {
        let single = parse_predict_body(br#"{"features": [5.8, 2.7, 5.1, 1.9]}"#, iris(), 10);
        let single = single.unwrap();
        assert_eq!((single.shape, single.rows), (Shape::Single, 1));
        assert_eq!(single.values(), [5.8, 2.7, 5.1, 1.9]);
        let named = br#"{"features": [{"petal_width": 1.9, "petal_length": 5.1, "sepal_width": 2.7, "sepal_length": 5.8}, [1, 2, 3, 4]]}"#;
        let batch = parse_predict_body(named, iris(), 10).unwrap();
        assert_eq!((batch.shape, batch.rows), (Shape::Batch, 2));
        assert_eq!(batch.row(0), [5.8, 2.7, 5.1, 1.9]);
        assert_eq!(batch.row(1), [1.0, 2.0, 3.0, 4.0]);
    }

    /// What a refused body is: not JSON (400), JSON but invalid (422, with its code), or a
    /// batch over the limit (413). The HTTP layer maps these kinds to those statuses.
    fn kind_and_code(e: &InputError) -> (u16, &'static str) {
        match e {
            InputError::MalformedJson(_) => (400, "malformed_json"),
            InputError::Invalid { code, .. } => (422, code.as_str()),
            InputError::BatchTooLarge { .. } => (413, "batch_too_large"),
        }
    }

    /// Parses `body` for the iris model and checks the kind, the code and a message fragment.
    fn check(body: &[u8], status: u16, code: &str, message_part: &str) {
        let e = parse_predict_body(body, iris(), 1000).expect_err("the body must be refused");
        assert_eq!(
            kind_and_code(&e),
            (status, code),
            "body {:?}: {e}",
            String::from_utf8_lossy(body)
        );
        let message = e.to_string();
        assert!(
            message.contains(message_part),
            "message {message:?} lacks {message_part:?}"
        );
    }

    macro_rules! rejects {
        ($($name:ident: $body:expr => $status:expr, $code:expr, $part:expr;)*) => {
            $(
                #[test]
                fn $name() {
                    check($body.as_ref(), $status, $code, $part);
                }
            )*
        };
    }

    rejects! {
        rejects_too_few_features_with_422: br#"{"features": [5.8, 2.7]}"#
            => 422, "wrong_feature_count",
            "expected 4 features (sepal_length, sepal_width, petal_length, petal_width), got 2";
        rejects_too_many_features_with_422: br#"{"features": [5.8, 2.7, 1, 2, 3]}"#
            => 422, "wrong_feature_count", "got 5";
        rejects_empty_feature_list_with_422: br#"{"features": []}"#
            => 422, "empty_features", "expected 4 features";
        rejects_empty_row_in_batch_with_422: br#"{"features": [[]]}"#
            => 422, "empty_features", "features[0]";
        rejects_ragged_batch_with_422: br#"{"features": [[5.8, 2.7, 5.1, 1.9], [5.8, 2.7, 5.1]]}"#
            => 422, "ragged_batch", "features[1] has 3 values";
        rejects_string_feature_with_422: br#"{"features": [5.8, "2.7", 5.1, 1.9]}"#
            => 422, "invalid_feature", "features[1] (sepal_width) must be a number, got a string";
        rejects_boolean_feature_with_422: br#"{"features": [true, 2.7, 5.1, 1.9]}"#
            => 422, "invalid_feature", "got a boolean";
        rejects_null_feature_with_422: br#"{"features": [5.8, 2.7, null, 1.9]}"#
            => 422, "invalid_feature", "got null";
        rejects_nested_object_feature_with_422: br#"{"features": [5.8, 2.7, {"a": 1}, 1.9]}"#
            => 422, "invalid_feature", "got an object";
        rejects_null_features_with_422: br#"{"features": null}"#
            => 422, "invalid_features", "is null";
        rejects_number_as_features_with_422: br#"{"features": 5.8}"#
            => 422, "invalid_features", "is a number";
        rejects_nan_token_with_422: br#"{"features": [5.8, NaN, 5.1, 1.9]}"#
            => 422, "non_finite_feature", "NaN or Infinity";
        rejects_infinity_token_with_422: br#"{"features": [5.8, Infinity, 5.1, 1.9]}"#
            => 422, "non_finite_feature", "NaN or Infinity";
        rejects_negative_infinity_token_with_422: br#"{"features": [-Infinity, 2.7, 5.1, 1.9]}"#
            => 422, "non_finite_feature", "NaN or Infinity";
        rejects_number_overflowing_f64_with_422: br#"{"features": [5.8, 1e400, 5.1, 1.9]}"#
            => 422, "non_finite_feature", "too large";
        rejects_negative_overflow_with_422: br#"{"features": [5.8, -1e309, 5.1, 1.9]}"#
            => 422, "non_finite_feature", "too large";
        rejects_unknown_named_feature_with_422:
            br#"{"features": {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1, "petal_width": 1.9, "colour": 1}}"#
            => 422, "unknown_feature", "unknown feature \"colour\"";
        rejects_missing_named_feature_with_422:
            br#"{"features": {"sepal_length": 5.8, "sepal_width": 2.7, "petal_length": 5.1}}"#
            => 422, "missing_feature", "lacks petal_width";
        rejects_duplicate_named_feature_with_422:
            br#"{"features": {"sepal_length": 5.8, "sepal_length": 2.7, "petal_length": 5.1, "petal_width": 1.9}}"#
            => 422, "duplicate_feature", "sepal_length twice";
        rejects_duplicate_features_field_with_422:
            br#"{"features": [5.8, 2.7, 5.1, 1.9], "features": [1, 2, 3, 4]}"#
            => 422, "invalid_body", "appears twice";
        rejects_unknown_top_level_field_with_422: br#"{"features": [5.8, 2.7, 5.1, 1.9], "feature": 1}"#
            => 422, "invalid_body", "unknown field \"feature\"";
        rejects_missing_features_field_with_422: br#"{}"#
            => 422, "missing_features", "no \"features\" field";
        rejects_array_body_with_422: br#"[5.8, 2.7, 5.1, 1.9]"#
            => 422, "invalid_body", "must be a JSON object";
        rejects_malformed_json_with_400: br#"{"features": [5.8, 2.7,, 5.1]}"#
            => 400, "malformed_json", "not valid JSON";
        rejects_truncated_json_with_400: br#"{"features": [5.8, 2.7, 5.1"#
            => 400, "malformed_json", "not valid JSON";
        rejects_trailing_garbage_with_400: br#"{"features": [5.8, 2.7, 5.1, 1.9]} xyz"#
            => 400, "malformed_json", "not valid JSON";
        rejects_empty_body_with_400: b"" => 400, "malformed_json", "empty";
        rejects_invalid_utf8_with_400: b"{\"features\": [5.8, 2.7, 5.1, 1.9], \"\xff\xfe\": 1}"
            => 400, "malformed_json", "not valid JSON";
        rejects_deep_nesting_with_400: {
            let mut b = b"{\"features\": ".to_vec();
            b.extend(std::iter::repeat_n(b'[', 100_000));
            b.extend(std::iter::repeat_n(b']', 100_000));
            b.push(b'}');
            b
        } => 400, "malformed_json", "recursion limit";
    }

    #[test]
    fn a_batch_over_the_limit_is_refused_before_its_rows_are_read() {
        let rows = ["[1, 2, 3, 4]"; 6].join(",");
        let e = parse_predict_body(format!(r#"{{"features": [{rows}]}}"#).as_bytes(), iris(), 5)
            .unwrap_err();
        assert_eq!(e, InputError::BatchTooLarge { max: 5 });
        assert!(e.to_string().contains("more than 5 rows"));
    }

    #[test]
    fn parsing_stops_at_the_first_row_over_the_limit() {
        // Six rows, then a body that is not JSON at all: the limit is found before the tail
        // is read (a body parsed completely would be a 400 for the tail instead).
        let rows = ["[1, 2, 3, 4]"; 6].join(",");
        let body = format!(r#"{{"features": [{rows}, [1, 2, oops"#);
        let e = parse_predict_body(body.as_bytes(), iris(), 5).unwrap_err();
        assert_eq!(e, InputError::BatchTooLarge { max: 5 });
        // A long list of numbers is one row, not a batch: its length is checked as a row.
        let long = vec!["1"; 20].join(",");
        let e = parse_predict_body(format!(r#"{{"features": [{long}]}}"#).as_bytes(), iris(), 5)
            .unwrap_err();
        assert_eq!(kind_and_code(&e), (422, "wrong_feature_count"));
        assert!(e.to_string().contains("got 20"), "{e}");
    }

    #[test]
    fn a_huge_row_is_refused_once_past_its_bound_before_the_rest_is_read() {
        // 500,000 numbers, then a tail that is not JSON: refused as too long a row, not as
        // bad JSON, so the parse stopped before the tail. Flat, as a row of a batch, and as
        // an object row.
        let numbers = vec!["1.5"; 500_000].join(",");
        let bodies = [
            (format!(r#"{{"features": [{numbers}, oops"#), "features: "),
            (
                format!(r#"{{"features": [[1, 2, 3, 4], [{numbers}, oops"#),
                "features[1]: ",
            ),
        ];
        for (body, at) in &bodies {
            let e = parse_predict_body(body.as_bytes(), iris(), 100).unwrap_err();
            assert_eq!(kind_and_code(&e), (422, "wrong_feature_count"), "{e}");
            assert!(
                e.to_string().starts_with(at) && e.to_string().contains("got more than 24"),
                "{e}"
            );
        }
        let keys: Vec<String> = (0..1000).map(|i| format!(r#""k{i}": 1"#)).collect();
        let body = format!(r#"{{"features": {{{}, oops"#, keys.join(","));
        let e = parse_predict_body(body.as_bytes(), iris(), 100).unwrap_err();
        assert_eq!(kind_and_code(&e), (422, "wrong_feature_count"), "{e}");
    }
}
