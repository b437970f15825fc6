//! Plugins from object storage: `plugin_dir` on s3s-fs, polled. A new version put into the
//! bucket by another client is swapped in under the same rules as a file in a watched folder,
//! and a broken one is rejected while the running version keeps serving.

use std::io::Write;

use weir::storage::Storage;
use xtask::servers::S3Server;

use crate::harness::{plugin, plugin_status, run_on_stdin, stdin_config, wait_for_answer};
use crate::sinks::s3_options;

#[test]
fn plugins_in_an_s3_prefix_are_polled_and_swapped_like_files() {
    let dir = tempfile::tempdir().unwrap();
    let server = S3Server::start(dir.path()).unwrap_or_else(|e| panic!("{e:#}"));
    server.create_bucket("plugins").unwrap();
    let s3 = s3_options(&server);
    let bucket = Storage::open("s3://plugins/prod", &s3).unwrap();
    let v1 = std::fs::read(plugin("bot-filter")).unwrap();
    bucket.put("bot-filter.wasm", v1.clone()).unwrap();

    let tables = format!(
        "[plugins]\npoll_interval = \"200ms\"\n\
         [plugins.s3]\nendpoint = {:?}\nallow_http = true\naccess_key_id = {:?}\nsecret_access_key = {:?}\n",
        server.endpoint(),
        s3.access_key_id.unwrap(),
        s3.secret_access_key.unwrap(),
    );
    let config = stdin_config(dir.path(), "s3://plugins/prod", &tables);
    let (mut run, port) = run_on_stdin(&config);
    let mut stdin = run.stdin.take().unwrap();
    let mut sent = 0;
    let mut send = |n: i64| {
        for _ in 0..n {
            writeln!(
                stdin,
                "{{\"user_id\":\"u{sent}\",\"ts\":{},\"user_agent\":\"Mozilla/5.0\"}}",
                1_767_225_600_000_i64 + sent * 1000
            )
            .unwrap();
            sent += 1;
        }
        stdin.flush().unwrap();
    };
    send(5);
    let sha = |bytes: &[u8]| weir::runtime::sha256_hex(bytes);
    wait_for_answer(port, "/metrics", |_, body| {
        body.contains("weir_source_records_total 5")
    });
    assert_eq!(plugin_status(port, "bots")["sha256"], sha(&v1).as_str());

    // Another client puts a new version: the poll finds it, the stage serves it from its next
    // batch.
    let v2 = xtask::plugins::with_custom_section(&v1, "v2");
    bucket.put("bot-filter.wasm", v2.clone()).unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while plugin_status(port, "bots")["sha256"] != sha(&v2).as_str() {
        assert!(
            std::time::Instant::now() < deadline,
            "v2 never served: {}",
            plugin_status(port, "bots")
        );
        send(1);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    // A broken one is rejected with its reason; v2 keeps serving.
    bucket
        .put("bot-filter.wasm", b"\0asm not really".to_vec())
        .unwrap();
    let status = wait_for_answer(port, "/plugins", |_, body| {
        body.contains("last_rejection\":{")
    });
    assert!(status.contains(&sha(b"\0asm not really")), "{status}");
    send(3);
    let total = format!("weir_source_records_total {sent}");
    wait_for_answer(port, "/metrics", |_, body| body.contains(&total));
    assert_eq!(plugin_status(port, "bots")["sha256"], sha(&v2).as_str());

    // SAFETY: kill only sends a signal to the child.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGTERM) }, 0);
    drop(stdin);
    assert!(run.wait().unwrap().success());
}
