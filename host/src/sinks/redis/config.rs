//! Settings of the Redis feature sink.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::sinks::resilience::RetryConfig;
use crate::units::HumanDuration;

/// A Redis feature sink.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSinkConfig {
    /// The routes this sink takes.
    pub routes: Vec<String>,
    /// Server URL as fred reads it: `redis://[user:pass@]host:port/db`, `rediss://` for TLS,
    /// `redis-cluster://host:port?node=host2:port2` or
    /// `redis-sentinel://host:port?sentinelServiceName=NAME`.
    pub url: String,
    /// Key prefix: a record for entity `E` updates the hash `<prefix>:E`.
    pub prefix: String,
    /// Hash field → JSON field of the record (`a.b` reaches into objects). Empty: every
    /// top-level field under its own name.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Expiry of each hash, renewed by every write. None: the hashes do not expire.
    #[serde(default)]
    pub ttl: Option<HumanDuration>,
    /// Writes sent per pipelined round trip.
    #[serde(default = "default_pipeline")]
    pub pipeline: usize,
    /// Timeout of one command (and of connecting).
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Retries and circuit breaker.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// URL schemes fred understands (TLS with a trailing `s`).
const SCHEMES: &[&str] = &[
    "redis",
    "rediss",
    "redis-cluster",
    "rediss-cluster",
    "redis-sentinel",
    "rediss-sentinel",
    "valkey",
    "valkeys",
    "valkey-cluster",
    "valkeys-cluster",
    "valkey-sentinel",
    "valkeys-sentinel",
];

fn default_pipeline() -> usize {
    256
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

impl RedisSinkConfig {
    /// Checks the values; errors are `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let scheme = self.url.split("://").next().unwrap_or_default();
        if !SCHEMES.contains(&scheme) || !self.url.contains("://") {
            return Err((
                "url".into(),
                format!("scheme must be one of {}", SCHEMES.join(", ")),
            ));
        }
        crate::tls::install_crypto_provider();
        fred::prelude::Config::from_url(&self.url)
            .map_err(|e| ("url".to_string(), e.details().to_string()))?;
        if self.prefix.is_empty() {
            return Err(("prefix".into(), "must not be empty".into()));
        }
        if self.pipeline == 0 {
            return Err(("pipeline".into(), "must be at least 1".into()));
        }
        if let Some((field, _)) = self
            .fields
            .iter()
            .find(|(field, path)| field.is_empty() || path.is_empty() || field.starts_with("_weir"))
        {
            return Err((
                format!("fields.{field}"),
                "names and paths must be non-empty and names must not start with `_weir`".into(),
            ));
        }
        if self.ttl.as_ref().is_some_and(|ttl| ttl.0.as_millis() == 0) {
            return Err(("ttl".into(), "must be positive".into()));
        }
        self.retry.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(url: &str) -> RedisSinkConfig {
        RedisSinkConfig {
            routes: vec!["features".into()],
            url: url.into(),
            prefix: "user".into(),
            fields: BTreeMap::new(),
            ttl: None,
            pipeline: 256,
            timeout: default_timeout(),
            retry: RetryConfig::default(),
        }
    }

    #[test]
    fn takes_standalone_cluster_and_sentinel_urls_and_names_bad_fields() {
        for url in [
            "redis://127.0.0.1:6379/2",
            "rediss://user:secret@cache.example:6380",
            "redis-cluster://10.0.0.1:7000?node=10.0.0.2:7000",
            "redis-sentinel://10.0.0.1:26379?sentinelServiceName=features",
        ] {
            assert!(config(url).validate().is_ok(), "{url}");
        }
        assert_eq!(config("http://x").validate().unwrap_err().0, "url");
        let mut bad = config("redis://h");
        bad.fields.insert("_weir_x".into(), "a".into());
        assert_eq!(bad.validate().unwrap_err().0, "fields._weir_x");
    }
}
