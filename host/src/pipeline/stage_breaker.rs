//! A stage's circuit breaker. Once most of the records tried in a row fail in the plugin
//! (traps, timeouts, limits), the stage stops calling it for `open_for`: its records go
//! straight to the dead-letter output (replayable with `weir dlq replay`) and its timers wait.
//! Then one batch is let through; if most of its records fail again, the breaker opens again.
//! A failing plugin so costs a few call deadlines, not one per record.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a tripped breaker stays open unless the stage's `breaker_open` says otherwise.
pub const DEFAULT_OPEN: Duration = Duration::from_secs(30);

/// Failures in a row (with most records failing) that open the breaker.
const MIN_FAILURES: u32 = 3;

#[derive(Debug, Default)]
struct Inner {
    failed: u32,
    tried: u32,
    open: Option<(Instant, String)>,
    /// The open time is over and the trial batch was let through (published as half-open).
    trial: bool,
}

/// The breaker of one stage version, shared by every partition.
#[derive(Debug)]
pub struct StageBreaker {
    stage: String,
    open_for: Duration,
    inner: Mutex<Inner>,
}

impl StageBreaker {
    /// A closed breaker that stays open `open_for` once tripped.
    pub fn new(stage: &str, open_for: Duration) -> Self {
        StageBreaker {
            stage: stage.to_string(),
            open_for,
            inner: Mutex::new(Inner::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The dead-letter reason while the breaker refuses calls; `None` when closed or when its
    /// open time is over (the next batch is the trial).
    pub fn refusing(&self) -> Option<String> {
        let mut inner = self.lock();
        match &inner.open {
            Some((until, reason)) if Instant::now() < *until => {
                Some(format!("stage breaker open: {reason}"))
            }
            Some(_) if !inner.trial => {
                inner.trial = true;
                drop(inner);
                self.gauge(1.0, "half-open");
                None
            }
            _ => None,
        }
    }

    /// Whether calls are refused now (cheaper than [`Self::refusing`]).
    pub fn refuses(&self) -> bool {
        self.lock()
            .open
            .as_ref()
            .is_some_and(|(until, _)| Instant::now() < *until)
    }

    /// `closed`, `open`, or `half-open` once the open time is over and until a trial batch
    /// closes it again.
    pub fn state(&self) -> &'static str {
        match &self.lock().open {
            None => "closed",
            Some((until, _)) if Instant::now() < *until => "open",
            Some(_) => "half-open",
        }
    }

    /// One record tried alone; `failure` is why it failed. Returns true when this failure
    /// opens the breaker.
    pub fn observe(&self, failure: Option<&str>) -> bool {
        let mut inner = self.lock();
        inner.tried += 1;
        let Some(reason) = failure else {
            return false;
        };
        inner.failed += 1;
        if inner.failed < MIN_FAILURES || inner.failed * 2 <= inner.tried {
            return false;
        }
        let tried = inner.tried;
        *inner = Inner {
            open: Some((Instant::now() + self.open_for, reason.to_string())),
            ..Inner::default()
        };
        drop(inner);
        tracing::warn!(stage = %self.stage, tried, %reason, open_for = ?self.open_for, "Most records fail in this stage; its breaker opened: records go to the dead-letter output and timers wait.");
        self.gauge(2.0, "open");
        true
    }

    /// A batch ended with most of its records processed: forget the failures so far, and
    /// close the breaker if this was its trial batch.
    pub fn batch_passed(&self) {
        let mut inner = self.lock();
        let was_open = inner.open.take().is_some();
        *inner = Inner::default();
        drop(inner);
        if was_open {
            tracing::info!(stage = %self.stage, "Trial batch passed; the stage's breaker closed.");
            self.gauge(0.0, "closed");
        }
    }

    fn gauge(&self, state: f64, to: &'static str) {
        metrics::gauge!("weir_stage_breaker_state", "stage" => self.stage.clone()).set(state);
        metrics::counter!("weir_stage_breaker_transitions_total", "stage" => self.stage.clone(), "to" => to)
            .increment(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_when_most_records_in_a_row_fail_and_closes_after_a_good_trial() {
        let breaker = StageBreaker::new("s", Duration::from_millis(500));
        assert!(!breaker.observe(Some("trap")));
        assert!(!breaker.observe(None));
        assert!(!breaker.observe(Some("trap")));
        assert!(breaker.observe(Some("timeout")), "3 of 4 failed");
        assert_eq!(
            breaker.refusing().as_deref(),
            Some("stage breaker open: timeout")
        );
        assert_eq!(breaker.state(), "open");
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(breaker.state(), "half-open");
        assert_eq!(breaker.refusing(), None, "the next batch is a trial");
        assert_eq!(breaker.state(), "half-open");
        breaker.batch_passed();
        assert_eq!(breaker.state(), "closed");

        // Isolated failures among successes never open it.
        for i in 0..100 {
            assert!(!breaker.observe((i % 3 == 0).then_some("trap")));
        }
        // A good batch forgets the failures before it.
        breaker.observe(Some("trap"));
        breaker.observe(Some("trap"));
        breaker.batch_passed();
        assert!(!breaker.observe(Some("trap")));
    }
}
