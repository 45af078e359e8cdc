//! Writing audit rows to PostgreSQL: a batch of any size is one statement, `insert … select …
//! from unnest($1::text[], $2::int8[], …)`, one array per column of the column list, so it is
//! one round trip and one implicit transaction, and never meets the server's limit of 65,535
//! bound values per statement that multi-row VALUES would.

use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use sqlx::PgPool;

use crate::audit::columns::{self, Cell, Column};
use crate::audit::record::{AuditRecord, Feedback, Written, format_time};

/// The batch insert, built once from the column list: plain, or skipping rows already stored
/// (`skip_stored`). The duplicate check costs the server about a fifth of the insert, so it is
/// only paid when a plain insert met a row already there (see [`write_rows`]).
fn insert_sql(skip_stored: bool) -> &'static str {
    static SQL: OnceLock<[String; 2]> = OnceLock::new();
    let [plain, skipping] = SQL.get_or_init(|| {
        let arrays: Vec<String> = columns::written()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, c.pg_array()))
            .collect();
        let plain = format!(
            "insert into prediction ({}) select * from unnest({})",
            columns::insert_list(),
            arrays.join(", ")
        );
        let skipping = format!("{plain} on conflict (request_id, item, received_at) do nothing");
        [plain, skipping]
    });
    if skip_stored { skipping } else { plain }
}

/// The batch insert with its arrays bound.
fn bound<'q>(
    sql: &'q str,
    records: &[&AuditRecord],
    stored_at: Instant,
) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
    let mut q = sqlx::query(sql);
    for column in columns::written() {
        q = match column_values(column, records, stored_at) {
            ColumnValues::Text(v) => q.bind(v),
            ColumnValues::Int(v) => q.bind(v),
        };
    }
    q
}

/// PostgreSQL's `unique_violation`.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// One column's values over the batch, as the array it is bound as.
enum ColumnValues {
    Text(Vec<Option<String>>),
    Int(Vec<Option<i64>>),
}

fn column_values(column: Column, records: &[&AuditRecord], stored_at: Instant) -> ColumnValues {
    let is_int = column.pg_array() == "int8[]";
    if is_int {
        ColumnValues::Int(
            records
                .iter()
                .map(|r| match r.cell(column, stored_at) {
                    Cell::Int(v) => Some(v),
                    _ => None,
                })
                .collect(),
        )
    } else {
        ColumnValues::Text(
            records
                .iter()
                .map(|r| match r.cell(column, stored_at) {
                    Cell::Text(s) | Cell::Json(s) => Some(s.to_string()),
                    Cell::Time(t) => Some(format_time(t)),
                    Cell::Int(v) => Some(v.to_string()),
                    Cell::Null => None,
                })
                .collect(),
        )
    }
}

/// Writes `records` in one statement; rows already stored (same request id, item and arrival)
/// are skipped. The write moment is taken when a connection is in hand, just before the
/// statement is sent: durable rows' latencies include the wait for a connection.
pub(super) async fn write_rows(pool: &PgPool, records: &[&AuditRecord]) -> anyhow::Result<Written> {
    if records.is_empty() {
        return Ok(Written {
            at: Instant::now(),
            inserted: 0,
        });
    }
    let mut conn = pool
        .acquire()
        .await
        .context("taking a connection to the audit database")?;
    let stored_at = Instant::now();
    // A plain insert first; a batch holding a row already stored (a replayed spill file, a
    // copy run again, a retry of a commit whose outcome was lost) failed as a whole, wrote
    // nothing, and is written again skipping those rows.
    let done = match bound(insert_sql(false), records, stored_at)
        .execute(&mut *conn)
        .await
    {
        Err(e) if is_unique_violation(&e) => {
            bound(insert_sql(true), records, stored_at)
                .execute(&mut *conn)
                .await
        }
        other => other,
    }
    .context("inserting audit rows")?;
    Ok(Written {
        at: stored_at,
        inserted: done.rows_affected(),
    })
}

/// Inserts a row in a transaction and rolls it back.
pub(super) async fn probe(pool: &PgPool) -> anyhow::Result<()> {
    let probe = AuditRecord::probe(None);
    let mut tx = pool.begin().await.context("starting a probe transaction")?;
    bound(insert_sql(true), &[&probe], Instant::now())
        .execute(&mut *tx)
        .await
        .context("inserting a probe row")?;
    tx.rollback().await.context("rolling back the probe")?;
    Ok(())
}

/// Stores a feedback row unless an identical one is there (copying a store twice).
pub(super) async fn copy_feedback(pool: &PgPool, fb: &Feedback) -> anyhow::Result<bool> {
    let done = sqlx::query(
        "insert into feedback (request_id, item, label, received_at, client_addr) \
         select $1, $2, $3, $4::timestamptz, $5 where not exists (select 1 from feedback \
         where request_id = $1 and item = $2 and label = $3 and received_at = $4::timestamptz)",
    )
    .bind(&fb.request_id)
    .bind(fb.item as i32)
    .bind(&fb.label)
    .bind(format_time(&fb.received_at))
    .bind(fb.client_addr.as_deref())
    .execute(pool)
    .await
    .context("copying feedback")?;
    Ok(done.rows_affected() == 1)
}

/// Stores a true label; returns the label it replaces, if any. Both in one transaction.
pub(super) async fn feedback(pool: &PgPool, fb: &Feedback) -> anyhow::Result<Option<String>> {
    let mut tx = pool.begin().await.context("storing feedback")?;
    let previous: Option<String> = sqlx::query_scalar(
        "select label from feedback where request_id = $1 and item = $2 \
         order by id desc limit 1",
    )
    .bind(&fb.request_id)
    .bind(fb.item as i32)
    .fetch_optional(&mut *tx)
    .await?;
    sqlx::query(
        "insert into feedback (request_id, item, label, received_at, client_addr) \
         values ($1, $2, $3, $4::timestamptz, $5)",
    )
    .bind(&fb.request_id)
    .bind(fb.item as i32)
    .bind(&fb.label)
    .bind(format_time(&fb.received_at))
    .bind(fb.client_addr.as_deref())
    .execute(&mut *tx)
    .await
    .context("storing feedback")?;
    tx.commit().await.context("committing feedback")?;
    Ok(previous)
}
