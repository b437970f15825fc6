//! A stage's configuration as the plugin receives it: string pairs from the pipeline config,
//! with typed getters whose errors name the key.

use std::str::FromStr;

/// The `config` table of a stage.
#[derive(Debug, Clone, Default)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// A config from key/value pairs.
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Config { pairs }
    }

    /// The raw value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `key` parsed as `T`, or `default` when absent.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T, String>
    where
        T::Err: std::fmt::Display,
    {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| format!("config `{key}`: cannot parse {raw:?}: {e}")),
        }
    }

    /// `key` as a duration (`"30m"`, `"1h 30m"`, `"500ms"`) in milliseconds, or `default_ms`.
    pub fn duration_ms_or(&self, key: &str, default_ms: i64) -> Result<i64, String> {
        match self.get(key) {
            None => Ok(default_ms),
            Some(raw) => humantime::parse_duration(raw.trim())
                .map_err(|e| format!("config `{key}`: cannot parse duration {raw:?}: {e}"))
                .and_then(|d| {
                    i64::try_from(d.as_millis())
                        .map_err(|_| format!("config `{key}`: duration too long"))
                }),
        }
    }

    /// `key` trimmed, or `default`; a value that is empty after trimming is refused.
    pub fn non_empty_or(&self, key: &str, default: &str) -> Result<String, String> {
        let value = self.get(key).unwrap_or(default).trim();
        if value.is_empty() {
            Err(format!("config `{key}`: must not be empty"))
        } else {
            Ok(value.to_string())
        }
    }

    /// `key` as a boolean (`true`/`false`, any case), or `default`.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool, String> {
        match self.get(key).map(str::trim) {
            None => Ok(default),
            Some(raw) if raw.eq_ignore_ascii_case("true") => Ok(true),
            Some(raw) if raw.eq_ignore_ascii_case("false") => Ok(false),
            Some(raw) => Err(format!("config `{key}`: {raw:?} is not true or false")),
        }
    }

    /// `key` as a comma-separated list of trimmed, non-empty items, or `default`.
    pub fn list_or(&self, key: &str, default: &[&str]) -> Vec<String> {
        match self.get(key) {
            None => default.iter().map(|s| s.to_string()).collect(),
            Some(raw) => raw
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect(),
        }
    }

    /// `key` as one of `allowed`, or `default`.
    pub fn choice_or<'a>(
        &self,
        key: &str,
        allowed: &[&'a str],
        default: &'a str,
    ) -> Result<&'a str, String> {
        match self.get(key) {
            None => Ok(default),
            Some(raw) => allowed
                .iter()
                .find(|a| a.eq_ignore_ascii_case(raw.trim()))
                .copied()
                .ok_or_else(|| {
                    format!(
                        "config `{key}`: {raw:?} is not one of {}",
                        allowed.join(", ")
                    )
                }),
        }
    }

    /// Errors naming every key not in `known`, so typos are refused at init.
    pub fn reject_unknown(&self, known: &[&str]) -> Result<(), String> {
        let unknown: Vec<&str> = self
            .pairs
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !known.contains(k))
            .collect();
        if unknown.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "unknown config key(s): {} (known: {})",
                unknown.join(", "),
                known.join(", ")
            ))
        }
    }
}
