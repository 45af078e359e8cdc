//! The clauses the shared queries are built from: the filter of the audit reads as a WHERE
//! clause (values always bound, only fixed column names spliced), the newest-first position,
//! and the queries behind drift, the confusion matrix and the rollup reads.

use super::dialect::{Builder, Dialect};
use crate::audit::filter::{AuditFilter, Cursor, StatusFilter};
use crate::audit::rollup::{HOUR, ReadPlan, RollupRange};

/// The filter as a WHERE clause; `p` qualifies the columns (`"p."` in joins, else `""`).
pub(crate) fn push_where<DB: Dialect>(qb: &mut Builder<DB>, f: &AuditFilter, p: &str) {
    qb.push(" where 1 = 1");
    if let Some(t) = &f.since {
        qb.push(format!(" and {p}received_at >= "));
        DB::bind_time(qb, t);
    }
    if let Some(t) = &f.until {
        qb.push(format!(" and {p}received_at < "));
        DB::bind_time(qb, t);
    }
    let texts = [
        ("model", &f.model),
        ("model_version", &f.model_version),
        ("label", &f.label),
        ("request_id", &f.request_id),
        ("client_request_id", &f.client_request_id),
    ];
    for (column, value) in texts {
        if let Some(v) = value {
            qb.push(format!(" and {p}{column} = "));
            DB::bind_text(qb, v.clone());
        }
    }
    if let Some(v) = f.min_latency_us {
        qb.push(format!(" and {p}latency_us >= "));
        DB::bind_int(qb, v);
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

/// Newest first, the rows after `after` in (arrival, id) order: `and (received_at, id) <
/// (at, id)`. A cursor without an arrival time (given out before newest-first pages sorted by
/// arrival) continues by id.
pub(crate) fn push_before<DB: Dialect>(qb: &mut Builder<DB>, after: Option<Cursor>) {
    let Some(after) = after else { return };
    match after.at_text() {
        Some(at) => {
            qb.push(" and (received_at, id) < (");
            DB::bind_text(qb, at);
            qb.push(format!("{}, ", DB::TIME_CAST));
            DB::bind_int(qb, after.id);
            qb.push(")");
        }
        None => {
            qb.push(" and id < ");
            DB::bind_int(qb, after.id);
        }
    }
}

/// The query behind a drift report: features (JSON text) and predicted class of the most
/// recent answered rows of `model` in the filter's range, one more than `max_rows` (to tell a
/// truncated range).
pub(crate) fn drift_query<DB: Dialect>(
    model: &str,
    filter: &AuditFilter,
    max_rows: usize,
) -> Builder<DB> {
    use crate::audit::columns::Column;
    let mut qb = Builder::<DB>::new(format!(
        "select {}, {}, value from prediction",
        DB::select(Column::Features),
        DB::select(Column::Prediction)
    ));
    push_where(&mut qb, filter, "");
    qb.push(" and status = 200 and model = ");
    DB::bind_text(&mut qb, model.to_string());
    qb.push(" order by id desc limit ");
    DB::bind_int(
        &mut qb,
        max_rows.saturating_add(1).min(i64::MAX as usize) as i64,
    );
    qb
}

/// The query behind the confusion matrix: (predicted label, true label, count) of the answered
/// rows of `model` with feedback, in the filter's range.
pub(crate) fn confusion_query<DB: Dialect>(model: &str, filter: &AuditFilter) -> Builder<DB> {
    let mut qb = Builder::<DB>::new(
        "select coalesce(p.label, ''), t.true_label, count(*) from prediction p \
         join ground_truth t on t.request_id = p.request_id and t.item = p.item",
    );
    push_where(&mut qb, filter, "p.");
    // A truth without a label (a value) is no cell of a confusion; a row without a label (a
    // regression model's, under a name that changed task) is predicted `''`, as the rollups
    // count it.
    qb.push(" and p.status = 200 and t.true_label is not null and p.model = ");
    DB::bind_text(&mut qb, model.to_string());
    qb.push(" group by coalesce(p.label, ''), t.true_label");
    qb
}

/// (answer, true value) of the answered rows of the regression model `model` in the range of
/// `filter` that have a true value.
pub(crate) fn regression_pairs_query<DB: Dialect>(
    model: &str,
    filter: &AuditFilter,
) -> Builder<DB> {
    let mut qb = Builder::<DB>::new(
        "select p.value, t.true_value from prediction p \
         join ground_truth t on t.request_id = p.request_id and t.item = p.item",
    );
    push_where(&mut qb, filter, "p.");
    qb.push(
        " and p.status = 200 and p.value is not null and t.true_value is not null and p.model = ",
    );
    DB::bind_text(&mut qb, model.to_string());
    qb
}

/// The rollup rows a [`ReadPlan`] names, then every delta not merged yet, in one statement
/// (one snapshot: a merge moves counts from the deltas to `rollup` in one transaction, so each
/// is read exactly once): `span, start, model, counts` (see
/// [`PackedRow`](crate::audit::rollup::PackedRow)).
pub(crate) fn rollup_query<DB: Dialect>(range: &RollupRange, plan: &ReadPlan) -> Builder<DB> {
    let mut qb = Builder::<DB>::new("select span, start, model, counts from rollup where (1 = 0");
    let part = |qb: &mut Builder<DB>, span: i64, (since, until): (Option<i64>, Option<i64>)| {
        qb.push(" or (span = ");
        DB::bind_int(qb, span);
        if let Some(m) = since {
            qb.push(" and start >= ");
            DB::bind_int(qb, m);
        }
        if let Some(m) = until {
            qb.push(" and start < ");
            DB::bind_int(qb, m);
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
        qb.push(" and model = ");
        DB::bind_text(&mut qb, v.clone());
    }
    if let Some(v) = &range.model_version {
        qb.push(" and model_version = ");
        DB::bind_text(&mut qb, v.clone());
    }
    qb.push(" union all select 0, 0, '', counts from rollup_delta");
    qb
}
