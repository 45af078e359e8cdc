//! `Backend`: what an audit backend is, as one trait. A backend gives its connections (a
//! pooled read, a read bounded by the read timeout), its whole-row select list and how it
//! classifies failures, and writes in its own way (SQLite's write lock, PostgreSQL's `COPY`);
//! the reads are provided here once, from the queries both dialects share
//! ([`crate::audit::sql::reads`]). [`crate::audit::store::Store`] is the enum of the two.

use std::future::Future;
use std::ops::DerefMut;
use std::path::Path;

use slog::Logger;

use super::fault::{FaultKind, StoreFault};
use super::filter::{AuditFilter, ConfusionCell, Cursor, DriftSample, Page, ServedRow, Summary};
use super::modes::RowsDone;
use super::record::{
    AuditRecord, Feedback, FeedbackStored, RequestRef, StoredFeedback, StoredRecord, Written,
};
use super::rollup::{PackedRow, ReadPlan, RollupRange};
use super::sql::Dialect;
use super::sql::reads;
use super::sql::writes::Pruned;

/// What a store can do, so that start-up chooses without asking which backend it has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// The database file, for a backend that keeps one on this machine (not in memory).
    pub file: Option<std::path::PathBuf>,
    /// The data lives on a database server (nothing of it beside this process).
    pub on_server: bool,
    /// Writers that may commit side by side: one per write lock.
    pub writers: usize,
}

/// A connection of a backend's dialect.
type Conn<B> = <<B as Backend>::Db as sqlx::Database>::Connection;

/// An audit backend. Every call fails only with a [`StoreFault`], classified by the backend.
pub(crate) trait Backend: Sync {
    type Db: Dialect;
    /// A read connection from the pool.
    type Read: DerefMut<Target = Conn<Self>> + Send;
    /// A read connection whose statements stop once the read timeout has passed: for the
    /// reads whose size the caller does not bound (summaries, drift, confusion).
    type BoundedRead: DerefMut<Target = Conn<Self>> + Send;

    fn reader(&self) -> impl Future<Output = anyhow::Result<Self::Read>> + Send;

    fn bounded_reader(&self) -> impl Future<Output = anyhow::Result<Self::BoundedRead>> + Send;

    /// The select list of a whole row, in the order of [`crate::audit::columns::ALL`].
    fn select_list(&self) -> &str;

    /// The select of a feedback row's true value.
    fn feedback_value(&self) -> &str {
        "value"
    }

    /// The class of a failure, from the backend's own codes.
    fn fault(e: anyhow::Error) -> StoreFault;

    fn capabilities(&self) -> Capabilities;

    /// Starts the backend's background work (SQLite: checkpoints; PostgreSQL: partitions).
    fn spawn_maintenance(&self, log: Logger) -> Option<tokio::task::JoinHandle<()>>;

    /// Writes `records` in one transaction: all or none, skipping rows already stored under
    /// their request id and item. Returns the moment the rows were written (the store's write
    /// lock held), which fixes the latency of durable rows, and how many were new.
    fn write_batch(
        &self,
        records: &[&AuditRecord],
    ) -> impl Future<Output = anyhow::Result<Written>> + Send;

    /// [`Backend::write_batch`] for rows some of which may be stored already (a copy, a
    /// replay): the same outcome, without a failed statement on the normal path.
    fn import_batch(
        &self,
        records: &[&AuditRecord],
    ) -> impl Future<Output = anyhow::Result<Written>> + Send {
        self.write_batch(records)
    }

