//! Broker faults on a three-node Apache Kafka cluster (replication factor 3,
//! `min.insync.replicas` 2) while records stream in: kill -9 of the node that coordinates
//! weir's transactions, later of the node that leads most input partitions, then the group
//! coordinator frozen (SIGSTOP) for longer than its broker session and weir's, as a network
//! partition would cut it off; each comes back after a while. Transactions go on after the
//! elections, and the lake, the sessions and the sessions topic (each session once,
//! `read_committed`) equal an uninterrupted run's. A commit that librdkafka leaves waiting for
//! a coordinator whose node is gone (confluentinc/librdkafka#5511) is abandoned past its
//! deadline; the report counts those.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use xtask::servers::KafkaCluster;

use super::group::caught_up;
use super::{
    Broker, PARTITIONS, WeirProcess, clickstream, lake_tables, pipeline_config, produce,
    session_counts, use_reference_topics, wait_for_empty_group,
};

const GROUP: &str = "brokers";
const INSTANCE: &str = "survivor";

/// The node (index) leading `topic`'s `partition`, if it has a leader.
fn leader(cluster: &KafkaCluster, topic: &str, partition: i32) -> Option<usize> {
    let admin = cluster.admin().ok()?;
    let metadata = admin
        .inner()
        .fetch_metadata(Some(topic), Duration::from_secs(5))
        .ok()?;
    let leader = metadata
        .topics()
        .first()?
        .partitions()
        .iter()
        .find(|p| p.id() == partition)?
        .leader();
    cluster.index_of(leader)
}

/// The node coordinating `transactional_id`'s transactions: the leader of its
/// `__transaction_state` partition.
fn transaction_coordinator(cluster: &KafkaCluster, transactional_id: &str) -> Option<usize> {
    leader(
        cluster,
        "__transaction_state",
        partition_of(transactional_id),
    )
}

/// The partition of an internal topic (4 partitions in the harness) that holds `id`: Java's
/// `String.hashCode`, made positive, modulo the partitions.
fn partition_of(id: &str) -> i32 {
    let hash = id
        .encode_utf16()
        .fold(0i32, |h, c| h.wrapping_mul(31).wrapping_add(i32::from(c)));
    (hash & 0x7fff_ffff) % 4
}

/// The node coordinating `group`: the leader of its `__consumer_offsets` partition.
fn group_coordinator(cluster: &KafkaCluster, group: &str) -> Option<usize> {
    leader(cluster, "__consumer_offsets", partition_of(group))
}

/// The node leading the most input partitions.
fn input_leader(cluster: &KafkaCluster) -> usize {
    let mut led: BTreeMap<usize, usize> = BTreeMap::new();
    for partition in 0..PARTITIONS as i32 {
        if let Some(node) = leader(cluster, "clicks", partition) {
            *led.entry(node).or_default() += 1;
        }
    }
    led.into_iter().max_by_key(|(_, n)| *n).unwrap().0
}

#[test]
fn transactions_go_on_through_broker_kills_and_a_frozen_broker() {
    let mut broker = Broker::with_nodes(3);
    let bootstrap = broker.bootstrap();
    let lines = clickstream(400);
    let (first, rest) = lines.split_at(lines.len() / 5);
    produce(&bootstrap, "clicks", first);
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), GROUP);
    let process = WeirProcess::start(&config, INSTANCE, false);
    process.wait_log(
        "partitions to be assigned",
        Duration::from_secs(90),
        |log| log.contains("Partition restored"),
    );

    // A steady producer for about a minute.
    let producer = {
        let (bootstrap, rest) = (bootstrap.clone(), rest.to_vec());
        std::thread::spawn(move || {
            for slice in rest.chunks(rest.len() / 240 + 1) {
                produce(&bootstrap, "clicks", slice);
                std::thread::sleep(Duration::from_millis(250));
            }
        })
    };

    let mut report = Vec::new();
    let cluster = broker.cluster();
    std::thread::sleep(Duration::from_secs(3));
    let coordinator = transaction_coordinator(cluster, &format!("weir-{GROUP}-{INSTANCE}"))
        .expect("the transaction coordinator is known");
    cluster.kill(coordinator);
    std::thread::sleep(Duration::from_secs(8));
    let started = Instant::now();
    cluster.restart(coordinator).unwrap();
    report.push(format!(
        "kill -9 of node {} (transaction coordinator), back after 8 s + {:.1} s",
        coordinator + 1,
        started.elapsed().as_secs_f64()
    ));

    std::thread::sleep(Duration::from_secs(3));
    let leader = input_leader(cluster);
    cluster.kill(leader);
    std::thread::sleep(Duration::from_secs(8));
    let started = Instant::now();
    cluster.restart(leader).unwrap();
    report.push(format!(
        "kill -9 of node {} (leader of the most input partitions), back after 8 s + {:.1} s",
        leader + 1,
        started.elapsed().as_secs_f64()
    ));

    // Frozen past weir's session: the group coordinator, so weir's membership lapses too.
    std::thread::sleep(Duration::from_secs(3));
    let frozen = group_coordinator(cluster, GROUP).expect("the group coordinator is known");
    cluster.pause(frozen).unwrap();
    std::thread::sleep(Duration::from_secs(15));
    cluster.resume(frozen).unwrap();
    report.push(format!(
        "node {} (group coordinator) frozen for 15 s",
        frozen + 1
    ));

    producer.join().unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    while !caught_up(&bootstrap, GROUP) {
        if Instant::now() > deadline {
            let log = process.log();
            let tail: Vec<&str> = log.lines().rev().take(60).collect();
            panic!(
                "the input was not committed within 180 s of the faults ({}); weir's last lines:\n{}\nweir's threads:\n{}",
                report.join("; "),
                tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
                process.stacks()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let log = process.terminate(Duration::from_secs(120));
    let failed_epochs = log.matches("Epoch failed").count();
    let client_warnings = log.matches("librdkafka").count();
    let new_consumers = log.matches("a new consumer joins the group").count();
    let abandoned = log.matches("abandoning it for a new one").count();
    wait_for_empty_group(&bootstrap, GROUP);
    WeirProcess::start(&config, INSTANCE, true).wait_success(Duration::from_secs(180));

    let reference = tempfile::tempdir().unwrap();
    let reference_config = pipeline_config(&bootstrap, reference.path(), "reference");
    use_reference_topics(&broker, &reference_config);
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(180));

    println!("broker faults: {}", report.join("; "));
    println!(
        "weir: {failed_epochs} epochs failed and were redone, {new_consumers} consumers \
         replaced, {abandoned} producers abandoned in a stuck commit, {client_warnings} client \
         log lines"
    );
    let expected = lake_tables(reference.path());
    let actual = lake_tables(out.path());
    assert!(!expected["events"].as_array().unwrap().is_empty());
    assert_eq!(actual["events"], expected["events"], "lake events differ");
    assert_eq!(actual["sessions"], expected["sessions"], "sessions differ");
    assert_eq!(actual["features"], expected["features"], "features differ");
    let sessions = session_counts(&bootstrap, "weir.sessions");
    assert!(
        sessions.values().all(|n| *n == 1),
        "a session is repeated in the topic"
    );
    assert_eq!(
        sessions.len(),
        expected["sessions"].as_array().unwrap().len(),
        "the sessions topic and the lake's sessions differ"
    );
}
