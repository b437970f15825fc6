//! One pass over a record's bytes that both checks them and indexes them: the value must be
//! one JSON object (JSON's grammar, strings without raw control characters and with paired
//! surrogate escapes, numbers that fit an `f64`, nesting at most 127 deep as serde_json allows,
//! each top-level field named once), and the pass records where each top-level member's name
//! and value lie. Everything after it (key, event time, each stage's fields, the sinks'
//! columns) reads the index instead of scanning the text again. UTF-8 is checked by the caller.

use std::collections::HashSet;
use std::ops::Range;

use foldhash::fast::RandomState;

/// Deepest nesting of arrays and objects accepted, counting the record itself (serde_json's
/// recursion limit, which the decoder has always applied).
pub const MAX_DEPTH: usize = 127;

/// Where one top-level member lies in the bytes that were indexed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Member {
    /// The name as written, between its quotes (escapes not resolved).
    pub name: Span,
    /// The raw value.
    pub value: Span,
    /// Whether the name has an escape (and so may spell a name with other bytes).
    pub escaped: bool,
}

/// A byte range, 8 bytes instead of a `Range<usize>`'s 16.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Span {
    /// First byte.
    pub start: u32,
    /// Past the last byte.
    pub end: u32,
}

impl Span {
    /// A span over `range`.
    pub fn new(range: Range<usize>) -> Self {
        Span {
            start: range.start as u32,
            end: range.end as u32,
        }
    }

    /// The range, for slicing.
    pub fn range(self) -> Range<usize> {
        self.start as usize..self.end as usize
    }

    /// The span moved `by` bytes later.
    pub fn shifted(self, by: u32) -> Span {
        Span {
            start: self.start + by,
            end: self.end + by,
        }
    }

    /// Its length in bytes.
    #[inline]
    pub fn len(self) -> usize {
        (self.end - self.start) as usize
    }

    /// Whether it is empty.
    pub fn is_empty(self) -> bool {
        self.end == self.start
    }
}

/// Why bytes are not one JSON object. `Display` is the dead-letter reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Not JSON at all.
    #[error("invalid json: {0}")]
    Invalid(String),
    /// JSON, but not an object.
    #[error("not an object: the record must be a JSON object")]
    NotAnObject,
}

/// Checks that `bytes` (valid UTF-8) are one JSON object and appends its top-level members to
/// `members`, in order, with spans relative to `bytes`. On error `members` may hold a prefix.
pub fn index_object(bytes: &[u8], members: &mut Vec<Member>) -> Result<(), ParseError> {
    let mut p = Parser { b: bytes, pos: 0 };
    p.skip_ws();
    if p.peek() != Some(b'{') {
        // Rare: say whether it is JSON of another kind, or no JSON at all.
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ParseError::NotAnObject,
                Err(e) => ParseError::Invalid(e.to_string()),
            },
        );
    }
    let first = members.len();
    p.pos += 1;
    p.skip_ws();
    if p.peek() == Some(b'}') {
        p.pos += 1;
    } else {
        loop {
            p.skip_ws();
            if p.peek() != Some(b'"') {
                return Err(p.error("expected a field name"));
            }
            let name_start = p.pos + 1;
            let escaped = p.string()?;
            let name = Span::new(name_start..p.pos - 1);
            p.skip_ws();
            p.expect(b':', "expected `:` after a field name")?;
            p.skip_ws();
            let value_start = p.pos;
            p.value(2)?;
            members.push(Member {
                name,
                value: Span::new(value_start..p.pos),
                escaped,
            });
            p.skip_ws();
            match p.peek() {
                Some(b',') => p.pos += 1,
                Some(b'}') => {
                    p.pos += 1;
                    break;
                }
                _ => return Err(p.error("expected `,` or `}` after a field")),
            }
        }
    }
    p.skip_ws();
    if p.pos != bytes.len() {
        return Err(p.error("trailing characters after the object"));
    }
    check_unique(bytes, &members[first..])
}