    /// Checks that a write would succeed now, writing nothing: how the writer finds out that
    /// a failing store works again when no rows are waiting to be written.
    fn probe(&self) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Up to `limit` rows matching `filter` after the position `after`, in the filter's order,
    /// each with its own position (see [`crate::audit::store::Store::page`]). Positions are
    /// ids oldest first, which holds where rows are committed in id order (one writer);
    /// PostgreSQL's writers side by side need their own.
    fn page(
        &self,
        filter: &AuditFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> impl Future<Output = Result<Page, StoreFault>> + Send {
        async move {
            let mut conn = self.reader().await.map_err(Self::fault)?;
            reads::page::<Self::Db>(&mut conn, self.select_list(), filter, after, limit)
                .await
                .map(|records| Page::of(records, filter.order))
                .map_err(Self::fault)
        }
    }

    /// Stores a true label and counts it in the rollups. `copy`: unless an identical feedback
    /// (same request, item, label and time) is there already.
    fn store_feedback(
        &self,
        fb: &Feedback,
        copy: bool,
    ) -> impl Future<Output = anyhow::Result<FeedbackStored>> + Send;

    /// Recomputes every rollup from the rows, telling `done` the rows counted so far.
    fn rebuild_rollups(
        &self,
        done: RowsDone<'_>,
    ) -> impl Future<Output = anyhow::Result<()>> + Send;

    /// Removes, in one short transaction, the oldest `limit` rows received before `before`
    /// and the feedback on them ([`writes::prune_batch`](super::sql::writes::prune_batch)).
    fn prune_batch(
        &self,
        before: &chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> impl Future<Output = anyhow::Result<Pruned>> + Send;

    /// What a prune before `before` would remove.
    fn prunable(
        &self,
        before: &chrono::DateTime<chrono::Utc>,
    ) -> impl Future<Output = Result<Pruned, StoreFault>> + Send {
        async move {
            let mut conn = self.bounded_reader().await.map_err(Self::fault)?;
            super::sql::writes::prunable::<Self::Db>(&mut conn, before)
                .await
                .map_err(Self::fault)
        }
    }

    fn close(&self) -> impl Future<Output = ()> + Send;

    /// Writes a consistent copy of the whole store to `file` (a new file), while writes go on.
    fn snapshot(&self, file: &Path) -> impl Future<Output = Result<(), StoreFault>> + Send {
        let _ = file;
        async {
            Err(StoreFault::new(
                FaultKind::Refused,
                &anyhow::anyhow!(
                    "snapshots are for SQLite stores; take a copy of PostgreSQL with pg_dump"
                ),
            ))
        }
    }

    /// Size of the store's write-ahead log in bytes, where it has one (for `/metrics`).
    fn wal_bytes(&self) -> u64 {
        0
    }

    /// Whether the store answers a query now (a `select 1`).
    fn ping(&self) -> impl Future<Output = Result<(), StoreFault>> + Send {
        async {
            let mut conn = self.reader().await.map_err(Self::fault)?;
            let qb = sqlx::QueryBuilder::new("select 1");
            Self::Db::execute(&mut conn, qb)
                .await
                .map(|_| ())
                .map_err(Self::fault)
        }
    }

    fn request(
        &self,
        request_id: &str,
    ) -> impl Future<Output = Result<Vec<StoredRecord>, StoreFault>> + Send {
        async move {
            let mut conn = self.reader().await.map_err(Self::fault)?;
            reads::request::<Self::Db>(&mut conn, self.select_list(), request_id)
                .await
                .map_err(Self::fault)
        }
    }

    fn client_requests(
        &self,
        client_id: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<RequestRef>, StoreFault>> + Send {
        async move {
            let mut conn = self.reader().await.map_err(Self::fault)?;
            reads::client_requests::<Self::Db>(&mut conn, client_id, limit)
                .await
                .map_err(Self::fault)
        }
    }

    fn feedback_after(
        &self,
        after: i64,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<StoredFeedback>, StoreFault>> + Send {
        async move {
            let mut conn = self.reader().await.map_err(Self::fault)?;
            reads::feedback_after::<Self::Db>(&mut conn, self.feedback_value(), after, limit)
                .await
                .map_err(Self::fault)
        }
    }

    fn served_row(
        &self,
        request_id: &str,
        item: i64,
    ) -> impl Future<Output = Result<Option<ServedRow>, StoreFault>> + Send {
        async move {
            let mut conn = self.reader().await.map_err(Self::fault)?;
            reads::served_row::<Self::Db>(&mut conn, request_id, item)
                .await
                .map_err(Self::fault)
        }
    }

    fn rollup_rows(
        &self,
        range: &RollupRange,
        plan: &ReadPlan,
    ) -> impl Future<Output = Result<Vec<PackedRow>, StoreFault>> + Send {
        async move {
            let mut conn = self.reader().await.map_err(Self::fault)?;
            reads::rollup_rows::<Self::Db>(&mut conn, range, plan)
                .await
                .map_err(Self::fault)
        }
    }

    /// The summary computed from the rows, whatever the filter.
    fn summary(
        &self,
        filter: &AuditFilter,
    ) -> impl Future<Output = Result<Summary, StoreFault>> + Send {
        async move {
            let mut conn = self.bounded_reader().await.map_err(Self::fault)?;
            reads::summary::<Self::Db>(&mut conn, filter)
                .await
                .map_err(Self::fault)
        }
    }

    fn drift_rows(
        &self,
        model: &str,
        n_features: usize,
        filter: &AuditFilter,
        max_rows: usize,
    ) -> impl Future<Output = Result<DriftSample, StoreFault>> + Send {
        async move {
            let mut conn = self.bounded_reader().await.map_err(Self::fault)?;
            reads::drift_rows::<Self::Db>(&mut conn, model, n_features, filter, max_rows)
                .await
                .map_err(Self::fault)
        }
    }

    fn regression_pairs(
        &self,
        model: &str,
        filter: &AuditFilter,
    ) -> impl Future<Output = Result<Vec<(f64, f64)>, StoreFault>> + Send {
        async move {
            let mut conn = self.bounded_reader().await.map_err(Self::fault)?;
            reads::regression_pairs::<Self::Db>(&mut conn, model, filter)
                .await
                .map_err(Self::fault)
        }
    }

    fn confusion(
        &self,
        model: &str,
        filter: &AuditFilter,
    ) -> impl Future<Output = Result<Vec<ConfusionCell>, StoreFault>> + Send {
        async move {
            let mut conn = self.bounded_reader().await.map_err(Self::fault)?;
            reads::confusion::<Self::Db>(&mut conn, model, filter)
                .await
                .map_err(Self::fault)
        }
    }
}
