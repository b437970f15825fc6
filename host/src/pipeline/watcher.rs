//! Watches the plugin folder with `notify` and hands each changed `<name>.wasm` to the
//! [`PluginRegistry`] once the file has been quiet for the debounce time, or at once when it
//! was renamed into place (a rename is atomic: the file is whole), on the watcher's own
//! thread: compiling never runs on the data path.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use notify::event::{ModifyKind, RenameMode};
use notify::{EventKind, RecursiveMode, Watcher};

use super::plugins::PluginRegistry;

/// How long a file must be quiet before it is loaded: a copy in progress keeps writing.
pub const DEBOUNCE: Duration = Duration::from_millis(200);

/// A running watch; dropping it stops the watcher and its thread.
pub struct PluginWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl std::fmt::Debug for PluginWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PluginWatcher")
    }
}

fn is_plugin_file(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
}

impl PluginWatcher {
    /// Watches `dir`; changes go to `registry` after `debounce` without further events.
    pub fn start(
        registry: Arc<PluginRegistry>,
        dir: &Path,
        debounce: Duration,
    ) -> notify::Result<Self> {
        let (events, changes) = mpsc::channel();
        let mut watcher = notify::recommended_watcher(events)?;
        watcher.watch(dir, RecursiveMode::NonRecursive)?;
        std::thread::Builder::new()
            .name("weir-plugins".into())
            .spawn(move || {
                crate::runtime::lower_thread_priority();
                debounce_loop(&changes, &registry, debounce);
            })
            .map_err(|e| notify::Error::generic(&format!("cannot start the watcher: {e}")))?;
        tracing::info!(dir = %dir.display(), "Watching the plugin folder for new versions.");
        Ok(PluginWatcher { _watcher: watcher })
    }
}

/// Collects changed plugin files and reloads each once it has been quiet for `debounce`.
/// Ends when the watcher is dropped.
fn debounce_loop(
    changes: &mpsc::Receiver<notify::Result<notify::Event>>,
    registry: &PluginRegistry,
    debounce: Duration,
) {
    let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
    loop {
        let wait = pending
            .values()
            .map(|last| (*last + debounce).saturating_duration_since(Instant::now()))
            .min()
            .unwrap_or(Duration::from_secs(3600));
        match changes.recv_timeout(wait) {
            Ok(Ok(event)) => {
                if matches!(event.kind, EventKind::Access(_)) {
                    continue;
                }
                // The file a rename lands on is complete: it is due now. Its other events
                // (a rename's source, writes) wait for quiet.
                let renamed_to = match event.kind {
                    EventKind::Modify(ModifyKind::Name(RenameMode::To)) => event.paths.first(),
                    EventKind::Modify(ModifyKind::Name(RenameMode::Both)) => event.paths.get(1),
                    _ => None,
                }
                .cloned();
                for path in event.paths.into_iter().filter(|p| is_plugin_file(p)) {
                    let now = Instant::now();
                    let at = if renamed_to.as_ref() == Some(&path) {
                        now.checked_sub(debounce).unwrap_or(now)
                    } else {
                        now
                    };
                    pending.insert(path, at);
                }
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "Watching the plugin folder failed."),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let quiet: Vec<PathBuf> = pending
            .iter()
            .filter(|(_, last)| last.elapsed() >= debounce)
            .map(|(path, _)| path.clone())
            .collect();
        for path in quiet {
            pending.remove(&path);
            registry.reload_file(&path);
        }
    }
}
