//! The host's own view of the events in flight: every record is parsed once ([`parse`]) into
//! an index of its top-level members, held in an [`EventArena`] with the bytes they point
//! into. Stages read fields through the index, their edits rewrite the index (never the
//! text), and an event is written out as JSON once, at its sink, or handed to a sink as
//! columns without being written at all.

pub mod parse;

use weir_sdk::abi::{self, FrameError, RawEdit};
use weir_sdk::json;

pub use parse::{Member, ParseError, Span};

/// The bytes and member indexes of a batch's events, appended to as records are read and
/// stages edit them; cleared once the batch has reached its sinks.
#[derive(Debug, Default)]
pub struct EventArena {
    bytes: Vec<u8>,
    members: Vec<Member>,
}

/// How a writer handed to [`EventArena::write_object`] left the object it wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    /// Its top-level members are indexed, each name once (the writer knows the text is one
    /// valid JSON object in UTF-8, nested at most [`parse::MAX_DEPTH`] deep).
    Indexed,
    /// It is text still to be checked and indexed.
    Text,
}

/// One event in an [`EventArena`]: where its members and key are, and its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventRef {
    /// Its members: a range of the arena's member list.
    pub members: Span,
    /// Its key, in the arena's bytes.
    pub key: Span,
    /// Event time, ms.
    pub time: i64,
    /// The value exactly as it was read, in the arena's bytes, while edits have only added
    /// members (the last `appended` of `members`): written out as it came, with the added
    /// members spliced in before its closing brace.
    pub verbatim: Option<Span>,
    /// How many of the last members are not in the verbatim text.
    pub appended: u32,
}

/// A mark to roll an arena back to (a record that failed to decode).
#[derive(Debug, Clone, Copy)]
pub struct ArenaMark {
    bytes: usize,
    members: usize,
}

