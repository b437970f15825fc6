//! The hostile-record corpus (`tests/corpus/hostile-records.toml`) through the bundled
//! pipeline, mixed into a good clickstream: each hostile record is processed or dead-lettered
//! with the reason class the corpus names, and the good records' outputs are exactly those of a
//! run without the hostile ones.

use serde::Deserialize;
use weir::flow::{Provenance, SourceRecord};
use weir::pipeline::reason_class;

use crate::harness::{TestPipeline, geo, limits, root, wasm_stage};

#[derive(Debug, Deserialize)]
struct Corpus {
    record: Vec<Entry>,
}

#[derive(Debug, Deserialize)]
struct Entry {
    name: String,
    #[serde(default)]
    value: Option<String>,
    #[serde(default)]
    value_hex: Option<String>,
    #[serde(default)]
    pad: usize,
    #[serde(default)]
    nest: usize,
    #[serde(default)]
    fields: usize,
    expect: String,
}

impl Entry {
    fn bytes(&self) -> Vec<u8> {
        if let Some(hex) = &self.value_hex {
            return hex::decode(hex).unwrap();
        }
        let fields: String = (0..self.fields).map(|i| format!("\"f{i}\":1,")).collect();
        let nest = format!("{}{}", "[".repeat(self.nest), "]".repeat(self.nest));
        self.value
            .as_deref()
            .unwrap()
            .replace("PAD", &"x".repeat(self.pad))
            .replace("NEST", &nest)
            .replace("FIELDS", &fields)
            .into_bytes()
    }
}

fn corpus() -> Vec<Entry> {
    let text = std::fs::read_to_string(root().join("tests/corpus/hostile-records.toml")).unwrap();
    toml::from_str::<Corpus>(&text).unwrap().record
}

fn record(value: Vec<u8>, offset: i64) -> SourceRecord {
    SourceRecord {
        key: None,
        value,
        timestamp: None,
        headers: Vec::new(),
        provenance: Provenance {
            source: "input".into(),
            partition: 0,
            offset,
            trace: None,
        },
    }
}

const ROUTES: [&str; 5] = ["main", "bots", "sessions", "features", "late"];

/// Runs `input` in batches of 64 through the bundled stages.
fn run(input: &[SourceRecord]) -> TestPipeline {
    let (_dir, db) = geo();
    let stages: Vec<Box<dyn weir::pipeline::Stage>> = vec![
        Box::new(wasm_stage("bot-filter", &[], limits(), None)),
        Box::new(wasm_stage("ip-geo", &[], limits(), Some(db))),
        Box::new(wasm_stage("sessionize", &[("gap", "30m")], limits(), None)),
    ];
    let mut t = TestPipeline::new(stages, &ROUTES);
    for batch in input.chunks(64) {
        t.pipeline.process(batch).unwrap();
    }
    t.pipeline.finish().unwrap();
    t
}

fn is_hostile(value: &serde_json::Value) -> bool {
    value["user_id"]
        .as_str()
        .is_some_and(|u| u.starts_with("h-"))
        || value.get("user_id").is_some_and(|u| u.is_number())
}

#[test]
fn every_hostile_record_gets_its_reason_and_nothing_else_changes() {
    let corpus = corpus();
    assert!(corpus.len() >= 30);
    let good: Vec<Vec<u8>> = super::kafka::clickstream(40)
        .into_iter()
        .map(String::into_bytes)
        .collect();
    // The hostile records go between good ones; offsets say which is which.
    let mut mixed = Vec::new();
    let mut hostile_at = std::collections::BTreeMap::new();
    let mut good_records = Vec::new();
    let step = good.len() / corpus.len();
    for (i, line) in good.iter().enumerate() {
        good_records.push(record(line.clone(), i as i64));
        mixed.push(record(line.clone(), i as i64));
        if i % step == 0
            && let Some(entry) = corpus.get(i / step)
        {
            let offset = 1_000_000 + (i / step) as i64;
            hostile_at.insert(offset, entry);
            mixed.push(record(entry.bytes(), offset));
        }
    }
    assert_eq!(hostile_at.len(), corpus.len());

    let clean = run(&good_records);
    let dirty = run(&mixed);

    // Each hostile record: dead-lettered with its class, or processed (never both, never
    // neither).
    let letters = dirty.dead.letters();
    let mut outputs: Vec<serde_json::Value> = Vec::new();
    for route in ["main", "bots", "late"] {
        outputs.extend(dirty.route(route));
    }
    for (offset, entry) in &hostile_at {
        let dead: Vec<_> = letters
            .iter()
            .filter(|d| d.provenance.as_ref().is_some_and(|p| p.offset == *offset))
            .collect();
        if entry.expect == "processed" {
            assert!(
                dead.is_empty(),
                "{}: dead-lettered: {}",
                entry.name,
                dead[0].reason
            );
        } else {
            assert_eq!(dead.len(), 1, "{}: {} dead letters", entry.name, dead.len());
            assert_eq!(
                reason_class(&dead[0].reason),
                entry.expect,
                "{}: {}",
                entry.name,
                dead[0].reason
            );
            assert_eq!(
                dead[0].value,
                entry.bytes(),
                "{}: original not kept",
                entry.name
            );
        }
    }
    let processed = hostile_at
        .values()
        .filter(|e| e.expect == "processed")
        .count();
    assert_eq!(outputs.iter().filter(|v| is_hostile(v)).count(), processed);

    // The good records' outputs and dead letters are the clean run's.
    for route in ROUTES {
        let kept: Vec<_> = dirty
            .route_by_user(route)
            .into_iter()
            .filter(|v| !is_hostile(v))
            .collect();
        let want = clean.route_by_user(route);
        assert_eq!(kept, want, "route {route} changed");
    }
    let good_letters = |t: &TestPipeline| -> Vec<(i64, String)> {
        t.dead
            .letters()
            .iter()
            .map(|d| (d.provenance.as_ref().unwrap().offset, d.reason.clone()))
            .filter(|(offset, _)| *offset < 1_000_000)
            .collect()
    };
    assert_eq!(good_letters(&dirty), good_letters(&clean));
}
