//! `weir run` on the example clickstream, checked by an independent reader: DuckDB reads the
//! Parquet lake and the test recomputes what the lake must hold from the raw input.

use crate::harness::{plugin_dir, python, root, weir};

/// Runs the example pipeline into a temporary folder and returns that folder.
fn run_example() -> tempfile::TempDir {
    let out = tempfile::tempdir().unwrap();
    weir::synth::geodb::write(&out.path().join("geo.mmdb")).unwrap();
    let events = root().join("examples/clickstream/events.ndjson");
    let config = std::fs::read_to_string(root().join("examples/clickstream/pipeline.toml"))
        .unwrap()
        .replace(
            "examples/clickstream/events.ndjson",
            events.to_str().unwrap(),
        )
        .replace("out/clickstream", out.path().to_str().unwrap());
    let config_path = out.path().join("pipeline.toml");
    std::fs::write(&config_path, config).unwrap();
    let run = weir(&[
        "run",
        "--config",
        config_path.to_str().unwrap(),
        "--plugin-dir",
        plugin_dir().to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "weir run failed:\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    out
}

const CHECKS: &str = r#"
import datetime, json, sys
import duckdb

events_path, out = sys.argv[1], sys.argv[2]
valid, malformed = [], 0
for line in open(events_path):
    line = line.strip()
    if not line:
        continue
    try:
        v = json.loads(line)
        assert isinstance(v, dict) and isinstance(v.get("user_id"), str) and isinstance(v.get("ts"), str)
        datetime.datetime.fromisoformat(v["ts"].replace("Z", "+00:00"))
        valid.append(v)
    except Exception:
        malformed += 1

def ndjson(name):
    return [json.loads(l) for l in open(f"{out}/{name}") if l.strip()]

con = duckdb.connect()
con.sql("SET TimeZone = 'UTC'")
lake = f"read_parquet('{out}/lake/events/**/*.parquet', hive_partitioning = true)"
sessions = f"read_parquet('{out}/lake/sessions/**/*.parquet', hive_partitioning = true)"
one = lambda q: con.sql(q).fetchone()[0]

rows = one(f"select count(*) from {lake}")
bots, late, dlq, features = ndjson("bots.ndjson"), ndjson("late.ndjson"), ndjson("dead-letter.ndjson"), ndjson("features.ndjson")

# Every valid event is in exactly one place: the lake, the bots output or the late output.
assert rows + len(bots) + len(late) == len(valid), (rows, len(bots), len(late), len(valid))
assert one(f"select count(distinct event_id) from {lake}") == rows, "duplicate events in the lake"

# No bot traffic remains in the lake.
assert one(f"select count(*) from {lake} where user_id like 'crawler-%' or user_id = 'u-no-agent' or user_agent is null") == 0
crawler_events = sum(1 for v in valid if v["user_id"].startswith("crawler-"))
assert crawler_events > 0 and sum(1 for b in bots if b["user_id"].startswith("crawler-")) == crawler_events
assert all(b["bot_reason"].startswith(("user_agent:", "rate", "missing_user_agent")) for b in bots)
burst_in_lake = one(f"select count(*) from {lake} where user_id = 'u-burst'")
assert 0 < burst_in_lake <= 121, burst_in_lake

# Every event has a session id, each id belongs to one user, and the sessions table agrees.
assert one(f"select count(*) from {lake} where session_id is null") == 0
assert one(f"select count(*) from (select session_id from {lake} group by 1 having count(distinct user_id) > 1)") == 0
assert one(f"""select count(*) from (select session_id, count(*) n from {lake} group by 1) e
               full outer join {sessions} s using (session_id) where e.n is distinct from s.event_count""") == 0
assert one(f"select count(*) from {lake} e join {sessions} s using (session_id) where e.ts < s.start or e.ts > s.end") == 0
assert one(f"""select count(*) from (select ts - lag(ts) over (partition by session_id order by ts) as gap from {lake})
               where gap >= interval 30 minute""") == 0
assert one(f"select count(*) from {sessions} where duration_ms != epoch_ms(\"end\") - epoch_ms(start)") == 0
session_count = one(f"select count(*) from {sessions}")
assert len(features) == session_count, (len(features), session_count)
last = {}
for f in features:
    last[f["user_id"]] = f["session_count"]
per_user = dict(con.sql(f"select user_id, count(*) from {sessions} group by 1").fetchall())
assert last == per_user

# Files are partitioned by event time.
assert one(f"select count(*) from {lake} where strftime(ts, '%Y-%m-%d') != dt::varchar or hour(ts) != hour::int") == 0

# Geo enrichment: known ranges resolve, private addresses are tagged, IPs are truncated.
assert one(f"select count(*) from {lake} where geo_status = 'ok' and geo_country is null") == 0
assert one(f"select count(*) from {lake} where geo_city = 'London' and geo_country = 'GB'") > 0
assert one(f"select count(*) from {lake} where geo_status = 'private'") > 0
assert one(f"select count(*) from {lake} where ip like '%.%' and not ip like '%.0'") == 0

# Malformed lines, and nothing else, are dead letters, each with its reason.
assert len(dlq) == malformed, (len(dlq), malformed)
classes = {"invalid json", "not an object", "missing key", "invalid key", "missing time", "invalid time"}
assert all(d["stage"] == "decode" and d["reason"].split(":")[0] in classes for d in dlq)
assert all(d["source"]["offset"] > 0 and d["record"] is not None for d in dlq)

print(json.dumps({"valid": len(valid), "lake": rows, "bots": len(bots), "late": len(late),
                  "sessions": session_count, "dead_letters": len(dlq)}))
"#;

#[test]
fn example_pipeline_fills_the_lake_correctly() {
    let out = run_example();
    let events = root().join("examples/clickstream/events.ndjson");
    let script = format!(
        "import sys; sys.argv = ['checks', {:?}, {:?}]\n{CHECKS}",
        events.to_str().unwrap(),
        out.path().to_str().unwrap()
    );
    let summary: serde_json::Value = serde_json::from_str(python(&script).trim()).unwrap();
    assert!(summary["lake"].as_u64().unwrap() > 3_000, "{summary}");
    assert!(summary["sessions"].as_u64().unwrap() > 100, "{summary}");
    assert!(summary["dead_letters"].as_u64().unwrap() > 20, "{summary}");
}
