//! `weir plugin deploy`: a component into a plugin folder or an `s3://` prefix the way a
//! running weir expects it: whole at once (a rename in a folder, one upload to a bucket), and
//! only once it type-checks as a weir plugin.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::runtime::{EngineSettings, PluginEngine};
use crate::storage::{S3Options, Storage};

/// Where a component goes, with the S3 options of an `s3://` destination.
#[derive(Debug)]
pub struct Destination {
    /// A plugin folder or an `s3://bucket/dir` prefix.
    pub to: String,
    /// Options of an `s3://` destination (credentials from the environment, `AWS_*`).
    pub s3: S3Options,
}

/// Checks that `component` is a weir plugin, then installs it as `<name>.wasm` at the
/// destination; returns where it went.
pub fn deploy(component: &Path, name: &str, destination: &Destination) -> Result<String> {
    let bytes =
        std::fs::read(component).with_context(|| format!("reading {}", component.display()))?;
    let engine = PluginEngine::new(&EngineSettings::default())?;
    engine.load_bytes(name, &bytes).with_context(|| {
        format!(
            "{} is not a weir plugin; nothing deployed",
            component.display()
        )
    })?;
    let file = format!("{name}.wasm");
    let to = destination.to.trim_end_matches('/');
    if to.starts_with("s3://") {
        let store = Storage::open(to, &destination.s3)?;
        store.put(&file, bytes)?;
        return Ok(format!("{to}/{file}"));
    }
    let dir = Path::new(to);
    if !dir.is_dir() {
        bail!(
            "{} is not a folder (the plugin_dir of a pipeline)",
            dir.display()
        );
    }
    // Written beside the target and renamed over it: a watching weir never reads half a file.
    let staged = dir.join(format!(".{file}.tmp"));
    std::fs::write(&staged, &bytes).with_context(|| format!("writing {}", staged.display()))?;
    let target = dir.join(&file);
    std::fs::rename(&staged, &target)
        .with_context(|| format!("renaming {} to {}", staged.display(), target.display()))?;
    Ok(target.display().to_string())
}
