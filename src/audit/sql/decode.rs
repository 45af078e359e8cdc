//! Rows read back as the store's types ([`Decoded`]), the same from both backends: each query
//! selects its columns in the form [`Dialect::select`](super::dialect::Dialect::select) gives,
//! so one decoder serves both.

use anyhow::Context;
use sqlx::{ColumnIndex, Decode, Row, Type};

use super::dialect::Decoded;
use crate::audit::columns::{ALL, Column};
use crate::audit::filter::{ConfusionCell, Count, DriftSample, ServedRow};
use crate::audit::record::{Feedback, RequestRef, StoredFeedback, StoredRecord, Truth};
use crate::audit::rollup::PackedRow;

/// The bounds every decoder reads with; a macro, since a bound on other types than the one
/// implemented is not carried by a trait to its uses.
macro_rules! decoded {
    ($type:ty, |$row:ident| $body:expr) => {
        impl Decoded for $type {
            fn decode<'r, R>($row: &'r R) -> anyhow::Result<Self>
            where
                R: Row,
                usize: ColumnIndex<R>,
                i64: Decode<'r, R::Database> + Type<R::Database>,
                bool: Decode<'r, R::Database> + Type<R::Database>,
                f64: Decode<'r, R::Database> + Type<R::Database>,
                String: Decode<'r, R::Database> + Type<R::Database>,
            {
                $body
            }
        }
    };
}

decoded!(i64, |row| Ok(row.try_get(0)?));
decoded!(bool, |row| Ok(row.try_get(0)?));
decoded!(String, |row| Ok(row.try_get(0)?));
decoded!(Option<String>, |row| Ok(row.try_get(0)?));
decoded!(Option<i64>, |row| Ok(row.try_get(0)?));
decoded!((i64, i64), |row| Ok((row.try_get(0)?, row.try_get(1)?)));
decoded!((i64, String), |row| Ok((row.try_get(0)?, row.try_get(1)?)));

// A drift row: features as JSON text, the predicted class, a regressor's answer.
decoded!((Option<String>, Option<i64>, Option<f64>), |row| Ok((
    row.try_get(0)?,
    row.try_get(1)?,
    row.try_get(2)?
)));

// An answered row: `received_at` (RFC 3339 text), model, version, label, value.
decoded!(
    (
        String,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<f64>
    ),
    |row| Ok((
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?
    ))
);

// An answered row and its truth: true label, true value.
decoded!(
    (
        (
            String,
            Option<String>,
            Option<String>,
            Option<String>,
            Option<f64>
        ),
        (Option<String>, Option<f64>)
    ),
    |row| Ok((
        (
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?
        ),
        (row.try_get(5)?, row.try_get(6)?)
    ))
);

// A feedback's `label, value`; a regressor's (answer, truth) pair.
decoded!((Option<String>, Option<f64>), |row| Ok((
    row.try_get(0)?,
    row.try_get(1)?
)));
decoded!((f64, f64), |row| Ok((row.try_get(0)?, row.try_get(1)?)));

// The rows of [`rollup_query`](super::clause::rollup_query).
decoded!(PackedRow, |row| Ok(PackedRow {
    span: row.try_get(0)?,
    start: row.try_get(1)?,
    model: row.try_get(2)?,
    counts: row.try_get(3)?,
}));

// `key, count` of a summary's list.
decoded!(Count, |row| Ok(Count {
    key: row.try_get(0)?,
    count: row.try_get(1)?,
}));

// `request_id, received_at` (RFC 3339 text).
decoded!(RequestRef, |row| Ok(RequestRef {
    request_id: row.try_get(0)?,
    received_at: row.try_get(1)?,
}));

// An answered row's `model, label`.
decoded!(ServedRow, |row| Ok(ServedRow {
    model: row.try_get(0)?,
    label: row.try_get(1)?,
}));

// A row of [`confusion_query`](super::clause::confusion_query): predicted label, true label,
// count.
decoded!(ConfusionCell, |row| Ok(ConfusionCell {
    predicted: row.try_get(0)?,
    actual: row.try_get(1)?,
    count: row.try_get(2)?,
}));

// A feedback row selected as `id, request_id, item, label, received_at (RFC 3339 text),
// client_addr, value`.
decoded!(StoredFeedback, |row| {
    let time: String = row.try_get(4)?;
    let received_at = chrono::DateTime::parse_from_rfc3339(&time)
        .context("a stored feedback time is not RFC 3339")?
        .with_timezone(&chrono::Utc);
    Ok(StoredFeedback {
        id: row.try_get(0)?,
        feedback: Feedback {
            request_id: row.try_get(1)?,
            item: row.try_get(2)?,
            truth: Truth::of_columns(row.try_get(3)?, row.try_get(6)?)?,
            received_at,
            client_addr: row.try_get(5)?,
        },
    })
});

