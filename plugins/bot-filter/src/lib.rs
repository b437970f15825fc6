//! Bot filter: separates crawler, tool and high-rate traffic from human traffic.
//!
//! An event is a bot when its user agent contains a known bot pattern (the built-in list in
//! `patterns.rs` plus config `extra_patterns`), when it has no usable user agent (per config
//! `missing_user_agent`), or when its user sent more than `rate_limit` events within
//! `rate_window` of event time; the rate rule then marks the user for `bot_ttl` of event
//! time. Humans are emitted unchanged; bots are routed with a `bot_reason` field, or dropped.
//!
//! Config keys: `user_agent_field` (default `user_agent`), `extra_patterns` (comma list),
//! `missing_user_agent` (`allow` | `bot` | `dead-letter`, default `bot`), `rate_limit`
//! (default 120), `rate_window` (default `1m`), `burst` (default 20, at most `rate_limit`),
//! `bot_ttl` (default `1h`), `action` (`route` | `drop`, default `route`) and `route`
//! (default `bots`). The rate rule is in `rate.rs`.
//!
//! A user's rate state expires (host-owned state lifetime, event time) once the user has been
//! quiet for the longer of `rate_window` and `bot_ttl`: by then a mark has run out and the
//! bucket has drained, so the next event starts fresh, and state about users who left does
//! not grow forever.
//!
//! It reads only the user-agent field and the per-user rate state; the verdict of each user
//! agent text is remembered (a clickstream repeats a few thousand of them), so most events
//! cost a hash lookup instead of a scan for ~150 patterns.
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod patterns;
mod rate;
#[cfg(test)]
mod rate_report;
#[cfg(test)]
mod tests;
mod verdicts;

use weir_sdk::{Config, Context, Event, Needs, Transform, TtlRefresh};

use crate::config::{Action, MissingPolicy, Settings};
use crate::patterns::UaMatcher;
use crate::rate::RATE_STATE;
use crate::verdicts::Verdicts;

/// The bot-filter transform.
#[derive(Debug)]
pub struct BotFilter {
    settings: Settings,
    matcher: UaMatcher,
    verdicts: Verdicts,
}

/// Why an event is not human.
enum Verdict {
    Human,
    /// The id of the pattern found.
    UserAgent(usize),
    Rate,
    MissingUserAgent,
}

impl BotFilter {
    fn classify(&mut self, event: &Event<'_>, ctx: &mut Context<'_>) -> Verdict {
        match event.get_str(&self.settings.user_agent_field) {
            Some(ua) if !ua.trim().is_empty() => {
                let matcher = &self.matcher;
                if let Some(pattern) = self.verdicts.get(&ua, |ua| matcher.find(ua)) {
                    return Verdict::UserAgent(pattern);
                }
            }
            _ if self.settings.missing != MissingPolicy::Allow => {
                return Verdict::MissingUserAgent;
            }
            _ => {}
        }
        let key = event.key();
        let t = event.time();
        let state = self.settings.rate.observe(ctx.state(key, RATE_STATE), t);
        ctx.set_state(key, RATE_STATE, &state);
        if state.marks_bot(t) {
            Verdict::Rate
        } else {
            Verdict::Human
        }
    }

    fn bot(&self, mut event: Event<'_>, reason: &str, ctx: &mut Context<'_>) {
        if self.settings.action == Action::Route {
            event.set_str("bot_reason", reason);
            ctx.route(&self.settings.route, &event);
        }
    }
}

impl Transform for BotFilter {
    fn init(config: &Config) -> Result<Self, String> {
        let settings = Settings::from_config(config)?;
        // Built once here: compiling ~150 patterns per event would dominate the stage's cost.
        let matcher = UaMatcher::new(&settings.extra_patterns)?;
        Ok(BotFilter {
            settings,
            matcher,
            verdicts: Verdicts::default(),
        })
    }

    fn needs(&self) -> Needs {
        Needs::fields(&[&self.settings.user_agent_field])
            .with_state(&[RATE_STATE])
            .with_ttl(
                RATE_STATE,
                self.settings.rate.idle_lifetime(),
                TtlRefresh::OnWrite,
            )
    }

    fn process(&mut self, event: Event<'_>, ctx: &mut Context<'_>) {
        match self.classify(&event, ctx) {
            Verdict::Human => {
                ctx.counter("humans", 1);
                ctx.emit(&event);
            }
            Verdict::UserAgent(pattern) => {
                ctx.counter("bots_user_agent", 1);
                let reason = format!("user_agent:{}", self.matcher.name(pattern));
                self.bot(event, &reason, ctx);
            }
            Verdict::Rate => {
                ctx.counter("bots_rate", 1);
                self.bot(event, "rate", ctx);
            }
            Verdict::MissingUserAgent => {
                ctx.counter("bots_missing_user_agent", 1);
                if self.settings.missing == MissingPolicy::DeadLetter {
                    ctx.dead_letter("missing user agent", &event);
                } else {
                    self.bot(event, "missing_user_agent", ctx);
                }
            }
        }
    }
}

weir_sdk::export_transform!(BotFilter);
