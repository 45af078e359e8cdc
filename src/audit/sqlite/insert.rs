//! Writing audit rows: multi-row INSERTs built from the column list, the write lock taken
//! with a wait this code controls, and the moment of writing stamped for durable latencies.

use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sqlx::Sqlite;
use sqlx::sqlite::{SqliteArguments, SqliteConnection};

use crate::audit::baselines::Baselines;
use crate::audit::columns::{self, Cell};
use crate::audit::modes::RowsDone;
use crate::audit::record::{AuditRecord, Written, format_time};
use crate::audit::rollup::{Delta, Folded, fold_deltas};
use crate::audit::sql::writes;

/// Rows per INSERT statement. A batch of up to [`EXACT_ROWS`] rows is one statement of its
/// exact size (one implicit transaction, one round trip to SQLite's thread). A larger batch is
/// written in one transaction as chunks of 1024, 512, 256, 128 or 64 rows and a final
/// exact chunk. Statements stay prepared per size, so the cache holds at most 64 small sizes
/// and 4 large ones: caching every size up to 512 rows took tens of MB once async batches
/// varied widely, and 64-row chunks alone cost a third of the batch throughput. (1024 rows of
/// 16 values stay under SQLite's limit of 32766 bound values per statement.)
pub(super) const EXACT_ROWS: usize = 64;
pub(super) const MAX_ROWS_PER_STATEMENT: usize = 1024;

// A statement of the largest size must stay under SQLite's limit of bound values: a new column
// lowers MAX_ROWS_PER_STATEMENT.
const _: () = assert!(MAX_ROWS_PER_STATEMENT * (columns::ALL.len() - 1) <= 32_766);

/// Prepared statements the writing connection keeps (see [`EXACT_ROWS`]): each small size
/// twice (alone, and in the one-trip query of [`write_rows`]), plus the transaction, rollup
/// and feedback statements.
pub(super) const WRITE_STATEMENT_CACHE: usize = 2 * EXACT_ROWS + 5 + 10;

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

/// Writes `records` and their rollup counts ([`Delta`]) in one transaction, and returns the
/// moment they were written, the write lock held (durable rows' latencies are taken at that
/// moment), and how many were new.
///
/// A batch of up to [`EXACT_ROWS`] rows is first sent as one multi-statement query, `begin
/// immediate; insert …; insert of the rollup delta; commit`: a single round trip to SQLite's
/// thread.
/// If another process holds the lock, its `begin immediate` fails at once without writing
/// (the connection has no busy timeout), and the batch is written after a `begin immediate`
/// that waits for the lock: the rows' latencies then include the wait. A larger batch always
/// takes the lock first, then writes its chunks and the rollups.
///
/// The inserts do not skip rows: a row already stored (a replayed spill file, a copy run
/// again, a retried commit whose outcome was lost) fails the batch, which is rolled back and
/// written again by [`write_new_rows`], counting only the rows it inserts.
pub(super) async fn write_rows(
    conn: &mut SqliteConnection,
    records: &[&AuditRecord],
    busy_timeout: Duration,
    baselines: &Baselines,
) -> anyhow::Result<Written> {
    if records.is_empty() {
        return Ok(Written::nothing());
    }
    if records.len() <= EXACT_ROWS {
        let stored_at = Instant::now();
        let delta = Delta::of(records.iter().copied(), stored_at, baselines).to_json();
        match insert(one_trip_sql(records.len()), records, stored_at)
            .bind(delta)
            .execute(&mut *conn)
            .await
        {
            Ok(_) => {
                return Ok(Written {
                    at: stored_at,
                    inserted: records.len() as u64,
                });
            }
            // `begin immediate` met the lock: nothing was done.
            Err(e) if is_busy(&e) => {}
            Err(e) => {
                rollback(conn).await?;
                if is_unique_violation(&e) {
                    return write_new_rows(conn, records, busy_timeout, baselines).await;
                }
                return Err(e).context("inserting audit rows");
            }
        }
    }
    begin_immediate(conn, busy_timeout).await?;
    let stored_at = Instant::now();
    let mut rest = records;
    while !rest.is_empty() {
        let (chunk, tail) = rest.split_at(chunk_len(rest.len()));
        rest = tail;
        if let Err(e) = insert(insert_sql(chunk.len()), chunk, stored_at)
            .execute(&mut *conn)
            .await
        {
            rollback(conn).await?;
            if is_unique_violation(&e) {
                return write_new_rows(conn, records, busy_timeout, baselines).await;
            }
            return Err(e).context("inserting audit rows");
        }
    }
    commit_counted(conn, records, stored_at, baselines).await
}

