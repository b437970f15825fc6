//! Replays every checked-in fuzz corpus file (`fuzz/corpus/<target>/`) and the crashes once
//! found (`fuzz/regressions/<target>/`) through the same checks as the fuzz targets.
#![allow(clippy::unwrap_used, reason = "test")]

use std::path::PathBuf;

fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let fuzz = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let mut found = Vec::new();
    for folder in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(fuzz.join(folder).join(target)) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            found.push((path.clone(), std::fs::read(&path).unwrap()));
        }
    }
    found
}

fn replay(target: &str, check: fn(&[u8])) {
    let inputs = inputs(target);
    assert!(
        inputs.len() >= 10,
        "{target}: only {} corpus files",
        inputs.len()
    );
    for (path, data) in inputs {
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: {} fails the check",
            path.display()
        );
    }
}

#[test]
fn config_corpus() {
    replay("config", weir_fuzz_checks::config);
}

#[test]
fn decode_corpus() {
    replay("decode", weir_fuzz_checks::decode);
}

#[test]
fn sdk_fields_corpus() {
    replay("sdk_fields", weir_fuzz_checks::sdk_fields);
}
