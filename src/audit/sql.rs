//! SQL shared by the backends, written once for any sqlx database: the filter of the audit
//! reads as a WHERE clause (values always bound, only fixed column names spliced), and a row
//! read back as a [`StoredRecord`].

use anyhow::Context;
use sqlx::{ColumnIndex, Database, Decode, Encode, QueryBuilder, Row, Type};

use super::columns::{ALL, Column};
use super::filter::{AuditFilter, ConfusionCell, Cursor, DriftSample, ServedRow, StatusFilter};
use super::record::{Feedback, StoredFeedback, StoredRecord, format_time};
use super::rollup::{HOUR, PackedRow, ReadPlan, RollupRange};

/// The filter as a WHERE clause; `p` qualifies the columns (`"p."` in joins, else `""`),
/// `time_cast` follows each bound time (PostgreSQL: `::timestamptz`; SQLite compares the text).
pub(crate) fn push_where<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    f: &AuditFilter,
    p: &str,
    time_cast: &str,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    qb.push(" where 1 = 1");
    if let Some(t) = &f.since {
        qb.push(format!(" and {p}received_at >= "))
            .push_bind(format_time(t))
            .push(time_cast);
    }
    if let Some(t) = &f.until {
        qb.push(format!(" and {p}received_at < "))
            .push_bind(format_time(t))
            .push(time_cast);
    }
    if let Some(v) = &f.model {
        qb.push(format!(" and {p}model = ")).push_bind(v.clone());
    }
    if let Some(v) = &f.model_version {
        qb.push(format!(" and {p}model_version = "))
            .push_bind(v.clone());
    }
    if let Some(v) = &f.label {
        qb.push(format!(" and {p}label = ")).push_bind(v.clone());
    }
    if let Some(v) = &f.request_id {
        qb.push(format!(" and {p}request_id = "))
            .push_bind(v.clone());
    }
    if let Some(v) = &f.client_request_id {
        qb.push(format!(" and {p}client_request_id = "))
            .push_bind(v.clone());
    }
    if let Some(v) = f.min_latency_us {
        qb.push(format!(" and {p}latency_us >= ")).push_bind(v);
    }
    match f.status {
        StatusFilter::Ok => {
            qb.push(format!(" and {p}status = 200"));
        }
        StatusFilter::Rejected => {
            qb.push(format!(" and {p}status <> 200"));
        }
        StatusFilter::All => {}
    }
}

/// The query behind a drift report: features and predicted class of the most recent answered
/// rows of `model` in the filter's range, one more than `max_rows` (to tell a truncated range).
/// Newest first, the rows after `after` in (arrival, id) order: `and (received_at, id) <
/// (at, id)`. A cursor without an arrival time (given out before newest-first pages sorted by
/// arrival) continues by id.
pub(crate) fn push_before<'a, DB>(
    qb: &mut QueryBuilder<'a, DB>,
    after: Option<Cursor>,
    time_cast: &str,
) where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let Some(after) = after else { return };
    match after.at_text() {
        Some(at) => {
            qb.push(" and (received_at, id) < (")
                .push_bind(at)
                .push(format!("{time_cast}, "))
                .push_bind(after.id)
                .push(")");
        }
        None => {
            qb.push(" and id < ").push_bind(after.id);
        }
    }
}

/// `select` names the two columns in the backend's dialect.
pub(crate) fn drift_query<'a, DB>(
    select: &str,
    model: &str,
    filter: &AuditFilter,
    max_rows: usize,
    time_cast: &str,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!("select {select} from prediction"));
    push_where(&mut qb, filter, "", time_cast);
    qb.push(" and status = 200 and model = ")
        .push_bind(model.to_string())
        .push(" order by id desc limit ")
        .push_bind(max_rows.saturating_add(1).min(i64::MAX as usize) as i64);
    qb
}

/// The query behind the confusion matrix: (predicted label, true label, count) of the answered
/// rows of `model` with feedback, in the filter's range.
pub(crate) fn confusion_query<'a, DB>(
    model: &str,
    filter: &AuditFilter,
    time_cast: &str,
) -> QueryBuilder<'a, DB>
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "select p.label, t.true_label, count(*) from prediction p \
         join ground_truth t on t.request_id = p.request_id and t.item = p.item",
    );
    push_where(&mut qb, filter, "p.", time_cast);
    qb.push(" and p.status = 200 and p.model = ")
        .push_bind(model.to_string())
        .push(" group by p.label, t.true_label");
    qb
}

