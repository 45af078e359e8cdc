//! The writer's loop, in steps a test can call one at a time: [`Writer::collect_round`] waits
//! for work and takes what is queued, [`Writer::commit_round`] writes it and answers durable
//! jobs, [`Writer::wait_while_failing`] backs off before a retry of owed rows (or, at
//! shutdown, gives them up to the log).

use std::sync::Arc;
use std::time::{Duration, Instant};

use slog::{Logger, error, info, warn};
use tokio::sync::{mpsc, oneshot};

use super::health::StoreHealth;
use super::metrics::WriterMetrics;
use super::options::{MAX_BATCH_ROWS, WriterOptions};
use super::sink::{Ack, Job};
use crate::audit::fault::StoreFault;
use crate::audit::record::{AuditRecord, format_time};
use crate::audit::store::{Maintenance, Store};
use crate::throttle::Throttle;

/// How often a commit failure that keeps repeating is logged.
const REPEATED_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// First wait between retries of a failing store.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// Rows already answered that must still be committed, plus durable jobs of this round.
#[derive(Default)]
struct Round {
    owed: Vec<AuditRecord>,
    durable: Vec<(Vec<AuditRecord>, Ack)>,
    rows: usize,
}

impl Round {
    fn add(&mut self, records: Vec<AuditRecord>, ack: Option<Ack>) {
        self.rows += records.len();
        match ack {
            None => self.owed.extend(records),
            Some(ack) => self.durable.push((records, ack)),
        }
    }
}

pub(crate) struct Writer {
    store: Store,
    rx: mpsc::Receiver<Job>,
    log: Logger,
    health: Arc<StoreHealth>,
    metrics: WriterMetrics,
    /// The store's background work, started with the writer and stopped before it closes
    /// the store.
    maintenance: Option<Maintenance>,
    /// What the next commit writes.
    round: Round,
    /// Wait before the next retry or probe of a failing store.
    backoff: Duration,
    max_backoff: Duration,
    /// Set by a shutdown job: drain, then answer it.
    shutdown: Option<oneshot::Sender<()>>,
    /// Every sender is gone.
    closed: bool,
    /// Lets the commit-failure line through once per interval.
    failure_log: Throttle,
}

impl Writer {
    pub(super) fn new(
        store: Store,
        rx: mpsc::Receiver<Job>,
        log: Logger,
        health: Arc<StoreHealth>,
        opts: &WriterOptions,
    ) -> Writer {
        let maintenance = Some(store.spawn_maintenance(log.clone()));
        Writer {
            store,
            rx,
            log,
            health,
            metrics: opts.metrics.clone(),
            maintenance,
            round: Round::default(),
            backoff: MIN_BACKOFF,
            max_backoff: opts.max_backoff.max(MIN_BACKOFF),
            shutdown: None,
            closed: false,
            failure_log: Throttle::new(REPEATED_FAILURE_LOG_EVERY),
        }
    }

    /// Runs until shut down (or every sender is gone) with nothing left to write.
    pub(crate) async fn run(mut self) {
        loop {
            self.collect_round().await;
            if self.commit_round().await.is_err() {
                self.wait_while_failing().await;
                continue;
            }
            if self.finished() {
                break;
            }
        }
        if let Some(m) = self.maintenance.take() {
            m.stop().await;
        }
        if let Some(done) = self.shutdown.take() {
            let _ = done.send(());
        }
        self.store.close().await;
    }

    /// Waits for work, unless rows are owed from a failed round or the writer is draining,
    /// then takes whatever else is queued, up to [`MAX_BATCH_ROWS`]. While the store is failing
    /// and nothing is owed, no write would tell when it works again (and a service that is not
    /// ready gets no traffic), so it probes the store between waits.
    pub(crate) async fn collect_round(&mut self) {
        if self.round.owed.is_empty() && self.shutdown.is_none() && !self.closed {
            let job = if self.health.problem().is_none() {
                self.rx.recv().await
            } else {
                match tokio::time::timeout(self.backoff, self.rx.recv()).await {
                    Ok(job) => job,
                    Err(_) => {
                        self.probe().await;
                        return;
                    }
                }
            };
            match job {
                Some(job) => self.take(job),
                None => self.closed = true,
            }
        }
        while self.round.rows < MAX_BATCH_ROWS && !self.closed {
            match self.rx.try_recv() {
                Ok(job) => self.take(job),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.closed = true,
            }
        }
    }

