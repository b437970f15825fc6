//! A Python virtual environment with DuckDB, the independent Parquet reader the tests use to
//! check what weir wrote, and kubernetes-validate, which checks the Kubernetes manifests
//! against the API's schemas (bundled, so no cluster or network is needed).

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use crate::paths::target_dir;

/// The PyPI packages the venv holds.
pub const PACKAGES: &[&str] = &["duckdb==1.5.6", "kubernetes-validate==1.37.0"];

static VENV_LOCK: Mutex<()> = Mutex::new(());

/// The venv's Python interpreter, creating the venv and installing [`PACKAGES`] first if
/// needed. Fails with the command to run by hand when Python or pip is missing.
pub fn venv_python() -> Result<PathBuf> {
    let _guard = VENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let venv = target_dir().join("py-venv");
    let python = venv.join("bin").join("python");
    let marker = venv.join(".weir-ready");
    // The marker lists what was installed: a venv made for fewer packages is completed.
    if std::fs::read_to_string(&marker).is_ok_and(|made| made == PACKAGES.join("\n")) {
        return Ok(python);
    }
    let hint = format!(
        "install Python 3 with venv and pip (Debian: `apt-get install python3-venv`), then run \
         `python3 -m venv target/py-venv && target/py-venv/bin/pip install {}`",
        PACKAGES.join(" ")
    );
    let status = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .context(hint.clone())?;
    if !status.success() {
        bail!("creating the Python venv failed: {hint}");
    }
    let status = Command::new(&python)
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
        ])
        .args(PACKAGES)
        .status()
        .context(hint.clone())?;
    if !status.success() {
        bail!("installing {PACKAGES:?} into the venv failed: {hint}");
    }
    std::fs::write(&marker, PACKAGES.join("\n"))?;
    Ok(python)
}
