//! What a transform uses while it handles one input or one timer: where outputs go, typed
//! state, timers, logs, metrics and the geo lookup.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::abi::{BatchResult, OutputKind};
use crate::event::Event;
use crate::host_api::{HostApi, Level, Location};

/// The per-call context handed to [`crate::Transform`] methods.
pub struct Context<'a> {
    host: &'a mut dyn HostApi,
    result: &'a mut BatchResult,
    input: u32,
    /// The watermark cannot move during one call, so it is asked for once.
    watermark: Option<i64>,
    /// Counter increments, summed during the call and sent to the host once at its end.
    counters: Vec<(String, u64)>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(host: &'a mut dyn HostApi, result: &'a mut BatchResult, input: u32) -> Self {
        Context {
            host,
            result,
            input,
            watermark: None,
            counters: Vec::new(),
        }
    }

    /// Sends the counters summed during the call to the host.
    pub(crate) fn flush_counters(&mut self) {
        for (name, delta) in self.counters.drain(..) {
            self.host.counter(&name, delta);
        }
    }

    pub(crate) fn set_input(&mut self, input: u32) {
        self.input = input;
    }

    /// Sends `event` on to the next stage.
    pub fn emit(&mut self, event: &Event<'_>) {
        self.result
            .push(self.input, OutputKind::Emit, event.value());
    }

    /// Sends `event` to the route `route` (for example `"sessions"`), skipping later stages.
    pub fn route(&mut self, route: &str, event: &Event<'_>) {
        self.result.push(
            self.input,
            OutputKind::Route(route.to_string()),
            event.value(),
        );
    }

    /// Sends `event` to the dead-letter output with `reason`.
    pub fn dead_letter(&mut self, reason: impl Into<String>, event: &Event<'_>) {
        self.result.push(
            self.input,
            OutputKind::DeadLetter(reason.into()),
            event.value(),
        );
    }

    /// The state value `name` of `key`, decoded. A value that no longer decodes (its type
    /// changed in a new plugin version) reads as absent and is logged.
    pub fn state<T: DeserializeOwned>(&mut self, key: &[u8], name: &str) -> Option<T> {
        let raw = self.host.state_get(key, name)?;
        match postcard::from_bytes(&raw) {
            Ok(value) => Some(value),
            Err(e) => {
                self.host.log(
                    Level::Warn,
                    &format!("state `{name}` does not decode, treating as absent: {e}"),
                );
                None
            }
        }
    }

    /// Stores `value` as the state value `name` of `key`.
    pub fn set_state<T: Serialize>(&mut self, key: &[u8], name: &str, value: &T) {
        match postcard::to_allocvec(value) {
            Ok(raw) => self.host.state_put(key, name, &raw),
            Err(e) => self.host.log(
                Level::Error,
                &format!("state `{name}` does not encode: {e}"),
            ),
        }
    }

    /// Deletes the state value `name` of `key`.
    pub fn delete_state(&mut self, key: &[u8], name: &str) {
        self.host.state_delete(key, name);
    }

    /// Registers an event-time timer for `key` at `at` (ms).
    pub fn set_timer(&mut self, key: &[u8], at: i64) {
        self.host.timer_set(key, at);
    }

    /// Cancels the timer for `key` at `at`.
    pub fn cancel_timer(&mut self, key: &[u8], at: i64) {
        self.host.timer_cancel(key, at);
    }

    /// The partition's watermark in ms.
    pub fn watermark(&mut self) -> i64 {
        *self.watermark.get_or_insert_with(|| self.host.watermark())
    }

    /// Logs through the host.
    pub fn log(&mut self, level: Level, message: &str) {
        self.host.log(level, message);
    }

    /// Adds `delta` to the counter `name`. Increments are summed and reach the host once per
    /// call, not once per event.
    pub fn counter(&mut self, name: &str, delta: u64) {
        match self.counters.iter_mut().find(|(n, _)| n == name) {
            Some((_, total)) => *total += delta,
            None => self.counters.push((name.to_string(), delta)),
        }
    }

    /// Records `value` in the histogram `name`.
    pub fn histogram(&mut self, name: &str, value: f64) {
        self.host.histogram(name, value);
    }

    /// Looks `ip` up in the host's geo database.
    pub fn geo(&mut self, ip: &str) -> Result<Option<Location>, String> {
        self.host.geo_lookup(ip)
    }
}
