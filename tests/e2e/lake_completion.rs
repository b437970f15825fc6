//! Completion markers on a bounded file run (a backfill): every hour of the input gets its
//! `_SUCCESS` once both file partitions are done, and a row in the `_partitions` table of a
//! Delta table; a row that comes after its hour was declared complete is dead-lettered with
//! its reason, or kept under `_late/`, never added to the complete hour.

use std::path::Path;

use crate::harness::{plugin_dir, python, weir_ok};

/// Ids per `dt=…/hour=…` folder of the Parquet files under `root` (late ones included, a
/// Delta table's `_partitions` left out), read by DuckDB.
fn ids_by_folder(root: &Path) -> serde_json::Value {
    let script = format!(
        "import duckdb, json, os\n\
         con = duckdb.connect()\n\
         out = {{}}\n\
         for folder, _, files in sorted(os.walk({root:?})):\n\
         \x20   if any(f.endswith('.parquet') for f in files) and '_partitions' not in folder:\n\
         \x20       rel = os.path.relpath(folder, {root:?})\n\
         \x20       out[rel] = sorted(r[0] for r in con.sql(f\"select id from read_parquet('{{folder}}/*.parquet')\").fetchall())\n\
         print(json.dumps(out))\n",
        root = root.display().to_string()
    );
    serde_json::from_str(&python(&script)).unwrap()
}

#[test]
fn a_backfill_marks_every_hour_and_keeps_late_rows_out_of_complete_hours() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, kept) = (dir.path().join("lake"), dir.path().join("kept"));
    // Three events in each of 10:00, 11:00 and 12:00 on 2026-01-01 from one user, then one
    // more for 10:00, which comes after the watermark passed 11:00.
    let mut lines = Vec::new();
    for (hour, minute) in [10, 11, 12]
        .iter()
        .flat_map(|h| [(h, 10), (h, 20), (h, 30)])
    {
        lines.push(format!(
            "{{\"id\":\"{hour}:{minute}\",\"user_id\":\"u1\",\"ts\":\"2026-01-01T{hour}:{minute}:00Z\"}}"
        ));
    }
    lines.push(r#"{"id":"late","user_id":"u1","ts":"2026-01-01T10:45:00Z"}"#.to_string());
    let input = dir.path().join("clicks.ndjson");
    std::fs::write(&input, lines.join("\n") + "\n").unwrap();
    let dlq = dir.path().join("dlq.ndjson");
    let config = dir.path().join("pipeline.toml");
    let sink = |name: &str, kind: &str, path: &Path, late: &str| {
        format!(
            "[sinks.{name}]\ntype = \"{kind}\"\nroutes = [\"main\"]\npath = {path:?}\n\
             schema = [{{ name = \"id\", type = \"string\" }}]\n\
             completion = {{ lateness = \"0s\", late = \"{late}\" }}\n"
        )
    };
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {:?}\n\
             [source.file]\npath = {input:?}\nbatch_size = 2\npartitions = 2\n\
             [event]\nkey_field = \"user_id\"\ntime_field = \"ts\"\n\
             [time]\nout_of_orderness = \"0s\"\n\
             {}{}\
             [dead_letter]\npath = {dlq:?}\n",
            plugin_dir(),
            sink("lake", "delta", &lake, "dead-letter"),
            sink("kept", "parquet", &kept, "folder"),
        ),
    )
    .unwrap();
    weir_ok(&["run", "--config", config.to_str().unwrap()]);

    let hours = [
        "dt=2026-01-01/hour=10",
        "dt=2026-01-01/hour=11",
        "dt=2026-01-01/hour=12",
    ];
    for root in [&lake, &kept] {
        for hour in hours {
            assert!(
                root.join(hour).join("_SUCCESS").exists(),
                "{} has no marker in {hour}",
                root.display()
            );
        }
    }
    // The Delta table lists the complete hours in its `_partitions` table.
    let listed = python(&format!(
        "import duckdb, json\nfrom deltalake import DeltaTable\n\
         files = DeltaTable({:?}).file_uris()\n\
         print(json.dumps(duckdb.sql(f'select dt::varchar, hour, writers from read_parquet({{files}}) order by 1, 2').fetchall()))\n",
        lake.join("_partitions").display().to_string()
    ));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&listed).unwrap(),
        serde_json::json!([
            ["2026-01-01", 10, 2],
            ["2026-01-01", 11, 2],
            ["2026-01-01", 12, 2]
        ]),
        "the partitions table"
    );
    let on_time =
        |hour: u32| -> Vec<String> { [10, 20, 30].iter().map(|m| format!("{hour}:{m}")).collect() };
    let expected = serde_json::json!({
        hours[0]: on_time(10), hours[1]: on_time(11), hours[2]: on_time(12),
    });
    assert_eq!(ids_by_folder(&lake), expected);
    let mut with_late = expected.clone();
    with_late[format!("_late/{}", hours[0])] = serde_json::json!(["late"]);
    assert_eq!(ids_by_folder(&kept), with_late);

    let dead: Vec<serde_json::Value> = std::fs::read_to_string(&dlq)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(dead.len(), 1, "{dead:?}");
    let reason = dead[0]["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("late: dt=2026-01-01/hour=10 is complete"),
        "{reason}"
    );
}
