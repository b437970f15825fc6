//! kill -9 at random moments, restarting each time (and once after the full snapshot rolled
//! out of the chain): afterwards the lake, sessions and features hold every input exactly once
//! and equal an uninterrupted run's.

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};

use super::{
    Broker, WeirProcess, clickstream, lake_tables, pipeline_config, produce, session_counts,
};

/// Runs `weir run --bounded` on `config`, killing it with SIGKILL `kills` times at random
/// moments after it owns partitions, then lets it finish. Returns the seed used.
pub fn crash_then_finish(config: &Path, instance: &str, kills: usize) -> u64 {
    let seed: u64 = rand::random();
    eprintln!("kill schedule seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut killed = 0;
    while killed < kills {
        let mut process = WeirProcess::start(config, instance, true);
        process.wait_log(
            "partitions to be assigned",
            Duration::from_secs(90),
            |log| log.contains("Partitions assigned"),
        );
        std::thread::sleep(Duration::from_millis(rng.random_range(0..500)));
        assert!(
            process.child.try_wait().unwrap().is_none(),
            "the run finished before kill {}; use a larger input:\n{}",
            killed + 1,
            process.log()
        );
        process.kill();
        killed += 1;
    }
    WeirProcess::start(config, instance, true).wait_success(Duration::from_secs(300));
    seed
}

#[test]
fn kill_9_at_random_moments_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let lines = clickstream(2500);
    produce(&bootstrap, "clicks", &lines);

    let reference = tempfile::tempdir().unwrap();
    let reference_config = pipeline_config(&bootstrap, reference.path(), "reference");
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(300));
    let expected = lake_tables(reference.path());

    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "crashy");
    crash_then_finish(&config, "crashy", 5);
    let actual = lake_tables(out.path());
    assert!(!expected["events"].as_array().unwrap().is_empty());
    assert_eq!(actual["events"], expected["events"], "lake events differ");
    assert_eq!(actual["sessions"], expected["sessions"], "sessions differ");
    assert_eq!(actual["features"], expected["features"], "features differ");

    // A read_committed consumer sees each session once; both runs wrote to the same topic, so
    // each session id appears once per run.
    let counts = session_counts(&bootstrap, "weir.sessions");
    let sessions = expected["sessions"].as_array().unwrap();
    assert_eq!(
        counts.len(),
        sessions.len(),
        "sessions in the topic and the lake differ"
    );
    for row in sessions {
        assert_eq!(
            counts.get(row[1].as_str().unwrap()),
            Some(&2),
            "a session is not in the topic once per run"
        );
    }
}

/// A partition that ran long enough drops its full snapshot from its chain: its slices of a
/// rolling snapshot make up the whole state. The first users' open sessions are then only in
/// those slices: other users' events kept every checkpoint busy after theirs. Killed then,
/// the restart restores from the slices and changes alone, and the lake, sessions and
/// features equal an uninterrupted run's.
#[test]
fn a_restore_from_the_slices_of_a_rolling_snapshot_alone_loses_and_duplicates_nothing() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let first = clickstream(300);
    let others = weir::synth::clickstream::generate(&weir::synth::clickstream::ClickstreamSpec {
        seed: 11,
        users: 600,
        malformed_ratio: 0.0,
        ..Default::default()
    });
    let others: Vec<String> = others
        .iter()
        .map(|line| {
            let mut event: serde_json::Value = serde_json::from_str(line).unwrap();
            for field in ["user_id", "event_id"] {
                event[field] = format!("other-{}", event[field].as_str().unwrap()).into();
            }
            event.to_string()
        })
        .collect();
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "rolling");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("interval = \"1s\"", "interval = \"100ms\"");
    std::fs::write(&config, text).unwrap();
    let process = WeirProcess::start(&config, "rolling", false);
    process.wait_log(
        "partitions to be assigned",
        Duration::from_secs(90),
        |log| log.contains("Partitions assigned"),
    );
    produce(&bootstrap, "clicks", &first);
    // The other users' events trickle in over about four seconds: a checkpoint of changes
    // for each chunk, twice as many as a rolling snapshot has slices.
    for chunk in others.chunks(others.len().div_ceil(2 * weir::checkpoint::SLICES as usize)) {
        std::thread::sleep(Duration::from_millis(250));
        produce(&bootstrap, "clicks", chunk);
    }
    std::thread::sleep(Duration::from_secs(1));
    process.kill();
    let restart =
        WeirProcess::start(&config, "rolling", true).wait_success(Duration::from_secs(300));
    let restores: Vec<&str> = restart
        .lines()
        .filter(|l| l.contains("Partition restored"))
        .collect();
    assert!(
        restores.iter().any(|l| l.contains("from_full=Some(false)")),
        "no partition restored from slices alone:\n{}",
        restores.join("\n")
    );

    let reference = tempfile::tempdir().unwrap();
    let reference_config = pipeline_config(&bootstrap, reference.path(), "reference");
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(300));
    let expected = lake_tables(reference.path());
    let actual = lake_tables(out.path());
    assert!(!expected["sessions"].as_array().unwrap().is_empty());
    assert_eq!(actual["events"], expected["events"], "lake events differ");
    assert_eq!(actual["sessions"], expected["sessions"], "sessions differ");
    assert_eq!(actual["features"], expected["features"], "features differ");
}
