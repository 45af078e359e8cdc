//! The PostgreSQL backend: many replicas of the service writing to one database, with the
//! guarantees of the SQLite store.
//!
//! - One pool per replica (`INFERLOG_PG_POOL_SIZE` connections, each call waiting at most
//!   `INFERLOG_PG_ACQUIRE_TIMEOUT_MS` for one); connections lost when the server restarts are
//!   replaced by the pool on the next call, so recovery needs no restart of the service.
//! - A batch is one binary `COPY`, whatever its size, in one implicit transaction ([`insert`]);
//!   `INFERLOG_PG_WRITERS` writers may each run theirs at once.
//! - The table is partitioned by day of arrival; partitions are created a week ahead, at
//!   start-up and every hour, under an advisory lock so replicas do not race.
//! - Faults are classified by SQLSTATE here; nothing above sees PostgreSQL's codes.
//!
//! [`query`] holds what its reads do differently (the horizon of oldest-first pages, the
//! statement timeout); the queries are shared ([`crate::audit::sql::reads`]).

mod insert;
mod query;

use std::time::Duration;

use anyhow::Context;
use slog::{Logger, warn};
use sqlx::Connection;
use sqlx::pool::PoolConnection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, Postgres};

use crate::audit::backend::{Backend, Capabilities};
use crate::audit::baselines::Baselines;
use crate::audit::fault::{FaultKind, StoreFault};
use crate::audit::filter::{AuditFilter, Cursor, Page};
use crate::audit::modes::{RowsDone, StoreOptions};
use crate::audit::record::{AuditRecord, Feedback, FeedbackStored, Written};
use crate::audit::sql::{Dialect, writes};

/// Days of partitions kept ready ahead of today (and one behind, for clocks a little slow).
const PARTITION_DAYS_AHEAD: i64 = 7;

/// How often the partitions ahead are checked.
const PARTITION_CHECK_EVERY: Duration = Duration::from_secs(3600);

/// How often rollup deltas are merged (see `migrations/postgres/0003_rollup.sql`).
const MERGE_EVERY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
    baselines: Baselines,
    /// How long an oldest-first read at the end of the rows waits ([`query::page`]).
    catch_up: Duration,
    /// The longest an HTTP read of the rows may run (a summary from the rows).
    read_timeout: Duration,
}

/// The class of a failure: from the SQLSTATE where the server sent one, else from how the
/// connection failed.
fn fault(e: anyhow::Error) -> StoreFault {
    let sqlx_error = e.chain().find_map(|c| c.downcast_ref::<sqlx::Error>());
    let kind = match sqlx_error {
        Some(sqlx::Error::Database(db)) => match db.code().as_deref() {
            Some("53100") => FaultKind::Full,
            // query_canceled: the read's statement_timeout ran out.
            Some("57014") => FaultKind::ReadTooLong,
            Some("25006") => FaultKind::ReadOnly,
            Some("55P03") => FaultKind::LockedByOther,
            Some("40001" | "40P01") => FaultKind::Locked,
            Some(c) if c.starts_with("08") || c.starts_with("57P") => FaultKind::Unreachable,
            Some(c) if c.starts_with("58") || c.starts_with("XX") => FaultKind::Io,
            _ => FaultKind::Refused,
        },
        Some(
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_),
        ) => FaultKind::Unreachable,
        _ => FaultKind::Other,
    };
    StoreFault::new(kind, &e)
}

/// `host:port/database` of a URL (or the socket folder's path in place of `host`), for
/// messages: never the password.
fn describe(opts: &PgConnectOptions) -> String {
    let host = match opts.get_socket() {
        Some(dir) => dir.display().to_string(),
        None => opts.get_host().to_string(),
    };
    format!(
        "{host}:{}/{}",
        opts.get_port(),
        opts.get_database().unwrap_or("postgres")
    )
}

impl PgStore {
    /// Writers that may commit side by side: each holds a connection while it commits, and at
    /// least one is left for reads.
    pub fn most_writers(&self) -> usize {
        (self.pool.options().get_max_connections() as usize)
            .saturating_sub(1)
            .max(1)
    }

    /// Connects (failing at once, naming the server, if it cannot be reached), applies the
    /// migrations and creates the partitions ahead, unless read-only.
    pub async fn open(connect: PgConnectOptions, opts: &StoreOptions) -> anyhow::Result<PgStore> {
        let server = describe(&connect);
        // One connection first, on its own: a pool that cannot connect reports only that it
        // timed out, while this reports why (refused, no such host, a wrong password).
        let first = tokio::time::timeout(
            opts.acquire_timeout.max(Duration::from_secs(1)),
            PgConnection::connect_with(&connect),
        )
        .await
        .map_err(|_| {
            anyhow::anyhow!(
                "connecting to PostgreSQL at {server}: no answer within {:?}",
                opts.acquire_timeout.max(Duration::from_secs(1))
            )
        })?
        .map_err(|e| {
            // An I/O error's own text, once ("connection refused (os error 111)"): sqlx's
            // wrapper repeats it.
            let cause = match &e {
                sqlx::Error::Io(io) => io.to_string().to_lowercase(),
                other => other.to_string(),
            };
            anyhow::anyhow!("connecting to PostgreSQL at {server}: {cause}")
        })?;
        let _ = first.close().await;
        let pool = PgPoolOptions::new()
            .max_connections(opts.pool_size.max(1))
            .acquire_timeout(opts.acquire_timeout)
            .connect_with(connect)
            .await
            .with_context(|| format!("connecting to PostgreSQL at {server}"))?;
        if !opts.read_only {
            sqlx::migrate!("./migrations/postgres")
                .run(&pool)
                .await
                .with_context(|| format!("migrating the audit database at {server}"))?;
            create_partitions(&pool).await?;
            // Rows from before rollups existed get theirs once.
            if insert::rollups_missing(&pool).await? {
                insert::rebuild_rollups(&pool, &opts.baselines, &|_| {}).await?;
            }
        }
        Ok(PgStore {
            pool,
            baselines: opts.baselines.clone(),
            catch_up: opts.catch_up,
            read_timeout: opts.read_timeout,
        })
    }

