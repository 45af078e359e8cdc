//! Waiting for lines of a server's log file, the test app's or a child process's.

use std::path::Path;
use std::time::{Duration, Instant};

use super::TestApp;

impl TestApp {
    /// Waits until the log file has a line containing every one of `needles`, and returns it.
    pub fn wait_for_log_line(&self, needles: &[&str]) -> String {
        wait_for_line(&self.log_path, needles)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

pub fn wait_for_line(path: &Path, needles: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if let Some(line) = text.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return line.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "no log line with {needles:?} in {}:\n{text}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
