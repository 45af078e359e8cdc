//! The background writer: the only task that writes audit rows.
//!
//! Handlers hand it [`Job`]s through a bounded channel. It takes whatever is queued (up to
//! [`MAX_BATCH_ROWS`]), writes it in one transaction as multi-row inserts and starts again as
//! soon as the commit returns: group commit without a timer, so an idle service adds no delay
//! and a busy one amortises each commit over many requests.
//!
//! Failure handling keeps the promise that no answered prediction lacks its record:
//! - a durable job whose commit fails is answered with the error (the client gets a 503, and no
//!   prediction was served);
//! - rows already answered (async mode, rejected requests) are kept and retried with backoff
//!   until they commit; while they wait, the channel fills and new requests feel back pressure;
//! - the writer never dies silently: every failure is logged and shows in `/health/ready`.
//!
//! On shutdown ([`WriterHandle::shutdown`]) it drains the channel and commits everything before
//! it returns.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use slog::{Logger, error, info, warn};
use tokio::sync::{mpsc, oneshot};

use super::{AuditMode, AuditRecord, Store};
use crate::metrics::WriterMetrics;

/// Most rows written in one transaction.
pub const MAX_BATCH_ROWS: usize = 16_384;

/// Longest wait between retries of a failing commit.
const MAX_BACKOFF: Duration = Duration::from_secs(2);

type Ack = oneshot::Sender<Result<(), Arc<str>>>;

enum Job {
    Write {
        records: Vec<AuditRecord>,
        /// Present when a handler waits for the commit (durable mode).
        ack: Option<Ack>,
    },
    Shutdown(oneshot::Sender<()>),
}

/// Whether the last commit worked, for readiness.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failing: AtomicBool,
    last_error: Mutex<Option<String>>,
}

impl StoreHealth {
    /// `None` when healthy, else the last error.
    pub fn problem(&self) -> Option<String> {
        if !self.failing.load(Ordering::Relaxed) {
            return None;
        }
        self.last_error
            .lock()
            .map(|e| e.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
            .or_else(|| Some("audit store failing".into()))
    }

    fn set_ok(&self) {
        self.failing.store(false, Ordering::Relaxed);
    }

    fn set_failed(&self, e: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e);
        }
        self.failing.store(true, Ordering::Relaxed);
    }
}

/// What went wrong with the store, in words fit for clients and probes: the class of fault,
/// without paths or SQL (those go to the log).
pub fn cause(e: &anyhow::Error) -> &'static str {
    if let Some(sqlx::Error::Database(db)) = e.chain().find_map(|c| c.downcast_ref::<sqlx::Error>())
    {
        // SQLite's extended result codes carry the primary code in their low byte.
        let code = db.code().and_then(|c| c.parse::<i32>().ok()).unwrap_or(0) & 0xff;
        return match code {
            5 => "the audit database is locked by another process",
            6 => "the audit database is locked",
            8 => "the audit database is read-only",
            10 => "an I/O error in the audit database",
            13 => "the audit database or its disk is full",
            14 => "the audit database cannot be opened",
            _ => "the audit database refused the write",
        };
    }
    if e.chain()
        .any(|c| c.to_string().contains("deleted or replaced"))
    {
        return "the audit database file was deleted or replaced; writing to a new one";
    }
    "the audit store failed"
}

/// Why a record could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the audit queue stayed full for {0:?}")]
    QueueFull(Duration),
    #[error("the audit store could not commit: {0}")]
    Failed(Arc<str>),
    #[error("the audit store did not commit within {0:?}")]
    Timeout(Duration),
    #[error("the audit writer has stopped")]
    Stopped,
}

/// The handlers' side of the writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    tx: mpsc::Sender<Job>,
    pub mode: AuditMode,
    /// Longest wait for room in a full queue before answering 503.
    queue_timeout: Duration,
    /// Longest wait for a durable commit before answering 503.
    commit_timeout: Duration,
    pub health: Arc<StoreHealth>,
    capacity: usize,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("mode", &self.mode)
            .field("queue_depth", &self.queue_depth())
            .finish()
    }
}

impl AuditSink {
    /// Hands over the rows of an answered prediction. In durable mode this returns once they
    /// are committed; in async mode once they are queued.
    pub async fn submit(&self, records: Vec<AuditRecord>) -> Result<(), SubmitError> {
        match self.mode {
            AuditMode::Async => self.enqueue(records, None).await,
            AuditMode::Durable => {
                let (ack, done) = oneshot::channel();
                self.enqueue(records, Some(ack)).await?;
                match tokio::time::timeout(self.commit_timeout, done).await {
                    Ok(Ok(Ok(()))) => Ok(()),
                    Ok(Ok(Err(e))) => Err(SubmitError::Failed(e)),
                    Ok(Err(_)) => Err(SubmitError::Stopped),
                    // Dropping `done` tells the writer not to write these rows if it has
                    // not already.
                    Err(_) => Err(SubmitError::Timeout(self.commit_timeout)),
                }
            }
        }
    }

