//! Waiting for a state that a test can observe (a count, a gauge, a file, a connection
//! refused) instead of sleeping for a time that may or may not have been enough.

use std::time::{Duration, Instant};

/// Polls `done` every 10 ms until it is true; fails the test, naming `what` it waited for,
/// when `timeout` passes first.
pub fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(
            Instant::now() < deadline,
            "waited {timeout:?} for {what}, in vain"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}
