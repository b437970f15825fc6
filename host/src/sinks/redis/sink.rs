//! The Redis feature sink. Under checkpoints an epoch's writes are merged per entity (last
//! value of each field wins) and kept in the epoch's commit record; they reach Redis only once
//! the epoch has committed, so readers never see features of an epoch that is later rewound.
//! Each commit carries a sequence number that grows along the chain of committed epochs; the
//! Lua script applies a write only if the hash has not yet seen that number from this source
//! partition, so redoing a commit after a crash changes nothing.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

use fred::prelude::{ClientLike, Config, ReconnectPolicy};
use fred::types::Value;
use fred::types::scripts::Script;
use serde::{Deserialize, Serialize};

use super::RedisSinkConfig;
use crate::sinks::commit_record::{self, Sequence};
use crate::sinks::resilience::Breaker;
use crate::sinks::staging::Scope;
use crate::sinks::{Rejection, Sink, SinkBatch, SinkError};
use crate::storage::io_runtime;

/// KEYS[1]: the hash. ARGV: fence field, sequence, ttl in ms (0: none), then field/value pairs.
const FENCED_HSET: &str = r#"
local seen = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if seen >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2], unpack(ARGV, 4))
local ttl = tonumber(ARGV[3])
if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
return 1
"#;

/// One entity's fields, merged over an epoch.
type Fields = BTreeMap<String, String>;

/// One entity's key and the fields to set.
type EntityWrite = (Vec<u8>, Vec<(String, String)>);

/// What the checkpoint keeps for this sink: the epoch's writes and their sequence number.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CommitRecord {
    seq: i64,
    writes: Vec<EntityWrite>,
}

/// The Redis feature sink.
pub struct RedisSink {
    name: String,
    client: fred::clients::Client,
    script: Script,
    breaker: Arc<Breaker>,
    prefix: String,
    fields: BTreeMap<String, String>,
    ttl_ms: i64,
    pipeline: usize,
    fence_field: String,
    pending: BTreeMap<Vec<u8>, Fields>,
    sequence: Sequence,
    scoped: bool,
}

/// One client per server URL, shared by every partition's sink instance.
fn client_for(config: &RedisSinkConfig) -> Result<fred::clients::Client, fred::error::Error> {
    static CLIENTS: OnceLock<Mutex<HashMap<String, fred::clients::Client>>> = OnceLock::new();
    let mut clients = CLIENTS
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(client) = clients.get(&config.url) {
        return Ok(client.clone());
    }
    let timeout = config.timeout.0;
    crate::tls::install_crypto_provider();
    let mut server = Config::from_url(&config.url)?;
    // Keep trying when the server is down at start, as after a disconnection: with fail_fast
    // a first failed connection would end the client's connection task for good.
    server.fail_fast = false;
    let client = fred::types::Builder::from_config(server)
        .with_performance_config(|p| p.default_command_timeout = timeout)
        .with_connection_config(|c| {
            c.connection_timeout = timeout;
            c.internal_command_timeout = timeout;
        })
        .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
        .build()?;
    // Connect in the background, reconnecting forever; wait (bounded) for the first
    // connection so the first epoch does not fail while it is made.
    io_runtime().block_on(async {
        client.connect();
        let _ = tokio::time::timeout(timeout, client.wait_for_connect()).await;
    });
    clients.insert(config.url.clone(), client.clone());
    Ok(client)
}

/// A JSON value as a hash field value: strings as they are, the rest as JSON text.
fn field_value(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// Connects to the sink's server and asks it for a PONG, within the sink's timeout.
pub fn ping(config: &RedisSinkConfig) -> Result<(), String> {
    let client = client_for(config).map_err(|e| e.details().to_string())?;
    let timeout = config.timeout.0;
    io_runtime().block_on(async {
        match tokio::time::timeout(timeout, client.ping::<String>(None)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.details().to_string()),
            Err(_) => Err(format!("no answer from {} within {timeout:?}", config.url)),
        }
    })
}

