//! Input tensors into a model's rows: one `[N, F]` tensor or one `[N]` tensor per feature,
//! numbers of any numeric datatype within its range, flat or nested as the shape says.

use serde_json::Value;

use super::request::{RawTensor, TensorData};
use crate::input::{InputCode, InputError, PredictInput, Shape, invalid};
use crate::model::Model;
use crate::text::quote;

/// What a request's inputs must look like, for messages.
pub(super) fn expected(model: &Model) -> String {
    format!(
        "send one numeric tensor (FP64, FP32, FP16 or an INT/UINT type) of shape [N, {}] or one [N] tensor per feature ({})",
        model.n_features(),
        model.artifact.feature_names.join(", ")
    )
}

pub(super) fn kind(v: &Value) -> &'static str {
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
pub(super) fn tensors(
    inputs: Vec<RawTensor>,
    model: &Model,
    max_batch: usize,
) -> Result<PredictInput, InputError> {
    let cols = model.n_features();
    inputs.iter().try_for_each(check_tensor)?;
    // One `[N, F]` tensor, else one tensor per feature.
    let per_feature =
        !(inputs.len() == 1 && matches!(inputs[0].shape.as_slice(), [_, f] if *f as usize == cols));
    let rows = if per_feature {
        feature_rows(&inputs, model)?
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
    let values = if per_feature {
        by_feature(&inputs, model, rows)?
    } else {
        flat(&inputs[0], rows * cols)?
    };
    let shape = if rows == 1 {
        Shape::Single
    } else {
        Shape::Batch
    };
    Ok(PredictInput::new(shape, rows, cols, values))
}

/// A tensor's `N`: the first dimension of its shape.
fn rows_of(t: &RawTensor) -> Option<usize> {
    t.shape.first().map(|&n| n as usize)
}

/// Refuses binary data, other datatypes than numbers and negative dimensions.
fn check_tensor(t: &RawTensor) -> Result<(), InputError> {
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
    Ok(())
}

/// With one tensor per feature: as many tensors as features, each `[N]` (or `[N, 1]`) with
/// the same `N`, which is the number of rows.
fn feature_rows(inputs: &[RawTensor], model: &Model) -> Result<usize, InputError> {
    let n = rows_of(&inputs[0]).unwrap_or(0);
    if inputs.len() != model.n_features() {
        let got = match inputs {
            [t] => format!("input {} has shape {:?}", quote(&t.name), t.shape),
            _ => format!("{} input tensors", inputs.len()),
        };
        return Err(invalid(
            InputCode::InvalidTensor,
            format!("{got}; {}", expected(model)),
        ));
    }
    for t in inputs {
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
    Ok(n)
}

/// The row-major values of one tensor per feature, each placed by its name.
fn by_feature(inputs: &[RawTensor], model: &Model, rows: usize) -> Result<Vec<f64>, InputError> {
    let cols = model.n_features();
    let mut values = vec![0.0; rows * cols];
    let mut seen = vec![false; cols];
    for t in inputs {
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
    Ok(values)
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
