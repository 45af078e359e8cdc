//! Readiness asks the store itself, not only how the last commit went: with no traffic (a
//! replica just taken out of rotation, a quiet night) no commit fails, and a database server
//! that stopped would still look ready. The check is cheap (a `select 1`), bounded by a short
//! timeout, run at most once per [`FRESH`] however many probes come, and its answer shared by
//! the probes of that interval.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::audit::Store;

/// How long a check's answer stands for the probes that follow it.
pub const FRESH: Duration = Duration::from_secs(1);

/// How long a check may take before the store counts as not answering.
pub const TIMEOUT: Duration = Duration::from_secs(1);

/// The store's last answer to a readiness check.
#[derive(Debug, Default)]
pub struct StoreCheck {
    /// When the last check ended, and what was wrong then (`None`: it answered).
    last: Mutex<Option<(Instant, Option<String>)>>,
    /// One check at a time: probes that come during one wait for its answer.
    one_at_a_time: tokio::sync::Mutex<()>,
}

impl StoreCheck {
    /// What is wrong with the store now, if anything: the answer of a check that ended
    /// within [`FRESH`], else of a new one.
    pub async fn problem(&self, store: &Store, log: &slog::Logger) -> Option<String> {
        if let Some(answer) = self.fresh() {
            return answer;
        }
        let _turn = self.one_at_a_time.lock().await;
        // A check that ran while this probe waited answers it.
        if let Some(answer) = self.fresh() {
            return answer;
        }
        let (answer, detail) = match tokio::time::timeout(TIMEOUT, store.ping()).await {
            Ok(Ok(())) => (None, String::new()),
            Ok(Err(fault)) => (
                Some(format!("audit store: {}", fault.cause())),
                fault.detail().to_string(),
            ),
            Err(_) => {
                let answer = format!("audit store: no answer within {} ms", TIMEOUT.as_millis());
                (Some(answer.clone()), answer)
            }
        };
        let before = self
            .last
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .replace((Instant::now(), answer.clone()));
        // Logged when the answer changes, not at every probe.
        let was_failing = before.is_some_and(|(_, a)| a.is_some());
        match (&answer, was_failing) {
            (Some(_), false) => {
                slog::warn!(log, "the audit store does not answer; not ready"; "error" => detail)
            }
            (None, true) => slog::info!(log, "the audit store answers again"),
            _ => {}
        }
        answer
    }

    fn fresh(&self) -> Option<Option<String>> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        last.as_ref()
            .filter(|(at, _)| at.elapsed() < FRESH)
            .map(|(_, answer)| answer.clone())
    }
}
