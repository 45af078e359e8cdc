//! The writer's loop, in steps a test can call one at a time: [`Writer::collect_round`] waits
//! for work and takes what is queued, [`Writer::commit_round`] writes it and answers durable
//! jobs, [`Writer::wait_while_failing`] backs off before a retry of owed rows.
//!
//! Shutdown comes as a deadline ([`super::WriterHandle::shutdown`]), outside the queue, so it
//! is seen however full the queue is. The writer then commits what it holds and what is
//! queued; rows it cannot commit before the deadline (less a short reserve) go to the spill
//! file, so shutdown always ends in time and no acknowledged row is only in memory.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use slog::{Logger, crit, error, info, warn};
use tokio::sync::{OwnedSemaphorePermit, mpsc, watch};

use super::health::StoreHealth;
use super::metrics::WriterMetrics;
use super::options::{MAX_BATCH_ROWS, WriterOptions};
use super::sink::{Ack, Job};
use crate::audit::fault::{FaultKind, StoreFault};
use crate::audit::record::{AuditRecord, format_time};
use crate::audit::spill;
use crate::audit::store::{Maintenance, Store};
use crate::throttle::Throttle;

/// How often a commit failure that keeps repeating is logged.
const REPEATED_FAILURE_LOG_EVERY: Duration = Duration::from_secs(10);

/// First wait between retries of a failing store.
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// Time kept before the shutdown deadline for writing the spill file and closing the store:
/// a quarter of the time left when shutdown began, at most this.
const SPILL_RESERVE: Duration = Duration::from_millis(500);

/// Rows already answered that must still be committed, plus durable jobs of this round, with
/// their places in the queue.
#[derive(Default)]
struct Round {
    owed: Vec<AuditRecord>,
    owed_places: Option<OwnedSemaphorePermit>,
    durable: Vec<(Vec<AuditRecord>, Ack, OwnedSemaphorePermit)>,
    rows: usize,
}

impl Round {
    fn add(&mut self, job: Job) {
        self.rows += job.records.len();
        match job.ack {
            None => {
                self.owed.extend(job.records);
                match &mut self.owed_places {
                    Some(places) => places.merge(job.permit),
                    None => self.owed_places = Some(job.permit),
                }
            }
            Some(ack) => self.durable.push((job.records, ack, job.permit)),
        }
    }
}

/// What the writers of one store share: the last to finish stops the store's background
/// work and closes it, so no writer's commit meets a closed store.
pub(crate) struct Shared {
    running: std::sync::atomic::AtomicUsize,
    /// The store's background work, started with the writers.
    maintenance: std::sync::Mutex<Option<Maintenance>>,
}

impl Shared {
    /// For `writers` writers of `store`, starting its background work.
    pub(crate) fn start(store: &Store, writers: usize, log: &Logger) -> Arc<Shared> {
        Arc::new(Shared {
            running: std::sync::atomic::AtomicUsize::new(writers),
            maintenance: std::sync::Mutex::new(Some(store.spawn_maintenance(log.clone()))),
        })
    }
}

pub(crate) struct Writer {
    store: Store,
    rx: mpsc::UnboundedReceiver<Job>,
    /// The shutdown deadline, once shutdown has begun.
    stop: watch::Receiver<Option<Instant>>,
    log: Logger,
    health: Arc<StoreHealth>,
    metrics: WriterMetrics,
    /// Shared with the store's other writers.
    shared: Arc<Shared>,
    /// What the next commit writes.
    round: Round,
    /// Wait before the next retry or probe of a failing store.
    backoff: Duration,
    max_backoff: Duration,
    /// Shutting down: (deadline, moment from which rows still held are spilled).
    draining: Option<(Instant, Instant)>,
    /// Every sender is gone.
    closed: bool,
    /// The shutdown signal's sender is gone (no deadline will come).
    stop_gone: bool,
    /// Lets the commit-failure line through once per interval.
    failure_log: Throttle,
    /// Where rows go that cannot be committed before the shutdown deadline.
    spill: Option<PathBuf>,
}

