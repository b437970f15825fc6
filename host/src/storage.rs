//! Object storage for checkpoints and the lake, through `object_store`: a local folder
//! (`out/lake`, `file:///abs/path`) or an S3-compatible bucket (`s3://bucket/prefix`). The
//! API is async; [`io_runtime`] drives it so the data path stays synchronous.

use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde::Deserialize;

/// The runtime that drives every async client of the host (object stores, Redis): two
/// worker threads, started on first use.
#[allow(clippy::expect_used, reason = "without threads there is no I/O at all")]
pub fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("weir-io")
            .enable_all()
            .build()
            .expect("the I/O runtime starts")
    })
}

/// Options of an S3-compatible store; credentials come from the environment (`AWS_*`) or the
/// standard AWS chain.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Options {
    /// Endpoint URL of an S3-compatible server, e.g. `http://127.0.0.1:9000`.
    pub endpoint: Option<String>,
    /// Region (default from `AWS_REGION`, else `us-east-1`).
    pub region: Option<String>,
    /// Allow `http://` endpoints.
    #[serde(default)]
    pub allow_http: bool,
    /// Path-style requests (`endpoint/bucket/key`), which most S3-compatible servers need.
    #[serde(default = "default_true")]
    pub path_style: bool,
    /// Access key id (`"${NAME}"` in the config reads the variable `NAME`). Default: `AWS_ACCESS_KEY_ID`,
    /// else the standard AWS chain.
    #[serde(default)]
    pub access_key_id: Option<String>,
    /// Secret access key (`"${NAME}"` in the config reads the variable `NAME`).
    #[serde(default)]
    pub secret_access_key: Option<String>,
}

fn default_true() -> bool {
    true
}

/// Checks a store location; the error says why.
pub fn validate_location(location: &str) -> Result<(), String> {
    if location.trim().is_empty() {
        return Err("must name a folder or a URL".into());
    }
    if let Some(rest) = location.strip_prefix("s3://")
        && rest.split('/').next().is_none_or(str::is_empty)
    {
        return Err("an s3:// URL needs a bucket".into());
    }
    Ok(())
}

/// A storage operation failed.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{store}: {key}: {reason}")]
pub struct StorageError {
    /// The store's URL or folder.
    pub store: String,
    /// The object.
    pub key: String,
    /// What failed.
    pub reason: String,
}

/// A bucket or folder, with blocking operations on keys relative to its root.
#[derive(Clone)]
pub struct Storage {
    store: Arc<dyn ObjectStore>,
    root: Path,
    description: String,
}

