//! Sinks against their real servers: one conformance suite run against every sink (Apache Kafka,
//! Parquet on a local folder and on s3s-fs, Redis, PostgreSQL, NDJSON), each through the same
//! epochs, crashes and recoveries, checking what a reader sees after each step.

mod conformance;
mod postgres;

use std::collections::BTreeMap;

use fred::prelude::{ClientLike, HashesInterface};
use fred::types::{ClusterHash, CustomCommand};
use weir::storage::{S3Options, io_runtime};
use xtask::servers::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server};

/// S3 options for the test server.
pub fn s3_options(server: &S3Server) -> S3Options {
    S3Options {
        endpoint: Some(server.endpoint()),
        region: Some("us-east-1".into()),
        allow_http: true,
        path_style: true,
        access_key_id: Some(S3_ACCESS_KEY.into()),
        secret_access_key: Some(S3_SECRET_KEY.into()),
    }
}

/// Every hash matching `pattern`, without weir's fence fields, plus a pseudo-field `(ttl)`:
/// `set` when the hash expires, `none` when it does not.
pub fn redis_hashes(url: &str, pattern: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    io_runtime().block_on(async {
        let client =
            fred::prelude::Builder::from_config(fred::prelude::Config::from_url(url).unwrap())
                .build()
                .unwrap();
        client.init().await.unwrap();
        let keys_command = CustomCommand::new_static("KEYS", ClusterHash::FirstKey, false);
        let keys: Vec<String> = client.custom(keys_command, vec![pattern]).await.unwrap();
        let mut hashes = BTreeMap::new();
        for key in keys {
            let mut fields: BTreeMap<String, String> = client.hgetall(&key).await.unwrap();
            fields.retain(|name, _| !name.starts_with("_weir"));
            let pttl = CustomCommand::new_static("PTTL", ClusterHash::FirstKey, false);
            let ttl: i64 = client.custom(pttl, vec![key.clone()]).await.unwrap();
            fields.insert("(ttl)".into(), if ttl > 0 { "set" } else { "none" }.into());
            hashes.insert(key, fields);
        }
        client.quit().await.unwrap();
        hashes
    })
}
