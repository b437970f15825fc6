//! Plain Rust mirrors of the WIT batch types, shared by the guest glue, the native test harness
//! and the host, so the same batch code runs inside and outside Wasm.

/// A batch of records in columnar form (see `wit/transform.wit`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Batch {
    /// Every record's value, back to back.
    pub values: Vec<u8>,
    /// End offset of each value.
    pub value_ends: Vec<u32>,
    /// Every record's key, back to back.
    pub keys: Vec<u8>,
    /// End offset of each key.
    pub key_ends: Vec<u32>,
    /// Event time of each record (ms since the epoch).
    pub times: Vec<i64>,
    /// Every record's framed headers, back to back.
    pub headers: Vec<u8>,
    /// End offset of each record's headers.
    pub header_ends: Vec<u32>,
}

/// Where an output goes.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum OutputKind {
    /// To the next stage (or route `main` after the last one).
    Emit,
    /// To the named route, skipping later stages.
    Route(String),
    /// To the dead-letter output with a reason.
    DeadLetter(String),
}

/// One output and the input it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// Index of the input record (0 for timer outputs).
    pub input: u32,
    /// Where it goes.
    pub kind: OutputKind,
}

/// The outputs of one call; output `i`'s value is slice `i` of `values`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchResult {
    /// One entry per output.
    pub outputs: Vec<Output>,
    /// Every output's value, back to back.
    pub values: Vec<u8>,
    /// End offset of each output's value.
    pub value_ends: Vec<u32>,
}

/// Slice `i` of a buffer whose segments end at `ends`.
pub fn segment<'a>(buf: &'a [u8], ends: &[u32], i: usize) -> &'a [u8] {
    let start = if i == 0 { 0 } else { ends[i - 1] as usize };
    &buf[start..ends[i] as usize]
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

    /// Appends a record. `headers` is already framed (see [`push_header`]).
    pub fn push(&mut self, key: &[u8], value: &[u8], time: i64, headers: &[u8]) {
        self.values.extend_from_slice(value);
        self.value_ends.push(end_offset(&self.values));
        self.keys.extend_from_slice(key);
        self.key_ends.push(end_offset(&self.keys));
        self.times.push(time);
        self.headers.extend_from_slice(headers);
        self.header_ends.push(end_offset(&self.headers));
    }

    /// Value of record `i`.
    pub fn value(&self, i: usize) -> &[u8] {
        segment(&self.values, &self.value_ends, i)
    }

    /// Key of record `i`.
    pub fn key(&self, i: usize) -> &[u8] {
        segment(&self.keys, &self.key_ends, i)
    }

    /// Framed headers of record `i`.
    pub fn headers(&self, i: usize) -> &[u8] {
        segment(&self.headers, &self.header_ends, i)
    }

    /// Removes every record, keeping the allocations.
    pub fn clear(&mut self) {
        self.values.clear();
        self.value_ends.clear();
        self.keys.clear();
        self.key_ends.clear();
        self.times.clear();
        self.headers.clear();
        self.header_ends.clear();
    }
}

impl BatchResult {
    /// Appends an output.
    pub fn push(&mut self, input: u32, kind: OutputKind, value: &[u8]) {
        self.outputs.push(Output { input, kind });
        self.values.extend_from_slice(value);
        self.value_ends.push(end_offset(&self.values));
    }

    /// Value of output `i`.
    pub fn value(&self, i: usize) -> &[u8] {
        segment(&self.values, &self.value_ends, i)
    }

    /// Iterates over outputs with their values.
    pub fn iter(&self) -> impl Iterator<Item = (&Output, &[u8])> {
        self.outputs
            .iter()
            .enumerate()
            .map(|(i, o)| (o, self.value(i)))
    }
}

/// Appends one header to a framed header buffer.
pub fn push_header(buf: &mut Vec<u8>, name: &str, value: &[u8]) {
    buf.extend_from_slice(&end_offset(name.as_bytes()).to_le_bytes());
    buf.extend_from_slice(name.as_bytes());
    buf.extend_from_slice(&end_offset(value).to_le_bytes());
    buf.extend_from_slice(value);
}

/// Iterates over the `(name, value)` pairs of a framed header buffer. Stops at the first
/// malformed frame.
pub fn headers(mut buf: &[u8]) -> impl Iterator<Item = (&str, &[u8])> {
    std::iter::from_fn(move || {
        let name = take_frame(&mut buf)?;
        let value = take_frame(&mut buf)?;
        Some((std::str::from_utf8(name).ok()?, value))
    })
}

fn take_frame<'a>(buf: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = u32::from_le_bytes(buf.get(..4)?.try_into().ok()?) as usize;
    let frame = buf.get(4..4 + len)?;
    *buf = &buf[4 + len..];
    Some(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips_records_and_headers() {
        let mut h = Vec::new();
        push_header(&mut h, "a", b"1");
        push_header(&mut h, "bb", b"");
        let mut b = Batch::default();
        b.push(b"k1", b"{}", 5, &h);
        b.push(b"", b"{\"x\":1}", -1, &[]);
        assert_eq!(b.len(), 2);
        assert_eq!(b.key(0), b"k1");
        assert_eq!(b.value(1), b"{\"x\":1}");
        assert_eq!(
            headers(b.headers(0)).collect::<Vec<_>>(),
            vec![("a", &b"1"[..]), ("bb", &b""[..])]
        );
        assert_eq!(headers(b.headers(1)).count(), 0);
    }
}
