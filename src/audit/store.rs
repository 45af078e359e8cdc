//! [`Store`]: the audit backend behind one interface. Every call the writer, the HTTP layer
//! and the CLI make goes through here and fails only with a [`StoreFault`]. Each variant is a
//! [`Backend`], which does all the work; this file only dispatches to it, and composes the
//! calls that are the same on any backend (summaries from the rollups, rollups per bucket).
//! A third backend is a variant and a module beside [`super::sqlite`].

use slog::Logger;

use super::backend::{Backend, Capabilities};
use super::baselines::Baselines;
use super::fault::{FaultKind, StoreFault};
use super::filter::{
    AuditFilter, ConfusionCell, Cursor, DriftSample, Order, Page, ServedRow, Summary, SummarySource,
};
use super::modes::{RowsDone, StoreOptions};
use super::postgres::PgStore;
use super::record::{
    AuditRecord, Feedback, FeedbackStored, RequestRef, StoredFeedback, StoredRecord, Truth, Written,
};
use super::rollup::{self, EdgeSplit, PackedRow, ReadPlan, RollupRange, RollupRow};
use super::sql::writes::Pruned;
use super::sqlite::SqliteStore;
use super::url::{Backend as Scheme, DatabaseUrl};

/// A bucket wider than any range, of whole hours: [`Store::rollups`] sums everything into one.
const ALL_MINUTES: i64 = rollup::HOUR << 40;

/// Rows per read when the partial minutes at a range's edges are counted from the rows.
const EDGE_PAGE: usize = 1000;

/// Rollup counts computed from rows ([`Store::counts_of_rows`]).
#[derive(Debug, Clone, Default)]
pub struct RowCounts {
    pub counts: Vec<RollupRow>,
    /// The range held more rows than were counted.
    pub truncated: bool,
}

/// The audit backend.
#[derive(Debug, Clone)]
pub enum Store {
    Sqlite(SqliteStore),
    Postgres(PgStore),
}

/// The backend's own background work (SQLite: checkpoints), stopped by the writer before it
/// closes the store.
pub struct Maintenance(Option<tokio::task::JoinHandle<()>>);

impl Maintenance {
    pub async fn stop(self) {
        if let Some(task) = self.0 {
            task.abort();
            let _ = task.await;
        }
    }
}

/// `$call` on the variant's backend.
macro_rules! on_backend {
    // A backend's failure, classed by that backend.
    ($store:expr, $b:ident => faulted $call:expr) => {
        match $store {
            Store::Sqlite($b) => $call.map_err(<SqliteStore as Backend>::fault),
            Store::Postgres($b) => $call.map_err(<PgStore as Backend>::fault),
        }
    };
    ($store:expr, $b:ident => $call:expr) => {
        match $store {
            Store::Sqlite($b) => $call,
            Store::Postgres($b) => $call,
        }
    };
}

impl Store {
    /// Opens the store a database URL names, creating and migrating it as needed.
    pub async fn open(url: &DatabaseUrl, opts: &StoreOptions) -> anyhow::Result<Store> {
        Ok(match url.backend() {
            Scheme::Sqlite(o) => Store::Sqlite(SqliteStore::open(o.clone(), opts).await?),
            Scheme::Postgres(o) => Store::Postgres(PgStore::open(o.clone(), opts).await?),
        })
    }

    /// What the backend can do, for the choices made above it.
    pub fn capabilities(&self) -> Capabilities {
        on_backend!(self, b => b.capabilities())
    }

    /// Starts the backend's background work on the current runtime.
    pub fn spawn_maintenance(&self, log: Logger) -> Maintenance {
        Maintenance(on_backend!(self, b => b.spawn_maintenance(log)))
    }

    /// See [`Backend::write_batch`].
    pub async fn write_batch(&self, records: &[&AuditRecord]) -> Result<Written, StoreFault> {
        on_backend!(self, b => faulted b.write_batch(records).await)
    }

    /// See [`Backend::import_batch`].
    pub async fn import_batch(&self, records: &[&AuditRecord]) -> Result<Written, StoreFault> {
        on_backend!(self, b => faulted b.import_batch(records).await)
    }

    /// Whether the store answers a query now (a `select 1`): readiness asks it, bounded by
    /// a short timeout, so a database server that stopped shows at once.
    pub async fn ping(&self) -> Result<(), StoreFault> {
        on_backend!(self, b => b.ping().await)
    }

    /// See [`Backend::probe`].
    pub async fn probe(&self) -> Result<(), StoreFault> {
        on_backend!(self, b => faulted b.probe().await)
    }

