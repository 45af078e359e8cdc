//! The reads of the SQLite backend: pages of rows, one request's rows, summaries, and the
//! rows behind drift and performance. Values are always bound; only fixed column names are
//! spliced into the SQL.

use anyhow::Context;
use sqlx::sqlite::{SqliteConnection, SqlitePool, SqliteRow};
use sqlx::{QueryBuilder, Row, Sqlite};

use crate::audit::filter::{
    AuditFilter, ConfusionCell, Count, Cursor, DriftSample, LatencySummary, Order, ServedRow,
    Summary, SummarySource,
};
use crate::audit::record::{RequestRef, StoredFeedback, StoredRecord};
use crate::audit::rollup::{PackedRow, ReadPlan, RollupRange};
use crate::audit::sql;

pub(super) async fn page(
    read: &SqlitePool,
    select: &str,
    filter: &AuditFilter,
    after: Option<Cursor>,
    limit: usize,
) -> anyhow::Result<Vec<StoredRecord>> {
    let mut qb = QueryBuilder::<Sqlite>::new(format!("select {select} from prediction"));
    push_where(&mut qb, filter);
    match filter.order {
        Order::Asc => {
            if let Some(after) = after {
                qb.push(" and id > ").push_bind(after.id);
            }
            qb.push(" order by id asc limit ");
        }
        // By arrival, then id: a history copied in later (higher ids, older times) is not
        // listed ahead of live rows. The received_at index holds the rowid: no sort.
        Order::Desc => {
            sql::push_before(&mut qb, after, "");
            qb.push(" order by received_at desc, id desc limit ");
        }
    }
    qb.push_bind(limit as i64);
    let rows = qb
        .build()
        .fetch_all(read)
        .await
        .context("reading audit rows")?;
    rows.iter().map(decode).collect()
}

pub(super) async fn request(
    read: &SqlitePool,
    select: &str,
    request_id: &str,
) -> anyhow::Result<Vec<StoredRecord>> {
    let rows = sqlx::query(&format!(
        "select {select} from prediction where request_id = ? order by item, id"
    ))
    .bind(request_id)
    .fetch_all(read)
    .await
    .context("reading a request's audit rows")?;
    rows.iter().map(decode).collect()
}

pub(super) async fn client_requests(
    read: &SqlitePool,
    client_id: &str,
    limit: usize,
) -> anyhow::Result<Vec<RequestRef>> {
    let rows = sqlx::query(
        "select request_id, min(received_at) from prediction where client_request_id = ? \
         group by request_id order by min(id) limit ?",
    )
    .bind(client_id)
    .bind(limit as i64)
    .fetch_all(read)
    .await
    .context("looking up requests by the client's request id")?;
    Ok(rows
        .iter()
        .map(|r| RequestRef {
            request_id: r.get(0),
            received_at: r.get(1),
        })
        .collect())
}

pub(super) async fn feedback_after(
    read: &SqlitePool,
    after: i64,
    limit: usize,
) -> anyhow::Result<Vec<StoredFeedback>> {
    let rows = sqlx::query(
        "select id, request_id, item, label, received_at, client_addr from feedback \
         where id > ? order by id limit ?",
    )
    .bind(after)
    .bind(limit as i64)
    .fetch_all(read)
    .await
    .context("reading feedback")?;
    rows.iter().map(sql::decode_feedback).collect()
}

/// A connection of the read pool whose statements stop with `SQLITE_INTERRUPT` once a time
/// limit has passed since it was acquired: an HTTP read of the rows never holds a snapshot
/// (and so the WAL's checkpoints) for longer. SQLite checks the limit every 1,000 virtual
/// machine steps (microseconds).
pub(super) struct BoundedRead {
    conn: sqlx::pool::PoolConnection<Sqlite>,
    /// Cleared when dropped: the handler stays on the pooled connection until the next
    /// bounded read replaces it, and must then stop nothing.
    armed: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl BoundedRead {
    pub(super) async fn acquire(
        read: &SqlitePool,
        limit: std::time::Duration,
    ) -> anyhow::Result<BoundedRead> {
        use std::sync::atomic::{AtomicBool, Ordering};
        let mut conn = read.acquire().await.context("opening a read")?;
        let armed = std::sync::Arc::new(AtomicBool::new(true));
        let deadline = std::time::Instant::now() + limit;
        let live = std::sync::Arc::clone(&armed);
        conn.lock_handle()
            .await
            .context("opening a read")?
            .set_progress_handler(1000, move || {
                !live.load(Ordering::Relaxed) || std::time::Instant::now() < deadline
            });
        Ok(BoundedRead { conn, armed })
    }
}

impl std::ops::Deref for BoundedRead {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        &self.conn
    }
}

impl std::ops::DerefMut for BoundedRead {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        &mut self.conn
    }
}

