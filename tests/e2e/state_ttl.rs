//! State lifetimes at scale: a million distinct users, each seen once, through the Wasm bot
//! filter, whose per-user rate state expires in event time once a user has been quiet for
//! its lifetime. State must level off at the users of one lifetime instead of growing with
//! every user ever seen, and checkpoints must carry the expiry.

use weir::flow::{Provenance, SourceRecord};

use crate::harness::{TestPipeline, limits, wasm_stage};

const USERS: usize = 1_000_000;
/// One user's event per millisecond of event time.
const T0: i64 = 1_767_225_600_000;
/// bot-filter keeps a user for the longer of `rate_window` and `bot_ttl`: here 2 minutes,
/// the events of 120,000 users.
const LIFETIME_MS: usize = 120_000;
const CHUNK: usize = 10_000;

fn event(i: usize) -> SourceRecord {
    let value = format!(
        r#"{{"user_id":"u{i:07}","ts":{},"type":"page_view","user_agent":"Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"}}"#,
        T0 + i as i64
    );
    SourceRecord {
        key: None,
        value: value.into_bytes(),
        timestamp: None,
        headers: Vec::new(),
        provenance: Provenance {
            source: "ttl".into(),
            partition: 0,
            offset: i as i64,
            trace: None,
        },
    }
}

fn bot_filter() -> TestPipeline {
    let config = [("rate_window", "1m"), ("bot_ttl", "2m")];
    let stage = wasm_stage("bot-filter", &config, limits(), None);
    TestPipeline::counting(vec![Box::new(stage)], &["main", "bots"])
}

#[test]
fn a_million_distinct_users_leave_state_flat_once_the_lifetime_passes() {
    let mut t = bot_filter();
    let mut samples = Vec::new();
    let mut snapshot = Vec::new();
    for start in (0..USERS).step_by(CHUNK) {
        let records: Vec<SourceRecord> = (start..start + CHUNK).map(event).collect();
        t.pipeline.process(&records).unwrap();
        let (_, entries, bytes) = t.pipeline.state_report()[0];
        samples.push((start + CHUNK, entries, bytes));
        if start + CHUNK == USERS / 2 {
            snapshot = t.pipeline.snapshot().unwrap();
        }
    }
    assert_eq!(t.sinks[0].1.count(), USERS, "every user is human");

    // Once two lifetimes have passed, the state holds the users of about one lifetime (plus
    // the 5 s the watermark trails, plus up to a quarter lifetime not yet swept), however
    // many users came before.
    let settled: Vec<_> = samples
        .iter()
        .filter(|(seen, _, _)| *seen >= 2 * LIFETIME_MS)
        .collect();
    let low = LIFETIME_MS;
    let high = LIFETIME_MS + 5_000 + LIFETIME_MS / 4 + CHUNK;
    for (seen, entries, _) in &settled {
        assert!(
            (low..=high).contains(entries),
            "{entries} entries after {seen} users: expected {low}..={high}"
        );
    }
    let bytes = settled.iter().map(|s| s.2);
    let (min, max) = (bytes.clone().min().unwrap(), bytes.max().unwrap());
    assert!(
        max as f64 / min as f64 <= 1.35,
        "state bytes between {min} and {max} once settled"
    );
    eprintln!(
        "state after {USERS} users: {} entries, {} bytes (settled between {min} and {max})",
        samples.last().unwrap().1,
        samples.last().unwrap().2
    );

    // A restore from the mid-run snapshot plus the changes since holds exactly the live
    // state: the expired users' deletions went into the checkpoint.
    let (changes, _) = t.pipeline.changes(None).unwrap();
    let mut restored = bot_filter();
    restored
        .pipeline
        .restore(Some(&snapshot[..]), &[changes])
        .unwrap();
    assert_eq!(
        restored.pipeline.state_report()[0],
        t.pipeline.state_report()[0]
    );
    let full = t.pipeline.snapshot().unwrap();
    assert!(
        full.len() < high * 64,
        "a full snapshot of {} bytes for at most {high} users",
        full.len()
    );
}