    /// The store's background work, until aborted: rollup deltas merged every second, and
    /// the partitions created ahead every hour.
    pub fn spawn_partitions(&self, log: Logger) -> tokio::task::JoinHandle<()> {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            let mut last_partitions = tokio::time::Instant::now();
            let mut merge_failing = false;
            loop {
                tokio::time::sleep(MERGE_EVERY).await;
                match insert::merge_deltas(&pool).await {
                    Ok(_) => merge_failing = false,
                    Err(e) if !merge_failing => {
                        merge_failing = true;
                        warn!(log, "merging audit rollups failed; will retry"; "error" => format!("{e:#}"));
                    }
                    Err(_) => {}
                }
                if last_partitions.elapsed() >= PARTITION_CHECK_EVERY {
                    last_partitions = tokio::time::Instant::now();
                    if let Err(e) = create_partitions(&pool).await {
                        warn!(log, "could not create the audit table's partitions ahead; rows go to the default partition meanwhile";
                            "error" => format!("{e:#}"));
                    }
                }
            }
        })
    }
}

impl Backend for PgStore {
    type Db = Postgres;
    type Read = PoolConnection<Postgres>;
    type BoundedRead = sqlx::Transaction<'static, Postgres>;

    async fn reader(&self) -> anyhow::Result<PoolConnection<Postgres>> {
        self.pool.acquire().await.context("opening a read")
    }

    /// See [`query::bounded_read`].
    async fn bounded_reader(&self) -> anyhow::Result<sqlx::Transaction<'static, Postgres>> {
        query::bounded_read(&self.pool, self.read_timeout).await
    }

    fn select_list(&self) -> &str {
        <Postgres as Dialect>::select_list()
    }

    fn fault(e: anyhow::Error) -> StoreFault {
        fault(e)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            file: None,
            on_server: true,
            writers: self.most_writers(),
        }
    }

    fn spawn_maintenance(&self, log: Logger) -> Option<tokio::task::JoinHandle<()>> {
        Some(self.spawn_partitions(log))
    }

    async fn write_batch(&self, records: &[&AuditRecord]) -> anyhow::Result<Written> {
        insert::write_rows(&self.pool, records, &self.baselines).await
    }

    async fn import_batch(&self, records: &[&AuditRecord]) -> anyhow::Result<Written> {
        insert::import_rows(&self.pool, records, &self.baselines).await
    }

    /// A row inserted in a transaction that is rolled back: the server is reachable and
    /// takes writes.
    async fn probe(&self) -> anyhow::Result<()> {
        insert::probe(&self.pool).await
    }

    async fn page(
        &self,
        filter: &AuditFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreFault> {
        query::page(&self.pool, filter, after, limit, self.catch_up)
            .await
            .map_err(fault)
    }

    /// In one transaction; the answered row is locked first (`for update`), so feedback for
    /// one item is taken one at a time and "the label it replaces" is the latest committed.
    async fn store_feedback(&self, fb: &Feedback, copy: bool) -> anyhow::Result<FeedbackStored> {
        let mut tx = self.pool.begin().await.context("storing feedback")?;
        let stored = writes::store_feedback::<Postgres>(&mut tx, fb, copy).await?;
        tx.commit().await.context("committing feedback")?;
        Ok(stored)
    }

    async fn rebuild_rollups(&self, done: RowsDone<'_>) -> anyhow::Result<()> {
        insert::rebuild_rollups(&self.pool, &self.baselines, done).await
    }

    async fn prune_batch(
        &self,
        before: &chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> anyhow::Result<writes::Pruned> {
        let mut tx = self.pool.begin().await.context("pruning old rows")?;
        let pruned = writes::prune_batch::<Postgres>(&mut tx, before, limit).await?;
        tx.commit().await.context("committing a prune")?;
        Ok(pruned)
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

/// Creates the day partitions from yesterday to [`PARTITION_DAYS_AHEAD`] days ahead (UTC)
/// that do not exist yet: one statement, under a transaction-scoped advisory lock, so replicas
/// starting together take turns. A day whose rows already sit in the default partition cannot
/// get its own partition and is left there.
async fn create_partitions(pool: &PgPool) -> anyhow::Result<()> {
    let sql = format!(
        r#"do $$
declare
    d date;
    name text;
begin
    perform pg_advisory_xact_lock(hashtext('inferlog audit partitions'));
    for d in select generate_series(
            (now() at time zone 'UTC')::date - 1,
            (now() at time zone 'UTC')::date + {PARTITION_DAYS_AHEAD},
            interval '1 day')::date
    loop
        name := 'prediction_p' || to_char(d, 'YYYYMMDD');
        if to_regclass(name) is null then
            begin
                execute format(
                    'create table %I partition of prediction for values from (%L) to (%L)',
                    name, d::timestamp at time zone 'UTC', (d + 1)::timestamp at time zone 'UTC');
            exception when others then
                null;
            end;
        end if;
    end loop;
end
$$"#
    );
    sqlx::raw_sql(&sql)
        .execute(pool)
        .await
        .context("creating the audit partitions")?;
    Ok(())
}
