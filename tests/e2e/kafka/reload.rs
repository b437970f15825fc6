//! Hot reload on a running daemon: while a steady stream flows, `bot-filter` v1 is replaced
//! by a v2 built from edited source, bad files are rejected while v2 keeps serving, and a
//! `sessionize` swap keeps the open sessions. SIGHUP reloads the config: safe changes apply,
//! unsafe ones are refused and nothing changes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{
    Broker, Record, WeirProcess, clickstream, lake_tables, pipeline_config, produce, read_all,
    request, wait_for, wait_for_answer,
};
use crate::harness::{plugin_dir, plugin_status};

const STAGE_PLUGINS: &[&str] = &["bot-filter", "ip-geo", "sessionize"];

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// A folder with the built v1 of every stage's plugin.
fn plugin_folder(parent: &Path) -> PathBuf {
    let dir = parent.join("plugins");
    std::fs::create_dir_all(&dir).unwrap();
    for name in STAGE_PLUGINS {
        let file = format!("{name}.wasm");
        std::fs::copy(plugin_dir().join(&file), dir.join(&file)).unwrap();
    }
    dir
}

/// Puts `bytes` in place as `<name>.wasm` the safe way: written beside it, then renamed.
fn install(dir: &Path, name: &str, bytes: &[u8]) {
    let tmp = dir.join(format!(".{name}.wasm.tmp"));
    std::fs::write(&tmp, bytes).unwrap();
    std::fs::rename(&tmp, dir.join(format!("{name}.wasm"))).unwrap();
}

/// bot-filter v2: the same crate with one edit, built as a user would, that prefixes every
/// `bot_reason` with `v2:`.
fn bot_filter_v2() -> Vec<u8> {
    let built = xtask::plugins::build_variant("bot-filter", "bot-filter-v2", |dir| {
        let lib = dir.join("src/lib.rs");
        let text = std::fs::read_to_string(&lib)?;
        let edited = text.replacen(
            "event.set_str(\"bot_reason\", reason);",
            "event.set_str(\"bot_reason\", &format!(\"v2:{reason}\"));",
            1,
        );
        anyhow::ensure!(
            edited != text,
            "bot-filter no longer sets bot_reason this way"
        );
        std::fs::write(&lib, edited)?;
        Ok(())
    })
    .unwrap_or_else(|e| panic!("{e:#}"));
    std::fs::read(built).unwrap()
}

/// The value of the sample of `name` with `labels` (among others) in Prometheus text, 0 when
/// absent.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' '))
        .find(|(sample, _)| {
            let (sample_name, sample_labels) = sample.split_once('{').unwrap_or((sample, ""));
            sample_name == name
                && labels
                    .iter()
                    .all(|(k, v)| sample_labels.contains(&format!("{k}=\"{v}\"")))
        })
        .and_then(|(_, value)| value.parse().ok())
        .unwrap_or(0.0)
}

/// Records by provenance; a `read_committed` consumer must see each once.
fn by_provenance(records: Vec<Record>) -> BTreeMap<String, Record> {
    let mut by_provenance = BTreeMap::new();
    for record in records {
        let provenance = record.provenance();
        if let Some(earlier) = by_provenance.insert(provenance.clone(), record) {
            panic!("{provenance} seen twice: {earlier:?}");
        }
    }
    by_provenance
}

