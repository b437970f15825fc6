//! `deploy/`: the Prometheus alert rules pass their promtool unit tests, the Alertmanager
//! config passes amtool and routes each alert by its severity, the Datadog Agent's
//! OpenMetrics check scrapes the metric names docs/datadog.md lists, the Grafana
//! dashboard and the alerts query only metrics weir exports, the Kubernetes pipeline is a
//! valid config, and the systemd unit and the Dockerfile run `weir` with options it has.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::Command;

use crate::harness::{
    plugin_dir, python, request, root, run_on_stdin, stdin_config, wait_for_answer, weir,
};

/// Every metric name the host emits: `counter!`, `gauge!`, `histogram!` and the per-partition
/// gauges' `set` with a literal name, a `&str` constant naming one, and the `# TYPE` lines the
/// admin endpoint writes itself.
fn exported_metrics() -> BTreeSet<String> {
    let macro_call = regex::Regex::new(
        r#"(?:(?:counter|gauge|histogram)!\(|partition_gauges::set\(|\bset\(|# TYPE |: &str = )\s*"?(weir_[a-z0-9_]+)"#,
    )
    .unwrap();
    let mut names = BTreeSet::new();
    let mut dirs = vec![root().join("host/src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                names.extend(macro_call.captures_iter(&text).map(|c| c[1].to_string()));
            }
        }
    }
    names
}

/// The `weir_*` metrics a file refers to, histogram series mapped to their histogram.
fn referenced_metrics(text: &str) -> BTreeSet<String> {
    let name = regex::Regex::new(r"weir_[a-z0-9_]+").unwrap();
    name.find_iter(text)
        .map(|m| {
            let n = m.as_str();
            ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| n.strip_suffix(suffix))
                .unwrap_or(n)
                .to_string()
        })
        .collect()
}

