//! Writing audit rows to PostgreSQL. A batch of any size is one `COPY prediction (…) from
//! stdin (format binary)`: the values go in their binary forms, nothing is parsed from text on
//! the server, and there is no limit on bound values (65,535 per statement) as multi-row
//! VALUES would meet. A batch holding a row already stored is written again by one `insert …
//! select … from unnest($1::text[], …) on conflict do nothing`, one array per column.

use std::borrow::Cow;
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::Context;
use sqlx::{Executor, PgConnection, PgPool};

use crate::audit::baselines::Baselines;
use crate::audit::columns::{self, Cell, Column};
use crate::audit::modes::RowsDone;
use crate::audit::record::{AuditRecord, Written, format_time};
use crate::audit::rollup::{Delta, fold_deltas};
use crate::audit::sql::{Dialect, writes};
use sqlx::Postgres;

/// The batch insert that skips rows already stored, built once from the column list. The
/// duplicate check costs the server about a fifth of the insert, so it is only paid when the
/// `COPY` met a row already there (see [`write_rows`]).
fn insert_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "{} on conflict (request_id, item, received_at) do nothing returning request_id, item",
            unnest_insert()
        )
    })
}

/// `insert into prediction (…) select * from unnest($1::…, …)`: one array per written column,
/// bound by [`bound`], as parameters 1 to 15.
fn unnest_insert() -> String {
    let arrays: Vec<String> = columns::written()
        .enumerate()
        .map(|(i, c)| format!("${}::{}", i + 1, c.pg_array()))
        .collect();
    format!(
        "insert into prediction ({}) select * from unnest({})",
        columns::insert_list(),
        arrays.join(", ")
    )
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
            ColumnValues::Float(v) => q.bind(v),
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
                Cell::Float(v) => field(&mut out, &v.to_be_bytes()),
                Cell::Text(t) => field(&mut out, storable(t).as_bytes()),
                Cell::Json(j) => jsonb_field(&mut out, j.as_bytes()),
                // Serialising finite f64 cannot fail.
                Cell::Numbers(v) => {
                    jsonb_field(&mut out, &serde_json::to_vec(v).unwrap_or_default())
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

/// A `jsonb` field of binary `COPY`: its length, the format version 1, the JSON text.
fn jsonb_field(out: &mut Vec<u8>, json: &[u8]) {
    out.extend_from_slice(&(json.len() as i32 + 1).to_be_bytes());
    out.push(1);
    out.extend_from_slice(json);
}

/// `text` with its NUL characters replaced by U+FFFD: PostgreSQL refuses NUL in text (and a
/// row it refuses would fail its whole batch, again at every retry). Clients can send one (a
/// rejected body, a model name in the path); SQLite keeps it as it came.
fn storable(text: &str) -> Cow<'_, str> {
    <Postgres as Dialect>::storable(text)
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
    Float(Vec<Option<f64>>),
}

fn column_values(column: Column, records: &[&AuditRecord], stored_at: Instant) -> ColumnValues {
    if column.pg_array() == "float8[]" {
        return ColumnValues::Float(
            records
                .iter()
                .map(|r| match r.cell(column, stored_at) {
                    Cell::Float(v) => Some(v),
                    _ => None,
                })
                .collect(),
        );
    }
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
                    Cell::Numbers(v) => Some(serde_json::to_string(v).unwrap_or_default()),
                    Cell::Time(t) => Some(format_time(t)),
                    Cell::Int(v) => Some(v.to_string()),
                    Cell::Float(v) => Some(v.to_string()),
                    Cell::Null => None,
                })
                .collect(),
        )
    }
}

