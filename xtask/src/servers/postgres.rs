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
            // Every folder above it must let others through (a private temp folder may not).
            use std::os::unix::fs::PermissionsExt;
            for folder in parent.ancestors().skip(1) {
                let mut permissions = std::fs::metadata(folder)?.permissions();
                if permissions.mode() & 0o001 == 0 {
                    permissions.set_mode(permissions.mode() | 0o001);
                    std::fs::set_permissions(folder, permissions)?;
                }
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

    /// Turns TLS on with a certificate for 127.0.0.1 signed by a new test authority, and
    /// refuses unencrypted TCP connections; returns the authority's PEM file. Needs the
    /// `openssl` command.
    pub fn enable_tls(&self) -> Result<PathBuf> {
        let parent = self
            .dir
            .parent()
            .context("the cluster's folder has a parent")?;
        let tls = parent.join("tls");
        std::fs::create_dir_all(&tls)?;
        let openssl = |args: &[&str]| -> Result<()> {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(&tls)
                .output()
                .context("running openssl (apt-get install -y openssl)")?;
            if !out.status.success() {
                bail!("openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            Ok(())
        };
        openssl(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=weir test authority",
        ])?;
        openssl(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ])?;
        std::fs::write(
            tls.join("san.ext"),
            "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )?;
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.ext",
        ])?;
        for file in ["server.pem", "server.key"] {
            std::fs::copy(tls.join(file), self.dir.join(file))?;
        }
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            let status = Command::new("chown")
                .arg(SERVER_USER)
                .arg(self.dir.join("server.pem"))
                .arg(self.dir.join("server.key"))
                .status()?;
            if !status.success() {
                bail!("chown of the server's certificate failed");
            }
        }
        std::fs::set_permissions(
            self.dir.join("server.key"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )?;
        let hba = self.dir.join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba)?;
        std::fs::write(&hba, format!("hostnossl all all 0.0.0.0/0 reject\n{rules}"))?;
        let dir = self.dir.display();
        // One statement per call: ALTER SYSTEM cannot run in psql's implicit transaction.
        for setting in [
            format!("ssl_cert_file = '{dir}/server.pem'"),
            format!("ssl_key_file = '{dir}/server.key'"),
            "ssl = on".to_string(),
        ] {
            self.psql(&format!("ALTER SYSTEM SET {setting}"))?;
        }
        self.psql("SELECT pg_reload_conf()")?;
        // The reload is asynchronous: wait for the server to take it.
        for _ in 0..50 {
            if self.psql("SHOW ssl")?.trim() == "on" {
                return Ok(tls.join("ca.pem"));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        bail!("the server did not turn TLS on")
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
