//! The geo stage's configuration, parsed and checked once at init.

use weir_sdk::{Config, Location, json};

/// Every config key the stage understands.
const KEYS: &[&str] = &[
    "ip_field",
    "fields",
    "prefix",
    "truncate_ip",
    "status_field",
];

/// The location fields an event can receive, by config name.
const FIELD_NAMES: &[(&str, GeoField)] = &[
    ("country", GeoField::Country),
    ("country_name", GeoField::CountryName),
    ("region", GeoField::Region),
    ("city", GeoField::City),
    ("latitude", GeoField::Latitude),
    ("longitude", GeoField::Longitude),
];

/// One location field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GeoField {
    /// ISO 3166-1 alpha-2 country code.
    Country,
    /// Country name.
    CountryName,
    /// First subdivision name.
    Region,
    /// City name.
    City,
    /// Latitude in degrees.
    Latitude,
    /// Longitude in degrees.
    Longitude,
}

impl GeoField {
    /// This field of `location` as raw JSON, if the location has it.
    pub(crate) fn raw(self, location: &Location) -> Option<Vec<u8>> {
        let mut raw = Vec::new();
        let text = match self {
            GeoField::Country => &location.country_iso,
            GeoField::CountryName => &location.country_name,
            GeoField::Region => &location.region,
            GeoField::City => &location.city,
            GeoField::Latitude | GeoField::Longitude => {
                let number = if self == GeoField::Latitude {
                    location.latitude
                } else {
                    location.longitude
                };
                json::push_f64(&mut raw, number?);
                return Some(raw);
            }
        };
        json::push_str(&mut raw, text.as_deref()?);
        Some(raw)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) ip_field: String,
    /// Fields to add, with their output names (prefix included).
    pub(crate) outputs: Vec<(GeoField, String)>,
    pub(crate) truncate_ip: bool,
    pub(crate) status_field: String,
}

impl Settings {
    /// Parses `config`, refusing unknown keys, unknown field names and clashing names.
    pub(crate) fn from_config(config: &Config) -> Result<Self, String> {
        config.reject_unknown(KEYS)?;
        let ip_field = config.non_empty_or("ip_field", "ip")?;
        let status_field = config.non_empty_or("status_field", "geo_status")?;
        let prefix = config.get("prefix").unwrap_or("geo_").trim();
        let mut outputs: Vec<(GeoField, String)> = Vec::new();
        for name in config.list_or(
            "fields",
            &["country", "region", "city", "latitude", "longitude"],
        ) {
            let (canonical, field) = FIELD_NAMES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .copied()
                .ok_or_else(|| {
                    let known: Vec<&str> = FIELD_NAMES.iter().map(|(n, _)| *n).collect();
                    format!(
                        "config `fields`: unknown field {name:?} (known: {})",
                        known.join(", ")
                    )
                })?;
            if !outputs.iter().any(|(f, _)| *f == field) {
                outputs.push((field, format!("{prefix}{canonical}")));
            }
        }
        // Clashing names would make one output silently overwrite another, or the address.
        if outputs.iter().any(|(_, name)| *name == ip_field) {
            return Err(format!(
                "config `prefix`: output fields would overwrite the IP field `{ip_field}`"
            ));
        }
        if status_field == ip_field || outputs.iter().any(|(_, name)| *name == status_field) {
            return Err(format!(
                "config `status_field`: `{status_field}` clashes with another field"
            ));
        }
        let truncate_ip = config.bool_or("truncate_ip", false)?;
        Ok(Settings {
            ip_field,
            outputs,
            truncate_ip,
            status_field,
        })
    }
}