/// Checks that `bytes` are one JSON value of any kind, valid UTF-8, nested no deeper than a
/// record's field may be (a value a stage sets on a field).
pub fn check_value(bytes: &[u8]) -> Result<(), ParseError> {
    // Most values a stage sets are plain ASCII strings or numbers: checked without the parser.
    if bytes.len() >= 2
        && bytes[0] == b'"'
        && bytes[bytes.len() - 1] == b'"'
        && bytes[1..bytes.len() - 1]
            .iter()
            .all(|b| (0x20..0x7f).contains(b) && *b != b'"' && *b != b'\\')
    {
        return Ok(());
    }
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ParseError::Invalid(format!(
            "not UTF-8 at byte {}",
            e.valid_up_to()
        )));
    }
    let mut p = Parser { b: bytes, pos: 0 };
    p.skip_ws();
    p.value(2)?;
    p.skip_ws();
    if p.pos != bytes.len() {
        return Err(p.error("trailing characters after the value"));
    }
    Ok(())
}

/// The decoded name of a member: borrowed when it has no escape.
pub fn decoded_name<'a>(bytes: &'a [u8], member: &Member) -> std::borrow::Cow<'a, str> {
    let raw = &bytes[member.name.range()];
    match std::str::from_utf8(raw) {
        Ok(text) if !raw.contains(&b'\\') => std::borrow::Cow::Borrowed(text),
        _ => {
            let mut quoted = Vec::with_capacity(raw.len() + 2);
            quoted.push(b'"');
            quoted.extend_from_slice(raw);
            quoted.push(b'"');
            std::borrow::Cow::Owned(serde_json::from_slice(&quoted).unwrap_or_default())
        }
    }
}

/// Whether a member's raw name spells `name`.
pub fn name_is(bytes: &[u8], member: &Member, name: &str) -> bool {
    name_is_bytes(bytes, member, name.as_bytes())
}

/// Whether a member's raw name spells `name` (UTF-8 text).
#[inline]
pub fn name_is_bytes(bytes: &[u8], member: &Member, name: &[u8]) -> bool {
    // Lengths first: most names a lookup passes differ in length, and slicing costs more.
    if member.name.len() == name.len() && bytes.get(member.name.range()) == Some(name) {
        return true;
    }
    // Only a name with an escape can spell `name` with other bytes.
    member.escaped && decoded_name(bytes, member).as_bytes() == name
}

/// Refuses a top-level name given twice: the host and the plugins must agree on which
/// `user_id` a record has.
fn check_unique(bytes: &[u8], members: &[Member]) -> Result<(), ParseError> {
    let duplicate = |name: &str| ParseError::Invalid(format!("duplicate field `{name}`"));
    let escaped = members.iter().any(|m| m.escaped);
    if members.len() <= 32 && !escaped {
        for (i, m) in members.iter().enumerate() {
            let raw = &bytes[m.name.range()];
            if members[..i].iter().any(|o| &bytes[o.name.range()] == raw) {
                return Err(duplicate(&decoded_name(bytes, m)));
            }
        }
        return Ok(());
    }
    // Many fields: a set, so a record with 100k fields costs linear time, not quadratic.
    let mut seen: HashSet<std::borrow::Cow<'_, str>, RandomState> =
        HashSet::with_capacity_and_hasher(members.len(), RandomState::default());
    for m in members {
        let name = decoded_name(bytes, m);
        if seen.contains(&name) {
            return Err(duplicate(&name));
        }
        seen.insert(name);
    }
    Ok(())
}

/// A cursor over the bytes being checked.
struct Parser<'a> {
    b: &'a [u8],
    pos: usize,
}

/// Bytes of a word that are `"`, `\` or below 0x20, as the high bit of each such byte; only
/// the lowest flagged byte is certain (a borrow can flag bytes above it), which is the one
/// the string scan wants.
fn special_bytes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    zero(quote) | zero(backslash) | control
}

