//! Debian's PostgreSQL server, a cluster of its own made by `initdb` under the test's folder and
//! run on a free 127.0.0.1 port (as the `postgres` user when the tests run as root, which
//! PostgreSQL refuses to run as); stopped when dropped. `psql` reads it back in the tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::free_port;

/// How to install PostgreSQL on Debian.
pub const POSTGRES_INSTALL: &str = "apt-get install -y postgresql";

/// The folder of `initdb`, `postgres` and `psql`: `WEIR_POSTGRES_BIN` if set, else the
/// newest `/usr/lib/postgresql/<version>/bin`.
pub fn postgres_bin() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("WEIR_POSTGRES_BIN") {
        return Some(PathBuf::from(dir));
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse().ok()?;
            Some((version, e.path().join("bin")))
        })
        .filter(|(_, bin)| bin.join("initdb").is_file())
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin)
}

/// The PostgreSQL user the server runs as, when this process is root.
const SERVER_USER: &str = "postgres";

/// A command run as the server's user when this process is root.
fn as_server_user(program: &Path) -> Command {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        let mut command = Command::new("runuser");
        command.args(["-u", SERVER_USER, "--"]).arg(program);
        command
    } else {
        Command::new(program)
    }
}

/// A running PostgreSQL.
pub struct PostgresServer {
    child: Option<Child>,
    bin: PathBuf,
    port: u16,
    dir: PathBuf,
}

impl PostgresServer {
    /// Makes a cluster under `parent` and starts it. Fails with the install command when
    /// PostgreSQL is missing.
    pub fn start(parent: &Path) -> Result<PostgresServer> {
        let Some(bin) = postgres_bin() else {
            bail!("PostgreSQL is not installed: run `{POSTGRES_INSTALL}`");
        };
        let dir = parent.join("pg-data");
        std::fs::create_dir_all(&dir)?;
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            // The server's user must own its folder and reach it.
            let status = Command::new("chown")
                .args(["-R", SERVER_USER])
                .arg(parent)
                .status()?;
            if !status.success() {
                bail!("chown {SERVER_USER} {} failed", parent.display());
            }
            let mut up = parent.to_path_buf();
            while let Some(p) = up.parent() {
                let _ = Command::new("chmod").arg("o+x").arg(p).status();
                up = p.to_path_buf();
            }
        }
        let init = as_server_user(&bin.join("initdb"))
            .arg("-D")
            .arg(&dir)
            .args(["-U", "weir", "--auth=trust", "-E", "UTF8", "--no-sync"])
            .output()
            .context("running initdb")?;
        if !init.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&init.stderr));
        }
        let mut server = PostgresServer {
            child: None,
            bin,
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
        let child = as_server_user(&self.bin.join("postgres"))
            .arg("-D")
            .arg(&self.dir)
            .args(["-p", &self.port.to_string()])
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off", "-c", "max_connections=200"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting postgres")?;
        let child = self.child.insert(child);
        let (bin, port) = (self.bin.clone(), self.port);
        super::wait_until(
            "postgres",
            Duration::from_secs(30),
            || Ok(child.try_wait()?.is_some()),
            || {
                Command::new(bin.join("pg_isready"))
                    .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "weir"])
                    .stdout(Stdio::null())
                    .status()
                    .is_ok_and(|s| s.success())
            },
        )
    }

    /// Stops the server (a fast shutdown: sessions end, what committed stays).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let stopped = as_server_user(&self.bin.join("pg_ctl"))
                .arg("stop")
                .arg("-D")
                .arg(&self.dir)
                .args(["-m", "fast", "-w"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// `postgresql://weir@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        self.url_of("postgres")
    }

    /// The URL of database `database`.
    pub fn url_of(&self, database: &str) -> String {
        format!("postgresql://weir@127.0.0.1:{}/{database}", self.port)
    }

    /// Runs `sql` with `psql` in database `postgres` (tab-separated, unaligned, no headers);
    /// its output, or the error it printed.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_in("postgres", sql)
    }

    /// Runs `sql` with `psql` in database `database`.
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String> {
        let out: Output = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", "weir", "-d", database, "-X", "-q", "-At", "-F", "\t"])
            .args(["-v", "ON_ERROR_STOP=1", "-c", sql])
            .output()
            .context("running psql")?;
        if !out.status.success() {
            bail!("psql: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(String::from_utf8(out.stdout)?)
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        self.stop();
    }
}
