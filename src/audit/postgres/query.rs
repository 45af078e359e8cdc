//! The reads of the PostgreSQL backend: the SQLite backend's queries in PostgreSQL's dialect.
//! The filter clause and row decoding are shared ([`crate::audit::sql`]); times are bound as
//! text and cast, and columns are selected in the shared row types' form
//! ([`crate::audit::columns::pg_select_list`]).

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::TryStreamExt;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::audit::columns;
use crate::audit::filter::{
    AuditFilter, ConfusionCell, Count, Cursor, DriftSample, LatencySummary, Order, Page, ServedRow,
    Summary, SummarySource,
};
use crate::audit::record::{RequestRef, StoredFeedback, StoredRecord};
use crate::audit::rollup::{PackedRow, ReadPlan, RollupRange};
use crate::audit::sql;

const TIME_CAST: &str = "::timestamptz";

fn push_where_on(qb: &mut QueryBuilder<'_, Postgres>, f: &AuditFilter, p: &str) {
    sql::push_where(qb, f, p, TIME_CAST);
}

/// A page of rows. Newest first (`desc`), positions are ids, as on SQLite. Oldest first
/// (`asc`, how a reader tails the store), rows come in (writing transaction, id) order, and
/// only rows of transactions older than every transaction still open (the horizon,
/// `pg_snapshot_xmin(pg_current_snapshot())`): with several writers, ids are not committed in
/// order, and a transaction still open could add a row below one already committed. Such a
/// transaction's rows all sort after the horizon, so a reader following the positions sees
/// every row exactly once, however the replicas' commits interleave.
///
/// The horizon is the whole server's: any writing transaction, in any database, holds it
/// back while it is open. So a page that comes back short (the end of the rows) while
/// transactions were open when the read began waits for them to end, for at most `catch_up`
/// (`INFERLOG_PG_CATCH_UP_MS`), and is read again: the read then holds every row committed
/// before it began, as a client that has just been answered expects, unless a transaction
/// stays open longer.
pub(super) async fn page(
    pool: &PgPool,
    filter: &AuditFilter,
    after: Option<Cursor>,
    limit: usize,
    catch_up: Duration,
) -> anyhow::Result<Page> {
    if filter.order == Order::Desc {
        return read_page(pool, filter, after, limit, None).await;
    }
    let (horizon, began) = snapshot(pool).await?;
    let page = read_page(pool, filter, after, limit, Some(horizon)).await?;
    if page.records.len() >= limit || horizon >= began || catch_up.is_zero() {
        return Ok(page);
    }
    let deadline = Instant::now() + catch_up;
    loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let (now, _) = snapshot(pool).await?;
        if now >= began || Instant::now() >= deadline {
            return if now > horizon {
                read_page(pool, filter, after, limit, Some(now)).await
            } else {
                Ok(page)
            };
        }
    }
}

/// The horizon now (the oldest transaction still open) and the id the next transaction will
/// get: every transaction that has begun has an id below it.
async fn snapshot(pool: &PgPool) -> anyhow::Result<(i64, i64)> {
    sqlx::query_as(
        "select pg_snapshot_xmin(s)::text::int8, pg_snapshot_xmax(s)::text::int8 \
         from pg_current_snapshot() s",
    )
    .fetch_one(pool)
    .await
    .context("reading the transaction horizon")
}

/// One page; oldest first, only rows of transactions below `horizon` (unused newest first).
async fn read_page(
    pool: &PgPool,
    filter: &AuditFilter,
    after: Option<Cursor>,
    limit: usize,
    horizon: Option<i64>,
) -> anyhow::Result<Page> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "select {}, txid::text::int8 from prediction",
        columns::pg_select_list()
    ));
    push_where_on(&mut qb, filter, "");
    match filter.order {
        // By arrival, then id, as on SQLite (the index on (received_at, id) walks it).
        Order::Desc => {
            sql::push_before(&mut qb, after, TIME_CAST);
            qb.push(" order by received_at desc, id desc limit ");
        }
        Order::Asc => {
            let horizon = horizon.context("an oldest-first read needs a horizon")?;
            qb.push(" and txid < ")
                .push_bind(horizon.to_string())
                .push("::xid8");
            match after {
                Some(Cursor {
                    id,
                    txid: Some(txid),
                    ..
                }) => {
                    qb.push(" and (txid, id) > (")
                        .push_bind(txid.to_string())
                        .push("::xid8, ")
                        .push_bind(id)
                        .push(")");
                }
                Some(Cursor { id, txid: None, .. }) => {
                    qb.push(" and id > ").push_bind(id);
                }
                None => {}
            }
            qb.push(" order by txid, id limit ");
        }
    }
    qb.push_bind(limit as i64);
    let rows = qb
        .build()
        .fetch_all(pool)
        .await
        .context("reading audit rows")?;
    let mut page = Page::default();
    let tx_column = columns::ALL.len();
    for row in &rows {
        let record = sql::decode_row(row)?;
        let position = match filter.order {
            Order::Desc => Cursor::before(&record),
            Order::Asc => Cursor {
                id: record.id,
                txid: Some(row.try_get(tx_column)?),
                at: None,
            },
        };
        page.records.push(record);
        page.positions.push(position);
    }
    Ok(page)
}

pub(super) async fn request(pool: &PgPool, request_id: &str) -> anyhow::Result<Vec<StoredRecord>> {
    let rows = sqlx::query(&format!(
        "select {} from prediction where request_id = $1 order by item, id",
        columns::pg_select_list()
    ))
    .bind(request_id)
    .fetch_all(pool)
    .await
    .context("reading a request's audit rows")?;
    rows.iter().map(sql::decode_row).collect()
}

