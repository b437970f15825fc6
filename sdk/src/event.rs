//! An event as a transform sees it: the JSON value (borrowed until changed), key, event time
//! and headers, with field access that does not parse the whole value.

use std::borrow::Cow;

use crate::json;

/// One record passing through a stage.
#[derive(Debug, Clone)]
pub struct Event<'a> {
    value: Cow<'a, [u8]>,
    key: &'a [u8],
    time: i64,
    headers: &'a [u8],
}

impl<'a> Event<'a> {
    /// An event over borrowed parts; `headers` is a framed header buffer.
    pub fn borrowed(value: &'a [u8], key: &'a [u8], time: i64, headers: &'a [u8]) -> Self {
        Event {
            value: Cow::Borrowed(value),
            key,
            time,
            headers,
        }
    }

    /// A new event with the JSON `value`, no key and no headers, for timer outputs and tests.
    pub fn new(value: impl Into<Vec<u8>>, time: i64) -> Event<'static> {
        Event {
            value: Cow::Owned(value.into()),
            key: b"",
            time,
            headers: b"",
        }
    }

    /// A new event holding `value` serialized as JSON.
    pub fn from_serialize<T: serde::Serialize>(value: &T, time: i64) -> Event<'static> {
        // Serializing plain data structs into a Vec cannot fail; fall back to an empty object.
        Event::new(
            serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec()),
            time,
        )
    }

    /// The JSON value's bytes.
    pub fn value(&self) -> &[u8] {
        &self.value
    }

    /// The record key (the entity key, usually the user id).
    pub fn key(&self) -> &[u8] {
        self.key
    }

    /// The key as UTF-8, lossily.
    pub fn key_str(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.key)
    }

    /// Event time in ms since the epoch.
    pub fn time(&self) -> i64 {
        self.time
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        crate::abi::headers(self.headers)
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v)
    }

    /// The string at `path` (a field name or a dotted path into nested objects).
    pub fn get_str(&self, path: &str) -> Option<Cow<'_, str>> {
        json::get_str(&self.value, path)
    }

    /// The integer at `path`.
    pub fn get_i64(&self, path: &str) -> Option<i64> {
        json::get_i64(&self.value, path)
    }

    /// The number at `path`.
    pub fn get_f64(&self, path: &str) -> Option<f64> {
        json::get_f64(&self.value, path)
    }

    /// The boolean at `path`.
    pub fn get_bool(&self, path: &str) -> Option<bool> {
        json::get_bool(&self.value, path)
    }

    /// The raw JSON at `path`.
    pub fn get_raw(&self, path: &str) -> Option<&[u8]> {
        json::find_raw(&self.value, path)
    }

    /// Whether the top-level field exists (even if `null`).
    pub fn has(&self, field: &str) -> bool {
        json::find_member(&self.value, field).is_some()
    }

    /// Which of `fields` the event has at its top level, in one pass.
    pub fn present(&self, fields: &[impl AsRef<str>]) -> Vec<bool> {
        json::present(&self.value, fields)
    }

    /// Adds a top-level field the event does not have (check with [`Self::present`]) without
    /// scanning the value: cheaper than [`Self::set_str`] when enriching with several fields.
    pub fn add_str(&mut self, field: &str, value: &str) {
        let mut raw = Vec::with_capacity(value.len() + 2);
        json::push_str(&mut raw, value);
        self.add_raw(field, &raw);
    }

    /// Adds a number field the event does not have; non-finite numbers become `null`.
    pub fn add_f64(&mut self, field: &str, value: f64) {
        if value.is_finite() {
            self.add_raw(field, value.to_string().as_bytes());
        } else {
            self.add_raw(field, b"null");
        }
    }

    /// Adds a field the event does not have, as raw JSON, which must be valid.
    pub fn add_raw(&mut self, field: &str, raw: &[u8]) {
        json::append_raw(self.value.to_mut(), field, raw);
    }

    /// Sets a top-level field to a string, adding it if absent.
    pub fn set_str(&mut self, field: &str, value: &str) {
        let mut raw = Vec::with_capacity(value.len() + 2);
        json::push_str(&mut raw, value);
        self.set_raw(field, &raw);
    }

    /// Sets a top-level field to an integer.
    pub fn set_i64(&mut self, field: &str, value: i64) {
        self.set_raw(field, value.to_string().as_bytes());
    }

    /// Sets a top-level field to a number; non-finite numbers become `null`.
    pub fn set_f64(&mut self, field: &str, value: f64) {
        if value.is_finite() {
            self.set_raw(field, value.to_string().as_bytes());
        } else {
            self.set_raw(field, b"null");
        }
    }

    /// Sets a top-level field to a boolean.
    pub fn set_bool(&mut self, field: &str, value: bool) {
        self.set_raw(field, if value { b"true" } else { b"false" });
    }

    /// Sets a top-level field to raw JSON, which must be valid.
    pub fn set_raw(&mut self, field: &str, raw: &[u8]) {
        json::set_raw(self.value.to_mut(), field, raw);
    }

    /// Removes a top-level field. Returns whether it was there.
    pub fn remove(&mut self, field: &str) -> bool {
        if !self.has(field) {
            return false;
        }
        json::remove(self.value.to_mut(), field)
    }
}
