//! The protocol's answers: inference responses built from a prediction, and model and
//! server metadata.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::request::Output;
use crate::model::Model;
use crate::prediction::{Answer, Prediction};

/// An output tensor of an answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct OutputTensor {
    name: &'static str,
    datatype: &'static str,
    shape: Vec<i64>,
    /// `prediction`: class indices (a regressor's numbers); `label`: class names;
    /// `probabilities`: the probability of each class per row, flattened row-major.
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
    let n = prediction.input.rows as i64;
    let task = prediction.model.artifact.task();
    let classes = prediction.model.artifact.class_names.len() as i64;
    InferResponse {
        model_name: prediction.model.name().to_string(),
        model_version: prediction.model.artifact.version.clone(),
        id: id.map(str::to_string),
        outputs: outputs
            .iter()
            .map(|&o| OutputTensor {
                name: o.name(),
                datatype: o.datatype(task),
                shape: o.shape(n, classes),
                data: match (o, &prediction.answer) {
                    (_, Answer::Values(values)) => serde_json::json!(values),
                    (Output::Prediction, Answer::Classes { classes, .. }) => {
                        serde_json::json!(classes)
                    }
                    (Output::Label, Answer::Classes { labels, .. }) => serde_json::json!(labels),
                    (
                        Output::Probabilities,
                        Answer::Classes {
                            probabilities: p, ..
                        },
                    ) => Value::from_iter((0..p.rows()).flat_map(|i| p.row(i).iter().copied())),
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
        outputs: Output::offered(model.artifact.task())
            .iter()
            .map(|o| TensorMetadata {
                name: o.name(),
                datatype: o.datatype(model.artifact.task()),
                shape: o.shape(-1, model.artifact.class_names.len() as i64),
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