impl RedisSink {
    /// Creates the sink; the connection is made in the background and retried.
    pub fn new(
        name: &str,
        config: &RedisSinkConfig,
        scope: Option<Scope>,
        breaker: Arc<Breaker>,
    ) -> Result<Self, SinkError> {
        let client = client_for(config).map_err(|e| SinkError::Setup {
            sink: name.to_string(),
            reason: format!("url: {}", e.details()),
        })?;
        let label = scope
            .as_ref()
            .map_or_else(|| "local".to_string(), Scope::label);
        Ok(RedisSink {
            name: name.to_string(),
            client,
            script: Script::from_lua(FENCED_HSET),
            breaker,
            prefix: config.prefix.clone(),
            fields: config.fields.clone(),
            ttl_ms: config.ttl.as_ref().map_or(0, |t| t.0.as_millis() as i64),
            pipeline: config.pipeline,
            fence_field: format!("_weir_seq:{label}"),
            pending: BTreeMap::new(),
            sequence: Sequence::default(),
            scoped: scope.is_some(),
        })
    }

    /// Applies writes with `seq`, pipelined, retried behind the breaker.
    fn apply(&self, seq: i64, writes: &[EntityWrite]) -> Result<(), SinkError> {
        for chunk in writes.chunks(self.pipeline) {
            let applied = self.breaker.call("writing features", || {
                // Commands would wait for a reconnection until they time out: fail at once
                // and let the breaker pace the retries.
                if !self.client.is_connected() {
                    return Err(fred::error::Error::new(
                        fred::error::ErrorKind::IO,
                        "not connected to Redis (reconnecting)",
                    ));
                }
                io_runtime().block_on(async {
                    let calls = chunk.iter().map(|(entity, fields)| {
                        let mut key = Vec::with_capacity(self.prefix.len() + 1 + entity.len());
                        key.extend_from_slice(self.prefix.as_bytes());
                        key.push(b':');
                        key.extend_from_slice(entity);
                        let mut args: Vec<Value> = Vec::with_capacity(3 + 2 * fields.len());
                        args.push(self.fence_field.clone().into());
                        args.push(seq.into());
                        args.push(self.ttl_ms.into());
                        for (name, value) in fields {
                            args.push(name.clone().into());
                            args.push(value.clone().into());
                        }
                        let key = fred::types::Key::from(bytes::Bytes::from(key));
                        self.script
                            .evalsha_with_reload::<i64, _, _>(&self.client, key, args)
                    });
                    futures::future::join_all(calls)
                        .await
                        .into_iter()
                        .collect::<Result<Vec<i64>, _>>()
                })
            })?;
            let fresh = applied.iter().filter(|a| **a == 1).count() as u64;
            metrics::counter!("weir_sink_redis_writes_total", "sink" => self.name.clone(), "result" => "applied")
                .increment(fresh);
            metrics::counter!("weir_sink_redis_writes_total", "sink" => self.name.clone(), "result" => "fenced")
                .increment(applied.len() as u64 - fresh);
            crate::failpoint::hit("features-written");
        }
        Ok(())
    }

    fn take_pending(&mut self) -> CommitRecord {
        let writes = std::mem::take(&mut self.pending)
            .into_iter()
            .map(|(entity, fields)| (entity, fields.into_iter().collect()))
            .collect();
        CommitRecord {
            seq: self.sequence.advance(),
            writes,
        }
    }
}