/// Writes `records` and their rollup counts ([`Delta`]) in one transaction: `begin`, the
/// binary `COPY`, then the rollup upsert and `commit` in one simple query (four round trips).
/// The write moment is taken when a connection is in hand, just before the `COPY`: durable
/// rows' latencies include the wait for a connection.
///
/// `COPY` cannot skip rows: a batch holding a row already stored (a replayed spill file, a
/// copy run again, a retry of a commit whose outcome was lost) fails as a whole, is rolled
/// back, and is written again by [`write_new_rows`], counting only the rows it inserts.
pub(super) async fn write_rows(
    pool: &PgPool,
    records: &[&AuditRecord],
    baselines: &Baselines,
) -> anyhow::Result<Written> {
    if records.is_empty() {
        return Ok(Written::nothing());
    }
    let mut conn = pool
        .acquire()
        .await
        .context("taking a connection to the audit database")?;
    let stored_at = Instant::now();
    let delta = Delta::of(records.iter().copied(), stored_at, baselines);
    let written = if records.len() <= ONE_STATEMENT_ROWS {
        bound(one_statement_sql(), records, stored_at)
            .bind(delta.to_json_with(storable))
            .execute(&mut *conn)
            .await
            .map(|_| ())
    } else {
        let upsert = delta_then(&delta, "commit");
        copy_and_commit(&mut conn, copy_data(records, stored_at), &upsert).await
    };
    match written {
        Ok(_) => Ok(Written {
            at: stored_at,
            inserted: records.len() as u64,
        }),
        Err(e) => {
            // Ends the failed transaction; a connection that cannot is not reused.
            if rollback(&mut conn).await.is_err() {
                conn.detach();
            } else if is_unique_violation(&e) {
                return write_new_rows(&mut conn, records, stored_at, baselines).await;
            }
            Err(e).context("writing audit rows")
        }
    }
}

/// Batches up to this many rows are written by one statement ([`one_statement_sql`]): one
/// round trip, where `COPY` in a transaction with the rollups takes four. Larger ones by
/// `COPY`, whose cheaper rows outweigh the round trips.
const ONE_STATEMENT_ROWS: usize = 64;

/// The rows (`unnest` of one array per column) and their rollup delta (a JSON array, the last
/// parameter) in one statement: the delta's insert is a data-modifying `with`, so both commit
/// or fail together.
fn one_statement_sql() -> &'static str {
    static SQL: OnceLock<String> = OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "with counted as (insert into rollup_delta (counts) values (${})) {}",
            columns::written().count() + 1,
            unnest_insert()
        )
    })
}

/// `begin`, the `COPY` of `data`, then `upsert_and_commit`.
async fn copy_and_commit(
    conn: &mut PgConnection,
    data: Vec<u8>,
    upsert_and_commit: &str,
) -> Result<(), sqlx::Error> {
    (&mut *conn).execute("begin").await?;
    let mut copy = conn.copy_in_raw(copy_sql()).await?;
    copy.send(data).await?;
    copy.finish().await?;
    (&mut *conn).execute(upsert_and_commit).await?;
    Ok(())
}

async fn rollback(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    conn.execute("rollback").await.map(|_| ())
}

/// Writes `records`, skipping those already stored, without a failed statement on the way:
/// for copies and replays, where rows already there are expected (the `COPY` of
/// [`write_rows`] would fail, and leave an ERROR in the server's log, before the retry).
pub(super) async fn import_rows(
    pool: &PgPool,
    records: &[&AuditRecord],
    baselines: &Baselines,
) -> anyhow::Result<Written> {
    if records.is_empty() {
        return Ok(Written::nothing());
    }
    let mut conn = pool
        .acquire()
        .await
        .context("taking a connection to the audit database")?;
    write_new_rows(&mut conn, records, Instant::now(), baselines).await
}

