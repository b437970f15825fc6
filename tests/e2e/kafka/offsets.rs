//! A broker's committed offsets cannot always be trusted: Tansu, the broker of earlier tests,
//! applies a transaction's offsets only when the transaction also carried records, and
//! keeps an aborted transaction's offsets for the next commit. weir resumes from its
//! committed checkpoint instead. This test moves the group's offsets behind and ahead of the
//! checkpoints between two runs; the lake must still hold every event once.

use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

use super::{Broker, PARTITIONS, WeirProcess, clickstream, lake_tables, pipeline_config, produce};

/// Commits `offsets` (partition → offset) for `group` on `clicks` as a client outside the
/// group, which a broker allows once the group has no members.
fn move_offsets(bootstrap: &str, group: &str, offsets: &[(i32, Offset)]) {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut list = TopicPartitionList::new();
    for (partition, offset) in offsets {
        list.add_partition_offset("clicks", *partition, *offset)
            .unwrap();
    }
    super::wait_for_empty_group(bootstrap, group);
    consumer.commit(&list, CommitMode::Sync).unwrap();
    let committed = consumer
        .committed_offsets(list.clone(), Duration::from_secs(10))
        .unwrap();
    for (partition, offset) in offsets {
        let elem = committed.find_partition("clicks", *partition).unwrap();
        assert_eq!(elem.offset(), *offset, "the broker kept another offset");
    }
}

#[test]
fn a_broker_offset_behind_or_ahead_of_the_checkpoint_loses_and_repeats_nothing() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let lines = clickstream(300);
    let (first, second) = lines.split_at(lines.len() / 2);
    produce(&bootstrap, "clicks", first);

    // Two bounded runs each, one per half (the end of a bounded run closes every window):
    // the reference's offsets stay as weir committed them.
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "moved");
    let reference = tempfile::tempdir().unwrap();
    let reference_config = pipeline_config(&bootstrap, reference.path(), "reference");
    for (config, group) in [(&config, "moved"), (&reference_config, "reference")] {
        WeirProcess::start(config, group, true).wait_success(Duration::from_secs(300));
    }

    // The second half arrives; then the broker says partition 0 was never read, partition 1
    // is halfway, and partitions 2 and 3 are read to their ends.
    produce(&bootstrap, "clicks", second);
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let mut moved = Vec::new();
    for partition in 0..i32::try_from(PARTITIONS).unwrap() {
        let (_, high) = probe
            .fetch_watermarks("clicks", partition, Duration::from_secs(10))
            .unwrap();
        moved.push((
            partition,
            Offset::Offset(match partition {
                0 => 0,
                1 => high / 2,
                _ => high,
            }),
        ));
    }
    move_offsets(&bootstrap, "moved", &moved);
    let log = WeirProcess::start(&config, "moved", true).wait_success(Duration::from_secs(300));
    assert!(
        log.contains("differs from the committed checkpoint's"),
        "the run did not notice the moved offsets:\n{log}"
    );
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(300));
    let expected = lake_tables(reference.path());
    let actual = lake_tables(out.path());
    assert!(!expected["events"].as_array().unwrap().is_empty());
    assert_eq!(actual["events"], expected["events"], "lake events differ");
    assert_eq!(actual["sessions"], expected["sessions"], "sessions differ");
    assert_eq!(actual["features"], expected["features"], "features differ");
}
