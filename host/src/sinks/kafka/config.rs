//! `type = "kafka"` sink settings: the routes it takes and the topic of each.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A `kafka` sink: each route it takes goes to a topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSinkConfig {
    /// The routes this sink takes.
    pub routes: Vec<String>,
    /// Topic for every route not listed in `topics`.
    #[serde(default)]
    pub topic: Option<String>,
    /// Topic per route.
    #[serde(default)]
    pub topics: BTreeMap<String, String>,
}

impl KafkaSinkConfig {
    /// The topic a route goes to.
    pub fn topic_of(&self, route: &str) -> Option<&str> {
        self.topics
            .get(route)
            .or(self.topic.as_ref())
            .map(String::as_str)
    }

    /// Every route needs a topic; errors are `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for route in &self.routes {
            match self.topic_of(route) {
                Some(topic) if !topic.is_empty() => {}
                _ => {
                    return Err((
                        format!("topics.{route}"),
                        "route has no topic (set `topic` or `topics.<route>`)".into(),
                    ));
                }
            }
        }
        if let Some(route) = self.topics.keys().find(|r| !self.routes.contains(r)) {
            return Err((
                format!("topics.{route}"),
                "names a route the sink does not take".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_needs_a_topic() {
        let sink = KafkaSinkConfig {
            routes: vec!["sessions".into(), "features".into()],
            topic: None,
            topics: [("sessions".to_string(), "s".to_string())].into(),
        };
        assert_eq!(sink.validate().unwrap_err().0, "topics.features");
        let sink = KafkaSinkConfig {
            topic: Some("all".into()),
            ..sink
        };
        sink.validate().unwrap();
        assert_eq!(sink.topic_of("features"), Some("all"));
        assert_eq!(sink.topic_of("sessions"), Some("s"));
    }
}
