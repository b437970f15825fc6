//! Plain Rust mirrors of the WIT types (`wit/transform.wit`) and the byte framings they carry
//! (edits, state and timer changes, headers), shared by the guest glue, the native test
//! harness and the host, so both sides write and read them with the same code.

/// What a stage reads, declared once at `init`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Needs {
    /// Fields (top-level names or dotted paths) whose raw JSON values come with each record.
    pub fields: Vec<String>,
    /// State names whose values for each record's (or timer's) key come with the batch.
    pub state: Vec<String>,
    /// Whether whole values come with the batch.
    pub values: bool,
    /// Whether headers come with the batch.
    pub headers: bool,
    /// State names whose entries expire (see [`StateTtl`]); the others live until deleted,
    /// or for the stage's configured `state_ttl`.
    pub ttls: Vec<StateTtl>,
}

/// How long the entries under one state name live without being touched, in event time: an
/// entry written (or, with [`TtlRefresh::OnReadAndWrite`], read) for a record at time `t` is
/// gone once the partition's watermark reaches `t + ttl_ms`. The host drops it from state,
/// from checkpoints and from the state metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateTtl {
    /// The state name.
    pub name: String,
    /// Lifetime in ms of event time (at least 1).
    pub ttl_ms: u64,
    /// What restarts the lifetime.
    pub refresh: TtlRefresh,
}

/// What restarts a state entry's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TtlRefresh {
    /// Writing it.
    #[default]
    OnWrite,
    /// Writing it or reading it.
    OnReadAndWrite,
}

/// A batch of records or fired timers in columns (see `wit/transform.wit`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// The partition's watermark during the call.
    pub watermark: i64,
    /// Event time of each record (a timer's time); one per record.
    pub times: Vec<i64>,
    /// Every record's key, back to back.
    pub keys: Vec<u8>,
    /// End offset of each key.
    pub key_ends: Vec<u32>,
    /// Each record's index among the batch's distinct keys.
    pub key_ids: Vec<u32>,
    /// The declared fields' raw JSON values, record by record.
    pub fields: Vec<u8>,
    /// End offset of each field item.
    pub field_ends: Vec<u32>,
    /// The declared state values, distinct key by distinct key.
    pub state: Vec<u8>,
    /// End offset of each state item.
    pub state_ends: Vec<u32>,
    /// Whether each state item holds a value.
    pub state_present: Vec<bool>,
    /// Whole values, when declared.
    pub values: Vec<u8>,
    /// End offset of each value.
    pub value_ends: Vec<u32>,
    /// Framed headers, when declared.
    pub headers: Vec<u8>,
    /// End offset of each record's headers.
    pub header_ends: Vec<u32>,
}

/// Where an output goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// To the next stage (or route `main` after the last one).
    Emit,
    /// To the route named by the output's text.
    Route,
    /// To the dead-letter output, the text being the reason.
    DeadLetter,
}

/// What an output's value is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ValueKind {
    /// The input's value.
    Unchanged,
    /// The input's value with edits.
    Edited,
    /// A new JSON object.
    Replaced,
}

/// One output; its variable parts are in [`BatchResult::data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Output {
    /// Index of the input record or timer.
    pub input: u32,
    /// Where it goes.
    pub kind: OutputKind,
    /// What its value is.
    pub value: ValueKind,
    /// End offset of its parts in `data`.
    pub end: u32,
    /// Length of its route name or reason.
    pub text_len: u32,
    /// Length of its own key, if it has one.
    pub key_len: Option<u32>,
    /// Its own event time, if it has one.
    pub time: Option<i64>,
}

/// The outcome of one call.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResult {
    /// Outputs in order.
    pub outputs: Vec<Output>,
    /// The outputs' variable parts, back to back.
    pub data: Vec<u8>,
    /// State and timer changes, framed (see [`Change`]).
    pub changes: Vec<u8>,
}

/// The parts of one output, sliced out of [`BatchResult::data`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutputParts<'a> {
    /// Route name or dead-letter reason.
    pub text: &'a str,
    /// Its own key.
    pub key: Option<&'a [u8]>,
    /// Edits or a new object, per the output's [`ValueKind`].
    pub value: &'a [u8],
}

