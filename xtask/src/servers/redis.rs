//! Debian's `redis-server`, run on a free 127.0.0.1 port with an append-only file synced on
//! every write, so data survives a stop and a start; killed when dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::free_port;

/// How to install Redis on Debian.
pub const REDIS_INSTALL: &str = "apt-get install -y redis-server";

/// The `redis-server` binary: `WEIR_REDIS_SERVER` if set, else the first on `PATH`, else
/// Debian's path.
pub fn redis_server_path() -> PathBuf {
    if let Some(path) = std::env::var_os("WEIR_REDIS_SERVER") {
        return PathBuf::from(path);
    }
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("/usr/bin/redis-server"))
}

/// A running Redis.
pub struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl RedisServer {
    /// Starts a server keeping its data under `parent`. Fails with the install command when
    /// `redis-server` is missing.
    pub fn start(parent: &Path) -> Result<RedisServer> {
        if !redis_server_path().is_file() {
            bail!("redis-server is not installed: run `{REDIS_INSTALL}`");
        }
        let dir = parent.join("redis-data");
        std::fs::create_dir_all(&dir)?;
        let mut server = RedisServer {
            child: None,
            port: free_port()?,
            dir,
        };
        server.resume()?;
        Ok(server)
    }

    /// Starts the stopped server again, on the same port and data.
    pub fn resume(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let child = Command::new(redis_server_path())
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        let child = self.child.insert(child);
        let port = self.port;
        super::wait_until(
            "redis-server",
            Duration::from_secs(20),
            || Ok(child.try_wait()?.is_some()),
            || ping(port),
        )
    }

    /// Kills the server (as a crash would); what it acknowledged stays in its append-only file.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// The port.
    pub fn port(&self) -> u16 {
        self.port
    }
}

/// Whether Redis answers PING (and has loaded its data).
fn ping(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let mut reply = [0u8; 5];
    stream.write_all(b"PING\r\n").is_ok()
        && stream.read_exact(&mut reply).is_ok()
        && &reply == b"+PONG"
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}
