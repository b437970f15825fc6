//! Human-friendly durations (`"30m"`, `"500ms"`) and byte sizes (`"64MiB"`) in config files.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A duration written like `"30s"`, `"5m"`, `"1h 30m"` or `"250ms"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub std::time::Duration);

impl HumanDuration {
    /// `secs` seconds.
    pub const fn from_secs(secs: u64) -> Self {
        HumanDuration(std::time::Duration::from_secs(secs))
    }

    /// `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        HumanDuration(std::time::Duration::from_millis(ms))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        humantime::parse_duration(raw.trim())
            .map(HumanDuration)
            .map_err(|e| {
                serde::de::Error::custom(format!(
                    "invalid duration {raw:?} ({e}); write e.g. \"30s\", \"5m\", \"250ms\""
                ))
            })
    }
}

/// A size in bytes written like `"64MiB"`, `"512KB"` or a plain integer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub usize);

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

/// Parses `"64MiB"` (powers of 1024), `"1.5GB"` (powers of 1000), `"4096"`; a bare `k`, `m`
/// or `g` is refused as ambiguous.
pub fn parse_size(raw: &str) -> Result<usize, String> {
    let raw = raw.trim();
    let split = raw
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(raw.len());
    let (number, unit) = raw.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|_| format!("invalid size {raw:?}; write e.g. \"64MiB\""))?;
    let multiplier: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "gb" => 1e9,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        "gib" => 1024.0 * 1024.0 * 1024.0,
        short @ ("k" | "m" | "g") => {
            let upper = short.to_ascii_uppercase();
            return Err(format!(
                "ambiguous size unit {:?} in {raw:?}: write {number}{upper}iB (powers of 1024) \
                 or {number}{upper}B (powers of 1000)",
                unit.trim()
            ));
        }
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {raw:?}; use B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    Ok((number * multiplier) as usize)
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(
                usize::try_from(n).map_err(serde::de::Error::custom)?,
            )),
            Raw::Text(s) => parse_size(&s)
                .map(ByteSize)
                .map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_binary_and_decimal_units() {
        assert_eq!(parse_size("64MiB"), Ok(64 << 20));
        assert_eq!(parse_size("64MB"), Ok(64_000_000));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1.5 KB"), Ok(1500));
        let ambiguous = parse_size("64m").unwrap_err();
        assert!(
            ambiguous.contains("64MiB") && ambiguous.contains("64MB"),
            "{ambiguous}"
        );
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("12 parsecs").is_err());
        assert!(parse_size("lots").is_err());
    }
}
