//! The background writer: the only task that writes audit rows.
//!
//! Handlers hand it jobs through a channel bounded in rows ([`AuditSink`]). It takes whatever is queued
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
//! On shutdown ([`WriterHandle::shutdown`]) it commits everything held and queued before a
//! deadline; what the store cannot take by then goes to the spill file ([`crate::audit::spill`]),
//! which the next start replays.
//!
//! - [`sink`]: the handlers' side. [`task`]: the loop and its steps. [`health`]: readiness.
//!   [`metrics`]: the writer's instruments. [`options`]: its settings.

pub mod health;
pub mod metrics;
pub mod options;
pub mod sink;
pub mod task;

use std::sync::Arc;
use std::time::{Duration, Instant};

use slog::{Logger, crit};
use tokio::sync::{Semaphore, mpsc, watch};

pub use health::StoreHealth;
pub use metrics::WriterMetrics;
pub use options::{MAX_BATCH_ROWS, WriterOptions};
pub use sink::{AuditSink, SubmitError};

use self::task::{Shared, Writer};
use super::store::Store;

/// Owns the writer tasks; [`WriterHandle::shutdown`] drains and stops them.
pub struct WriterHandle {
    stop: watch::Sender<Option<Instant>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    log: Logger,
}

impl WriterHandle {
    /// Commits everything held and queued, then stops the writer, returning by `deadline`:
    /// rows that cannot be committed by then go to the spill file. Call after the HTTP server
    /// stopped, so no handler can queue more.
    pub async fn shutdown(self, deadline: Instant) {
        let _ = self.stop.send(Some(deadline));
        // The writer keeps the deadline itself; this only guards against a writer stuck in a
        // call that never returns (the spill file on a hung disk).
        let grace = deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(2);
        let all = async {
            for task in self.tasks {
                let _ = task.await;
            }
        };
        if tokio::time::timeout(grace, all).await.is_err() {
            crit!(
                self.log,
                "the audit writer did not stop by the shutdown deadline; exiting without it"
            );
        }
    }
}

/// Starts the writers (and the store's own maintenance) on the current runtime. With several
/// writers, each takes its own queue and the sink deals jobs out in turn; the queue's bound
/// in rows covers them all.
///
/// The store is probed first: one that cannot take a commit (a full disk, a read-only file, a
/// server that refuses writes) starts not ready, rather than ready until its first commit
/// fails, and the writers probe it until it can.
pub async fn spawn(store: Store, opts: &WriterOptions, log: Logger) -> (AuditSink, WriterHandle) {
    let capacity = opts.queue_rows.clamp(1, Semaphore::MAX_PERMITS);
    let writers = opts.writers.max(1);
    let (stop, stop_rx) = watch::channel(None);
    let health = Arc::new(StoreHealth::default());
    if let Err(fault) = store.probe().await {
        slog::warn!(log, "the audit store cannot take a commit; not ready until it can (probed again in the background)";
            "error" => fault.detail());
        health.set_failed(fault.cause().to_string());
    }
    let shared = Shared::start(&store, writers, &log);
    let mut senders = Vec::with_capacity(writers);
    let mut tasks = Vec::with_capacity(writers);
    for _ in 0..writers {
        let (tx, rx) = mpsc::unbounded_channel();
        let writer = Writer::new(
            store.clone(),
            rx,
            stop_rx.clone(),
            log.clone(),
            Arc::clone(&health),
            Arc::clone(&shared),
            opts,
        );
        senders.push(tx);
        tasks.push(tokio::spawn(writer.run()));
    }
    let sink = AuditSink {
        tx: senders.into(),
        next: Arc::default(),
        rows: Arc::new(Semaphore::new(capacity)),
        mode: opts.mode,
        queue_timeout: opts.queue_timeout,
        commit_timeout: opts.commit_timeout,
        health,
        capacity,
    };
    (sink, WriterHandle { stop, tasks, log })
}
