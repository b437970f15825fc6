//! JSON records framed by a schema registry (Confluent's JSON Schema serializer: magic byte 0,
//! the schema id, the JSON text). The header is checked against the registry (the id must
//! name a JSON schema) and taken off; the JSON is the stages' as it is. Records are not
//! validated against the schema, as Confluent's deserializer does not by default
//! (`json.fail.invalid.schema=false`): the event checks (`key_field`, `time_field`) still
//! apply.

use super::registry::SchemaRegistry;
use super::schemas::{SchemaCache, ToJson, Undecodable, framed};
use crate::event::{Member, Written};

/// Takes the registry header off JSON Schema records.
pub struct JsonSchemaDecoder {
    schemas: SchemaCache<()>,
}

impl std::fmt::Debug for JsonSchemaDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonSchemaDecoder").finish_non_exhaustive()
    }
}

impl JsonSchemaDecoder {
    /// A decoder checking schema ids against `registry`.
    pub fn new(registry: SchemaRegistry) -> Self {
        JsonSchemaDecoder {
            schemas: SchemaCache::new(Some(registry), "json", |text, _| {
                serde_json::from_str::<serde::de::IgnoredAny>(text)
                    .map(|_| ())
                    .map_err(|e| format!("a schema that is not JSON: {e}"))
            }),
        }
    }
}

impl ToJson for JsonSchemaDecoder {
    fn to_json(
        &self,
        bytes: &[u8],
        out: &mut Vec<u8>,
        _: &mut Vec<Member>,
    ) -> Result<Written, Undecodable> {
        let (id, body) = framed(bytes, "json")?;
        self.schemas.get(id)?;
        out.extend_from_slice(body);
        Ok(Written::Text)
    }
}
