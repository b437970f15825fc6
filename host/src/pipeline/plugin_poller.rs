//! Polls a [`PluginSource`] every `[plugins] poll_interval` (inotify does not see objects in a
//! bucket, nor files that other clients of a network volume write) and hands each stage's
//! plugin that changed to the [`PluginRegistry`], under the same rules as a file the folder
//! watcher saw.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::plugin_source::PluginSource;
use super::plugins::PluginRegistry;

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
