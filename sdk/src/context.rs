//! What a transform uses while it handles a batch: where outputs go, typed state (read from
//! what the batch carries, cached for the call and written back with the result), timers,
//! logs, metrics and geo lookups.

use std::collections::HashMap;
use std::ops::Range;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::abi::{self, Batch, BatchResult, Change, OutputKind, ValueKind};
use crate::event::{Event, OutputValue};
use crate::host_api::{HostApi, Level, Location};

/// Pending state and timer changes past this many bytes go to the host at once rather than
/// with the result, so a call that writes a lot of state does not hold it all.
const FLUSH_AT: usize = 1 << 20;

/// A prefetched state value as this call sees it.
#[derive(Debug, Clone)]
enum Slot {
    /// Not written in this call: the value the batch carries is current.
    Prefetched,
    /// Written in this call: the value lies in the result's changes, here.
    Written(Range<usize>),
    /// Deleted in this call.
    Deleted,
    /// Written, then sent to the host early: read it back from the host.
    Sent,
}

/// A state value outside the batch's prefetched ones, read from the host on first use.
#[derive(Debug)]
struct OtherState {
    key: Vec<u8>,
    name: String,
    value: Option<Vec<u8>>,
    dirty: bool,
}

/// The map key of `(key, name)` among the other values: length-prefixed, so no two collide.
fn other_key(buf: &mut Vec<u8>, key: &[u8], name: &str) {
    buf.clear();
    buf.extend_from_slice(&(key.len() as u32).to_le_bytes());
    buf.extend_from_slice(key);
    buf.extend_from_slice(name.as_bytes());
}

/// The per-call context handed to [`crate::Transform`] methods.
pub struct Context<'a> {
    host: &'a mut dyn HostApi,
    batch: &'a Batch,
    state_names: &'a [String],
    result: BatchResult,
    input: usize,
    /// The prefetched state, one slot per distinct key and declared name.
    slots: Vec<Slot>,
    /// Distinct keys of the batch by id, built when a call reaches for a key other than the
    /// current record's.
    key_index: Option<HashMap<&'a [u8], u32>>,
    others: HashMap<Vec<u8>, OtherState>,
    /// Bytes of other values written and not yet sent.
    others_pending: usize,
    scratch: Vec<u8>,
    /// Counter increments, summed during the call and sent to the host once at its end.
    counters: Vec<(String, u64)>,
}

impl<'a> Context<'a> {
    pub(crate) fn new(
        host: &'a mut dyn HostApi,
        batch: &'a Batch,
        state_names: &'a [String],
    ) -> Self {
        let distinct = batch.key_ids.iter().max().map_or(0, |m| *m as usize + 1);
        Context {
            host,
            batch,
            state_names,
            result: BatchResult::default(),
            input: 0,
            slots: vec![Slot::Prefetched; distinct * state_names.len()],
            key_index: None,
            others: HashMap::new(),
            others_pending: 0,
            scratch: Vec::new(),
            counters: Vec::new(),
        }
    }

    pub(crate) fn set_input(&mut self, input: usize) {
        self.input = input;
    }

    /// Moves the values written outside the prefetched ones into the result's changes.
    fn collect_others(&mut self) {
        for other in self.others.values_mut().filter(|o| o.dirty) {
            other.dirty = false;
            let change = match &other.value {
                Some(value) => Change::Put {
                    key: &other.key,
                    name: other.name.as_bytes(),
                    value,
                },
                None => Change::Delete {
                    key: &other.key,
                    name: other.name.as_bytes(),
                },
            };
            abi::push_change(&mut self.result.changes, change);
        }
    }

    /// Sends the pending changes to the host now, when they have grown large, so a call that
    /// writes a lot of state does not hold it all. What was sent is read back from the host.
    fn flush_if_large(&mut self) {
        if self.result.changes.len() + self.others_pending < FLUSH_AT {
            return;
        }
        self.collect_others();
        self.host.apply_changes(&self.result.changes);
        self.result.changes.clear();
        self.others.clear();
        self.others_pending = 0;
        for slot in &mut self.slots {
            if matches!(slot, Slot::Written(_) | Slot::Deleted) {
                *slot = Slot::Sent;
            }
        }
    }

    /// Ends the call: the state written goes into the result's changes and the counters to
    /// the host.
    pub(crate) fn finish(mut self) -> BatchResult {
        self.collect_others();
        for (name, delta) in self.counters.drain(..) {
            self.host.counter(&name, delta);
        }
        self.result
    }

    fn output(&mut self, kind: OutputKind, text: &str, event: &Event<'_>) {
        let input = event.input_index().unwrap_or(self.input) as u32;
        let (value_kind, bytes): (ValueKind, &[u8]) = match event.output_value() {
            OutputValue::Unchanged => (ValueKind::Unchanged, b""),
            OutputValue::Edited(edits) => (ValueKind::Edited, edits),
            OutputValue::Replaced(value) => (ValueKind::Replaced, value),
        };
        self.result.push(
            abi::OutputHead {
                input,
                kind,
                text,
                key: event.own_key(),
                time: event.own_time(),
                value: value_kind,
            },
            |data| data.extend_from_slice(bytes),
        );
    }

    /// Sends `event` on to the next stage.
    pub fn emit(&mut self, event: &Event<'_>) {
        self.output(OutputKind::Emit, "", event);
    }

    /// Sends `event` to the route `route` (for example `"sessions"`), skipping later stages.
    pub fn route(&mut self, route: &str, event: &Event<'_>) {
        self.output(OutputKind::Route, route, event);
    }

    /// Sends `event` to the dead-letter output with `reason`.
    pub fn dead_letter(&mut self, reason: impl AsRef<str>, event: &Event<'_>) {
        self.output(OutputKind::DeadLetter, reason.as_ref(), event);
    }

