//! [`SinkBatch`]: the records a sink gets in one write, in one buffer: each record's key, its
//! value as JSON (written once, from the host's view of the event) and the index of its
//! top-level fields, so a sink reads columns without parsing the JSON again.

use std::sync::Arc;

use crate::event::{EventArena, EventRef, Member, ParseError, Span, field_in, parse};
use crate::flow::{Provenance, SinkRecord};

/// One record's place in a [`SinkBatch`].
#[derive(Debug, Clone)]
struct Entry {
    route: Arc<str>,
    key: Span,
    value: Span,
    /// Its members: a range of the batch's member list (spans into the batch's bytes).
    members: Span,
    time: i64,
    provenance: Option<Provenance>,
}

/// Records for one sink write.
#[derive(Debug, Clone, Default)]
pub struct SinkBatch {
    bytes: Vec<u8>,
    members: Vec<Member>,
    entries: Vec<Entry>,
}

/// One record of a [`SinkBatch`], borrowed.
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    /// The route it was sent on.
    pub route: &'a str,
    /// Entity key.
    pub key: &'a [u8],
    /// The value, a JSON object.
    pub value: &'a [u8],
    /// Event time, ms.
    pub time: i64,
    /// The source record it derives from; `None` for records made by timers.
    pub provenance: Option<&'a Provenance>,
    bytes: &'a [u8],
    members: &'a [Member],
}

impl<'a> RecordView<'a> {
    /// The raw JSON of the top-level field `name` (`name` as written in JSON, unescaped).
    pub fn field(&self, name: &str) -> Option<&'a [u8]> {
        field_in(self.bytes, self.members, name)
    }

    /// The raw JSON of the top-level field `name`, looking first at member `*hint` (where the
    /// previous record of a batch had it: records mostly share their shape) and leaving there
    /// where it was found.
    pub fn field_hinted(&self, name: &str, hint: &mut usize) -> Option<&'a [u8]> {
        if let Some(m) = self.members.get(*hint)
            && parse::name_is(self.bytes, m, name)
        {
            return Some(&self.bytes[m.value.range()]);
        }
        let at = self
            .members
            .iter()
            .position(|m| parse::name_is(self.bytes, m, name))?;
        *hint = at;
        Some(&self.bytes[self.members[at].value.range()])
    }

    /// How many top-level members the record has.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The name of the first top-level member that is none of `names`, if any.
    pub fn member_not_in(&self, names: &[String]) -> Option<String> {
        self.members
            .iter()
            .find(|m| !names.iter().any(|n| parse::name_is(self.bytes, m, n)))
            .map(|m| parse::decoded_name(self.bytes, m).into_owned())
    }

    /// The top-level members, as raw name (escapes unresolved) and raw value.
    pub fn members(&self) -> impl Iterator<Item = (&'a [u8], &'a [u8])> + 'a {
        let bytes = self.bytes;
        self.members
            .iter()
            .map(move |m| (&bytes[m.name.range()], &bytes[m.value.range()]))
    }

    /// An owned copy.
    pub fn to_record(&self) -> SinkRecord {
        SinkRecord {
            route: Arc::from(self.route),
            key: self.key.to_vec(),
            value: self.value.to_vec(),
            time: self.time,
            provenance: self.provenance.cloned(),
        }
    }
}

impl SinkBatch {
    /// Number of records.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets every record, keeping the allocations.
    pub fn clear(&mut self) {
        self.bytes.clear();
        self.members.clear();
        self.entries.clear();
    }

    /// Record `i`.
    pub fn get(&self, i: usize) -> Option<RecordView<'_>> {
        let e = self.entries.get(i)?;
        Some(RecordView {
            route: &e.route,
            key: &self.bytes[e.key.range()],
            value: &self.bytes[e.value.range()],
            time: e.time,
            provenance: e.provenance.as_ref(),
            bytes: &self.bytes,
            members: &self.members[e.members.range()],
        })
    }

    /// Every record, in order.
    pub fn iter(&self) -> impl Iterator<Item = RecordView<'_>> {
        (0..self.entries.len()).filter_map(|i| self.get(i))
    }

    fn push_key(&mut self, key: &[u8]) -> Span {
        let start = self.bytes.len();
        self.bytes.extend_from_slice(key);
        Span::new(start..self.bytes.len())
    }

    /// Appends `event` from `arena`, written as JSON with its index.
    pub fn push_event(
        &mut self,
        route: &Arc<str>,
        arena: &EventArena,
        event: &EventRef,
        provenance: Option<Provenance>,
    ) {
        let key = self.push_key(arena.key(event));
        let first = self.members.len();
        let start = self.bytes.len();
        arena.write_json(event, &mut self.bytes, Some(&mut self.members));
        self.entries.push(Entry {
            route: route.clone(),
            key,
            value: Span::new(start..self.bytes.len()),
            members: Span::new(first..self.members.len()),
            time: event.time,
            provenance,
        });
    }

    /// Appends a record whose value is JSON text, indexing it (tools, tests, replays).
    pub fn push_json(
        &mut self,
        route: &str,
        key: &[u8],
        value: &[u8],
        time: i64,
        provenance: Option<Provenance>,
    ) -> Result<(), ParseError> {
        std::str::from_utf8(value)
            .map_err(|e| ParseError::Invalid(format!("not UTF-8 at byte {}", e.valid_up_to())))?;
        let first = self.members.len();
        if let Err(e) = parse::index_object(value, &mut self.members) {
            self.members.truncate(first);
            return Err(e);
        }
        let key = self.push_key(key);
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(value);
        for member in &mut self.members[first..] {
            member.name = member.name.shifted(start);
            member.value = member.value.shifted(start);
        }
        self.entries.push(Entry {
            route: Arc::from(route),
            key,
            value: Span::new(start as usize..self.bytes.len()),
            members: Span::new(first..self.members.len()),
            time,
            provenance,
        });
        Ok(())
    }

    /// A batch of owned records (whose values must be JSON objects; others are skipped).
    pub fn of(records: &[SinkRecord]) -> Self {
        let mut batch = SinkBatch::default();
        for r in records {
            if let Err(e) =
                batch.push_json(&r.route, &r.key, &r.value, r.time, r.provenance.clone())
            {
                tracing::warn!(error = %e, "A record given to a sink is not a JSON object; skipped.");
            }
        }
        batch
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_keep_their_values_and_index_their_fields() {
        let mut batch = SinkBatch::default();
        batch
            .push_json("main", b"k1", br#"{"a":1,"b":"x"}"#, 5, None)
            .unwrap();
        assert!(batch.push_json("main", b"k2", b"[1]", 6, None).is_err());
        let mut arena = EventArena::default();
        let (members, bytes) = arena.push_object(br#"{"c": true}"#).unwrap();
        let key = arena.push_key(b"k3");
        let event = EventRef {
            members,
            key,
            time: 7,
            verbatim: Some(bytes),
            appended: 0,
        };
        batch.push_event(&Arc::from("bots"), &arena, &event, None);
        assert_eq!(batch.len(), 2);
        let first = batch.get(0).unwrap();
        assert_eq!(
            (first.key, first.field("b")),
            (&b"k1"[..], Some(&b"\"x\""[..]))
        );
        let second = batch.get(1).unwrap();
        assert_eq!(second.value, br#"{"c": true}"#);
        assert_eq!((second.route, second.time), ("bots", 7));
        assert_eq!(second.field("c"), Some(&b"true"[..]));
        assert_eq!(second.members().count(), 1);
    }
}
