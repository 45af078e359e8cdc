//! Progress of the commands' long work (`audit copy`, `audit replay`, `audit rebuild-rollups`)
//! on stderr: rows done, the rate, and an estimate of the time left when the total is known.
//! On a terminal the line is rewritten in place; with `--progress` and no terminal (a log
//! file, CI), a line is written every few seconds. Nothing is written otherwise, so a script
//! sees only the summary line on stdout.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How often the line is rewritten on a terminal, and written elsewhere.
const ON_TERMINAL: Duration = Duration::from_millis(250);
const OTHERWISE: Duration = Duration::from_secs(5);

/// One piece of work's progress line.
pub struct Progress {
    what: &'static str,
    total: Option<u64>,
    started: Instant,
    /// `None`: nothing is shown.
    every: Option<Duration>,
    terminal: bool,
    /// When the line was last written.
    shown: Mutex<Option<Instant>>,
}

impl Progress {
    /// `what` names the rows ("rows copied"); `total` is how many there are, when known;
    /// `asked`: `--progress` was given.
    pub fn new(what: &'static str, total: Option<u64>, asked: bool) -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let every = if terminal {
            Some(ON_TERMINAL)
        } else if asked {
            Some(OTHERWISE)
        } else {
            None
        };
        Progress {
            what,
            total,
            started: Instant::now(),
            every,
            terminal,
            shown: Mutex::new(None),
        }
    }

    /// Reports `done` rows so far (written at most every interval).
    pub fn update(&self, done: u64) {
        let Some(every) = self.every else { return };
        let Ok(mut shown) = self.shown.lock() else {
            return;
        };
        if shown.is_some_and(|at| at.elapsed() < every) {
            return;
        }
        *shown = Some(Instant::now());
        let line = self.line(done);
        let mut err = std::io::stderr().lock();
        let _ = if self.terminal {
            write!(err, "\r{line}\x1b[K")
        } else {
            writeln!(err, "{line}")
        };
        let _ = err.flush();
    }

    /// Ends the line on a terminal (the summary follows on stdout).
    pub fn finish(&self) {
        if self.terminal && self.every.is_some() && self.shown.lock().is_ok_and(|s| s.is_some()) {
            let _ = write!(std::io::stderr().lock(), "\r\x1b[K");
        }
    }

    fn line(&self, done: u64) -> String {
        let secs = self.started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let mut line = match self.total {
            Some(total) => format!("{} of {total} {}", done, self.what),
            None => format!("{done} {}", self.what),
        };
        line.push_str(&format!(", {rate:.0} rows/s"));
        if let Some(total) = self.total
            && rate > 0.0
            && done < total
        {
            let left = (total - done) as f64 / rate;
            line.push_str(&format!(", about {} left", human(left)));
        }
        line
    }
}

/// Seconds as `42 s`, `3 min`, `2.5 h`.
fn human(secs: f64) -> String {
    if secs < 90.0 {
        format!("{secs:.0} s")
    } else if secs < 5400.0 {
        format!("{:.0} min", secs / 60.0)
    } else {
        format!("{:.1} h", secs / 3600.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_gives_rows_rate_and_time_left() {
        let p = Progress {
            what: "rows copied",
            total: Some(1000),
            started: Instant::now() - Duration::from_secs(10),
            every: None,
            terminal: false,
            shown: Mutex::new(None),
        };
        let line = p.line(250);
        assert!(
            line.starts_with("250 of 1000 rows copied, 25 rows/s"),
            "{line}"
        );
        assert!(line.ends_with("about 30 s left"), "{line}");
        assert_eq!(human(4000.0), "67 min");
        assert_eq!(human(7200.0), "2.0 h");
    }
}
