//! `weir plugin build`: a plugin project to its component. A Rust crate (`Cargo.toml`) builds
//! with cargo for `wasm32-wasip2`; a Python project (`pyproject.toml` with `[tool.weir]`) with
//! componentize-py; a JavaScript project (`package.json` with a `weir` section) with the
//! `weir-js` builder of the JavaScript SDK (esbuild, then componentize-js).

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

const WASM_TARGET: &str = "wasm32-wasip2";

/// The componentize-py release the Python SDK is built and tested with.
pub const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";

/// A built component and the plugin name it is deployed under (its project's name).
#[derive(Debug)]
pub struct Built {
    /// The plugin name: `<name>.wasm` in a plugin folder.
    pub name: String,
    /// The component file.
    pub component: PathBuf,
}

/// Builds the plugin project at `dir`, whatever its language; the component it made.
pub fn build(dir: &Path) -> Result<Built> {
    let dir = &std::path::absolute(dir)?;
    if dir.join("Cargo.toml").is_file() {
        build_rust(dir)
    } else if dir.join("pyproject.toml").is_file() {
        build_python(dir)
    } else if dir.join("package.json").is_file() {
        build_js(dir)
    } else {
        bail!(
            "{} is not a plugin project: it has no Cargo.toml (Rust), pyproject.toml (Python) \
             or package.json (JavaScript); pass --path PROJECT",
            dir.display()
        )
    }
}

/// `cargo build --release --target wasm32-wasip2` of the crate at `crate_dir`.
fn build_rust(crate_dir: &Path) -> Result<Built> {
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

/// Where a Python or JavaScript project's component goes: `target/<name>.wasm` in it.
fn guest_output(dir: &Path, name: &str) -> Result<PathBuf> {
    let target = dir.join("target");
    std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
    Ok(target.join(format!("{name}.wasm")))
}

/// Runs `command`, its output going to stderr (stdout is for the component's path); `what`
/// names it in errors, with `hint` when it cannot start.
fn run(mut command: Command, what: &str, hint: &str) -> Result<()> {
    let status = command
        .stdout(Stdio::from(std::io::stderr()))
        .status()
        .with_context(|| format!("running {what}: {hint}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

/// `componentize-py` over the project's app module, with the folders of `[tool.weir]
/// python-path` on the Python path. The tool is `$WEIR_COMPONENTIZE_PY`, else the project's
/// `.venv`, else the one on `PATH`.
fn build_python(dir: &Path) -> Result<Built> {
    let manifest = dir.join("pyproject.toml");
    let project: toml::Table = toml::from_str(&std::fs::read_to_string(&manifest)?)
        .with_context(|| format!("{} does not parse", manifest.display()))?;
    let name = project
        .get("project")
        .and_then(|p| p.get("name"))
        .and_then(toml::Value::as_str)
        .with_context(|| format!("{} has no [project] name", manifest.display()))?
        .to_string();
    let weir = project
        .get("tool")
        .and_then(|t| t.get("weir"))
        .with_context(|| format!("{} has no [tool.weir] section", manifest.display()))?;
    let setting = |key: &str, default: &str| {
        weir.get(key)
            .and_then(toml::Value::as_str)
            .unwrap_or(default)
            .to_string()
    };
    let paths: Vec<String> = match weir.get("python-path") {
        Some(value) => value
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|p| p.as_str().map(str::to_string))
            .collect(),
        None => vec![".".into()],
    };
    let tool = std::env::var_os("WEIR_COMPONENTIZE_PY")
        .map(PathBuf::from)
        .or_else(|| Some(dir.join(".venv/bin/componentize-py")).filter(|p| p.is_file()))
        .unwrap_or_else(|| "componentize-py".into());
    let component = guest_output(dir, &name)?;
    let mut command = Command::new(&tool);
    command.current_dir(dir).args([
        "-d",
        &setting("wit", "wit"),
        "-w",
        "transform",
        "componentize",
    ]);
    for path in &paths {
        command.args(["-p", path]);
    }
    command.arg(setting("app", "app")).arg("-o").arg(&component);
    run(
        command,
        &format!("`{} componentize` in {}", tool.display(), dir.display()),
        &format!(
            "install it into the project's venv: `python3 -m venv .venv && .venv/bin/pip install {COMPONENTIZE_PY}`"
        ),
    )?;
    Ok(Built { name, component })
}

/// `weir-js build`: the JavaScript SDK's builder, found in `node_modules/.bin` of the project
/// or of a folder above it (an npm workspace).
fn build_js(dir: &Path) -> Result<Built> {
    let manifest = dir.join("package.json");
    let package: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&manifest)?)
        .with_context(|| format!("{} does not parse", manifest.display()))?;
    let name = package["name"]
        .as_str()
        .with_context(|| format!("{} has no name", manifest.display()))?
        .to_string();
    let builder = dir
        .ancestors()
        .map(|d| d.join("node_modules/.bin/weir-js"))
        .find(|p| p.is_file())
        .with_context(|| {
            format!(
                "no weir-js in node_modules of {} or a folder above: run `npm install` there (the weir-sdk package provides it)",
                dir.display()
            )
        })?;
    let component = guest_output(dir, &name)?;
    let mut command = Command::new(&builder);
    command
        .current_dir(dir)
        .arg("build")
        .arg("--out")
        .arg(&component);
    run(
        command,
        &format!("`weir-js build` in {}", dir.display()),
        "is Node.js installed?",
    )?;
    Ok(Built { name, component })
}
