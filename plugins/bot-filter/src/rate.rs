//! The rate rule: too many events from one user within a fixed event-time window marks the
//! user a bot for a while. Pure functions over the per-user state, so they test without a host.

use serde::{Deserialize, Serialize};

/// Name of the per-user state value holding [`RateState`].
pub(crate) const RATE_STATE: &str = "rate";

/// Per-user rate counters, stored in host state under [`RATE_STATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RateState {
    /// Event time of the event that opened the current window.
    pub(crate) window_start: i64,
    /// Events counted in the current window.
    pub(crate) count: u32,
    /// The user is a bot for events before this time; `i64::MIN` when never tripped.
    pub(crate) bot_until: i64,
}

/// The configured thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateRule {
    /// More events than this within one window trips the rule.
    pub(crate) limit: u32,
    /// Window length in ms.
    pub(crate) window_ms: i64,
    /// How long a tripped user stays a bot, in ms of event time.
    pub(crate) ttl_ms: i64,
}

impl RateRule {
    /// The state after counting an event at `t`.
    ///
    /// The window is anchored at its first event and restarts once an event is a full window
    /// after it. An out-of-order event older than the window start counts in the current
    /// window: resetting on it would let a bot clear its own count. Events keep counting
    /// while the user is marked, so a bot that keeps going trips again and stays marked.
    pub(crate) fn observe(&self, state: Option<RateState>, t: i64) -> RateState {
        let mut state = match state {
            Some(s) if t.saturating_sub(s.window_start) < self.window_ms => s,
            Some(s) => RateState {
                window_start: t,
                count: 0,
                bot_until: s.bot_until,
            },
            None => RateState {
                window_start: t,
                count: 0,
                bot_until: i64::MIN,
            },
        };
        state.count = state.count.saturating_add(1);
        if state.count > self.limit {
            state.bot_until = state.bot_until.max(t.saturating_add(self.ttl_ms));
        }
        state
    }
}

impl RateState {
    /// Whether the user counts as a bot for an event at `t`.
    pub(crate) fn marks_bot(&self, t: i64) -> bool {
        t < self.bot_until
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: RateRule = RateRule {
        limit: 3,
        window_ms: 1_000,
        ttl_ms: 10_000,
    };

    fn run(times: &[i64]) -> Vec<bool> {
        let mut state = None;
        times
            .iter()
            .map(|t| {
                let next = RULE.observe(state, *t);
                state = Some(next);
                next.marks_bot(*t)
            })
            .collect()
    }

    #[test]
    fn trips_on_the_event_past_the_limit() {
        assert_eq!(run(&[0, 1, 2, 3, 4]), [false, false, false, true, true]);
    }

    #[test]
    fn window_restarts_a_full_window_after_its_first_event() {
        // 999 is still in the window opened at 0; 1_000 opens a new one.
        assert_eq!(run(&[0, 500, 999, 1_000, 1_001, 1_002]), [false; 6]);
    }

    #[test]
    fn mark_lasts_ttl_after_tripping() {
        let marks = run(&[0, 1, 2, 3, 10_002, 10_003]);
        assert_eq!(marks, [false, false, false, true, true, false]);
    }
}
