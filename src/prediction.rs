//! [`Prediction`]: what the model answered for one request, with its labels and outlier flags
//! derived once. The response body, the audit rows, the metrics and the log line are all built
//! from one `Prediction` and the request's [`Origin`], so they cannot disagree.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::record::NumberList;
use crate::audit::{AuditRecord, Latency, Origin};
use crate::input::PredictInput;
use crate::model::{Answers, Model, Probabilities, Scores};
use crate::monitor::outliers::OutlierRule;

/// One row with features outside the training range or spread.
#[derive(Debug, Clone, PartialEq)]
pub struct FlaggedRow {
    pub item: usize,
    /// Names of the flagged features, in model order.
    pub features: Vec<Arc<str>>,
}

/// A served prediction.
#[derive(Debug)]
pub struct Prediction {
    pub model: Arc<Model>,
    pub input: PredictInput,
    pub answer: Answer,
    /// Rows with outliers, in row order (empty when none were flagged).
    pub outliers: Vec<FlaggedRow>,
}

/// What the model answered, one per input row.
#[derive(Debug)]
pub enum Answer {
    /// A classifier's.
    Classes {
        /// Predicted class indices.
        classes: Vec<u32>,
        /// The probability of each class (see [`crate::model::scores`]).
        probabilities: Probabilities,
        /// The class names of `classes`.
        labels: Vec<Arc<str>>,
    },
    /// A regressor's numbers, every one finite.
    Values(Vec<f64>),
}

impl Prediction {
    /// The model's `answers` for `input`, with outliers flagged by `rule`.
    pub fn new(
        model: Arc<Model>,
        input: PredictInput,
        answers: Answers,
        rule: &OutlierRule,
    ) -> Prediction {
        let names = &model.shared;
        let answer = match answers {
            Answers::Classes(Scores {
                classes,
                probabilities,
            }) => Answer::Classes {
                labels: classes
                    .iter()
                    .map(|&c| Arc::clone(&names.labels[c as usize]))
                    .collect(),
                classes,
                probabilities,
            },
            Answers::Values(values) => Answer::Values(values),
        };
        let stats = &model.artifact.baseline.features;
        let outliers = (0..input.rows)
            .filter_map(|i| {
                let flagged = rule.flag_row(stats, input.row(i));
                (!flagged.is_empty()).then(|| FlaggedRow {
                    item: i,
                    features: flagged
                        .into_iter()
                        .map(|j| Arc::clone(&names.features[j]))
                        .collect(),
                })
            })
            .collect();
        Prediction {
            model,
            input,
            answer,
            outliers,
        }
    }

    /// One audit row per input row. Their latency is fixed when the answer is ready (see
    /// [`crate::audit::AuditSink::submit`]).
    pub fn audit_records(&self, origin: &Origin) -> Vec<AuditRecord> {
        let mut flagged = self.outliers.iter().peekable();
        let shared = &self.model.shared;
        (0..self.input.rows)
            .map(|i| {
                let (prediction, probabilities, label, value) = match &self.answer {
                    Answer::Classes {
                        classes,
                        probabilities,
                        labels,
                    } => (
                        Some(classes[i]),
                        Some(NumberList::Values(probabilities.row(i).to_vec())),
                        Some(Arc::clone(&labels[i])),
                        None,
                    ),
                    Answer::Values(values) => (None, None, None, Some(values[i])),
                };
                AuditRecord {
                    request_id: Arc::clone(&origin.request_id),
                    client_request_id: origin.client_request_id.clone(),
                    item: i as u32,
                    received_at: origin.received_at,
                    model: Some(Arc::clone(&shared.name)),
                    model_version: Some(Arc::clone(&shared.version)),
                    features: Some(NumberList::Values(self.input.row(i).to_vec())),
                    prediction,
                    probabilities,
                    label,
                    status: 200,
                    error_code: None,
                    latency: Latency::UntilStored(origin.arrived),
                    client_addr: origin.client_addr.clone(),
                    raw_body: None,
                    outliers: flagged
                        .next_if(|row| row.item == i)
                        .map(|row| serde_json::to_string(&row.features).unwrap_or_default()),
                    writer: origin.writer.clone(),
                    value,
                }
            })
            .collect()
    }

