//! The chaos soak: three `weir run` instances in one consumer group on a three-node Apache
//! Kafka cluster (replication factor 3, `min.insync.replicas` 2), the lake and checkpoints on
//! s3s-fs, features in Redis, and a producer writing at a fixed rate. For `WEIR_CHAOS_SECONDS`
//! (default 120) two fault schedules run side by side, each striking every 1-3 s: on the
//! instances, kill -9 or SIGTERM of a random one (restarted at once) or a zombie (SIGSTOP past
//! the group's session timeout while it holds an open transaction, then SIGCONT); on the
//! servers, kill -9 of a random Kafka node (restarted 3-6 s later), or s3s-fs or redis-server
//! stopped for 2-4 s. Afterwards the lake, the features, the dead letters and the sessions
//! topic (read with `read_committed`, each session once) must equal those of one
//! uninterrupted instance on the same input. It prints a report: faults by kind, duplicates
//! and losses, and the time from each kill -9 to the restarted instance processing again.
//! `WEIR_CHAOS_SEED` replays a fault sequence and `WEIR_CHAOS_FAULTS` (default
//! `kill,term,zombie,broker,s3,redis`) picks the kinds of fault.
//!
//! The default run (and `.ci/run`) has the short form, 120 s of faults, at least 25 of them
//! (5 to 8 minutes in all). The long form, at least 300 faults:
//! `WEIR_CHAOS_SECONDS=1800 cargo test --workspace --test e2e kafka::chaos -- --nocapture`;
//! `WEIR_CHAOS_KEEP=1` keeps the instances' logs, the lake and the checkpoints (a failed soak
//! keeps them anyway).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use xtask::servers::{KafkaCluster, RedisServer, S3Server};

use super::lakehouse::{features, lakehouse_config, staged};
use super::{Broker, WeirProcess, clickstream, lake_tables, produce, read_all};

const INSTANCES: usize = 3;
/// Faults on the instances, then on the servers.
const INSTANCE_FAULTS: [&str; 3] = ["kill", "term", "zombie"];
const SERVER_FAULTS: [&str; 3] = ["broker", "s3", "redis"];
/// A zombie stays frozen this long: past the group's session timeout (6 s in the tests'
/// config), so the group gives its partitions to the others while its transaction is open.
const FROZEN: Duration = Duration::from_secs(8);

/// The soak's folders (the lake and checkpoints on s3s-fs, Redis, the instances' configs and
/// logs): deleted when the soak passes, kept for a look when it fails or `WEIR_CHAOS_KEEP` is
/// set.
struct KeptOnFailure(Vec<std::path::PathBuf>);

impl Drop for KeptOnFailure {
    fn drop(&mut self) {
        if std::thread::panicking() || std::env::var_os("WEIR_CHAOS_KEEP").is_some() {
            println!("the soak's folders are kept: {:?}", self.0);
        } else {
            for folder in &self.0 {
                let _ = std::fs::remove_dir_all(folder);
            }
        }
    }
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}
/// Starts an instance and waits until it processes. Should a member's join never complete
/// (Tansu, the broker of earlier soaks, had such a case), starting weir again gets it in: a
/// start that does not process within 60 s is killed and retried, and the report counts them.
fn start_assigned(
    config: &std::path::Path,
    id: &str,
    bounded: bool,
    stuck_joins: &mut u32,
) -> WeirProcess {
    for _ in 0..5 {
        let process = WeirProcess::start(config, id, bounded);
        // Processing: partitions assigned and restored, or restored by a rewind after a
        // restore that failed (a server down).
        if process.log_within(Duration::from_secs(60), |log| {
            log.contains("Partitions assigned") || log.contains("Recovered from the last committed")
        }) {
            return process;
        }
        *stuck_joins += 1;
        let log = process.log();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        println!(
            "{id}: no assignment within 60 s ({} bytes of log at {}); last lines:",
            log.len(),
            process.log_path().display()
        );
        for line in tail.iter().rev() {
            println!("    {line}");
        }
        process.kill();
    }
    panic!("{id} never got an assignment in 5 starts");
}

/// How often `what` appears in the logs of the chaos run's instances under `out`.
fn logged(out: &std::path::Path, what: &str) -> usize {
    std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("weir-chaos-"))
        .map(|e| {
            std::fs::read_to_string(e.path())
                .unwrap_or_default()
                .matches(what)
                .count()
        })
        .sum()
}

