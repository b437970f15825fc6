//! An event as a transform sees it: the fields it declared (or its whole value), key, event
//! time and headers, read without parsing the event, and changed by edits that the host
//! applies, so an event crosses into the sandbox and back without being copied whole.

use std::borrow::Cow;

use crate::abi::{self, Batch, Edit};
use crate::json;

/// One record of a batch, as the declared fields see it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Record<'a> {
    pub(crate) batch: &'a Batch,
    /// The declared field names: field `f` of record `i` is item `i * names.len() + f`.
    pub(crate) names: &'a [String],
    pub(crate) index: usize,
}

impl<'a> Record<'a> {
    fn declared(&self, path: &str) -> Option<&'a [u8]> {
        let f = self.names.iter().position(|n| n == path)?;
        let raw = self.batch.field(self.index * self.names.len() + f);
        (!raw.is_empty()).then_some(raw)
    }

    /// The raw value at `path`: a declared field, else found in the whole value, else in a
    /// declared object that `path` goes into.
    fn raw(&self, path: &str) -> Option<&'a [u8]> {
        if let Some(raw) = self.declared(path) {
            return Some(raw);
        }
        if let Some(value) = self.batch.value(self.index) {
            return json::find_raw(value, path);
        }
        let (head, rest) = path.split_once('.')?;
        json::find_raw(self.raw(head)?, rest)
    }
}

/// Where an input event's edits are written: a buffer the SDK lends for the call (no
/// allocation per event), or the event's own.
#[derive(Debug)]
enum Edits<'a> {
    Lent(&'a mut Vec<u8>),
    Own(Vec<u8>),
}

impl Edits<'_> {
    fn buf(&self) -> &Vec<u8> {
        match self {
            Edits::Lent(b) => b,
            Edits::Own(b) => b,
        }
    }

    fn buf_mut(&mut self) -> &mut Vec<u8> {
        match self {
            Edits::Lent(b) => b,
            Edits::Own(b) => b,
        }
    }
}

#[derive(Debug)]
enum Base<'a> {
    /// A record of the batch and the edits made to it.
    Input(Record<'a>, Edits<'a>),
    /// A new JSON object.
    Owned(Vec<u8>),
}

/// One event passing through a stage.
#[derive(Debug)]
pub struct Event<'a> {
    base: Base<'a>,
    key: Option<Cow<'a, [u8]>>,
    time: i64,
    time_set: bool,
}

impl Clone for Event<'_> {
    fn clone(&self) -> Self {
        let base = match &self.base {
            Base::Input(record, edits) => Base::Input(*record, Edits::Own(edits.buf().clone())),
            Base::Owned(value) => Base::Owned(value.clone()),
        };
        Event {
            base,
            key: self.key.clone(),
            time: self.time,
            time_set: self.time_set,
        }
    }
}

