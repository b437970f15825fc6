//! Builds every plugin crate (bundled, example and test plugins) for `wasm32-wasip2` in release
//! mode and copies each component to `<target>/plugins/<name>.wasm`.
//!
//! The build uses its own target directory under `<target>/wasm-build`, so a test that calls
//! it while cargo holds the main target directory's lock does not wait on itself.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use crate::paths::{target_dir, workspace_root};

/// Folders (relative to the workspace root) whose subfolders are plugin crates.
pub const PLUGIN_DIRS: &[&str] = &["plugins", "examples/plugins", "tests/plugins"];

/// The cargo profile plugins are built with (see the workspace `Cargo.toml`).
pub const PROFILE: &str = "plugin";

/// The wasm target plugins are built for.
pub const WASM_TARGET: &str = "wasm32-wasip2";

static BUILD_LOCK: Mutex<()> = Mutex::new(());

/// A plugin crate found in the workspace.
#[derive(Debug, Clone)]
pub struct PluginCrate {
    /// Package name, also the `.wasm` file name.
    pub name: String,
    /// Crate folder.
    pub dir: PathBuf,
}

/// Every plugin crate under [`PLUGIN_DIRS`].
pub fn discover() -> Result<Vec<PluginCrate>> {
    let root = workspace_root();
    let mut found = Vec::new();
    for dir in PLUGIN_DIRS {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            let manifest = path.join("Cargo.toml");
            if manifest.is_file() {
                found.push(PluginCrate {
                    name: package_name(&manifest)?,
                    dir: path,
                });
            }
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

fn package_name(manifest: &Path) -> Result<String> {
    let text = std::fs::read_to_string(manifest)
        .with_context(|| format!("reading {}", manifest.display()))?;
    text.lines()
        .map(str::trim)
        .find_map(|l| {
            l.strip_prefix("name")
                .map(str::trim)
                .and_then(|l| l.strip_prefix('='))
        })
        .map(|v| v.trim().trim_matches('"').to_string())
        .with_context(|| format!("no package name in {}", manifest.display()))
}

/// Where built components go.
pub fn output_dir() -> PathBuf {
    target_dir().join("plugins")
}

/// The path of the built component `name`.
pub fn wasm_path(name: &str) -> PathBuf {
    output_dir().join(format!("{name}.wasm"))
}

/// Installs the wasm target through rustup when it is missing.
pub fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output();
    if let Ok(out) = &installed
        && String::from_utf8_lossy(&out.stdout)
            .lines()
            .any(|l| l.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    let status = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .context("running `rustup target add wasm32-wasip2` (is rustup installed?)")?;
    if !status.success() {
        bail!("`rustup target add {WASM_TARGET}` failed");
    }
    Ok(())
}

/// Builds every plugin and returns the output folder. Cheap when nothing changed.
pub fn build_all() -> Result<PathBuf> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ensure_wasm_target()?;
    let crates = discover()?;
    let build_dir = target_dir().join("wasm-build");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args(["build", "--profile", PROFILE, "--target", WASM_TARGET])
        .env("CARGO_TARGET_DIR", &build_dir)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    for c in &crates {
        cmd.args(["--package", &c.name]);
    }
    let status = cmd.status().context("running cargo to build the plugins")?;
    if !status.success() {
        bail!("building the plugins for {WASM_TARGET} failed");
    }
    let out = output_dir();
    std::fs::create_dir_all(&out)?;
    for c in &crates {
        let built = build_dir
            .join(WASM_TARGET)
            .join(PROFILE)
            .join(format!("{}.wasm", c.name.replace('-', "_")));
        let dest = wasm_path(&c.name);
        // Copy then rename, so a daemon watching the folder never sees half a file.
        let tmp = out.join(format!(".{}.wasm.tmp", c.name));
        std::fs::copy(&built, &tmp).with_context(|| format!("copying {}", built.display()))?;
        std::fs::rename(&tmp, &dest)?;
    }
    Ok(out)
}
