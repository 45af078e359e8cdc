//! The reads both backends share, written once over [`Dialect`]: each takes a connection the
//! backend chose (a pooled one, or one whose statements stop at the read timeout) and gives
//! typed rows. What differs stays in the backends: PostgreSQL's oldest-first pages follow the
//! transaction horizon.

use anyhow::Context;

use super::clause::{
    confusion_query, drift_query, push_before, push_where, regression_pairs_query, rollup_query,
};
use super::decode::DriftRows;
use super::dialect::{Builder, Dialect};
use crate::audit::columns::Column;
use crate::audit::filter::{
    AuditFilter, ConfusionCell, Count, Cursor, DriftSample, LatencySummary, Order, ServedRow,
    Summary, SummarySource,
};
use crate::audit::record::{RequestRef, StoredFeedback, StoredRecord};
use crate::audit::rollup::{PackedRow, ReadPlan, RollupRange};

/// An id holding a NUL character, which no stored id holds (ours are UUIDs, clients' come in
/// a header) and PostgreSQL refuses as a parameter: it matches nothing, without a query.
fn unmatchable(id: &str) -> bool {
    id.contains('\0')
}

/// Up to `limit` whole rows (`select` lists them) matching `filter` after `after`: newest
/// first by arrival, then id (a history copied in later, with higher ids and older times, is
/// not listed ahead of live rows), or oldest first by id, where ids are committed in order.
pub(crate) async fn page<DB: Dialect>(
    conn: &mut DB::Connection,
    select: &str,
    filter: &AuditFilter,
    after: Option<Cursor>,
    limit: usize,
) -> anyhow::Result<Vec<StoredRecord>> {
    let mut qb = Builder::<DB>::new(format!("select {select} from prediction"));
    push_where(&mut qb, filter, "");
    match filter.order {
        Order::Asc => {
            if let Some(after) = after {
                qb.push(" and id > ");
                DB::bind_int(&mut qb, after.id);
            }
            qb.push(" order by id asc limit ");
        }
        Order::Desc => {
            push_before(&mut qb, after);
            qb.push(" order by received_at desc, id desc limit ");
        }
    }
    DB::bind_int(&mut qb, limit as i64);
    DB::rows(conn, qb).await.context("reading audit rows")
}

/// The rows of one request, by item.
pub(crate) async fn request<DB: Dialect>(
    conn: &mut DB::Connection,
    select: &str,
    request_id: &str,
) -> anyhow::Result<Vec<StoredRecord>> {
    if unmatchable(request_id) {
        return Ok(Vec::new());
    }
    let mut qb = Builder::<DB>::new(format!(
        "select {select} from prediction where request_id = "
    ));
    DB::bind_text(&mut qb, request_id.to_string());
    qb.push(" order by item, id");
    DB::rows(conn, qb)
        .await
        .context("reading a request's audit rows")
}

/// The requests (oldest first, at most `limit`) that sent `client_id` as their `X-Request-Id`.
pub(crate) async fn client_requests<DB: Dialect>(
    conn: &mut DB::Connection,
    client_id: &str,
    limit: usize,
) -> anyhow::Result<Vec<RequestRef>> {
    if unmatchable(client_id) {
        return Ok(Vec::new());
    }
    let mut qb = Builder::<DB>::new(format!(
        "select request_id, min({}) from prediction where client_request_id = ",
        DB::select(Column::ReceivedAt)
    ));
    DB::bind_text(&mut qb, client_id.to_string());
    qb.push(" group by request_id order by min(id) limit ");
    DB::bind_int(&mut qb, limit as i64);
    DB::rows(conn, qb)
        .await
        .context("looking up requests by the client's request id")
}

/// Up to `limit` feedback rows after the feedback id `after`, oldest first; `value` is the
/// select of the true value (`null` for a store from before feedback held values).
pub(crate) async fn feedback_after<DB: Dialect>(
    conn: &mut DB::Connection,
    value: &str,
    after: i64,
    limit: usize,
) -> anyhow::Result<Vec<StoredFeedback>> {
    let mut qb = Builder::<DB>::new(format!(
        "select id, request_id, {}, label, {}, client_addr, {value} from feedback where id > ",
        DB::select(Column::Item),
        DB::select(Column::ReceivedAt)
    ));
    DB::bind_int(&mut qb, after);
    qb.push(" order by id limit ");
    DB::bind_int(&mut qb, limit as i64);
    DB::rows(conn, qb).await.context("reading feedback")
}

