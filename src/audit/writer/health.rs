//! Whether the store's last write worked, for readiness and `/metrics`.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the writer after every commit and probe; read by `/health/ready` and `/metrics`.
#[derive(Debug, Default)]
pub struct StoreHealth {
    failing: AtomicBool,
    /// The last fault, in words fit for clients.
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

    pub(super) fn set_ok(&self) {
        self.failing.store(false, Ordering::Relaxed);
    }

    pub(super) fn set_failed(&self, e: String) {
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e);
        }
        self.failing.store(true, Ordering::Relaxed);
    }
}