    /// Up to `limit` rows matching `filter` after the position `after`, in the filter's order,
    /// each with its own position. In ascending order a walk that follows the positions sees
    /// every row exactly once, also while writes go on (on PostgreSQL with several writers
    /// too: rows are handed out only once no transaction that could still add an earlier one
    /// is open).
    pub async fn page(
        &self,
        filter: &AuditFilter,
        after: Option<Cursor>,
        limit: usize,
    ) -> Result<Page, StoreFault> {
        on_backend!(self, b => b.page(filter, after, limit).await)
    }

    pub async fn request(&self, request_id: &str) -> Result<Vec<StoredRecord>, StoreFault> {
        on_backend!(self, b => b.request(request_id).await)
    }

    /// The requests (oldest first, at most `limit`) that sent `client_id` as their
    /// `X-Request-Id`.
    pub async fn client_requests(
        &self,
        client_id: &str,
        limit: usize,
    ) -> Result<Vec<RequestRef>, StoreFault> {
        on_backend!(self, b => b.client_requests(client_id, limit).await)
    }

    /// The summary of the rows a filter selects: from the rollups when they answer it
    /// exactly (see [`RollupRange::of`]), else from the rows; `source` says which.
    ///
    /// Time bounds inside a minute do not send the whole range to the rows: its whole minutes
    /// come from the rollups and only the partial minutes at its edges from the rows
    /// ([`EdgeSplit`]), read newest first in pages of [`EDGE_PAGE`] (short reads, none
    /// holding a snapshot for long).
    pub async fn summary(&self, filter: &AuditFilter) -> Result<Summary, StoreFault> {
        if let Some(range) = RollupRange::of(filter) {
            let rows = self.rollup_totals(&range).await?;
            return Ok(rollup::summary(&rows));
        }
        if let Some(split) = EdgeSplit::of(filter) {
            let mut rows = match &split.whole {
                Some(range) => self.rollup_totals(range).await?,
                None => Vec::new(),
            };
            for edge in &split.edges {
                let edge = self
                    .counts_of_rows(edge, &Baselines::default(), usize::MAX)
                    .await?;
                rows.extend(edge.counts);
            }
            let mut summary = rollup::summary(&rows);
            summary.source = SummarySource::RollupsAndEdgeRows;
            return Ok(summary);
        }
        self.summary_of_rows(filter).await
    }

    /// The rollup counts of the rows `filter` selects, counted from the rows themselves, in
    /// pages of [`EDGE_PAGE`]; features are binned over the versions `baselines` knows. At
    /// most the `most` newest rows are counted; whether there were more.
    pub async fn counts_of_rows(
        &self,
        filter: &AuditFilter,
        baselines: &Baselines,
        most: usize,
    ) -> Result<RowCounts, StoreFault> {
        let filter = AuditFilter {
            order: Order::Desc,
            ..filter.clone()
        };
        let mut records = Vec::new();
        let mut after = None;
        loop {
            // One row past `most` tells whether there were more.
            let want = EDGE_PAGE.min((most - records.len()).saturating_add(1));
            let page = self.page(&filter, after, want).await?;
            let full = page.len() == want;
            after = page.positions.last().copied();
            for r in page.records {
                records.push(
                    r.into_record()
                        .map_err(|e| StoreFault::new(FaultKind::Other, &e))?,
                );
            }
            if !full || records.len() > most {
                break;
            }
        }
        let more = records.len() > most;
        records.truncate(most);
        let counts = rollup::counts_of(&records, baselines)
            .map_err(|e| StoreFault::new(FaultKind::Other, &e))?;
        Ok(RowCounts {
            counts,
            truncated: more,
        })
    }

    /// The summary computed from the rows, whatever the filter.
    pub async fn summary_of_rows(&self, filter: &AuditFilter) -> Result<Summary, StoreFault> {
        on_backend!(self, b => b.summary(filter).await)
    }

    /// The rollup rows and pending deltas behind the counts of a range, for buckets of
    /// `bucket_minutes` (see [`rollup::for_each`]): buckets of whole hours read hour rows
    /// where whole hours fit.
    pub async fn rollup_rows(
        &self,
        range: &RollupRange,
        bucket_minutes: i64,
    ) -> Result<Vec<PackedRow>, StoreFault> {
        let plan = ReadPlan::of(range, bucket_minutes % rollup::HOUR == 0);
        on_backend!(self, b => b.rollup_rows(range, &plan).await)
    }

