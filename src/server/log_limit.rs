//! Rate limits for log lines that the network can trigger at will.
//!
//! An unauthenticated peer can send thousands of bad frames or connections a second; a
//! warning per event would let it fill the disk that call records live on. Each site keeps
//! one of these: at most one line per interval, reporting how many were suppressed since.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// One line per second at most.
const INTERVAL_MS: u64 = 1_000;

pub struct LogLimit {
    /// Wall-clock ms of the last line let through (0: never).
    last: AtomicU64,
    suppressed: AtomicU64,
}

impl LogLimit {
    pub const fn new() -> LogLimit {
        LogLimit {
            last: AtomicU64::new(0),
            suppressed: AtomicU64::new(0),
        }
    }

    /// `Some(suppressed since the last line)` when a line may be written now.
    pub fn permit(&self) -> Option<u64> {
        self.permit_at(now_ms())
    }

    fn permit_at(&self, now: u64) -> Option<u64> {
        let last = self.last.load(Ordering::Relaxed);
        if last != 0 && now < last + INTERVAL_MS {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        // Another thread may win the same slot; it then writes the line and this one counts.
        if self
            .last
            .compare_exchange(last, now.max(1), Ordering::Relaxed, Ordering::Relaxed)
            .is_err()
        {
            self.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        Some(self.suppressed.swap(0, Ordering::Relaxed))
    }
}

impl Default for LogLimit {
    fn default() -> Self {
        LogLimit::new()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(1, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_with_the_count_of_what_was_held_back() {
        let l = LogLimit::new();
        assert_eq!(l.permit_at(10_000), Some(0));
        for t in 10_001..10_500 {
            assert_eq!(l.permit_at(t), None);
        }
        assert_eq!(l.permit_at(10_999), None);
        assert_eq!(l.permit_at(11_000), Some(500));
        assert_eq!(l.permit_at(12_500), Some(0));
    }
}