impl Drop for BoundedRead {
    fn drop(&mut self) {
        self.armed
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
}

pub(super) async fn summary(
    conn: &mut SqliteConnection,
    filter: &AuditFilter,
) -> anyhow::Result<Summary> {
    let mut qb =
        QueryBuilder::<Sqlite>::new("select count(*), count(distinct request_id) from prediction");
    push_where(&mut qb, filter);
    let row = qb.build().fetch_one(&mut *conn).await?;
    let rows: i64 = row.try_get(0)?;
    let requests: i64 = row.try_get(1)?;

    let mut counts = Vec::new();
    for column in ["model", "label", "cast(status as text)", "error_code"] {
        let mut qb =
            QueryBuilder::<Sqlite>::new(format!("select {column} as k, count(*) from prediction"));
        push_where(&mut qb, filter);
        qb.push(" group by k order by count(*) desc, k");
        let list = qb
            .build()
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| {
                Ok(Count {
                    key: r.try_get(0)?,
                    count: r.try_get(1)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        counts.push(list);
    }

    // One latency per request (its rows share it), nearest-rank percentiles over them, in one
    // pass: the ranks' values picked from the sorted per-request latencies.
    let mut latency = LatencySummary::default();
    if requests > 0 {
        let nearest_rank = |p: f64| ((p * requests as f64).ceil() as i64).clamp(1, requests);
        let ranks = [
            nearest_rank(0.5),
            nearest_rank(0.9),
            nearest_rank(0.95),
            nearest_rank(0.99),
            requests,
        ];
        let mut qb =
            QueryBuilder::<Sqlite>::new("with r as (select max(latency_us) as l from prediction");
        push_where(&mut qb, filter);
        qb.push(
            " group by request_id), o as (select l, row_number() over (order by l) as n from r) \
             select n, l from o where n in (",
        );
        let mut list = qb.separated(", ");
        for rank in ranks {
            list.push_bind(rank);
        }
        qb.push(")");
        let found: Vec<(i64, i64)> = qb
            .build()
            .fetch_all(&mut *conn)
            .await?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<_, sqlx::Error>>()?;
        let at = |rank: i64| found.iter().find(|(n, _)| *n == rank).map(|(_, l)| *l);
        latency = LatencySummary {
            p50: at(ranks[0]),
            p90: at(ranks[1]),
            p95: at(ranks[2]),
            p99: at(ranks[3]),
            max: at(ranks[4]),
        };
    }
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

/// Features and predicted classes of the most recent `max_rows` answered rows of `model` in a
/// time range, for drift: row-major values of the rows that have `n_features` features, and
/// whether the range held more.
pub(super) async fn drift_rows(
    conn: &mut SqliteConnection,
    model: &str,
    n_features: usize,
    filter: &AuditFilter,
    max_rows: usize,
) -> anyhow::Result<DriftSample> {
    use futures_util::TryStreamExt;
    let mut qb = sql::drift_query::<Sqlite>("features, prediction", model, filter, max_rows, "");
    let query = qb.build();
    let mut rows = query.fetch(conn);
    let mut drift = sql::DriftRows::new(n_features);
    while let Some(row) = rows.try_next().await.context("reading audited inputs")? {
        drift.push(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(drift.finish(max_rows))
}

/// The rollup rows of a plan and the deltas not merged yet (see [`sql::rollup_query`]).
pub(super) async fn rollup_rows(
    read: &SqlitePool,
    range: &RollupRange,
    plan: &ReadPlan,
) -> anyhow::Result<Vec<PackedRow>> {
    let rows = sql::rollup_query::<Sqlite>(range, plan)
        .build()
        .fetch_all(read)
        .await
        .context("reading the audit rollups")?;
    rows.iter().map(sql::decode_packed).collect()
}

/// The model and predicted label of an answered row, if it exists.
pub(super) async fn served_row(
    read: &SqlitePool,
    request_id: &str,
    item: i64,
) -> anyhow::Result<Option<ServedRow>> {
    let row = sqlx::query(
        "select model, label from prediction \
         where request_id = ? and item = ? and status = 200 order by id limit 1",
    )
    .bind(request_id)
    .bind(item)
    .fetch_optional(read)
    .await
    .context("looking up an audited prediction")?;
    row.as_ref().map(sql::decode_served).transpose()
}

/// (predicted label, true label, count) of the labelled rows of `model` in a range.
pub(super) async fn confusion(
    conn: &mut SqliteConnection,
    model: &str,
    filter: &AuditFilter,
) -> anyhow::Result<Vec<ConfusionCell>> {
    let mut qb = sql::confusion_query::<Sqlite>(model, filter, "");
    let rows = qb
        .build()
        .fetch_all(conn)
        .await
        .context("joining feedback with predictions")?;
    rows.iter().map(sql::decode_confusion).collect()
}

fn push_where_on(qb: &mut QueryBuilder<'_, Sqlite>, f: &AuditFilter, p: &str) {
    sql::push_where(qb, f, p, "");
}

fn push_where(qb: &mut QueryBuilder<'_, Sqlite>, f: &AuditFilter) {
    push_where_on(qb, f, "");
}

/// A whole row (selected with [`columns::select_list`]) as a [`StoredRecord`].
fn decode(row: &SqliteRow) -> anyhow::Result<StoredRecord> {
    sql::decode_row(row)
}
