//! The rate rule: a user who keeps sending faster than `rate_limit` events per `rate_window`
//! (after an allowance of `burst` events at once) is marked a bot for a while.
//!
//! It is a token bucket written as the generic cell rate algorithm: one "theoretical arrival
//! time" per user instead of a count per window, so there is no window edge for a client to
//! hide behind. Each event pushes that time one interval (`rate_window / rate_limit`) later,
//! starting from the event's own time if the user was idle; when it runs more than
//! `burst` intervals ahead of the event, the user is sending faster than the limit for
//! longer than a burst explains. A client at 10 events/s against the default 120/min with a
//! burst of 20 is caught on its 24th event, 2.4 s in. Pure functions over the per-user
//! state, so they test without a host.

use serde::{Deserialize, Serialize};

/// Name of the per-user state value holding [`RateState`].
pub(crate) const RATE_STATE: &str = "rate";

/// Per-user rate state, stored in host state under [`RATE_STATE`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct RateState {
    /// When the user's bucket would be full again at the allowed rate (event time, ms).
    pub(crate) tat: i64,
    /// The user is a bot for events before this time; `i64::MIN` when never tripped.
    pub(crate) bot_until: i64,
}

/// The configured thresholds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RateRule {
    /// Events allowed per window, sustained.
    pub(crate) limit: u32,
    /// Window length in ms.
    pub(crate) window_ms: i64,
    /// Events allowed at once above the sustained rate.
    pub(crate) burst: u32,
    /// How long a tripped user stays a bot, in ms of event time.
    pub(crate) ttl_ms: i64,
}

impl RateRule {
    /// How long a user's state is kept after their last event: the longer of the window and
    /// the mark, after which forgetting the user changes no verdict of an ordinary client.
    pub(crate) fn idle_lifetime(&self) -> std::time::Duration {
        let ms = self.window_ms.max(self.ttl_ms).max(1);
        std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX))
    }

    /// Time between two events at the allowed rate, ms (at least 1).
    fn interval(&self) -> i64 {
        (self.window_ms / i64::from(self.limit.max(1))).max(1)
    }

    /// The state after an event at `t`.
    ///
    /// An event out of order (before the last one) still costs an interval: a client cannot
    /// buy back its allowance by sending old timestamps. Events keep costing while the user is
    /// marked, so a bot that keeps going trips again and stays marked.
    pub(crate) fn observe(&self, state: Option<RateState>, t: i64) -> RateState {
        let interval = self.interval();
        let (tat, bot_until) = match state {
            Some(s) => (s.tat.max(t), s.bot_until),
            None => (t, i64::MIN),
        };
        let tat = tat.saturating_add(interval);
        let allowance = interval.saturating_mul(i64::from(self.burst.max(1)));
        let bot_until = if tat.saturating_sub(t) > allowance {
            bot_until.max(t.saturating_add(self.ttl_ms))
        } else {
            bot_until
        };
        RateState { tat, bot_until }
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

    /// 3 events per second sustained, 3 at once.
    const RULE: RateRule = RateRule {
        limit: 3,
        window_ms: 1_000,
        burst: 3,
        ttl_ms: 10_000,
    };

    fn run(rule: &RateRule, times: &[i64]) -> Vec<bool> {
        let mut state = None;
        times
            .iter()
            .map(|t| {
                let next = rule.observe(state, *t);
                state = Some(next);
                next.marks_bot(*t)
            })
            .collect()
    }

    #[test]
    fn trips_on_the_event_past_the_burst() {
        assert_eq!(
            run(&RULE, &[0, 1, 2, 3, 4]),
            [false, false, false, true, true]
        );
    }

    #[test]
    fn a_steady_rate_at_the_limit_never_trips_and_one_above_it_does() {
        let at_limit: Vec<i64> = (0..300).map(|i| i * 334).collect();
        assert!(run(&RULE, &at_limit).iter().all(|bot| !bot));
        // 4 per second against 3: the allowance runs out within a few seconds.
        let above: Vec<i64> = (0..40).map(|i| i * 250).collect();
        let marks = run(&RULE, &above);
        let first = marks.iter().position(|b| *b).unwrap();
        assert!(first < 16, "caught at event {first}");
        assert!(marks[first..].iter().all(|b| *b), "stays marked");
    }

    #[test]
    fn no_window_edge_to_hide_behind() {
        // Bursts straddling where a fixed window would restart still trip.
        let times = [990, 995, 999, 1_000, 1_001, 1_002];
        assert!(run(&RULE, &times).contains(&true));
    }

    #[test]
    fn an_idle_user_gets_the_whole_burst_back() {
        assert_eq!(run(&RULE, &[0, 1, 2, 5_000, 5_001, 5_002]), [false; 6]);
    }

    #[test]
    fn mark_lasts_ttl_after_tripping() {
        let marks = run(&RULE, &[0, 1, 2, 3, 20_000, 20_001]);
        assert_eq!(marks, [false, false, false, true, false, false]);
        let marks = run(&RULE, &[0, 1, 2, 3, 9_000]);
        assert!(marks[4], "still within the ttl");
    }
}
