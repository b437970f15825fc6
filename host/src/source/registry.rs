//! A client of a Confluent-compatible schema registry (Confluent's, Apicurio's `ccompat` API,
//! Redpanda's, Karapace): fetches the schema a record's wire header names by id, and registers
//! or looks up the schemas outputs are written with. An id the registry does not know is the
//! record's fault; a registry that cannot be reached is not: a record's schema is asked for
//! through a circuit breaker like the sinks' (the partition rewinds and retries while it is
//! open), and what is needed at start is waited for with backoff and kept for the process (a
//! partition built again later never waits on the registry); a config reload asks without
//! waiting, and is refused if the registry cannot answer. Nothing is dead-lettered for an
//! outage.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use crate::sinks::resilience::{Breaker, Breakers, RetryConfig, jittered};
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
    /// Tries and circuit breaker of a record's schema fetch (as a sink's `retry`).
    #[serde(default)]
    pub retry: RetryConfig,
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
        self.retry
            .validate()
            .map_err(|(name, reason)| (field(&format!("retry.{name}")), reason))
    }
}

/// A schema as the registry serves it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredSchema {
    /// `AVRO`, `PROTOBUF` or `JSON` (the registry omits it for Avro).
    pub kind: String,
    /// The schema's text.
    pub text: String,
    /// The registered schemas it refers to (Avro named types, Protobuf imports).
    pub references: Vec<Reference>,
}

/// A schema's reference to another registered schema.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Reference {
    /// The name the referring schema uses: an Avro type's full name, a Protobuf import path.
    pub name: String,
    /// Where it is registered.
    pub subject: String,
    /// Which version of the subject.
    pub version: i64,
}

/// A referenced schema by the name its referrer uses, dependencies before their dependents.
pub type ResolvedReferences = Vec<(String, String)>;

/// Why a request to the registry failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
enum CallError {
    /// The registry could not be asked or did not answer properly: nobody's record is.
    #[error("{0}")]
    Unreachable(String),
    /// The registry refused the schema (409 incompatible, 422 invalid): asking again will not
    /// help.
    #[error("{0}")]
    Refused(String),
}

#[derive(Deserialize)]
struct SchemaResponse {
    schema: String,
    #[serde(default, rename = "schemaType")]
    schema_type: Option<String>,
    #[serde(default)]
    references: Vec<Reference>,
}

impl From<SchemaResponse> for RegisteredSchema {
    fn from(body: SchemaResponse) -> Self {
        RegisteredSchema {
            kind: body.schema_type.unwrap_or_else(|| "AVRO".into()),
            text: body.schema,
            references: body.references,
        }
    }
}

#[derive(Deserialize)]
struct IdResponse {
    id: u32,
}

#[derive(Deserialize)]
struct VersionResponse {
    id: u32,
    #[serde(flatten)]
    schema: SchemaResponse,
}

/// `text` as one segment of a URL path (a subject may hold `/`, `:` or spaces).
fn encode_path(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// A registry client (cloning shares its connections and breaker).
#[derive(Clone)]
pub struct SchemaRegistry {
    config: RegistryConfig,
    client: reqwest::blocking::Client,
    breaker: Arc<Breaker>,
    /// The answers waited for ([`Patience::Wait`]) by request, kept for the process.
    kept: Arc<Mutex<HashMap<String, serde_json::Value>>>,
}

/// How long a question to the registry may wait for its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Patience {
    /// Until the registry answers (with backoff, a warning per try), and the answer is kept
    /// for the process: start-up, where nothing runs yet. Partitions built again later (after
    /// a rewind, a rebalance) have it without asking, so they never wait on a registry that
    /// is down.
    Wait,
    /// The breaker's tries, for a fresh answer: a config reload, which must not stall the
    /// running pipeline (it is refused instead).
    Tries,
}

/// The breaker's name among the sinks' (`weir_sink_breaker_state{sink}`, the admin status).
pub const BREAKER_NAME: &str = "schema_registry";

