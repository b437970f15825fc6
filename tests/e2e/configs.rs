//! Every config in `examples/` parses and validates; bad configs are refused naming the field.

use weir::config::{ConfigError, PipelineConfig};

use crate::harness::root;

fn example_configs(dir: &std::path::Path, found: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() && !path.ends_with("target") {
            example_configs(&path, found);
        } else if path.extension().is_some_and(|e| e == "toml")
            && path.file_name().is_some_and(|n| n != "Cargo.toml")
        {
            found.push(path);
        }
    }
}

#[test]
fn every_example_config_is_valid() {
    let mut found = Vec::new();
    example_configs(&root().join("examples"), &mut found);
    assert!(!found.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let variable = regex::Regex::new(r"\$\{([A-Z_]+)\}").unwrap();
    for path in found {
        // A config read by a scheduler takes its paths from the environment (`${WEIR_LAKE}`):
        // checked with each variable set to a path of its name.
        let text = std::fs::read_to_string(&path).unwrap();
        let filled = variable.replace_all(&text, "/data/$1");
        let copy = dir.path().join(path.file_name().unwrap());
        std::fs::write(&copy, filled.as_ref()).unwrap();
        PipelineConfig::load(&copy).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }
}

fn refusal(toml_text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, toml_text).unwrap();
    match PipelineConfig::load(&path) {
        Err(e @ (ConfigError::Parse { .. } | ConfigError::Invalid { .. })) => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

const BASE: &str = r#"
[source.file]
path = "in.ndjson"
[[stages]]
name = "s"
plugin = "bot-filter"
STAGE_EXTRA
[sinks.out]
type = "ndjson"
routes = ["main"]
path = "out.ndjson"
[dead_letter]
path = "dlq.ndjson"
"#;

#[test]
fn environment_variables_expand_in_every_string_and_a_missing_one_names_its_field() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vars.toml");
    let text = BASE
        .replace(
            "STAGE_EXTRA",
            "memory_limit = \"${WEIR_E2E_UNSET_MEMORY:-48MiB}\"",
        )
        .replace(
            "path = \"out.ndjson\"",
            "path = \"${WEIR_E2E_UNSET_DIR:-fallback}/out-${HOME}.ndjson\"",
        );
    std::fs::write(&path, &text).unwrap();
    let config = PipelineConfig::load(&path).unwrap();
    assert_eq!(config.stages[0].memory_limit.0, 48 << 20);
    let Some(weir::sinks::SinkConfig::Ndjson(out)) = config.sinks.get("out") else {
        panic!("no ndjson sink");
    };
    let home = std::env::var("HOME").unwrap();
    assert_eq!(
        out.path.to_str().unwrap(),
        format!("fallback/out-{home}.ndjson")
    );
    let required = text.replace(
        "${WEIR_E2E_UNSET_DIR:-fallback}",
        "${WEIR_E2E_UNSET_DIR:?where the output goes}",
    );
    let message = refusal(&required);
    assert!(
        message.contains("sinks.out.path") && message.contains("where the output goes"),
        "{message}"
    );
}

#[test]
fn bad_configs_name_the_field() {
    let cases = [
        ("memory_limit = \"1KiB\"", "stages[0].memory_limit"),
        ("memory_limit = \"lots\"", "memory_limit"),
        ("cpu_limit = \"soon\"", "cpu_limit"),
        ("colour = \"blue\"", "unknown field `colour`"),
        ("plugin_typo = 1", "unknown field `plugin_typo`"),
    ];
    for (extra, expected) in cases {
        let message = refusal(&BASE.replace("STAGE_EXTRA", extra));
        assert!(message.contains(expected), "{extra}: {message}");
    }
    let no_main = BASE
        .replace("STAGE_EXTRA", "")
        .replace("routes = [\"main\"]", "routes = [\"x\"]");
    assert!(refusal(&no_main).contains("route `main`"));
    let bad_schema = BASE.replace("STAGE_EXTRA", "").replace(
        "type = \"ndjson\"\nroutes = [\"main\"]\npath = \"out.ndjson\"",
        "type = \"parquet\"\nroutes = [\"main\"]\npath = \"lake\"\nschema = [{ name = \"a\", type = \"int65\" }]",
    );
    assert!(
        refusal(&bad_schema).contains("sinks.out.schema[0].type"),
        "{}",
        refusal(&bad_schema)
    );
}

const KAFKA: &str = r#"
[source.kafka]
brokers = "127.0.0.1:9092"
topics = ["clicks"]
group = "g"
SOURCE_EXTRA
[sinks.out]
type = "SINK_TYPE"
routes = ["main"]
SINK_EXTRA
[dead_letter]
DEAD_LETTER
"#;

fn kafka_config(source: &str, sink_type: &str, sink: &str, dead_letter: &str) -> String {
    KAFKA
        .replace("SOURCE_EXTRA", source)
        .replace("SINK_TYPE", sink_type)
        .replace("SINK_EXTRA", sink)
        .replace("DEAD_LETTER", dead_letter)
}

#[test]
fn kafka_configs_are_refused_naming_the_field() {
    let topic = "topic = \"clicks.dlq\"";
    let good = kafka_config("", "kafka", "topic = \"out\"", topic);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("good.toml");
    std::fs::write(&path, &good).unwrap();
    PipelineConfig::load(&path).unwrap();
    let cases = [
        (
            kafka_config("", "kafka", "topic = \"out\"", "path = \"dlq.ndjson\""),
            "dead_letter",
        ),
        (
            kafka_config("", "ndjson", "path = \"o.ndjson\"", topic),
            "sinks.out",
        ),
        (
            kafka_config("", "kafka", "", topic),
            "sinks.out.topics.main",
        ),
        (
            kafka_config("batch_size = 0", "kafka", "topic = \"out\"", topic),
            "source.kafka.batch_size",
        ),
        (
            kafka_config(
                "properties = { \"sasl.password\" = \"${WEIR_UNSET_SECRET_9}\" }",
                "kafka",
                "topic = \"out\"",
                topic,
            ),
            "source.kafka.properties.sasl.password",
        ),
        (
            kafka_config(
                "producer_properties = { \"sasl.password\" = \"${WEIR_UNSET_SECRET_9}\" }",
                "kafka",
                "topic = \"out\"",
                topic,
            ),
            "source.kafka.producer_properties.sasl.password",
        ),
        (
            good.replace("group = \"g\"", "group = \"\""),
            "source.kafka.group",
        ),
        (
            format!("{good}\n[checkpoint]\ninterval = \"1ms\"\n"),
            "checkpoint.interval",
        ),
        (
            format!("{good}\n[checkpoint]\ndelivery = \"maybe-once\"\n"),
            "delivery",
        ),
    ];
    for (text, expected) in cases {
        let message = refusal(&text);
        assert!(message.contains(expected), "{expected}: {message}");
    }
    let kafka_sink_on_file = BASE.replace("STAGE_EXTRA", "").replace(
        "type = \"ndjson\"\nroutes = [\"main\"]\npath = \"out.ndjson\"",
        "type = \"kafka\"\nroutes = [\"main\"]\ntopic = \"t\"",
    );
    assert!(refusal(&kafka_sink_on_file).contains("sinks.out"));
}