/// The fields a record sets through `mapping` (hash field → JSON path; empty: every
/// top-level field), or why it cannot be stored.
fn fields_of(
    mapping: &BTreeMap<String, String>,
    key: &[u8],
    value: &[u8],
) -> Result<Fields, String> {
    if key.is_empty() {
        return Err("missing key: a feature needs an entity key".into());
    }
    let value: serde_json::Value =
        serde_json::from_slice(value).map_err(|e| format!("invalid json: {e}"))?;
    let serde_json::Value::Object(object) = &value else {
        return Err("not an object: a feature record must be a JSON object".into());
    };
    let mut fields = Fields::new();
    if mapping.is_empty() {
        for (name, v) in object {
            if let Some(v) = field_value(v) {
                fields.insert(name.clone(), v);
            }
        }
    } else {
        for (name, path) in mapping {
            let found = path
                .split('.')
                .try_fold(&value, |v, part| v.get(part))
                .and_then(field_value);
            if let Some(v) = found {
                fields.insert(name.clone(), v);
            }
        }
    }
    Ok(fields)
}

impl Sink for RedisSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, records: &SinkBatch) -> Result<Vec<Rejection>, SinkError> {
        let mut rejections = Vec::new();
        for (index, record) in records.iter().enumerate() {
            match fields_of(&self.fields, record.key, record.value) {
                Ok(fields) if fields.is_empty() => {}
                Ok(fields) => self
                    .pending
                    .entry(record.key.to_vec())
                    .or_default()
                    .extend(fields),
                Err(reason) => rejections.push(Rejection { index, reason }),
            }
        }
        if !self.scoped {
            self.flush()?;
        }
        Ok(rejections)
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        if self.scoped || self.pending.is_empty() {
            return Ok(());
        }
        let record = self.take_pending();
        self.apply(record.seq, &record.writes)
    }

    fn close(&mut self) -> Result<(), SinkError> {
        self.flush()
    }

    fn prepare_commit(&mut self) -> Result<Option<Vec<u8>>, SinkError> {
        let record = self.take_pending();
        commit_record::encode(&self.name, &record)
    }

    fn commit(&mut self, record: &[u8]) -> Result<(), SinkError> {
        let record = commit_record::decode::<CommitRecord>(&self.name, record)?;
        self.apply(record.seq, &record.writes)
    }

    fn recover(&mut self, record: Option<&[u8]>) -> Result<(), SinkError> {
        self.pending.clear();
        if let Some(bytes) = record {
            let record = commit_record::decode::<CommitRecord>(&self.name, bytes)?;
            self.apply(record.seq, &record.writes)?;
            self.sequence.recovered(record.seq);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(key: &'a str, value: &'a str) -> (&'a [u8], &'a [u8]) {
        (key.as_bytes(), value.as_bytes())
    }

    fn fields_of(
        mapping: &BTreeMap<String, String>,
        record: (&[u8], &[u8]),
    ) -> Result<Fields, String> {
        super::fields_of(mapping, record.0, record.1)
    }

    #[test]
    fn maps_fields_and_refuses_what_cannot_be_a_feature() {
        let all = BTreeMap::new();
        let value = r#"{"n":3,"name":"x","tags":["a"],"geo":{"cc":"NL"},"gone":null}"#;
        let fields = fields_of(&all, record("u", value)).unwrap();
        assert_eq!(fields["n"], "3");
        assert_eq!(fields["name"], "x");
        assert_eq!(fields["tags"], r#"["a"]"#);
        assert!(!fields.contains_key("gone"));
        let mapping = BTreeMap::from([
            ("country".to_string(), "geo.cc".to_string()),
            ("missing".to_string(), "geo.nope".to_string()),
        ]);
        let fields = fields_of(&mapping, record("u", value)).unwrap();
        assert_eq!(fields, BTreeMap::from([("country".into(), "NL".into())]));
        assert!(
            fields_of(&all, record("", value))
                .unwrap_err()
                .starts_with("missing key")
        );
        assert!(
            fields_of(&all, record("u", "[1]"))
                .unwrap_err()
                .starts_with("not an object")
        );
        assert!(
            fields_of(&all, record("u", "{"))
                .unwrap_err()
                .starts_with("invalid json")
        );
    }
}
