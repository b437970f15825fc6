//! Sink resilience: every call a sink makes to its server goes through the sink's [`Breaker`],
//! which retries with exponential backoff and jitter and, after repeated failures, opens: calls
//! then fail at once (the epoch fails and the source stays paused at the committed offsets)
//! until a trial call after the open period succeeds.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

use super::{SinkError, io_error};
use crate::units::HumanDuration;

/// `[sinks.<name>.retry]`: retries and the circuit breaker of one sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Tries per call, the first included.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Wait before the first retry; doubles each retry, with jitter.
    #[serde(default = "default_initial_backoff")]
    pub initial_backoff: HumanDuration,
    /// Longest wait between two tries.
    #[serde(default = "default_max_backoff")]
    pub max_backoff: HumanDuration,
    /// Calls failing in a row (after their retries) that open the breaker.
    #[serde(default = "default_breaker_failures")]
    pub breaker_failures: u32,
    /// How long an open breaker refuses calls before letting one trial through.
    #[serde(default = "default_breaker_open")]
    pub breaker_open: HumanDuration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: default_attempts(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
            breaker_failures: default_breaker_failures(),
            breaker_open: default_breaker_open(),
        }
    }
}

fn default_attempts() -> u32 {
    4
}

fn default_initial_backoff() -> HumanDuration {
    HumanDuration(Duration::from_millis(100))
}

fn default_max_backoff() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_breaker_failures() -> u32 {
    3
}

fn default_breaker_open() -> HumanDuration {
    HumanDuration::from_secs(5)
}

impl RetryConfig {
    /// Checks the values; errors are `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        if self.attempts == 0 {
            return Err(("retry.attempts".into(), "must be at least 1".into()));
        }
        if self.breaker_failures == 0 {
            return Err(("retry.breaker_failures".into(), "must be at least 1".into()));
        }
        if self.max_backoff.0 < self.initial_backoff.0 {
            return Err((
                "retry.max_backoff".into(),
                "must not be below retry.initial_backoff".into(),
            ));
        }
        Ok(())
    }

    /// The wait before retry number `retry` (0-based): exponential, capped, jittered.
    pub fn backoff(&self, retry: u32) -> Duration {
        jittered(
            self.initial_backoff
                .0
                .saturating_mul(1u32 << retry.min(20))
                .min(self.max_backoff.0),
        )
    }
}

/// `wait` with its upper half jittered, so that partitions or instances retrying together
/// spread out instead of hitting a recovering server at once.
pub fn jittered(wait: Duration) -> Duration {
    let half = wait / 2;
    half + half.mul_f64(rand::random::<f64>())
}

/// Where a breaker stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BreakerState {
    /// Calls go through.
    Closed,
    /// The open period is over: the next call is a trial.
    HalfOpen,
    /// Calls fail at once.
    Open,
}

impl BreakerState {
    fn gauge(self) -> f64 {
        match self {
            BreakerState::Closed => 0.0,
            BreakerState::HalfOpen => 1.0,
            BreakerState::Open => 2.0,
        }
    }
}

struct BreakerInner {
    failures: u32,
    open_until: Option<Instant>,
}

