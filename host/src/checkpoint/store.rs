//! Where checkpoints are kept, through `object_store`: a local folder by default, or any
//! S3-compatible store. The store's API is async; a small runtime of its own drives it so the
//! data path stays synchronous.

use std::sync::Arc;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, PutPayload};

use super::{CheckpointConfig, CheckpointError};

/// A checkpoint store.
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
    description: String,
    runtime: tokio::runtime::Runtime,
}

impl CheckpointStore {
    /// Opens the store the config names (creating a local folder if needed).
    pub fn open(config: &CheckpointConfig) -> Result<Self, CheckpointError> {
        let description = config.store.clone();
        let error = |reason: String| CheckpointError::Store {
            store: description.clone(),
            reason,
        };
        let (store, root): (Arc<dyn ObjectStore>, Path) = if let Some(rest) =
            config.store.strip_prefix("s3://")
        {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            let mut builder = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_allow_http(config.s3.allow_http)
                .with_virtual_hosted_style_request(!config.s3.path_style);
            if let Some(endpoint) = &config.s3.endpoint {
                builder = builder.with_endpoint(endpoint);
            }
            let region = config
                .s3
                .region
                .clone()
                .or_else(|| std::env::var("AWS_REGION").ok())
                .unwrap_or_else(|| "us-east-1".into());
            let store = builder
                .with_region(region)
                .build()
                .map_err(|e| error(e.to_string()))?;
            (Arc::new(store), Path::from(prefix))
        } else {
            let dir = config
                .store
                .strip_prefix("file://")
                .unwrap_or(&config.store);
            std::fs::create_dir_all(dir).map_err(|e| error(format!("creating {dir}: {e}")))?;
            let store = LocalFileSystem::new_with_prefix(dir).map_err(|e| error(e.to_string()))?;
            (Arc::new(store), Path::default())
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| error(e.to_string()))?;
        Ok(CheckpointStore {
            store,
            root,
            description,
            runtime,
        })
    }

    fn path(&self, key: &str) -> Path {
        key.split('/')
            .filter(|p| !p.is_empty())
            .fold(self.root.clone(), |path, part| path.child(part))
    }

    fn error(&self, key: &str, e: impl std::fmt::Display) -> CheckpointError {
        CheckpointError::Store {
            store: self.description.clone(),
            reason: format!("{key}: {e}"),
        }
    }

    /// Writes an object (atomically: readers see all of it or nothing).
    pub fn put(&self, key: &str, bytes: Vec<u8>) -> Result<(), CheckpointError> {
        let path = self.path(key);
        self.runtime
            .block_on(self.store.put(&path, PutPayload::from(bytes)))
            .map(|_| ())
            .map_err(|e| self.error(key, e))
    }

    /// Reads an object; `None` when it does not exist.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, CheckpointError> {
        let path = self.path(key);
        let result = self.runtime.block_on(async {
            match self.store.get(&path).await {
                Ok(found) => found.bytes().await.map(Some),
                Err(object_store::Error::NotFound { .. }) => Ok(None),
                Err(e) => Err(e),
            }
        });
        result
            .map(|b| b.map(|b| b.to_vec()))
            .map_err(|e| self.error(key, e))
    }

    /// Deletes an object; a missing one counts as deleted.
    pub fn delete(&self, key: &str) -> Result<(), CheckpointError> {
        let path = self.path(key);
        match self.runtime.block_on(self.store.delete(&path)) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error(key, e)),
        }
    }

    /// Keys of the objects directly under `prefix`, sorted.
    pub fn list(&self, prefix: &str) -> Result<Vec<String>, CheckpointError> {
        let path = self.path(prefix);
        let listing = self
            .runtime
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
        let config = CheckpointConfig {
            store: dir.path().join("ckpt").display().to_string(),
            ..CheckpointConfig::default()
        };
        let store = CheckpointStore::open(&config).unwrap();
        assert_eq!(store.get("g/t/0/a.ckpt").unwrap(), None);
        store.put("g/t/0/b.ckpt", b"2".to_vec()).unwrap();
        store.put("g/t/0/a.ckpt", b"1".to_vec()).unwrap();
        assert_eq!(store.get("g/t/0/a.ckpt").unwrap(), Some(b"1".to_vec()));
        assert_eq!(
            store.list("g/t/0").unwrap(),
            vec!["g/t/0/a.ckpt".to_string(), "g/t/0/b.ckpt".to_string()]
        );
        store.delete("g/t/0/a.ckpt").unwrap();
        store.delete("g/t/0/a.ckpt").unwrap();
        assert_eq!(store.list("g/t/0").unwrap().len(), 1);
        assert!(store.list("g/none").unwrap().is_empty());
    }
}
