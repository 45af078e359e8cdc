//! The PostgreSQL backend's own side of reads (the queries both backends share are in
//! [`crate::audit::sql::reads`]): oldest-first pages that follow the transaction horizon, and
//! reads bounded by a statement timeout.

use std::time::{Duration, Instant};

use anyhow::Context;
use sqlx::postgres::PgPool;
use sqlx::{Postgres, QueryBuilder, Row};

use crate::audit::columns;
use crate::audit::filter::{AuditFilter, Cursor, Order, Page};
use crate::audit::sql::{self, Dialect, clause, reads};

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
        let mut conn = pool.acquire().await.context("opening a read")?;
        let select = <Postgres as Dialect>::select_list();
        let records = reads::page::<Postgres>(&mut conn, select, filter, after, limit).await?;
        return Ok(Page::of(records, Order::Desc));
    }
    let (horizon, began) = snapshot(pool).await?;
    let page = read_page(pool, filter, after, limit, horizon).await?;
    if page.records.len() >= limit || horizon >= began || catch_up.is_zero() {
        return Ok(page);
    }
    let deadline = Instant::now() + catch_up;
    loop {
        tokio::time::sleep(Duration::from_millis(2)).await;
        let (now, _) = snapshot(pool).await?;
        if now >= began || Instant::now() >= deadline {
            return if now > horizon {
                read_page(pool, filter, after, limit, now).await
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

/// One page, oldest first: only rows of transactions below `horizon`, in (transaction, id)
/// order.
async fn read_page(
    pool: &PgPool,
    filter: &AuditFilter,
    after: Option<Cursor>,
    limit: usize,
    horizon: i64,
) -> anyhow::Result<Page> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "select {}, txid::text::int8 from prediction",
        columns::pg_select_list()
    ));
    clause::push_where(&mut qb, filter, "");
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
    qb.push(" order by txid, id limit ").push_bind(limit as i64);
    let rows = qb
        .build()
        .fetch_all(pool)
        .await
        .context("reading audit rows")?;
    let mut page = Page::default();
    let tx_column = columns::ALL.len();
    for row in &rows {
        let record = sql::decode_row(row)?;
        page.positions.push(Cursor {
            id: record.id,
            txid: Some(row.try_get(tx_column)?),
            at: None,
        });
        page.records.push(record);
    }
    Ok(page)
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