impl EventArena {
    /// Forgets every event, keeping the allocations.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.members.clear();
    }

    /// The current end, to [`Self::truncate`] back to.
    pub fn mark(&self) -> ArenaMark {
        ArenaMark {
            bytes: self.bytes.len(),
            members: self.members.len(),
        }
    }

    /// Drops everything appended since `mark`.
    pub fn truncate(&mut self, mark: ArenaMark) {
        self.bytes.truncate(mark.bytes);
        self.members.truncate(mark.members);
    }

    /// The arena's bytes (member spans index them).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The members of `event`.
    pub fn members(&self, event: &EventRef) -> &[Member] {
        self.members_in(event.members)
    }

    /// The members in `span` of the member list.
    pub fn members_in(&self, span: Span) -> &[Member] {
        &self.members[span.range()]
    }

    /// The key of `event`.
    pub fn key(&self, event: &EventRef) -> &[u8] {
        &self.bytes[event.key.range()]
    }

    fn push_bytes(&mut self, bytes: &[u8]) -> Span {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(bytes);
        Span::new(start..self.bytes.len())
    }

    /// Checks and indexes `value` (a JSON object in UTF-8) and appends it; returns the span
    /// of its members and of its bytes. On error nothing is appended.
    pub fn push_object(&mut self, value: &[u8]) -> Result<(Span, Span), ParseError> {
        self.write_object(|bytes, _| {
            bytes.extend_from_slice(value);
            Ok(Written::Text)
        })
    }

    /// Appends the JSON object `write` appends to the arena's bytes. A writer that indexes
    /// the object's top-level members as it writes them pushes them (spans in the arena's
    /// bytes) and says [`Written::Indexed`]; else the text is checked and indexed here. Returns
    /// the span of its members and of its bytes; on error nothing is appended.
    pub fn write_object<E: From<ParseError>>(
        &mut self,
        write: impl FnOnce(&mut Vec<u8>, &mut Vec<Member>) -> Result<Written, E>,
    ) -> Result<(Span, Span), E> {
        let mark = self.mark();
        let written = write(&mut self.bytes, &mut self.members).and_then(|written| {
            if written == Written::Text {
                self.members.truncate(mark.members);
                self.index_text(mark.bytes)?;
            }
            Ok(())
        });
        if let Err(e) = written {
            self.truncate(mark);
            return Err(e);
        }
        Ok((
            Span::new(mark.members..self.members.len()),
            Span::new(mark.bytes..self.bytes.len()),
        ))
    }

    /// Checks the bytes from `start` on (UTF-8, one JSON object) and indexes their members.
    fn index_text(&mut self, start: usize) -> Result<(), ParseError> {
        let text = &self.bytes[start..];
        if !text.is_ascii()
            && let Err(e) = std::str::from_utf8(text)
        {
            return Err(ParseError::Invalid(format!(
                "not UTF-8 at byte {}",
                e.valid_up_to()
            )));
        }
        let first = self.members.len();
        parse::index_object(text, &mut self.members)?;
        let at = start as u32;
        for member in &mut self.members[first..] {
            member.name = member.name.shifted(at);
            member.value = member.value.shifted(at);
        }
        Ok(())
    }

    /// Appends `key` for an event.
    pub fn push_key(&mut self, key: &[u8]) -> Span {
        self.push_bytes(key)
    }

    /// Where the raw value of the top-level field `name` of `event` is in the arena's bytes.
    pub fn field_span(&self, event: &EventRef, name: &str) -> Option<Span> {
        self.members(event)
            .iter()
            .find(|m| parse::name_is(&self.bytes, m, name))
            .map(|m| m.value)
    }

    /// The raw value of the top-level field `name` of `event`.
    pub fn field(&self, event: &EventRef, name: &str) -> Option<&[u8]> {
        field_in(&self.bytes, self.members(event), name)
    }

    /// The raw value at `path`: a top-level field, or a dotted path into nested objects (a
    /// field whose name itself contains the dot is found first).
    pub fn path(&self, event: &EventRef, path: &str) -> Option<&[u8]> {
        if let Some(raw) = self.field(event, path) {
            return Some(raw);
        }
        let (head, rest) = path.split_once('.')?;
        json::find_raw(self.field(event, head)?, rest)
    }

    /// A copy of `event` with `edits` applied (edits the caller has checked: UTF-8 names,
    /// JSON values). Edits that only add members keep the event's verbatim text.
    pub fn edited(&mut self, event: &EventRef, edits: &[u8]) -> Result<EventRef, FrameError> {
        let first = self.members.len();
        self.members.extend_from_within(event.members.range());
        // Members before this one are in the verbatim text: changing one needs a rewrite.
        let mut original = event.members.len() - event.appended as usize;
        let mut verbatim = event.verbatim;
        for edit in abi::raw_edits(edits) {
            match edit? {
                RawEdit::Set(name, raw) => {
                    let value = self.push_bytes(raw);
                    let bytes = &self.bytes;
                    match self.members[first..]
                        .iter()
                        .position(|m| parse::name_is_bytes(bytes, m, name))
                    {
                        Some(at) => {
                            self.members[first + at].value = value;
                            if at < original {
                                verbatim = None;
                            }
                        }
                        None => {
                            // The name is kept as written in JSON: escaped, without quotes.
                            let start = self.bytes.len();
                            json::push_escaped(&mut self.bytes, name);
                            let name = Span::new(start..self.bytes.len());
                            let escaped = self.bytes[start..].contains(&b'\\');
                            self.members.push(Member {
                                name,
                                value,
                                escaped,
                            });
                        }
                    }
                }
                RawEdit::Remove(name) => {
                    let bytes = &self.bytes;
                    if let Some(at) = self.members[first..]
                        .iter()
                        .position(|m| parse::name_is_bytes(bytes, m, name))
                    {
                        self.members.remove(first + at);
                        if at < original {
                            verbatim = None;
                            original -= 1;
                        }
                    }
                }
            }
        }
        let members = Span::new(first..self.members.len());
        Ok(EventRef {
            members,
            verbatim,
            appended: match verbatim {
                Some(_) => (members.len() - original) as u32,
                None => 0,
            },
            ..*event
        })
    }

    /// Writes `event` as a JSON object to `out`; when `index` is given, appends where each
    /// member landed in `out` to it.
    pub fn write_json(&self, event: &EventRef, out: &mut Vec<u8>, index: Option<&mut Vec<Member>>) {
        let members = self.members(event);
        let Some(verbatim) = event.verbatim else {
            self.write_members(members, out, index);
            return;
        };
        let text = &self.bytes[verbatim.range()];
        let (original, added) = members.split_at(members.len() - event.appended as usize);
        // The verbatim text up to its closing brace, then the added members.
        let close = match added {
            [] => text.len(),
            _ => text.iter().rposition(|b| *b == b'}').unwrap_or(text.len()),
        };
        let base = out.len() as u32;
        out.extend_from_slice(&text[..close]);
        let mut index = index;
        if let Some(index) = index.as_deref_mut() {
            // Original spans lie inside the verbatim span: move them to where it landed.
            let moved = |s: Span| Span {
                start: s.start - verbatim.start + base,
                end: s.end - verbatim.start + base,
            };
            index.extend(original.iter().map(|m| Member {
                name: moved(m.name),
                value: moved(m.value),
                escaped: m.escaped,
            }));
        }
        if added.is_empty() {
            return;
        }
        for (i, member) in added.iter().enumerate() {
            if i > 0 || !original.is_empty() {
                out.push(b',');
            }
            self.write_member(member, out, index.as_deref_mut());
        }
        out.push(b'}');
    }

    /// Writes `members` as a JSON object.
    fn write_members(
        &self,
        members: &[Member],
        out: &mut Vec<u8>,
        mut index: Option<&mut Vec<Member>>,
    ) {
        out.reserve(
            members
                .iter()
                .map(|m| m.name.len() + m.value.len() + 4)
                .sum::<usize>()
                + 2,
        );
        out.push(b'{');
        for (i, member) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            self.write_member(member, out, index.as_deref_mut());
        }
        out.push(b'}');
    }

    /// Writes one `"name":value`.
    fn write_member(&self, member: &Member, out: &mut Vec<u8>, index: Option<&mut Vec<Member>>) {
        out.push(b'"');
        let name_start = out.len();
        out.extend_from_slice(&self.bytes[member.name.range()]);
        let name = Span::new(name_start..out.len());
        out.extend_from_slice(b"\":");
        let value_start = out.len();
        out.extend_from_slice(&self.bytes[member.value.range()]);
        if let Some(index) = index {
            index.push(Member {
                name,
                value: Span::new(value_start..out.len()),
                escaped: member.escaped,
            });
        }
    }

    /// `event` as a JSON object.
    pub fn to_json(&self, event: &EventRef) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(event, &mut out, None);
        out
    }
}

