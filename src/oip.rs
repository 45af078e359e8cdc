//! The Open Inference Protocol ("v2", REST), as KServe, Triton and Seldon MLServer speak it:
//! an inference request parsed and validated into the same [`PredictInput`] `/predict` makes,
//! and the protocol's answers built from a [`Prediction`] and a [`Model`].
//!
//! A request's features come as one `[N, F]` tensor (any name) or as one `[N]` tensor per
//! feature, named after the model's features; FP32 or FP64; `data` flat (row-major) or nested.
//! The answer has two outputs, `prediction` (INT64 class indices) and `label` (BYTES class
//! names), or those the request's `outputs` names. Binary tensor data (Triton's extension) is
//! refused; a request for binary outputs is answered in JSON, which clients read as well.
//! Unknown `parameters` are ignored.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::input::{InputCode, InputError, PredictInput, Shape, invalid};
use crate::model::Model;
use crate::prediction::Prediction;
use crate::text::quote;

/// Longest request `id` kept (it is stored as the client's request id).
const MAX_ID_LEN: usize = 128;

/// The request header that announces binary tensor data after the JSON.
pub const BINARY_HEADER: &str = "inference-header-content-length";

/// An output of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Class indices, INT64.
    Prediction,
    /// Class names, BYTES.
    Label,
}

impl Output {
    const ALL: [Output; 2] = [Output::Prediction, Output::Label];

    fn name(self) -> &'static str {
        match self {
            Output::Prediction => "prediction",
            Output::Label => "label",
        }
    }

    fn datatype(self) -> &'static str {
        match self {
            Output::Prediction => "INT64",
            Output::Label => "BYTES",
        }
    }
}

/// A validated inference request.
#[derive(Debug)]
pub struct InferRequest {
    /// The client's id of the request, echoed in the answer.
    pub id: Option<String>,
    /// The outputs to answer, in the order asked for.
    pub outputs: Vec<Output>,
    pub input: PredictInput,
}

/// An inference request as it is read (then checked by [`parse_infer`]).
#[derive(Deserialize, ToSchema)]
#[schema(as = InferRequestBody)]
pub struct RawRequest {
    /// The client's id of the request: echoed, and kept as its client request id.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    id: Option<Value>,
    /// Ignored (clients send `binary_data_output`, `priority`, …).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    #[allow(dead_code)]
    parameters: Option<Value>,
    /// One `[N, F]` tensor, or one `[N]` tensor per feature.
    #[serde(default)]
    #[schema(required = true, min_items = 1)]
    inputs: Option<Vec<RawTensor>>,
    /// The outputs to answer (default: all).
    #[serde(default)]
    outputs: Option<Vec<RawOutput>>,
}

/// An input tensor.
#[derive(Deserialize, ToSchema)]
#[schema(as = InputTensor)]
pub struct RawTensor {
    name: String,
    shape: Vec<i64>,
    /// `FP32` or `FP64`.
    datatype: String,
    /// `binary_data_size` (binary data) is refused.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    parameters: Option<Map<String, Value>>,
    /// Numbers, flat (row-major) or nested.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    data: Option<TensorData>,
}

/// A tensor's `data`, read with a bound on the values of the whole request (see
/// [`ValueBudget`]): a body of 500,000 numbers stops at the first value past what the model
/// could take, before the rest is read.
pub struct TensorData(Value);

/// How many more values the request being parsed on this thread may hold, while
/// [`parse_infer`] parses one; `None` outside it. Serde's derived structs take no state, so
/// the bound rides on the thread: parsing is synchronous, nothing else runs on it meanwhile.
struct ValueBudget;