/// One sink's retry policy and circuit breaker, shared by the sink's partition instances.
pub struct Breaker {
    sink: String,
    config: RetryConfig,
    inner: Mutex<BreakerInner>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(sink: &str, config: &RetryConfig) -> Self {
        metrics::gauge!("weir_sink_breaker_state", "sink" => sink.to_string()).set(0.0);
        Breaker {
            sink: sink.to_string(),
            config: config.clone(),
            inner: Mutex::new(BreakerInner {
                failures: 0,
                open_until: None,
            }),
        }
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.open_until {
            None => BreakerState::Closed,
            Some(until) if Instant::now() < until => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    /// Runs `op` (described by `what`), retrying with backoff while the breaker allows.
    pub fn call<T, E: std::fmt::Display>(
        &self,
        what: &str,
        mut op: impl FnMut() -> Result<T, E>,
    ) -> Result<T, SinkError> {
        let attempts = match self.state() {
            BreakerState::Closed => self.config.attempts,
            BreakerState::HalfOpen => {
                self.publish(BreakerState::HalfOpen);
                1
            }
            BreakerState::Open => {
                return Err(io_error(
                    &self.sink,
                    format!("{what}: circuit breaker open after repeated failures"),
                ));
            }
        };
        let mut last = String::new();
        for attempt in 0..attempts {
            if attempt > 0 {
                metrics::counter!("weir_sink_retries_total", "sink" => self.sink.clone())
                    .increment(1);
                std::thread::sleep(self.config.backoff(attempt - 1));
            }
            match op() {
                Ok(value) => {
                    self.succeeded();
                    return Ok(value);
                }
                Err(e) => {
                    last = e.to_string();
                    tracing::debug!(sink = %self.sink, what, attempt, error = %last, "Sink call failed.");
                }
            }
        }
        self.failed(&last);
        Err(io_error(&self.sink, format!("{what}: {last}")))
    }

    fn succeeded(&self) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.failures = 0;
        if inner.open_until.take().is_some() {
            tracing::info!(sink = %self.sink, "Sink circuit breaker closed: the sink answers again.");
            self.publish(BreakerState::Closed);
        }
    }

    fn failed(&self, error: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.failures += 1;
        let trial_failed = inner.open_until.is_some();
        if trial_failed || inner.failures >= self.config.breaker_failures {
            inner.open_until = Some(Instant::now() + self.config.breaker_open.0);
            tracing::warn!(
                sink = %self.sink,
                failures = inner.failures,
                open_for = ?self.config.breaker_open.0,
                error,
                "Sink circuit breaker open: the source stays paused at its committed offsets."
            );
            self.publish(BreakerState::Open);
        }
    }

    fn publish(&self, state: BreakerState) {
        metrics::gauge!("weir_sink_breaker_state", "sink" => self.sink.clone()).set(state.gauge());
        let to = match state {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half-open",
            BreakerState::Open => "open",
        };
        metrics::counter!("weir_sink_breaker_transitions_total", "sink" => self.sink.clone(), "to" => to)
            .increment(1);
    }
}

/// The breakers of one instance, by sink name.
#[derive(Clone, Default)]
pub struct Breakers(Arc<Mutex<BTreeMap<String, Arc<Breaker>>>>);

impl Breakers {
    /// The breaker of `sink`, created on first use.
    pub fn get(&self, sink: &str, config: &RetryConfig) -> Arc<Breaker> {
        let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(sink.to_string())
            .or_insert_with(|| Arc::new(Breaker::new(sink, config)))
            .clone()
    }

    /// Every sink's breaker state, for health reports.
    pub fn states(&self) -> Vec<(String, BreakerState)> {
        let map = self.0.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(name, b)| (name.clone(), b.state()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> RetryConfig {
        RetryConfig {
            attempts: 3,
            initial_backoff: HumanDuration(Duration::from_millis(1)),
            max_backoff: HumanDuration(Duration::from_millis(4)),
            breaker_failures: 2,
            // Long enough that a busy machine does not reopen it between two lines of the test.
            breaker_open: HumanDuration(Duration::from_millis(500)),
        }
    }

    #[test]
    fn retries_then_opens_then_closes_after_a_successful_trial() {
        let breaker = Breaker::new("s", &fast());
        let mut tries = 0;
        let ok: Result<u32, SinkError> = breaker.call("put", || {
            tries += 1;
            if tries < 3 { Err("down") } else { Ok(7) }
        });
        assert_eq!(ok.unwrap(), 7);
        assert_eq!(breaker.state(), BreakerState::Closed);

        for _ in 0..2 {
            let _ = breaker.call::<(), _>("put", || Err("down"));
        }
        assert_eq!(breaker.state(), BreakerState::Open);
        let mut called = false;
        let refused = breaker.call::<(), &str>("put", || {
            called = true;
            Ok(())
        });
        assert!(!called);
        assert!(
            refused
                .unwrap_err()
                .to_string()
                .contains("circuit breaker open")
        );

        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(breaker.state(), BreakerState::HalfOpen);
        let mut trials = 0;
        let _ = breaker.call::<(), _>("put", || {
            trials += 1;
            Err("still down")
        });
        assert_eq!(trials, 1, "a half-open breaker lets one trial through");
        assert_eq!(breaker.state(), BreakerState::Open);
        std::thread::sleep(Duration::from_millis(600));
        breaker.call::<(), &str>("put", || Ok(())).unwrap();
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let config = RetryConfig::default();
        for retry in 0..10 {
            let wait = config.backoff(retry);
            let full = (config.initial_backoff.0 * (1 << retry)).min(config.max_backoff.0);
            assert!(wait >= full / 2 && wait <= full, "{retry}: {wait:?}");
        }
        assert!(
            RetryConfig {
                attempts: 0,
                ..fast()
            }
            .validate()
            .is_err()
        );
    }
}
