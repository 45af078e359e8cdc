//! [`AuditSink`]: the handlers' side of the writer. It hands rows over through a bounded
//! channel and tells the handler when its answer is ready: in durable mode once the rows
//! committed, in async mode once they are queued. Either way it returns the request's latency,
//! taken at that moment, so the audit row and the log line carry the same number.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use super::health::StoreHealth;
use crate::audit::fault::StoreFault;
use crate::audit::modes::AuditMode;
use crate::audit::record::{AuditRecord, Latency, micros_between};

/// A durable job's answer: the moment its rows were written, or why they were not.
pub(super) type Ack = oneshot::Sender<Result<Instant, StoreFault>>;

pub(super) enum Job {
    Write {
        records: Vec<AuditRecord>,
        /// Present when a handler waits for the commit (durable mode).
        ack: Option<Ack>,
    },
    Shutdown(oneshot::Sender<()>),
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
    pub(super) tx: mpsc::Sender<Job>,
    pub mode: AuditMode,
    /// Longest wait for room in a full queue before answering 503.
    pub(super) queue_timeout: Duration,
    /// Longest wait for a durable commit before answering 503.
    pub(super) commit_timeout: Duration,
    pub health: Arc<StoreHealth>,
    pub(super) capacity: usize,
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
                let permit = self.reserve().await?;
                permit.send(Job::Write {
                    records,
                    ack: Some(ack),
                });
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
        let permit = self.reserve().await?;
        let latency = micros_between(arrived, Instant::now());
        for r in &mut records {
            r.latency = Latency::Answered(latency);
        }
        permit.send(Job::Write { records, ack: None });
        Ok(latency)
    }

    /// A place in the queue: at once if there is room, else after waiting up to the queue
    /// timeout.
    async fn reserve(&self) -> Result<mpsc::Permit<'_, Job>, SubmitError> {
        match self.tx.try_reserve() {
            Ok(permit) => Ok(permit),
            Err(mpsc::error::TrySendError::Closed(())) => Err(SubmitError::Stopped),
            Err(mpsc::error::TrySendError::Full(())) => {
                match tokio::time::timeout(self.queue_timeout, self.tx.reserve()).await {
                    Ok(Ok(permit)) => Ok(permit),
                    Ok(Err(_)) => Err(SubmitError::Stopped),
                    Err(_) => Err(SubmitError::QueueFull(self.queue_timeout)),
                }
            }
        }
    }

    /// Jobs waiting in the channel.
    pub fn queue_depth(&self) -> usize {
        self.capacity - self.tx.capacity()
    }
}
