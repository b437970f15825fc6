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
/// gives it.
pub struct JsonText(pub Vec<u8>);

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let mut out = Vec::with_capacity(256);
        Writer(&mut out).deserialize(deserializer)?;
        Ok(JsonText(out))
    }
}

/// Writes what it visits to its buffer as JSON.
struct Writer<'a>(&'a mut Vec<u8>);

impl<'de> DeserializeSeed<'de> for Writer<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl Writer<'_> {
    fn number<E: de::Error>(self, n: impl itoa::Integer) -> Result<(), E> {
        self.0
            .extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
        Ok(())
    }

    /// Escaped as serde_json escapes; a NaN or an infinity is `null`, as serde_json writes it.
    fn text<E: de::Error, T: serde::Serialize + ?Sized>(self, value: &T) -> Result<(), E> {
        serde_json::to_writer(&mut *self.0, value).map_err(E::custom)
    }
}

impl<'de> Visitor<'de> for Writer<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an Avro datum")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.0.extend_from_slice(b"null");
        Ok(())
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<(), E> {
        self.0.extend_from_slice(if b { b"true" } else { b"false" });
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
        self.text(&f64::from(x))
    }

    fn visit_f64<E: de::Error>(self, x: f64) -> Result<(), E> {
        self.text(&x)
    }

    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.text(s)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.push(b'[');
        let mut first = true;
        loop {
            let at = self.0.len();
            if !first {
                self.0.push(b',');
            }
            if seq.next_element_seed(Writer(self.0))?.is_none() {
                self.0.truncate(at);
                break;
            }
            first = false;
        }
        self.0.push(b']');
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.0.push(b'{');
        let mut first = true;
        loop {
            let at = self.0.len();
            if !first {
                self.0.push(b',');
            }
            if map.next_key_seed(Writer(self.0))?.is_none() {
                self.0.truncate(at);
                break;
            }
            self.0.push(b':');
            map.next_value_seed(Writer(self.0))?;
            first = false;
        }
        self.0.push(b'}');
        Ok(())
    }

    /// An enum is its symbol.
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let ((), variant) = data.variant_seed(Writer(self.0))?;
        de::VariantAccess::unit_variant(variant)
    }
}