/// A framing error in a plugin's result: the host refuses the call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameError(pub String);

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Slice `i` of a buffer whose items end at `ends`, or `None` if the offsets are broken.
pub fn segment<'a>(buf: &'a [u8], ends: &[u32], i: usize) -> Option<&'a [u8]> {
    let start = if i == 0 {
        0
    } else {
        *ends.get(i - 1)? as usize
    };
    buf.get(start..*ends.get(i)? as usize)
}

fn end_offset(buf: &[u8]) -> u32 {
    u32::try_from(buf.len()).unwrap_or(u32::MAX)
}

impl Batch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.times.len()
    }

    /// Whether the batch holds no record.
    pub fn is_empty(&self) -> bool {
        self.times.is_empty()
    }

    /// Key of record `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        segment(&self.keys, &self.key_ends, i).unwrap_or_default()
    }

    /// Field item `slot` (record `i`, declared field `f`: `i * fields + f`).
    pub fn field(&self, slot: usize) -> &[u8] {
        segment(&self.fields, &self.field_ends, slot).unwrap_or_default()
    }

    /// State item `slot` (key id `k`, declared name `s`: `k * names + s`), if present.
    pub fn state(&self, slot: usize) -> Option<&[u8]> {
        if !self.state_present.get(slot).copied().unwrap_or(false) {
            return None;
        }
        segment(&self.state, &self.state_ends, slot)
    }

    /// Whole value of record `i`, when the batch carries values.
    pub fn value(&self, i: usize) -> Option<&[u8]> {
        segment(&self.values, &self.value_ends, i)
    }

    /// Framed headers of record `i` (empty when the batch carries none).
    pub fn headers(&self, i: usize) -> &[u8] {
        segment(&self.headers, &self.header_ends, i).unwrap_or_default()
    }

    /// Removes every record, keeping the allocations.
    pub fn clear(&mut self) {
        self.times.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.key_ids.clear();
        self.fields.clear();
        self.field_ends.clear();
        self.state.clear();
        self.state_ends.clear();
        self.state_present.clear();
        self.values.clear();
        self.value_ends.clear();
        self.headers.clear();
        self.header_ends.clear();
    }

    /// Appends a record's key and time (its fields, values and headers are pushed with
    /// [`Self::push_field`], [`Self::push_value`], [`Self::push_headers`]).
    pub fn push_record(&mut self, key: &[u8], time: i64) {
        self.keys.extend_from_slice(key);
        self.key_ends.push(end_offset(&self.keys));
        self.times.push(time);
    }

    /// Appends the next field item (empty: the record lacks the field).
    pub fn push_field(&mut self, raw: &[u8]) {
        self.fields.extend_from_slice(raw);
        self.field_ends.push(end_offset(&self.fields));
    }

    /// Appends the next whole value.
    pub fn push_value(&mut self, value: &[u8]) {
        self.values.extend_from_slice(value);
        self.value_ends.push(end_offset(&self.values));
    }

    /// Appends the next record's framed headers.
    pub fn push_headers(&mut self, framed: &[u8]) {
        self.headers.extend_from_slice(framed);
        self.header_ends.push(end_offset(&self.headers));
    }

    /// Appends the next state item.
    pub fn push_state(&mut self, value: Option<&[u8]>) {
        self.state.extend_from_slice(value.unwrap_or_default());
        self.state_ends.push(end_offset(&self.state));
        self.state_present.push(value.is_some());
    }
}

/// The fixed parts of an output, for [`BatchResult::push`].
#[derive(Debug, Clone, Copy)]
pub struct OutputHead<'a> {
    /// Index of the input record or timer.
    pub input: u32,
    /// Where it goes.
    pub kind: OutputKind,
    /// Route name or dead-letter reason (empty for an emit).
    pub text: &'a str,
    /// Its own key, if any.
    pub key: Option<&'a [u8]>,
    /// Its own event time, if any.
    pub time: Option<i64>,
    /// What its value is.
    pub value: ValueKind,
}

impl BatchResult {
    /// Appends an output; `write_value` appends its value part (edits or an object) to
    /// `data` after the text and key.
    pub fn push(&mut self, head: OutputHead<'_>, write_value: impl FnOnce(&mut Vec<u8>)) {
        self.data.extend_from_slice(head.text.as_bytes());
        if let Some(key) = head.key {
            self.data.extend_from_slice(key);
        }
        write_value(&mut self.data);
        self.outputs.push(Output {
            input: head.input,
            kind: head.kind,
            value: head.value,
            end: end_offset(&self.data),
            text_len: end_offset(head.text.as_bytes()),
            key_len: head.key.map(end_offset),
            time: head.time,
        });
    }