impl Writer {
    /// One of the store's writers, taking the jobs of `rx`.
    pub(super) fn new(
        store: Store,
        rx: mpsc::UnboundedReceiver<Job>,
        stop: watch::Receiver<Option<Instant>>,
        log: Logger,
        health: Arc<StoreHealth>,
        shared: Arc<Shared>,
        opts: &WriterOptions,
    ) -> Writer {
        Writer {
            store,
            rx,
            stop,
            log,
            health,
            metrics: opts.metrics.clone(),
            shared,
            round: Round::default(),
            backoff: MIN_BACKOFF,
            max_backoff: opts.max_backoff.max(MIN_BACKOFF),
            draining: None,
            closed: false,
            stop_gone: false,
            failure_log: Throttle::new(REPEATED_FAILURE_LOG_EVERY),
            spill: opts.spill.clone(),
        }
    }

    /// Runs until shut down (or every sender is gone) with nothing left to write.
    pub(crate) async fn run(mut self) {
        loop {
            self.collect_round().await;
            if self.commit_round().await.is_err() {
                self.wait_while_failing().await;
            }
            if self.finished() {
                // Handlers may still be running on workers that have not stopped yet (a forced
                // stop does not wait for them): close the queue, so a later row is refused
                // (its request answered 503, not acknowledged), and take what came in before.
                if !self.rx.is_closed() {
                    self.rx.close();
                    continue;
                }
                break;
            }
        }
        // The last writer to finish closes the store.
        if self
            .shared
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::AcqRel)
            != 1
        {
            return;
        }
        // Bounded by the deadline too: a store stuck in I/O must not hold the exit.
        let left = self
            .draining
            .map_or(Duration::from_secs(5), |(deadline, _)| {
                deadline.saturating_duration_since(Instant::now())
            })
            .max(Duration::from_millis(50));
        let maintenance = self.shared.maintenance.lock().unwrap().take();
        let close = async {
            if let Some(m) = maintenance {
                m.stop().await;
            }
            self.store.close().await;
        };
        if tokio::time::timeout(left, close).await.is_err() {
            warn!(
                self.log,
                "the audit store did not close before the shutdown deadline"
            );
        }
    }

    /// Waits for work, unless rows are owed from a failed round or the writer is draining,
    /// then takes whatever else is queued, up to [`MAX_BATCH_ROWS`]. While the store is failing
    /// and nothing is owed, no write would tell when it works again (and a service that is not
    /// ready gets no traffic), so it probes the store between waits.
    pub(crate) async fn collect_round(&mut self) {
        self.see_stop();
        if self.round.owed.is_empty() && self.draining.is_none() && !self.closed {
            let wait = if self.health.problem().is_none() {
                None
            } else {
                Some(self.backoff)
            };
            let stop_open = !self.stop_gone;
            let wake = tokio::select! {
                job = self.rx.recv() => Wake::Job(job),
                r = self.stop.changed(), if stop_open => Wake::Stop(r.is_ok()),
                _ = sleep_or_never(wait) => Wake::Probe,
            };
            match wake {
                Wake::Job(Some(job)) => self.round.add(job),
                Wake::Job(None) => self.closed = true,
                Wake::Stop(open) => {
                    self.stop_gone = !open;
                    self.see_stop();
                }
                Wake::Probe => {
                    self.probe().await;
                    return;
                }
            }
        }
        while self.round.rows < MAX_BATCH_ROWS && !self.closed {
            match self.rx.try_recv() {
                Ok(job) => self.round.add(job),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.closed = true,
            }
        }
    }

    /// Writes the round in one transaction. On success every durable job gets the moment its
    /// rows were written; on failure each gets the fault (its client a 503) and the owed rows
    /// stay for a retry. Durable jobs whose handler gave up waiting are not written: it
    /// answered 503. Returns the rows written. While draining, a write still running when
    /// rows must be spilled counts as failed (a write that finishes later anyway leaves rows
    /// the replay skips).
    pub(crate) async fn commit_round(&mut self) -> Result<usize, StoreFault> {
        self.round.durable.retain(|(_, ack, _)| !ack.is_closed());
        if self.round.owed.is_empty() && self.round.durable.is_empty() {
            self.round = Round::default();
            return Ok(0);
        }
        let refs: Vec<&AuditRecord> = self
            .round
            .owed
            .iter()
            .chain(self.round.durable.iter().flat_map(|(r, _, _)| r.iter()))
            .collect();
        let n = refs.len();
        let started = Instant::now();
        let result = {
            let write = self.store.write_batch(&refs);
            tokio::pin!(write);
            // A shutdown that begins while the commit waits (for a lock, a busy timeout of
            // seconds) bounds it too: the commit may run only until rows must be spilled.
            loop {
                if let Some((_, spill_at)) = self.draining {
                    let left = spill_at.saturating_duration_since(Instant::now());
                    break match tokio::time::timeout(left, &mut write).await {
                        Ok(result) => result,
                        Err(_) => Err(StoreFault::new(
                            FaultKind::Other,
                            &anyhow::anyhow!(
                                "the audit commit did not finish before the shutdown deadline"
                            ),
                        )),
                    };
                }
                if self.stop_gone {
                    break (&mut write).await;
                }
                tokio::select! {
                    result = &mut write => break result,
                    changed = self.stop.changed() => match changed {
                        Ok(()) => {
                            self.draining = start_draining(&mut self.stop, &self.log, self.round.rows);
                        }
                        Err(_) => self.stop_gone = true,
                    },
                }
            }
        };
        drop(refs);
        match result {
            Ok(written) => {
                self.committed(n, started, written.at);
                Ok(n)
            }
            Err(fault) => {
                self.failed(&fault);
                Err(fault)
            }
        }
    }

    /// A round committed at `at`: its durable jobs are answered, its places in the queue given
    /// back.
    fn committed(&mut self, n: usize, started: Instant, at: Instant) {
        if self.health.problem().is_some() {
            info!(self.log, "audit store writable again");
        }
        self.health.set_ok();
        self.metrics.rows_written.inc_by(n as u64);
        self.metrics.batch_rows.observe(n as f64);
        self.metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        for (_, ack, _) in self.round.durable.drain(..) {
            let _ = ack.send(Ok(at));
        }
        self.round = Round::default();
        self.backoff = MIN_BACKOFF;
    }

    /// A round that failed: its durable jobs get the fault, its owed rows stay for a retry.
    fn failed(&mut self, fault: &StoreFault) {
        self.metrics.write_errors.inc();
        self.health.set_failed(fault.cause().to_string());
        // Once per interval while the store keeps failing, with the count held back.
        if let Some(held_back) = self.failure_log.admit() {
            error!(self.log, "audit commit failed; will retry";
                "failures_not_logged" => held_back,
                "error" => fault.detail(), "owed_rows" => self.round.owed.len(),
                "durable_rows_refused" => self.round.durable.iter().map(|(r, _, _)| r.len()).sum::<usize>());
        }
        for (_, ack, _) in self.round.durable.drain(..) {
            let _ = ack.send(Err(fault.clone()));
        }
        self.round.rows = self.round.owed.len();
    }

    /// After a failed commit: waits the backoff (doubling up to the maximum) before owed rows
    /// are retried. A shutdown that begins meanwhile ends the wait. While draining, the wait
    /// never passes the moment rows must be spilled, and from that moment on every row still
    /// held, owed or queued, goes to the spill file instead.
    pub(crate) async fn wait_while_failing(&mut self) {
        if self.round.owed.is_empty() {
            return;
        }
        self.see_stop();
        match self.draining {
            Some((_, spill_at)) => {
                let now = Instant::now();
                if now >= spill_at {
                    self.spill_all();
                    return;
                }
                tokio::time::sleep(self.backoff.min(spill_at - now)).await;
            }
            None => {
                let stop_open = !self.stop_gone;
                let stopped = tokio::select! {
                    _ = tokio::time::sleep(self.backoff) => None,
                    r = self.stop.changed(), if stop_open => Some(r.is_ok()),
                };
                if let Some(open) = stopped {
                    self.stop_gone = !open;
                    self.see_stop();
                }
            }
        }
        self.backoff = (self.backoff * 2).min(self.max_backoff);
    }

    /// Shut down (or abandoned by every sender), and nothing is left to write.
    pub(crate) fn finished(&self) -> bool {
        (self.draining.is_some() || self.closed)
            && self.round.owed.is_empty()
            && self.round.durable.is_empty()
            && self.rx.is_empty()
    }

    /// Starts draining once a shutdown deadline has been set.
    fn see_stop(&mut self) {
        if self.draining.is_none() {
            self.draining = start_draining(&mut self.stop, &self.log, self.round.rows);
        }
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

    /// At the shutdown deadline, with the store still failing: every row still held — owed
    /// from failed rounds or still queued — is written to the spill file for the next start
    /// to replay. Durable jobs are refused (their handlers are gone; nothing was answered).
    fn spill_all(&mut self) {
        // No row may arrive after this sweep: the writer is about to stop.
        self.rx.close();
        let mut rows = std::mem::take(&mut self.round.owed);
        let mut places = self.round.owed_places.take();
        while let Ok(job) = self.rx.try_recv() {
            match job.ack {
                None => {
                    rows.extend(job.records);
                    match &mut places {
                        Some(p) => p.merge(job.permit),
                        None => places = Some(job.permit),
                    }
                }
                Some(ack) => {
                    let _ = ack.send(Err(StoreFault::new(
                        FaultKind::Other,
                        &anyhow::anyhow!("the service shut down before the commit"),
                    )));
                }
            }
        }
        self.round = Round::default();
        if rows.is_empty() {
            return;
        }
        let Some(path) = self.spill.clone() else {
            crit!(self.log, "audit store still failing at shutdown and no spill file is configured; writing the rows to the log";
                "rows" => rows.len());
            self.give_up(&rows);
            return;
        };
        match spill::append(&path, &rows) {
            Ok(()) => {
                self.metrics.spilled_rows.inc_by(rows.len() as u64);
                warn!(self.log, "audit store still failing at shutdown; rows written to the spill file, to be replayed at the next start";
                    "file" => %path.display(), "rows" => rows.len());
            }
            Err(e) => {
                crit!(self.log, "ACKNOWLEDGED AUDIT ROWS NOT SAVED: the store and the spill file both failed; writing the rows to the log";
                    "spill_error" => %e, "file" => %path.display(), "rows" => rows.len());
                self.give_up(&rows);
            }
        }
        drop(places);
    }

    /// The last resort, when neither the store nor the spill file takes them: the rows go to
    /// the log in full rather than vanish.
    fn give_up(&self, owed: &[AuditRecord]) {
        let now = Instant::now();
        for r in owed {
            error!(self.log, "unsaved audit row";
                "raw_body" => ?r.raw_body, "client_addr" => ?r.client_addr.as_deref(),
                "latency_us" => r.latency.micros(now), "error_code" => ?r.error_code.as_deref(),
                "status" => r.status, "label" => ?r.label.as_deref(),
                "prediction" => ?r.prediction, "features" => ?r.features.as_ref().map(|f| f.to_json()),
                "model_version" => ?r.model_version.as_deref(), "model" => ?r.model.as_deref(),
                "received_at" => %format_time(&r.received_at), "item" => r.item,
                "client_request_id" => ?r.client_request_id.as_deref(),
                "request_id" => %r.request_id);
        }
    }
}

/// The drain's window once a shutdown deadline has been set: (deadline, moment from which
/// rows still held are spilled), logged with the rows held.
fn start_draining(
    stop: &mut watch::Receiver<Option<Instant>>,
    log: &Logger,
    held_rows: usize,
) -> Option<(Instant, Instant)> {
    let deadline = (*stop.borrow_and_update())?;
    let left = deadline.saturating_duration_since(Instant::now());
    let spill_at = deadline - (left / 4).min(SPILL_RESERVE);
    info!(log, "audit writer draining";
        "queued_rows" => held_rows, "deadline_ms" => left.as_millis() as u64);
    Some((deadline, spill_at))
}

/// What ended the writer's wait for work.
enum Wake {
    Job(Option<Job>),
    /// The shutdown signal changed (`false`: its sender is gone).
    Stop(bool),
    Probe,
}

/// Sleeps `wait`, or forever when there is none.
async fn sleep_or_never(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