/// Appends `text` as a JSON string literal, escaped as serde_json escapes it; text with
/// nothing to escape, the common case, is checked eight bytes at a time and copied.
pub fn write_string(out: &mut Vec<u8>, text: &str) {
    let bytes = text.as_bytes();
    let (words, tail) = bytes.as_chunks::<8>();
    let special = words.iter().fold(0, |flags, word| {
        flags | special_bytes(u64::from_le_bytes(*word))
    }) | tail.iter().fold(0, |flags, b| {
        flags | u64::from(*b < 0x20 || *b == b'"' || *b == b'\\')
    });
    let plain = special == 0;
    if plain {
        out.reserve(bytes.len() + 2);
        out.push(b'"');
        out.extend_from_slice(bytes);
        out.push(b'"');
    } else {
        let mut serializer = serde_json::Serializer::new(out);
        // Writing a string to a Vec cannot fail.
        let _ = serde::Serializer::serialize_str(&mut serializer, text);
    }
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.pos).copied()
    }

    fn error(&self, what: &str) -> ParseError {
        if self.pos >= self.b.len() {
            return ParseError::Invalid(format!("EOF while parsing: {what}"));
        }
        ParseError::Invalid(format!("{what} at byte {}", self.pos))
    }

    fn expect(&mut self, byte: u8, what: &str) -> Result<(), ParseError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(what))
        }
    }

    fn skip_ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    /// A value starting at `pos`, `depth` containers deep if it is one.
    fn value(&mut self, depth: usize) -> Result<(), ParseError> {
        match self.peek() {
            Some(b'"') => self.string().map(|_| ()),
            Some(b'{') => self.object(depth),
            Some(b'[') => self.array(depth),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(b'-' | b'0'..=b'9') => self.number(),
            _ => Err(self.error("expected a value")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), ParseError> {
        if self.b[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.error("expected a value"))
        }
    }

    fn enter(&self, depth: usize) -> Result<(), ParseError> {
        if depth > MAX_DEPTH {
            return Err(ParseError::Invalid(format!(
                "recursion limit exceeded: nesting deeper than {MAX_DEPTH} at byte {}",
                self.pos
            )));
        }
        Ok(())
    }

    fn object(&mut self, depth: usize) -> Result<(), ParseError> {
        self.enter(depth)?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b'}') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            if self.peek() != Some(b'"') {
                return Err(self.error("expected a field name"));
            }
            self.string()?;
            self.skip_ws();
            self.expect(b':', "expected `:` after a field name")?;
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b'}') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `}` in an object")),
            }
        }
    }

    fn array(&mut self, depth: usize) -> Result<(), ParseError> {
        self.enter(depth)?;
        self.pos += 1;
        self.skip_ws();
        if self.peek() == Some(b']') {
            self.pos += 1;
            return Ok(());
        }
        loop {
            self.skip_ws();
            self.value(depth + 1)?;
            self.skip_ws();
            match self.peek() {
                Some(b',') => self.pos += 1,
                Some(b']') => {
                    self.pos += 1;
                    return Ok(());
                }
                _ => return Err(self.error("expected `,` or `]` in an array")),
            }
        }
    }

    /// A string starting at its opening quote; leaves `pos` past the closing one. Returns
    /// whether it has an escape.
    fn string(&mut self) -> Result<bool, ParseError> {
        self.pos += 1;
        let mut escaped = false;
        loop {
            // Eight bytes at a time while they hold nothing special.
            while let Some(chunk) = self.b.get(self.pos..self.pos + 8) {
                let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
                let special = special_bytes(word);
                if special != 0 {
                    self.pos += (special.trailing_zeros() / 8) as usize;
                    break;
                }
                self.pos += 8;
            }
            match self.peek() {
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(escaped);
                }
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(0..0x20) => return Err(self.error("control character in a string")),
                Some(_) => self.pos += 1,
                None => return Err(self.error("unterminated string")),
            }
        }
    }

    /// An escape starting at its backslash.
    fn escape(&mut self) -> Result<(), ParseError> {
        match self.b.get(self.pos + 1) {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 2;
                Ok(())
            }
            Some(b'u') => {
                let unit = self.hex_escape()?;
                match unit {
                    0xDC00..=0xDFFF => Err(self.error("lone trailing surrogate in a hex escape")),
                    0xD800..=0xDBFF => {
                        if self.b.get(self.pos..self.pos + 2) != Some(b"\\u") {
                            return Err(self.error("unexpected end of a hex escape pair"));
                        }
                        match self.hex_escape()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err(self.error("lone leading surrogate in a hex escape")),
                        }
                    }
                    _ => Ok(()),
                }
            }
            _ => Err(self.error("invalid escape")),
        }
    }

    /// `\uXXXX` at `pos`: its code unit; leaves `pos` past it.
    fn hex_escape(&mut self) -> Result<u16, ParseError> {
        let digits = self
            .b
            .get(self.pos + 2..self.pos + 6)
            .ok_or_else(|| self.error("unterminated hex escape"))?;
        let mut unit = 0u16;
        for &d in digits {
            let v = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.error("invalid hex escape"))?;
            unit = unit << 4 | v as u16;
        }
        self.pos += 6;
        Ok(unit)
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    /// A number per JSON's grammar. Like serde_json, one whose value overflows an `f64` is
    /// refused.
    fn number(&mut self) -> Result<(), ParseError> {
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        let int_digits = match self.peek() {
            Some(b'0') => {
                self.pos += 1;
                if let Some(b'0'..=b'9') = self.peek() {
                    return Err(self.error("invalid number: leading zero"));
                }
                1
            }
            Some(b'1'..=b'9') => self.digits(),
            _ => return Err(self.error("invalid number")),
        };
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.error("invalid number: no digit after the point"));
            }
        }
        let mut exponent = false;
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.error("invalid number: no digit in the exponent"));
            }
            exponent = true;
        }
        // Only an exponent or a few hundred integer digits can overflow: check those by
        // parsing.
        if (exponent || int_digits > 300)
            && std::str::from_utf8(&self.b[start..self.pos])
                .ok()
                .and_then(|t| t.parse::<f64>().ok())
                .is_none_or(|v| !v.is_finite())
        {
            return Err(ParseError::Invalid(format!(
                "number out of range at byte {start}"
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index(text: &str) -> Result<Vec<(String, String)>, ParseError> {
        let mut members = Vec::new();
        index_object(text.as_bytes(), &mut members)?;
        Ok(members
            .iter()
            .map(|m| {
                (
                    text[m.name.range()].to_string(),
                    text[m.value.range()].to_string(),
                )
            })
            .collect())
    }

    /// What serde_json (the decoder's rules before this parser) says of the same bytes.
    fn serde_accepts(text: &[u8]) -> bool {
        match serde_json::from_slice::<serde_json::Value>(text) {
            Ok(serde_json::Value::Object(map)) => {
                // serde_json keeps the last of a repeated name; count them to see repeats.
                let mut count = 0;
                let mut de = serde_json::Deserializer::from_slice(text);
                let counted: Result<serde::de::IgnoredAny, _> =
                    serde::Deserializer::deserialize_map(&mut de, CountFields(&mut count));
                counted.is_ok() && count == map.len()
            }
            _ => false,
        }
    }

    struct CountFields<'a>(&'a mut usize);

    impl<'de> serde::de::Visitor<'de> for CountFields<'_> {
        type Value = serde::de::IgnoredAny;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("an object")
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(
            self,
            mut map: A,
        ) -> Result<Self::Value, A::Error> {
            while map.next_entry::<String, serde::de::IgnoredAny>()?.is_some() {
                *self.0 += 1;
            }
            Ok(serde::de::IgnoredAny)
        }
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        for text in [
            "",
            "plain",
            "exactly8",
            "a longer plain text past two words",
            "quote \" in the second word",
            "back\\slash",
            "tab\tand\u{1}control",
            "unicode é ✓ past eight bytes",
            "ends with a quote\"",
        ] {
            let mut ours = Vec::new();
            write_string(&mut ours, text);
            assert_eq!(ours, serde_json::to_vec(text).unwrap(), "{text:?}");
        }
    }

    #[test]
    fn indexes_top_level_members_with_raw_names_and_values() {
        let members =
            index(r#" { "a" : 1, "b\"c": {"x": [1, "}"]}, "d": "e\\f", "n": null } "#).unwrap();
        assert_eq!(
            members,
            [
                ("a".into(), "1".into()),
                ("b\\\"c".into(), r#"{"x": [1, "}"]}"#.into()),
                ("d".into(), r#""e\\f""#.into()),
                ("n".into(), "null".into()),
            ]
        );
        assert_eq!(index("{}").unwrap(), []);
    }

    #[test]
    fn refuses_what_serde_json_refuses() {
        let cases = [
            "",
            "{",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{\"a\":01}",
            "{\"a\":1.}",
            "{\"a\":1e}",
            "{\"a\":-}",
            "{\"a\":1e400}",
            "{\"a\":tru}",
            "{\"a\":\"\u{1}\"}",
            "{\"a\":\"\\x\"}",
            "{\"a\":\"\\ud800\"}",
            "{\"a\":\"\\udc00\"}",
            "{\"a\":\"\\ud800\\u0041\"}",
            "{\"a\":[1,]}",
            "{\"a\":1} x",
            "{\"a\":1}\u{c}",
            "{\"a\":1,\"a\":2}",
            "{\"a\\u0062\":1,\"ab\":2}",
        ];
        for case in cases {
            assert!(index(case).is_err(), "{case:?} was accepted");
            assert!(!serde_accepts(case.as_bytes()), "{case:?} serde disagrees");
        }
        assert_eq!(index("[1]"), Err(ParseError::NotAnObject));
        assert_eq!(index("\"x\""), Err(ParseError::NotAnObject));
    }

    #[test]
    fn accepts_what_serde_json_accepts() {
        let cases = [
            "{\"a\":\"\\ud83d\\ude00\",\"b\":-0.5e-3,\"c\":[true,false,null,{}],\"d\":\"é\\/\"}",
            "{\"a\":12345678901234567890123}",
            "{\"a\":1e-400}",
            "\t{\"a\":{\"a\":1,\"a\":2}}\r\n",
        ];
        for case in cases {
            assert!(index(case).is_ok(), "{case:?} was refused");
            assert!(serde_accepts(case.as_bytes()), "{case:?} serde disagrees");
        }
    }

    #[test]
    fn nesting_limit_matches_serde_json() {
        for depth in 120..135 {
            let text = format!(
                "{{\"a\":{}1{}}}",
                "[".repeat(depth - 1),
                "]".repeat(depth - 1)
            );
            assert_eq!(
                index(&text).is_ok(),
                serde_accepts(text.as_bytes()),
                "depth {depth}"
            );
        }
    }

    #[test]
    fn many_fields_are_checked_for_repeats_in_linear_time() {
        let mut text = String::from("{");
        for i in 0..50_000 {
            text.push_str(&format!("\"f{i}\":{i},"));
        }
        text.push_str("\"f7\":1}");
        assert!(
            matches!(index(&text), Err(ParseError::Invalid(r)) if r.contains("duplicate field `f7`"))
        );
    }

    #[test]
    fn strings_with_every_kind_of_byte_agree_with_serde_json() {
        // Each byte value at each position of an 8-byte word, alone and next to escapes.
        for byte in 0u8..=0x7f {
            for at in 0..10 {
                let mut value = vec![b'a'; at];
                value.push(byte);
                value.extend_from_slice(b"bcdefgh");
                let mut text = b"{\"k\":\"".to_vec();
                text.extend_from_slice(&value);
                text.extend_from_slice(b"\"}");
                let ours = index_object(&text, &mut Vec::new()).is_ok();
                assert_eq!(ours, serde_accepts(&text), "byte {byte:#x} at {at}");
            }
        }
    }
}
