//! SIGHUP with an unchanged config changes nothing, even while a commit hangs, and does not
//! end the process (`reload.rs` tests config changes).
//! SIGTERM while the epoch's commit hangs (a failure point makes it stop answering): the
//! process exits once the drain timeout has passed; in the next run a second signal during the
//! drain exits at once; and the run after that finishes the input with the lake exactly as an
//! uninterrupted run leaves it.
//! SIGTERM whose final commit fails in a sink: the epoch is aborted, and the revocation that
//! follows (the consumer's close) does not commit it again without what the sink gave up.

use std::time::{Duration, Instant};

use rdkafka::Offset;

use super::group::committed_input;
use super::{
    Broker, WeirProcess, clickstream, lake_tables, pipeline_config, produce, wait_for_answer,
};

#[test]
fn a_stuck_drain_exits_after_the_drain_timeout_and_recovery_holds() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "clicks", &clickstream(60));

    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "stuck");
    let mut process = WeirProcess::start_with_env(
        &config,
        "stuck",
        false,
        &[
            ("WEIR_FAILPOINT", "checkpoint-written@hang"),
            ("WEIR_DRAIN_TIMEOUT", "2s"),
        ],
    );
    process.wait_log("the commit to hang", Duration::from_secs(90), |log| {
        log.contains("failpoint checkpoint-written reached; hanging")
    });
    let pid = i32::try_from(process.child.id()).unwrap();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGHUP) };
    process.wait_log("SIGHUP to be logged", Duration::from_secs(10), |log| {
        log.contains("SIGHUP: the config is unchanged")
    });
    assert!(
        process.child.try_wait().unwrap().is_none(),
        "SIGHUP ended the process"
    );
    let signalled = Instant::now();
    // SAFETY: sending a signal to our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let (succeeded, log) = process.wait_exit(Duration::from_secs(30));
    let took = signalled.elapsed();
    assert!(!succeeded, "a timed-out drain is not a clean exit:\n{log}");
    assert!(log.contains("drain timed out after 2s"), "{log}");
    assert!(
        took >= Duration::from_secs(2) && took < Duration::from_secs(10),
        "exited {took:?} after SIGTERM"
    );

    // A second signal during a drain exits at once (code 130), without waiting for the timeout.
    let process = WeirProcess::start_with_env(
        &config,
        "stuck",
        false,
        &[
            ("WEIR_FAILPOINT", "checkpoint-written@hang"),
            ("WEIR_DRAIN_TIMEOUT", "60s"),
        ],
    );
    process.wait_log("the commit to hang again", Duration::from_secs(90), |log| {
        log.contains("failpoint checkpoint-written reached; hanging")
    });
    let pid = i32::try_from(process.child.id()).unwrap();
    // SAFETY: sending signals to our own child process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    std::thread::sleep(Duration::from_millis(500));
    let signalled = Instant::now();
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let mut process = process;
    let status = loop {
        if let Some(status) = process.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(10),
            "the second signal did not end the process"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    assert!(
        signalled.elapsed() < Duration::from_secs(2),
        "took {:?}",
        signalled.elapsed()
    );

    WeirProcess::start(&config, "stuck", true).wait_success(Duration::from_secs(300));
    let reference = tempfile::tempdir().unwrap();
    let reference_config = pipeline_config(&bootstrap, reference.path(), "reference");
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(300));
    let expected = lake_tables(reference.path());
    let actual = lake_tables(out.path());
    assert!(!expected["events"].as_array().unwrap().is_empty());
    assert_eq!(actual, expected, "the lake after a timed-out drain differs");
}

/// Whether `group` has committed an offset for any partition of `clicks`.
fn committed_any(bootstrap: &str, group: &str) -> bool {
    let (_, committed) = committed_input(bootstrap, group, Duration::from_secs(10));
    committed
        .unwrap()
        .elements()
        .iter()
        .any(|e| matches!(e.offset(), Offset::Offset(_)))
}

#[test]
fn a_final_commit_that_fails_in_a_sink_is_aborted_not_committed_on_revocation() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    produce(&bootstrap, "clicks", &clickstream(60));
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "final");
    // No epoch is due before SIGTERM: the final commit stages the first part of the run, and
    // the failure point makes that upload fail.
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(
        &config,
        text.replace("interval = \"1s\"", "interval = \"1h\""),
    )
    .unwrap();
    let port = xtask::servers::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let process = WeirProcess::start_with_env(
        &config,
        "final",
        false,
        &[
            ("WEIR_FAILPOINT", "stage-part:1@fail"),
            ("WEIR_ADMIN_LISTEN", &listen),
        ],
    );
    wait_for_answer(port, "/metrics", |_, body| {
        body.contains("weir_sink_records_total{sink=\"lake\",route=\"main\"}")
    });
    std::thread::sleep(Duration::from_secs(2));
    let (succeeded, log) = process.terminate_and_wait(Duration::from_secs(60));
    assert!(
        log.contains("failpoint stage-part reached; failing"),
        "{log}"
    );
    assert!(
        !succeeded,
        "a failed final commit is not a clean exit:\n{log}"
    );
    assert!(
        !committed_any(&bootstrap, "final"),
        "the failed final epoch was committed:\n{log}"
    );

    WeirProcess::start(&config, "final", true).wait_success(Duration::from_secs(300));
    let reference = tempfile::tempdir().unwrap();
    let reference_config = pipeline_config(&bootstrap, reference.path(), "reference");
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(300));
    let expected = lake_tables(reference.path());
    assert!(!expected["events"].as_array().unwrap().is_empty());
    assert_eq!(
        lake_tables(out.path()),
        expected,
        "the lake after a failed final commit differs"
    );
}
