//! The audit side of start-up: the store opened, a spill file left by the last shutdown
//! replayed, the writer started with as many writers as the store takes, and the drift
//! windows started from the stored rows.

use std::sync::Arc;

use slog::{Logger, info, warn};

use crate::audit::writer::{self, WriterHandle, WriterMetrics, WriterOptions};
use crate::audit::{AuditSink, Baselines, Store, StoreOptions, spill};
use crate::config::{MonitorSettings, Settings};
use crate::model::registry::ModelRegistry;
use crate::monitor::window::DriftWindows;

/// What the rest of the service holds of the audit store.
pub(super) struct Audit {
    pub(super) store: Store,
    /// What handlers submit rows to.
    pub(super) sink: AuditSink,
    /// Shut down after the server, so every row a handler queued commits.
    pub(super) writer: WriterHandle,
    pub(super) metrics: WriterMetrics,
    /// This replica's name in the audit rows.
    pub(super) instance: Arc<str>,
}

/// The digest of `AUDIT_TOKEN`, if set. Without one, on a loopback address (the default)
/// only local clients reach the service anyway; on another one, remote clients are refused
/// the audit routes: worth a warning.
pub(super) fn token_digest(settings: &Settings, logger: &Logger) -> Option<[u8; 32]> {
    let digest = crate::http::access::token_digest(settings.audit.token.as_deref());
    if digest.is_none() {
        if settings.bind.ip().is_loopback() {
            info!(
                logger,
                "AUDIT_TOKEN is not set: /audit answers loopback clients only"
            );
        } else {
            warn!(
                logger,
                "AUDIT_TOKEN is not set: /audit answers loopback clients only";
                "bind" => %settings.bind
            );
        }
    }
    digest
}

/// Opens the store the settings name, replays a spill file, and starts the writer.
pub(super) async fn start(
    settings: &Settings,
    logger: &Logger,
    baselines: &Baselines,
) -> anyhow::Result<Audit> {
    let a = &settings.audit;
    let store = Store::open(
        &settings.database_url,
        &StoreOptions {
            sync: a.sync,
            busy_timeout: a.busy_timeout,
            read_only: false,
            max_bytes: a.max_bytes,
            pool_size: a.pg_pool_size,
            acquire_timeout: a.pg_acquire_timeout,
            catch_up: a.pg_catch_up,
            read_timeout: a.read_timeout,
            baselines: baselines.clone(),
        },
    )
    .await?;
    let instance: Arc<str> = settings
        .instance
        .clone()
        .unwrap_or_else(default_instance)
        .into();
    info!(logger, "audit store open";
        "instance" => &*instance, "mode" => ?a.mode,
        "database" => %settings.database_url);
    let writer_metrics = WriterMetrics::default();
    let capabilities = store.capabilities();
    let spill_file = a
        .spill_file
        .clone()
        .or_else(|| spill::default_path(&capabilities));
    match &spill_file {
        Some(path) => replay_spill(logger, &store, path, &writer_metrics).await,
        None => warn!(
            logger,
            "no spill file (in-memory database, no INFERLOG_AUDIT_SPILL_FILE): rows the store cannot take at shutdown go to the log"
        ),
    }
    // A batch must fit in the queue: it takes its rows' places all at once.
    let queue_rows = a.queue_rows.max(settings.http.max_batch).max(1);
    if queue_rows > a.queue_rows {
        warn!(logger, "audit queue raised to hold one whole batch";
            "queue_rows" => queue_rows, "configured" => a.queue_rows);
    }
    // PostgreSQL takes several writers' commits at once; SQLite has one write lock.
    let writers = a.pg_writers.clamp(1, capabilities.writers);
    if capabilities.writers > 1 && writers != a.pg_writers {
        warn!(logger, "PostgreSQL writers limited to the pool size less one";
            "writers" => writers, "configured" => a.pg_writers, "pool_size" => a.pg_pool_size);
    }
    let (audit, writer) = writer::spawn(
        store.clone(),
        &WriterOptions {
            writers,
            mode: a.mode,
            queue_rows,
            queue_timeout: a.queue_timeout,
            commit_timeout: a.commit_timeout,
            max_backoff: WriterOptions::DEFAULT_MAX_BACKOFF,
            metrics: writer_metrics.clone(),
            spill: spill_file,
        },
        logger.new(slog::o!("component" => "audit")),
    )
    .await;
    Ok(Audit {
        store,
        sink: audit,
        writer,
        metrics: writer_metrics,
        instance,
    })
}

