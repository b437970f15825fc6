//! `cargo xtask`: build plugins, run the example pipeline, run the test suite.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, anyhow, bail};
use xtask::{node, plugins, python, servers, workspace_root};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  build-plugins   build every plugin for wasm32-wasip2 into target/plugins/<name>.wasm
  demo [ARGS]     build everything and run `weir demo` (embedded Kafka cluster, generated clickstream)
  example         build everything and run examples/clickstream end to end into out/clickstream
  install-servers install what the tests run beside weir, side by side: Apache Kafka and Apicurio
                  Registry (Maven), s3s-fs (cargo install), the Python venvs (pip), the npm
                  workspace of the JavaScript plugins (npm ci); checks redis-server
  test            build every target with clippy's lints (warnings denied) while installing what the
                  tests run beside weir, build the plugins, then run every test";

fn main() -> Result<()> {
    let task = std::env::args().nth(1).unwrap_or_default();
    match task.as_str() {
        "build-plugins" => {
            let out = plugins::build_all()?;
            println!("plugins built into {}", out.display());
        }
        "demo" => demo()?,
        "example" => example()?,
        "install-servers" => install_servers()?,
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

/// Installs what the tests run beside weir. The three kinds of download (Maven's, cargo's and
/// pip's) go side by side; `test` runs them beside its build.
fn install_servers() -> Result<()> {
    let redis = servers::redis_server_path();
    if !redis.is_file() {
        bail!("redis-server is missing: run `{}`", servers::REDIS_INSTALL);
    }
    println!("redis-server: {}", redis.display());
    std::thread::scope(|scope| {
        let maven = scope.spawn(|| -> Result<()> {
            println!("kafka: {}", servers::install_kafka()?.display());
            println!("apicurio: {}", servers::install_apicurio()?.display());
            Ok(())
        });
        let cargo = scope.spawn(|| -> Result<()> {
            println!("s3s-fs: {}", servers::install_s3s_fs()?.display());
            Ok(())
        });
        let pip = scope.spawn(|| -> Result<()> {
            println!("python: {}", python::venv_python()?.display());
            println!("airflow: {}", python::airflow_python()?.display());
            println!("python plugins: {}", python::guest_python()?.display());
            Ok(())
        });
        let npm = scope.spawn(|| -> Result<()> {
            println!("javascript plugins: {}", node::npm_workspace()?.display());
            Ok(())
        });
        [maven, cargo, pip, npm].into_iter().try_for_each(|task| {
            task.join()
                .unwrap_or_else(|_| Err(anyhow!("an install thread panicked")))
        })
    })
}

/// Runs the example pipeline: geo database, plugins, then `weir run`.
fn example() -> Result<()> {
    plugins::build_all()?;
    let out = workspace_root().join("out/clickstream");
    std::fs::create_dir_all(&out)?;
    let geo = out.join("geo.mmdb");
    run(weir().args(["generate", "geodb", "--out"]).arg(geo))?;
    run(weir()
        .args(["run", "--config", "examples/clickstream/pipeline.toml"])
        .env("WEIR_PLUGIN_DIR", plugins::output_dir()))
}

/// Runs `weir demo` with the plugins just built; extra arguments go to the demo.
fn demo() -> Result<()> {
    plugins::build_all()?;
    run(weir()
        .arg("demo")
        .args(std::env::args().skip(2))
        .env("WEIR_PLUGIN_DIR", plugins::output_dir()))
}

/// `cargo run` of the `weir` binary; arguments follow.
fn weir() -> Command {
    let mut cmd = cargo();
    cmd.args(["run", "--quiet", "--package", "weir", "--"]);
    cmd
}

/// Runs the whole test suite the way CI does, then prints one line with the totals of every
/// test binary (cargo prints one `test result` line per binary).
///
/// The build is also the lint run: clippy-driver wraps rustc for the workspace's crates with
/// warnings denied, as `cargo clippy --workspace --all-targets -- -D warnings` does, but in a
/// build instead of a check, so every dependency is compiled once rather than also checked
/// (the check alone took 632 s on a fresh 2-core machine). The wrapper is given to cargo as
/// `--config`, which the tests' own cargo runs (plugin builds, the scaffold) do not inherit.
/// What the tests run beside weir is installed meanwhile.
fn test() -> Result<()> {
    let driver = clippy_driver()?;
    let installs = std::thread::spawn(install_servers);
    run(linted(&mut cargo(), &driver).args(["build", "--workspace", "--all-targets"]))?;
    plugins::build_all()?;
    installs
        .join()
        .unwrap_or_else(|_| Err(anyhow!("the install thread panicked")))?;
    let mut child = linted(&mut cargo(), &driver)
        .args(["test", "--workspace"])
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line?;
            println!("{line}");
            if let Some(result) = line.strip_prefix("test result: ") {
                passed += count(result, " passed");
                failed += count(result, " failed");
            }
        }
    }
    let status = child.wait()?;
    println!("weir tests: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed with {status}");
    }
    Ok(())
}

/// Where rustup's clippy-driver is.
fn clippy_driver() -> Result<PathBuf> {
    let hint = "install clippy: `rustup component add clippy`";
    let output = Command::new("rustup")
        .args(["which", "clippy-driver"])
        .output()
        .context(hint)?;
    if !output.status.success() {
        bail!("{hint}: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(PathBuf::from(String::from_utf8(output.stdout)?.trim()))
}

/// `cmd` (a cargo command before its subcommand) with `driver` linting the workspace's crates
/// and warnings denied. CLIPPY_ARGS is how `cargo clippy -- -D warnings` hands its arguments
/// to the driver; plain rustc ignores it.
fn linted<'c>(cmd: &'c mut Command, driver: &Path) -> &'c mut Command {
    let wrapper = toml::Value::String(driver.display().to_string());
    cmd.arg("--config")
        .arg(format!("build.rustc-workspace-wrapper={wrapper}"))
        .env(
            "CLIPPY_ARGS",
            "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
        )
}

/// The number before `label` in a `test result` line (`ok. 12 passed; 0 failed; ...`).
fn count(result: &str, label: &str) -> u64 {
    result
        .split(';')
        .find_map(|part| {
            part.trim()
                .trim_start_matches("ok. ")
                .trim_start_matches("FAILED. ")
                .strip_suffix(label)
        })
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}
