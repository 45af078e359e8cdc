//! The background writer: the only task that writes audit rows.
//!
//! Handlers hand it jobs through a bounded channel ([`AuditSink`]). It takes whatever is queued
//! (up to [`MAX_BATCH_ROWS`]), writes it in one transaction and starts again as soon as the
//! commit returns: group commit without a timer, so an idle service adds no delay and a busy
//! one amortises each commit over many requests.
//!
//! Failure handling keeps the promise that no answered prediction lacks its record:
//! - a durable job whose commit fails is answered with the fault (the client gets a 503, and
//!   no prediction was served);
//! - rows already answered (async mode, rejected requests) are kept and retried with backoff
//!   until they commit; while they wait, the channel fills and new requests feel back pressure;
//! - the writer never dies silently: every failure is logged and shows in `/health/ready`.
//!
//! On shutdown ([`WriterHandle::shutdown`]) it drains the channel and commits everything before
//! it returns.
//!
//! - [`sink`]: the handlers' side. [`task`]: the loop and its steps. [`health`]: readiness.
//!   [`metrics`]: the writer's instruments. [`options`]: its settings.

pub mod health;
pub mod metrics;
pub mod options;
pub mod sink;
pub mod task;

use std::sync::Arc;

use slog::Logger;
use tokio::sync::{mpsc, oneshot};

pub use health::StoreHealth;
pub use metrics::WriterMetrics;
pub use options::{MAX_BATCH_ROWS, WriterOptions};
pub use sink::{AuditSink, SubmitError};

use self::sink::Job;
use self::task::Writer;
use super::store::Store;

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

/// Starts the writer (and the store's own maintenance) on the current runtime.
pub fn spawn(store: Store, opts: &WriterOptions, log: Logger) -> (AuditSink, WriterHandle) {
    let capacity = opts.queue_capacity.max(1);
    let (tx, rx) = mpsc::channel(capacity);
    let health = Arc::new(StoreHealth::default());
    let writer = Writer::new(store, rx, log, Arc::clone(&health), opts);
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