    /// Queues the record of a rejected request without waiting for its commit.
    pub async fn submit_rejected(&self, record: AuditRecord) -> Result<(), SubmitError> {
        self.enqueue(vec![record], None).await
    }

    async fn enqueue(
        &self,
        records: Vec<AuditRecord>,
        ack: Option<Ack>,
    ) -> Result<(), SubmitError> {
        let job = Job::Write { records, ack };
        match self.tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SubmitError::Stopped),
            Err(mpsc::error::TrySendError::Full(job)) => self
                .tx
                .send_timeout(job, self.queue_timeout)
                .await
                .map_err(|e| match e {
                    mpsc::error::SendTimeoutError::Timeout(_) => {
                        SubmitError::QueueFull(self.queue_timeout)
                    }
                    mpsc::error::SendTimeoutError::Closed(_) => SubmitError::Stopped,
                }),
        }
    }

    /// Jobs waiting in the channel.
    pub fn queue_depth(&self) -> usize {
        self.capacity - self.tx.capacity()
    }
}

/// Owns the writer task; [`WriterHandle::shutdown`] drains and stops it.
pub struct WriterHandle {
    tx: mpsc::Sender<Job>,
    task: tokio::task::JoinHandle<()>,
}

impl WriterHandle {
    /// Commits everything queued, then stops the writer. Call after the HTTP server stopped,
    /// so no handler can queue more.
    pub async fn shutdown(self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Job::Shutdown(done)).await.is_ok() {
            let _ = wait.await;
        }
        let _ = self.task.await;
    }
}

/// Settings of the writer.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    pub mode: AuditMode,
    /// Jobs the channel holds.
    pub queue_capacity: usize,
    pub queue_timeout: Duration,
    pub commit_timeout: Duration,
    pub metrics: WriterMetrics,
}

/// Starts the writer on the current runtime.
pub fn spawn(store: Store, opts: &WriterOptions, log: Logger) -> (AuditSink, WriterHandle) {
    let capacity = opts.queue_capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let health = Arc::new(StoreHealth::default());
    let checkpointer = tokio::spawn(checkpoint_loop(store.clone(), log.clone()));
    let writer = Writer {
        store,
        rx,
        log,
        health: Arc::clone(&health),
        metrics: opts.metrics.clone(),
        checkpointer,
    };
    let task = tokio::spawn(writer.run());
    let sink = AuditSink {
        tx: tx.clone(),
        mode: opts.mode,
        queue_timeout: opts.queue_timeout,
        commit_timeout: opts.commit_timeout,
        health,
        capacity,
    };
    (sink, WriterHandle { tx, task })
}

struct Writer {
    store: Store,
    rx: mpsc::Receiver<Job>,
    log: Logger,
    health: Arc<StoreHealth>,
    metrics: WriterMetrics,
    checkpointer: tokio::task::JoinHandle<()>,
}

/// How often committed writes are checkpointed into the database file.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(100);

/// Checkpoints the store at a steady pace so that commits never have to (see
/// `WRITER_AUTOCHECKPOINT_PAGES` in the SQLite backend). Runs until the writer aborts it.
async fn checkpoint_loop(store: Store, log: Logger) {
    let mut failing = false;
    loop {
        tokio::time::sleep(CHECKPOINT_EVERY).await;
        match store.checkpoint().await {
            Ok(()) => failing = false,
            // Once per failure streak: the writer reports the store's state itself.
            Err(e) if !failing => {
                failing = true;
                warn!(log, "audit checkpoint failed; will retry"; "error" => format!("{e:#}"));
            }
            Err(_) => {}
        }
    }
}

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

