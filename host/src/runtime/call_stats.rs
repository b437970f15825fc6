//! Call statistics of one plugin version in one stage: calls, failures by kind and a
//! log-scale latency histogram for the p99, updated without locks by every partition.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::CallFailure;

/// Histogram buckets: bucket `i` holds calls up to 2^((i+1)/4) µs, so each bucket is ~19%
/// wider than the last and 128 of them reach past an hour.
const BUCKETS: usize = 128;
const SUB_BUCKETS: f64 = 4.0;

/// Counters of one plugin version.
#[derive(Debug)]
pub struct CallStats {
    calls: AtomicU64,
    errors: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    memory_limits: AtomicU64,
    other_limits: AtomicU64,
    latency: [AtomicU64; BUCKETS],
}

impl Default for CallStats {
    fn default() -> Self {
        CallStats {
            calls: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            traps: AtomicU64::new(0),
            timeouts: AtomicU64::new(0),
            memory_limits: AtomicU64::new(0),
            other_limits: AtomicU64::new(0),
            latency: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

/// What `/plugins` shows of a version's calls.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct CallSummary {
    /// Calls into the plugin (`process` and `on-timer`, batch or single record).
    pub calls: u64,
    /// Calls that failed, whatever the kind.
    pub errors: u64,
    /// Calls that trapped.
    pub traps: u64,
    /// Calls past their deadline.
    pub timeouts: u64,
    /// Calls that hit the memory limit.
    pub memory_limits: u64,
    /// Calls that hit the output, state or timer limit.
    pub other_limits: u64,
    /// The 99th percentile call latency in milliseconds (upper bound of its bucket).
    pub p99_ms: Option<f64>,
}

fn bucket_of(elapsed: Duration) -> usize {
    let micros = elapsed.as_secs_f64() * 1e6;
    let index = (SUB_BUCKETS * (micros + 1.0).log2()).floor();
    (index.max(0.0) as usize).min(BUCKETS - 1)
}

fn bucket_upper_ms(index: usize) -> f64 {
    (2f64.powf((index as f64 + 1.0) / SUB_BUCKETS) - 1.0) / 1e3
}

impl CallStats {
    /// Records one call: how long it took and how it ended.
    pub fn record(&self, elapsed: Duration, failure: Option<&CallFailure>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.latency[bucket_of(elapsed)].fetch_add(1, Ordering::Relaxed);
        let Some(failure) = failure else { return };
        self.errors.fetch_add(1, Ordering::Relaxed);
        let kind = match failure {
            CallFailure::Trap(_) => &self.traps,
            CallFailure::Timeout => &self.timeouts,
            CallFailure::MemoryLimit => &self.memory_limits,
            CallFailure::OutputLimit { .. }
            | CallFailure::StateLimit(_)
            | CallFailure::TimerLimit(_) => &self.other_limits,
            CallFailure::InvalidResult(_) => return,
        };
        kind.fetch_add(1, Ordering::Relaxed);
    }

    /// The counts now.
    pub fn summary(&self) -> CallSummary {
        let counts: Vec<u64> = self
            .latency
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let rank = total - total / 100;
        let mut seen = 0;
        let p99_ms = (total > 0)
            .then(|| {
                counts.iter().position(|&n| {
                    seen += n;
                    seen >= rank
                })
            })
            .flatten()
            .map(bucket_upper_ms);
        CallSummary {
            calls: self.calls.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            traps: self.traps.load(Ordering::Relaxed),
            timeouts: self.timeouts.load(Ordering::Relaxed),
            memory_limits: self.memory_limits.load(Ordering::Relaxed),
            other_limits: self.other_limits.load(Ordering::Relaxed),
            p99_ms,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_failures_by_kind_and_bounds_the_p99() {
        let stats = CallStats::default();
        assert_eq!(stats.summary().p99_ms, None);
        for _ in 0..990 {
            stats.record(Duration::from_micros(100), None);
        }
        for _ in 0..20 {
            stats.record(Duration::from_millis(40), Some(&CallFailure::Timeout));
        }
        stats.record(
            Duration::from_millis(1),
            Some(&CallFailure::Trap("x".into())),
        );
        let s = stats.summary();
        assert_eq!((s.calls, s.errors, s.traps, s.timeouts), (1011, 21, 1, 20));
        // The 99th percentile is one of the 40 ms calls: its bucket is within 19% above it.
        let p99 = s.p99_ms.unwrap();
        assert!((40.0..=40.0 * 1.19).contains(&p99), "{p99}");
        let fast = CallStats::default();
        fast.record(Duration::from_micros(100), None);
        let p99 = fast.summary().p99_ms.unwrap();
        assert!((0.1..=0.1 * 1.19).contains(&p99), "{p99}");
    }
}