/// What [`crate::Context`] needs to write an event as an output.
pub(crate) enum OutputValue<'e> {
    Unchanged,
    Edited(&'e [u8]),
    Replaced(&'e [u8]),
}

impl<'a> Event<'a> {
    pub(crate) fn input(record: Record<'a>, edits: &'a mut Vec<u8>) -> Self {
        Event {
            time: record.batch.times[record.index],
            base: Base::Input(record, Edits::Lent(edits)),
            key: None,
            time_set: false,
        }
    }

    pub(crate) fn read_only(record: Record<'a>) -> Self {
        Event {
            time: record.batch.times[record.index],
            base: Base::Input(record, Edits::Own(Vec::new())),
            key: None,
            time_set: false,
        }
    }

    /// A new event holding the JSON object `value`, at event time `time` (ms). Its key is the
    /// input's (the record's, or the timer's) unless [`Self::set_key`] gives it one.
    pub fn new(value: impl Into<Vec<u8>>, time: i64) -> Event<'static> {
        Event {
            base: Base::Owned(value.into()),
            key: None,
            time,
            time_set: true,
        }
    }

    /// A new event holding `value` serialized as JSON, at event time `time` (ms).
    pub fn from_serialize<T: serde::Serialize>(value: &T, time: i64) -> Event<'static> {
        // Serializing plain data structs into a Vec cannot fail; fall back to an empty object.
        Event::new(
            serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
            time,
        )
    }

    /// The index of the input record this event is, if it is one.
    pub(crate) fn input_index(&self) -> Option<usize> {
        match &self.base {
            Base::Input(record, _) => Some(record.index),
            Base::Owned(_) => None,
        }
    }

    pub(crate) fn output_value(&self) -> OutputValue<'_> {
        match &self.base {
            Base::Input(_, edits) if edits.buf().is_empty() => OutputValue::Unchanged,
            Base::Input(_, edits) => OutputValue::Edited(edits.buf()),
            Base::Owned(value) => OutputValue::Replaced(value),
        }
    }

    /// The key this event was given, if not the input's.
    pub(crate) fn own_key(&self) -> Option<&[u8]> {
        self.key.as_deref()
    }

    /// The event time, if it was set rather than taken from the input.
    pub(crate) fn own_time(&self) -> Option<i64> {
        self.time_set.then_some(self.time)
    }

    /// The record key (the entity key, usually the user id). A new event without a key of
    /// its own has none here; it takes the input's when it is output.
    pub fn key(&self) -> &[u8] {
        match (&self.key, &self.base) {
            (Some(key), _) => key,
            (None, Base::Input(record, _)) => record.batch.key(record.index),
            (None, Base::Owned(_)) => b"",
        }
    }

    /// The key as UTF-8, lossily.
    pub fn key_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.key())
    }

    /// Gives the event its own key (outputs keep their input's otherwise).
    pub fn set_key(&mut self, key: &[u8]) {
        self.key = Some(Cow::Owned(key.to_vec()));
    }

    /// Event time in ms since the epoch.
    pub fn time(&self) -> i64 {
        self.time
    }

    /// Gives the event its own event time (ms); the host partitions and watermarks by it.
    pub fn set_time(&mut self, time: i64) {
        self.time = time;
        self.time_set = true;
    }

    /// The first header called `name` (the stage must declare `headers` in its needs).
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        let Base::Input(record, _) = &self.base else {
            return None;
        };
        abi::headers(record.batch.headers(record.index))
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The raw JSON at `path` (a field name or a dotted path into nested objects), as the
    /// event is now: edits made in this stage first, then the input.
    pub fn get_raw(&self, path: &str) -> Option<&[u8]> {
        match &self.base {
            Base::Owned(value) => json::find_raw(value, path),
            Base::Input(record, edits) => {
                let buf = edits.buf();
                if !buf.is_empty() {
                    if let Some(edited) = last_edit(buf, path) {
                        return edited;
                    }
                    if let Some((head, rest)) = path.split_once('.')
                        && let Some(edited) = last_edit(buf, head)
                    {
                        return json::find_raw(edited?, rest);
                    }
                }
                record.raw(path)
            }
        }
    }

    /// The string at `path`.
    pub fn get_str(&self, path: &str) -> Option<Cow<'_, str>> {
        json::decode_string(self.get_raw(path)?)
    }

    /// The integer at `path`.
    pub fn get_i64(&self, path: &str) -> Option<i64> {
        std::str::from_utf8(self.get_raw(path)?).ok()?.parse().ok()
    }

    /// The number at `path`.
    pub fn get_f64(&self, path: &str) -> Option<f64> {
        json::number(self.get_raw(path)?)
    }

    /// The boolean at `path`.
    pub fn get_bool(&self, path: &str) -> Option<bool> {
        match self.get_raw(path)? {
            b"true" => Some(true),
            b"false" => Some(false),
            _ => None,
        }
    }

    /// Whether the top-level field exists (even if `null`).
    pub fn has(&self, field: &str) -> bool {
        self.get_raw(field).is_some()
    }

    /// Which of `fields` the event has.
    pub fn present(&self, fields: &[impl AsRef<str>]) -> Vec<bool> {
        fields.iter().map(|f| self.has(f.as_ref())).collect()
    }

    /// Sets a top-level field to raw JSON, which must be valid (the host refuses the call
    /// otherwise).
    pub fn set_raw(&mut self, field: &str, raw: &[u8]) {
        self.set_with(field, |b| b.extend_from_slice(raw));
    }

    /// Sets a top-level field to the raw JSON that `write` appends.
    fn set_with(&mut self, field: &str, write: impl FnOnce(&mut Vec<u8>)) {
        match &mut self.base {
            Base::Input(_, edits) => abi::push_set(edits.buf_mut(), field, write),
            Base::Owned(value) => {
                let mut raw = Vec::new();
                write(&mut raw);
                json::set_raw(value, field, &raw);
            }
        }
    }

    /// Sets a top-level field to a string.
    pub fn set_str(&mut self, field: &str, value: &str) {
        self.set_with(field, |b| json::push_str(b, value));
    }

    /// Sets a top-level field to an integer.
    pub fn set_i64(&mut self, field: &str, value: i64) {
        self.set_with(field, |b| json::push_i64(b, value));
    }

    /// Sets a top-level field to a number; non-finite numbers become `null`.
    pub fn set_f64(&mut self, field: &str, value: f64) {
        self.set_with(field, |b| json::push_f64(b, value));
    }

    /// Sets a top-level field to a boolean.
    pub fn set_bool(&mut self, field: &str, value: bool) {
        self.set_raw(field, if value { b"true" } else { b"false" });
    }

    /// Adds a top-level field; the same as [`Self::set_str`] (kept for plugins written
    /// before edits, when adding skipped a search).
    pub fn add_str(&mut self, field: &str, value: &str) {
        self.set_str(field, value);
    }

    /// Adds a number field; the same as [`Self::set_f64`].
    pub fn add_f64(&mut self, field: &str, value: f64) {
        self.set_f64(field, value);
    }

    /// Adds a raw JSON field; the same as [`Self::set_raw`].
    pub fn add_raw(&mut self, field: &str, raw: &[u8]) {
        self.set_raw(field, raw);
    }

    /// Removes a top-level field. Returns whether it was there.
    pub fn remove(&mut self, field: &str) -> bool {
        if !self.has(field) {
            return false;
        }
        match &mut self.base {
            Base::Input(_, edits) => abi::push_remove(edits.buf_mut(), field),
            Base::Owned(value) => {
                json::remove(value, field);
            }
        }
        true
    }

    /// The event as JSON: its whole value with this stage's edits applied. A stage that did
    /// not declare `values` in its needs only has its declared fields (and its edits) here.
    pub fn to_json(&self) -> Vec<u8> {
        match &self.base {
            Base::Owned(value) => value.clone(),
            Base::Input(record, edits) => {
                let mut value = match record.batch.value(record.index) {
                    Some(whole) => whole.to_vec(),
                    None => {
                        let mut object = b"{}".to_vec();
                        for (f, name) in record.names.iter().enumerate() {
                            let raw = record.batch.field(record.index * record.names.len() + f);
                            if !raw.is_empty() && !name.contains('.') {
                                json::append_raw(&mut object, name, raw);
                            }
                        }
                        object
                    }
                };
                for edit in abi::edits(edits.buf()).map_while(Result::ok) {
                    match edit {
                        Edit::Set(name, raw) => json::set_raw(&mut value, name, raw),
                        Edit::Remove(name) => {
                            json::remove(&mut value, name);
                        }
                    }
                }
                value
            }
        }
    }
}

/// The value the last edit of `name` left: `Some(Some(raw))` set, `Some(None)` removed,
/// `None` not edited.
fn last_edit<'b>(edits: &'b [u8], name: &str) -> Option<Option<&'b [u8]>> {
    let mut found = None;
    for edit in abi::edits(edits).map_while(Result::ok) {
        match edit {
            Edit::Set(n, raw) if n == name => found = Some(Some(raw)),
            Edit::Remove(n) if n == name => found = Some(None),
            _ => {}
        }
    }
    found
}

/// The events of a batch, for [`crate::Transform::prepare`]: read-only views of every
/// record, before any is processed.
#[derive(Debug, Clone, Copy)]
pub struct Events<'a> {
    pub(crate) batch: &'a Batch,
    pub(crate) names: &'a [String],
}

impl<'a> Events<'a> {
    /// Number of events.
    pub fn len(&self) -> usize {
        self.batch.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.batch.is_empty()
    }

    /// Every event, in order.
    pub fn iter(&self) -> impl Iterator<Item = Event<'a>> + '_ {
        let (batch, names) = (self.batch, self.names);
        (0..batch.len()).map(move |index| {
            Event::read_only(Record {
                batch,
                names,
                index,
            })
        })
    }
}
