//! The JavaScript side of the tests: `npm ci` at the workspace root installs the npm
//! workspace (the JavaScript SDK with its build tools, componentize-js and esbuild, and the
//! JavaScript bot filter, linked to the SDK) into `node_modules`.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use crate::paths::workspace_root;

static NPM_LOCK: Mutex<()> = Mutex::new(());

/// The workspace's `node_modules/.bin`, after `npm ci` if the lockfile changed since the last
/// install. Fails with the install command when npm is missing.
pub fn npm_workspace() -> Result<PathBuf> {
    let _guard = NPM_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let root = workspace_root();
    let modules = root.join("node_modules");
    let marker = modules.join(".weir-ready");
    let lock = std::fs::read_to_string(root.join("package-lock.json"))
        .context("reading package-lock.json")?;
    if std::fs::read_to_string(&marker).is_ok_and(|made| made == lock) {
        return Ok(modules.join(".bin"));
    }
    let hint = "install Node.js with npm (Debian: `apt-get install nodejs npm`), then run `npm ci` \
                in the workspace root";
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&root)
        .status()
        .context(hint)?;
    if !status.success() {
        bail!("`npm ci` failed: {hint}");
    }
    std::fs::write(&marker, lock)?;
    Ok(modules.join(".bin"))
}