/// Each model's drift window, started from the rows stored before this start.
pub(super) async fn drift_windows(
    log: &Logger,
    store: &Store,
    registry: &ModelRegistry,
    settings: &MonitorSettings,
) -> Arc<DriftWindows> {
    let windows = DriftWindows::new(registry, settings.drift_window, settings.drift.min_rows);
    seed_drift_windows(log, store, registry, &windows, settings.drift_window).await;
    Arc::new(windows)
}

/// Starts each model's drift window from the rows stored before this start (from the
/// rollups), so the drift gauges describe the recent traffic at once. A store that cannot
/// be read leaves the windows empty (they fill with live rows as before).
async fn seed_drift_windows(
    log: &Logger,
    store: &Store,
    registry: &ModelRegistry,
    windows: &DriftWindows,
    capacity: usize,
) {
    for m in registry.all() {
        match crate::reports::recent_counts(store, m, capacity).await {
            Ok(counts) => {
                let rows = windows.seed(m, &counts);
                if rows > 0 {
                    info!(log, "drift window started from stored rows";
                        "model" => m.name(), "rows" => rows);
                }
            }
            Err(e) => warn!(log, "drift window starts empty: stored rows could not be read";
                "model" => m.name(), "error" => e.detail()),
        }
    }
}

/// The name a replica gives its audit rows when `INFERLOG_INSTANCE` is not set: the host
/// name and the process's start time (`web-1@2026-12-06T10:00:00Z`), which tells replicas of
/// one host apart across restarts.
fn default_instance() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into the buffer it is given.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let host = if ok {
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        String::new()
    };
    let host = if host.is_empty() {
        "inferlog".into()
    } else {
        host
    };
    format!(
        "{host}@{}",
        chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// Replays a spill file left by an earlier shutdown into the store, and removes it once
/// every row is in (rows the store holds already are skipped, so an interrupted replay can
/// run again). A replay that fails keeps the file for the next start and lets the service
/// start: the rows stay safe in the file.
async fn replay_spill(
    logger: &Logger,
    store: &Store,
    path: &std::path::Path,
    metrics: &WriterMetrics,
) {
    if !path.exists() {
        return;
    }
    info!(logger, "replaying audit rows from the spill file"; "file" => %path.display());
    match spill::replay(store, path, spill::TornFile::Append, &|_| {}).await {
        Ok(done) => {
            metrics.replayed_rows.inc_by(done.inserted);
            info!(logger, "spill file replayed into the audit store";
                "already_stored" => done.rows - done.inserted, "written" => done.inserted,
                "rows" => done.rows, "file" => %path.display());
            if let Some(kept) = &done.torn_file {
                warn!(logger, "the spill file held torn lines (an append cut short); every whole row was replayed, the torn bytes are kept for a person to look at";
                    "torn_file" => %kept.display(), "torn_bytes" => done.torn_bytes,
                    "torn_pieces" => done.torn_pieces, "file" => %path.display());
            }
            if let Err(e) = std::fs::remove_file(path) {
                warn!(logger, "could not remove the replayed spill file; the next start replays it again, writing nothing twice";
                    "error" => %e, "file" => %path.display());
            }
        }
        Err(e) => {
            slog::error!(logger, "could not replay the spill file; it is kept for the next start";
                "error" => format!("{e:#}"), "file" => %path.display());
        }
    }
}
