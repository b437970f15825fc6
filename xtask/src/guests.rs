//! Python and JavaScript plugin projects built the way a user builds them, with `weir plugin
//! build`, after installing their tools (the Python plugins' venv, the npm workspace).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::paths::workspace_root;

/// Builds the plugin project `project` (a folder of the workspace) with the `weir` binary at
/// `weir`; returns the component.
pub fn build(weir: &Path, project: &str) -> Result<PathBuf> {
    let python = crate::python::guest_python()?;
    crate::node::npm_workspace()?;
    let out = Command::new(weir)
        .args(["plugin", "build", "--path"])
        .arg(workspace_root().join(project))
        .env(
            "WEIR_COMPONENTIZE_PY",
            python.with_file_name("componentize-py"),
        )
        .output()
        .with_context(|| format!("running {}", weir.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "weir plugin build {project} failed:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("built ")?.split_once(": "))
        .map(|(_, path)| PathBuf::from(path))
        .with_context(|| format!("weir plugin build {project} printed no component: {stdout}"))
}