#[test]
fn plugins_swap_at_batch_boundaries_and_bad_files_are_rejected_while_the_stream_runs() {
    let v2 = bot_filter_v2();
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    let work = tempfile::tempdir().unwrap();
    let (out, reference) = (work.path().join("run"), work.path().join("reference"));
    let config = pipeline_config(&bootstrap, &out, "reload");
    let reference_config = pipeline_config(&bootstrap, &reference, "reload-reference");
    super::use_reference_topics(&broker, &reference_config);
    let plugins = plugin_folder(work.path());
    let v1 = std::fs::read(plugins.join("bot-filter.wasm")).unwrap();
    let port = xtask::servers::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let process = WeirProcess::start_with(
        &config,
        "reload",
        false,
        &plugins,
        &[("WEIR_ADMIN_LISTEN", &listen)],
    );
    wait_for_answer(port, "/readyz", |code, _| code == 200);

    // A steady stream: a slice of the input every 100 ms. The second half waits until v2 is
    // loaded, so that however slow the load, v2 sees records (and bots) of its own.
    let input = clickstream(240);
    let slices: Vec<Vec<String>> = input
        .chunks(input.len() / 60 + 1)
        .map(<[_]>::to_vec)
        .collect();
    let produced = Arc::new(AtomicUsize::new(0));
    let v2_loaded = Arc::new(AtomicBool::new(false));
    let producer = {
        let (bootstrap, produced, slices) = (bootstrap.clone(), produced.clone(), slices.clone());
        let v2_loaded = v2_loaded.clone();
        std::thread::spawn(move || {
            for (i, slice) in slices.iter().enumerate() {
                if i == slices.len() / 2 {
                    wait_for("v2 to load", Duration::from_secs(120), || {
                        v2_loaded.load(Ordering::SeqCst)
                    });
                }
                produce(&bootstrap, "clicks", slice);
                produced.fetch_add(1, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };
    let produced_at_least = |n: usize| {
        wait_for("the producer", Duration::from_secs(120), || {
            produced.load(Ordering::SeqCst) >= n
        });
    };

    produced_at_least(15);
    install(&plugins, "bot-filter", &v2);
    // Loaded, then serving once the stage's next batch swaps it in (records keep coming).
    wait_for("v2 to load", Duration::from_secs(60), || {
        let (status, v2) = (plugin_status(port, "bot-filter"), sha256(&v2));
        status["pending_sha256"] == v2.as_str() || status["sha256"] == v2.as_str()
    });
    v2_loaded.store(true, Ordering::SeqCst);
    wait_for("v2 to serve", Duration::from_secs(60), || {
        plugin_status(port, "bot-filter")["sha256"] == sha256(&v2).as_str()
    });

    // Each kind of bad file is rejected with its reason, and v2 keeps serving.
    let half_of_v1 = &v1[..v1.len() / 2];
    let empty_component = b"\0asm\x0d\0\x01\0".to_vec();
    let sessionize = std::fs::read(plugins.join("sessionize.wasm")).unwrap();
    let bad: [(&str, &[u8], &str); 4] = [
        (
            "not a component",
            b"#!/bin/sh\necho hello\n",
            "not a valid component",
        ),
        ("wrong world", &empty_component, "weir:transform"),
        ("init error", &sessionize, "init failed"),
        ("partially written", half_of_v1, "not a valid component"),
    ];
    for (kind, bytes, reason) in bad {
        if kind == "partially written" {
            // A copy in progress: the file itself is written, and left half done.
            std::fs::write(plugins.join("bot-filter.wasm"), bytes).unwrap();
        } else {
            install(&plugins, "bot-filter", bytes);
        }
        let sha = sha256(bytes);
        wait_for(kind, Duration::from_secs(60), || {
            plugin_status(port, "bot-filter")["last_rejection"]["sha256"] == sha.as_str()
        });
        let status = plugin_status(port, "bot-filter");
        let got = status["last_rejection"]["reason"].as_str().unwrap();
        assert!(got.contains(reason), "{kind}: reason {got:?}");
        assert_eq!(status["sha256"], sha256(&v2), "{kind} replaced v2");
    }
    // The finished copy: the same bytes as v2, so nothing changes.
    install(&plugins, "bot-filter", &v2);

    produced_at_least(35);
    let sessionize_v2 = xtask::plugins::with_custom_section(&sessionize, "weir-test-v2");
    install(&plugins, "sessionize", &sessionize_v2);
    wait_for_answer(port, "/plugins", |_, body| {
        body.contains(&sha256(&sessionize_v2))
    });
    producer.join().unwrap();

    let metrics = request(port, "GET", "/metrics").unwrap().1;
    let reloads = |plugin: &str, result: &str| {
        metric(
            &metrics,
            "weir_plugin_reloads_total",
            &[("plugin", plugin), ("result", result)],
        )
    };
    assert_eq!(reloads("bot-filter", "loaded"), 1.0, "{metrics}");
    assert_eq!(reloads("bot-filter", "rejected"), 4.0);
    assert_eq!(reloads("sessionize", "loaded"), 1.0);
    let status = plugin_status(port, "bot-filter");
    assert!(status["calls"].as_u64().unwrap() > 0, "{status}");
    assert!(status["p99_ms"].as_f64().unwrap() > 0.0, "{status}");
    assert_eq!(status["errors"], 0);
    let log = process.terminate(Duration::from_secs(60));
    assert!(log.contains("Stage swapped to the new version"), "{log}");
    WeirProcess::start_with(&config, "reload", true, &plugins, &[])
        .wait_success(Duration::from_secs(120));
    WeirProcess::start(&reference_config, "reference", true).wait_success(Duration::from_secs(120));

    // Nothing lost or repeated, and the sessions open across the sessionize swap equal an
    // uninterrupted v1 run's.
    let lake = lake_tables(&out);
    assert!(!lake["sessions"].as_array().unwrap().is_empty());
    assert_eq!(lake, lake_tables(&reference));

    // The bot outputs switch from v1 to v2 once per partition, at a batch boundary: every
    // record after the first v2 one is v2.
    let bots = by_provenance(read_all(&bootstrap, "weir.bots"));
    let reference_bots = by_provenance(read_all(&bootstrap, "ref.bots"));
    assert_eq!(
        bots.keys().collect::<BTreeSet<_>>(),
        reference_bots.keys().collect::<BTreeSet<_>>()
    );
    let mut by_partition: BTreeMap<String, Vec<(i64, bool)>> = BTreeMap::new();
    for (provenance, record) in &bots {
        let reason = record.value["bot_reason"].as_str().unwrap();
        let expected = reference_bots[provenance].value["bot_reason"]
            .as_str()
            .unwrap();
        let v2 = reason.strip_prefix("v2:");
        assert_eq!(v2.unwrap_or(reason), expected);
        let offset = record
            .header("weir.source.offset")
            .unwrap()
            .parse()
            .unwrap();
        let partition = record.header("weir.source.partition").unwrap().to_string();
        by_partition
            .entry(partition)
            .or_default()
            .push((offset, v2.is_some()));
    }
    let (mut before, mut after) = (0, 0);
    for (partition, mut outputs) in by_partition {
        outputs.sort();
        let first_v2 = outputs
            .iter()
            .position(|(_, v2)| *v2)
            .unwrap_or(outputs.len());
        assert!(
            outputs[first_v2..].iter().all(|(_, v2)| *v2),
            "partition {partition} went back to v1: {outputs:?}"
        );
        before += first_v2;
        after += outputs.len() - first_v2;
    }
    assert!(before > 0 && after > 0, "v1 {before}, v2 {after}");
}

#[test]
fn sighup_applies_safe_config_changes_and_refuses_the_rest() {
    let broker = Broker::start();
    let bootstrap = broker.bootstrap();
    broker.create_topic("audit.bots", 1);
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), "sighup");
    let original = std::fs::read_to_string(&config).unwrap();
    let port = xtask::servers::free_port().unwrap();
    let listen = format!("127.0.0.1:{port}");
    let process =
        WeirProcess::start_with_env(&config, "sighup", false, &[("WEIR_ADMIN_LISTEN", &listen)]);
    wait_for_answer(port, "/readyz", |code, _| code == 200);
    let input = clickstream(60);
    let (first, second) = input.split_at(input.len() / 2);
    let consumed = |n: usize| {
        wait_for_answer(port, "/metrics", |_, body| {
            metric(body, "weir_source_records_total", &[]) >= n as f64
        });
    };
    produce(&bootstrap, "clicks", first);
    consumed(first.len());
    let reloads = |result: &str| {
        let body = request(port, "GET", "/metrics").unwrap().1;
        metric(&body, "weir_config_reloads_total", &[("result", result)])
    };
    let reload = |text: &str, result: &str, count: f64| {
        std::fs::write(&config, text).unwrap();
        process.hangup();
        wait_for(result, Duration::from_secs(30), || reloads(result) >= count);
    };

    // Unsafe changes and a config its plugin refuses: nothing changes.
    reload(
        &original.replace("group = \"sighup\"", "group = \"other\""),
        "refused",
        1.0,
    );
    reload(
        &original.replace("rate_limit = 120", "rate_limit = 0"),
        "refused",
        2.0,
    );
    let log = process.log();
    assert!(log.contains("source: changing it needs a restart"), "{log}");
    assert!(log.contains("rate_limit"), "{log}");

    // Safe: a stage's config, a sink's tuning and a new sink for an existing route.
    let safe = original
        .replace("rate_limit = 120", "rate_limit = 120\nextra_patterns = \"Firefox\"")
        .replace("roll_interval = \"5m\"", "roll_interval = \"1m\"")
        .replace(
            "[dead_letter]",
            "[sinks.audit]\ntype = \"kafka\"\nroutes = [\"bots\"]\ntopic = \"audit.bots\"\n\n[dead_letter]",
        );
    reload(&safe, "applied", 1.0);
    wait_for_answer(port, "/pipeline", |_, body| body.contains("\"audit\""));
    produce(&bootstrap, "clicks", second);
    consumed(input.len());
    let metrics = request(port, "GET", "/metrics").unwrap().1;
    let refused = metric(
        &metrics,
        "weir_config_reloads_total",
        &[("result", "refused")],
    );
    assert_eq!(refused, 2.0);
    process.terminate(Duration::from_secs(60));

    let event_ids = |lines: &[String]| -> BTreeSet<String> {
        super::valid_events(lines)
            .iter()
            .map(|e| e["event_id"].as_str().unwrap().to_string())
            .collect()
    };
    let (first_ids, second_ids) = (event_ids(first), event_ids(second));
    let bots = by_provenance(read_all(&bootstrap, "weir.bots"));
    let firefox = |r: &Record| {
        r.value["bot_reason"]
            .as_str()
            .is_some_and(|reason| reason.to_lowercase().contains("user_agent:firefox"))
    };
    let id = |r: &Record| r.value["event_id"].as_str().unwrap().to_string();
    let flagged: BTreeSet<String> = bots.values().filter(|r| firefox(r)).map(id).collect();
    assert!(!flagged.is_empty(), "the new pattern never applied");
    assert!(flagged.is_subset(&second_ids), "applied before the reload");
    // The added sink takes the bots route from the reload on: exactly the second half's bots.
    let audit: BTreeSet<String> = by_provenance(read_all(&bootstrap, "audit.bots"))
        .values()
        .map(id)
        .collect();
    let second_bots: BTreeSet<String> = bots
        .values()
        .map(id)
        .filter(|e| second_ids.contains(e))
        .collect();
    assert_eq!(audit, second_bots);
    assert!(bots.values().map(id).any(|e| first_ids.contains(&e)));
}