/// [`write_rows`] for a batch holding rows already stored: the rows not there yet are
/// inserted, and only they are counted in the rollups, in one transaction.
async fn write_new_rows(
    conn: &mut PgConnection,
    records: &[&AuditRecord],
    stored_at: Instant,
    baselines: &Baselines,
) -> anyhow::Result<Written> {
    use sqlx::Row;
    let mut tx = sqlx::Connection::begin(conn)
        .await
        .context("starting a transaction")?;
    let done = bound(insert_sql(), records, stored_at)
        .fetch_all(&mut *tx)
        .await
        .context("inserting audit rows")?;
    let new: std::collections::HashSet<(String, i32)> = done
        .iter()
        .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
        .collect::<Result<_, sqlx::Error>>()?;
    let inserted = records
        .iter()
        .copied()
        .filter(|r| new.contains(&(r.request_id.to_string(), r.item as i32)));
    writes::add_delta::<Postgres>(&mut tx, &Delta::of(inserted, stored_at, baselines)).await?;
    tx.commit().await.context("committing audit rows")?;
    Ok(Written {
        at: stored_at,
        inserted: new.len() as u64,
    })
}

/// Appends a rollup delta (inside the caller's transaction), then runs `then`: one simple
/// query, the counts inlined as a literal (simple queries take no parameters; the literal is
/// quoted, and its texts cleaned of NUL as the rows' are).
fn delta_then(delta: &Delta, then: &str) -> String {
    // An escape string, so its backslashes mean the same whatever the server's
    // standard_conforming_strings.
    let json = delta
        .to_json_with(storable)
        .replace('\\', "\\\\")
        .replace('\'', "''");
    format!("insert into rollup_delta (counts) values (E'{json}'); {then}")
}

/// Merges the oldest rollup deltas (up to 10,000) into `rollup` and removes them, in one
/// transaction, one replica at a time (an advisory lock: a replica that finds it taken skips
/// this round). Deltas are removed by id, not up to one: ids are not committed in order, and a
/// delta committed after the read must stay. Returns how many were merged.
pub(super) async fn merge_deltas(pool: &PgPool) -> anyhow::Result<usize> {
    use sqlx::Row;
    let mut tx = pool.begin().await.context("starting a transaction")?;
    let mine: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
        .bind(MERGE_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !mine {
        return Ok(0);
    }
    let rows = sqlx::query("select id, counts from rollup_delta order by id limit 10000")
        .fetch_all(&mut *tx)
        .await
        .context("reading rollup deltas")?;
    if rows.is_empty() {
        return Ok(0);
    }
    let ids: Vec<i64> = rows
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let counts: Vec<String> = rows
        .iter()
        .map(|r| r.try_get(1))
        .collect::<Result<_, _>>()?;
    writes::add_to_rollup::<Postgres>(&mut tx, fold_deltas(counts.iter().map(String::as_str))?)
        .await?;
    sqlx::query("delete from rollup_delta where id = any($1)")
        .bind(&ids)
        .execute(&mut *tx)
        .await?;
    tx.commit().await.context("committing merged rollups")?;
    Ok(ids.len())
}

/// The advisory lock key of [`merge_deltas`] (any fixed number; "ROLL" in ASCII).
const MERGE_LOCK: i64 = 0x524f_4c4c;

/// Recomputes the rollups from the rows and the feedback, in one transaction, 10,000 rows
/// at a time, with the writer's own counting ([`Delta`]). Replicas may write meanwhile: the
/// table lock makes their commits wait until the rebuild has committed.
pub(super) async fn rebuild_rollups(
    pool: &PgPool,
    baselines: &Baselines,
    done: RowsDone<'_>,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await.context("starting a transaction")?;
    (&mut *tx)
        .execute(
            "lock table rollup, rollup_delta in exclusive mode; \
             delete from rollup; delete from rollup_delta",
        )
        .await
        .context("clearing the audit rollups")?;
    writes::recount_rollups::<Postgres>(&mut tx, baselines, done).await?;
    tx.commit()
        .await
        .context("committing the rebuilt rollups")?;
    Ok(())
}

/// Whether the store has rows but no rollups (rows written before rollups existed).
pub(super) async fn rollups_missing(pool: &PgPool) -> anyhow::Result<bool> {
    sqlx::query_scalar(
        "select exists (select 1 from prediction) and not exists (select 1 from rollup) \
         and not exists (select 1 from rollup_delta)",
    )
    .fetch_one(pool)
    .await
    .context("checking the audit rollups")
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
