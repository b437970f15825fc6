//! Cheap access to fields of a JSON object without parsing all of it.
//!
//! The host validates every record as a JSON object before the first stage, so these functions
//! assume well-formed input: they scan the top level of the object, skip nested values without
//! building them, and splice bytes to set or remove a member. Reading one field of a 200-byte
//! event costs a scan, not a parse and re-serialization of the whole event.

use std::borrow::Cow;
use std::ops::Range;

/// Where one member of an object lies in its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// Offset of the opening quote of the member's key.
    pub key_start: usize,
    /// The member's raw value.
    pub value: Range<usize>,
}

/// The top-level members of the JSON object `obj`, in order, with each raw key (between its
/// quotes). Stops at the end of the object or at the first malformed member.
fn members(obj: &[u8]) -> impl Iterator<Item = (&[u8], Member)> {
    let mut pos = skip_ws(obj, 0);
    let mut done = obj.get(pos) != Some(&b'{');
    pos += 1;
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let member = next_member(obj, &mut pos);
        done = member.is_none();
        member
    })
}

/// Reads the member at `pos` (skipping a leading comma) and moves `pos` past its value.
fn next_member<'a>(obj: &'a [u8], pos: &mut usize) -> Option<(&'a [u8], Member)> {
    *pos = skip_ws(obj, *pos);
    if obj.get(*pos) == Some(&b',') {
        *pos = skip_ws(obj, *pos + 1);
    }
    if obj.get(*pos) != Some(&b'"') {
        return None;
    }
    let key_start = *pos;
    let key_end = skip_string(obj, key_start)?;
    let colon = skip_ws(obj, key_end);
    if obj.get(colon) != Some(&b':') {
        return None;
    }
    let value_start = skip_ws(obj, colon + 1);
    let value_end = skip_value(obj, value_start)?;
    *pos = value_end;
    let member = Member {
        key_start,
        value: value_start..value_end,
    };
    Some((&obj[key_start + 1..key_end - 1], member))
}

/// Finds the top-level member `field` of the JSON object `obj`.
pub fn find_member(obj: &[u8], field: &str) -> Option<Member> {
    members(obj)
        .find(|(key, _)| key_matches(key, field))
        .map(|(_, member)| member)
}

/// The raw bytes of the value at `path`, where `path` is a field name or a dotted path into
/// nested objects (`"context.ip"`). A field whose name itself contains a dot is found first.
pub fn find_raw<'a>(obj: &'a [u8], path: &str) -> Option<&'a [u8]> {
    if let Some(member) = find_member(obj, path) {
        return Some(&obj[member.value]);
    }
    let (head, rest) = path.split_once('.')?;
    let inner = &obj[find_member(obj, head)?.value];
    find_raw(inner, rest)
}

/// The value at `path` if it is a JSON string, unescaped.
pub fn get_str<'a>(obj: &'a [u8], path: &str) -> Option<Cow<'a, str>> {
    decode_string(find_raw(obj, path)?)
}

/// The value at `path` if it is a JSON number that fits an `i64`.
pub fn get_i64(obj: &[u8], path: &str) -> Option<i64> {
    std::str::from_utf8(find_raw(obj, path)?).ok()?.parse().ok()
}

/// The value at `path` if it is a JSON number.
pub fn get_f64(obj: &[u8], path: &str) -> Option<f64> {
    number(find_raw(obj, path)?)
}

/// A raw JSON value as a number, if it is one.
pub fn number(raw: &[u8]) -> Option<f64> {
    if raw
        .first()
        .is_some_and(|b| *b == b'-' || b.is_ascii_digit())
    {
        std::str::from_utf8(raw).ok()?.parse().ok()
    } else {
        None
    }
}

/// Appends `n` as a JSON number.
pub fn push_i64(out: &mut Vec<u8>, n: i64) {
    use std::io::Write;
    // Writing into a Vec cannot fail.
    let _ = write!(out, "{n}");
}

/// Appends `x` as a JSON number; a non-finite number (which JSON cannot hold) as `null`.
pub fn push_f64(out: &mut Vec<u8>, x: f64) {
    use std::io::Write;
    if x.is_finite() {
        // Writing into a Vec cannot fail.
        let _ = write!(out, "{x}");
    } else {
        out.extend_from_slice(b"null");
    }
}

/// The value at `path` if it is a JSON boolean.
pub fn get_bool(obj: &[u8], path: &str) -> Option<bool> {
    match find_raw(obj, path)? {
        b"true" => Some(true),
        b"false" => Some(false),
        _ => None,
    }
}