    /// The parts of output `i`, or why they do not fit together.
    pub fn parts(&self, i: usize) -> Result<OutputParts<'_>, FrameError> {
        let output = self
            .outputs
            .get(i)
            .ok_or_else(|| FrameError(format!("no output {i}")))?;
        let start = match i {
            0 => 0,
            _ => self.outputs[i - 1].end as usize,
        };
        let all = self.data.get(start..output.end as usize).ok_or_else(|| {
            FrameError(format!(
                "output {i} ends at {} of {} data bytes, before its start or past the end",
                output.end,
                self.data.len()
            ))
        })?;
        let text_len = output.text_len as usize;
        let key_len = output.key_len.unwrap_or(0) as usize;
        if text_len.saturating_add(key_len) > all.len() {
            return Err(FrameError(format!(
                "output {i}: text and key longer than its {} bytes",
                all.len()
            )));
        }
        let text = crate::json::text(&all[..text_len])
            .ok_or_else(|| FrameError(format!("output {i}: text is not UTF-8")))?;
        Ok(OutputParts {
            text,
            key: output.key_len.map(|_| &all[text_len..text_len + key_len]),
            value: &all[text_len + key_len..],
        })
    }
}

/// One edit of an output's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Edit<'a> {
    /// Sets the top-level field to the raw JSON value.
    Set(&'a str, &'a [u8]),
    /// Removes the top-level field.
    Remove(&'a str),
}

/// One state or timer change of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change<'a> {
    /// Stores `value` under `name` for `key`.
    Put {
        /// Entity key.
        key: &'a [u8],
        /// State name (UTF-8 as written; the host keeps it as bytes).
        name: &'a [u8],
        /// New value.
        value: &'a [u8],
    },
    /// Deletes `name` of `key`.
    Delete {
        /// Entity key.
        key: &'a [u8],
        /// State name.
        name: &'a [u8],
    },
    /// Registers a timer for `key` at `at`.
    SetTimer {
        /// Entity key.
        key: &'a [u8],
        /// Event time, ms.
        at: i64,
    },
    /// Removes the timer for `key` at `at`.
    CancelTimer {
        /// Entity key.
        key: &'a [u8],
        /// Event time, ms.
        at: i64,
    },
}

const EDIT_SET: u8 = 0;
const EDIT_REMOVE: u8 = 1;
const PUT: u8 = 0;
const DELETE: u8 = 1;
const SET_TIMER: u8 = 2;
const CANCEL_TIMER: u8 = 3;

/// Appends `bytes` with its `u32-le` length.
pub fn push_frame(buf: &mut Vec<u8>, bytes: &[u8]) {
    buf.extend_from_slice(&end_offset(bytes).to_le_bytes());
    buf.extend_from_slice(bytes);
}

/// Appends a frame whose bytes `write` appends, filling in the length afterwards (for values
/// encoded straight into the buffer).
pub fn push_frame_with(buf: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let at = buf.len();
    buf.extend_from_slice(&[0; 4]);
    write(buf);
    let len = end_offset(&buf[at + 4..]);
    buf[at..at + 4].copy_from_slice(&len.to_le_bytes());
}

/// Appends an edit that sets `name` to the raw JSON `write` appends.
pub fn push_set(buf: &mut Vec<u8>, name: &str, write: impl FnOnce(&mut Vec<u8>)) {
    buf.push(EDIT_SET);
    push_frame(buf, name.as_bytes());
    push_frame_with(buf, write);
}

/// Appends an edit that removes `name`.
pub fn push_remove(buf: &mut Vec<u8>, name: &str) {
    buf.push(EDIT_REMOVE);
    push_frame(buf, name.as_bytes());
}

/// Appends a put of `name` of `key` whose value `write` appends; returns where the value
/// lies in `buf` (so a writer can read it back).
pub fn push_put_with(
    buf: &mut Vec<u8>,
    key: &[u8],
    name: &str,
    write: impl FnOnce(&mut Vec<u8>),
) -> std::ops::Range<usize> {
    buf.push(PUT);
    push_frame(buf, key);
    push_frame(buf, name.as_bytes());
    let start = buf.len() + 4;
    push_frame_with(buf, write);
    start..buf.len()
}

