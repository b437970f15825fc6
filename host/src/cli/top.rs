//! `weir top`: a live view of a running instance through its admin endpoint. Every interval it
//! reads `/metrics`, `/plugins` and `/healthz` and shows what flows: records in and out per
//! second by sink, dead letters by class, each stage's calls, failures and p99, lag, watermark
//! delay, state, epoch age, breakers and the process's CPU and memory.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// One sample: `name` and its labels.
type Series = (String, Vec<(String, String)>);

/// The samples of a Prometheus text, by name and labels (in the order the labels are given).
pub fn parse_metrics(text: &str) -> BTreeMap<Series, f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (name, labels(rest.trim_end_matches('}'))),
            None => (series, Vec::new()),
        };
        samples.insert((name.to_string(), labels), value);
    }
    samples
}

/// `a="x",b="y"` as pairs (values without their quotes; escaped quotes kept as written).
fn labels(text: &str) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    let mut rest = text;
    while let Some((name, after)) = rest.split_once("=\"") {
        let mut end = 0;
        let bytes = after.as_bytes();
        while end < bytes.len() && !(bytes[end] == b'"' && (end == 0 || bytes[end - 1] != b'\\')) {
            end += 1;
        }
        pairs.push((
            name.trim_start_matches(',').to_string(),
            after[..end].to_string(),
        ));
        rest = after.get(end + 1..).unwrap_or_default();
    }
    pairs
}

