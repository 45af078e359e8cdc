//! SIGHUP: the models folder loaded again (and the log file reopened), with what depends on
//! the models served.

use std::sync::Arc;

use slog::{Logger, info, warn};

use crate::model::registry::LiveModels;
use crate::monitor::window::DriftWindows;
use crate::telemetry::LogFile;

/// The models folder's reload, with what depends on the models served.
pub(super) struct Reloader {
    models: Arc<LiveModels>,
    drift: Arc<DriftWindows>,
    hangup: Option<tokio::signal::unix::Signal>,
    /// Reopened first on SIGHUP, so `logrotate` can move it away.
    pub(super) log_file: Option<LogFile>,
}

impl Reloader {
    /// Takes SIGHUP over now, before the first request: its default action kills.
    pub(super) fn new(models: Arc<LiveModels>, drift: Arc<DriftWindows>) -> Reloader {
        Reloader {
            models,
            drift,
            hangup: tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok(),
            log_file: None,
        }
    }

    /// Reloads the models folder on every SIGHUP until dropped: the convention of
    /// long-running servers, and what a closing terminal sends (its default action would
    /// kill the process).
    pub(super) async fn on_sighup(mut self, log: Logger) {
        let Some(mut hup) = self.hangup.take() else {
            warn!(log, "SIGHUP cannot be handled: it would stop the process");
            return;
        };
        while hup.recv().await.is_some() {
            if let Some(file) = &self.log_file {
                match file.reopen() {
                    Ok(()) => info!(log, "log file reopened"; "path" => %file.path().display()),
                    Err(e) => slog::error!(log, "log file not reopened; writing to the one open";
                        "error" => format!("{e:#}")),
                }
            }
            info!(log, "SIGHUP received; reloading the models folder");
            self.reload(&log).await;
        }
    }

    /// Loads the models folder again (off the request threads) and serves the result.
    async fn reload(&self, log: &Logger) {
        let models = Arc::clone(&self.models);
        let done = tokio::task::spawn_blocking(move || models.reload()).await;
        let report = match done {
            Ok(Ok(report)) => report,
            Ok(Err(e)) => {
                slog::error!(log, "models not reloaded; serving the models loaded before";
                    "error" => format!("{e:#}"));
                return;
            }
            Err(e) => {
                slog::error!(log, "models not reloaded; serving the models loaded before";
                    "error" => %e);
                return;
            }
        };
        self.drift.sync(&self.models.current());
        for (model, why) in &report.kept {
            slog::error!(log, "model artifact not reloaded; the loaded model stays served";
                "error" => why.as_str(), "model" => model.as_str());
        }
        for why in &report.refused {
            slog::error!(log, "model artifact not loaded"; "error" => why.as_str());
        }
        for m in self.models.current().all() {
            if report
                .added
                .iter()
                .chain(&report.changed)
                .any(|n| n == m.name())
            {
                info!(log, "model loaded";
                    "model" => m.name(), "version" => &m.artifact.version,
                    "algorithm" => %m.artifact.algorithm, "path" => %m.path.display());
            }
        }
        info!(log, "models reloaded";
            "removed" => report.removed.join(","), "changed" => report.changed.join(","),
            "added" => report.added.join(","),
            "models" => self.models.current().all().len());
    }
}
