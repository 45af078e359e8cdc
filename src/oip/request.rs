//! The protocol's request as it is read: its outputs, the raw request and tensors (data read
//! with a bound on the values of the whole request), before validation.

use serde::Deserialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::input::PredictInput;
use crate::model::Task;

/// Longest request `id` kept (it is stored as the client's request id).
pub(super) const MAX_ID_LEN: usize = 128;

/// The request header that announces binary tensor data after the JSON.
pub const BINARY_HEADER: &str = "inference-header-content-length";

/// An output of the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Output {
    /// Class indices, INT64; a regressor's numbers, FP64 (its one output).
    Prediction,
    /// Class names, BYTES.
    Label,
    /// The probability of each class per row, FP64 `[N, C]` (row-major, class order).
    Probabilities,
}

impl Output {
    pub(super) const ALL: [Output; 3] = [Output::Prediction, Output::Label, Output::Probabilities];

    /// The outputs a model of `task` answers.
    pub(super) fn offered(task: Task) -> &'static [Output] {
        match task {
            Task::Classification => &Output::ALL,
            Task::Regression => &Output::ALL[..1],
        }
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Output::Prediction => "prediction",
            Output::Label => "label",
            Output::Probabilities => "probabilities",
        }
    }

    pub(super) fn datatype(self, task: Task) -> &'static str {
        match self {
            Output::Prediction if task == Task::Regression => "FP64",
            Output::Prediction => "INT64",
            Output::Label => "BYTES",
            Output::Probabilities => "FP64",
        }
    }

    /// The tensor's shape for `rows` rows of a model of `classes` classes.
    pub(super) fn shape(self, rows: i64, classes: i64) -> Vec<i64> {
        match self {
            Output::Prediction | Output::Label => vec![rows],
            Output::Probabilities => vec![rows, classes],
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

/// An inference request as it is read (then checked by [`super::parse_infer`]).
#[derive(Deserialize, ToSchema)]
#[schema(as = InferRequestBody)]
pub struct RawRequest {
    /// The client's id of the request: echoed, and kept as its client request id.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub(super) id: Option<Value>,
    /// Ignored (clients send `binary_data_output`, `priority`, …).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    #[allow(dead_code)]
    pub(super) parameters: Option<Value>,
    /// One `[N, F]` tensor, or one `[N]` tensor per feature.
    #[serde(default)]
    #[schema(required = true, min_items = 1)]
    pub(super) inputs: Option<Vec<RawTensor>>,
    /// The outputs to answer (default: all).
    #[serde(default)]
    pub(super) outputs: Option<Vec<RawOutput>>,
}

/// An input tensor.
#[derive(Deserialize, ToSchema)]
#[schema(as = InputTensor)]
pub struct RawTensor {
    pub(super) name: String,
    pub(super) shape: Vec<i64>,
    /// `FP32` or `FP64`.
    pub(super) datatype: String,
    /// `binary_data_size` (binary data) is refused.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub(super) parameters: Option<Map<String, Value>>,
    /// Numbers, flat (row-major) or nested.
    #[serde(default)]
    #[schema(value_type = Option<Value>)]
    pub(super) data: Option<TensorData>,
}

/// A tensor's `data`, read with a bound on the values of the whole request (see
/// [`ValueBudget`]): a body of 500,000 numbers stops at the first value past what the model
/// could take, before the rest is read.
pub struct TensorData(pub(super) Value);

/// How many more values the request being parsed on this thread may hold, while
/// [`super::parse_infer`] parses one; `None` outside it. Serde's derived structs take no state, so
/// the bound rides on the thread: parsing is synchronous, nothing else runs on it meanwhile.
pub(super) struct ValueBudget;

thread_local! {
    pub(super) static VALUES_LEFT: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
    static VALUES_OVER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

impl ValueBudget {
    /// Sets the bound for the parse that follows; cleared when the guard is dropped.
    pub(super) fn set(values: usize) -> impl Drop {
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

    pub(super) fn passed() -> bool {
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
    pub(super) name: String,
    /// Ignored (`binary_data`: outputs are always JSON).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    #[allow(dead_code)]
    pub(super) parameters: Option<Value>,
}