/// The rollup rows a [`ReadPlan`] names, then every delta not merged yet, in one statement
/// (one snapshot: a merge moves counts from the deltas to `rollup` in one transaction, so each
/// is read exactly once): `span, start, model, counts` (see [`PackedRow`]).
pub(crate) fn rollup_query<'a, DB>(range: &RollupRange, plan: &ReadPlan) -> QueryBuilder<'a, DB>
where
    DB: Database,
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new("select span, start, model, counts from rollup where (1 = 0");
    let part =
        |qb: &mut QueryBuilder<'a, DB>, span: i64, (since, until): (Option<i64>, Option<i64>)| {
            qb.push(" or (span = ").push_bind(span);
            if let Some(m) = since {
                qb.push(" and start >= ").push_bind(m);
            }
            if let Some(m) = until {
                qb.push(" and start < ").push_bind(m);
            }
            qb.push(")");
        };
    if let Some(hours) = plan.hours {
        part(&mut qb, HOUR, hours);
    }
    for minutes in &plan.minutes {
        part(&mut qb, 1, *minutes);
    }
    qb.push(")");
    if let Some(v) = &range.model {
        qb.push(" and model = ").push_bind(v.clone());
    }
    if let Some(v) = &range.model_version {
        qb.push(" and model_version = ").push_bind(v.clone());
    }
    qb.push(" union all select 0, 0, '', counts from rollup_delta");
    qb
}

/// The rows of [`rollup_query`].
pub(crate) fn decode_packed<'r, R>(row: &'r R) -> anyhow::Result<PackedRow>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(PackedRow {
        span: row.try_get(0)?,
        start: row.try_get(1)?,
        model: row.try_get(2)?,
        counts: row.try_get(3)?,
    })
}

/// A whole row, selected in the order of [`ALL`], as a [`StoredRecord`].
pub(crate) fn decode_row<'r, R>(row: &'r R) -> anyhow::Result<StoredRecord>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
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

/// An answered row's `model, label`.
pub(crate) fn decode_served<'r, R>(row: &'r R) -> anyhow::Result<ServedRow>
where
    R: Row,
    usize: ColumnIndex<R>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ServedRow {
        model: row.try_get(0)?,
        label: row.try_get(1)?,
    })
}

/// A row of [`confusion_query`]: predicted label, true label, count.
pub(crate) fn decode_confusion<'r, R>(row: &'r R) -> anyhow::Result<ConfusionCell>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    Ok(ConfusionCell {
        predicted: row.try_get(0)?,
        actual: row.try_get(1)?,
        count: row.try_get(2)?,
    })
}

/// A feedback row selected as `id, request_id, item, label, received_at (RFC 3339 text),
/// client_addr`.
pub(crate) fn decode_feedback<'r, R>(row: &'r R) -> anyhow::Result<StoredFeedback>
where
    R: Row,
    usize: ColumnIndex<R>,
    i64: Decode<'r, R::Database> + Type<R::Database>,
    String: Decode<'r, R::Database> + Type<R::Database>,
{
    let time: String = row.try_get(4)?;
    let received_at = chrono::DateTime::parse_from_rfc3339(&time)
        .context("a stored feedback time is not RFC 3339")?
        .with_timezone(&chrono::Utc);
    Ok(StoredFeedback {
        id: row.try_get(0)?,
        feedback: Feedback {
            request_id: row.try_get(1)?,
            item: row.try_get(2)?,
            label: row.try_get(3)?,
            received_at,
            client_addr: row.try_get(5)?,
        },
    })
}

/// The rows behind a drift report, as both backends read them (features as JSON text and the
/// predicted class, newest first): the values row-major, for the rows that have the model's
/// number of features.
pub(crate) struct DriftRows {
    n_features: usize,
    values: Vec<f64>,
    classes: Vec<u32>,
}

impl DriftRows {
    pub(crate) fn new(n_features: usize) -> DriftRows {
        DriftRows {
            n_features,
            values: Vec::new(),
            classes: Vec::new(),
        }
    }

    /// Adds a row; one without features or class, or with another number of features, is
    /// left out.
    pub(crate) fn push(&mut self, features: Option<String>, class: Option<i64>) {
        let (Some(features), Some(class)) = (features, class) else {
            return;
        };
        let Ok(parsed) = serde_json::from_str::<Vec<f64>>(&features) else {
            return;
        };
        if parsed.len() == self.n_features {
            self.values.extend(parsed);
            self.classes.push(class as u32);
        }
    }

    /// The sample of at most `max_rows` rows, truncated if there were more (the query asks
    /// for one more than it keeps).
    pub(crate) fn finish(mut self, max_rows: usize) -> DriftSample {
        let truncated = self.classes.len() > max_rows;
        if truncated {
            self.classes.truncate(max_rows);
            self.values.truncate(max_rows * self.n_features);
        }
        DriftSample {
            values: self.values,
            classes: self.classes,
            truncated,
        }
    }
}
