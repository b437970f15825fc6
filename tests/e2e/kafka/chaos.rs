//! The chaos soak: three `weir run` instances in one consumer group on Apache Kafka, the lake and
//! checkpoints on s3s-fs, features in Redis, and a producer writing at a fixed rate. For
//! `WEIR_CHAOS_SECONDS` (default 90) a fault hits every 2-5 s: kill -9 or SIGTERM of a random
//! instance (restarted at once), or s3s-fs or redis-server stopped for 2-4 s. Afterwards the
//! lake, the features, the dead letters and the sessions topic (read with `read_committed`,
//! each session once) must equal those of one uninterrupted instance on the same input. It prints a report; `WEIR_CHAOS_SEED` replays a fault sequence and
//! `WEIR_CHAOS_FAULTS` (`kill,term,s3,redis`) picks the kinds of fault.
//!
//! The default run (and `.ci/run`) has the short form, 90 s of faults (about 3 minutes in
//! all). The long form: `WEIR_CHAOS_SECONDS=1800 cargo test --workspace --test e2e
//! kafka::chaos -- --nocapture`; `WEIR_CHAOS_KEEP=1` keeps the instances' logs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use xtask::servers::{RedisServer, S3Server};

use super::lakehouse::{features, lakehouse_config, staged};
use super::{Broker, WeirProcess, clickstream, lake_tables, produce, read_all};

const INSTANCES: usize = 3;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Should a member's join never complete (Tansu, the broker of earlier soaks, had such a
/// case), starting weir again gets it in: a start whose assignment does not come within 60 s
/// is killed and retried, and the report counts them.
fn start_assigned(
    config: &std::path::Path,
    id: &str,
    bounded: bool,
    stuck_joins: &mut u32,
) -> WeirProcess {
    for _ in 0..5 {
        let process = WeirProcess::start(config, id, bounded);
        if process.log_within(Duration::from_secs(60), |log| {
            log.contains("Partitions assigned")
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

#[test]
fn chaos_soak_with_three_instances_kills_and_server_outages() {
    let seconds: u64 = env_or("WEIR_CHAOS_SECONDS", 90);
    let seed: u64 = env_or("WEIR_CHAOS_SEED", rand::random());
    // Which faults to inject: kill, term, s3, redis (all by default).
    let wanted: String = env_or("WEIR_CHAOS_FAULTS", "kill,term,s3,redis".to_string());
    let kinds: Vec<u8> = ["kill", "term", "s3", "redis"]
        .iter()
        .zip(0u8..)
        .filter(|(name, _)| wanted.split(',').any(|w| w == **name))
        .map(|(_, kind)| kind)
        .collect();
    println!("chaos soak: {seconds} s, seed {seed} (WEIR_CHAOS_SEED replays it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let servers = tempfile::tempdir().unwrap();
    let mut s3 = S3Server::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    s3.create_bucket("weir").unwrap();
    let mut redis = RedisServer::start(servers.path()).unwrap_or_else(|e| panic!("{e:#}"));
    // WEIR_CHAOS_KEEP=1 keeps the instances' configs and logs for a look afterwards.
    let out = tempfile::Builder::new()
        .prefix("weir-chaos-")
        .disable_cleanup(std::env::var_os("WEIR_CHAOS_KEEP").is_some())
        .tempdir()
        .unwrap();
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
            for slice in &slices {
                let next = Instant::now() + Duration::from_millis(500);
                produce(&bootstrap, "clicks", slice);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            producing.store(false, Ordering::SeqCst);
        })
    };

    let started = Instant::now();
    let mut faults: BTreeMap<&str, u32> = BTreeMap::new();
    let mut recoveries: Vec<Duration> = Vec::new();
    while producing.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(rng.random_range(2_000..5_000)));
        let victim = rng.random_range(0..INSTANCES);
        let kind = kinds[rng.random_range(0..kinds.len())];
        if kind < 2 {
            let process = instances[victim].take().unwrap();
            recoveries.extend(process.assigned_after_start());
            if kind == 0 {
                process.kill();
                *faults.entry("kill -9").or_default() += 1;
            } else {
                let (_, log) = process.terminate_and_wait(Duration::from_secs(90));
                assert!(!log.contains("panicked"), "{log}");
                *faults.entry("SIGTERM").or_default() += 1;
            }
            instances[victim] = Some(start_assigned(
                &config,
                &ids[victim],
                false,
                &mut stuck_joins,
            ));
        }
        match kind {
            0 | 1 => {}
            2 => {
                s3.stop();
                std::thread::sleep(Duration::from_millis(rng.random_range(2_000..4_000)));
                s3.resume().unwrap();
                *faults.entry("s3s-fs down").or_default() += 1;
            }
            _ => {
                redis.stop();
                std::thread::sleep(Duration::from_millis(rng.random_range(2_000..4_000)));
                redis.resume().unwrap();
                *faults.entry("redis down").or_default() += 1;
            }
        }
    }
    producer.join().unwrap();
    let soaked = started.elapsed();

    // The time from each instance's last start to its assignment; then the three end with
    // kill -9 and one bounded instance drains the rest, closing every window. Exactly-once
    // covers the kills like any crash.
    std::thread::sleep(Duration::from_secs(5));
    for process in instances.into_iter().flatten() {
        recoveries.extend(process.assigned_after_start());
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
    let session_ids: BTreeSet<String> = sessions
        .iter()
        .map(|r| r.value["session_id"].to_string())
        .collect();
    let repeated_sessions = sessions.len() - session_ids.len();
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
        println!("  fault {kind:<12} {n}");
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
    recoveries.sort();
    println!(
        "  start → assigned   median {:?}, max {:?} over {} (re)starts; {stuck_joins} joins retried",
        recoveries[recoveries.len() / 2],
        recoveries.last().unwrap(),
        recoveries.len()
    );

    assert!(
        faults.values().sum::<u32>() >= 3,
        "too few faults: {faults:?}"
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
