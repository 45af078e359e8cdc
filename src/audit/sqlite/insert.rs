//! Writing audit rows: multi-row INSERTs built from the column list, the write lock taken
//! with a wait this code controls, and the moment of writing stamped for durable latencies.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};

use crate::audit::columns::{self, Cell};
use crate::audit::record::{AuditRecord, Written, format_time};

/// Rows per INSERT statement. A batch of up to [`EXACT_ROWS`] rows is one statement of its
/// exact size (one implicit transaction, one round trip to SQLite's thread). A larger batch is
/// written in one transaction as chunks of 2048, 1024, 512, 256, 128 or 64 rows and a final
/// exact chunk. Statements stay prepared per size, so the cache holds at most 64 small sizes
/// and 5 large ones: caching every size up to 512 rows took tens of MB once async batches
/// varied widely, and 64-row chunks alone cost a third of the batch throughput. (2048 rows of
/// 14 values stay under SQLite's limit of 32766 bound values per statement.)
pub(super) const EXACT_ROWS: usize = 64;
pub(super) const MAX_ROWS_PER_STATEMENT: usize = 2048;

// A statement of the largest size must stay under SQLite's limit of bound values: a new column
// lowers MAX_ROWS_PER_STATEMENT.
const _: () = assert!(MAX_ROWS_PER_STATEMENT * (columns::ALL.len() - 1) <= 32_766);

/// Prepared statements the writing connection keeps (see [`EXACT_ROWS`]), plus the
/// transaction and feedback statements.
pub(super) const WRITE_STATEMENT_CACHE: usize = EXACT_ROWS + 5 + 10;

/// Rows of the next statement for `remaining` rows.
pub(super) fn chunk_len(remaining: usize) -> usize {
    if remaining <= EXACT_ROWS {
        return remaining;
    }
    let mut n = MAX_ROWS_PER_STATEMENT;
    while n > remaining {
        n /= 2;
    }
    n
}

/// SQLite's primary result code of a database error (the low byte of the extended code).
pub(super) fn primary_code(e: &sqlx::Error) -> Option<i32> {
    match e {
        sqlx::Error::Database(db) => db.code()?.parse::<i32>().ok().map(|c| c & 0xff),
        _ => None,
    }
}

/// Whether `e` is SQLite's `SQLITE_BUSY`: another connection holds the write lock. In WAL mode
/// (which the connection checks at open) a statement that failed with it wrote nothing and
/// left no transaction open.
pub(super) fn is_busy(e: &sqlx::Error) -> bool {
    primary_code(e) == Some(5)
}

/// Pauses between attempts to take a busy write lock: SQLite's own busy handler's schedule.
const LOCK_RETRY_MS: [u64; 12] = [1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, 100];

/// `begin immediate`, retried while another connection holds the write lock, until
/// `busy_timeout` has passed. On success the write lock is held until `commit`.
pub(super) async fn begin_immediate(
    conn: &mut SqliteConnection,
    busy_timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + busy_timeout;
    let mut attempt = 0;
    loop {
        match sqlx::query("begin immediate").execute(&mut *conn).await {
            Ok(_) => return Ok(()),
            Err(e) if is_busy(&e) && Instant::now() < deadline => {
                let pause =
                    Duration::from_millis(LOCK_RETRY_MS[attempt.min(LOCK_RETRY_MS.len() - 1)]);
                attempt += 1;
                tokio::time::sleep(pause.min(deadline.saturating_duration_since(Instant::now())))
                    .await;
            }
            Err(e) => return Err(e).context("taking the audit database's write lock"),
        }
    }
}

/// Writes `records` in one transaction and returns the moment they were written, the write
/// lock held (durable rows' latencies are taken at that moment), and how many were new.
///
/// A batch of up to [`EXACT_ROWS`] rows is first tried as one autocommit statement (a single
/// round trip to SQLite's thread). If another process holds the lock, that statement fails at
/// once without writing (the connection has no busy timeout), and the batch is written inside
/// `begin immediate` once the lock is free: the rows' latencies then include the wait. A larger
/// batch always takes the lock first, then writes its chunks.
pub(super) async fn write_rows(
    conn: &mut SqliteConnection,
    records: &[&AuditRecord],
    busy_timeout: Duration,
) -> anyhow::Result<Written> {
    if records.is_empty() {
        return Ok(Written {
            at: Instant::now(),
            inserted: 0,
        });
    }
    if records.len() <= EXACT_ROWS {
        let stored_at = Instant::now();
        match insert(records, stored_at).execute(&mut *conn).await {
            Ok(done) => {
                return Ok(Written {
                    at: stored_at,
                    inserted: done.rows_affected(),
                });
            }
            Err(e) if is_busy(&e) => {}
            Err(e) => return Err(e).context("inserting audit rows"),
        }
    }
    begin_immediate(conn, busy_timeout).await?;
    let stored_at = Instant::now();
    let mut rest = records;
    let mut inserted = 0;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        rest = tail;
        inserted += insert(chunk, stored_at)
            .execute(&mut *conn)
            .await
            .context("inserting audit rows")?
            .rows_affected();
    }
    sqlx::query("commit")
        .execute(&mut *conn)
        .await
        .context("committing audit rows")?;
    Ok(Written {
        at: stored_at,
        inserted,
    })
}

