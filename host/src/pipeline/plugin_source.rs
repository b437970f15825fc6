//! Where plugin files come from: a local folder, or an object-store prefix (`s3://bucket/dir`)
//! that [`PluginPoller`] checks every `[plugins] poll_interval` (inotify does not see objects,
//! nor files that other clients of a network volume write). A new version found either way goes
//! through the same [`PluginRegistry`] rules as a file the folder watcher saw.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::plugins::PluginRegistry;
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

/// A thread that checks the stages' plugin files every interval and hands each one that
/// changed to the registry. Dropping it stops the thread.
pub struct PluginPoller {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for PluginPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginPoller")
    }
}

impl PluginPoller {
    /// Starts polling `source` every `interval` for the plugins the registry's stages run.
    pub fn start(
        registry: Arc<PluginRegistry>,
        source: Arc<PluginSource>,
        interval: Duration,
    ) -> std::io::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let mut names: Vec<String> = registry
            .slots()
            .iter()
            .map(|s| s.plugin().to_string())
            .collect();
        names.sort();
        names.dedup();
        // What was loaded at start is the baseline: only later changes are new versions.
        let mut seen: HashMap<String, Option<String>> = names
            .iter()
            .map(|n| (n.clone(), source.version(n).ok().flatten()))
            .collect();
        let described = source.describe();
        let thread = {
            let stop = stop.clone();
            std::thread::Builder::new()
                .name("weir-plugin-poll".into())
                .spawn(move || {
                    crate::runtime::lower_thread_priority();
                    while !sleep_unless_stopped(&stop, interval) {
                        for name in &names {
                            poll_one(&registry, &source, name, &mut seen);
                        }
                    }
                })?
        };
        tracing::info!(source = %described, ?interval, "Polling the plugin source for new versions.");
        Ok(PluginPoller {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for PluginPoller {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sleeps `interval` in short steps; returns whether the poller was stopped meanwhile.
fn sleep_unless_stopped(stop: &AtomicBool, interval: Duration) -> bool {
    let step = Duration::from_millis(50);
    let mut slept = Duration::ZERO;
    while slept < interval {
        if stop.load(Ordering::Relaxed) {
            return true;
        }
        std::thread::sleep(step.min(interval - slept));
        slept += step;
    }
    stop.load(Ordering::Relaxed)
}

/// Checks one plugin; a changed file is read and reloaded. A source that cannot be reached is
/// logged and tried again at the next poll (the running version stays).
fn poll_one(
    registry: &PluginRegistry,
    source: &PluginSource,
    name: &str,
    seen: &mut HashMap<String, Option<String>>,
) {
    let version = match source.version(name) {
        Ok(version) => version,
        Err(e) => {
            tracing::warn!(plugin = %name, error = %e, "Cannot check the plugin source; the running version stays.");
            return;
        }
    };
    if seen.get(name) == Some(&version) {
        return;
    }
    match source.read(name) {
        Ok(Some(bytes)) => {
            registry.reload_bytes(name, &bytes);
        }
        Ok(None) => {
            tracing::info!(plugin = %name, "Plugin file removed; the running version stays.");
        }
        Err(e) => {
            tracing::warn!(plugin = %name, error = %e, "Cannot read the new plugin version; the running version stays.");
            return;
        }
    }
    seen.insert(name.to_string(), version);
}