thread_local! {
    static VALUES_LEFT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    static VALUES_OVER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl ValueBudget {
    /// Sets the bound for the parse that follows; cleared when the guard is dropped.
    fn set(values: usize) -> impl Drop {
        struct Clear;
        impl Drop for Clear {
            fn drop(&mut self) {
                VALUES_LEFT.with(|v| v.set(None));
                VALUES_OVER.with(|v| v.set(false));
            }
        }
        VALUES_LEFT.with(|v| v.set(Some(values)));
        VALUES_OVER.with(|v| v.set(false));
        Clear
    }

    /// Counts one value; `false` once the bound is passed.
    fn take() -> bool {
        VALUES_LEFT.with(|v| match v.get() {
            None => true,
            Some(0) => {
                VALUES_OVER.with(|o| o.set(true));
                false
            }
            Some(n) => {
                v.set(Some(n - 1));
                true
            }
        })
    }

    fn passed() -> bool {
        VALUES_OVER.with(|o| o.get())
    }
}

impl<'de> Deserialize<'de> for TensorData {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TensorData, D::Error> {
        d.deserialize_any(DataVisitor).map(TensorData)
    }
}

/// Builds the JSON value of tensor data, counting each scalar against [`ValueBudget`].
#[derive(Clone, Copy)]
struct DataVisitor;

impl DataVisitor {
    fn scalar<E: serde::de::Error>(v: Value) -> Result<Value, E> {
        if ValueBudget::take() {
            Ok(v)
        } else {
            Err(E::custom("tensor data over the request's bound"))
        }
    }
}

impl<'de> serde::de::DeserializeSeed<'de> for DataVisitor {
    type Value = Value;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DataVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("tensor data")
    }
    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        Self::scalar(Value::Null)
    }
    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        Self::scalar(Value::Bool(v))
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        Self::scalar(Value::from(v))
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        Self::scalar(Value::from(v))
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        Self::scalar(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        Self::scalar(Value::String(v.to_string()))
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(self)? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// An output asked for.
#[derive(Deserialize, ToSchema)]
#[schema(as = RequestedOutput)]
pub struct RawOutput {
    /// `prediction` or `label`.
    name: String,
    /// Ignored (`binary_data`: outputs are always JSON).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    #[allow(dead_code)]
    parameters: Option<Value>,
}

/// Parses and validates an inference request for `model`.
pub fn parse_infer(
    body: &[u8],
    model: &Model,
    max_batch: usize,
) -> Result<InferRequest, InputError> {
    // No request the model can take holds more values than this.
    let most = max_batch.saturating_mul(model.n_features()).max(1);
    let budget = ValueBudget::set(most);
    let parsed = serde_json::from_slice::<RawRequest>(body);
    let over = ValueBudget::passed();
    drop(budget);
    if over {
        return Err(invalid(
            InputCode::InvalidTensor,
            format!(
                "the input tensors hold more than {most} values; the model takes at most {max_batch} rows of {} features",
                model.n_features()
            ),
        ));
    }
    let raw = parsed.map_err(|e| match e.classify() {
        serde_json::error::Category::Data => invalid(
            InputCode::InvalidBody,
            format!("not an inference request: {e}"),
        ),
        _ => InputError::MalformedJson(format!("the body is not valid JSON: {e}")),
    })?;
    let id = match raw.id {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.len() <= MAX_ID_LEN && !s.chars().any(char::is_control) => {
            Some(s)
        }
        Some(Value::String(_)) => {
            return Err(invalid(
                InputCode::InvalidBody,
                format!("\"id\" must be at most {MAX_ID_LEN} bytes, without control characters"),
            ));
        }
        Some(other) => {
            return Err(invalid(
                InputCode::InvalidBody,
                format!("\"id\" must be a string, got {}", kind(&other)),
            ));
        }
    };
    let outputs = match raw.outputs {
        None => Output::ALL.to_vec(),
        Some(list) => {
            let mut outputs = Vec::with_capacity(list.len());
            for o in list {
                let output = Output::ALL
                    .into_iter()
                    .find(|k| k.name() == o.name)
                    .ok_or_else(|| {
                        invalid(
                            InputCode::UnknownOutput,
                            format!(
                                "unknown output {}; the model's outputs are \"prediction\" and \"label\"",
                                quote(&o.name)
                            ),
                        )
                    })?;
                if !outputs.contains(&output) {
                    outputs.push(output);
                }
            }
            outputs
        }
    };
    let inputs = raw.inputs.unwrap_or_default();
    if inputs.is_empty() {
        return Err(invalid(
            InputCode::MissingFeatures,
            format!("the request has no \"inputs\"; {}", expected(model)),
        ));
    }
    let input = tensors(inputs, model, max_batch)?;
    Ok(InferRequest { id, outputs, input })
}

/// What a request's inputs must look like, for messages.
fn expected(model: &Model) -> String {
    format!(
        "send one numeric tensor (FP64, FP32, FP16 or an INT/UINT type) of shape [N, {}] or one [N] tensor per feature ({})",
        model.n_features(),
        model.artifact.feature_names.join(", ")
    )
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The rows of `inputs`: one `[N, F]` tensor, or one `[N]` (or `[N, 1]`) tensor per feature.
fn tensors(
    inputs: Vec<RawTensor>,
    model: &Model,
    max_batch: usize,
) -> Result<PredictInput, InputError> {
    let cols = model.n_features();
    for t in &inputs {
        let binary = t.parameters.as_ref().is_some_and(|p| {
            p.contains_key("binary_data_size") || p.contains_key("shared_memory_region")
        });
        if binary {
            return Err(binary_refused());
        }
        if !NUMERIC_DATATYPES.contains(&t.datatype.as_str()) {
            return Err(invalid(
                InputCode::UnsupportedDatatype,
                format!(
                    "input {} has datatype {}; the model takes numbers: FP64, FP32, FP16, \
                     INT8, INT16, INT32, INT64, UINT8, UINT16, UINT32 or UINT64",
                    quote(&t.name),
                    quote(&t.datatype)
                ),
            ));
        }
        if t.shape.iter().any(|&d| d < 0) {
            return Err(invalid(
                InputCode::InvalidTensor,
                format!(
                    "input {} has a negative dimension in its shape",
                    quote(&t.name)
                ),
            ));
        }
    }
    let rows_of = |t: &RawTensor| -> Option<usize> { t.shape.first().map(|&n| n as usize) };
    // One `[N, F]` tensor, else one tensor per feature.
    let per_feature =
        !(inputs.len() == 1 && matches!(inputs[0].shape.as_slice(), [_, f] if *f as usize == cols));
    let rows = if per_feature {
        let n = rows_of(&inputs[0]).unwrap_or(0);
        if inputs.len() != cols {
            let got = match inputs.as_slice() {
                [t] => format!("input {} has shape {:?}", quote(&t.name), t.shape),
                _ => format!("{} input tensors", inputs.len()),
            };
            return Err(invalid(
                InputCode::InvalidTensor,
                format!("{got}; {}", expected(model)),
            ));
        }
        for t in &inputs {
            let column = matches!(t.shape.as_slice(), [_] | [_, 1]);
            if !column || rows_of(t) != Some(n) {
                return Err(invalid(
                    InputCode::InvalidTensor,
                    format!(
                        "input {} has shape {:?}; with one tensor per feature each is [N] with the same N",
                        quote(&t.name),
                        t.shape
                    ),
                ));
            }
        }
        n
    } else {
        rows_of(&inputs[0]).unwrap_or(0)
    };
    if rows == 0 {
        return Err(invalid(
            InputCode::EmptyFeatures,
            "the input tensors have no rows (N is 0)",
        ));
    }
    if rows > max_batch {
        return Err(InputError::BatchTooLarge { max: max_batch });
    }
    let mut values = vec![0.0; rows * cols];
    if per_feature {
        let mut seen = vec![false; cols];
        for t in &inputs {
            let Some(j) = model
                .artifact
                .feature_names
                .iter()
                .position(|f| *f == t.name)
            else {
                return Err(invalid(
                    InputCode::UnknownFeature,
                    format!(
                        "input {} is not a feature of the model ({})",
                        quote(&t.name),
                        model.artifact.feature_names.join(", ")
                    ),
                ));
            };
            if std::mem::replace(&mut seen[j], true) {
                return Err(invalid(
                    InputCode::DuplicateFeature,
                    format!("input {} appears twice", quote(&t.name)),
                ));
            }
            let column = flat(t, rows)?;
            for (i, v) in column.into_iter().enumerate() {
                values[i * cols + j] = v;
            }
        }
    } else {
        values = flat(&inputs[0], rows * cols)?;
    }
    let shape = if rows == 1 {
        Shape::Single
    } else {
        Shape::Batch
    };
    Ok(PredictInput::new(shape, rows, cols, values))
}

/// The refusal of binary tensor data.
pub fn binary_refused() -> InputError {
    invalid(
        InputCode::BinaryData,
        "binary tensor data is not supported; send the data as JSON (tritonclient: \
         binary_data=False on InferInput)",
    )
}

/// The datatypes of the protocol that hold numbers: each is read as f64, as `/predict` reads
/// integers. (Values of FP16 and FP32 tensors arrive as JSON numbers, already widened.)
const NUMERIC_DATATYPES: [&str; 11] = [
    "FP64", "FP32", "FP16", "INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32",
    "UINT64",
];

/// A tensor's `data`, flat or nested, as exactly `count` finite numbers in row-major order;
/// an integer tensor's data must be whole numbers.
fn flat(t: &RawTensor, count: usize) -> Result<Vec<f64>, InputError> {
    let Some(TensorData(data)) = &t.data else {
        return Err(invalid(
            InputCode::InvalidTensor,
            format!("input {} has no \"data\"", quote(&t.name)),
        ));
    };
    nested_as_shaped(t, data)?;
    let integer = t.datatype.contains("INT");
    let (low, high) = range_of(&t.datatype);
    let mut out = Vec::with_capacity(count);
    let mut stack = vec![data];
    // Depth-first, left to right: nested data comes out row-major.
    while let Some(v) = stack.pop() {
        match v {
            Value::Number(n) => {
                if out.len() == count {
                    return Err(wrong_count(t, count));
                }
                match n.as_f64().filter(|x| x.is_finite()) {
                    Some(x) if integer && x.fract() != 0.0 => {
                        return Err(invalid(
                            InputCode::InvalidFeature,
                            format!(
                                "input {} is {} and holds {x} at element {}, not a whole number",
                                quote(&t.name),
                                t.datatype,
                                out.len()
                            ),
                        ));
                    }
                    Some(x) if !(low..=high).contains(&x) => {
                        return Err(invalid(
                            InputCode::InvalidFeature,
                            format!(
                                "input {} is {} and holds {x} at element {}, outside {}'s range",
                                quote(&t.name),
                                t.datatype,
                                out.len(),
                                t.datatype
                            ),
                        ));
                    }
                    Some(x) => out.push(x),
                    None => {
                        return Err(invalid(
                            InputCode::NonFiniteFeature,
                            format!("input {} holds a number out of range", quote(&t.name)),
                        ));
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter().rev()),
            other => {
                return Err(invalid(
                    InputCode::InvalidFeature,
                    format!(
                        "input {} holds {} at element {}; {} data are numbers",
                        quote(&t.name),
                        kind(other),
                        out.len(),
                        t.datatype
                    ),
                ));
            }
        }
    }
    if out.len() != count {
        return Err(wrong_count(t, count));
    }
    Ok(out)
}

/// The values a datatype holds (finite ones: infinities and NaN are refused before).
fn range_of(datatype: &str) -> (f64, f64) {
    match datatype {
        "FP32" => (f64::from(f32::MIN), f64::from(f32::MAX)),
        "FP16" => (-65504.0, 65504.0),
        "INT8" => (i8::MIN.into(), i8::MAX.into()),
        "INT16" => (i16::MIN.into(), i16::MAX.into()),
        "INT32" => (i32::MIN.into(), i32::MAX.into()),
        "INT64" => (-(2f64.powi(63)), 2f64.powi(63) - 1.0),
        "UINT8" => (0.0, u8::MAX.into()),
        "UINT16" => (0.0, u16::MAX.into()),
        "UINT32" => (0.0, u32::MAX.into()),
        "UINT64" => (0.0, 2f64.powi(64) - 1.0),
        _ => (f64::MIN, f64::MAX),
    }
}

/// Nested data must nest as the shape says (`[[1, 2], [3, 4]]` for `[2, 2]`): ragged rows,
/// or rows of another length, would otherwise be read in row-major order as rows the client
/// never sent. Flat data (numbers only) is taken as row-major whatever the shape.
fn nested_as_shaped(t: &RawTensor, data: &Value) -> Result<(), InputError> {
    let Value::Array(top) = data else {
        return Ok(());
    };
    if !top.iter().any(Value::is_array) {
        return Ok(());
    }
    // Depth-first with each array's place in the nesting, e.g. `[1][0]`.
    let mut stack = vec![(data, 0usize, String::new())];
    while let Some((v, depth, at)) = stack.pop() {
        let Value::Array(items) = v else {
            if depth != t.shape.len() {
                return Err(misnested(
                    t,
                    &at,
                    "a number where the shape has more dimensions",
                ));
            }
            continue;
        };
        let Some(&dim) = t.shape.get(depth) else {
            return Err(misnested(t, &at, "an array deeper than the shape"));
        };
        if items.len() as i64 != dim {
            let what = format!("{} elements where the shape says {dim}", items.len());
            return Err(misnested(t, &at, &what));
        }
        for (i, item) in items.iter().enumerate().rev() {
            stack.push((item, depth + 1, format!("{at}[{i}]")));
        }
    }
    Ok(())
}

fn misnested(t: &RawTensor, at: &str, what: &str) -> InputError {
    let at = if at.is_empty() { "its top level" } else { at };
    invalid(
        InputCode::InvalidTensor,
        format!(
            "input {} has shape {:?} but its nested data holds {what} at {at}; nest the data as the shape says, or send it flat",
            quote(&t.name),
            t.shape
        ),
    )
}

fn wrong_count(t: &RawTensor, count: usize) -> InputError {
    invalid(
        InputCode::WrongFeatureCount,
        format!(
            "input {} has shape {:?} ({count} elements), and its data does not hold {count} numbers",
            quote(&t.name),
            t.shape
        ),
    )
}

/// An output tensor of an answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputTensor {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<usize>,
    /// `prediction`: class indices; `label`: class names.
    data: Value,
}

/// What inferlog adds to an answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferParameters {
    /// The server's id of the request, to find its audit rows by.
    request_id: String,
}

/// The answer to an inference request.
#[derive(Debug, Serialize, ToSchema)]
pub struct InferResponse {
    model_name: String,
    model_version: String,
    /// The request's `id`, when it had one.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    outputs: Vec<OutputTensor>,
    parameters: InferParameters,
}

/// The answer to an inference request: the outputs asked for, the client's `id`, and the
/// server's request id (in `parameters`, to find the audit rows by).
pub fn infer_response(
    prediction: &Prediction,
    outputs: &[Output],
    id: Option<&str>,
    request_id: &str,
) -> InferResponse {
    let n = prediction.classes.len();
    InferResponse {
        model_name: prediction.model.name().to_string(),
        model_version: prediction.model.artifact.version.clone(),
        id: id.map(str::to_string),
        outputs: outputs
            .iter()
            .map(|&o| OutputTensor {
                name: o.name(),
                datatype: o.datatype(),
                shape: vec![n],
                data: match o {
                    Output::Prediction => serde_json::json!(prediction.classes),
                    Output::Label => serde_json::json!(prediction.labels),
                },
            })
            .collect(),
        parameters: InferParameters {
            request_id: request_id.to_string(),
        },
    }
}

/// A tensor as model metadata lists it (`-1`: any size).
#[derive(Debug, Serialize, ToSchema)]
pub struct TensorMetadata {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<i64>,
}

/// `GET /v2/models/{name}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    name: String,
    versions: Vec<String>,
    platform: String,
    inputs: Vec<TensorMetadata>,
    outputs: Vec<TensorMetadata>,
}

/// `GET /v2/models/{name}`: the model's name, version, inputs and outputs.
pub fn model_metadata(model: &Model) -> ModelMetadata {
    ModelMetadata {
        name: model.name().to_string(),
        versions: vec![model.artifact.version.clone()],
        platform: format!("smartcore_{}", model.artifact.algorithm),
        inputs: vec![TensorMetadata {
            name: "input",
            datatype: "FP64",
            shape: vec![-1, model.n_features() as i64],
        }],
        outputs: Output::ALL
            .iter()
            .map(|o| TensorMetadata {
                name: o.name(),
                datatype: o.datatype(),
                shape: vec![-1],
            })
            .collect(),
    }
}

/// `GET /v2`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    name: &'static str,
    version: &'static str,
    /// Protocol extensions supported: none.
    extensions: Vec<String>,
}