/// Dead letters by source record (`topic/partition/offset`), with their stage.
fn dead_letters(bootstrap: &str, topic: &str) -> BTreeMap<String, String> {
    read_all(bootstrap, topic)
        .into_iter()
        .map(|r| {
            (
                r.provenance(),
                r.header("weir.dlq.stage").unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// The faults of `kinds` a schedule strikes with, until `producing` ends; `strike` injects one
/// and returns its name for the report.
fn schedule(
    rng: &mut StdRng,
    kinds: &[&'static str],
    producing: &AtomicBool,
    mut strike: impl FnMut(&mut StdRng, &'static str) -> &'static str,
) -> BTreeMap<&'static str, u32> {
    let mut faults = BTreeMap::new();
    while !kinds.is_empty() && producing.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rng.random_range(1_000..3_000)));
        let kind = kinds[rng.random_range(0..kinds.len())];
        *faults.entry(strike(rng, kind)).or_default() += 1;
    }
    faults
}

/// Kills a random Kafka node and starts it again 3-6 s later.
fn broker_fault(rng: &mut StdRng, cluster: &mut KafkaCluster) -> &'static str {
    let node = rng.random_range(0..3);
    cluster.kill(node);
    std::thread::sleep(Duration::from_millis(rng.random_range(3_000..6_000)));
    cluster
        .restart(node)
        .unwrap_or_else(|e| panic!("Kafka node {} did not come back: {e:#}", node + 1));
    "Kafka node kill -9"
}

#[test]
fn chaos_soak_with_instance_broker_and_server_faults() {
    let seconds: u64 = env_or("WEIR_CHAOS_SECONDS", 120);
    let seed: u64 = env_or("WEIR_CHAOS_SEED", rand::random());
    let wanted: String = env_or(
        "WEIR_CHAOS_FAULTS",
        "kill,term,zombie,broker,s3,redis".to_string(),
    );
    let picked = |all: [&'static str; 3]| -> Vec<&'static str> {
        all.into_iter()
            .filter(|kind| wanted.split(',').any(|w| w == *kind))
            .collect()
    };
    let (instance_kinds, server_kinds) = (picked(INSTANCE_FAULTS), picked(SERVER_FAULTS));
    println!("chaos soak: {seconds} s, seed {seed} (WEIR_CHAOS_SEED replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut server_rng = StdRng::seed_from_u64(seed.wrapping_add(1));
    let mut broker = Broker::with_nodes(3);
    let bootstrap = broker.bootstrap();
    let kept = |prefix| {
        tempfile::Builder::new()
            .prefix(prefix)
            .disable_cleanup(true)
            .tempdir()
            .unwrap()
    };
    let servers = kept("weir-chaos-servers-");
    let out = kept("weir-chaos-");
    let _folders = KeptOnFailure(vec![servers.path().into(), out.path().into()]);
    let mut s3 = S3Server::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    s3.create_bucket("weir").unwrap();
    let mut redis = RedisServer::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    println!("instance logs in {}", out.path().display());
    let config = lakehouse_config(&bootstrap, out.path(), "chaos", &s3, &redis);

    // A fixed rate: the input spread evenly over the soak, a slice every 500 ms.
    let lines = clickstream(usize::try_from(seconds).unwrap() * 8);
    let slices: Vec<Vec<String>> = lines
        .chunks(lines.len() / (usize::try_from(seconds).unwrap() * 2) + 1)
        .map(<[String]>::to_vec)
        .collect();
    let mut stuck_joins = 0;
    let ids: Vec<String> = (0..INSTANCES).map(|i| format!("chaos-{i}")).collect();
    let mut instances: Vec<Option<WeirProcess>> = ids
        .iter()
        .map(|id| Some(start_assigned(&config, id, false, &mut stuck_joins)))
        .collect();
    let producing = Arc::new(AtomicBool::new(true));
    let producer = {
        let (bootstrap, producing) = (bootstrap.clone(), producing.clone());
        std::thread::spawn(move || {
            // Slice i is due 500 ms × i after the start: after a stall (a partition without
            // a leader until the controller fences its dead node), the producer catches up.
            let start = Instant::now();
            for (i, slice) in slices.iter().enumerate() {
                let due = start + Duration::from_millis(500) * u32::try_from(i).unwrap();
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                produce(&bootstrap, "clicks", slice);
            }
            producing.store(false, Ordering::SeqCst);
        })
    };

    let started = Instant::now();
    // kill -9 of an instance to its successor processing again (its partitions restored).
    let mut recoveries: Vec<Duration> = Vec::new();
    let cluster = broker.cluster();
    let faults = std::thread::scope(|scope| {
        let servers = scope.spawn(|| {
            schedule(&mut server_rng, &server_kinds, &producing, |rng, kind| {
                let outage = Duration::from_millis(rng.random_range(2_000..4_000));
                match kind {
                    "broker" => broker_fault(rng, cluster),
                    "s3" => {
                        s3.stop();
                        std::thread::sleep(outage);
                        s3.resume().unwrap();
                        "s3s-fs down"
                    }
                    _ => {
                        redis.stop();
                        std::thread::sleep(outage);
                        redis.resume().unwrap();
                        "redis down"
                    }
                }
            })
        });
        let mut faults = schedule(&mut rng, &instance_kinds, &producing, |rng, kind| {
            let victim = rng.random_range(0..INSTANCES);
            if kind == "zombie" {
                let process = instances[victim].as_ref().unwrap();
                process.signal(libc::SIGSTOP);
                std::thread::sleep(FROZEN);
                process.signal(libc::SIGCONT);
                return "zombie (SIGSTOP)";
            }
            let process = instances[victim].take().unwrap();
            let struck = Instant::now();
            let name = if kind == "kill" {
                process.kill();
                "kill -9"
            } else {
                let (_, log) = process.terminate_and_wait(Duration::from_secs(90));
                assert!(!log.contains("panicked"), "{log}");
                "SIGTERM"
            };
            instances[victim] = Some(start_assigned(
                &config,
                &ids[victim],
                false,
                &mut stuck_joins,
            ));
            if kind == "kill" {
                recoveries.push(struck.elapsed());
            }
            name
        });
        faults.extend(servers.join().unwrap());
        faults
    });
    producer.join().unwrap();
    let soaked = started.elapsed();

    // The three end with kill -9 and one bounded instance drains the rest, closing every
    // window. Exactly-once covers the kills like any crash.
    std::thread::sleep(Duration::from_secs(5));
    for process in instances.into_iter().flatten() {
        process.kill();
    }
    super::wait_for_empty_group(&bootstrap, "chaos");
    start_assigned(&config, "chaos-0", true, &mut stuck_joins)
        .wait_success(Duration::from_secs(300));

    let reference = tempfile::tempdir().unwrap();
    let reference_config = lakehouse_config(&bootstrap, reference.path(), "reference", &s3, &redis);
    super::use_reference_topics(&broker, &reference_config);
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(600));

    let expected = lake_tables(&s3.data_dir().join("weir").join("reference"));
    let actual = lake_tables(&s3.data_dir().join("weir").join("chaos"));
    let events = actual["events"].as_array().unwrap();
    let distinct: BTreeSet<String> = events.iter().map(|row| row[0].to_string()).collect();
    let duplicates = events.len() - distinct.len();
    let expected_events = expected["events"].as_array().unwrap().len();
    let losses = expected_events.saturating_sub(distinct.len());
    let dead = dead_letters(&bootstrap, "weir.dlq");
    let malformed = lines.len() - super::valid_events(&lines).len();
    let sessions = read_all(&bootstrap, "weir.sessions");
    // Each repeat with its provenance (the input record that closed the session).
    let mut session_ids = BTreeSet::new();
    let repeats: Vec<_> = sessions
        .iter()
        .filter(|r| !session_ids.insert(r.value["session_id"].to_string()))
        .collect();
    let repeated_sessions = repeats.len();
    println!("chaos soak report (seed {seed})");
    println!(
        "  soak               {:.0} s, {INSTANCES} instances",
        soaked.as_secs_f64()
    );
    println!(
        "  input              {} records ({malformed} malformed)",
        lines.len()
    );
    for (kind, n) in &faults {
        println!("  fault {kind:<20} {n}");
    }
    println!(
        "  lake events        {} (expected {expected_events})",
        events.len()
    );
    println!("  duplicates         {duplicates} in the lake");
    println!("  losses             {losses}");
    println!(
        "  dead letters       {} (malformed inputs: {malformed})",
        dead.len()
    );
    println!(
        "  sessions topic     {} records, {repeated_sessions} repeated (read_committed)",
        sessions.len()
    );
    for record in &repeats {
        println!(
            "    repeated session {} {:?}",
            record.value["session_id"], record.headers
        );
    }
    recoveries.sort();
    if let (Some(median), Some(max)) = (recoveries.get(recoveries.len() / 2), recoveries.last()) {
        println!(
            "  kill -9 → processing again  median {:.2} s, max {:.2} s over {} kills",
            median.as_secs_f64(),
            max.as_secs_f64(),
            recoveries.len()
        );
    }
    println!("  joins retried      {stuck_joins}");
    println!(
        "  consumers replaced {} (zombies fenced by the group, and the like)",
        logged(out.path(), "a new consumer joins the group")
    );
    println!(
        "  epochs redone      {}",
        logged(out.path(), "Epoch failed")
    );
    println!(
        "  commits abandoned  {} (stuck in librdkafka; the producer replaced)",
        logged(out.path(), "abandoning it for a new one")
    );

    let struck: u32 = faults.values().sum();
    // The short form strikes at least 25 times, the long one (1800 s) at least 300.
    let required = (seconds / 6).max(25);
    assert!(
        u64::from(struck) >= required,
        "{struck} faults, fewer than {required}: {faults:?}"
    );
    assert_eq!(duplicates, 0, "events repeated in the lake");
    assert_eq!(repeated_sessions, 0, "sessions repeated in the topic");
    assert_eq!(
        session_ids.len(),
        expected["sessions"].as_array().unwrap().len(),
        "the sessions topic and the lake's sessions differ"
    );
    assert_eq!(actual["events"], expected["events"], "lake events differ");
    assert_eq!(actual["sessions"], expected["sessions"], "sessions differ");
    assert_eq!(actual["features"], expected["features"], "features differ");
    assert!(staged(&s3, "chaos").is_empty(), "parts left staged");
    assert_eq!(
        features(&redis, "chaos"),
        features(&redis, "reference"),
        "Redis features differ"
    );
    assert_eq!(
        dead.len(),
        malformed,
        "the DLQ holds other than the malformed inputs"
    );
    assert!(dead.values().all(|stage| stage == "decode"));
    assert_eq!(dead, dead_letters(&bootstrap, "ref.dlq"));
}
