//! Apache Kafka in KRaft mode: resolved from Maven Central into the target dir and run as one
//! combined broker+controller node, or as a cluster of three such nodes, on free 127.0.0.1
//! ports. Nodes can be killed, frozen and restarted on their own data; a failing test keeps
//! the nodes' logs.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::types::RDKafkaErrorCode;

use super::{INSTALL_HINT, MAVEN_LOCK, free_ports, tools_dir};

/// The Apache Kafka release the tests run (`org.apache.kafka:kafka_2.13`).
pub const KAFKA_VERSION: &str = "4.1.1";

/// How to get what resolving and running Kafka needs on Debian.
pub const JAVA_INSTALL: &str = "apt-get install -y openjdk-17-jre-headless maven";

/// The folder of the broker's jars: `WEIR_KAFKA_LIBS` if set, else under the target dir.
pub fn kafka_libs() -> PathBuf {
    std::env::var_os("WEIR_KAFKA_LIBS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tools_dir().join("kafka").join(KAFKA_VERSION).join("libs"))
}

/// Resolves the broker and its runtime dependencies with Maven into [`kafka_libs`]. Does
/// nothing when they are there.
pub fn install_kafka() -> Result<PathBuf> {
    let _guard = MAVEN_LOCK.lock().unwrap_or_else(|p| p.into_inner());
    let libs = kafka_libs();
    let done = libs.join(".resolved");
    if done.is_file() {
        return Ok(libs);
    }
    let project = libs.parent().context("the Kafka folder has no parent")?;
    std::fs::create_dir_all(project)?;
    std::fs::write(project.join("pom.xml"), pom())?;
    let status = Command::new("mvn")
        .args([
            "-q",
            "-B",
            "-Dstyle.color=never",
            "dependency:copy-dependencies",
            "-DincludeScope=runtime",
        ])
        .arg(format!("-DoutputDirectory={}", libs.display()))
        .current_dir(project)
        .status()
        .with_context(|| format!("running mvn (install it: `{JAVA_INSTALL}`)"))?;
    if !status.success() {
        bail!("resolving Apache Kafka {KAFKA_VERSION} with Maven failed with {status}");
    }
    std::fs::write(&done, KAFKA_VERSION)?;
    Ok(libs)
}

/// A Maven project whose runtime dependencies are the broker and a logging backend.
fn pom() -> String {
    let dependency = |group: &str, artifact: &str, version: &str| {
        format!(
            "<dependency><groupId>{group}</groupId><artifactId>{artifact}</artifactId>\
             <version>{version}</version></dependency>"
        )
    };
    format!(
        "<project xmlns=\"http://maven.apache.org/POM/4.0.0\"><modelVersion>4.0.0</modelVersion>\
         <groupId>weir.tools</groupId><artifactId>kafka</artifactId><version>1</version>\
         <packaging>pom</packaging><dependencies>{}{}</dependencies></project>\n",
        dependency("org.apache.kafka", "kafka_2.13", KAFKA_VERSION),
        dependency("org.apache.logging.log4j", "log4j-slf4j-impl", "2.24.3"),
    )
}

/// One node: broker and controller in one JVM.
struct Node {
    id: usize,
    port: u16,
    controller_port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl Node {
    fn config(&self) -> PathBuf {
        self.dir.join("server.properties")
    }

    fn log(&self) -> PathBuf {
        self.dir.join("kafka.log")
    }
}

/// A running Apache Kafka cluster; its nodes are killed and its folder removed on drop (kept,
/// with the path printed, when the thread is panicking).
pub struct KafkaCluster {
    dir: PathBuf,
    nodes: Vec<Node>,
    optimizing_jit: bool,
}

impl KafkaCluster {
    /// Starts `nodes` combined broker+controller nodes (1 or 3) and waits until every broker
    /// is in the cluster's metadata. Internal topics are replicated on every node, with
    /// `min.insync.replicas` 2 on a cluster of three. Fails with the install command when
    /// Kafka is not installed.
    ///
    /// The brokers' JVMs compile with the quick compiler only: a test's broker lives a minute
    /// or two, and the optimizing compiler would spend more CPU on it than it saves (a node's
    /// start costs about half as much CPU without it).
    pub fn start(nodes: usize) -> Result<KafkaCluster> {
        Self::start_with(nodes, false)
    }

    /// [`KafkaCluster::start`] for a benchmark: the brokers' JVMs also use the optimizing
    /// compiler, for the throughput of a broker that runs long under load.
    pub fn start_for_load(nodes: usize) -> Result<KafkaCluster> {
        Self::start_with(nodes, true)
    }

    fn start_with(nodes: usize, optimizing_jit: bool) -> Result<KafkaCluster> {
        let libs = kafka_libs();
        if !libs.join(".resolved").is_file() {
            bail!(
                "Apache Kafka is not installed at {}: run `{INSTALL_HINT}`",
                libs.display()
            );
        }
        let dir =
            std::env::temp_dir().join(format!("weir-kafka-{}-{}", std::process::id(), unique()));
        let mut cluster = KafkaCluster {
            dir,
            nodes: Vec::new(),
            optimizing_jit,
        };
        let ports = free_ports(2 * nodes)?;
        for (id, ports) in (1..=nodes).zip(ports.chunks(2)) {
            let node_dir = cluster.dir.join(format!("node-{id}"));
            std::fs::create_dir_all(&node_dir)?;
            cluster.nodes.push(Node {
                id,
                port: ports[0],
                controller_port: ports[1],
                dir: node_dir,
                child: None,
            });
        }
        let cluster_id = cluster_id()?;
        for index in 0..nodes {
            cluster.write_config(index)?;
            cluster.format(index, &cluster_id)?;
        }
        for index in 0..nodes {
            cluster.spawn(index)?;
        }
        cluster.wait_for_brokers(nodes, Duration::from_secs(120))?;
        Ok(cluster)
    }

    /// `bootstrap.servers` naming every node.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Creates a topic replicated on every node (at most three) and waits until each of its
    /// partitions has a leader. An existing topic is left as it is.
    pub fn create_topic(&self, name: &str, partitions: u32) -> Result<()> {
        let admin = self.admin()?;
        let replication = i32::try_from(self.nodes.len().min(3))?;
        let topic = NewTopic::new(
            name,
            i32::try_from(partitions)?,
            TopicReplication::Fixed(replication),
        );
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
        let results = futures::executor::block_on(admin.create_topics([&topic], &options))
            .with_context(|| format!("creating topic {name}"))?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => bail!("creating topic {topic} failed: {code}"),
            }
        }
        super::wait_until(
            &format!("a leader for every partition of topic {name}"),
            Duration::from_secs(60),
            || Ok(false),
            || {
                admin
                    .inner()
                    .fetch_metadata(Some(name), Duration::from_secs(5))
                    .is_ok_and(|metadata| {
                        metadata.topics().iter().any(|t| {
                            t.error().is_none()
                                && t.partitions().len() == partitions as usize
                                && t.partitions().iter().all(|p| p.leader() >= 0)
                        })
                    })
            },
        )
    }

    /// kill -9 of node `index` (0-based); its data stays for [`KafkaCluster::restart`].
    pub fn kill(&mut self, index: usize) {
        if let Some(mut child) = self.nodes[index].child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed node again on its ports and data and waits until it is back in the
    /// cluster's metadata.
    pub fn restart(&mut self, index: usize) -> Result<()> {
        if self.nodes[index].child.is_none() {
            self.spawn(index)?;
        }
        let running = self.nodes.iter().filter(|n| n.child.is_some()).count();
        self.wait_for_brokers(running, Duration::from_secs(120))
    }

    /// Freezes node `index` (SIGSTOP), as a network partition or a long GC pause would: its
    /// connections stay open but it answers nothing until [`KafkaCluster::resume`].
    pub fn pause(&self, index: usize) -> Result<()> {
        self.signal(index, "-STOP")
    }

    /// Lets a frozen node go on (SIGCONT).
    pub fn resume(&self, index: usize) -> Result<()> {
        self.signal(index, "-CONT")
    }

    fn signal(&self, index: usize, signal: &str) -> Result<()> {
        let Some(child) = &self.nodes[index].child else {
            bail!("Kafka node {} is not running", self.nodes[index].id);
        };
        let status = Command::new("kill")
            .arg(signal)
            .arg(child.id().to_string())
            .status()?;
        if !status.success() {
            bail!(
                "kill {signal} of Kafka node {} failed",
                self.nodes[index].id
            );
        }
        Ok(())
    }

    /// The node (0-based index) whose broker id is `id`.
    pub fn index_of(&self, id: i32) -> Option<usize> {
        self.nodes
            .iter()
            .position(|n| i32::try_from(n.id) == Ok(id))
    }

    /// An admin client on the running nodes.
    pub fn admin(&self) -> Result<AdminClient<DefaultClientContext>> {
        Ok(ClientConfig::new()
            .set("bootstrap.servers", self.bootstrap())
            .set("log_level", "3")
            .create()?)
    }

    fn write_config(&self, index: usize) -> Result<()> {
        let node = &self.nodes[index];
        let voters = self
            .nodes
            .iter()
            .map(|n| format!("{}@127.0.0.1:{}", n.id, n.controller_port))
            .collect::<Vec<_>>()
            .join(",");
        let replicas = self.nodes.len().min(3);
        let min_insync = if replicas >= 3 { 2 } else { 1 };
        // Records keep their event time (the synthetic clickstream's is fixed, in November
        // 2026), so the default 7-day retention deleted them under the tests once that was a
        // week ago: nothing expires here.
        let config = format!(
            "process.roles=broker,controller\n\
             node.id={id}\n\
             controller.quorum.voters={voters}\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             inter.broker.listener.name=PLAINTEXT\n\
             log.dirs={data}\n\
             log.retention.ms=-1\n\
             num.partitions=1\n\
             default.replication.factor={replicas}\n\
             min.insync.replicas={min_insync}\n\
             offsets.topic.replication.factor={replicas}\n\
             offsets.topic.num.partitions=4\n\
             transaction.state.log.replication.factor={replicas}\n\
             transaction.state.log.min.isr={min_insync}\n\
             transaction.state.log.num.partitions=4\n\
             transaction.abort.timed.out.transaction.cleanup.interval.ms=2000\n\
             share.coordinator.state.topic.replication.factor={replicas}\n\
             share.coordinator.state.topic.min.isr={min_insync}\n\
             group.initial.rebalance.delay.ms=0\n\
             broker.heartbeat.interval.ms=500\n\
             broker.session.timeout.ms=4000\n\
             num.network.threads=2\n\
             num.io.threads=2\n\
             num.recovery.threads.per.data.dir=1\n\
             log.cleaner.threads=1\n",
            id = node.id,
            port = node.port,
            controller = node.controller_port,
            data = node.dir.join("data").display(),
        );
        std::fs::write(node.config(), config)?;
        std::fs::write(node.dir.join("log4j2.properties"), LOG4J)?;
        Ok(())
    }

    fn format(&self, index: usize, cluster_id: &str) -> Result<()> {
        let node = &self.nodes[index];
        let output = java(&node.dir)
            .args([QUICK_JIT, "-XX:+UseSerialGC"])
            .args([
                "kafka.tools.StorageTool",
                "format",
                "--cluster-id",
                cluster_id,
            ])
            .arg("--config")
            .arg(node.config())
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running java (install it: `{JAVA_INSTALL}`)"))?;
        if !output.status.success() {
            bail!(
                "formatting Kafka node {} failed: {}{}",
                node.id,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
        }
        Ok(())
    }

    fn spawn(&mut self, index: usize) -> Result<()> {
        let jit: &[&str] = if self.optimizing_jit {
            &[]
        } else {
            &[QUICK_JIT]
        };
        let node = &mut self.nodes[index];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(node.log())?;
        let child = java(&node.dir)
            .args(["-Xms128m", "-Xmx768m", "-XX:+UseSerialGC"])
            .args(jit)
            .arg("kafka.Kafka")
            .arg(node.config())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("running java (install it: `{JAVA_INSTALL}`)"))?;
        node.child = Some(child);
        Ok(())
    }

    /// Waits until the metadata lists `count` brokers, failing early if a node exits.
    fn wait_for_brokers(&mut self, count: usize, within: Duration) -> Result<()> {
        let admin = self.admin()?;
        let what = format!(
            "Apache Kafka ({count} brokers, logs under {})",
            self.dir.display()
        );
        let nodes = &mut self.nodes;
        super::wait_until(
            &what,
            within,
            || {
                for node in nodes.iter_mut() {
                    if let Some(child) = &mut node.child
                        && child.try_wait()?.is_some()
                    {
                        return Ok(true);
                    }
                }
                Ok(false)
            },
            || {
                admin
                    .inner()
                    .fetch_metadata(None, Duration::from_secs(2))
                    .is_ok_and(|m| m.brokers().len() >= count)
            },
        )
    }
}

impl Drop for KafkaCluster {
    fn drop(&mut self) {
        for index in 0..self.nodes.len() {
            self.kill(index);
        }
        if std::thread::panicking() {
            eprintln!("Kafka's logs are kept under {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Broker logging: INFO to the node's `kafka.log`.
const LOG4J: &str = "status = error\n\
appender.out.type = Console\n\
appender.out.name = OUT\n\
appender.out.layout.type = PatternLayout\n\
appender.out.layout.pattern = [%d] %p %m (%c)%n\n\
rootLogger.level = INFO\n\
rootLogger.appenderRef.out.ref = OUT\n";

/// The JVM option that leaves out the optimizing compiler (C2).
const QUICK_JIT: &str = "-XX:TieredStopAtLevel=1";

/// `java` with the broker's class path and logging set up, run in `dir`.
fn java(dir: &Path) -> Command {
    let mut command = Command::new("java");
    command
        .arg("-cp")
        .arg(kafka_libs().join("*"))
        .arg(format!(
            "-Dlog4j2.configurationFile={}",
            dir.join("log4j2.properties").display()
        ))
        .current_dir(dir);
    command
}

/// A number no other cluster of this process has had.
fn unique() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A random cluster id: 16 random bytes in URL-safe base64 without padding, as Kafka writes a
/// UUID.
fn cluster_id() -> Result<String> {
    use std::io::Read;
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = [0u8; 16];
    let mut urandom = std::fs::File::open("/dev/urandom")?;
    // The storage tool would take an id starting with `-` for an option, so none does (as
    // Kafka's own `Uuid.randomUuid`).
    while bytes[0] == 0 || bytes[0] >> 2 == 62 {
        urandom.read_exact(&mut bytes)?;
    }
    let mut id = String::with_capacity(22);
    let (mut bits, mut count) = (0u32, 0);
    for byte in bytes {
        bits = (bits << 8) | u32::from(byte);
        count += 8;
        while count >= 6 {
            count -= 6;
            id.push(char::from(ALPHABET[((bits >> count) & 63) as usize]));
        }
    }
    id.push(char::from(ALPHABET[((bits << (6 - count)) & 63) as usize]));
    Ok(id)
}