    /// Writes the round in one transaction. On success every durable job gets the moment its
    /// rows were written; on failure each gets the fault (its client a 503) and the owed rows
    /// stay for a retry. Durable jobs whose handler gave up waiting are not written: it
    /// answered 503. Returns the rows written.
    pub(crate) async fn commit_round(&mut self) -> Result<usize, StoreFault> {
        self.round.durable.retain(|(_, ack)| !ack.is_closed());
        if self.round.owed.is_empty() && self.round.durable.is_empty() {
            self.round.rows = 0;
            return Ok(0);
        }
        let refs: Vec<&AuditRecord> = self
            .round
            .owed
            .iter()
            .chain(self.round.durable.iter().flat_map(|(r, _)| r.iter()))
            .collect();
        let n = refs.len();
        let started = Instant::now();
        let result = self.store.write_batch(&refs).await;
        drop(refs);
        match result {
            Ok(written) => {
                let stored_at = written.at;
                if self.health.problem().is_some() {
                    info!(self.log, "audit store writable again");
                }
                self.health.set_ok();
                self.metrics.rows_written.inc_by(n as u64);
                self.metrics.batch_rows.observe(n as f64);
                self.metrics
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                for (_, ack) in self.round.durable.drain(..) {
                    let _ = ack.send(Ok(stored_at));
                }
                self.round = Round::default();
                self.backoff = MIN_BACKOFF;
                Ok(n)
            }
            Err(fault) => {
                self.metrics.write_errors.inc();
                self.health.set_failed(fault.cause().to_string());
                // Once per interval while the store keeps failing, with the count held back.
                if let Some(held_back) = self.failure_log.admit() {
                    error!(self.log, "audit commit failed; will retry";
                        "failures_not_logged" => held_back,
                        "error" => fault.detail(), "owed_rows" => self.round.owed.len(),
                        "durable_rows_refused" => self.round.durable.iter().map(|(r, _)| r.len()).sum::<usize>());
                }
                for (_, ack) in self.round.durable.drain(..) {
                    let _ = ack.send(Err(fault.clone()));
                }
                self.round.rows = self.round.owed.len();
                Err(fault)
            }
        }
    }

    /// After a failed commit: waits the backoff (doubling up to the maximum) before owed rows
    /// are retried. At shutdown, once a retry after the longest wait has failed too, the owed
    /// rows are given up to the log instead, so that shutdown ends.
    pub(crate) async fn wait_while_failing(&mut self) {
        if self.round.owed.is_empty() {
            return;
        }
        if self.shutdown.is_some() && self.backoff >= self.max_backoff {
            let owed = std::mem::take(&mut self.round.owed);
            self.give_up(&owed);
            self.round = Round::default();
            return;
        }
        tokio::time::sleep(self.backoff).await;
        self.backoff = (self.backoff * 2).min(self.max_backoff);
    }

    /// Shut down (or abandoned by every sender), and nothing is left to write.
    pub(crate) fn finished(&self) -> bool {
        (self.shutdown.is_some() || self.closed) && self.round.owed.is_empty() && self.rx.is_empty()
    }

    async fn probe(&mut self) {
        match self.store.probe().await {
            Ok(()) => {
                info!(self.log, "audit store writable again");
                self.health.set_ok();
                self.backoff = MIN_BACKOFF;
            }
            Err(fault) => {
                self.health.set_failed(fault.cause().to_string());
                self.backoff = (self.backoff * 2).min(self.max_backoff);
            }
        }
    }

    fn take(&mut self, job: Job) {
        match job {
            Job::Write { records, ack } => self.round.add(records, ack),
            Job::Shutdown(done) => {
                info!(self.log, "audit writer draining");
                self.shutdown = Some(done);
            }
        }
    }

