//! `weir run` on standard input: a short batch is processed after `batch_timeout` instead of
//! waiting for a full one, and SIGTERM ends the run the way it ends a Kafka run: the batch in
//! hand finishes, the Parquet sink publishes what it took, the summary prints, exit 0. A
//! config-only SIGHUP switches the stage to its new config without a "swap" to itself.

use std::io::Write;
use std::time::{Duration, Instant};

use crate::harness::{plugin_dir, python, run_on_stdin, wait_for_answer};

#[test]
fn stdin_hands_over_a_short_batch_after_its_timeout_and_sigterm_publishes_what_was_written() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, config) = (dir.path().join("lake"), dir.path().join("pipeline.toml"));
    std::fs::write(
        &config,
        format!(
            "plugin_dir = {:?}\n\
             [source.file]\npath = \"-\"\nbatch_size = 512\nbatch_timeout = \"50ms\"\n\
             [event]\nkey_field = \"user_id\"\ntime_field = \"ts\"\n\
             [[stages]]\nname = \"bot-filter\"\nplugin = \"bot-filter\"\n\
             [sinks.lake]\ntype = \"parquet\"\nroutes = [\"main\", \"bots\"]\npath = {lake:?}\n\
             schema = [{{ name = \"user_id\", type = \"string\" }}, {{ name = \"n\", type = \"int64\" }}]\n\
             [dead_letter]\npath = {:?}\n",
            plugin_dir(),
            dir.path().join("dlq.ndjson")
        ),
    )
    .unwrap();
    let (mut run, port) = run_on_stdin(&config);
    let mut stdin = run.stdin.take().unwrap();
    let mut send = |lines: std::ops::Range<i64>| {
        for n in lines {
            let line = format!(
                "{{\"user_id\":\"u{n}\",\"ts\":{},\"n\":{n},\"user_agent\":\"Mozilla/5.0\"}}\n",
                1_767_225_600_000_i64 + n * 1000
            );
            stdin.write_all(line.as_bytes()).unwrap();
        }
        stdin.flush().unwrap();
    };
    send(0..10);
    // Ten lines of a 512-line batch, and stdin stays open: they are processed anyway.
    wait_for_answer(port, "/metrics", |_, body| {
        body.contains("weir_source_records_total 10")
    });

    // A SIGHUP that changes only the stage's config: the stage switches to it at its next
    // batch, with no "swap" from its version to itself.
    let text = std::fs::read_to_string(&config).unwrap();
    let changed = text.replace(
        "plugin = \"bot-filter\"\n",
        "plugin = \"bot-filter\"\n[stages.config]\nrate_limit = 500\n",
    );
    assert_ne!(changed, text);
    std::fs::write(&config, changed).unwrap();
    // SAFETY: kill only sends a signal to the child.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGHUP) }, 0);
    wait_for_answer(port, "/metrics", |_, body| {
        body.contains("weir_config_reloads_total{result=\"applied\"} 1")
    });
    send(10..11);
    wait_for_answer(port, "/metrics", |_, body| {
        body.contains("weir_source_records_total 11")
    });

    // SAFETY: kill only sends a signal to the child.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGTERM) }, 0);
    let deadline = Instant::now() + Duration::from_secs(30);
    while run.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "no exit 30 s after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let finished = run.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&finished.stdout),
        String::from_utf8_lossy(&finished.stderr),
    );
    assert!(finished.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("stopped by a signal"), "{stdout}");
    assert!(
        stderr.contains("Stage switched to its new config"),
        "{stderr}"
    );
    assert!(!stderr.contains("Stage swapped"), "{stderr}");
    let script = format!(
        "import duckdb\n\
         print(duckdb.sql(\"select count(*), sum(n) from read_parquet('{}/**/*.parquet', hive_partitioning = true)\").fetchone())",
        lake.display()
    );
    assert_eq!(python(&script).trim(), "(11, 55)", "{stdout}{stderr}");
}
