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

/// `cargo build` of plugins in the workspace at `dir`, for the wasm target with the plugin
/// profile, into the plugins' own build folder (without the caller's RUSTFLAGS).
fn plugin_build(dir: &Path) -> Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(dir)
        .args(["build", "--profile", PROFILE, "--target", WASM_TARGET])
        .env("CARGO_TARGET_DIR", target_dir().join("wasm-build"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    cmd
}

/// Where `plugin_build` leaves the component of package `name`.
fn built_component(name: &str) -> PathBuf {
    target_dir()
        .join("wasm-build")
        .join(WASM_TARGET)
        .join(PROFILE)
        .join(format!("{}.wasm", name.replace('-', "_")))
}

/// `component` with a custom section `name` appended: the same code under another sha256,
/// as a rebuild of unchanged source would give.
pub fn with_custom_section(component: &[u8], name: &str) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut body = Vec::new();
    leb128(name.len(), &mut body);
    body.extend_from_slice(name.as_bytes());
    let mut out = component.to_vec();
    out.push(0);
    leb128(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

/// Builds every plugin and returns the output folder. Cheap when nothing changed.
pub fn build_all() -> Result<PathBuf> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ensure_wasm_target()?;
    let crates = discover()?;
    let mut cmd = plugin_build(&workspace_root());
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
        let built = built_component(&c.name);
        let dest = wasm_path(&c.name);
        // Copy then rename, so a daemon watching the folder never sees half a file.
        let tmp = out.join(format!(".{}.wasm.tmp", c.name));
        std::fs::copy(&built, &tmp).with_context(|| format!("copying {}", built.display()))?;
        std::fs::rename(&tmp, &dest)?;
    }
    Ok(out)
}

/// Builds a variant of the plugin crate `name` the way a user makes a new version: its folder
/// is copied, the package renamed `variant`, and `edit` changes the copy. The copy builds in
/// a workspace of its own under `<target>/plugin-variants/<variant>` (the workspace manifest
/// with the copy as its only member), sharing the plugins' build folder. Returns the built
/// component.
pub fn build_variant(
    name: &str,
    variant: &str,
    edit: impl FnOnce(&Path) -> Result<()>,
) -> Result<PathBuf> {
    let _guard = BUILD_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    ensure_wasm_target()?;
    let source = discover()?
        .into_iter()
        .find(|c| c.name == name)
        .with_context(|| format!("no plugin crate named {name}"))?;
    let workspace = target_dir().join("plugin-variants").join(variant);
    let member = workspace.join(variant);
    if workspace.exists() {
        std::fs::remove_dir_all(&workspace)?;
    }
    copy_tree(&source.dir, &member)?;
    let manifest = member.join("Cargo.toml");
    let text = std::fs::read_to_string(&manifest)?;
    let renamed = text.replacen(
        &format!("name = \"{name}\""),
        &format!("name = \"{variant}\""),
        1,
    );
    if renamed == text {
        bail!("{} does not name package {name}", manifest.display());
    }
    std::fs::write(&manifest, renamed)?;
    edit(&member)?;
    std::fs::write(workspace.join("Cargo.toml"), variant_workspace(variant)?)?;
    std::fs::copy(
        workspace_root().join("Cargo.lock"),
        workspace.join("Cargo.lock"),
    )?;
    let status = plugin_build(&workspace)
        .args(["--package", variant])
        .status()
        .context("running cargo to build the plugin variant")?;
    if !status.success() {
        bail!("building {variant} for {WASM_TARGET} failed");
    }
    let built = built_component(variant);
    let out = workspace.join(format!("{variant}.wasm"));
    std::fs::copy(&built, &out).with_context(|| format!("copying {}", built.display()))?;
    Ok(out)
}

/// The workspace manifest with `member` as its only member and path dependencies made
/// absolute, so the copy builds against the same SDK, versions, lints and profiles.
fn variant_workspace(member: &str) -> Result<String> {
    let root = workspace_root();
    let mut manifest: toml::Table =
        toml::from_str(&std::fs::read_to_string(root.join("Cargo.toml"))?)?;
    let workspace = manifest
        .get_mut("workspace")
        .and_then(toml::Value::as_table_mut)
        .context("the root manifest has no [workspace]")?;
    workspace.insert("members".into(), toml::Value::Array(vec![member.into()]));
    if let Some(deps) = workspace
        .get_mut("dependencies")
        .and_then(toml::Value::as_table_mut)
    {
        for (_, dep) in deps.iter_mut() {
            if let Some(path) = dep.get_mut("path") {
                let absolute = root.join(path.as_str().unwrap_or_default());
                *path = toml::Value::String(absolute.to_string_lossy().into_owned());
            }
        }
    }
    Ok(toml::to_string(&manifest)?)
}

fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let path = entry.path();
        if path.file_name().is_some_and(|n| n == "target") {
            continue;
        }
        if entry.file_type()?.is_dir() {
            copy_tree(&path, &to.join(entry.file_name()))?;
        } else {
            std::fs::copy(&path, to.join(entry.file_name()))?;
        }
    }
    Ok(())
}
