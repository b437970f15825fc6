//! s3s-fs, an S3-compatible server over a local folder (each subfolder a bucket): installed
//! with `cargo install`, run on a free 127.0.0.1 port, stopped and started again on the same
//! port and folder, killed when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{INSTALL_HINT, free_port, listening, tools_bin, tools_dir};

/// The version that builds with rustc 1.95.
pub const S3S_FS_VERSION: &str = "0.14.1";

/// Access key of the test server.
pub const S3_ACCESS_KEY: &str = "weir-test";

/// Secret key of the test server.
pub const S3_SECRET_KEY: &str = "weir-test-secret";

/// Where the installed `s3s-fs` lives: `WEIR_S3S_FS` if set, else under the target dir.
pub fn s3s_fs_path() -> PathBuf {
    std::env::var_os("WEIR_S3S_FS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_bin().join("s3s-fs"))
}

/// Builds and installs `s3s-fs` with cargo. Does nothing when present. The build has a
/// target folder of its own, so it can run beside a build of the workspace.
pub fn install_s3s_fs() -> Result<PathBuf> {
    static INSTALL_LOCK: Mutex<()> = Mutex::new(());
    let _guard = INSTALL_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let path = s3s_fs_path();
    if path.is_file() {
        return Ok(path);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .args(["install", "s3s-fs", "--version", S3S_FS_VERSION])
        .args(["--features", "binary", "--locked", "--root"])
        .arg(tools_dir())
        .arg("--target-dir")
        .arg(tools_dir().join("s3s-fs-build"))
        .status()
        .context("running cargo install s3s-fs")?;
    if !status.success() {
        bail!("cargo install s3s-fs failed with {status}");
    }
    Ok(path)
}

/// A running s3s-fs.
pub struct S3Server {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl S3Server {
    /// Starts a server over a fresh folder under `parent`. Fails with the install command
    /// when the binary is missing.
    pub fn start(parent: &Path) -> Result<S3Server> {
        if !s3s_fs_path().is_file() {
            bail!(
                "s3s-fs is not installed at {}: run `{INSTALL_HINT}`",
                s3s_fs_path().display()
            );
        }
        let dir = parent.join("s3-data");
        std::fs::create_dir_all(&dir)?;
        let mut server = S3Server {
            child: None,
            port: free_port()?,
            dir,
        };
        server.resume()?;
        Ok(server)
    }

    /// Starts the stopped server again, on the same port and folder.
    pub fn resume(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new(s3s_fs_path())
            .args(["--host", "127.0.0.1", "--port", &self.port.to_string()])
            .args(["--access-key", S3_ACCESS_KEY, "--secret-key", S3_SECRET_KEY])
            .arg(&self.dir)
            .env("RUST_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting s3s-fs")?;
        let child = self.child.insert(child);
        let port = self.port;
        super::wait_until(
            "s3s-fs",
            Duration::from_secs(20),
            || Ok(child.try_wait()?.is_some()),
            || listening(port),
        )
    }

    /// Kills the server; its data stays in its folder.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Creates a bucket (a subfolder of the data folder).
    pub fn create_bucket(&self, name: &str) -> Result<()> {
        Ok(std::fs::create_dir_all(self.dir.join(name))?)
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The data folder: `<bucket>/<key>` for every object.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// The environment a client needs: the credentials and a region.
    pub fn client_env(&self) -> [(&'static str, &'static str); 3] {
        [
            ("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY),
            ("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY),
            ("AWS_REGION", "us-east-1"),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        self.stop();
    }
}