/// Appends a change.
pub fn push_change(buf: &mut Vec<u8>, change: Change<'_>) {
    match change {
        Change::Put { key, name, value } => {
            buf.push(PUT);
            push_frame(buf, key);
            push_frame(buf, name);
            push_frame(buf, value);
        }
        Change::Delete { key, name } => {
            buf.push(DELETE);
            push_frame(buf, key);
            push_frame(buf, name);
        }
        Change::SetTimer { key, at } | Change::CancelTimer { key, at } => {
            buf.push(if matches!(change, Change::SetTimer { .. }) {
                SET_TIMER
            } else {
                CANCEL_TIMER
            });
            push_frame(buf, key);
            buf.extend_from_slice(&at.to_le_bytes());
        }
    }
}

/// Reads framed items off the front of a buffer.
struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    fn error(&self, detail: &str) -> FrameError {
        FrameError(format!("{}: {detail}", self.what))
    }

    fn byte(&mut self) -> Result<u8, FrameError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or_else(|| self.error("truncated"))?;
        self.buf = rest;
        Ok(b)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(self.error("truncated"));
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn frame(&mut self) -> Result<&'a [u8], FrameError> {
        let len = self.take(4)?;
        let len = u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize;
        self.take(len)
    }

    fn text(&mut self) -> Result<&'a str, FrameError> {
        let bytes = self.frame()?;
        crate::json::text(bytes).ok_or_else(|| self.error("a name is not UTF-8"))
    }

    fn time(&mut self) -> Result<i64, FrameError> {
        let b = self.take(8)?;
        Ok(i64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }
}

/// One edit with its name as bytes, unchecked: for a reader that has checked the edits with
/// [`edits`] before.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawEdit<'a> {
    /// Sets the top-level field to the raw JSON value.
    Set(&'a [u8], &'a [u8]),
    /// Removes the top-level field.
    Remove(&'a [u8]),
}

/// The edits of an edited output, in order, names unchecked. Stops at the first framing error.
pub fn raw_edits(buf: &[u8]) -> impl Iterator<Item = Result<RawEdit<'_>, FrameError>> {
    let mut reader = Reader { buf, what: "edits" };
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || reader.buf.is_empty() {
            return None;
        }
        let edit = (|| {
            let op = reader.byte()?;
            let name = reader.frame()?;
            match op {
                EDIT_SET => Ok(RawEdit::Set(name, reader.frame()?)),
                EDIT_REMOVE => Ok(RawEdit::Remove(name)),
                other => Err(reader.error(&format!("unknown edit {other}"))),
            }
        })();
        failed = edit.is_err();
        Some(edit)
    })
}

/// The edits of an edited output, in order, with names checked to be UTF-8. Stops at the
/// first framing error.
pub fn edits(buf: &[u8]) -> impl Iterator<Item = Result<Edit<'_>, FrameError>> {
    fn utf8(name: &[u8]) -> Result<&str, FrameError> {
        crate::json::text(name).ok_or_else(|| FrameError("edits: a name is not UTF-8".into()))
    }

    raw_edits(buf).map(|edit| match edit? {
        RawEdit::Set(name, raw) => Ok(Edit::Set(utf8(name)?, raw)),
        RawEdit::Remove(name) => Ok(Edit::Remove(utf8(name)?)),
    })
}

/// The changes of a call, in order. Stops at the first framing error.
pub fn changes(buf: &[u8]) -> impl Iterator<Item = Result<Change<'_>, FrameError>> {
    let mut reader = Reader {
        buf,
        what: "changes",
    };
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || reader.buf.is_empty() {
            return None;
        }
        let change = (|| {
            let op = reader.byte()?;
            let key = reader.frame()?;
            match op {
                PUT => Ok(Change::Put {
                    key,
                    name: reader.frame()?,
                    value: reader.frame()?,
                }),
                DELETE => Ok(Change::Delete {
                    key,
                    name: reader.frame()?,
                }),
                SET_TIMER => Ok(Change::SetTimer {
                    key,
                    at: reader.time()?,
                }),
                CANCEL_TIMER => Ok(Change::CancelTimer {
                    key,
                    at: reader.time()?,
                }),
                other => Err(reader.error(&format!("unknown change {other}"))),
            }
        })();
        failed = change.is_err();
        Some(change)
    })
}

