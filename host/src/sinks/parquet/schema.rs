//! The column type language of the config (`int64`, `list<string>`,
//! `struct<a: int64, b: string>`) and the Arrow schema built from it.

use std::sync::Arc;

use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

use super::ColumnConfig;

/// Parses one column type.
pub fn parse_type(raw: &str) -> Result<DataType, String> {
    let mut parser = TypeParser {
        s: raw.as_bytes(),
        pos: 0,
    };
    let ty = parser.parse()?;
    parser.skip_ws();
    if parser.pos != parser.s.len() {
        return Err(format!("unexpected text after the type in {raw:?}"));
    }
    Ok(ty)
}

/// The Arrow schema of a column list.
pub fn schema_of(columns: &[ColumnConfig]) -> Result<SchemaRef, String> {
    let fields = columns
        .iter()
        .map(|c| Ok(Field::new(&c.name, parse_type(&c.data_type)?, c.nullable)))
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

struct TypeParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl TypeParser<'_> {
    fn skip_ws(&mut self) {
        while self.s.get(self.pos).is_some_and(u8::is_ascii_whitespace) {
            self.pos += 1;
        }
    }

    fn ident(&mut self) -> String {
        self.skip_ws();
        let start = self.pos;
        while self
            .s
            .get(self.pos)
            .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
        {
            self.pos += 1;
        }
        String::from_utf8_lossy(&self.s[start..self.pos]).to_ascii_lowercase()
    }

    fn expect(&mut self, byte: u8) -> Result<(), String> {
        self.skip_ws();
        if self.s.get(self.pos) == Some(&byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected `{}` at position {}",
                byte as char, self.pos
            ))
        }
    }

    fn parse(&mut self) -> Result<DataType, String> {
        let name = self.ident();
        Ok(match name.as_str() {
            "string" | "utf8" => DataType::Utf8,
            "bool" | "boolean" => DataType::Boolean,
            "int32" => DataType::Int32,
            "int64" => DataType::Int64,
            "float32" => DataType::Float32,
            "float64" | "double" => DataType::Float64,
            "timestamp_ms" => DataType::Timestamp(TimeUnit::Millisecond, Some("+00:00".into())),
            "timestamp_us" => DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
            "date32" | "date" => DataType::Date32,
            "list" => {
                self.expect(b'<')?;
                let item = self.parse()?;
                self.expect(b'>')?;
                DataType::List(Arc::new(Field::new("item", item, true)))
            }
            "struct" => {
                self.expect(b'<')?;
                let mut fields = Vec::new();
                loop {
                    let field = self.ident();
                    if field.is_empty() {
                        return Err("struct field needs a name".into());
                    }
                    self.expect(b':')?;
                    fields.push(Field::new(field, self.parse()?, true));
                    self.skip_ws();
                    match self.s.get(self.pos) {
                        Some(b',') => self.pos += 1,
                        _ => break,
                    }
                }
                self.expect(b'>')?;
                DataType::Struct(Fields::from(fields))
            }
            "" => return Err("missing type name".into()),
            other => {
                return Err(format!(
                    "unknown type `{other}`; use string, bool, int32, int64, float32, float64, \
                     timestamp_ms, timestamp_us, date32, list<T> or struct<name: T, ...>"
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_scalars_lists_and_structs() {
        assert_eq!(parse_type("int64"), Ok(DataType::Int64));
        assert!(matches!(
            parse_type(" list< string >"),
            Ok(DataType::List(_))
        ));
        let DataType::Struct(fields) = parse_type("struct<a: int64, b: list<float64>>").unwrap()
        else {
            panic!()
        };
        assert_eq!(fields.len(), 2);
        assert!(
            parse_type("int65")
                .unwrap_err()
                .contains("unknown type `int65`")
        );
        assert!(parse_type("list<int64").is_err());
        assert!(parse_type("int64 x").is_err());
    }
}