    /// The prefetched slot of `(key, name)`, if the batch carries it and the host has not
    /// been sent its new value early.
    fn slot_of(&mut self, key: &[u8], name: &str) -> Option<usize> {
        let s = self.state_names.iter().position(|n| n == name)?;
        let id = if self.batch.key(self.input) == key {
            *self.batch.key_ids.get(self.input)?
        } else {
            let batch = self.batch;
            let index = self.key_index.get_or_insert_with(|| {
                (0..batch.len())
                    .map(|i| (batch.key(i), batch.key_ids[i]))
                    .collect()
            });
            *index.get(key)?
        };
        let slot = id as usize * self.state_names.len() + s;
        (!matches!(self.slots.get(slot), Some(Slot::Sent) | None)).then_some(slot)
    }

    /// The other value `(key, name)`, read from the host the first time.
    fn other(&mut self, key: &[u8], name: &str) -> &mut OtherState {
        other_key(&mut self.scratch, key, name);
        if !self.others.contains_key(self.scratch.as_slice()) {
            let value = self.host.state_get(key, name);
            let other = OtherState {
                key: key.to_vec(),
                name: name.to_string(),
                value,
                dirty: false,
            };
            self.others.insert(self.scratch.clone(), other);
        }
        match self.others.get_mut(self.scratch.as_slice()) {
            Some(other) => other,
            None => unreachable!("inserted just above"),
        }
    }

    /// The raw state value `name` of `key`, as this call left it.
    pub fn state_bytes(&mut self, key: &[u8], name: &str) -> Option<&[u8]> {
        match self.slot_of(key, name) {
            Some(slot) => match &self.slots[slot] {
                Slot::Prefetched => self.batch.state(slot),
                Slot::Written(range) => self.result.changes.get(range.clone()),
                Slot::Deleted | Slot::Sent => None,
            },
            None => self.other(key, name).value.as_deref(),
        }
    }

    /// Copies the raw state value `name` of `key` into `buf` (cleared first); returns whether
    /// there is one. With a buffer kept across calls, a transform can decode a value that
    /// borrows from it (`&str` fields) and write the result back, allocating nothing.
    pub fn state_into(&mut self, key: &[u8], name: &str, buf: &mut Vec<u8>) -> bool {
        buf.clear();
        match self.state_bytes(key, name) {
            Some(value) => {
                buf.extend_from_slice(value);
                true
            }
            None => false,
        }
    }

    /// The state value `name` of `key`, decoded. A value that no longer decodes (its type
    /// changed in a new plugin version) reads as absent and is logged.
    pub fn state<T: DeserializeOwned>(&mut self, key: &[u8], name: &str) -> Option<T> {
        let decoded = postcard::from_bytes(self.state_bytes(key, name)?);
        match decoded {
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

    /// Stores `value` as the state value `name` of `key`. A prefetched value is encoded
    /// straight into the call's changes (no buffer of its own).
    pub fn set_state<T: Serialize>(&mut self, key: &[u8], name: &str, value: &T) {
        let mut failed = None;
        match self.slot_of(key, name) {
            Some(slot) => {
                let changes = &mut self.result.changes;
                let mark = changes.len();
                let range = abi::push_put_with(changes, key, name, |buf| {
                    if let Err(e) = abi::append_postcard(value, buf) {
                        failed = Some(e);
                    }
                });
                if failed.is_some() {
                    changes.truncate(mark);
                } else {
                    self.slots[slot] = Slot::Written(range);
                }
            }
            None => {
                let other = self.other(key, name);
                let buf = other.value.get_or_insert_with(Vec::new);
                buf.clear();
                match abi::append_postcard(value, buf) {
                    Ok(len) => {
                        other.dirty = true;
                        self.others_pending += len + key.len() + name.len();
                    }
                    Err(e) => failed = Some(e),
                }
            }
        }
        if let Some(e) = failed {
            self.log(
                Level::Error,
                &format!("state `{name}` does not encode: {e}"),
            );
            return;
        }
        self.flush_if_large();
    }

    /// Deletes the state value `name` of `key`.
    pub fn delete_state(&mut self, key: &[u8], name: &str) {
        match self.slot_of(key, name) {
            Some(slot) => {
                let change = Change::Delete {
                    key,
                    name: name.as_bytes(),
                };
                abi::push_change(&mut self.result.changes, change);
                self.slots[slot] = Slot::Deleted;
            }
            None => {
                let other = self.other(key, name);
                other.value = None;
                other.dirty = true;
                self.others_pending += key.len() + name.len();
            }
        }
        self.flush_if_large();
    }

    /// Registers an event-time timer for `key` at `at` (ms).
    pub fn set_timer(&mut self, key: &[u8], at: i64) {
        abi::push_change(&mut self.result.changes, Change::SetTimer { key, at });
        self.flush_if_large();
    }

    /// Cancels the timer for `key` at `at`.
    pub fn cancel_timer(&mut self, key: &[u8], at: i64) {
        abi::push_change(&mut self.result.changes, Change::CancelTimer { key, at });
        self.flush_if_large();
    }

    /// The partition's watermark in ms.
    pub fn watermark(&self) -> i64 {
        self.batch.watermark
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
        self.geo_many(&[ip])
            .pop()
            .unwrap_or_else(|| Err("the host answered no lookup".to_string()))
    }

    /// Looks every address of `ips` up in one host call, answering in order.
    pub fn geo_many(&mut self, ips: &[&str]) -> Vec<Result<Option<Location>, String>> {
        if ips.is_empty() {
            return Vec::new();
        }
        self.host.geo_lookup(ips)
    }
}
