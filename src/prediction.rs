//! [`Prediction`]: what the model answered for one request, with its labels and outlier flags
//! derived once. The response body, the audit rows, the metrics and the log line are all built
//! from one `Prediction` and the request's [`Origin`], so they cannot disagree.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::audit::record::NumberList;
use crate::audit::{AuditRecord, Latency, Origin};
use crate::input::PredictInput;
use crate::model::{Model, Probabilities, Scores};
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
    /// Predicted class indices, one per input row.
    pub classes: Vec<u32>,
    /// The probability of each class, per input row (see [`crate::model::scores`]).
    pub probabilities: Probabilities,
    /// The class names of `classes`.
    pub labels: Vec<Arc<str>>,
    /// Rows with outliers, in row order (empty when none were flagged).
    pub outliers: Vec<FlaggedRow>,
}

impl Prediction {
    /// The model's answer `scores` for `input`, with outliers flagged by `rule`.
    pub fn new(
        model: Arc<Model>,
        input: PredictInput,
        scores: Scores,
        rule: &OutlierRule,
    ) -> Prediction {
        let Scores {
            classes,
            probabilities,
        } = scores;
        let names = &model.shared;
        let labels = classes
            .iter()
            .map(|&c| Arc::clone(&names.labels[c as usize]))
            .collect();
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
            classes,
            probabilities,
            labels,
            outliers,
        }
    }

    /// One audit row per input row. Their latency is fixed when the answer is ready (see
    /// [`crate::audit::AuditSink::submit`]).
    pub fn audit_records(&self, origin: &Origin) -> Vec<AuditRecord> {
        let mut flagged = self.outliers.iter().peekable();
        let shared = &self.model.shared;
        self.classes
            .iter()
            .enumerate()
            .map(|(i, &class)| AuditRecord {
                request_id: Arc::clone(&origin.request_id),
                client_request_id: origin.client_request_id.clone(),
                item: i as u32,
                received_at: origin.received_at,
                model: Some(Arc::clone(&shared.name)),
                model_version: Some(Arc::clone(&shared.version)),
                features: Some(NumberList::Values(self.input.row(i).to_vec())),
                prediction: Some(class),
                probabilities: Some(NumberList::Values(self.probabilities.row(i).to_vec())),
                label: Some(Arc::clone(&self.labels[i])),
                status: 200,
                error_code: None,
                latency: Latency::UntilStored(origin.arrived),
                client_addr: origin.client_addr.clone(),
                raw_body: None,
                outliers: flagged
                    .next_if(|row| row.item == i)
                    .map(|row| serde_json::to_string(&row.features).unwrap_or_default()),
                writer: origin.writer.clone(),
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
        PredictResponse {
            prediction: &self.classes,
            labels: &self.labels,
            probabilities: &self.probabilities,
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

/// The answer of `/predict`: a class index, a label and class probabilities per row, the model
/// that answered, the request's ids, and the rows flagged as outliers.
#[derive(Serialize, utoipa::ToSchema)]
pub struct PredictResponse<'a> {
    /// Class index per row.
    #[schema(value_type = Vec<u32>)]
    prediction: &'a [u32],
    /// Class name per row.
    #[schema(value_type = Vec<String>)]
    labels: &'a [Arc<str>],
    /// Per row, the probability of each class in the model's class order (`GET /models`);
    /// the served class is the most probable.
    #[schema(value_type = Vec<Vec<f64>>, example = json!([[0.0, 0.03, 0.97]]))]
    probabilities: &'a Probabilities,
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
