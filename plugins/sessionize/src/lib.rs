//! Sessionize: groups each user's events (the record key) into event-time sessions and emits
//! a summary and updated per-user features when a session closes.
//!
//! # Semantics
//!
//! - Two events of a user are in the same session iff their times differ by less than `gap`
//!   (through a chain of events). An event exactly `gap` after the previous one starts a new
//!   session, as with Flink's session windows.
//! - An event is *late* if `t < watermark - allowed_lateness`. It is routed to `late_route`
//!   with `"late": true`, or dead-lettered (`late_action`), and changes no state.
//! - Otherwise the event joins the open sessions it is within `gap` of (`start - gap < t <
//!   last + gap`). None: it opens a new session anchored at `t`. Several (an out-of-order
//!   event bridging them): they merge into the one with the earliest anchor, keeping its id.
//! - A session's id is `s-` + 16 hex digits of FNV-1a-64 over key bytes, a 0 byte and the
//!   anchor (the time of the event that opened it) as little-endian i64. It never changes,
//!   so replays and out-of-order arrival within lateness give the same ids.
//! - Every accepted event is emitted with `session_id` set.
//! - `max_duration`: an event after a session's last event that would make `last - start >=
//!   max_duration` closes that session at once and opens a new one anchored at itself. Only
//!   forward growth is checked: an out-of-order event that extends a session backwards or
//!   bridges two may yield a longer session, because splitting it would need events the
//!   session already absorbed.
//! - Each open session closes once the watermark passes its deadline `last + gap +
//!   allowed_lateness`: then no accepted event can reach it. Its one timer is armed lazily:
//!   set at the deadline when the session opens, left alone when an event moves the deadline
//!   later (saving two host calls per event), and moved to the deadline when it fires early.
//!   When a timer fires, every open session of the user past its deadline closes.
//! - Closing routes a summary to `sessions` (`{user_field, session_id, start, end,
//!   duration_ms, event_count, page_views, first_url, last_url}`, times in ms) and the
//!   user's features to `features` (`{user_field, session_count, last_session_duration_ms,
//!   last_session_events, total_events, updated_at}`), where "last session" is the
//!   latest-ending closed one.
//!
//! State per user: `open` (the open sessions, sorted by start; deleted when none is left) and
//! `features`. Counters: `sessions_closed`, `late_events`.
//!
//! Config keys: `gap` (default `30m`), `max_duration` (`12h`), `allowed_lateness` (`1m`),
//! `late_action` (`route` | `dead-letter`), `late_route` (`late`), `url_field` (`url`),
//! `type_field` (`type`), `page_view_type` (`page_view`), `user_field` (`user_id`).
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod config;
mod output;
mod session;
#[cfg(test)]
mod tests;

use weir_sdk::{Config, Context, Event, Level, Needs, Transform};

use crate::config::{LateAction, Settings};
use crate::output::{FEATURES_STATE, close_session};
use crate::session::{OPEN_STATE, Observed, OpenSession, session_id_json};

/// The sessionize transform.
#[derive(Debug)]
pub struct Sessionize {
    settings: Settings,
    /// A copy of the state being changed, which the open sessions borrow from.
    scratch: Vec<u8>,
}

/// The open sessions held in `raw` (none if absent). A value that no longer decodes (its
/// type changed in a new plugin version) reads as none and is logged.
fn open_sessions<'a>(raw: &'a [u8], ctx: &mut Context<'_>) -> Vec<OpenSession<'a>> {
    if raw.is_empty() {
        return Vec::new();
    }
    postcard::from_bytes(raw).unwrap_or_else(|e| {
        ctx.log(
            Level::Warn,
            &format!("state `{OPEN_STATE}` does not decode, treating as absent: {e}"),
        );
        Vec::new()
    })
}

impl Sessionize {
    /// Puts an accepted event into a session, updating state and timers; returns the id as
    /// a JSON string.
    fn place(&mut self, event: &Event<'_>, ctx: &mut Context<'_>) -> [u8; 20] {
        let Sessionize { settings, scratch } = self;
        let key = event.key();
        let url = event.get_str(&settings.url_field);
        let page_view = event
            .get_str(&settings.type_field)
            .is_some_and(|t| t == settings.page_view_type);
        let observed = Observed {
            time: event.time(),
            url: url.as_deref(),
            page_view,
        };
        ctx.state_into(key, OPEN_STATE, scratch);
        let mut open = open_sessions(scratch, ctx);
        let placed = settings.windows.place(&mut open, observed);
        if let Some(closed) = &placed.closed {
            close_session(&settings.user_field, key, closed, ctx);
        }
        for at in placed.cancel {
            ctx.cancel_timer(key, at);
        }
        if let Some(at) = placed.set {
            ctx.set_timer(key, at);
        }
        ctx.set_state(key, OPEN_STATE, &open);
        session_id_json(key, placed.anchor)
    }

    fn late(&self, mut event: Event<'_>, watermark: i64, ctx: &mut Context<'_>) {
        ctx.counter("late_events", 1);
        match self.settings.late_action {
            LateAction::Route => {
                event.set_bool("late", true);
                ctx.route(&self.settings.late_route, &event);
            }
            LateAction::DeadLetter => {
                let reason = format!(
                    "late event: {} is behind watermark {watermark} minus allowed lateness {}",
                    event.time(),
                    self.settings.windows.allowed_lateness
                );
                ctx.dead_letter(reason, &event);
            }
        }
    }
}

impl Transform for Sessionize {
    fn init(config: &Config) -> Result<Self, String> {
        Ok(Sessionize {
            settings: Settings::from_config(config)?,
            scratch: Vec::new(),
        })
    }

    fn needs(&self) -> Needs {
        Needs::fields(&[&self.settings.url_field, &self.settings.type_field])
            .with_state(&[OPEN_STATE, FEATURES_STATE])
    }

    fn process(&mut self, mut event: Event<'_>, ctx: &mut Context<'_>) {
        let watermark = ctx.watermark();
        if event.time() < watermark.saturating_sub(self.settings.windows.allowed_lateness) {
            self.late(event, watermark, ctx);
            return;
        }
        let id = self.place(&event, ctx);
        event.set_raw("session_id", &id);
        ctx.emit(&event);
    }

    fn on_timer(&mut self, key: &[u8], at: i64, ctx: &mut Context<'_>) {
        let mut scratch = std::mem::take(&mut self.scratch);
        if !ctx.state_into(key, OPEN_STATE, &mut scratch) {
            self.scratch = scratch;
            return;
        }
        let mut open = open_sessions(&scratch, ctx);
        let closed = self.settings.windows.expire(&mut open, at);
        for session in &closed {
            close_session(&self.settings.user_field, key, session, ctx);
        }
        let rearmed = self.settings.windows.rearm(&mut open, at);
        for timer in &rearmed {
            ctx.set_timer(key, *timer);
        }
        if open.is_empty() {
            ctx.delete_state(key, OPEN_STATE);
        } else if !closed.is_empty() || !rearmed.is_empty() {
            ctx.set_state(key, OPEN_STATE, &open);
        }
        drop((open, closed));
        self.scratch = scratch;
    }
}

weir_sdk::export_transform!(Sessionize);