    /// Rollup counts of a range, summed per bucket of `bucket_minutes` minutes (buckets start
    /// at multiples of it since the epoch).
    pub async fn rollups(
        &self,
        range: &RollupRange,
        bucket_minutes: i64,
    ) -> Result<Vec<RollupRow>, StoreFault> {
        let rows = self.rollup_rows(range, bucket_minutes).await?;
        rollup::collect(&rows, range, bucket_minutes)
            .map_err(|e| StoreFault::new(FaultKind::Other, &e))
    }

    /// Rollup counts of a range, all in one bucket.
    pub async fn rollup_totals(&self, range: &RollupRange) -> Result<Vec<RollupRow>, StoreFault> {
        self.rollups(range, ALL_MINUTES).await
    }

    /// Removes the oldest `limit` rows received before `before` and their feedback, in one
    /// short transaction; none left is `Pruned::default()`.
    pub async fn prune_batch(
        &self,
        before: &chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Pruned, StoreFault> {
        on_backend!(self, b => faulted b.prune_batch(before, limit).await)
    }

    /// What a prune before `before` would remove.
    pub async fn prunable(
        &self,
        before: &chrono::DateTime<chrono::Utc>,
    ) -> Result<Pruned, StoreFault> {
        on_backend!(self, b => b.prunable(before).await)
    }

    /// Recomputes every rollup from the rows (after rows were changed by hand, or to check),
    /// telling `done` the rows counted so far.
    pub async fn rebuild_rollups(&self, done: RowsDone<'_>) -> Result<(), StoreFault> {
        on_backend!(self, b => faulted b.rebuild_rollups(done).await)
    }

    /// Features (row-major) and predicted classes of the most recent `max_rows` answered rows
    /// of `model` that have `n_features` features, for drift, and whether the range held more.
    pub async fn drift_rows(
        &self,
        model: &str,
        n_features: usize,
        filter: &AuditFilter,
        max_rows: usize,
    ) -> Result<DriftSample, StoreFault> {
        on_backend!(self, b => b.drift_rows(model, n_features, filter, max_rows).await)
    }

    /// The model and label answered for `(request_id, item)`; `None` if no such answered row.
    pub async fn served_row(
        &self,
        request_id: &str,
        item: i64,
    ) -> Result<Option<ServedRow>, StoreFault> {
        on_backend!(self, b => b.served_row(request_id, item).await)
    }

    /// Stores a truth; returns the truth it replaces, if any.
    pub async fn insert_feedback(&self, fb: &Feedback) -> Result<Option<Truth>, StoreFault> {
        match on_backend!(self, b => faulted b.store_feedback(fb, false).await)? {
            FeedbackStored::New { replaced } => Ok(replaced),
            FeedbackStored::Already => Ok(None),
        }
    }

    /// Up to `limit` feedback rows after the feedback id `after`, oldest first, with their ids
    /// (for copying a store).
    pub async fn feedback_after(
        &self,
        after: i64,
        limit: usize,
    ) -> Result<Vec<StoredFeedback>, StoreFault> {
        on_backend!(self, b => b.feedback_after(after, limit).await)
    }

    /// Stores a feedback row unless an identical one (same request, item, label and time) is
    /// there already, so copying a store twice copies nothing twice. Whether it was new.
    pub async fn copy_feedback(&self, fb: &Feedback) -> Result<bool, StoreFault> {
        let stored = on_backend!(self, b => faulted b.store_feedback(fb, true).await)?;
        Ok(stored != FeedbackStored::Already)
    }

    /// (answer, true value) of the answered rows of the regression model `model` that have a
    /// true value.
    pub async fn regression_pairs(
        &self,
        model: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<(f64, f64)>, StoreFault> {
        on_backend!(self, b => b.regression_pairs(model, filter).await)
    }

    /// (predicted label, true label, count) of the labelled answered rows of `model`.
    pub async fn confusion(
        &self,
        model: &str,
        filter: &AuditFilter,
    ) -> Result<Vec<ConfusionCell>, StoreFault> {
        on_backend!(self, b => b.confusion(model, filter).await)
    }

    /// Writes a consistent copy of the whole store to `file` (a new file), while writes go on.
    pub async fn snapshot(&self, file: &std::path::Path) -> Result<(), StoreFault> {
        on_backend!(self, b => b.snapshot(file).await)
    }

    /// Size of the store's write-ahead log in bytes, where it has one (for `/metrics`).
    pub fn wal_bytes(&self) -> u64 {
        on_backend!(self, b => b.wal_bytes())
    }

    pub async fn close(&self) {
        on_backend!(self, b => b.close().await)
    }
}
