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
    for path in found {
        PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
[source]
type = "file"
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