#[test]
fn alert_rules_pass_their_promtool_unit_tests() {
    let dir = root().join("deploy/prometheus");
    for args in [
        &["check", "rules", "weir-alerts.yml"][..],
        &["test", "rules", "weir-alerts.test.yml"][..],
    ] {
        let output = Command::new("promtool")
            .args(args)
            .current_dir(&dir)
            .output()
            .unwrap_or_else(|e| {
                panic!("promtool is missing ({e}): run `apt-get install -y prometheus`")
            });
        assert!(
            output.status.success(),
            "promtool {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

#[test]
fn dashboard_and_alerts_query_only_metrics_weir_exports() {
    let exported = exported_metrics();
    assert!(
        exported.contains("weir_source_records_total"),
        "{exported:?}"
    );
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root().join("deploy/grafana/weir-dashboard.json")).unwrap(),
    )
    .unwrap();
    let exprs: Vec<String> = dashboard["panels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|p| p["targets"].as_array().unwrap().iter())
        .map(|t| t["expr"].as_str().unwrap().to_string())
        .collect();
    assert!(exprs.len() >= 10);
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/weir-alerts.yml")).unwrap();
    for (what, text) in [("dashboard", exprs.join("\n")), ("alert rules", rules)] {
        let referenced = referenced_metrics(&text);
        assert!(!referenced.is_empty());
        let unknown: Vec<_> = referenced.difference(&exported).collect();
        assert!(
            unknown.is_empty(),
            "the {what} query metrics weir does not export: {unknown:?}"
        );
    }
}

#[test]
fn every_alert_links_its_section_of_the_runbooks() {
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/weir-alerts.yml")).unwrap();
    let runbooks = std::fs::read_to_string(root().join("docs/runbooks.md")).unwrap();
    let alert = regex::Regex::new(r"- alert: (\w+)").unwrap();
    let link = regex::Regex::new(r#"runbook_url: "docs/runbooks\.md#([a-z]+)""#).unwrap();
    let alerts: Vec<&str> = alert
        .captures_iter(&rules)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    let links: Vec<&str> = link
        .captures_iter(&rules)
        .map(|c| c.get(1).unwrap().as_str())
        .collect();
    assert!(alerts.len() >= 11, "{alerts:?}");
    assert_eq!(
        links,
        alerts.iter().map(|a| a.to_lowercase()).collect::<Vec<_>>(),
        "each alert, in order, links the section named after it"
    );
    for name in alerts {
        assert!(
            runbooks.contains(&format!("\n## {name}\n")),
            "docs/runbooks.md has no section for {name}"
        );
    }
}

/// Runs `amtool` with `args` in `deploy/alertmanager`; its standard output.
fn amtool(args: &[&str]) -> String {
    let output = Command::new("amtool")
        .args(args)
        .current_dir(root().join("deploy/alertmanager"))
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "amtool is missing ({e}): run `apt-get install -y --no-install-recommends prometheus-alertmanager`"
            )
        });
    assert!(
        output.status.success(),
        "amtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn alertmanager_config_is_valid_and_pages_only_for_critical_alerts() {
    let check = amtool(&["check-config", "alertmanager.yml"]);
    assert!(check.contains("SUCCESS"), "{check}");
    let rules = std::fs::read_to_string(root().join("deploy/prometheus/weir-alerts.yml")).unwrap();
    let alert = regex::Regex::new(r"- alert: (\w+)[\s\S]*?severity: (\w+)").unwrap();
    let alerts: Vec<(&str, &str)> = alert
        .captures_iter(&rules)
        .map(|c| (c.get(1).unwrap().as_str(), c.get(2).unwrap().as_str()))
        .collect();
    assert!(alerts.len() >= 11, "{alerts:?}");
    for (name, severity) in alerts {
        let receivers = amtool(&[
            "config",
            "routes",
            "test",
            "--config.file=alertmanager.yml",
            &format!("alertname={name}"),
            &format!("severity={severity}"),
        ]);
        let expected = match severity {
            "critical" => "pagerduty-weir,slack-weir",
            "warning" => "slack-weir",
            other => panic!("{name} has severity {other}: route it in alertmanager.yml"),
        };
        assert_eq!(receivers.trim(), expected, "{name} ({severity})");
    }
}

/// The Datadog metric name the OpenMetrics check makes of each sampled family in a Prometheus
/// text: `weir.` and the name without `weir_`; a counter without `_total` and with `.count`; a
/// histogram as `.bucket`, `.sum` and `.count`.
fn datadog_names(prometheus_text: &str) -> BTreeSet<String> {
    let family = regex::Regex::new(r"(?m)^# TYPE ([a-z0-9_]+) ([a-z]+)$").unwrap();
    let mut names = BTreeSet::new();
    for c in family.captures_iter(prometheus_text) {
        let (raw, kind) = (&c[1], &c[2]);
        if !prometheus_text.contains(&format!("\n{raw}")) {
            continue;
        }
        let name = raw.strip_prefix("weir_").unwrap_or(raw);
        match kind {
            "counter" => {
                names.insert(format!("weir.{}.count", name.trim_end_matches("_total")));
            }
            "histogram" => {
                names.extend(["bucket", "sum", "count"].map(|part| format!("weir.{name}.{part}")))
            }
            _ => {
                names.insert(format!("weir.{name}"));
            }
        }
    }
    names
}

#[test]
fn the_datadog_openmetrics_check_scrapes_the_names_the_docs_list() {
    let dir = tempfile::tempdir().unwrap();
    let config = stdin_config(dir.path(), plugin_dir().to_str().unwrap(), "");
    let (mut run, port) = run_on_stdin(&config);
    let mut stdin = run.stdin.take().unwrap();
    for n in 0..10 {
        let ua = if n % 2 == 0 {
            "Mozilla/5.0"
        } else {
            "curl/8.4.0"
        };
        writeln!(
            stdin,
            "{{\"user_id\":\"u{n}\",\"ts\":{},\"user_agent\":\"{ua}\"}}",
            1_767_225_600_000_i64 + n * 1000
        )
        .unwrap();
    }
    writeln!(stdin, "not json").unwrap();
    stdin.flush().unwrap();
    wait_for_answer(port, "/metrics", |_, body| {
        body.contains("weir_source_records_total 11")
    });

    let produced: BTreeMap<String, Vec<String>> = serde_json::from_str(&python(&format!(
        "import json, sys, yaml\n\
         from datadog_checks.base.checks.openmetrics.v2.base import OpenMetricsBaseCheckV2\n\
         from datadog_checks.base.stubs import aggregator\n\
         conf = yaml.safe_load(open({conf:?}))\n\
         instance = dict(conf['instances'][0], openmetrics_endpoint='http://127.0.0.1:{port}/metrics')\n\
         check = OpenMetricsBaseCheckV2('openmetrics', conf['init_config'], [instance])\n\
         error = check.run()\n\
         if error: sys.exit(error)\n\
         names = {{}}\n\
         for name in aggregator.metric_names:\n\
         \x20   for m in aggregator.metrics(name):\n\
         \x20       names.setdefault(name, set()).update(t.split(':')[0] for t in m.tags)\n\
         print(json.dumps({{k: sorted(v) for k, v in names.items()}}))\n",
        conf = root().join("deploy/datadog/conf.yaml")
    )))
    .unwrap();
    let (_, text) = request(port, "GET", "/metrics").unwrap();
    // SAFETY: kill only sends a signal to the child.
    assert_eq!(unsafe { libc::kill(run.id() as i32, libc::SIGTERM) }, 0);
    drop(stdin);
    assert!(run.wait().unwrap().success());

    let names: BTreeSet<String> = produced.keys().cloned().collect();
    let expected = datadog_names(&text);
    assert!(
        names.is_subset(&expected),
        "names the check made that the rule does not give: {:?}",
        names.difference(&expected).collect::<Vec<_>>()
    );
    assert!(
        expected.difference(&names).count() <= 2,
        "families the check did not submit: {:?}",
        expected.difference(&names).collect::<Vec<_>>()
    );
    assert!(
        produced.values().flatten().all(|tag| tag != "version"),
        "`version` is renamed: {produced:?}"
    );
    assert!(produced["weir.build_info"].contains(&"weir_version".to_string()));
    let doc = std::fs::read_to_string(root().join("docs/datadog.md")).unwrap();
    let listed = regex::Regex::new(r"`(weir\.[a-z0-9_.]+)`").unwrap();
    let table = doc.lines().filter(|l| l.starts_with("| `weir."));
    let listed: BTreeSet<&str> = table
        .flat_map(|row| row.split(" | ").next())
        .flat_map(|cell| {
            listed
                .captures_iter(cell)
                .map(|c| c.get(1).unwrap().as_str())
        })
        .collect();
    assert!(listed.len() >= 10, "{listed:?}");
    for name in listed {
        assert!(
            names.contains(name),
            "docs/datadog.md lists {name}, the check made {names:?}"
        );
    }
}

/// Every document of the Kubernetes manifests, as JSON (read by PyYAML in the test venv).
fn kubernetes_documents() -> Vec<(String, serde_json::Value)> {
    let dir = root().join("deploy/kubernetes");
    let script = format!(
        "import glob, json, os, yaml\n\
         docs = []\n\
         for path in sorted(glob.glob(os.path.join({dir:?}, '*.yaml'))):\n\
         \x20   for doc in yaml.safe_load_all(open(path)):\n\
         \x20       docs.append([os.path.basename(path), doc])\n\
         print(json.dumps(docs))",
        dir = dir.to_str().unwrap()
    );
    serde_json::from_str(&python(&script)).unwrap()
}

#[test]
fn kubernetes_manifests_pass_the_api_schemas_and_agree_with_each_other() {
    let dir = root().join("deploy/kubernetes");
    // The built-in kinds against Kubernetes' own schemas, refusing unknown fields.
    let manifests: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    let out = python(&format!(
        "import subprocess, sys\n\
         r = subprocess.run([sys.executable, '-m', 'kubernetes_validate', '--strict', '-k', '1.30'] + {manifests:?}, capture_output=True, text=True)\n\
         print(r.returncode, r.stdout, r.stderr)"
    ));
    assert!(out.starts_with("0 ") && !out.contains("ERROR"), "{out}");
    for kind in ["deployment/weir", "poddisruptionbudget/weir"] {
        assert!(
            out.contains(&format!("passed for resource {kind}")),
            "{out}"
        );
    }

    let docs = kubernetes_documents();
    let of_kind = |kind: &str| -> &serde_json::Value {
        &docs
            .iter()
            .find(|(_, d)| d["kind"] == kind)
            .unwrap_or_else(|| panic!("no {kind} in deploy/kubernetes"))
            .1
    };
    let kustomization = of_kind("Kustomization");
    let files: std::collections::BTreeSet<&str> = docs
        .iter()
        .map(|(f, _)| f.as_str())
        .filter(|f| *f != "kustomization.yaml")
        .collect();
    let listed: std::collections::BTreeSet<&str> = kustomization["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    assert_eq!(listed, files, "kustomization.yaml lists every manifest");

    let deployment = of_kind("Deployment");
    assert!(
        deployment["spec"]["replicas"].is_null(),
        "KEDA owns the replicas"
    );
    let pod = &deployment["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    let security = &pod["spec"]["securityContext"];
    assert_eq!(security["runAsNonRoot"], true);
    let uid = security["runAsUser"].as_u64().unwrap();
    assert!(uid >= 1000, "a numeric non-root user");
    let container = &pod["spec"]["containers"][0];
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(
        container["securityContext"]["allowPrivilegeEscalation"],
        false
    );
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"][0],
        "ALL"
    );
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert!(container[probe]["httpGet"]["path"].is_string(), "{probe}");
    }
    let ports: Vec<&str> = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();

    let matches_pod = |selector: &serde_json::Value| {
        selector["matchLabels"]
            .as_object()
            .unwrap()
            .iter()
            .all(|(k, v)| labels[k] == *v)
    };
    assert!(matches_pod(
        &of_kind("PodDisruptionBudget")["spec"]["selector"]
    ));
    let monitor = &of_kind("PodMonitor")["spec"];
    assert!(matches_pod(&monitor["selector"]));
    let endpoint = &monitor["podMetricsEndpoints"][0];
    assert!(ports.contains(&endpoint["port"].as_str().unwrap()));
    assert_eq!(endpoint["path"], "/metrics");
    // The job label the alerts select (`up{job="weir"}`).
    assert_eq!(labels[monitor["jobLabel"].as_str().unwrap()], "weir");

    // The scaler watches the pipeline's own group and topic and scales this Deployment.
    let pipeline = weir::config::PipelineConfig::load(&dir.join("pipeline.toml"))
        .unwrap_or_else(|e| panic!("{e}"));
    let weir::config::SourceConfig::Kafka(kafka) = &pipeline.source else {
        panic!("the Kubernetes pipeline reads Kafka");
    };
    let scaled = &of_kind("ScaledObject")["spec"];
    assert_eq!(
        scaled["scaleTargetRef"]["name"],
        deployment["metadata"]["name"]
    );
    let trigger = &scaled["triggers"][0];
    assert_eq!(trigger["type"], "kafka");
    assert_eq!(trigger["metadata"]["consumerGroup"], kafka.group.as_str());
    assert_eq!(
        trigger["metadata"]["bootstrapServers"],
        kafka.brokers.as_str()
    );
    assert!(
        kafka
            .topics
            .iter()
            .any(|t| trigger["metadata"]["topic"] == t.as_str())
    );
    assert_eq!(trigger["metadata"]["allowIdleConsumers"], "false");
    let (min, max) = (
        scaled["minReplicaCount"].as_u64().unwrap(),
        scaled["maxReplicaCount"].as_u64().unwrap(),
    );
    assert!(1 <= min && min <= max);

    // The image runs as that user and checks its own health.
    let dockerfile = std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).unwrap();
    assert!(
        dockerfile.contains(&format!("USER {uid}:{uid}")),
        "{dockerfile}"
    );
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/healthz"));
    assert!(
        dockerfile.contains("--mount=type=cache"),
        "dependencies are cached"
    );
    let ignored = std::fs::read_to_string(root().join(".dockerignore")).unwrap();
    assert!(ignored.lines().any(|l| l.trim() == "target"), "{ignored}");
}

