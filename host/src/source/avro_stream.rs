//! Avro datums written as JSON text while apache-avro's schema-aware deserializer reads them
//! (`GenericDatumReader::read_deser`), with no value tree in between. It serves the schemas
//! whose JSON needs nothing but the datum ([`streamable`]): records, unions, arrays, maps,
//! enums, strings, numbers and the date, time and timestamp types. A schema with bytes,
//! fixed, decimals or durations, whose JSON needs the schema beside the value, goes through
//! apache-avro's `Value` instead.

use std::fmt;

use apache_avro::Schema;
use serde::de::{DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, de};

use crate::event::parse::{MAX_DEPTH, write_string};
use crate::event::{Member, Span};

/// Whether the JSON of `schema`'s datums can be written as they are read.
pub fn streamable(schema: &Schema) -> bool {
    match schema {
        Schema::Null
        | Schema::Boolean
        | Schema::Int
        | Schema::Long
        | Schema::Float
        | Schema::Double
        | Schema::String
        | Schema::Enum(_)
        | Schema::Date
        | Schema::TimeMillis
        | Schema::TimeMicros
        | Schema::TimestampMillis
        | Schema::TimestampMicros
        | Schema::TimestampNanos
        | Schema::LocalTimestampMillis
        | Schema::LocalTimestampMicros
        | Schema::LocalTimestampNanos
        | Schema::Uuid(apache_avro::schema::UuidSchema::String)
        | Schema::Ref { .. } => true,
        Schema::Record(record) => record.fields.iter().all(|f| streamable(&f.schema)),
        Schema::Union(union) => union.variants().iter().all(streamable),
        Schema::Array(array) => streamable(&array.items),
        Schema::Map(map) => streamable(&map.types),
        _ => false,
    }
}

/// A datum's JSON text, as [`read_deser`](apache_avro::reader::datum::GenericDatumReader)
/// gives it, with where the members of its top-level object lie in the text (none when it is
/// not an object).
#[derive(Default)]
pub struct JsonText {
    /// The JSON text.
    pub text: Vec<u8>,
    /// The top-level members, in order, with spans in `text`.
    pub members: Vec<Member>,
}

thread_local! {
    /// The buffers of the thread's last [`JsonText`] once it was read: `read_deser` makes a
    /// new value per datum, and reusing them saves two allocations a record.
    static SPARE: std::cell::Cell<JsonText> = std::cell::Cell::default();
}

impl JsonText {
    /// Gives the buffers back for the thread's next datum (unless a rare large record made
    /// them large: those are let go).
    pub fn recycle(self) {
        if self.text.capacity() <= 64 * 1024 {
            SPARE.set(self);
        }
    }
}

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut json = SPARE.take();
        json.text.clear();
        json.members.clear();
        Writer {
            out: &mut json.text,
            depth: 0,
            index: Some(&mut json.members),
        }
        .deserialize(deserializer)?;
        Ok(json)
    }
}

/// Writes what it visits to its buffer as JSON.
struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// How many arrays and objects it is in.
    depth: usize,
    /// Where the members go when it writes the top-level object.
    index: Option<&'a mut Vec<Member>>,
}

impl<'de> DeserializeSeed<'de> for Writer<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Writer<'_> {
    /// A writer for a value inside the array or object this one writes.
    fn inner(&mut self) -> Writer<'_> {
        Writer {
            out: self.out,
            depth: self.depth + 1,
            index: None,
        }
    }

    /// Refuses an array or object nested deeper than a record may be.
    fn open<E: de::Error>(&mut self, bracket: u8) -> Result<(), E> {
        if self.depth >= MAX_DEPTH {
            return Err(E::custom(format!(
                "nested deeper than {MAX_DEPTH} arrays and objects"
            )));
        }
        self.out.push(bracket);
        Ok(())
    }

    fn number<E: de::Error>(self, n: impl itoa::Integer) -> Result<(), E> {
        self.out
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        Ok(())
    }

    /// A NaN or an infinity is `null`, as serde_json writes it.
    fn float<E: de::Error>(self, x: f64) -> Result<(), E> {
        serde_json::to_writer(&mut *self.out, &x).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for Writer<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an Avro datum")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.out
            .extend_from_slice(if b { b"true" } else { b"false" });
        Ok(())
    }

    fn visit_i32<E: de::Error>(self, n: i32) -> Result<(), E> {
        self.number(n)
    }

    fn visit_i64<E: de::Error>(self, n: i64) -> Result<(), E> {
        self.number(n)
    }

    fn visit_u64<E: de::Error>(self, n: u64) -> Result<(), E> {
        self.number(n)
    }

    fn visit_f32<E: de::Error>(self, x: f32) -> Result<(), E> {
        self.float(f64::from(x))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<(), E> {
        self.float(x)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        write_string(self.out, s);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        self.open(b'[')?;
        let mut first = true;
        loop {
            let at = self.out.len();
            if !first {
                self.out.push(b',');
            }
            if seq.next_element_seed(self.inner())?.is_none() {
                self.out.truncate(at);
                break;
            }
            first = false;
        }
        self.out.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        self.open(b'{')?;
        let mut first = true;
        loop {
            let at = self.out.len();
            if !first {
                self.out.push(b',');
            }
            let name_at = self.out.len();
            if map.next_key_seed(self.inner())?.is_none() {
                self.out.truncate(at);
                break;
            }
            let name = Span::new(name_at + 1..self.out.len() - 1);
            self.out.push(b':');
            let value_at = self.out.len();
            map.next_value_seed(self.inner())?;
            if let Some(index) = self.index.as_deref_mut() {
                index.push(Member {
                    name,
                    value: Span::new(value_at..self.out.len()),
                    // Avro names are identifiers: nothing in them is escaped.
                    escaped: false,
                });
            }
            first = false;
        }
        self.out.push(b'}');
        Ok(())
    }

    /// An enum is its symbol.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let ((), variant) = data.variant_seed(self)?;
        de::VariantAccess::unit_variant(variant)
    }
}