impl Storage {
    /// Opens `location` (creating a local folder if needed).
    pub fn open(location: &str, s3: &S3Options) -> Result<Self, StorageError> {
        crate::tls::install_crypto_provider();
        let error = |reason: String| StorageError {
            store: location.to_string(),
            key: String::new(),
            reason,
        };
        validate_location(location).map_err(error)?;
        let (store, root): (Arc<dyn ObjectStore>, Path) =
            if let Some(rest) = location.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_allow_http(s3.allow_http)
                    .with_virtual_hosted_style_request(!s3.path_style);
                if let Some(endpoint) = &s3.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &s3.access_key_id {
                    builder = builder.with_access_key_id(key);
                }
                if let Some(secret) = &s3.secret_access_key {
                    builder = builder.with_secret_access_key(secret);
                }
                let region = s3
                    .region
                    .clone()
                    .or_else(|| std::env::var("AWS_REGION").ok())
                    .unwrap_or_else(|| "us-east-1".into());
                // A couple of quick retries for transient errors; the sinks' breakers and the
                // checkpoint protocol own the longer policy.
                let retry = object_store::RetryConfig {
                    max_retries: 2,
                    retry_timeout: std::time::Duration::from_secs(10),
                    ..Default::default()
                };
                let store = builder
                    .with_retry(retry)
                    .with_region(region)
                    .build()
                    .map_err(|e| error(e.to_string()))?;
                (Arc::new(store), Path::from(prefix))
            } else {
                let dir = location.strip_prefix("file://").unwrap_or(location);
                std::fs::create_dir_all(dir).map_err(|e| error(format!("creating {dir}: {e}")))?;
                // A folder emptied by a delete (a file's staged parts, once published) goes too.
                let store = LocalFileSystem::new_with_prefix(dir)
                    .map_err(|e| error(e.to_string()))?
                    .with_automatic_cleanup(true);
                (Arc::new(store), Path::default())
            };
        Ok(Storage {
            store,
            root,
            description: location.to_string(),
        })
    }

    /// A store in memory, for unit tests of what is built on storage.
    #[cfg(test)]
    pub fn in_memory() -> Self {
        Storage {
            store: Arc::new(object_store::memory::InMemory::new()),
            root: Path::default(),
            description: "memory".into(),
        }
    }

    fn path(&self, key: &str) -> Path {
        key.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |path, part| path.join(part))
    }

    fn error(&self, key: &str, e: impl std::fmt::Display) -> StorageError {
        StorageError {
            store: self.description.clone(),
            key: key.to_string(),
            reason: e.to_string(),
        }
    }

    /// Writes an object atomically: readers see all of it or nothing. The payload may be
    /// several parts (`PutPayload::from_iter`), written in order without joining them first.
    pub fn put(&self, key: &str, payload: impl Into<PutPayload>) -> Result<(), StorageError> {
        let path = self.path(key);
        io_runtime()
            .block_on(self.store.put(&path, payload.into()))
            .map(|_| ())
            .map_err(|e| self.error(key, e))
    }

    /// Reads an object; `None` when it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Bytes>, StorageError> {
        let path = self.path(key);
        io_runtime()
            .block_on(async {
                match self.store.get(&path).await {
                    Ok(found) => found.bytes().await.map(Some),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(e),
                }
            })
            .map_err(|e| self.error(key, e))
    }

    /// Whether an object exists.
    pub fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(self.size(key)?.is_some())
    }

    /// An object's size in bytes; `None` when it does not exist.
    pub fn size(&self, key: &str) -> Result<Option<u64>, StorageError> {
        let path = self.path(key);
        match io_runtime().block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// A token that changes whenever the object does (its ETag, size and modification time);
    /// `None` when it does not exist.
    pub fn version(&self, key: &str) -> Result<Option<String>, StorageError> {
        let path = self.path(key);
        match io_runtime().block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(format!(
                "{} {} {}",
                meta.e_tag.unwrap_or_default(),
                meta.size,
                meta.last_modified.timestamp_nanos_opt().unwrap_or_default()
            ))),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Copies an object (on S3, without downloading it).
    pub fn copy(&self, from: &str, to: &str) -> Result<(), StorageError> {
        io_runtime()
            .block_on(self.store.copy(&self.path(from), &self.path(to)))
            .map_err(|e| self.error(from, e))
    }

    /// Deletes an object; a missing one counts as deleted.
    pub fn delete(&self, key: &str) -> Result<(), StorageError> {
        let path = self.path(key);
        match io_runtime().block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Keys of the objects directly under `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let path = self.path(prefix);
        let listing = io_runtime()
            .block_on(self.store.list_with_delimiter(Some(&path)))
            .map_err(|e| self.error(prefix, e))?;
        let mut keys: Vec<String> = listing
            .objects
            .into_iter()
            .filter_map(|o| o.location.filename().map(|f| format!("{prefix}/{f}")))
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// Keys of every object under `prefix`, at any depth, relative to the root, sorted.
    pub fn list_all(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        use futures::TryStreamExt;
        let path = self.path(prefix);
        let objects: Vec<object_store::ObjectMeta> = io_runtime()
            .block_on(self.store.list(Some(&path)).try_collect())
            .map_err(|e| self.error(prefix, e))?;
        let root = self.root.as_ref();
        let mut keys: Vec<String> = objects
            .into_iter()
            .map(|o| {
                let full = o.location.as_ref();
                full.strip_prefix(root)
                    .unwrap_or(full)
                    .trim_start_matches('/')
                    .to_string()
            })
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// For a location in a bucket: the bucket's store and the location's `s3://` URL, for a
    /// library that addresses the objects itself (the Delta log). `None` for a local folder.
    pub fn bucket(&self) -> Option<(Arc<dyn ObjectStore>, url::Url)> {
        let location = self.description.strip_prefix("s3://")?;
        let url = url::Url::parse(&format!("s3://{}/", location.trim_end_matches('/'))).ok()?;
        Some((self.store.clone(), url))
    }

    /// The store's URL or folder, for logs.
    pub fn description(&self) -> &str {
        &self.description
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_store_puts_gets_lists_and_deletes() {
        let dir = tempfile::tempdir().unwrap();
        let location = dir.path().join("store").display().to_string();
        let store = Storage::open(&location, &S3Options::default()).unwrap();
        assert_eq!(store.get("g/t/0/a").unwrap(), None);
        store.put("g/t/0/b", b"2".to_vec()).unwrap();
        store.put("g/t/0/a", b"1".to_vec()).unwrap();
        store.put("g/t/1/deep/c", b"3".to_vec()).unwrap();
        assert_eq!(store.get("g/t/0/a").unwrap().as_deref(), Some(&b"1"[..]));
        assert!(store.exists("g/t/0/a").unwrap());
        assert_eq!(store.list("g/t/0").unwrap(), ["g/t/0/a", "g/t/0/b"]);
        assert_eq!(
            store.list_all("g").unwrap(),
            ["g/t/0/a", "g/t/0/b", "g/t/1/deep/c"]
        );
        store.delete("g/t/0/a").unwrap();
        store.delete("g/t/0/a").unwrap();
        assert!(!store.exists("g/t/0/a").unwrap());
        assert_eq!(store.list("g/t/0").unwrap().len(), 1);
        assert!(store.list("g/none").unwrap().is_empty());
        // Deleting the last object of a folder removes the folders it empties, up to the root.
        store.delete("g/t/1/deep/c").unwrap();
        assert!(!dir.path().join("store/g/t/1").exists());
        assert!(dir.path().join("store/g/t/0").exists());
        assert!(Storage::open("s3://", &S3Options::default()).is_err());
    }
}