#[test]
fn the_kubernetes_pipeline_is_a_valid_config() {
    let path = root().join("deploy/kubernetes/pipeline.toml");
    let config = weir::config::PipelineConfig::load(&path).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.admin.listen, "0.0.0.0:9898");
    let kustomization =
        std::fs::read_to_string(root().join("deploy/kubernetes/kustomization.yaml")).unwrap();
    assert!(kustomization.contains("pipeline.toml"));
}

#[test]
fn the_systemd_unit_and_the_dockerfile_use_options_weir_has() {
    let help = String::from_utf8_lossy(&weir(&["run", "--help"]).stdout).to_string();
    let unit = std::fs::read_to_string(root().join("deploy/systemd/weir.service")).unwrap();
    let exec = unit
        .lines()
        .find_map(|l| l.strip_prefix("ExecStart="))
        .unwrap();
    let dockerfile = std::fs::read_to_string(root().join("deploy/docker/Dockerfile")).unwrap();
    let cmd = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("CMD "))
        .unwrap();
    for command in [exec, cmd] {
        assert!(command.contains("run"), "{command}");
        for flag in command.split(|c: char| c.is_whitespace() || c == '"' || c == ',') {
            if flag.starts_with("--") {
                assert!(help.contains(flag), "`weir run` has no {flag}:\n{help}");
            }
        }
    }
    for variable in ["WEIR_LOG_FORMAT", "WEIR_ADMIN_LISTEN", "WEIR_PLUGIN_DIR"] {
        assert!(
            dockerfile.contains(variable) && help.contains(variable)
                || !dockerfile.contains(variable),
            "{variable}"
        );
    }
}
