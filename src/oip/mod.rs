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
//!
//! - [`request`]: the request as read; [`tensor`]: its tensors into rows; [`response`]: the
//!   answers and metadata.

pub mod request;
pub mod response;
pub mod tensor;

use serde_json::Value;

pub use self::request::{BINARY_HEADER, InferRequest, Output, RawOutput, RawRequest, RawTensor};
use self::request::{MAX_ID_LEN, ValueBudget};
pub use self::response::*;
pub use self::tensor::binary_refused;
use self::tensor::{expected, kind, tensors};
use crate::input::{InputCode, InputError, invalid};
use crate::model::Model;
use crate::text::quote;

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
    let offered = Output::offered(model.artifact.task());
    let outputs = match raw.outputs {
        None => offered.to_vec(),
        Some(list) => {
            let mut outputs = Vec::with_capacity(list.len());
            for o in list {
                let output = offered
                    .iter()
                    .copied()
                    .find(|k| k.name() == o.name)
                    .ok_or_else(|| {
                        let names: Vec<String> = offered
                            .iter()
                            .map(|k| format!("\"{}\"", k.name()))
                            .collect();
                        invalid(
                            InputCode::UnknownOutput,
                            format!(
                                "unknown output {}; the model's outputs are {}",
                                quote(&o.name),
                                names.join(", ")
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

#[cfg(test)]
mod tests;
