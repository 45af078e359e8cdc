//! [`AuditSink`]: the handlers' side of the writer. It hands rows over through a bounded
//! channel and tells the handler when its answer is ready: in durable mode once the rows
//! committed, in async mode once they are queued. Either way it returns the request's latency,
//! taken at that moment, so the audit row and the log line carry the same number.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use super::health::StoreHealth;
use crate::audit::fault::StoreFault;
use crate::audit::modes::AuditMode;
use crate::audit::record::{AuditRecord, Latency, micros_between};

/// A durable job's answer: the moment its rows were written, or why they were not.
pub(super) type Ack = oneshot::Sender<Result<Instant, StoreFault>>;

/// Rows handed to the writer. They hold their places in the queue (`permit`, one per row)
/// until they are committed, spilled or refused, so the queue's bound covers every row the
/// writer holds, not only those still in the channel.
pub(super) struct Job {
    pub records: Vec<AuditRecord>,
    /// Present when a handler waits for the commit (durable mode).
    pub ack: Option<Ack>,
    pub permit: OwnedSemaphorePermit,
}

/// Why a record could not be accepted.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error("the audit queue stayed full for {0:?}")]
    QueueFull(Duration),
    #[error("the audit store could not commit: {}", .0.cause())]
    Failed(StoreFault),
    #[error("the audit store did not commit within {0:?}")]
    Timeout(Duration),
    #[error("the audit writer has stopped")]
    Stopped,
}

/// The handlers' side of the writer. Cheap to clone.
#[derive(Clone)]
pub struct AuditSink {
    /// One queue per writer.
    pub(super) tx: Arc<[mpsc::UnboundedSender<Job>]>,
    /// The writer the next job goes to (in turn).
    pub(super) next: Arc<AtomicUsize>,
    /// One permit per row the queue may hold: the channel itself is unbounded, this bounds
    /// it in rows (and so in bytes, each row being bounded).
    pub(super) rows: Arc<Semaphore>,
    pub mode: AuditMode,
    /// Longest wait for room in a full queue before answering 503.
    pub(super) queue_timeout: Duration,
    /// Longest wait for a durable commit before answering 503.
    pub(super) commit_timeout: Duration,
    pub health: Arc<StoreHealth>,
    /// Rows the queue holds at most.
    pub(super) capacity: usize,
}

impl std::fmt::Debug for AuditSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditSink")
            .field("mode", &self.mode)
            .field("queued_rows", &self.queued_rows())
            .finish()
    }
}

impl AuditSink {
    /// Hands over the rows of an answered prediction, which arrived at `arrived` (their
    /// latency is [`Latency::UntilStored`] from that moment), and returns its latency in
    /// microseconds: until the rows were written (durable mode) or queued (async mode).
    pub async fn submit(
        &self,
        records: Vec<AuditRecord>,
        arrived: Instant,
    ) -> Result<u64, SubmitError> {
        match self.mode {
            AuditMode::Async => self.enqueue(records, arrived).await,
            AuditMode::Durable => {
                let (ack, done) = oneshot::channel();
                let permit = self.reserve(records.len()).await?;
                self.send(Job {
                    records,
                    ack: Some(ack),
                    permit,
                })?;
                match tokio::time::timeout(self.commit_timeout, done).await {
                    Ok(Ok(Ok(stored_at))) => Ok(micros_between(arrived, stored_at)),
                    Ok(Ok(Err(fault))) => Err(SubmitError::Failed(fault)),
                    Ok(Err(_)) => Err(SubmitError::Stopped),
                    // Dropping `done` tells the writer not to write these rows if it has
                    // not already.
                    Err(_) => Err(SubmitError::Timeout(self.commit_timeout)),
                }
            }
        }
    }

    /// Queues the record of a rejected request without waiting for its commit, and returns
    /// its latency (until queued).
    pub async fn submit_rejected(
        &self,
        record: AuditRecord,
        arrived: Instant,
    ) -> Result<u64, SubmitError> {
        self.enqueue(vec![record], arrived).await
    }

    /// Queues rows that are answered at once: their latency is taken when the queue has room,
    /// so a wait under back pressure counts.
    async fn enqueue(
        &self,
        mut records: Vec<AuditRecord>,
        arrived: Instant,
    ) -> Result<u64, SubmitError> {
        let permit = self.reserve(records.len()).await?;
        let latency = micros_between(arrived, Instant::now());
        for r in &mut records {
            r.latency = Latency::Answered(latency);
        }
        self.send(Job {
            records,
            ack: None,
            permit,
        })?;
        Ok(latency)
    }

    fn send(&self, job: Job) -> Result<(), SubmitError> {
        let i = match self.tx.len() {
            1 => 0,
            n => self.next.fetch_add(1, Ordering::Relaxed) % n,
        };
        self.tx[i].send(job).map_err(|_| SubmitError::Stopped)
    }

    /// Places in the queue for `rows` rows: at once if there is room, else after waiting up
    /// to the queue timeout. A request larger than the whole queue takes all of it (the
    /// service makes the queue at least one batch large).
    async fn reserve(&self, rows: usize) -> Result<OwnedSemaphorePermit, SubmitError> {
        let n = rows.clamp(1, self.capacity) as u32;
        match Arc::clone(&self.rows).try_acquire_many_owned(n) {
            Ok(permit) => Ok(permit),
            Err(tokio::sync::TryAcquireError::Closed) => Err(SubmitError::Stopped),
            Err(tokio::sync::TryAcquireError::NoPermits) => {
                let wait = Arc::clone(&self.rows).acquire_many_owned(n);
                match tokio::time::timeout(self.queue_timeout, wait).await {
                    Ok(Ok(permit)) => Ok(permit),
                    Ok(Err(_)) => Err(SubmitError::Stopped),
                    Err(_) => Err(SubmitError::QueueFull(self.queue_timeout)),
                }
            }
        }
    }

    /// Rows held for the writer: queued, or being committed or retried.
    pub fn queued_rows(&self) -> usize {
        self.capacity.saturating_sub(self.rows.available_permits())
    }

    /// Rows the queue holds at most.
    pub fn capacity_rows(&self) -> usize {
        self.capacity
    }
}
