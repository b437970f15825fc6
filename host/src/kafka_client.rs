//! librdkafka client settings shared by the consumer and the producer: `properties` pass
//! through to librdkafka, and a value written `${NAME}` is read from the environment, so
//! secrets stay out of config files (and out of logs: nothing here logs them).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// Resolves `${NAME}` values from the environment; the error names the property as
/// `<table>.<key>`.
pub fn resolve_properties(
    properties: &BTreeMap<String, String>,
    table: &str,
) -> Result<BTreeMap<String, String>, (String, String)> {
    properties
        .iter()
        .map(|(key, value)| {
            let resolved = match value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                Some(var) => std::env::var(var).map_err(|_| {
                    (
                        format!("{table}.{key}"),
                        format!("environment variable {var} is not set"),
                    )
                })?,
                None => value.clone(),
            };
            Ok((key.clone(), resolved))
        })
        .collect()
}

/// Client settings: the brokers, then the user's (resolved) properties, which may override.
pub fn client_config(brokers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config.set("client.id", "weir");
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn properties_read_secrets_from_the_environment() {
        let mut props = BTreeMap::new();
        props.insert("sasl.username".to_string(), "weir".to_string());
        props.insert(
            "sasl.password".to_string(),
            "${WEIR_TEST_SECRET_UNSET_42}".to_string(),
        );
        let err = resolve_properties(&props, "properties").unwrap_err();
        assert_eq!(err.0, "properties.sasl.password");
        assert!(err.1.contains("WEIR_TEST_SECRET_UNSET_42"));
        props.insert("sasl.password".to_string(), "${HOME}".to_string());
        let resolved = resolve_properties(&props, "properties").unwrap();
        assert_eq!(resolved["sasl.password"], std::env::var("HOME").unwrap());
    }
}
