//! `cargo xtask`: build plugins, run the example pipeline, run the test suite.

use std::process::Command;

use anyhow::{Context, Result, bail};
use xtask::{plugins, python, workspace_root};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build-plugins   build every plugin for wasm32-wasip2 into target/plugins/<name>.wasm
  example         build everything and run examples/clickstream end to end into out/clickstream
  test            prepare the wasm target, plugins and the Python reader, then run every test";

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "build-plugins" => {
            let out = plugins::build_all()?;
            println!("plugins built into {}", out.display());
        }
        "example" => example()?,
        "test" => test()?,
        _ => {
            eprintln!("{USAGE}");
            bail!("unknown task {task:?}");
        }
    }
    Ok(())
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string()));
    cmd.current_dir(workspace_root());
    cmd
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Runs the example pipeline: geo database, plugins, then `weir run`.
fn example() -> Result<()> {
    plugins::build_all()?;
    let root = workspace_root();
    let out = root.join("out/clickstream");
    std::fs::create_dir_all(&out)?;
    run(cargo()
        .args([
            "run",
            "--quiet",
            "--package",
            "weir",
            "--",
            "generate",
            "geodb",
            "--out",
        ])
        .arg(out.join("geo.mmdb")))?;
    run(cargo()
        .args([
            "run",
            "--quiet",
            "--package",
            "weir",
            "--",
            "run",
            "--config",
            "examples/clickstream/pipeline.toml",
        ])
        .env("WEIR_PLUGIN_DIR", plugins::output_dir()))
}

/// Runs the whole test suite the way CI does.
fn test() -> Result<()> {
    plugins::build_all()?;
    python::venv_python()?;
    run(cargo().args(["test", "--workspace"]))
}
