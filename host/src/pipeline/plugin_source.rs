//! Where plugin files come from: a local folder, or an object-store prefix (`s3://bucket/dir`),
//! read by plugin name, with a version token per file for polling.

use std::path::{Path, PathBuf};

use crate::storage::{S3Options, Storage};

/// A place plugin files are read from, by plugin name (`<name>.wasm`).
pub enum PluginSource {
    /// A folder on this machine's file system (or a mounted volume).
    Folder(PathBuf),
    /// An object-store prefix.
    Store(Storage),
}

impl std::fmt::Debug for PluginSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl PluginSource {
    /// `dir` as a source: an `s3://` URL opens the bucket with `s3`, anything else is a folder.
    pub fn open(dir: &Path, s3: &S3Options) -> Result<Self, String> {
        match dir.to_str().filter(|d| d.starts_with("s3://")) {
            Some(url) => Storage::open(url, s3)
                .map(PluginSource::Store)
                .map_err(|e| e.to_string()),
            None => Ok(PluginSource::Folder(dir.to_path_buf())),
        }
    }

    /// The folder or URL, for messages.
    pub fn describe(&self) -> String {
        match self {
            PluginSource::Folder(dir) => dir.display().to_string(),
            PluginSource::Store(store) => store.description().to_string(),
        }
    }

    /// Where the plugin `name` is, for messages.
    pub fn location(&self, name: &str) -> String {
        match self {
            PluginSource::Folder(dir) => dir.join(file_name(name)).display().to_string(),
            PluginSource::Store(store) => format!("{}/{}", store.description(), file_name(name)),
        }
    }

    /// The folder, when the source is one (the watcher's to watch).
    pub fn folder(&self) -> Option<&Path> {
        match self {
            PluginSource::Folder(dir) => Some(dir),
            PluginSource::Store(_) => None,
        }
    }

    /// The bytes of the plugin `name`; `None` when it does not exist.
    pub fn read(&self, name: &str) -> Result<Option<Vec<u8>>, String> {
        match self {
            PluginSource::Folder(dir) => match std::fs::read(dir.join(file_name(name))) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read {}: {e}", self.location(name))),
            },
            PluginSource::Store(store) => store
                .get(&file_name(name))
                .map(|found| found.map(|bytes| bytes.to_vec()))
                .map_err(|e| e.to_string()),
        }
    }

    /// A token that changes whenever the plugin `name` does (size and modification time, plus
    /// the object's ETag in a store); `None` when it does not exist.
    pub fn version(&self, name: &str) -> Result<Option<String>, String> {
        match self {
            PluginSource::Folder(dir) => match std::fs::metadata(dir.join(file_name(name))) {
                Ok(meta) => Ok(Some(format!("{} {:?}", meta.len(), meta.modified().ok()))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read {}: {e}", self.location(name))),
            },
            PluginSource::Store(store) => {
                store.version(&file_name(name)).map_err(|e| e.to_string())
            }
        }
    }
}

fn file_name(name: &str) -> String {
    format!("{name}.wasm")
}
