//! What a config reload (SIGHUP) may change while the pipeline runs: the stages' `config`
//! tables, sink tuning, and added routes or sinks. Anything else needs a restart; a reload
//! that touches it is refused, naming each field and why, and nothing changes.

use std::collections::BTreeSet;

/// Sink keys that only tune how a sink writes, not what or where.
const SINK_TUNING: &[&str] = &[
    "roll_size",
    "roll_interval",
    "row_group_rows",
    "zstd_level",
    "ttl",
    "pipeline",
    "timeout",
    "retry",
];

/// The changes a reload applies, by kind.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadPlan {
    /// Stages whose `config` table changed.
    pub stages: Vec<String>,
    /// Sink changes, described (`sinks.lake.roll_size`, `sinks.audit (new)`...).
    pub sinks: Vec<String>,
}

impl ReloadPlan {
    /// Whether the reload changes nothing.
    pub fn is_empty(&self) -> bool {
        self.stages.is_empty() && self.sinks.is_empty()
    }
}

/// Compares the running config's file (`old`) with the new one. `Err` lists every change a
/// running pipeline cannot take, each as `field: why`.
pub fn plan(old: &toml::Table, new: &toml::Table) -> Result<ReloadPlan, Vec<String>> {
    let mut plan = ReloadPlan::default();
    let mut refused = Vec::new();
    for key in keys(old, new) {
        let (a, b) = (old.get(key), new.get(key));
        if a == b {
            continue;
        }
        match key {
            "stages" => stage_changes(a, b, &mut plan, &mut refused),
            "sinks" => sink_changes(a, b, &mut plan, &mut refused),
            other => refused.push(format!("{other}: changing it needs a restart")),
        }
    }
    if refused.is_empty() {
        Ok(plan)
    } else {
        Err(refused)
    }
}

fn keys<'a>(old: &'a toml::Table, new: &'a toml::Table) -> BTreeSet<&'a str> {
    old.keys().chain(new.keys()).map(String::as_str).collect()
}

fn stage_changes(
    old: Option<&toml::Value>,
    new: Option<&toml::Value>,
    plan: &mut ReloadPlan,
    refused: &mut Vec<String>,
) {
    let empty = Vec::new();
    let old = old.and_then(toml::Value::as_array).unwrap_or(&empty);
    let new = new.and_then(toml::Value::as_array).unwrap_or(&empty);
    if old.len() != new.len() {
        refused.push("stages: adding or removing a stage needs a restart".into());
        return;
    }
    let no_table = toml::Table::new();
    for (i, (a, b)) in old.iter().zip(new).enumerate() {
        let a = a.as_table().unwrap_or(&no_table);
        let b = b.as_table().unwrap_or(&no_table);
        let name = b.get("name").and_then(toml::Value::as_str).unwrap_or("?");
        for key in keys(a, b) {
            if a.get(key) == b.get(key) {
                continue;
            }
            if key == "config" {
                plan.stages.push(name.to_string());
            } else {
                refused.push(format!(
                    "stages[{i}].{key}: only a stage's `config` table changes live; this needs a restart"
                ));
            }
        }
    }
}

fn sink_changes(
    old: Option<&toml::Value>,
    new: Option<&toml::Value>,
    plan: &mut ReloadPlan,
    refused: &mut Vec<String>,
) {
    let empty = toml::Table::new();
    let old = old.and_then(toml::Value::as_table).unwrap_or(&empty);
    let new = new.and_then(toml::Value::as_table).unwrap_or(&empty);
    for name in keys(old, new) {
        let (a, b) = match (old.get(name), new.get(name)) {
            (Some(a), Some(b)) if a == b => continue,
            (None, Some(_)) => {
                plan.sinks.push(format!("sinks.{name} (new)"));
                continue;
            }
            (Some(_), None) => {
                refused.push(format!(
                    "sinks.{name}: removing a sink would drop what it has not published yet; this needs a restart"
                ));
                continue;
            }
            (a, b) => (
                a.and_then(toml::Value::as_table),
                b.and_then(toml::Value::as_table),
            ),
        };
        let (a, b) = (a.unwrap_or(&empty), b.unwrap_or(&empty));
        for key in keys(a, b) {
            let field = format!("sinks.{name}.{key}");
            let (va, vb) = (a.get(key), b.get(key));
            if va == vb {
                continue;
            }
            if SINK_TUNING.contains(&key) || only_adds(va, vb) {
                plan.sinks.push(field);
            } else {
                refused.push(format!(
                    "{field}: only tuning ({}) and added routes change live; this needs a restart",
                    SINK_TUNING.join(", ")
                ));
            }
        }
    }
}

