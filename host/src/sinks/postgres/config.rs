//! Settings of the PostgreSQL sink.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::sinks::resilience::RetryConfig;
use crate::units::HumanDuration;

/// A PostgreSQL sink: each route's records go to a table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresSinkConfig {
    /// The routes this sink takes.
    pub routes: Vec<String>,
    /// Connection string: `postgresql://user:password@host:port/database` or the key=value
    /// form (`host=… user=… dbname=…`). `sslmode` is `disable`, `prefer` (the default: TLS
    /// when the server offers it) or `require`; with TLS the server's certificate is always
    /// verified, against `ca_file` or the system's roots, and must name the host.
    pub url: String,
    /// PEM file of the certificate authorities trusted for the server's certificate.
    /// Default: the system's roots.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    /// Route → table. A route without an entry goes to the table of its own name.
    #[serde(default)]
    pub tables: BTreeMap<String, TableConfig>,
    /// The table holding, per sink and source partition, the sequence number of the last
    /// epoch applied (created if missing).
    #[serde(default = "default_epochs_table")]
    pub epochs_table: String,
    /// The table receiving rows that passed the check at write time but failed when their
    /// epoch was applied (a key another writer inserted meanwhile, say), with the reason
    /// (created if missing).
    #[serde(default = "default_rejected_table")]
    pub rejected_table: String,
    /// Try each batch at write time in a transaction that is rolled back, so that records the
    /// tables refuse go to the dead letters with the server's reason. `false` skips the try
    /// (the rows are written once instead of twice): refused rows are then found at the
    /// commit and kept in `rejected_table`. Default: true.
    #[serde(default = "yes")]
    pub check_writes: bool,
    /// Timeout of connecting; one write (its whole transaction) may take four times as long
    /// before the connection is dropped and the write retried.
    #[serde(default = "default_timeout")]
    pub timeout: HumanDuration,
    /// Retries and circuit breaker.
    #[serde(default)]
    pub retry: RetryConfig,
}

/// Where one route's records go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TableConfig {
    /// The table, optionally schema-qualified (`analytics.sessions`). Default: the route name.
    #[serde(default)]
    pub table: Option<String>,
    /// Columns that identify a row: records upsert by them (the table needs a unique
    /// constraint or primary key on exactly these). Empty: records are inserted.
    #[serde(default)]
    pub upsert_key: Vec<String>,
    /// The columns written, each from the record's field of the same name. Default: every
    /// column without a default value (so serial ids and `default now()` columns fill
    /// themselves).
    #[serde(default)]
    pub columns: Vec<String>,
}

fn default_epochs_table() -> String {
    "weir_epochs".into()
}

fn default_rejected_table() -> String {
    "weir_rejected_rows".into()
}

fn yes() -> bool {
    true
}

fn default_timeout() -> HumanDuration {
    HumanDuration::from_secs(10)
}

impl PostgresSinkConfig {
    /// The table of `route`, and how its records are written.
    pub fn table_of(&self, route: &str) -> TableConfig {
        let mut table = self.tables.get(route).cloned().unwrap_or_default();
        table.table.get_or_insert_with(|| route.to_string());
        table
    }

    /// Checks what does not need the server; errors are `(field, reason)`.
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.url
            .parse::<tokio_postgres::Config>()
            .map_err(|e| ("url".to_string(), format!("{e}")))?;
        if let Some(path) = &self.ca_file
            && !path.is_file()
        {
            return Err((
                "ca_file".into(),
                format!("{} is not a file", path.display()),
            ));
        }
        for route in self.tables.keys() {
            if !self.routes.contains(route) {
                return Err((
                    format!("tables.{route}"),
                    format!("{route:?} is not one of this sink's routes"),
                ));
            }
        }
        let names = [
            ("epochs_table", &self.epochs_table),
            ("rejected_table", &self.rejected_table),
        ]
        .into_iter()
        .map(|(field, name)| (field.to_string(), name.as_str()));
        let tables = self
            .routes
            .iter()
            .map(|route| (format!("tables.{route}.table"), self.table_of(route)))
            .collect::<Vec<_>>();
        for (field, name) in names.chain(
            tables
                .iter()
                .map(|(field, t)| (field.clone(), t.table.as_deref().unwrap_or_default())),
        ) {
            if !is_identifier(name) {
                return Err((
                    field,
                    format!(
                        "{name:?} must be a table name: letters, digits and _, optionally schema.table"
                    ),
                ));
            }
        }
        for route in &self.routes {
            let table = self.table_of(route);
            for column in table.upsert_key.iter().chain(&table.columns) {
                if !is_identifier(column) || column.contains('.') {
                    return Err((
                        format!("tables.{route}"),
                        format!("{column:?} must be a column name: letters, digits and _"),
                    ));
                }
            }
        }
        self.retry.validate()
    }
}

/// `name` or `schema.name`, each part letters, digits and `_`, not starting with a digit.
pub fn is_identifier(name: &str) -> bool {
    let part = |p: &str| {
        !p.is_empty()
            && !p.starts_with(|c: char| c.is_ascii_digit())
            && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    match name.split_once('.') {
        Some((schema, table)) => part(schema) && part(table),
        None => part(name),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(text: &str) -> PostgresSinkConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_bad_setting_is_refused_by_field() {
        let base = "routes = [\"sessions\", \"features\"]\nurl = \"postgresql://weir@127.0.0.1:5432/analytics\"\n";
        assert!(config(base).validate().is_ok());
        let cases = [
            ("url = \"postgresql://x@h/db?sslmode=sometimes\"", "url"),
            ("ca_file = \"/nonexistent/ca.pem\"", "ca_file"),
            ("[tables.nope]\ntable = \"t\"", "tables.nope"),
            (
                "[tables.sessions]\ntable = \"drop table x\"",
                "tables.sessions.table",
            ),
            (
                "[tables.features]\nupsert_key = [\"user id\"]",
                "tables.features",
            ),
            ("epochs_table = \"1x\"", "epochs_table"),
        ];
        for (extra, field) in cases {
            let text = if extra.starts_with("url") {
                format!("routes = [\"sessions\", \"features\"]\n{extra}\n")
            } else if extra.starts_with('[') {
                format!("{base}{extra}\n")
            } else {
                format!("{extra}\n{base}")
            };
            assert_eq!(config(&text).validate().unwrap_err().0, field, "{extra}");
        }
    }

    #[test]
    fn a_route_without_an_entry_goes_to_its_own_table() {
        let config = config("routes = [\"sessions\"]\nurl = \"host=127.0.0.1 user=weir\"\n");
        let table = config.table_of("sessions");
        assert_eq!(table.table.as_deref(), Some("sessions"));
        assert!(table.upsert_key.is_empty());
    }
}
