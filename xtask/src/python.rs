//! Python virtual environments of the tests: one with DuckDB, the independent Parquet reader
//! the tests use to check what weir wrote, kubernetes-validate, which checks the Kubernetes
//! manifests against the API's schemas (bundled, so no cluster or network is needed), and the
//! Datadog Agent's OpenMetrics check; one with Apache Airflow, which runs the example DAGs;
//! one with componentize-py and pytest, which build and test the Python plugins.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

use anyhow::{Context, Result, bail};

use crate::paths::target_dir;

/// The PyPI packages the venv holds.
pub const PACKAGES: &[&str] = &[
    "duckdb==1.5.6",
    "kubernetes-validate==1.37.0",
    // The Datadog Agent's OpenMetrics check, run against weir's /metrics, with what its
    // `[deps]` extra would pin (that extra pins versions the package index may not have).
    "datadog-checks-base==38.7.0",
    "binary==1.0.2",
    "cachetools==8.0.3",
    "lazy-loader==0.6",
    "prometheus-client==0.26.0",
    "pydantic==2.14.4",
    "python-dateutil==4.0.0",
    "requests==2.34.2",
    "requests-unixsocket2==1.0.1",
    "simplejson==4.3.0",
    "wrapt==2.5.2",
    // The OTLP receiver of the telemetry test, built from the official protobuf definitions.
    "opentelemetry-proto==1.45.2",
    "protobuf==6.33.6",
    // The independent reader of the Delta tables weir writes (delta-rs's Python package).
    "deltalake==1.6.6",
    // Confluent's own client and serializers, which write the Avro, Protobuf and JSON Schema
    // records weir reads, with what its schema-registry and format extras need.
    "confluent-kafka==2.16.2",
    "fastavro==1.12.1",
    "httpx==0.28.1",
    "authlib==1.6.6",
    "attrs==25.4.0",
    "googleapis-common-protos==1.76.0",
    "jsonschema==4.26.0",
];

/// The PyPI packages of the Airflow venv: Airflow itself (its own venv: it pins much of
/// what the other packages need newer) and DuckDB for the report the example DAG runs.
pub const AIRFLOW_PACKAGES: &[&str] = &["apache-airflow==2.10.5", "duckdb==1.5.6"];

/// The PyPI packages of the Python plugins' venv: the component builder the Python SDK is
/// made for, and pytest for the SDK's and the plugins' own tests.
pub const GUEST_PACKAGES: &[&str] = &["componentize-py==0.25.1", "pytest==8.4.2"];

static VENV_LOCK: Mutex<()> = Mutex::new(());

/// The test venv's Python interpreter, creating the venv and installing [`PACKAGES`] first
/// if needed. Fails with the command to run by hand when Python or pip is missing.
pub fn venv_python() -> Result<PathBuf> {
    python_with("py-venv", PACKAGES)
}

/// The Airflow venv's Python interpreter (its `bin/` holds `airflow`), made like
/// [`venv_python`]'s.
pub fn airflow_python() -> Result<PathBuf> {
    python_with("airflow-venv", AIRFLOW_PACKAGES)
}

/// The Python plugins' venv interpreter (its `bin/` holds `componentize-py`), made like
/// [`venv_python`]'s.
pub fn guest_python() -> Result<PathBuf> {
    python_with("guest-venv", GUEST_PACKAGES)
}

fn python_with(name: &str, packages: &[&str]) -> Result<PathBuf> {
    let _guard = VENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let venv = target_dir().join(name);
    let python = venv.join("bin").join("python");
    let marker = venv.join(".weir-ready");
    // The marker lists what was installed: a venv made for fewer packages is completed.
    if std::fs::read_to_string(&marker).is_ok_and(|made| made == packages.join("\n")) {
        return Ok(python);
    }
    let hint = format!(
        "install Python 3 with venv and pip (Debian: `apt-get install python3-venv`), then run \
         `python3 -m venv target/{name} && target/{name}/bin/pip install {}`",
        packages.join(" ")
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
        .args(packages)
        .status()
        .context(hint.clone())?;
    if !status.success() {
        bail!("installing {packages:?} into the venv failed: {hint}");
    }
    std::fs::write(&marker, packages.join("\n"))?;
    Ok(python)
}
