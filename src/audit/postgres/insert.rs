//! Writing audit rows to PostgreSQL. A batch of any size is one `COPY prediction (…) from
//! stdin (format binary)`: the values go in their binary forms, nothing is parsed from text on
//! the server, and there is no limit on bound values (65,535 per statement) as multi-row
//! VALUES would meet. A batch holding a row already stored is written again by one `insert …
//! select … from unnest($1::text[], …) on conflict do nothing`, one array per column.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use sqlx::PgPool;

use crate::audit::columns::{self, Cell, Column};
use crate::audit::record::{AuditRecord, Feedback, Written, format_time};

/// The batch insert that skips rows already stored, built once from the column list. The
/// duplicate check costs the server about a fifth of the insert, so it is only paid when the
/// `COPY` met a row already there (see [`write_rows`]).
fn insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        let arrays: Vec<String> = columns::written()
            .enumerate()
            .map(|(i, c)| format!("${}::{}", i + 1, c.pg_array()))
            .collect();
        format!(
            "insert into prediction ({}) select * from unnest({}) \
             on conflict (request_id, item, received_at) do nothing",
            columns::insert_list(),
            arrays.join(", ")
        )
    })
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

/// `copy prediction (…) from stdin (format binary)`, the columns of the column list.
fn copy_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "copy prediction ({}) from stdin with (format binary)",
            columns::insert_list()
        )
    })
}

/// Microseconds from the Unix epoch to PostgreSQL's, 2000-01-01 00:00:00 UTC.
const PG_EPOCH_US: i64 = 946_684_800_000_000;

/// The rows in `COPY`'s binary format: a header, then per row the field count and each
/// field as its length and its bytes in the column type's binary form (`int4`, `int8`,
/// `timestamptz` as microseconds since 2000, `jsonb` as version 1 and the JSON text), and a
/// trailer.
fn copy_data(records: &[&AuditRecord], stored_at: Instant) -> Vec<u8> {
    let mut out = Vec::with_capacity(19 + records.len() * 256);
    out.extend_from_slice(b"PGCOPY\n\xff\r\n\0");
    out.extend_from_slice(&0i32.to_be_bytes());
    out.extend_from_slice(&0i32.to_be_bytes());
    let fields = columns::written().count() as i16;
    for r in records {
        out.extend_from_slice(&fields.to_be_bytes());
        for column in columns::written() {
            let field = |out: &mut Vec<u8>, bytes: &[u8]| {
                out.extend_from_slice(&(bytes.len() as i32).to_be_bytes());
                out.extend_from_slice(bytes);
            };
            match r.cell(column, stored_at) {
                Cell::Null => out.extend_from_slice(&(-1i32).to_be_bytes()),
                Cell::Int(v) if is_int4(column) => field(&mut out, &(v as i32).to_be_bytes()),
                Cell::Int(v) => field(&mut out, &v.to_be_bytes()),
                Cell::Text(t) => field(&mut out, storable(t).as_bytes()),
                Cell::Json(j) => {
                    out.extend_from_slice(&(j.len() as i32 + 1).to_be_bytes());
                    out.push(1);
                    out.extend_from_slice(j.as_bytes());
                }
                Cell::Time(t) => field(
                    &mut out,
                    &(t.timestamp_micros() - PG_EPOCH_US).to_be_bytes(),
                ),
            }
        }
    }
    out.extend_from_slice(&(-1i16).to_be_bytes());
    out
}

/// `text` with its NUL characters replaced by U+FFFD: PostgreSQL refuses NUL in text (and a
/// row it refuses would fail its whole batch, again at every retry). Clients can send one (a
/// rejected body, a model name in the path); SQLite keeps it as it came.
fn storable(text: &str) -> Cow<'_, str> {
    if text.contains('\0') {
        Cow::Owned(text.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(text)
    }
}

/// Integer columns stored as `integer` (the rest are `bigint`).
fn is_int4(column: Column) -> bool {
    matches!(column, Column::Item | Column::Prediction | Column::Status)
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
                    Cell::Text(s) | Cell::Json(s) => Some(storable(s).into_owned()),
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
    // `COPY` first: the fastest way in (BENCHMARKS.md, session 5). It cannot skip rows, so a
    // batch holding a row already stored (a replayed spill file, a copy run again, a retry of
    // a commit whose outcome was lost) fails as a whole, writes nothing, and is written again
    // by the insert that skips those rows.
    let copied = async {
        let mut copy = conn.copy_in_raw(copy_sql()).await?;
        copy.send(copy_data(records, stored_at)).await?;
        copy.finish().await
    }
    .await;
    let inserted = match copied {
        Ok(n) => n,
        Err(e) if is_unique_violation(&e) => bound(insert_sql(), records, stored_at)
            .execute(&mut *conn)
            .await
            .context("inserting audit rows")?
            .rows_affected(),
        Err(e) => return Err(e).context("copying audit rows"),
    };
    Ok(Written {
        at: stored_at,
        inserted,
    })
}

/// Inserts a row in a transaction and rolls it back.
pub(super) async fn probe(pool: &PgPool) -> anyhow::Result<()> {
    let probe = AuditRecord::probe(None);
    let mut tx = pool.begin().await.context("starting a probe transaction")?;
    bound(insert_sql(), &[&probe], Instant::now())
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