/// [`write_rows`] for a batch holding rows already stored: each row is inserted unless its
/// request id and item are there, and only the rows inserted are counted in the rollups.
async fn write_new_rows(
    conn: &mut SqliteConnection,
    records: &[&AuditRecord],
    busy_timeout: Duration,
    baselines: &Baselines,
) -> anyhow::Result<Written> {
    begin_immediate(conn, busy_timeout).await?;
    let stored_at = Instant::now();
    let mut new = Vec::with_capacity(records.len());
    for r in records {
        let done = insert(skipping_insert_sql(), &[r], stored_at)
            .execute(&mut *conn)
            .await
            .context("inserting audit rows")?;
        if done.rows_affected() == 1 {
            new.push(*r);
        }
    }
    commit_counted(conn, &new, stored_at, baselines).await
}

/// Appends the rollup delta of `inserted` (the rows this transaction inserted, written at
/// `stored_at`) and commits.
async fn commit_counted(
    conn: &mut SqliteConnection,
    inserted: &[&AuditRecord],
    stored_at: Instant,
    baselines: &Baselines,
) -> anyhow::Result<Written> {
    writes::add_delta::<Sqlite>(
        conn,
        &Delta::of(inserted.iter().copied(), stored_at, baselines),
    )
    .await?;
    sqlx::query("commit")
        .execute(&mut *conn)
        .await
        .context("committing audit rows")?;
    Ok(Written {
        at: stored_at,
        inserted: inserted.len() as u64,
    })
}

/// The oldest deltas (up to 10,000), read from a snapshot without any lock: their ids, first
/// and last, and their counts folded (off the async threads). `None` when there are none.
pub(super) async fn fold_oldest_deltas(
    read: &sqlx::SqlitePool,
) -> anyhow::Result<Option<FoldedDeltas>> {
    use sqlx::Row;
    let rows = sqlx::query("select id, counts from rollup_delta order by id limit 10000")
        .fetch_all(read)
        .await
        .context("reading the audit rollup deltas")?;
    let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
        return Ok(None);
    };
    let (first, last): (i64, i64) = (first.try_get(0)?, last.try_get(0)?);
    let counts: Vec<String> = rows
        .iter()
        .map(|r| r.try_get(1))
        .collect::<Result<_, _>>()?;
    let n = counts.len();
    let folded =
        tokio::task::spawn_blocking(move || fold_deltas(counts.iter().map(String::as_str)))
            .await
            .context("folding the audit rollup deltas")??;
    Ok(Some(FoldedDeltas {
        first,
        last,
        n,
        folded,
    }))
}

/// Deltas `first..=last` (`n` of them), folded.
pub(super) struct FoldedDeltas {
    first: i64,
    last: i64,
    n: usize,
    folded: Folded,
}

/// Adds folded deltas to `rollup` and removes them, in one transaction; returns how many were
/// merged. The write lock is held only for that: reading and folding the deltas (the bulk of
/// the work, most of it parsing) happened before, without it, so a merge holds up the writer's
/// commits for as long as it takes to rewrite a few rollup rows and delete the deltas. If the
/// deltas are not those folded any more (a rebuild of the rollups ran meanwhile), nothing is
/// written and 0 returned: the next merge folds them again.
pub(super) async fn merge_folded(
    conn: &mut SqliteConnection,
    busy_timeout: Duration,
    deltas: FoldedDeltas,
) -> anyhow::Result<usize> {
    begin_immediate(conn, busy_timeout).await?;
    let result: anyhow::Result<usize> = async {
        let (n, first): (i64, Option<i64>) =
            sqlx::query_as("select count(*), min(id) from rollup_delta where id <= ?")
                .bind(deltas.last)
                .fetch_one(&mut *conn)
                .await?;
        if n != deltas.n as i64 || first != Some(deltas.first) {
            return Ok(0);
        }
        writes::add_to_rollup::<Sqlite>(conn, deltas.folded).await?;
        sqlx::query("delete from rollup_delta where id <= ?")
            .bind(deltas.last)
            .execute(&mut *conn)
            .await?;
        Ok(deltas.n)
    }
    .await;
    match result {
        Ok(n) => {
            sqlx::query("commit")
                .execute(&mut *conn)
                .await
                .context("committing merged rollups")?;
            Ok(n)
        }
        Err(e) => {
            rollback(conn).await?;
            Err(e)
        }
    }
}

/// Recomputes the rollups from the rows and the feedback, in one transaction (readers keep
/// seeing the old ones until it commits).
pub(super) async fn rebuild_rollups(
    conn: &mut SqliteConnection,
    busy_timeout: Duration,
    baselines: &Baselines,
    done: RowsDone<'_>,
) -> anyhow::Result<()> {
    begin_immediate(conn, busy_timeout).await?;
    let result = rebuild_in_transaction(conn, baselines, done).await;
    match result {
        Ok(()) => {
            sqlx::query("commit")
                .execute(&mut *conn)
                .await
                .context("committing the rebuilt rollups")?;
            Ok(())
        }
        Err(e) => {
            rollback(conn).await?;
            Err(e)
        }
    }
}