/// `GET /v2`: the server's name, version and protocol extensions (none).
pub fn server_metadata() -> ServerMetadata {
    ServerMetadata {
        name: "inferlog",
        version: env!("CARGO_PKG_VERSION"),
        extensions: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iris() -> Model {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/iris.json");
        Model::new(crate::model::Artifact::load(&path).unwrap(), path)
    }

    fn parse(body: &str) -> Result<InferRequest, InputError> {
        parse_infer(body.as_bytes(), &iris(), 100)
    }

    fn code(r: Result<InferRequest, InputError>) -> String {
        match r.unwrap_err() {
            InputError::Invalid { code, .. } => code.as_str().to_string(),
            InputError::MalformedJson(_) => "malformed_json".into(),
            InputError::BatchTooLarge { .. } => "batch_too_large".into(),
        }
    }

    #[test]
    fn one_matrix_tensor_flat_or_nested_gives_the_same_rows() {
        let flat = parse(
            r#"{"id": "a", "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP32",
                "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3]}]}"#,
        )
        .unwrap();
        let nested = parse(
            r#"{"inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64",
                "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]}]}"#,
        )
        .unwrap();
        assert_eq!(flat.input, nested.input);
        assert_eq!(flat.input.rows, 2);
        assert_eq!(flat.id.as_deref(), Some("a"));
        assert_eq!(flat.outputs, vec![Output::Prediction, Output::Label]);
        assert_eq!(flat.input.row(1), &[6.7, 3.0, 5.2, 2.3]);
    }

    #[test]
    fn one_tensor_per_feature_in_any_order() {
        let r = parse(
            r#"{"inputs": [
                {"name": "petal_width", "shape": [2], "datatype": "FP64", "data": [0.2, 2.3]},
                {"name": "sepal_length", "shape": [2], "datatype": "FP64", "data": [5.1, 6.7]},
                {"name": "petal_length", "shape": [2, 1], "datatype": "FP64", "data": [[1.4], [5.2]]},
                {"name": "sepal_width", "shape": [2], "datatype": "FP64", "data": [3.5, 3.0]}],
                "outputs": [{"name": "label", "parameters": {"binary_data": true}}]}"#,
        )
        .unwrap();
        assert_eq!(r.input.row(0), &[5.1, 3.5, 1.4, 0.2]);
        assert_eq!(r.input.row(1), &[6.7, 3.0, 5.2, 2.3]);
        assert_eq!(r.outputs, vec![Output::Label]);
    }

    #[test]
    fn integer_and_half_precision_tensors_hold_the_same_rows() {
        let rows = |dtype: &str, data: &str| {
            parse(&format!(
                r#"{{"inputs": [{{"name": "x", "shape": [2, 4], "datatype": "{dtype}", "data": {data}}}]}}"#
            ))
            .unwrap_or_else(|e| panic!("{dtype}: {e}"))
            .input
        };
        let ints = "[[5, 3, 1, 0], [6, 3, 5, 2]]";
        let want = rows("FP64", ints);
        for dtype in ["INT32", "INT64", "UINT8", "FP16", "FP32"] {
            assert_eq!(rows(dtype, ints), want, "{dtype}");
        }
    }

    #[test]
    fn data_past_what_the_model_could_take_is_refused_before_the_rest_is_read() {
        // 500,000 numbers and a tail that is not JSON: refused for the values, not the tail.
        let numbers = vec!["1.5"; 500_000].join(",");
        let body = format!(
            r#"{{"inputs": [{{"name": "x", "shape": [125000, 4], "datatype": "FP64", "data": [{numbers}, oops"#
        );
        let e = parse(&body).unwrap_err();
        assert_eq!(code(Err(e.clone())), "invalid_tensor");
        assert!(e.to_string().contains("more than 400 values"), "{e}");
        // The bound is the thread's only while parsing: the next request is not affected.
        let ok = parse(
            r#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}"#,
        );
        assert!(ok.is_ok());
        assert!(VALUES_LEFT.with(|v| v.get()).is_none());
    }

    #[test]
    fn a_wrong_shape_is_named_with_the_one_expected() {
        let e = parse(
            r#"{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("shape [1, 3]") && e.contains("[N, 4]"), "{e}");
    }

    #[test]
    fn bad_requests_get_their_codes() {
        let t = |shape: &str, dtype: &str, data: &str| {
            format!(
                r#"{{"inputs": [{{"name": "x", "shape": {shape}, "datatype": "{dtype}", "data": {data}}}]}}"#
            )
        };
        assert_eq!(code(parse("{")), "malformed_json");
        assert_eq!(code(parse(r#"{"inputs": 3}"#)), "invalid_body");
        assert_eq!(code(parse(r#"{"inputs": []}"#)), "missing_features");
        assert_eq!(
            code(parse(&t("[1, 4]", "BOOL", "[true, false, true, true]"))),
            "unsupported_datatype"
        );
        assert_eq!(
            code(parse(&t("[1, 4]", "INT32", "[1, 2.5, 3, 4]"))),
            "invalid_feature"
        );
        assert_eq!(
            code(parse(&t("[1, 3]", "FP32", "[1, 2, 3]"))),
            "invalid_tensor"
        );
        assert_eq!(
            code(parse(&t("[1, 4]", "FP32", "[1, 2, 3]"))),
            "wrong_feature_count"
        );
        assert_eq!(
            code(parse(&t("[1, 4]", "FP32", "[1, 2, 3, 4, 5]"))),
            "wrong_feature_count"
        );
        assert_eq!(
            code(parse(&t("[1, 4]", "FP32", r#"[1, "2", 3, 4]"#))),
            "invalid_feature"
        );
        assert_eq!(code(parse(&t("[0, 4]", "FP32", "[]"))), "empty_features");
        assert_eq!(code(parse(&t("[101, 4]", "FP32", "[]"))), "batch_too_large");
        assert_eq!(
            code(parse(
                r#"{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                    "parameters": {"binary_data_size": 16}}]}"#
            )),
            "binary_data_unsupported"
        );
        assert_eq!(
            code(parse(&format!(
                r#"{{"outputs": [{{"name": "proba"}}], {}"#,
                &t("[1, 4]", "FP32", "[1, 2, 3, 4]")[1..]
            ))),
            "unknown_output"
        );
        assert_eq!(
            code(parse(
                r#"{"id": 7, "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}]}"#
            )),
            "invalid_body"
        );
    }
}
