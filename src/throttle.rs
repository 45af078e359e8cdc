//! [`Throttle`]: lets a repeated log line through once per interval, with the count of the
//! ones held back, so a failure that repeats per request (a full disk refuses every durable
//! prediction) writes one line every few seconds instead of thousands.

use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Throttle {
    interval: Duration,
    /// When a line last went through, and how many were held back since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl Throttle {
    pub fn new(interval: Duration) -> Throttle {
        Throttle {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// `Some(held_back)` when this occurrence should be logged (the first, or the first after
    /// the interval), with the number held back since the last one logged; `None` to skip it.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (last, held_back) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.interval => {
                *held_back += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(held_back))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lets_one_through_per_interval_with_the_count_held_back() {
        let t = Throttle::new(Duration::from_secs(10));
        let start = Instant::now();
        assert_eq!(t.admit_at(start), Some(0));
        for i in 1..=5 {
            assert_eq!(t.admit_at(start + Duration::from_secs(i)), None);
        }
        assert_eq!(t.admit_at(start + Duration::from_secs(10)), Some(5));
        assert_eq!(t.admit_at(start + Duration::from_secs(11)), None);
    }
}