    /// The response body of `/predict`, with the server's id of the request and the client's,
    /// if it sent one.
    pub fn response<'a>(
        &'a self,
        request_id: &'a str,
        client_request_id: Option<&'a str>,
    ) -> PredictResponse<'a> {
        let (prediction, labels, probabilities) = match &self.answer {
            Answer::Classes {
                classes,
                probabilities,
                labels,
            } => (
                Answered::Classes(classes),
                Some(&labels[..]),
                Some(probabilities),
            ),
            Answer::Values(values) => (Answered::Values(values), None, None),
        };
        PredictResponse {
            prediction,
            labels,
            probabilities,
            model: self.model.name(),
            model_version: &self.model.artifact.version,
            request_id,
            client_request_id,
            outliers: self
                .outliers
                .iter()
                .map(|row| OutlierEntry {
                    item: row.item,
                    features: &row.features,
                })
                .collect(),
        }
    }

    /// The flagged features (`row 0: petal_length,petal_width`), for the log line.
    pub fn outliers_display(&self) -> impl fmt::Display + '_ {
        OutliersDisplay(&self.outliers)
    }
}

/// The answer of `/predict`: per row, a classifier's class index, label and class
/// probabilities, or a regressor's number; the model that answered, the request's ids, and
/// the rows flagged as outliers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PredictResponse<'a> {
    /// Per row, a classifier's class index (`[2]`) or a regressor's number (`[231.4]`).
    #[schema(value_type = Vec<f64>, example = json!([2]))]
    prediction: Answered<'a>,
    /// A classifier's class name per row (absent for a regressor).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<String>>)]
    labels: Option<&'a [Arc<str>]>,
    /// A classifier's probability of each class per row, in the model's class order (`GET
    /// /models`); the served class is the most probable. Absent for a regressor.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Vec<f64>>>, example = json!([[0.0, 0.03, 0.97]]))]
    probabilities: Option<&'a Probabilities>,
    #[schema(value_type = String)]
    model: &'a str,
    #[schema(value_type = String)]
    model_version: &'a str,
    /// The server's id of the request (also the `X-Request-Id` response header).
    #[schema(value_type = String)]
    request_id: &'a str,
    /// The `X-Request-Id` the client sent, when it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    client_request_id: Option<&'a str>,
    /// Rows with features outside the training range or spread (empty when none).
    outliers: Vec<OutlierEntry<'a>>,
}

/// The `prediction` field: class indices or numbers.
#[derive(Serialize)]
#[serde(untagged)]
enum Answered<'a> {
    Classes(&'a [u32]),
    Values(&'a [f64]),
}

/// A row with features outside the training range or spread.
#[derive(Serialize, utoipa::ToSchema)]
pub struct OutlierEntry<'a> {
    item: usize,
    /// The flagged features.
    #[schema(value_type = Vec<String>)]
    features: &'a [Arc<str>],
}

/// Rows shown in full in a log line; the audit store has every row.
pub const LOGGED_ROWS: usize = 10;

struct OutliersDisplay<'a>(&'a [FlaggedRow]);

impl fmt::Display for OutliersDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (n, row) in self.0.iter().take(LOGGED_ROWS).enumerate() {
            if n > 0 {
                f.write_str("; ")?;
            }
            write!(f, "row {}: ", row.item)?;
            for (k, name) in row.features.iter().enumerate() {
                if k > 0 {
                    f.write_str(",")?;
                }
                f.write_str(name)?;
            }
        }
        if self.0.len() > LOGGED_ROWS {
            write!(f, "; … +{} rows", self.0.len() - LOGGED_ROWS)?;
        }
        Ok(())
    }
}
