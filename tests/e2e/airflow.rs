//! The example Airflow DAGs (`examples/airflow/`) with real Apache Airflow: both load with no
//! import errors; the backfill DAG runs `weir run` over a day of files, which leaves every
//! hour of the lake with its completion marker; the report DAG's sensor then finds its hour
//! complete and its query reports what the lake holds.

use std::path::Path;
use std::process::Command;

use crate::harness::{plugin_dir, python, root};

/// Runs `program` (`airflow` or `python`) of the Airflow venv with `args` and `env`; returns
/// its stdout, failing with its whole output.
fn in_venv(env: &[(&str, &Path)], program: &str, args: &[&str]) -> String {
    let python = xtask::python::airflow_python().unwrap_or_else(|e| {
        panic!(
            "the Airflow venv ({}) is unavailable: {e:#}",
            xtask::python::AIRFLOW_PACKAGES.join(", ")
        )
    });
    let out = Command::new(python.with_file_name(program))
        .args(args)
        .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
        .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let text = format!("{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // `dags test` exits 0 even when a task fails (it stays up for retry): the run's state
    // says.
    let failed = args.first() == Some(&"dags") && !text.contains("DagRun Finished");
    assert!(
        out.status.success() && !failed && !text.contains("state=failed"),
        "{program} {args:?} failed:\n{text}"
    );
    stdout
}

/// The last line a Python script run in the Airflow venv prints.
fn last_line(env: &[(&str, &Path)], script: &str) -> String {
    let stdout = in_venv(env, "python", &["-c", script]);
    stdout.lines().last().unwrap_or_default().to_string()
}

#[test]
fn the_example_dags_load_backfill_a_day_and_report_on_a_complete_hour() {
    let dir = tempfile::tempdir().unwrap();
    let (input, lake, reports) = (
        dir.path().join("input"),
        dir.path().join("lake"),
        dir.path().join("reports"),
    );
    let day = input.join("dt=2026-11-26");
    std::fs::create_dir_all(&day).unwrap();
    let lines = super::kafka::clickstream(60);
    std::fs::write(day.join("events.ndjson"), lines.join("\n") + "\n").unwrap();
    let dags = root().join("examples/airflow/dags");
    let weir_bin = Path::new(env!("CARGO_BIN_EXE_weir"));
    let env: Vec<(&str, &Path)> = vec![
        ("AIRFLOW_HOME", dir.path()),
        ("AIRFLOW__CORE__DAGS_FOLDER", &dags),
        ("WEIR_BIN", weir_bin),
        ("WEIR_PLUGIN_DIR", plugin_dir()),
        ("WEIR_INPUT_ROOT", &input),
        ("WEIR_LAKE", &lake),
        ("WEIR_REPORTS", &reports),
    ];
    in_venv(&env, "airflow", &["db", "migrate"]);

    // Both DAGs load, with no import errors.
    let script = format!(
        "import json\nfrom airflow.models import DagBag\n\
         bag = DagBag({:?}, include_examples=False)\n\
         print(json.dumps({{'dags': sorted(bag.dag_ids), 'errors': {{k: str(v) for k, v in bag.import_errors.items()}}}}))",
        dags.display().to_string()
    );
    let loaded = last_line(&env, &script);
    let bag: serde_json::Value =
        serde_json::from_str(&loaded).unwrap_or_else(|e| panic!("{e}: {loaded}"));
    assert_eq!(
        bag,
        serde_json::json!({"dags": ["weir_backfill", "weir_hourly_report"], "errors": {}})
    );

    // The backfill of 2026-11-26: weir runs over the day's files; every hour with rows is
    // marked complete at its end.
    in_venv(
        &env,
        "airflow",
        &["dags", "test", "weir_backfill", "2026-11-26"],
    );
    let events = lake.join("events");
    let mut hours = 0;
    let days = std::fs::read_dir(&events).unwrap().flatten();
    for day in days.filter(|d| d.file_name().to_string_lossy().starts_with("dt=")) {
        for hour in std::fs::read_dir(day.path()).unwrap().flatten() {
            let files: Vec<String> = std::fs::read_dir(hour.path())
                .unwrap()
                .map(|f| f.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            if files.iter().any(|f| f.ends_with(".parquet")) {
                hours += 1;
                assert!(
                    files.iter().any(|f| f == "_SUCCESS"),
                    "{} has rows and no marker",
                    hour.path().display()
                );
            }
        }
    }
    assert!(hours >= 10, "the day's rows span {hours} hours");

    // The report of 10:00-11:00 (the run of 11:00): the sensor finds the marker at once and
    // the report counts what the lake holds for the hour.
    in_venv(
        &env,
        "airflow",
        &[
            "dags",
            "test",
            "weir_hourly_report",
            "2026-11-26T11:00:00+00:00",
        ],
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reports.join("2026-11-26T10.json")).unwrap())
            .unwrap();
    let reported: u64 = report
        .as_object()
        .unwrap()
        .values()
        .map(|v| v["events"].as_u64().unwrap())
        .sum();
    let counted: u64 = python(&format!(
        "import duckdb\nprint(duckdb.sql(\"select count(*) from read_parquet('{}/dt=2026-11-26/hour=10/*.parquet')\").fetchone()[0])",
        events.display()
    ))
    .trim()
    .parse()
    .unwrap();
    assert!(counted > 0);
    assert_eq!(reported, counted);

    // An hour the lake has not reached is not complete: the sensor would keep waiting.
    let poke = format!(
        "import sys, datetime\nsys.path.insert(0, {:?})\nimport weir_hourly_report as r\n\
         print(r.hour_is_complete(datetime.datetime(2026, 11, 27, 5)), r.hour_is_complete(datetime.datetime(2026, 11, 26, 10)))",
        dags.display().to_string()
    );
    assert_eq!(last_line(&env, &poke), "False True");
}
