//! Arrow columns built straight from the host's index of each record (its members' raw
//! JSON), without serializing the record or parsing it again. Conversions follow arrow-json's
//! (the reader the sink used before): numbers and numeric strings into numeric columns,
//! RFC 3339 strings or numbers in the column's unit into timestamps, `YYYY-MM-DD` strings or
//! day numbers into dates. Nested columns (lists, structs) go through arrow-json per value.
//! A record whose value does not fit a column is refused whole, naming the field.

use std::borrow::Cow;
use std::sync::Arc;

use arrow_array::builder::{
    BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int32Builder, Int64Builder,
    StringBuilder, TimestampMicrosecondBuilder, TimestampMillisecondBuilder,
};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_cast::parse::Parser;
use arrow_schema::{ArrowError, DataType, Field, Schema, SchemaRef, TimeUnit};
use weir_sdk::json;

use crate::sinks::RecordView;

/// One converted cell of a row, before the row is known to fit.
#[derive(Debug, Clone, Copy)]
pub enum Cell<'a> {
    Null,
    Str(&'a [u8]),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// Nested JSON, checked by a one-value arrow-json decode.
    Nested(&'a [u8]),
}

/// The column builders of one schema and the per-row scratch of converted cells.
pub struct ColumnWriter {
    schema: SchemaRef,
    builders: Vec<Builder>,
    /// Each column's name: the field it is read from.
    names: Vec<String>,
    /// Where each column's field was in the last record that had it.
    hints: Vec<usize>,
    rows: usize,
}

enum Builder {
    Utf8(StringBuilder),
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    TimestampMs(TimestampMillisecondBuilder, Option<Arc<str>>),
    TimestampUs(TimestampMicrosecondBuilder, Option<Arc<str>>),
    Date32(Date32Builder),
    /// Raw JSON of each row (`None`: null), decoded by arrow-json when the batch is finished.
    Nested(Vec<Option<Vec<u8>>>, Arc<Field>),
}

impl Builder {
    fn new(field: &Field) -> Self {
        match field.data_type() {
            DataType::Utf8 => Builder::Utf8(StringBuilder::new()),
            DataType::Boolean => Builder::Bool(BooleanBuilder::new()),
            DataType::Int32 => Builder::Int32(Int32Builder::new()),
            DataType::Int64 => Builder::Int64(Int64Builder::new()),
            DataType::Float32 => Builder::Float32(Float32Builder::new()),
            DataType::Float64 => Builder::Float64(Float64Builder::new()),
            DataType::Timestamp(TimeUnit::Millisecond, tz) => {
                Builder::TimestampMs(TimestampMillisecondBuilder::new(), tz.clone())
            }
            DataType::Timestamp(_, tz) => {
                Builder::TimestampUs(TimestampMicrosecondBuilder::new(), tz.clone())
            }
            DataType::Date32 => Builder::Date32(Date32Builder::new()),
            _ => Builder::Nested(Vec::new(), Arc::new(field.clone())),
        }
    }

    /// Converts a raw JSON value for this column, or says why it does not fit.
    fn convert<'a>(&self, raw: &'a [u8]) -> Result<Cell<'a>, String> {
        if raw == b"null" {
            return Ok(Cell::Null);
        }
        let text = || std::str::from_utf8(raw).unwrap_or_default();
        let quoted = raw.first() == Some(&b'"');
        let expected = |what: &str| Err(format!("expected {what}, got {}", text()));
        match self {
            Builder::Utf8(_) if quoted => Ok(Cell::Str(raw)),
            Builder::Utf8(_) => expected("a string"),
            Builder::Bool(_) => match raw {
                b"true" => Ok(Cell::Bool(true)),
                b"false" => Ok(Cell::Bool(false)),
                _ => expected("a boolean"),
            },
            Builder::Int32(_) | Builder::Int64(_) => {
                let value = if quoted {
                    json::decode_string(raw).and_then(|s| arrow_array::types::Int64Type::parse(&s))
                } else {
                    integer(raw)
                };
                match (value, self) {
                    (Some(v), Builder::Int32(_)) if i32::try_from(v).is_err() => {
                        expected("an int32")
                    }
                    (Some(v), _) => Ok(Cell::Int(v)),
                    (None, _) => expected("an integer"),
                }
            }
            Builder::Float32(_) | Builder::Float64(_) => {
                let value = if quoted {
                    json::decode_string(raw)
                        .and_then(|s| arrow_array::types::Float64Type::parse(&s))
                } else {
                    text().parse::<f64>().ok()
                };
                value
                    .map(Cell::Float)
                    .map_or_else(|| expected("a number"), Ok)
            }
            Builder::TimestampMs(..) | Builder::TimestampUs(..) => {
                if quoted {
                    let s = json::decode_string(raw).unwrap_or(Cow::Borrowed(""));
                    let micros = matches!(self, Builder::TimestampUs(..));
                    timestamp(&s, micros).map(Cell::Int)
                } else {
                    integer(raw)
                        .map(Cell::Int)
                        .map_or_else(|| expected("a timestamp"), Ok)
                }
            }
            Builder::Date32(_) => {
                let value = if quoted {
                    json::decode_string(raw)
                        .and_then(|s| arrow_array::types::Date32Type::parse(&s))
                        .map(i64::from)
                } else {
                    integer(raw)
                };
                match value {
                    Some(days) if i32::try_from(days).is_ok() => Ok(Cell::Int(days)),
                    _ => expected("a date"),
                }
            }
            Builder::Nested(_, field) => {
                check_nested(field, raw)?;
                Ok(Cell::Nested(raw))
            }
        }
    }

    fn append(&mut self, cell: Cell<'_>) {
        match (self, cell) {
            (Builder::Utf8(b), Cell::Str(raw)) => match json::decode_string(raw) {
                Some(s) => b.append_value(s),
                None => b.append_null(),
            },
            (Builder::Bool(b), Cell::Bool(v)) => b.append_value(v),
            (Builder::Int32(b), Cell::Int(v)) => b.append_value(v as i32),
            (Builder::Int64(b), Cell::Int(v)) => b.append_value(v),
            (Builder::Float32(b), Cell::Float(v)) => b.append_value(v as f32),
            (Builder::Float64(b), Cell::Float(v)) => b.append_value(v),
            (Builder::TimestampMs(b, _), Cell::Int(v)) => b.append_value(v),
            (Builder::TimestampUs(b, _), Cell::Int(v)) => b.append_value(v),
            (Builder::Date32(b), Cell::Int(v)) => b.append_value(v as i32),
            (Builder::Nested(rows, _), Cell::Nested(raw)) => rows.push(Some(raw.to_vec())),
            (Builder::Nested(rows, _), _) => rows.push(None),
            (b, _) => b.append_null(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Builder::Utf8(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::TimestampMs(b, _) => b.append_null(),
            Builder::TimestampUs(b, _) => b.append_null(),
            Builder::Date32(b) => b.append_null(),
            Builder::Nested(rows, _) => rows.push(None),
        }
    }

    fn finish(&mut self) -> Result<ArrayRef, ArrowError> {
        Ok(match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::TimestampMs(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Builder::TimestampUs(b, tz) => Arc::new(b.finish().with_timezone_opt(tz.clone())),
            Builder::Date32(b) => Arc::new(b.finish()),
            Builder::Nested(rows, field) => decode_nested(field, &std::mem::take(rows))?,
        })
    }
}

/// An integer as arrow-json reads one: exactly, else as a float cut to an integer.
fn integer(raw: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(raw).ok()?;
    text.parse::<i64>().ok().or_else(|| {
        let v = text.parse::<f64>().ok()?;
        // `as` saturates; arrow-json refuses values out of range instead.
        (v.is_finite() && v >= i64::MIN as f64 && v < i64::MAX as f64).then_some(v as i64)
    })
}

/// A timestamp string in ms (or µs): RFC 3339 fast, else what arrow-cast accepts.
fn timestamp(text: &str, micros: bool) -> Result<i64, String> {
    if !micros && let Ok(ms) = crate::pipeline::time::rfc3339_millis(text) {
        return Ok(ms);
    }
    let parsed = arrow_cast::parse::string_to_datetime(&chrono::Utc, text)
        .map_err(|e| format!("expected a timestamp, got {text:?}: {e}"))?;
    Ok(if micros {
        parsed.timestamp_micros()
    } else {
        parsed.timestamp_millis()
    })
}

/// The one-column schema and JSON line arrow-json reads a nested value through.
fn nested_decoder(field: &Field, rows: usize) -> Result<arrow_json::reader::Decoder, ArrowError> {
    let schema = Arc::new(Schema::new(vec![field.clone().with_name("v")]));
    arrow_json::ReaderBuilder::new(schema)
        .with_batch_size(rows.max(1))
        .build_decoder()
}

fn feed(decoder: &mut arrow_json::reader::Decoder, raw: Option<&[u8]>) -> Result<(), ArrowError> {
    let mut line = Vec::with_capacity(raw.map_or(4, <[u8]>::len) + 8);
    line.extend_from_slice(b"{\"v\":");
    line.extend_from_slice(raw.unwrap_or(b"null"));
    line.extend_from_slice(b"}\n");
    let mut rest = line.as_slice();
    while !rest.is_empty() {
        let read = decoder.decode(rest)?;
        rest = &rest[read..];
    }
    Ok(())
}

fn check_nested(field: &Field, raw: &[u8]) -> Result<(), String> {
    let mut decoder = nested_decoder(field, 1).map_err(|e| e.to_string())?;
    feed(&mut decoder, Some(raw))
        .and_then(|()| decoder.flush())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn decode_nested(field: &Field, rows: &[Option<Vec<u8>>]) -> Result<ArrayRef, ArrowError> {
    let mut decoder = nested_decoder(field, rows.len())?;
    for raw in rows {
        feed(&mut decoder, raw.as_deref())?;
    }
    let batch = decoder
        .flush()?
        .ok_or_else(|| ArrowError::JsonError("no rows".into()))?;
    Ok(batch.column(0).clone())
}

impl ColumnWriter {
    /// Builders for `schema`.
    pub fn new(schema: SchemaRef) -> Self {
        let builders = schema.fields().iter().map(|f| Builder::new(f)).collect();
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        ColumnWriter {
            hints: vec![0; names.len()],
            schema,
            builders,
            names,
            rows: 0,
        }
    }

    /// Rows appended since the last [`Self::finish`].
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The first top-level field of `record` that is not a column, if any.
    pub fn extra_field(&self, record: &RecordView<'_>) -> Option<String> {
        record.member_not_in(&self.names)
    }

    /// Appends `record` as a row, or says which field does not fit (and appends nothing);
    /// returns how many of the columns the record had. `row` is scratch space, reused across
    /// the rows of a write.
    pub fn append<'a>(
        &mut self,
        record: &RecordView<'a>,
        row: &mut Vec<Cell<'a>>,
    ) -> Result<usize, String> {
        row.clear();
        let mut found = 0;
        for (((builder, name), field), hint) in self
            .builders
            .iter()
            .zip(&self.names)
            .zip(self.schema.fields())
            .zip(&mut self.hints)
        {
            let cell = match record.field_hinted(name, hint) {
                None => Cell::Null,
                Some(raw) => {
                    found += 1;
                    builder
                        .convert(raw)
                        .map_err(|e| format!("schema mismatch: field {:?}: {e}", field.name()))?
                }
            };
            if matches!(cell, Cell::Null) && !field.is_nullable() {
                return Err(format!(
                    "schema mismatch: field {:?} is missing or null and not nullable",
                    field.name()
                ));
            }
            row.push(cell);
        }
        for (builder, cell) in self.builders.iter_mut().zip(row.drain(..)) {
            match cell {
                Cell::Null => builder.append_null(),
                cell => builder.append(cell),
            }
        }
        self.rows += 1;
        Ok(found)
    }

    /// The rows appended so far as a record batch; the builders start over.
    pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let columns = self
            .builders
            .iter_mut()
            .map(Builder::finish)
            .collect::<Result<Vec<_>, _>>()?;
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), columns)
    }
}