/// Appends one header to a framed header buffer.
pub fn push_header(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    push_frame(buf, name.as_bytes());
    push_frame(buf, value);
}

/// Iterates over the `(name, value)` pairs of a framed header buffer. Stops at the first
/// malformed frame.
pub fn headers(buf: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    let mut reader = Reader {
        buf,
        what: "headers",
    };
    std::iter::from_fn(move || {
        let name = reader.text().ok()?;
        let value = reader.frame().ok()?;
        Some((name, value))
    })
}

/// Appends `value` in postcard to `buf`, which the caller may reuse or reserve up front
/// (postcard's own `Vec` outputs start from an empty buffer, or push byte by byte); returns
/// the buffer's length after it.
pub fn append_postcard<T: serde::Serialize + ?Sized>(
    value: &T,
    buf: &mut Vec<u8>,
) -> postcard::Result<usize> {
    postcard::serialize_with_flavor(value, AppendTo(buf))
}

/// A postcard output that appends to a buffer; it resolves to the buffer's length.
struct AppendTo<'b>(&'b mut Vec<u8>);

impl postcard::ser_flavors::Flavor for AppendTo<'_> {
    type Output = usize;

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<usize> {
        Ok(self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_and_changes_round_trip_and_refuse_truncation() {
        let mut edits_buf = Vec::new();
        push_set(&mut edits_buf, "a", |b| b.extend_from_slice(b"\"x\""));
        push_remove(&mut edits_buf, "b");
        assert_eq!(
            edits(&edits_buf).collect::<Result<Vec<_>, _>>().unwrap(),
            [Edit::Set("a", b"\"x\""), Edit::Remove("b")]
        );
        assert!(edits(&edits_buf[..edits_buf.len() - 1]).any(|e| e.is_err()));

        let all = [
            Change::Put {
                key: b"k",
                name: b"n",
                value: b"v",
            },
            Change::Delete {
                key: b"k",
                name: b"n",
            },
            Change::SetTimer { key: b"k", at: -5 },
            Change::CancelTimer { key: b"", at: 7 },
        ];
        let mut buf = Vec::new();
        for c in all {
            push_change(&mut buf, c);
        }
        assert_eq!(changes(&buf).collect::<Result<Vec<_>, _>>().unwrap(), all);
        for cut in 0..buf.len() {
            let decoded: Vec<_> = changes(&buf[..cut]).collect();
            assert!(
                decoded.iter().all(Result::is_ok) || decoded.last().is_some_and(Result::is_err)
            );
        }
        assert!(changes(&[9, 0, 0, 0, 0]).any(|c| c.is_err()));
    }

    #[test]
    fn output_parts_are_checked_against_the_data() {
        let mut result = BatchResult::default();
        let head = OutputHead {
            input: 0,
            kind: OutputKind::Route,
            text: "bots",
            key: Some(b"u1"),
            time: Some(5),
            value: ValueKind::Edited,
        };
        result.push(head, |b| push_set(b, "x", |b| b.extend_from_slice(b"1")));
        let head = OutputHead {
            input: 1,
            kind: OutputKind::Emit,
            text: "",
            key: None,
            time: None,
            value: ValueKind::Unchanged,
        };
        result.push(head, |_| {});
        let parts = result.parts(0).unwrap();
        assert_eq!((parts.text, parts.key), ("bots", Some(&b"u1"[..])));
        assert_eq!(edits(parts.value).count(), 1);
        assert_eq!(result.parts(1).unwrap().value, b"");
        result.outputs[1].end = 1;
        assert!(result.parts(1).is_err());
        result.outputs[0].text_len = 99;
        assert!(result.parts(0).is_err());
    }

    #[test]
    fn headers_round_trip() {
        let mut h = Vec::new();
        push_header(&mut h, "a", b"1");
        push_header(&mut h, "bb", b"");
        assert_eq!(
            headers(&h).collect::<Vec<_>>(),
            vec![("a", &b"1"[..]), ("bb", &b""[..])]
        );
    }
}
