//! Apicurio Registry, a schema registry serving Confluent's API (`/apis/ccompat/v7`):
//! unpacked from Maven Central into the target dir and run on Java 17 on a free 127.0.0.1
//! port, its schemas in an H2 database file so they survive a stop and a start; killed when
//! dropped.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::{JAVA_INSTALL, MAVEN_LOCK, free_port, tools_dir};

/// The Apicurio Registry release (`io.apicurio:apicurio-registry-app`, its `all` zip).
pub const APICURIO_VERSION: &str = "3.0.9";

/// The folder Apicurio is unpacked into: `WEIR_APICURIO` if set, else under the target dir.
pub fn apicurio_home() -> PathBuf {
    std::env::var_os("WEIR_APICURIO")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_dir().join("apicurio").join(APICURIO_VERSION))
}

fn runner(home: &Path) -> PathBuf {
    home.join(format!(
        "apicurio-registry-app-{APICURIO_VERSION}-runner.jar"
    ))
}

/// Unpacks Apicurio Registry with Maven into [`apicurio_home`]. Does nothing when it is there.
pub fn install_apicurio() -> Result<PathBuf> {
    let _guard = MAVEN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let home = apicurio_home();
    if runner(&home).is_file() {
        return Ok(home);
    }
    std::fs::create_dir_all(&home)?;
    let status = Command::new("mvn")
        .args(["-q", "-B", "-Dstyle.color=never", "dependency:unpack"])
        .arg(format!(
            "-Dartifact=io.apicurio:apicurio-registry-app:{APICURIO_VERSION}:zip:all"
        ))
        .arg(format!("-DoutputDirectory={}", home.display()))
        .current_dir(&home)
        .status()
        .with_context(|| format!("running mvn (install it: `{JAVA_INSTALL}`)"))?;
    if !status.success() || !runner(&home).is_file() {
        bail!("unpacking Apicurio Registry {APICURIO_VERSION} with Maven failed with {status}");
    }
    Ok(home)
}

/// A running Apicurio Registry.
pub struct SchemaRegistryServer {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
}

impl SchemaRegistryServer {
    /// Starts a registry keeping its database and log under `parent`. Fails with the install
    /// command when it is not installed.
    pub fn start(parent: &Path) -> Result<SchemaRegistryServer> {
        let home = apicurio_home();
        if !runner(&home).is_file() {
            bail!("Apicurio Registry is not installed: run `cargo xtask install-servers`");
        }
        let dir = parent.join("apicurio-data");
        std::fs::create_dir_all(&dir)?;
        let mut server = SchemaRegistryServer {
            child: None,
            port: free_port()?,
            dir,
        };
        server.resume()?;
        Ok(server)
    }

    /// Starts the stopped registry again, on the same port and schemas.
    pub fn resume(&mut self) -> Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("apicurio.log"))?;
        let child = Command::new("java")
            .args([
                "-Xmx384m",
                "-XX:TieredStopAtLevel=1",
                "-Dquarkus.http.host=127.0.0.1",
                &format!("-Dquarkus.http.port={}", self.port),
                "-Dquarkus.log.level=WARN",
                &format!(
                    "-Dapicurio.datasource.url=jdbc:h2:file:{}",
                    self.dir.join("registry").display()
                ),
                "-jar",
            ])
            .arg(runner(&apicurio_home()))
            .stdout(Stdio::from(log.try_clone()?))
            .stderr(Stdio::from(log))
            .spawn()
            .with_context(|| format!("starting java (install it: `{JAVA_INSTALL}`)"))?;
        let child = self.child.insert(child);
        let port = self.port;
        super::wait_until(
            "Apicurio Registry",
            Duration::from_secs(120),
            || Ok(child.try_wait()?.is_some()),
            || answers(port),
        )
    }

    /// Stops the registry (an outage), letting it write its database out first.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let stopped = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status()
                .is_ok_and(|s| s.success());
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
        }
    }

    /// The base URL of its Confluent-compatible API.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}/apis/ccompat/v7", self.port)
    }
}

/// Whether the Confluent-compatible API answers `GET /subjects` with 200.
fn answers(port: u16) -> bool {
    let Ok(mut stream) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    let request = format!(
        "GET /apis/ccompat/v7/subjects HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    );
    let mut head = [0u8; 12];
    stream.write_all(request.as_bytes()).is_ok()
        && stream.read_exact(&mut head).is_ok()
        && head.ends_with(b"200")
}

impl Drop for SchemaRegistryServer {
    fn drop(&mut self) {
        self.stop();
    }
}