impl Writer {
    async fn run(mut self) {
        let mut round = Round::default();
        let mut shutdown: Option<oneshot::Sender<()>> = None;
        let mut backoff = Duration::from_millis(50);
        let mut closed = false;
        loop {
            // Wait for work unless rows are owed from a failed round or we are draining.
            if round.owed.is_empty() && shutdown.is_none() {
                let job = if self.health.problem().is_none() {
                    self.rx.recv().await
                } else {
                    // The store is failing and nothing is owed: no write would tell when it
                    // works again, and a service that is not ready gets no traffic. Probe it
                    // between waits so readiness recovers by itself.
                    match tokio::time::timeout(backoff, self.rx.recv()).await {
                        Ok(job) => job,
                        Err(_) => {
                            match self.store.probe().await {
                                Ok(()) => {
                                    info!(self.log, "audit store writable again");
                                    self.health.set_ok();
                                    backoff = Duration::from_millis(50);
                                }
                                Err(e) => {
                                    self.health.set_failed(cause(&e).to_string());
                                    backoff = (backoff * 2).min(MAX_BACKOFF);
                                }
                            }
                            continue;
                        }
                    }
                };
                match job {
                    Some(job) => self.take(job, &mut round, &mut shutdown),
                    None => closed = true,
                }
            }
            // Then take whatever else is queued, up to a batch.
            while round.rows < MAX_BATCH_ROWS && !closed {
                match self.rx.try_recv() {
                    Ok(job) => self.take(job, &mut round, &mut shutdown),
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
                }
            }
            // Durable jobs whose handler gave up waiting are not written: it answered 503.
            round.durable.retain(|(_, ack)| !ack.is_closed());

            if !round.owed.is_empty() || !round.durable.is_empty() {
                let refs: Vec<&AuditRecord> = round
                    .owed
                    .iter()
                    .chain(round.durable.iter().flat_map(|(r, _)| r.iter()))
                    .collect();
                let n = refs.len();
                let started = Instant::now();
                let result = self.store.write_batch(&refs).await;
                drop(refs);
                match result {
                    Ok(()) => {
                        if self.health.problem().is_some() {
                            info!(self.log, "audit store writable again");
                        }
                        self.health.set_ok();
                        self.metrics.rows_written.inc_by(n as u64);
                        self.metrics.batch_rows.observe(n as f64);
                        self.metrics
                            .commit_seconds
                            .observe(started.elapsed().as_secs_f64());
                        for (_, ack) in round.durable.drain(..) {
                            let _ = ack.send(Ok(()));
                        }
                        round = Round::default();
                        backoff = Duration::from_millis(50);
                    }
                    Err(e) => {
                        let reason: Arc<str> = cause(&e).into();
                        self.metrics.write_errors.inc();
                        self.health.set_failed(reason.to_string());
                        error!(self.log, "audit commit failed; will retry";
                            "error" => format!("{e:#}"), "owed_rows" => round.owed.len(),
                            "durable_rows_refused" => round.durable.iter().map(|(r, _)| r.len()).sum::<usize>());
                        for (_, ack) in round.durable.drain(..) {
                            let _ = ack.send(Err(Arc::clone(&reason)));
                        }
                        round.rows = round.owed.len();
                        if !round.owed.is_empty() {
                            if shutdown.is_some() && backoff >= MAX_BACKOFF {
                                self.give_up(&round.owed);
                                round = Round::default();
                            } else {
                                tokio::time::sleep(backoff).await;
                                backoff = (backoff * 2).min(MAX_BACKOFF);
                            }
                        }
                        continue;
                    }
                }
            }
            if (shutdown.is_some() || closed) && round.owed.is_empty() && self.rx.is_empty() {
                break;
            }
        }
        self.checkpointer.abort();
        let _ = (&mut self.checkpointer).await;
        if let Some(done) = shutdown {
            let _ = done.send(());
        }
        self.store.close().await;
    }

    fn take(&self, job: Job, round: &mut Round, shutdown: &mut Option<oneshot::Sender<()>>) {
        match job {
            Job::Write { records, ack } => round.add(records, ack),
            Job::Shutdown(done) => {
                info!(self.log, "audit writer draining");
                *shutdown = Some(done);
            }
        }
    }

    /// At shutdown, with the store still failing after retries: the rows cannot be kept in the
    /// database, so they go to the log in full (as JSON) rather than vanish.
    fn give_up(&self, owed: &[AuditRecord]) {
        warn!(self.log, "audit store still failing at shutdown; writing owed rows to the log";
            "rows" => owed.len());
        for r in owed {
            error!(self.log, "unsaved audit row";
                "raw_body" => ?r.raw_body, "client_addr" => ?r.client_addr.as_deref(),
                "latency_us" => r.latency_us, "error_code" => ?r.error_code.as_deref(),
                "status" => r.status, "label" => ?r.label.as_deref(),
                "prediction" => ?r.prediction, "features" => ?r.features,
                "model_version" => ?r.model_version.as_deref(), "model" => ?r.model.as_deref(),
                "received_at" => %super::format_time(&r.received_at), "item" => r.item,
                "request_id" => %r.request_id);
        }
    }
}
