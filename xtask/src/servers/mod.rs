//! Real servers for tests and benchmarks, each installed once and run on free 127.0.0.1 ports
//! until dropped: Apache Kafka, s3s-fs (S3), Debian's redis-server and PostgreSQL, Apicurio
//! Registry (a Confluent-compatible schema registry). S3 and Redis
//! keep their data across a stop and a start, so tests can take them down mid-run.

mod kafka;
mod postgres;
mod redis;
mod registry;
mod s3;

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};

pub use kafka::{JAVA_INSTALL, KAFKA_VERSION, KafkaCluster, install_kafka, kafka_libs};
pub use postgres::{POSTGRES_INSTALL, PostgresServer, postgres_bin};
pub use redis::{REDIS_INSTALL, RedisServer, redis_server_path};
pub use registry::{APICURIO_VERSION, SchemaRegistryServer, apicurio_home, install_apicurio};
pub use s3::{S3_ACCESS_KEY, S3_SECRET_KEY, S3Server, install_s3s_fs, s3s_fs_path};

use crate::paths::target_dir;

/// The command that installs every server the tests need.
pub const INSTALL_HINT: &str = "cargo xtask install-servers";

/// Held while Maven resolves into its local repository, which two runs at once may corrupt.
static MAVEN_LOCK: Mutex<()> = Mutex::new(());

/// Where installed tools live, under the target dir.
fn tools_dir() -> PathBuf {
    target_dir().join("tools")
}

fn tools_bin() -> PathBuf {
    tools_dir().join("bin")
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> Result<u16> {
    Ok(free_ports(1)?[0])
}

/// `count` free TCP ports on 127.0.0.1, all different: each is held until all are found (a
/// port picked and released can be the kernel's next pick, and a Kafka node refused the same
/// port for its two listeners).
pub fn free_ports(count: usize) -> Result<Vec<u16>> {
    let held = (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<std::io::Result<Vec<_>>>()?;
    held.iter()
        .map(|listener| Ok(listener.local_addr()?.port()))
        .collect()
}

/// Waits until `ready` answers, failing early if `exited` reports the process gone.
fn wait_until(
    what: &str,
    within: Duration,
    mut exited: impl FnMut() -> Result<bool>,
    mut ready: impl FnMut() -> bool,
) -> Result<()> {
    let started = Instant::now();
    while started.elapsed() < within {
        if exited()? {
            bail!("{what} exited at start");
        }
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{what} did not answer within {within:?}")
}

/// Whether something accepts connections on the port.
fn listening(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}