// A whole row, selected in the order of [`ALL`].
decoded!(StoredRecord, |row| decode_row(row));

/// A whole row, selected in the order of [`ALL`], as a [`StoredRecord`]; for queries that
/// select more after it (PostgreSQL's transaction id).
pub(crate) fn decode_row<'r, R>(row: &'r R) -> anyhow::Result<StoredRecord>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
    f64: Decode<'r, R::Database> + Type<R::Database>,
{
    let mut r = StoredRecord {
        id: 0,
        request_id: String::new(),
        item: 0,
        received_at: String::new(),
        model: None,
        model_version: None,
        features: None,
        prediction: None,
        label: None,
        status: 0,
        error_code: None,
        latency_us: 0,
        client_addr: None,
        raw_body: None,
        outliers: None,
        client_request_id: None,
        writer: None,
        probabilities: None,
        value: None,
    };
    for (i, column) in ALL.into_iter().enumerate() {
        match column {
            Column::Id => r.id = row.try_get(i)?,
            Column::RequestId => r.request_id = row.try_get(i)?,
            Column::Item => r.item = row.try_get(i)?,
            Column::ReceivedAt => r.received_at = row.try_get(i)?,
            Column::Model => r.model = row.try_get(i)?,
            Column::ModelVersion => r.model_version = row.try_get(i)?,
            Column::Features => r.features = json(row.try_get(i)?, column)?,
            Column::Prediction => r.prediction = row.try_get(i)?,
            Column::Label => r.label = row.try_get(i)?,
            Column::Status => r.status = row.try_get(i)?,
            Column::ErrorCode => r.error_code = row.try_get(i)?,
            Column::LatencyUs => r.latency_us = row.try_get(i)?,
            Column::ClientAddr => r.client_addr = row.try_get(i)?,
            Column::RawBody => r.raw_body = row.try_get(i)?,
            Column::Outliers => r.outliers = json(row.try_get(i)?, column)?,
            Column::ClientRequestId => r.client_request_id = row.try_get(i)?,
            Column::Writer => r.writer = row.try_get(i)?,
            Column::Probabilities => r.probabilities = json(row.try_get(i)?, column)?,
            Column::Value => r.value = row.try_get(i)?,
        }
    }
    Ok(r)
}

/// A JSON text column kept as raw JSON.
fn json(
    text: Option<String>,
    column: Column,
) -> anyhow::Result<Option<Box<serde_json::value::RawValue>>> {
    let Some(text) = text else {
        return Ok(None);
    };
    // PostgreSQL's jsonb writes `[1, 2]`: the compact form, as the SQLite store keeps it, so
    // exports read the same from both.
    let text = if text.contains(' ') {
        serde_json::from_str::<serde_json::Value>(&text)
            .map(|v| v.to_string())
            .unwrap_or(text)
    } else {
        text
    };
    serde_json::value::RawValue::from_string(text)
        .map(Some)
        .with_context(|| format!("a stored {} value is not JSON", column.name()))
}
/// The rows behind a drift report, as both backends read them (features as JSON text and the
/// predicted class or answer, newest first): the values row-major, for the rows that have the
/// model's number of features.
pub(crate) struct DriftRows {
    n_features: usize,
    values: Vec<f64>,
    classes: Vec<u32>,
    answers: Vec<f64>,
}

impl DriftRows {
    pub(crate) fn new(n_features: usize) -> DriftRows {
        DriftRows {
            n_features,
            values: Vec::new(),
            classes: Vec::new(),
            answers: Vec::new(),
        }
    }

    /// Adds a row; one without features or an answer (a class or a number), or with another
    /// number of features, is left out.
    pub(crate) fn push(
        &mut self,
        features: Option<String>,
        class: Option<i64>,
        value: Option<f64>,
    ) {
        let Some(features) = features else {
            return;
        };
        if class.is_none() && value.is_none() {
            return;
        }
        let Ok(parsed) = serde_json::from_str::<Vec<f64>>(&features) else {
            return;
        };
        if parsed.len() != self.n_features {
            return;
        }
        self.values.extend(parsed);
        match (class, value) {
            (Some(class), _) => self.classes.push(class as u32),
            (None, Some(value)) => self.answers.push(value),
            (None, None) => {}
        }
    }

    /// The sample of at most `max_rows` rows, truncated if there were more (the query asks
    /// for one more than it keeps). A model version answers one kind, so the rows are all
    /// classes or all numbers.
    pub(crate) fn finish(mut self, max_rows: usize) -> DriftSample {
        let rows = self.classes.len() + self.answers.len();
        let truncated = rows > max_rows;
        if truncated {
            self.classes.truncate(max_rows);
            self.answers.truncate(max_rows);
            self.values.truncate(max_rows * self.n_features);
        }
        DriftSample {
            values: self.values,
            classes: self.classes,
            answers: self.answers,
            truncated,
        }
    }
}