impl SchemaRegistry {
    /// A client for `config` whose breaker is among `breakers` (no request is made yet).
    pub fn new(config: &RegistryConfig, breakers: &Breakers) -> Result<Self, (String, String)> {
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
            breaker: breakers.get(BREAKER_NAME, &config.retry),
            kept: Arc::default(),
        })
    }

    /// The schema with `id` (`None` if the registry has none), tried through the breaker;
    /// the error says why the registry could not answer (each failed try logs a warning and
    /// sets `weir_schema_registry_up` to 0).
    pub fn schema(&self, id: u32) -> Result<Option<RegisteredSchema>, String> {
        let body: Option<SchemaResponse> =
            self.get_through_breaker(&format!("schema id {id}"), &format!("schemas/ids/{id}"))?;
        Ok(body.map(Into::into))
    }

    /// `GET path` (what the caller asks for: `what`) tried through the breaker: its answer,
    /// `None` for a 404, or why the registry could not answer.
    fn get_through_breaker<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        path: &str,
    ) -> Result<Option<T>, String> {
        self.breaker
            .call(what, || {
                let answer = self.call(reqwest::Method::GET, path, None);
                self.observe(&answer, what, None);
                answer
            })
            .map_err(|e| e.to_string())
    }

    /// The texts of the schemas `references` name, and of those they name in turn,
    /// dependencies first, each fetched through the breaker. `Ok(Err(_))` says which reference
    /// the registry does not have; `Err(_)` that it could not be asked.
    pub fn references(
        &self,
        references: &[Reference],
    ) -> Result<Result<ResolvedReferences, String>, String> {
        let mut resolved = ResolvedReferences::new();
        let mut pending: Vec<(Reference, bool)> = references
            .iter()
            .rev()
            .map(|r| (r.clone(), false))
            .collect();
        while let Some((reference, expanded)) = pending.pop() {
            if resolved.iter().any(|(name, _)| *name == reference.name) {
                continue;
            }
            let path = format!(
                "subjects/{}/versions/{}",
                encode_path(&reference.subject),
                reference.version
            );
            let what = format!("reference {}", reference.name);
            let answer: Option<VersionResponse> = self.get_through_breaker(&what, &path)?;
            let Some(answer) = answer else {
                return Ok(Err(format!(
                    "reference {} ({} version {}) is not in the registry",
                    reference.name, reference.subject, reference.version
                )));
            };
            if expanded || answer.schema.references.is_empty() {
                resolved.push((reference.name, answer.schema.schema));
            } else {
                // Its own references first, then it again.
                pending.push((reference, true));
                if pending.len() > 10_000 {
                    return Ok(Err("references nest too deep".into()));
                }
                pending.extend(
                    answer
                        .schema
                        .references
                        .into_iter()
                        .rev()
                        .map(|r| (r, false)),
                );
            }
        }
        Ok(Ok(resolved))
    }

    /// Publishes what `answer` says of the registry: up, or (with a warning) not.
    fn observe<T>(&self, answer: &Result<T, CallError>, what: &str, retry_in: Option<Duration>) {
        match answer {
            Err(CallError::Unreachable(reason)) => {
                metrics::gauge!("weir_schema_registry_up").set(0.0);
                metrics::counter!("weir_schema_registry_errors_total").increment(1);
                tracing::warn!(registry = %self.config.url, asking = what, error = %reason, ?retry_in, "Schema registry unreachable: the partition waits for it.");
            }
            _ => metrics::gauge!("weir_schema_registry_up").set(1.0),
        }
    }

    /// The id of the schema `text` of `kind` (`AVRO`, `PROTOBUF`) under `subject`:
    /// registered there if `register` (the registry gives the id it already has for the same
    /// schema), else looked up (an error if the subject has no such version). Asked with
    /// [`Patience::Wait`].
    pub fn id_of(
        &self,
        subject: &str,
        kind: &str,
        text: &str,
        register: bool,
    ) -> Result<u32, String> {
        let path = if register {
            format!("subjects/{}/versions", encode_path(subject))
        } else {
            format!("subjects/{}", encode_path(subject))
        };
        let body = serde_json::json!({ "schema": text, "schemaType": kind });
        let answer: IdResponse = self
            .waiting(
                &format!("subject {subject}"),
                reqwest::Method::POST,
                &path,
                Some(&body),
            )?
            .ok_or_else(|| format!("subject {subject:?} has no version with this schema"))?;
        Ok(answer.id)
    }

    /// The id and schema of the latest version of `subject`, asked with `patience`.
    pub fn latest(
        &self,
        subject: &str,
        patience: Patience,
    ) -> Result<(u32, RegisteredSchema), String> {
        let path = format!("subjects/{}/versions/latest", encode_path(subject));
        let what = format!("subject {subject}");
        let answer: VersionResponse = match patience {
            Patience::Wait => self.waiting(&what, reqwest::Method::GET, &path, None)?,
            Patience::Tries => self
                .get_through_breaker(&what, &path)
                .map_err(|e| format!("the schema registry cannot answer now: {e}"))?,
        }
        .ok_or_else(|| format!("subject {subject:?} is not in the registry"))?;
        Ok((answer.id, answer.schema.into()))
    }

    /// The answer to one request, asked with [`Patience::Wait`]: the kept one, else `call`
    /// retried with backoff (a warning, `weir_schema_registry_up` at 0) while the registry
    /// cannot be reached; a refused schema is the caller's error.
    fn waiting<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>, String> {
        let key = format!(
            "{method} {path} {}",
            body.map(|b| b.to_string()).unwrap_or_default()
        );
        let read = |value: serde_json::Value| {
            serde_json::from_value(value).map_err(|e| format!("{what}: {e}"))
        };
        if let Some(value) = self.lock_kept().get(&key) {
            return read(value.clone()).map(Some);
        }
        let mut backoff = Duration::from_millis(200);
        loop {
            let answer = self.call::<serde_json::Value>(method.clone(), path, body);
            self.observe(&answer, what, Some(backoff));
            match answer {
                Ok(Some(value)) => {
                    self.lock_kept().insert(key, value.clone());
                    return read(value).map(Some);
                }
                Ok(None) => return Ok(None),
                Err(CallError::Refused(reason)) => return Err(reason),
                Err(CallError::Unreachable(_)) => {
                    std::thread::sleep(jittered(backoff));
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }

    fn lock_kept(&self) -> std::sync::MutexGuard<'_, HashMap<String, serde_json::Value>> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One request to `path` under the registry's URL: its JSON answer, `None` for a 404.
    fn call<T: serde::de::DeserializeOwned>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>, CallError> {
        let url = format!("{}/{path}", self.config.url.trim_end_matches('/'));
        let mut request = self.client.request(method, &url).header(
            "Accept",
            "application/vnd.schemaregistry.v1+json, application/json",
        );
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/vnd.schemaregistry.v1+json")
                .body(body.to_string());
        }
        if let Some(token) = &self.config.bearer_token {
            request = request.bearer_auth(token);
        } else if let Some(user) = &self.config.username {
            request = request.basic_auth(user, self.config.password.as_deref());
        }
        let response = request
            .send()
            .map_err(|e| CallError::Unreachable(e.to_string()))?;
        let status = response.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !status.is_success() {
            let body = response.text().unwrap_or_default();
            let reason = format!(
                "{url}: {status}: {}",
                body.chars().take(300).collect::<String>()
            );
            // A schema the registry refuses is not an outage: waiting would not change the
            // answer. Anything else (401, 5xx, …) is waited out, and alerted on.
            return Err(if matches!(status.as_u16(), 409 | 422) {
                CallError::Refused(reason)
            } else {
                CallError::Unreachable(reason)
            });
        }
        let bytes = response
            .bytes()
            .map_err(|e| CallError::Unreachable(format!("{url}: {e}")))?;
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| CallError::Unreachable(format!("{url}: {e}")))
    }

    /// How many schemas to keep.
    pub fn cache_size(&self) -> usize {
        self.config.cache_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_question_asked_with_tries_does_not_wait_for_a_registry_that_is_down() {
        // A port nothing listens on: each try is refused at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config: RegistryConfig = toml::from_str(&format!(
            "url = \"http://127.0.0.1:{port}\"\n[retry]\nattempts = 2\ninitial_backoff = \"10ms\""
        ))
        .unwrap();
        let registry = SchemaRegistry::new(&config, &Breakers::default()).unwrap();
        let started = std::time::Instant::now();
        let error = registry
            .latest("clicks-value", Patience::Tries)
            .unwrap_err();
        assert!(error.contains("cannot answer now"), "{error}");
        assert!(started.elapsed() < Duration::from_secs(5), "it waited");
    }
}
