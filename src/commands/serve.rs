//! `inferlog serve`: the HTTP service, until SIGTERM or SIGINT.

use crate::cli::ServeArgs;
use crate::config::Settings;
use crate::startup::{Application, shutdown_signal};
use crate::telemetry;

pub fn run(args: &ServeArgs) -> anyhow::Result<()> {
    let settings = Settings::from_args(args)?;
    let telemetry = telemetry::init(&settings.log)?;
    telemetry::bridge_log_crate(&telemetry.logger, settings.log.level);
    let logger = telemetry.logger.clone();
    if std::env::var_os("INFERLOG_AUDIT_QUEUE").is_some() {
        slog::warn!(logger, "INFERLOG_AUDIT_QUEUE (requests) is no longer read: the audit queue is bounded in rows by INFERLOG_AUDIT_QUEUE_ROWS";
            "audit_queue_rows" => settings.audit.queue_rows);
    }
    let dropped = std::sync::Arc::clone(&telemetry.dropped);
    let log_file = telemetry.log_file.clone();
    let result = actix_web::rt::System::new().block_on(async {
        // The handlers first: a signal that comes once the server says it listens drains it.
        let stop = shutdown_signal();
        let app = Application::build(settings, logger.clone(), dropped)
            .await?
            .reopening(log_file);
        app.run(stop).await
    });
    match &result {
        Ok(()) => slog::info!(logger, "shutdown complete"),
        Err(e) => slog::crit!(logger, "start-up or serving failed"; "error" => format!("{e:#}")),
    }
    // Dropping the telemetry (last) flushes every queued log line.
    drop(logger);
    drop(telemetry);
    result
}