/// Inserts `probe` in a transaction and rolls it back: it needs the write lock (waited for up
/// to the busy timeout, as a write would), a writable file and room for the row, and leaves
/// nothing behind.
pub(super) async fn probe_rows(
    conn: &mut SqliteConnection,
    probe: &AuditRecord,
    busy_timeout: Duration,
) -> anyhow::Result<()> {
    begin_immediate(conn, busy_timeout)
        .await
        .context("starting a probe transaction")?;
    insert(&[probe], Instant::now())
        .execute(&mut *conn)
        .await
        .context("inserting audit rows")?;
    sqlx::query("rollback")
        .execute(&mut *conn)
        .await
        .context("rolling back the probe")?;
    Ok(())
}

/// A multi-row INSERT of `rows` (at most [`MAX_ROWS_PER_STATEMENT`]), values bound in the
/// order of [`columns::written`].
fn insert<'a>(
    rows: &[&'a AuditRecord],
    stored_at: Instant,
) -> sqlx::query::Query<'a, Sqlite, SqliteArguments<'a>> {
    let mut q = sqlx::query(insert_sql(rows.len()));
    // The rows of one request share their arrival time: format it once per request.
    let mut time: Option<(DateTime<Utc>, String)> = None;
    for r in rows {
        for column in columns::written() {
            q = match r.cell(column, stored_at) {
                Cell::Null => q.bind(None::<i64>),
                Cell::Int(v) => q.bind(v),
                Cell::Text(s) | Cell::Json(s) => q.bind(s),
                Cell::Time(t) => {
                    let text = match &time {
                        Some((at, text)) if at == t => text.clone(),
                        _ => {
                            let text = format_time(t);
                            time = Some((*t, text.clone()));
                            text
                        }
                    };
                    q.bind(text)
                }
            };
        }
    }
    q
}

/// The text of the INSERT for `rows` rows, built once per size: every size a batch can be cut
/// into (see [`chunk_len`]) is one of the exact sizes up to [`EXACT_ROWS`] or a power of two
/// up to [`MAX_ROWS_PER_STATEMENT`].
pub(super) fn insert_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<(usize, String)>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        let mut sizes: Vec<usize> = (1..=EXACT_ROWS).collect();
        let mut n = EXACT_ROWS * 2;
        while n <= MAX_ROWS_PER_STATEMENT {
            sizes.push(n);
            n *= 2;
        }
        let values = format!("({})", vec!["?"; columns::written().count()].join(","));
        sizes
            .into_iter()
            .map(|n| {
                let mut sql = format!(
                    "insert into prediction ({}) values ",
                    columns::insert_list()
                );
                for i in 0..n {
                    if i > 0 {
                        sql.push(',');
                    }
                    sql.push_str(&values);
                }
                // A row already stored (same request id and item) is skipped: a replayed spill
                // file, or a retry of a commit whose outcome was lost, writes no row twice.
                sql.push_str(" on conflict (request_id, item) do nothing");
                (n, sql)
            })
            .collect()
    });
    match all.binary_search_by_key(&rows, |(n, _)| *n) {
        Ok(i) => &all[i].1,
        // chunk_len never asks for another size.
        Err(_) => unreachable!("no INSERT prepared for {rows} rows"),
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_ROWS_PER_STATEMENT, chunk_len, insert_sql};
    use crate::audit::writer::options::MAX_BATCH_ROWS;

    #[test]
    fn chunks_are_exact_when_small_and_powers_of_two_when_large() {
        assert_eq!(chunk_len(1), 1);
        assert_eq!(chunk_len(64), 64);
        assert_eq!(chunk_len(65), 64);
        assert_eq!(chunk_len(300), 256);
        assert_eq!(chunk_len(5000), MAX_ROWS_PER_STATEMENT);
    }

    #[test]
    fn every_batch_is_cut_into_prepared_statement_sizes() {
        let mut checked = std::collections::HashSet::new();
        for total in 1..=MAX_BATCH_ROWS {
            let mut rest = total;
            while rest > 0 {
                let n = chunk_len(rest);
                if checked.insert(n) {
                    // One "(" for the column list, one for the conflict target, one per row.
                    assert_eq!(insert_sql(n).matches('(').count() - 2, n, "{total} rows");
                }
                rest -= n;
            }
        }
    }
}
