//! The watermark of one partition: the largest event time seen minus the allowed
//! out-of-orderness, advanced by processing time when the partition goes idle.

use std::time::{Duration, Instant};

/// How the watermark follows event time.
#[derive(Debug, Clone, Copy)]
pub struct WatermarkConfig {
    /// How far behind the newest event time the watermark trails.
    pub out_of_orderness: Duration,
    /// After this long without records, the watermark advances with processing time.
    pub idle_timeout: Duration,
}

/// Tracks one partition's watermark. It never moves backwards.
#[derive(Debug, Clone)]
pub struct WatermarkTracker {
    config: WatermarkConfig,
    current: i64,
    last_record_at: Instant,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl WatermarkTracker {
    /// A tracker with no event seen yet (watermark at `i64::MIN`).
    pub fn new(config: WatermarkConfig) -> Self {
        WatermarkTracker {
            config,
            current: i64::MIN,
            last_record_at: Instant::now(),
        }
    }

    /// The watermark in ms.
    pub fn current(&self) -> i64 {
        self.current
    }

    /// Restores a watermark from a snapshot.
    pub fn restore(&mut self, watermark: i64) {
        self.current = self.current.max(watermark);
    }

    /// The watermark an event time allows: the time minus the out-of-orderness.
    pub fn candidate(&self, event_time: i64) -> i64 {
        event_time.saturating_sub(millis(self.config.out_of_orderness))
    }

    /// Takes in the event times of a batch; returns whether the watermark moved.
    pub fn observe(&mut self, max_event_time: Option<i64>, now: Instant) -> bool {
        self.last_record_at = now;
        let Some(max) = max_event_time else {
            return false;
        };
        self.advance_to(self.candidate(max))
    }

    /// Advances by processing time when no record arrived for the idle timeout: the watermark
    /// moves by the time spent idle beyond the timeout. Returns whether it moved.
    pub fn on_idle(&mut self, now: Instant) -> bool {
        let idle = now.saturating_duration_since(self.last_record_at);
        if idle <= self.config.idle_timeout || self.current == i64::MIN {
            return false;
        }
        let step = millis(idle - self.config.idle_timeout);
        self.last_record_at = now - self.config.idle_timeout;
        self.advance_to(self.current.saturating_add(step))
    }

    /// Moves the watermark to the end of time, for a bounded source that ended.
    pub fn finish(&mut self) -> bool {
        self.advance_to(i64::MAX)
    }

    fn advance_to(&mut self, candidate: i64) -> bool {
        if candidate > self.current {
            self.current = candidate;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tracker() -> WatermarkTracker {
        WatermarkTracker::new(WatermarkConfig {
            out_of_orderness: Duration::from_millis(100),
            idle_timeout: Duration::from_secs(1),
        })
    }

    #[test]
    fn trails_max_event_time_and_never_goes_back() {
        let mut w = tracker();
        let now = Instant::now();
        assert!(w.observe(Some(1_000), now));
        assert_eq!(w.current(), 900);
        assert!(!w.observe(Some(500), now));
        assert_eq!(w.current(), 900);
        assert!(!w.observe(None, now));
    }

    #[test]
    fn idle_partition_advances_by_processing_time_after_timeout() {
        let mut w = tracker();
        let start = Instant::now();
        w.observe(Some(10_000), start);
        assert!(!w.on_idle(start + Duration::from_millis(900)));
        assert!(w.on_idle(start + Duration::from_millis(1_500)));
        assert_eq!(w.current(), 9_900 + 500);
        assert!(w.on_idle(start + Duration::from_millis(2_500)));
        assert_eq!(w.current(), 9_900 + 1_500);
    }
}