/// Whether `new` only adds to `old`: more routes in a list, more entries in a table.
fn only_adds(old: Option<&toml::Value>, new: Option<&toml::Value>) -> bool {
    match (old, new) {
        (Some(toml::Value::Array(a)), Some(toml::Value::Array(b))) => {
            a.iter().all(|item| b.contains(item))
        }
        (Some(toml::Value::Table(a)), Some(toml::Value::Table(b))) => {
            a.iter().all(|(k, v)| b.get(k) == Some(v))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
        [source.kafka]
        brokers = "b:9092"
        topics = ["clicks"]
        group = "g"
        [[stages]]
        name = "bots"
        plugin = "bot-filter"
        [stages.config]
        rate_limit = 120
        [sinks.lake]
        type = "parquet"
        routes = ["main"]
        roll_size = "128MiB"
        [sinks.topics]
        type = "kafka"
        routes = ["bots"]
        [sinks.topics.topics]
        bots = "weir.bots"
        [dead_letter]
        topic = "weir.dlq"
    "#;

    fn changed(from: &str, to: &str) -> Result<ReloadPlan, Vec<String>> {
        let old: toml::Table = toml::from_str(BASE).unwrap();
        let new: toml::Table = toml::from_str(&BASE.replace(from, to)).unwrap();
        plan(&old, &new)
    }

    #[test]
    fn stage_config_sink_tuning_and_added_routes_change_live() {
        assert!(changed("", "").unwrap().is_empty());
        assert_eq!(
            changed("rate_limit = 120", "rate_limit = 5")
                .unwrap()
                .stages,
            ["bots"]
        );
        assert_eq!(
            changed("\"128MiB\"", "\"64MiB\"").unwrap().sinks,
            ["sinks.lake.roll_size"]
        );
        let added = changed(
            "routes = [\"bots\"]",
            "routes = [\"bots\", \"late\"]\n[sinks.topics.retry]\nattempts = 2",
        )
        .unwrap();
        assert_eq!(added.sinks, ["sinks.topics.retry", "sinks.topics.routes"]);
        let new_sink = changed(
            "[dead_letter]",
            "[sinks.audit]\ntype = \"kafka\"\nroutes = [\"bots\"]\ntopic = \"a\"\n[dead_letter]",
        )
        .unwrap();
        assert_eq!(new_sink.sinks, ["sinks.audit (new)"]);
    }

    #[test]
    fn everything_else_is_refused_naming_the_field() {
        let refused = changed("group = \"g\"", "group = \"h\"").unwrap_err();
        assert_eq!(refused, ["source: changing it needs a restart"]);
        let refused = changed("plugin = \"bot-filter\"", "plugin = \"other\"").unwrap_err();
        assert!(refused[0].starts_with("stages[0].plugin:"), "{refused:?}");
        let refused = changed("routes = [\"main\"]", "routes = [\"other\"]").unwrap_err();
        assert!(refused[0].starts_with("sinks.lake.routes:"), "{refused:?}");
        let refused = changed("bots = \"weir.bots\"", "bots = \"elsewhere\"").unwrap_err();
        assert!(
            refused[0].starts_with("sinks.topics.topics:"),
            "{refused:?}"
        );
        let without_topics = BASE.replace(
            "[sinks.topics]\n        type = \"kafka\"\n        routes = [\"bots\"]\n        [sinks.topics.topics]\n        bots = \"weir.bots\"\n",
            "",
        );
        let refused = plan(
            &toml::from_str(BASE).unwrap(),
            &toml::from_str(&without_topics).unwrap(),
        )
        .unwrap_err();
        assert!(
            refused[0].starts_with("sinks.topics: removing"),
            "{refused:?}"
        );
        let two = changed("[stages.config]", "[stages.config]\nextra = 1\n").unwrap();
        assert_eq!(two.stages, ["bots"]);
    }
}