/// Which of `fields` are top-level members of `obj`, in one pass over it.
pub fn present(obj: &[u8], fields: &[impl AsRef<str>]) -> Vec<bool> {
    let mut found = vec![false; fields.len()];
    for (key, _) in members(obj) {
        for (seen, field) in found.iter_mut().zip(fields) {
            *seen |= key_matches(key, field.as_ref());
        }
    }
    found
}

/// Sets the top-level member `field` of `obj` to the raw JSON `value`, replacing the old value
/// or appending the member. `obj` must be a JSON object; anything else is left unchanged.
pub fn set_raw(obj: &mut Vec<u8>, field: &str, value: &[u8]) {
    if let Some(member) = find_member(obj, field) {
        obj.splice(member.value, value.iter().copied());
        return;
    }
    append_raw(obj, field, value);
}

/// Appends the member `field` with the raw JSON `value` without looking for an existing one:
/// the caller knows the object does not have it (see [`present`]). Costs a search for the
/// closing brace from the end, not a scan of the object.
pub fn append_raw(obj: &mut Vec<u8>, field: &str, value: &[u8]) {
    let Some(close) = obj.iter().rposition(|b| *b == b'}') else {
        return;
    };
    let empty = obj[..close].iter().rev().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    let mut member = Vec::with_capacity(field.len() + value.len() + 4);
    if !empty {
        member.push(b',');
    }
    push_str(&mut member, field);
    member.push(b':');
    member.extend_from_slice(value);
    obj.splice(close..close, member);
}

/// Removes the top-level member `field` from `obj`. Returns whether it was there.
pub fn remove(obj: &mut Vec<u8>, field: &str) -> bool {
    let Some(member) = find_member(obj, field) else {
        return false;
    };
    let mut start = member.key_start;
    let mut end = member.value.end;
    let after = skip_ws(obj, end);
    if obj.get(after) == Some(&b',') {
        end = after + 1;
    } else if let Some(comma) = obj[..start].iter().rposition(|b| !b.is_ascii_whitespace())
        && obj[comma] == b','
    {
        start = comma;
    }
    obj.drain(start..end);
    true
}

/// Appends `s` to `out` as a JSON string literal.
pub fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    push_escaped(out, s.as_bytes());
    out.push(b'"');
}

/// Appends the UTF-8 text `bytes` escaped as the inside of a JSON string literal.
pub fn push_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    let needs_escape = |b: &u8| *b < 0x20 || *b == b'"' || *b == b'\\';
    // Most text needs no escape: one check, one copy.
    let Some(first) = bytes.iter().position(needs_escape) else {
        out.extend_from_slice(bytes);
        return;
    };
    out.extend_from_slice(&bytes[..first]);
    let mut run_start = first;
    for (i, &b) in bytes.iter().enumerate().skip(first) {
        let escape: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[run_start..i]);
        if escape.is_empty() {
            out.extend_from_slice(format!("\\u{b:04x}").as_bytes());
        } else {
            out.extend_from_slice(escape);
        }
        run_start = i + 1;
    }
    out.extend_from_slice(&bytes[run_start..]);
}

/// `bytes` as text, if they are UTF-8. ASCII, the common case, is checked word by word; the
/// general check costs several times more on the short texts of JSON fields.
pub fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.is_ascii() {
        // SAFETY: ASCII is valid UTF-8.
        return Some(unsafe { std::str::from_utf8_unchecked(bytes) });
    }
    std::str::from_utf8(bytes).ok()
}

/// Decodes a raw JSON string literal (with its quotes). Borrows when there is no escape.
pub fn decode_string(raw: &[u8]) -> Option<Cow<'_, str>> {
    let inner = raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?;
    if !inner.contains(&b'\\') {
        return text(inner).map(Cow::Borrowed);
    }
    serde_json::from_slice::<String>(raw).ok().map(Cow::Owned)
}

fn key_matches(raw_key: &[u8], field: &str) -> bool {
    if raw_key == field.as_bytes() {
        return true;
    }
    // Only a key with an escape can spell `field` with different bytes; most keys have none.
    if !raw_key.contains(&b'\\') {
        return false;
    }
    let mut quoted = Vec::with_capacity(raw_key.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw_key);
    quoted.push(b'"');
    decode_string(&quoted).is_some_and(|k| k == field)
}

fn skip_ws(buf: &[u8], mut pos: usize) -> usize {
    while buf.get(pos).is_some_and(u8::is_ascii_whitespace) {
        pos += 1;
    }
    pos
}