pub(super) async fn client_requests(
    pool: &PgPool,
    client_id: &str,
    limit: usize,
) -> anyhow::Result<Vec<RequestRef>> {
    let rows = sqlx::query(&format!(
        "select request_id, min({}) from prediction where client_request_id = $1 \
         group by request_id order by min(id) limit $2",
        columns::Column::ReceivedAt.pg_select()
    ))
    .bind(client_id)
    .bind(limit as i64)
    .fetch_all(pool)
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
    pool: &PgPool,
    after: i64,
    limit: usize,
) -> anyhow::Result<Vec<StoredFeedback>> {
    let rows = sqlx::query(&format!(
        "select id, request_id, item::int8, label, {}, client_addr from feedback \
         where id > $1 order by id limit $2",
        columns::Column::ReceivedAt.pg_select()
    ))
    .bind(after)
    .bind(limit as i64)
    .fetch_all(pool)
    .await
    .context("reading feedback")?;
    rows.iter().map(sql::decode_feedback).collect()
}

/// A read transaction whose statements stop (`query_canceled`) after `limit`: an HTTP read of
/// the rows never runs (nor holds back vacuum) for longer.
pub(super) async fn bounded_read(
    pool: &PgPool,
    limit: std::time::Duration,
) -> anyhow::Result<sqlx::Transaction<'static, Postgres>> {
    let mut tx = pool.begin().await.context("opening a read")?;
    sqlx::query(&format!(
        "set local statement_timeout = {}",
        limit.as_millis().max(1)
    ))
    .execute(&mut *tx)
    .await
    .context("opening a read")?;
    Ok(tx)
}

pub(super) async fn summary(
    pool: &PgPool,
    filter: &AuditFilter,
    limit: std::time::Duration,
) -> anyhow::Result<Summary> {
    let mut tx = bounded_read(pool, limit).await?;
    let conn = &mut *tx;
    let mut qb = QueryBuilder::<Postgres>::new(
        "select count(*), count(distinct request_id) from prediction",
    );
    push_where_on(&mut qb, filter, "");
    let row = qb.build().fetch_one(&mut *conn).await?;
    let rows: i64 = row.try_get(0)?;
    let requests: i64 = row.try_get(1)?;

    let mut counts = Vec::new();
    for column in ["model", "label", "cast(status as text)", "error_code"] {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "select {column} as k, count(*) from prediction"
        ));
        push_where_on(&mut qb, filter, "");
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

    // Nearest-rank percentiles over one latency per request (its rows share it), as the
    // SQLite backend computes them, in one pass.
    let mut latency = LatencySummary::default();
    if rows > 0 {
        let mut qb = QueryBuilder::<Postgres>::new(
            "select percentile_disc(array[0.5, 0.9, 0.95, 0.99, 1.0]) \
             within group (order by l) from (select max(latency_us) as l from prediction",
        );
        push_where_on(&mut qb, filter, "");
        qb.push(" group by request_id) r");
        let at: Vec<i64> = qb.build().fetch_one(&mut *conn).await?.try_get(0)?;
        latency = LatencySummary {
            p50: at.first().copied(),
            p90: at.get(1).copied(),
            p95: at.get(2).copied(),
            p99: at.get(3).copied(),
            max: at.get(4).copied(),
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
/// time range (see the SQLite backend's `drift_rows`).
pub(super) async fn drift_rows(
    pool: &PgPool,
    limit: std::time::Duration,
    model: &str,
    n_features: usize,
    filter: &AuditFilter,
    max_rows: usize,
) -> anyhow::Result<DriftSample> {
    let mut tx = bounded_read(pool, limit).await?;
    let mut qb = sql::drift_query::<Postgres>(
        "features::text, prediction::int8",
        model,
        filter,
        max_rows,
        TIME_CAST,
    );
    let query = qb.build();
    let mut rows = query.fetch(&mut *tx);
    let mut drift = sql::DriftRows::new(n_features);
    while let Some(row) = rows.try_next().await.context("reading audited inputs")? {
        drift.push(row.try_get(0)?, row.try_get(1)?);
    }
    Ok(drift.finish(max_rows))
}

/// The rollup rows of a plan and the deltas not merged yet (see [`sql::rollup_query`]).
pub(super) async fn rollup_rows(
    pool: &PgPool,
    range: &RollupRange,
    plan: &ReadPlan,
) -> anyhow::Result<Vec<PackedRow>> {
    let rows = sql::rollup_query::<Postgres>(range, plan)
        .build()
        .fetch_all(pool)
        .await
        .context("reading the audit rollups")?;
    rows.iter().map(sql::decode_packed).collect()
}

pub(super) async fn served_row(
    pool: &PgPool,
    request_id: &str,
    item: i64,
) -> anyhow::Result<Option<ServedRow>> {
    let row = sqlx::query(
        "select model, label from prediction \
         where request_id = $1 and item = $2 and status = 200 order by id limit 1",
    )
    .bind(request_id)
    .bind(item as i32)
    .fetch_optional(pool)
    .await
    .context("looking up an audited prediction")?;
    row.as_ref().map(sql::decode_served).transpose()
}

pub(super) async fn confusion(
    pool: &PgPool,
    limit: std::time::Duration,
    model: &str,
    filter: &AuditFilter,
) -> anyhow::Result<Vec<ConfusionCell>> {
    let mut tx = bounded_read(pool, limit).await?;
    let mut qb = sql::confusion_query::<Postgres>(model, filter, TIME_CAST);
    let rows = qb
        .build()
        .fetch_all(&mut *tx)
        .await
        .context("joining feedback with predictions")?;
    rows.iter().map(sql::decode_confusion).collect()
}
