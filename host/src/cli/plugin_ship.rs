//! `weir plugin build` and `weir plugin deploy`: a plugin crate to its component, and a
//! component into a plugin folder or an `s3://` prefix the way a running weir expects it: whole
//! at once (a rename in a folder, one upload to a bucket), and only once it type-checks as a
//! weir plugin.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::runtime::{EngineSettings, PluginEngine};
use crate::storage::{S3Options, Storage};

const WASM_TARGET: &str = "wasm32-wasip2";

/// A built component and the plugin name it is deployed under (its package's name).
#[derive(Debug)]
pub struct Built {
    /// The plugin name: `<name>.wasm` in a plugin folder.
    pub name: String,
    /// The component file.
    pub component: PathBuf,
}

/// Builds the crate at `crate_dir` for the wasm target in release; the component it made.
pub fn build(crate_dir: &Path) -> Result<Built> {
    let manifest = crate_dir.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest).with_context(|| {
        format!(
            "{} is not a plugin crate (no Cargo.toml): pass --path CRATE",
            crate_dir.display()
        )
    })?;
    let package: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} does not parse", manifest.display()))?;
    let name = package
        .get("package")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{} has no [package] name", manifest.display()))?
        .to_string();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut child = Command::new(&cargo)
        .args(["build", "--release", "--target", WASM_TARGET])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(crate_dir)
        .stdout(Stdio::piped())
        .spawn()
        .with_context(|| format!("running `{cargo} build` (is Rust installed with rustup?)"))?;
    let mut component = None;
    if let Some(stdout) = child.stdout.take() {
        for line in std::io::BufReader::new(stdout).lines() {
            let message: serde_json::Value = serde_json::from_str(&line?).unwrap_or_default();
            let target = message["target"]["name"].as_str().unwrap_or_default();
            let ours = target == name || target == name.replace('-', "_");
            if message["reason"] != "compiler-artifact" || !ours {
                continue;
            }
            let files = message["filenames"].as_array().into_iter().flatten();
            if let Some(wasm) = files
                .filter_map(|f| f.as_str())
                .find(|f| f.ends_with(".wasm"))
            {
                component = Some(PathBuf::from(wasm));
            }
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "`cargo build --release --target {WASM_TARGET}` failed in {} (a missing target: `rustup target add {WASM_TARGET}`)",
            crate_dir.display()
        );
    }
    let component = component.with_context(|| {
        format!("cargo built no .wasm for {name}: its [lib] needs crate-type = [\"cdylib\"]")
    })?;
    Ok(Built { name, component })
}

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
