//! [`InputError`]: why a body was refused, with its stable error code ([`InputCode`]).

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
