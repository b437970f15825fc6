//! A client of a Confluent-compatible schema registry (Confluent's, Apicurio's `ccompat` API,
//! Redpanda's, Karapace): fetches the schema a record's wire header names by id. An id the
//! registry does not know is the record's fault; a registry that cannot be reached is not:
//! the caller waits, retrying with backoff, and nothing is dead-lettered for it.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::sinks::resilience::jittered;
use crate::units::HumanDuration;

/// Longest wait between two tries of an unreachable registry.
const MAX_BACKOFF: Duration = Duration::from_secs(10);

/// `[schema_registry]`: where schemas are fetched from.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistryConfig {
    /// Base URL of the Confluent-compatible API, e.g. `http://registry:8081` or Apicurio's
    /// `http://registry:8080/apis/ccompat/v7`.
    pub url: String,
    /// Basic-auth user (`"${NAME}"` reads the variable `NAME`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic-auth password.
    #[serde(default)]
    pub password: Option<String>,
    /// A bearer token, instead of basic auth.
    #[serde(default)]
    pub bearer_token: Option<String>,
    /// A PEM file of the CA that signed an `https://` registry's certificate (default: the
    /// system's roots).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Timeout of one request.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Schemas kept by id; past it, schemas are fetched for each record that needs them.
    #[serde(default = "default_cache_size")]
    pub cache_size: usize,
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(5)
}

fn default_cache_size() -> usize {
    1000
}

impl RegistryConfig {
    /// Checks what the types cannot; the error names the field.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let field = |name: &str| format!("schema_registry.{name}");
        let url = reqwest::Url::parse(&self.url).map_err(|e| (field("url"), e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err((field("url"), "must be an http:// or https:// URL".into()));
        }
        if self.bearer_token.is_some() && (self.username.is_some() || self.password.is_some()) {
            return Err((
                field("bearer_token"),
                "give a bearer token or a username and password, not both".into(),
            ));
        }
        if self.username.is_some() != self.password.is_some() {
            return Err((
                field("password"),
                "basic auth needs both username and password".into(),
            ));
        }
        if self.timeout.0.is_zero() {
            return Err((field("timeout"), "must be positive".into()));
        }
        if self.cache_size == 0 {
            return Err((field("cache_size"), "must be at least 1".into()));
        }
        Ok(())
    }
}

/// A schema as the registry serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// `AVRO`, `PROTOBUF` or `JSON` (the registry omits it for Avro).
    pub kind: String,
    /// The schema's text.
    pub text: String,
    /// Whether it refers to other registered schemas.
    pub has_references: bool,
}

/// Why a schema could not be had.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// The registry has no schema with this id: the record is at fault.
    Unknown(u32),
    /// The registry could not be asked or did not answer properly: nobody's record is.
    Unreachable(String),
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<serde_json::Value>,
}

/// A registry client.
pub struct SchemaRegistry {
    config: RegistryConfig,
    client: reqwest::blocking::Client,
}

impl SchemaRegistry {
    /// A client for `config` (no request is made yet).
    pub fn new(config: &RegistryConfig) -> Result<Self, (String, String)> {
        config.validate()?;
        crate::tls::install_crypto_provider();
        let mut builder = reqwest::blocking::Client::builder()
            .timeout(config.timeout.0)
            .user_agent(concat!("weir/", env!("CARGO_PKG_VERSION")));
        if let Some(path) = &config.ca_file {
            let field = || "schema_registry.ca_file".to_string();
            let pem = std::fs::read(path)
                .map_err(|e| (field(), format!("reading {}: {e}", path.display())))?;
            let certificate =
                reqwest::Certificate::from_pem(&pem).map_err(|e| (field(), e.to_string()))?;
            builder = builder.add_root_certificate(certificate);
        }
        let client = builder
            .build()
            .map_err(|e| ("schema_registry".to_string(), e.to_string()))?;
        Ok(SchemaRegistry {
            config: config.clone(),
            client,
        })
    }

    /// The schema with `id`, waiting (with backoff, a warning and `weir_schema_registry_up`
    /// at 0) while the registry cannot be reached.
    pub fn schema(&self, id: u32) -> Result<RegisteredSchema, u32> {
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.fetch(id) {
                Ok(schema) => {
                    metrics::gauge!("weir_schema_registry_up").set(1.0);
                    return Ok(schema);
                }
                Err(FetchError::Unknown(id)) => {
                    metrics::gauge!("weir_schema_registry_up").set(1.0);
                    return Err(id);
                }
                Err(FetchError::Unreachable(reason)) => {
                    metrics::gauge!("weir_schema_registry_up").set(0.0);
                    metrics::counter!("weir_schema_registry_errors_total").increment(1);
                    tracing::warn!(registry = %self.config.url, schema_id = id, error = %reason, retry_in = ?backoff, "Schema registry unreachable: the partition waits for it.");
                    std::thread::sleep(jittered(backoff));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    /// One try at `GET /schemas/ids/{id}`.
    pub fn fetch(&self, id: u32) -> Result<RegisteredSchema, FetchError> {
        let url = format!("{}/schemas/ids/{id}", self.config.url.trim_end_matches('/'));
        let mut request = self.client.get(&url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token);
        } else if let Some(user) = &self.config.username {
            request = request.basic_auth(user, self.config.password.as_deref());
        }
        let response = request
            .send()
            .map_err(|e| FetchError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(FetchError::Unknown(id));
        }
        if !status.is_success() {
            let body = response.text().unwrap_or_default();
            return Err(FetchError::Unreachable(format!(
                "{url}: {status}: {}",
                body.chars().take(200).collect::<String>()
            )));
        }
        let bytes = response
            .bytes()
            .map_err(|e| FetchError::Unreachable(format!("{url}: {e}")))?;
        let body: SchemaResponse = serde_json::from_slice(&bytes)
            .map_err(|e| FetchError::Unreachable(format!("{url}: {e}")))?;
        Ok(RegisteredSchema {
            kind: body.schema_type.unwrap_or_else(|| "AVRO".into()),
            text: body.schema,
            has_references: !body.references.is_empty(),
        })
    }

    /// How many schemas to keep.
    pub fn cache_size(&self) -> usize {
        self.config.cache_size
    }
}