async fn rebuild_in_transaction(
    conn: &mut SqliteConnection,
    baselines: &Baselines,
    done: RowsDone<'_>,
) -> anyhow::Result<()> {
    sqlx::query("delete from rollup; delete from rollup_delta")
        .execute(&mut *conn)
        .await?;
    writes::recount_rollups::<Sqlite>(conn, baselines, done).await
}

/// Ends the transaction a failed statement left open, if any.
async fn rollback(conn: &mut SqliteConnection) -> anyhow::Result<()> {
    match sqlx::query("rollback").execute(&mut *conn).await {
        Ok(_) => Ok(()),
        // SQLite already rolled back (some errors do), or the failure came before `begin`.
        Err(e) if e.to_string().contains("no transaction is active") => Ok(()),
        Err(e) => Err(e).context("rolling back a failed audit write"),
    }
}

/// SQLite's `SQLITE_CONSTRAINT_PRIMARYKEY` or `_UNIQUE`: a row already stored.
fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.is_unique_violation())
}

/// Appends one delta (see [`Delta::to_json`]).
const DELTA_INSERT: &str = "insert into rollup_delta (counts) values (?)";

/// `begin immediate; insert of `rows` rows; insert of their rollup delta; commit`, built once
/// per size.
fn one_trip_sql(rows: usize) -> &'static str {
    static SQL: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();
    let all = SQL.get_or_init(|| {
        (1..=EXACT_ROWS)
            .map(|n| format!("begin immediate; {}; {DELTA_INSERT}; commit", insert_sql(n)))
            .collect()
    });
    &all[rows - 1]
}

/// The one-row insert that skips a row already stored.
fn skipping_insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        format!(
            "{} on conflict (request_id, item) do nothing",
            insert_sql(1)
        )
    })
}

/// Inserts `probe` and deletes it in one committed transaction: it needs the write lock
/// (waited for up to the busy timeout, as a write would), a writable file and room on disk
/// for the row's pages in the WAL, and leaves no row behind.
pub(super) async fn probe_rows(
    conn: &mut SqliteConnection,
    probe: &AuditRecord,
    busy_timeout: Duration,
) -> anyhow::Result<()> {
    begin_immediate(conn, busy_timeout)
        .await
        .context("starting a probe transaction")?;
    let wrote: anyhow::Result<()> = async {
        insert(insert_sql(1), &[probe], Instant::now())
            .execute(&mut *conn)
            .await
            .context("inserting audit rows")?;
        sqlx::query("delete from prediction where request_id = ?")
            .bind(&*probe.request_id)
            .execute(&mut *conn)
            .await
            .context("removing the probe row")?;
        // Committed, not rolled back: a rolled-back transaction never leaves SQLite's page
        // cache, so it would pass on a full disk where every real commit fails. This one
        // writes its pages to the WAL like a commit of rows does, and leaves no row behind.
        sqlx::query("commit")
            .execute(&mut *conn)
            .await
            .context("committing the probe")?;
        Ok(())
    }
    .await;
    if wrote.is_err() {
        let _ = sqlx::query("rollback").execute(&mut *conn).await;
    }
    wrote
}

/// A multi-row INSERT of `rows` (at most [`MAX_ROWS_PER_STATEMENT`]), values bound in the
/// order of [`columns::written`].
fn insert<'a>(
    sql: &'static str,
    rows: &[&'a AuditRecord],
    stored_at: Instant,
) -> sqlx::query::Query<'a, Sqlite, SqliteArguments<'a>> {
    let mut q = sqlx::query(sql);
    // The rows of one request share their arrival time: format it once per request.
    let mut time: Option<(DateTime<Utc>, String)> = None;
    for r in rows {
        for column in columns::written() {
            q = match r.cell(column, stored_at) {
                Cell::Null => q.bind(None::<i64>),
                Cell::Int(v) => q.bind(v),
                Cell::Float(v) => q.bind(v),
                Cell::Text(s) | Cell::Json(s) => q.bind(s),
                // Serialising finite f64 cannot fail.
                Cell::Numbers(v) => q.bind(serde_json::to_string(v).unwrap_or_default()),
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
                    // One "(" for the column list, one per row.
                    assert_eq!(insert_sql(n).matches('(').count() - 1, n, "{total} rows");
                }
                rest -= n;
            }
        }
    }
}