    /// At shutdown, with the store still failing after retries: the rows cannot be kept in the
    /// database, so they go to the log in full (as JSON) rather than vanish.
    fn give_up(&self, owed: &[AuditRecord]) {
        warn!(self.log, "audit store still failing at shutdown; writing owed rows to the log";
            "rows" => owed.len());
        let now = Instant::now();
        for r in owed {
            error!(self.log, "unsaved audit row";
                "raw_body" => ?r.raw_body, "client_addr" => ?r.client_addr.as_deref(),
                "latency_us" => r.latency.micros(now), "error_code" => ?r.error_code.as_deref(),
                "status" => r.status, "label" => ?r.label.as_deref(),
                "prediction" => ?r.prediction, "features" => ?r.features,
                "model_version" => ?r.model_version.as_deref(), "model" => ?r.model.as_deref(),
                "received_at" => %format_time(&r.received_at), "item" => r.item,
                "request_id" => %r.request_id);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The failure paths of the writer's steps, on a real SQLite file that another connection
    //! locks, as a second writer would. Each runs in milliseconds: the store's busy timeout
    //! and the writer's backoff are a few milliseconds here.

    use std::time::Duration;

    use sqlx::Connection;

    use super::*;
    use crate::audit::fault::FaultKind;
    use crate::audit::modes::StoreOptions;
    use crate::audit::modes::{AuditMode, SyncLevel};
    use crate::audit::record::Latency;

    struct Setup {
        _dir: tempfile::TempDir,
        url: String,
        writer: Writer,
        tx: mpsc::Sender<Job>,
        health: Arc<StoreHealth>,
    }

    async fn setup() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("audit.db").display());
        let opts = StoreOptions {
            sync: SyncLevel::Normal,
            busy_timeout: Duration::from_millis(5),
            read_only: false,
            max_bytes: None,
        };
        let store = Store::open(&url, &opts).await.unwrap();
        let (tx, rx) = mpsc::channel(16);
        let health = Arc::new(StoreHealth::default());
        let log = Logger::root(slog::Discard, slog::o!());
        let writer_opts = WriterOptions {
            mode: AuditMode::Durable,
            queue_capacity: 16,
            queue_timeout: Duration::from_millis(10),
            commit_timeout: Duration::from_secs(1),
            max_backoff: Duration::from_millis(60),
            metrics: WriterMetrics::default(),
        };
        let writer = Writer::new(store, rx, log, Arc::clone(&health), &writer_opts);
        Setup {
            _dir: dir,
            url,
            writer,
            tx,
            health,
        }
    }

    fn row(request_id: &str) -> AuditRecord {
        AuditRecord {
            request_id: request_id.into(),
            client_request_id: None,
            item: 0,
            received_at: chrono::Utc::now(),
            model: Some("iris".into()),
            model_version: None,
            features: Some("[1,2,3,4]".into()),
            prediction: Some(0),
            label: Some("setosa".into()),
            status: 200,
            error_code: None,
            latency: Latency::Answered(7),
            client_addr: None,
            raw_body: None,
            outliers: None,
        }
    }

    /// Another connection holding the write lock.
    async fn lock(url: &str) -> sqlx::SqliteConnection {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query("begin exclusive")
            .execute(&mut c)
            .await
            .unwrap();
        c
    }

    async fn request_ids(url: &str) -> Vec<String> {
        let mut c = sqlx::SqliteConnection::connect(url).await.unwrap();
        sqlx::query_scalar("select request_id from prediction order by id")
            .fetch_all(&mut c)
            .await
            .unwrap()
    }

    fn durable(tx: &mpsc::Sender<Job>, id: &str) -> oneshot::Receiver<Result<Instant, StoreFault>> {
        let (ack, done) = oneshot::channel();
        tx.try_send(Job::Write {
            records: vec![row(id)],
            ack: Some(ack),
        })
        .ok()
        .unwrap();
        done
    }

