//! Two `weir` processes in one consumer group split the partitions; when one stops, the other
//! takes its partitions over from their checkpoints and the open sessions continue.

use std::collections::BTreeSet;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaResult;
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use xtask::servers::free_port;

use super::{
    Broker, PARTITIONS, WeirProcess, clickstream, lake_tables, pipeline_config, produce, request,
    wait_for,
};

/// A client of `group` (it does not join it) and the offsets the group has committed for the
/// input partitions.
pub(super) fn committed_input(
    bootstrap: &str,
    group: &str,
    timeout: Duration,
) -> (BaseConsumer, KafkaResult<TopicPartitionList>) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .unwrap();
    let mut query = TopicPartitionList::new();
    for p in 0..PARTITIONS as i32 {
        query.add_partition("clicks", p);
    }
    let committed = consumer.committed_offsets(query, timeout);
    (consumer, committed)
}

/// Whether `group` has committed the end of every input partition.
pub(super) fn caught_up(bootstrap: &str, group: &str) -> bool {
    let timeout = Duration::from_secs(5);
    let (consumer, Ok(committed)) = committed_input(bootstrap, group, timeout) else {
        return false;
    };
    committed.elements().iter().all(|e| {
        let (_, high) = consumer
            .fetch_watermarks("clicks", e.partition(), timeout)
            .unwrap_or((0, i64::MAX));
        matches!(e.offset(), Offset::Offset(o) if o >= high)
    })
}

/// The input partitions with a per-partition series in the `/metrics` of the admin endpoint
/// on `port`.
fn gauged_partitions(port: u16) -> BTreeSet<String> {
    let Some((200, metrics)) = request(port, "GET", "/metrics") else {
        return BTreeSet::new();
    };
    metrics
        .lines()
        .filter_map(|line| line.split_once("{topic=\"clicks\",partition=\""))
        .filter_map(|(_, rest)| rest.split_once('"'))
        .map(|(partition, _)| partition.to_string())
        .collect()
}

#[test]
fn two_instances_split_the_partitions_and_hand_over_open_sessions() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let lines = clickstream(60);
    let (first, second) = lines.split_at(lines.len() / 2);
    produce(&bootstrap, "clicks", first);

    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "pair");
    let (a_port, b_port) = (free_port().unwrap(), free_port().unwrap());
    let admin = |port: u16| format!("127.0.0.1:{port}");
    let a = WeirProcess::start_with_env(
        &config,
        "a",
        false,
        &[("WEIR_ADMIN_LISTEN", &admin(a_port))],
    );
    a.wait_log("a to own partitions", Duration::from_secs(60), |log| {
        log.contains("Partitions assigned")
    });
    let b = WeirProcess::start_with_env(
        &config,
        "b",
        false,
        &[("WEIR_ADMIN_LISTEN", &admin(b_port))],
    );
    // With cooperative rebalancing b's first assignment is empty: it owns partitions once it
    // has restored one.
    b.wait_log("b to own partitions", Duration::from_secs(60), |log| {
        log.contains("Partition restored")
    });
    wait_for(
        "the first half to be committed",
        Duration::from_secs(120),
        || caught_up(&bootstrap, "pair"),
    );
    assert!(
        a.log().contains("Partitions revoked"),
        "a gave partitions to b:\n{}",
        a.log()
    );
    // Each exports the per-partition gauges of its own partitions only: a dropped those it
    // gave b (a stale lag there would fire alerts and mislead an autoscaler).
    wait_for(
        "each instance's gauges to cover its own partitions only",
        Duration::from_secs(60),
        || {
            let (mine, theirs) = (gauged_partitions(a_port), gauged_partitions(b_port));
            !mine.is_empty()
                && !theirs.is_empty()
                && mine.is_disjoint(&theirs)
                && mine.len() + theirs.len() == PARTITIONS as usize
        },
    );

    // b drains, commits and leaves; a takes its partitions from their checkpoints.
    let restored_before = a.log().matches("checkpoint=Some").count();
    let b_log = b.terminate(Duration::from_secs(60));
    assert!(b_log.contains("Partition restored"), "{b_log}");
    a.wait_log(
        "a to restore b's partitions",
        Duration::from_secs(60),
        |log| log.matches("checkpoint=Some").count() > restored_before,
    );
    produce(&bootstrap, "clicks", second);
    wait_for(
        "the second half to be committed",
        Duration::from_secs(120),
        || caught_up(&bootstrap, "pair"),
    );
    a.terminate(Duration::from_secs(60));
    // Close the windows still open at the end of the input.
    WeirProcess::start(&config, "a", true).wait_success(Duration::from_secs(120));

    // The same input through one uninterrupted instance gives the same lake: open sessions
    // continued across the handover with the same session ids.
    let reference = tempfile::tempdir().unwrap();
    let reference_config = pipeline_config(&bootstrap, reference.path(), "reference");
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(180));
    let expected = lake_tables(reference.path());
    let actual = lake_tables(out.path());
    assert!(!expected["sessions"].as_array().unwrap().is_empty());
    assert_eq!(actual["events"], expected["events"]);
    assert_eq!(actual["sessions"], expected["sessions"]);
    assert_eq!(actual["features"], expected["features"]);
}