/// The summary of the rows `filter` selects, counted from the rows.
pub(crate) async fn summary<DB: Dialect>(
    conn: &mut DB::Connection,
    filter: &AuditFilter,
) -> anyhow::Result<Summary> {
    let mut qb = Builder::<DB>::new("select count(*), count(distinct request_id) from prediction");
    push_where(&mut qb, filter, "");
    let (rows, requests) = DB::rows::<(i64, i64)>(&mut *conn, qb)
        .await?
        .into_iter()
        .next()
        .unwrap_or_default();
    let mut counts = Vec::new();
    for column in ["model", "label", "cast(status as text)", "error_code"] {
        let mut qb = Builder::<DB>::new(format!("select {column} as k, count(*) from prediction"));
        push_where(&mut qb, filter, "");
        qb.push(" group by k order by count(*) desc, k");
        counts.push(DB::rows::<Count>(&mut *conn, qb).await?);
    }
    let latency = latency_percentiles::<DB>(conn, filter, requests).await?;
    let mut counts = counts.into_iter();
    Ok(Summary {
        rows,
        requests,
        by_model: counts.next().unwrap_or_default(),
        by_label: counts.next().unwrap_or_default(),
        by_status: counts.next().unwrap_or_default(),
        by_error_code: counts.next().unwrap_or_default(),
        latency_us: latency,
        source: SummarySource::Rows,
    })
}

/// Nearest-rank percentiles over one latency per request (its rows share it), in one pass:
/// the ranks' values picked from the sorted per-request latencies.
async fn latency_percentiles<DB: Dialect>(
    conn: &mut DB::Connection,
    filter: &AuditFilter,
    requests: i64,
) -> anyhow::Result<LatencySummary> {
    if requests == 0 {
        return Ok(LatencySummary::default());
    }
    let nearest_rank = |p: f64| ((p * requests as f64).ceil() as i64).clamp(1, requests);
    let ranks = [
        nearest_rank(0.5),
        nearest_rank(0.9),
        nearest_rank(0.95),
        nearest_rank(0.99),
        requests,
    ];
    let mut qb = Builder::<DB>::new("with r as (select max(latency_us) as l from prediction");
    push_where(&mut qb, filter, "");
    qb.push(
        " group by request_id), o as (select l, row_number() over (order by l) as n from r) \
         select n, l from o where n in (",
    );
    for (i, rank) in ranks.into_iter().enumerate() {
        if i > 0 {
            qb.push(", ");
        }
        DB::bind_int(&mut qb, rank);
    }
    qb.push(")");
    let found = DB::rows::<(i64, i64)>(conn, qb).await?;
    let at = |rank: i64| found.iter().find(|(n, _)| *n == rank).map(|(_, l)| *l);
    Ok(LatencySummary {
        p50: at(ranks[0]),
        p90: at(ranks[1]),
        p95: at(ranks[2]),
        p99: at(ranks[3]),
        max: at(ranks[4]),
    })
}

/// Features and predicted classes of the most recent `max_rows` answered rows of `model` in a
/// time range, for drift: row-major values of the rows that have `n_features` features, and
/// whether the range held more. Streamed: the rows are never all held at once.
pub(crate) async fn drift_rows<DB: Dialect>(
    conn: &mut DB::Connection,
    model: &str,
    n_features: usize,
    filter: &AuditFilter,
    max_rows: usize,
) -> anyhow::Result<DriftSample> {
    let mut drift = DriftRows::new(n_features);
    DB::for_each(
        conn,
        drift_query::<DB>(model, filter, max_rows),
        |(features, class, value)| drift.push(features, class, value),
    )
    .await
    .context("reading audited inputs")?;
    Ok(drift.finish(max_rows))
}

/// The rollup rows of a plan and the deltas not merged yet (see [`rollup_query`]).
pub(crate) async fn rollup_rows<DB: Dialect>(
    conn: &mut DB::Connection,
    range: &RollupRange,
    plan: &ReadPlan,
) -> anyhow::Result<Vec<PackedRow>> {
    DB::rows(conn, rollup_query::<DB>(range, plan))
        .await
        .context("reading the audit rollups")
}

/// The model and predicted label of an answered row, if it exists.
pub(crate) async fn served_row<DB: Dialect>(
    conn: &mut DB::Connection,
    request_id: &str,
    item: i64,
) -> anyhow::Result<Option<ServedRow>> {
    if unmatchable(request_id) {
        return Ok(None);
    }
    let mut qb = Builder::<DB>::new("select model, label from prediction where request_id = ");
    DB::bind_text(&mut qb, request_id.to_string());
    qb.push(" and item = ");
    DB::bind_int(&mut qb, item);
    qb.push(" and status = 200 order by id");
    DB::first(conn, qb)
        .await
        .context("looking up an audited prediction")
}

/// (predicted label, true label, count) of the labelled answered rows of `model` in a range.
pub(crate) async fn regression_pairs<DB: Dialect>(
    conn: &mut DB::Connection,
    model: &str,
    filter: &AuditFilter,
) -> anyhow::Result<Vec<(f64, f64)>> {
    DB::rows(conn, regression_pairs_query::<DB>(model, filter))
        .await
        .context("joining true values with predictions")
}

pub(crate) async fn confusion<DB: Dialect>(
    conn: &mut DB::Connection,
    model: &str,
    filter: &AuditFilter,
) -> anyhow::Result<Vec<ConfusionCell>> {
    DB::rows(conn, confusion_query::<DB>(model, filter))
        .await
        .context("joining feedback with predictions")
}