    fn owed(tx: &mpsc::Sender<Job>, id: &str) {
        tx.try_send(Job::Write {
            records: vec![row(id)],
            ack: None,
        })
        .ok()
        .unwrap();
    }

    #[tokio::test]
    async fn a_failed_commit_refuses_durable_jobs_and_retries_owed_rows_once() {
        let mut s = setup().await;
        let mut other = lock(&s.url).await;
        let refused = durable(&s.tx, "durable");
        owed(&s.tx, "owed");
        s.writer.collect_round().await;
        let fault = s.writer.commit_round().await.unwrap_err();
        assert_eq!(fault.kind, FaultKind::LockedByOther);
        assert_eq!(
            refused.await.unwrap().unwrap_err().kind,
            FaultKind::LockedByOther
        );
        assert!(
            s.health
                .problem()
                .unwrap()
                .contains("locked by another process")
        );

        sqlx::query("rollback").execute(&mut other).await.unwrap();
        s.writer.wait_while_failing().await;
        // Owed rows are retried without waiting for new work.
        s.writer.collect_round().await;
        assert_eq!(s.writer.commit_round().await.unwrap(), 1);
        assert_eq!(request_ids(&s.url).await, ["owed"]);
        assert!(s.health.problem().is_none());
    }

    #[tokio::test]
    async fn a_durable_job_whose_handler_gave_up_is_not_written() {
        let mut s = setup().await;
        let gave_up = durable(&s.tx, "gave-up");
        drop(gave_up);
        let kept = durable(&s.tx, "kept");
        s.writer.collect_round().await;
        assert_eq!(s.writer.commit_round().await.unwrap(), 1);
        assert!(kept.await.unwrap().is_ok());
        assert_eq!(request_ids(&s.url).await, ["kept"]);
    }

    #[tokio::test]
    async fn durable_rows_carry_the_latency_of_the_moment_they_were_written() {
        let mut s = setup().await;
        let arrived = Instant::now() - Duration::from_millis(250);
        let (ack, done) = oneshot::channel();
        let mut r = row("slow");
        r.latency = Latency::UntilStored(arrived);
        s.tx.try_send(Job::Write {
            records: vec![r],
            ack: Some(ack),
        })
        .ok()
        .unwrap();
        s.writer.collect_round().await;
        s.writer.commit_round().await.unwrap();
        let stored_at = done.await.unwrap().unwrap();
        let mut c = sqlx::SqliteConnection::connect(&s.url).await.unwrap();
        let latency: i64 = sqlx::query_scalar("select latency_us from prediction")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(
            latency as u64,
            crate::audit::micros_between(arrived, stored_at)
        );
        assert!(latency >= 250_000, "{latency}");
    }

    #[tokio::test]
    async fn readiness_recovers_by_probing_without_traffic() {
        let mut s = setup().await;
        let mut other = lock(&s.url).await;
        s.health.set_failed("locked".into());
        // Nothing is queued: collecting waits out the backoff, then probes the store.
        s.writer.collect_round().await;
        assert!(
            s.health
                .problem()
                .unwrap()
                .contains("locked by another process")
        );
        sqlx::query("rollback").execute(&mut other).await.unwrap();
        s.writer.collect_round().await;
        assert!(s.health.problem().is_none());
        // The probe wrote nothing.
        assert!(request_ids(&s.url).await.is_empty());
    }

    #[tokio::test]
    async fn shutdown_with_a_failing_store_ends_after_the_longest_backoff() {
        let s = setup().await;
        let _other = lock(&s.url).await;
        owed(&s.tx, "never");
        let (done, finished) = oneshot::channel();
        s.tx.try_send(Job::Shutdown(done)).ok().unwrap();
        let run = tokio::spawn(s.writer.run());
        // The owed row cannot be written: it is given up to the log and the drain ends (a
        // drain that never ends fails here instead of hanging the test run).
        tokio::time::timeout(Duration::from_secs(20), finished)
            .await
            .expect("the drain ended")
            .unwrap();
        run.await.unwrap();
        drop(_other);
        assert!(request_ids(&s.url).await.is_empty());
    }
}