/// The raw value of the member `name` among `members` (spans into `bytes`).
pub fn field_in<'a>(bytes: &'a [u8], members: &[Member], name: &str) -> Option<&'a [u8]> {
    members
        .iter()
        .find(|m| parse::name_is(bytes, m, name))
        .map(|m| &bytes[m.value.range()])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(arena: &mut EventArena, value: &str) -> EventRef {
        let (members, bytes) = arena.push_object(value.as_bytes()).unwrap();
        let key = arena.push_key(b"k");
        EventRef {
            members,
            key,
            time: 5,
            verbatim: Some(bytes),
            appended: 0,
        }
    }

    fn edits(list: &[(&str, Option<&str>)]) -> Vec<u8> {
        let mut buf = Vec::new();
        for (name, value) in list {
            match value {
                Some(v) => abi::push_set(&mut buf, name, |b| b.extend_from_slice(v.as_bytes())),
                None => abi::push_remove(&mut buf, name),
            }
        }
        buf
    }

    #[test]
    fn unchanged_events_are_written_as_read_and_edited_ones_compactly() {
        let mut arena = EventArena::default();
        let text = r#"{ "a": 1, "b": {"x": [2]}, "c\"q": "s" }"#;
        let e = event(&mut arena, text);
        assert_eq!(arena.to_json(&e), text.as_bytes());
        assert_eq!(arena.path(&e, "b.x"), Some(&b"[2]"[..]));
        assert_eq!(arena.field(&e, "c\"q"), Some(&b"\"s\""[..]));

        let changed = arena
            .edited(
                &e,
                &edits(&[("a", Some("7")), ("new \"one\"", Some("true")), ("b", None)]),
            )
            .unwrap();
        let json = arena.to_json(&changed);
        let parsed: serde_json::Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            parsed,
            serde_json::json!({"a": 7, "c\"q": "s", "new \"one\"": true})
        );
        assert_eq!(arena.field(&changed, "new \"one\""), Some(&b"true"[..]));
        assert_eq!(arena.to_json(&e), text.as_bytes(), "the input is unchanged");
        let added = arena
            .edited(
                &e,
                &edits(&[("x", Some("1")), ("y", Some("2")), ("x", Some("3"))]),
            )
            .unwrap();
        let parsed: serde_json::Value = serde_json::from_slice(&arena.to_json(&added)).unwrap();
        assert_eq!(parsed["x"], 3);
        assert_eq!(parsed["y"], 2);
        assert_eq!(parsed["b"]["x"][0], 2);
        let mut empty = EventArena::default();
        let e = event(&mut empty, "{ }");
        let added = empty.edited(&e, &edits(&[("k", Some("\"v\""))])).unwrap();
        assert_eq!(empty.to_json(&added), br#"{ "k":"v"}"#);
    }

    #[test]
    fn the_index_written_with_the_json_points_at_its_members() {
        let mut arena = EventArena::default();
        let e = event(&mut arena, r#"{"a":"x","b":2}"#);
        let changed = arena.edited(&e, &edits(&[("c", Some("[1]"))])).unwrap();
        assert!(changed.verbatim.is_some(), "an added member keeps the text");
        let rewritten = arena.edited(&changed, &edits(&[("a", Some("1"))])).unwrap();
        assert!(rewritten.verbatim.is_none(), "a changed member does not");
        for (event, a) in [(e, "\"x\""), (changed, "\"x\""), (rewritten, "1")] {
            let mut out = b"prefix".to_vec();
            let mut index = Vec::new();
            arena.write_json(&event, &mut out, Some(&mut index));
            assert_eq!(field_in(&out, &index, "b"), Some(&b"2"[..]));
            assert_eq!(field_in(&out, &index, "a"), Some(a.as_bytes()));
        }
    }

    #[test]
    fn a_failed_object_leaves_nothing_behind() {
        let mut arena = EventArena::default();
        let before = arena.mark();
        assert!(arena.push_object(br#"{"a":1,"a":2}"#).is_err());
        assert!(arena.push_object(b"{\"a\":\"\xff\"}").is_err());
        assert_eq!(arena.bytes().len(), before.bytes);
        assert!(arena.members.is_empty());
    }
}
