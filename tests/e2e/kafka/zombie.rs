//! Zombie fencing on Apache Kafka: an instance frozen (SIGSTOP) with its transaction open
//! stays frozen past its session timeout; the group gives its partitions to another instance,
//! which continues the same open Parquet files; then the zombie resumes. Frozen as an epoch
//! starts to commit, it stages the epoch's parts, writes its checkpoints and commits: the
//! broker must refuse the commit (the offsets carry the zombie's stale group generation,
//! KIP-447), and the zombie's parts must not replace the heir's (before parts were named by
//! the instance that staged them, it overwrote one and the lake lost about a hundred events).
//! Frozen between batches, it learns first that its assignment is lost, rejoins and gets
//! partitions back: the outputs its lost epoch had produced must not commit with its next
//! epoch (they did, and repeated sessions in the topic, until a lost assignment aborted the
//! transaction). Either way nothing may be duplicated: the lake equals an uninterrupted run's
//! and a `read_committed` consumer sees each session once.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use super::group::caught_up;
use super::{
    Broker, WeirProcess, clickstream, lake_tables, pipeline_config, produce, read_all,
    session_counts, use_reference_topics, wait_for, wait_for_empty_group,
};

#[test]
fn a_frozen_member_past_its_session_timeout_cannot_commit_when_it_resumes() {
    // Its third epoch starts to commit: the transaction is open with the epoch's outputs.
    // Resumed, it stages the epoch's Parquet parts, writes its checkpoints and commits, all
    // after the heir has continued the same files.
    let zombie_log = zombie_run("zombie", "epoch-start:3@stop", "Epoch failed");
    // The broker refused the offsets of the zombie's stale generation (KIP-447).
    let refusal = zombie_log
        .lines()
        .find(|l| l.contains("Epoch failed"))
        .unwrap_or_default();
    assert!(
        ["Unknown member", "generation", "Fenced"]
            .iter()
            .any(|reason| refusal.contains(reason)),
        "the zombie's commit was not refused by the broker: {refusal}"
    );
}

#[test]
fn a_member_that_lost_its_assignment_commits_none_of_its_lost_epoch() {
    // Frozen as it is about to poll, after batches whose outputs are in the open transaction.
    let zombie_log = zombie_run("lost", "poll:200@stop", "Assignment lost");
    let lost = zombie_log.find("Assignment lost").unwrap_or_default();
    assert!(
        zombie_log[lost..].contains("Partition restored"),
        "the zombie got no partition back after its assignment was lost"
    );
}

/// Runs a zombie frozen at `failpoint`, an heir that takes its partitions, and the zombie
/// resumed until it logs `resumed`; checks the lake and the sessions topic against an
/// uninterrupted run and returns the zombie's log.
fn zombie_run(group: &str, failpoint: &str, resumed: &str) -> String {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let lines = clickstream(300);
    let (first, rest) = lines.split_at(lines.len() / 4);
    produce(&bootstrap, "clicks", first);

    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), group);
    let zombie =
        WeirProcess::start_with_env(&config, "zombie", false, &[("WEIR_FAILPOINT", failpoint)]);
    zombie.wait_log(
        "the zombie to own partitions",
        Duration::from_secs(60),
        |log| log.contains("Partition restored"),
    );
    // Records keep arriving, before and after the freeze.
    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let (bootstrap, producing) = (bootstrap.clone(), producing.clone());
        let rest = rest.to_vec();
        std::thread::spawn(move || {
            for slice in rest.chunks(rest.len() / 40 + 1) {
                produce(&bootstrap, "clicks", slice);
                std::thread::sleep(Duration::from_millis(250));
            }
            producing.store(false, Ordering::SeqCst);
        })
    };
    zombie.wait_log("the zombie to freeze", Duration::from_secs(60), |log| {
        log.contains("reached; stopping")
    });

    // The session timeout is 6 s: the group drops the zombie and the heir takes everything.
    let heir = WeirProcess::start(&config, "heir", false);
    heir.wait_log(
        "the heir to own every partition",
        Duration::from_secs(90),
        |log| log.matches("Partition restored").count() >= super::PARTITIONS as usize,
    );
    std::thread::sleep(Duration::from_secs(2));
    zombie.signal(libc::SIGCONT);
    zombie.wait_log(resumed, Duration::from_secs(60), |log| {
        log.contains(resumed)
    });
    producer.join().unwrap();
    assert!(!producing.load(Ordering::SeqCst));
    wait_for(
        "the input to be committed",
        Duration::from_secs(120),
        || caught_up(&bootstrap, group),
    );
    let zombie_log = zombie.terminate(Duration::from_secs(60));
    heir.terminate(Duration::from_secs(60));
    // Close the windows still open at the end of the input.
    wait_for_empty_group(&bootstrap, group);
    WeirProcess::start(&config, "heir", true).wait_success(Duration::from_secs(120));

    let reference = tempfile::tempdir().unwrap();
    let reference_config = pipeline_config(&bootstrap, reference.path(), "reference");
    use_reference_topics(&broker, &reference_config);
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(180));
    let expected = lake_tables(reference.path());
    let actual = lake_tables(out.path());
    assert!(!expected["sessions"].as_array().unwrap().is_empty());
    let rows = |tables: &serde_json::Value| -> BTreeMap<String, usize> {
        let mut rows = BTreeMap::new();
        for row in tables["events"].as_array().unwrap() {
            *rows.entry(row.to_string()).or_default() += 1;
        }
        rows
    };
    let (want, got) = (rows(&expected), rows(&actual));
    let lost: Vec<_> = want.keys().filter(|r| !got.contains_key(*r)).collect();
    let repeated: Vec<_> = got.iter().filter(|(_, n)| **n > 1).collect();
    let extra: Vec<_> = got.keys().filter(|r| !want.contains_key(*r)).collect();
    assert!(
        lost.is_empty() && repeated.is_empty() && extra.is_empty(),
        "lake events: {} lost {lost:?}, {} repeated {repeated:?}, {} not in the reference {extra:?}",
        lost.len(),
        repeated.len(),
        extra.len()
    );
    assert_eq!(actual["sessions"], expected["sessions"], "sessions differ");
    assert_eq!(actual["features"], expected["features"], "features differ");

    let sessions = session_counts(&bootstrap, "weir.sessions");
    assert!(sessions.values().all(|n| *n == 1), "a session is repeated");
    assert_eq!(
        sessions.len(),
        read_all(&bootstrap, "ref.sessions").len(),
        "the sessions topic differs from the reference's"
    );
    zombie_log
}
