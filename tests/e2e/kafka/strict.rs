//! The strict exactly-once test of the Kafka sink: after kill -9 recovery, a `read_committed`
//! consumer sees every session exactly once. Tansu shows records of aborted transactions, so
//! this runs only when `WEIR_TEST_KAFKA_BOOTSTRAP` points at a real Apache Kafka.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;

use super::crash::crash_then_finish;
use super::{OUTPUT_TOPICS, clickstream, lake_tables, pipeline_config, produce, read_all};

#[test]
fn read_committed_consumers_see_each_output_once_on_real_kafka() {
    let Ok(bootstrap) = std::env::var("WEIR_TEST_KAFKA_BOOTSTRAP") else {
        eprintln!(
            "SKIPPED: set WEIR_TEST_KAFKA_BOOTSTRAP to an Apache Kafka broker to run the strict \
             read_committed test (Tansu delivers aborted records to read_committed consumers)"
        );
        return;
    };
    let suffix = format!("{:x}", rand::random::<u32>());
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let names: Vec<String> = std::iter::once("clicks".to_string())
        .chain(OUTPUT_TOPICS.iter().map(|t| t.to_string()))
        .map(|t| format!("{t}-{suffix}"))
        .collect();
    let topics: Vec<NewTopic<'_>> = names
        .iter()
        .map(|n| NewTopic::new(n, 4, TopicReplication::Fixed(1)))
        .collect();
    runtime
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .unwrap();

    let input = &names[0];
    let lines = clickstream(400);
    produce(&bootstrap, input, &lines);
    let out = tempfile::tempdir().unwrap();
    let config = pipeline_config(&bootstrap, out.path(), &format!("strict-{suffix}"));
    let mut text = std::fs::read_to_string(&config).unwrap();
    for topic in std::iter::once("clicks").chain(OUTPUT_TOPICS.iter().copied()) {
        text = text.replace(&format!("\"{topic}\""), &format!("\"{topic}-{suffix}\""));
    }
    std::fs::write(&config, text).unwrap();
    crash_then_finish(&config, "strict", 3);

    let sessions = read_all(&bootstrap, &format!("weir.sessions-{suffix}"));
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for record in &sessions {
        *counts
            .entry(record.value["session_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    assert!(
        counts.values().all(|n| *n == 1),
        "a committed session appears twice"
    );
    assert_eq!(
        counts.len(),
        lake_tables(out.path())["sessions"]
            .as_array()
            .unwrap()
            .len()
    );
}
