//! librdkafka client settings shared by the consumer and the producer: `properties` pass
//! through to librdkafka (secrets written `${NAME}` in the config were read from the
//! environment when it was loaded; nothing here logs them).

use std::collections::BTreeMap;

use rdkafka::ClientConfig;

/// Client settings: the brokers, then the user's properties, which may override.
pub fn client_config(brokers: &str, properties: &BTreeMap<String, String>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config.set("bootstrap.servers", brokers);
    config.set("client.id", "weir");
    for (key, value) in properties {
        config.set(key, value);
    }
    config
}