/// Returns the offset just past the string literal that starts at `pos`.
fn skip_string(buf: &[u8], pos: usize) -> Option<usize> {
    let mut i = pos + 1;
    // Keys and most values are short: a plain loop beats setting up a vector search.
    let short_end = buf.len().min(i + 24);
    while i < short_end {
        match buf[i] {
            b'"' => return Some(i + 1),
            b'\\' => i += 2,
            _ => i += 1,
        }
    }
    loop {
        // Jump to the next quote or backslash instead of looking at every byte.
        i += memchr::memchr2(b'"', b'\\', buf.get(i..)?)?;
        if buf[i] == b'"' {
            return Some(i + 1);
        }
        i += 2;
    }
}

/// Returns the offset just past the value that starts at `pos`.
fn skip_value(buf: &[u8], pos: usize) -> Option<usize> {
    match buf.get(pos)? {
        b'"' => skip_string(buf, pos),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = pos;
            while i < buf.len() {
                match buf[i] {
                    b'"' => {
                        i = skip_string(buf, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
            None
        }
        _ => {
            let len = buf[pos..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                .unwrap_or(buf.len() - pos);
            Some(pos + len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENT: &[u8] = br#" { "user_id" : "u1", "n": -12, "ctx": {"ip": "1.2.3.4", "x": [1, {"y": "}"}]}, "esc\"k": "a\"b", "ok": true, "f": 1.5e2 } "#;

    #[test]
    fn reads_top_level_nested_and_escaped_fields() {
        assert_eq!(get_str(EVENT, "user_id").as_deref(), Some("u1"));
        assert_eq!(get_i64(EVENT, "n"), Some(-12));
        assert_eq!(get_str(EVENT, "ctx.ip").as_deref(), Some("1.2.3.4"));
        assert_eq!(get_str(EVENT, "esc\"k").as_deref(), Some("a\"b"));
        assert_eq!(get_bool(EVENT, "ok"), Some(true));
        assert_eq!(get_f64(EVENT, "f"), Some(150.0));
        assert_eq!(get_str(EVENT, "missing"), None);
        assert_eq!(get_str(EVENT, "n"), None);
        assert_eq!(get_i64(EVENT, "user_id"), None);
    }

    #[test]
    fn present_finds_members_in_one_pass_and_append_adds_them() {
        assert_eq!(
            present(EVENT, &["ok", "ip", "n", "esc\"k"]),
            [true, false, true, true]
        );
        let mut obj = br#"{"a":1}"#.to_vec();
        append_raw(&mut obj, "b", b"[2]");
        let mut empty = b"{}".to_vec();
        append_raw(&mut empty, "c", b"null");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&obj).unwrap(),
            serde_json::json!({"a": 1, "b": [2]})
        );
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&empty).unwrap(),
            serde_json::json!({"c": null})
        );
    }

    #[test]
    fn set_replaces_or_appends_and_stays_valid_json() {
        let mut obj = EVENT.to_vec();
        set_raw(&mut obj, "n", b"7");
        set_raw(&mut obj, "new", b"\"v\"");
        let parsed: serde_json::Value = serde_json::from_slice(&obj).unwrap();
        assert_eq!(parsed["n"], 7);
        assert_eq!(parsed["new"], "v");
        assert_eq!(parsed["ctx"]["x"][1]["y"], "}");

        let mut empty = b"{ }".to_vec();
        set_raw(&mut empty, "a", b"1");
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&empty).unwrap()["a"],
            1
        );
    }

    #[test]
    fn remove_handles_first_middle_last_and_only_member() {
        for field in ["user_id", "ctx", "f"] {
            let mut obj = EVENT.to_vec();
            assert!(remove(&mut obj, field));
            let parsed: serde_json::Value = serde_json::from_slice(&obj).unwrap();
            assert!(parsed.get(field).is_none(), "{field}");
            assert_eq!(parsed.as_object().unwrap().len(), 5);
        }
        let mut only = br#"{"a": 1}"#.to_vec();
        assert!(remove(&mut only, "a"));
        assert_eq!(
            serde_json::from_slice::<serde_json::Value>(&only).unwrap(),
            serde_json::json!({})
        );
        assert!(!remove(&mut only, "a"));
    }

    #[test]
    fn push_str_escapes_like_serde_json() {
        for s in ["plain", "quote\"back\\slash", "nl\n\ttab\u{1}", "ünï😀"] {
            let mut out = Vec::new();
            push_str(&mut out, s);
            assert_eq!(serde_json::from_slice::<String>(&out).unwrap(), s);
        }
    }
}