/// `GET path` from the admin endpoint at `address`: the body of a 2xx or 503 answer.
fn get(address: &str, path: &str) -> Result<String> {
    let mut stream = TcpStream::connect(address).with_context(|| {
        format!("no weir admin endpoint answers at {address} (`[admin] listen`)")
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response
        .split_once("\r\n\r\n")
        .with_context(|| format!("{address}{path}: not an HTTP answer"))?;
    let code = head.split_whitespace().nth(1).unwrap_or_default();
    if !code.starts_with('2') && code != "503" {
        bail!("{address}{path} answered {code}");
    }
    Ok(body.to_string())
}

/// What one poll read.
struct Poll {
    at: Instant,
    metrics: BTreeMap<Series, f64>,
    plugins: Value,
    health: Value,
}

fn poll(address: &str) -> Result<Poll> {
    Ok(Poll {
        at: Instant::now(),
        metrics: parse_metrics(&get(address, "/metrics")?),
        plugins: serde_json::from_str(&get(address, "/plugins")?).unwrap_or(Value::Null),
        health: serde_json::from_str(&get(address, "/healthz")?).unwrap_or(Value::Null),
    })
}

impl Poll {
    /// The sum of `name`'s samples grouped by the value of their label `by` (`""` for samples
    /// without it).
    fn sum_by(&self, name: &str, by: &str) -> BTreeMap<String, f64> {
        let mut groups = BTreeMap::new();
        for ((n, labels), value) in &self.metrics {
            if n == name {
                let key = labels
                    .iter()
                    .find(|(l, _)| l == by)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default();
                *groups.entry(key).or_insert(0.0) += value;
            }
        }
        groups
    }

    fn total(&self, name: &str) -> Option<f64> {
        let groups = self.sum_by(name, "");
        (!groups.is_empty()).then(|| groups.values().sum())
    }

    fn max(&self, name: &str) -> Option<f64> {
        self.metrics
            .iter()
            .filter(|((n, _), _)| n == name)
            .map(|(_, v)| *v)
            .reduce(f64::max)
    }
}

/// Per-second rates of a counter between two polls, by `by`.
fn rates(before: &Poll, after: &Poll, name: &str, by: &str) -> BTreeMap<String, f64> {
    let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    let old = before.sum_by(name, by);
    after
        .sum_by(name, by)
        .into_iter()
        .map(|(key, value)| {
            let rate = (value - old.get(&key).copied().unwrap_or(0.0)).max(0.0) / seconds;
            (key, rate)
        })
        .collect()
}

/// The screen for two consecutive polls.
fn render(address: &str, before: &Poll, after: &Poll) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let status = after.health["status"].as_str().unwrap_or("?");
    let uptime = after.health["uptime_seconds"].as_f64().unwrap_or(0.0);
    let cpu = rates(before, after, "process_cpu_seconds_total", "")
        .values()
        .fold(0.0, |a, b| a + b);
    let rss = after.total("process_resident_memory_bytes").unwrap_or(0.0);
    line(format!(
        "weir at {address}: {status}, up {uptime:.0}s, CPU {:.0}%, memory {:.0} MiB",
        cpu * 100.0,
        rss / (1 << 20) as f64
    ));
    let input: f64 = rates(before, after, "weir_source_records_total", "")
        .values()
        .fold(0.0, |a, b| a + b);
    let mut io = format!("in {input:.0} records/s");
    for (sink, rate) in rates(before, after, "weir_sink_records_total", "sink") {
        io.push_str(&format!(", {sink} {rate:.0}/s"));
    }
    line(io);
    let dead = rates(before, after, "weir_dead_letters_total", "reason");
    let dead: Vec<String> = dead
        .iter()
        .filter(|(_, r)| **r > 0.0)
        .map(|(class, rate)| format!("{class} {rate:.1}/s"))
        .collect();
    line(format!(
        "dead letters {}",
        if dead.is_empty() {
            "none".to_string()
        } else {
            dead.join(", ")
        }
    ));
    let mut shape = Vec::new();
    if let Some(lag) = after.total("weir_source_consumer_lag_records") {
        shape.push(format!("lag {lag:.0} records"));
    }
    if let Some(delay) = after.max("weir_source_watermark_lag_seconds") {
        shape.push(format!("watermark {delay:.1}s behind"));
    }
    if let Some(bytes) = after.total("weir_state_bytes") {
        shape.push(format!("state {:.1} MiB", bytes / (1 << 20) as f64));
    }
    if let Some(at) = after.max("weir_checkpoint_last_commit_timestamp_seconds") {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        shape.push(format!("epoch age {:.1}s", (now - at).max(0.0)));
    }
    if !shape.is_empty() {
        line(shape.join(", "));
    }
    line(format!(
        "{:<20} {:<14} {:>10} {:>9} {:>9} {:>10}",
        "stage", "version", "calls/s", "errors", "p99 ms", "breaker"
    ));
    let before_calls: BTreeMap<String, f64> = stages(&before.plugins)
        .map(|p| (name_of(p), p["calls"].as_f64().unwrap_or(0.0)))
        .collect();
    let seconds = after.at.duration_since(before.at).as_secs_f64().max(1e-3);
    for stage in stages(&after.plugins) {
        let name = name_of(stage);
        let calls = stage["calls"].as_f64().unwrap_or(0.0);
        let rate = (calls - before_calls.get(&name).copied().unwrap_or(0.0)).max(0.0) / seconds;
        line(format!(
            "{:<20} {:<14} {:>10.1} {:>9} {:>9.2} {:>10}",
            name,
            stage["sha256"]
                .as_str()
                .unwrap_or("")
                .get(..12)
                .unwrap_or(""),
            rate,
            stage["errors"].as_u64().unwrap_or(0),
            stage["p99_ms"].as_f64().unwrap_or(0.0),
            stage["breaker"].as_str().unwrap_or("?"),
        ));
    }
    for (sink, breaker) in after.health["breakers"].as_object().into_iter().flatten() {
        let state = breaker
            .as_str()
            .or(breaker["state"].as_str())
            .unwrap_or("?");
        if state != "closed" {
            line(format!("sink {sink} breaker {state}"));
        }
    }
    out
}

fn stages(plugins: &Value) -> impl Iterator<Item = &Value> {
    plugins.as_array().into_iter().flatten()
}

fn name_of(stage: &Value) -> String {
    stage["stage"].as_str().unwrap_or("?").to_string()
}

/// Polls `address` every `interval` and redraws; with `once`, prints one view after two polls
/// and returns.
pub fn run(address: &str, interval: Duration, once: bool) -> Result<()> {
    let mut before = poll(address)?;
    let terminal = std::io::stdout().is_terminal();
    loop {
        std::thread::sleep(interval);
        let after = poll(address)?;
        let screen = render(address, &before, &after);
        let mut stdout = std::io::stdout().lock();
        if terminal && !once {
            // Home and clear: the view replaces the last one.
            write!(stdout, "\x1b[H\x1b[2J")?;
        }
        write!(stdout, "{screen}")?;
        stdout.flush()?;
        if once {
            return Ok(());
        }
        before = after;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_samples_with_and_without_labels() {
        let text = "# TYPE a counter\na_total 3\nb{sink=\"lake\",route=\"m\\\"x\"} 2.5\nc{} 1\n";
        let samples = parse_metrics(text);
        assert_eq!(samples[&("a_total".to_string(), vec![])], 3.0);
        let labels = vec![
            ("sink".to_string(), "lake".to_string()),
            ("route".to_string(), "m\\\"x".to_string()),
        ];
        assert_eq!(samples[&("b".to_string(), labels)], 2.5);
        assert_eq!(samples.len(), 3);
    }
}
