//! Writes a small GeoLite2-City-format MaxMind database covering the cities the synthetic
//! clickstream uses, with the `mmdb-writer` crate, so geo enrichment runs without downloads.

use std::path::Path;

use serde_json::json;

/// One city block: network, ISO code, country, region, city, latitude, longitude.
pub struct GeoBlock {
    /// Network in CIDR notation.
    pub network: &'static str,
    /// ISO country code.
    pub country_iso: &'static str,
    /// Country name.
    pub country: &'static str,
    /// First subdivision; empty for a country-only block.
    pub region: &'static str,
    /// City; empty for a country-only block.
    pub city: &'static str,
    /// Latitude.
    pub latitude: f64,
    /// Longitude.
    pub longitude: f64,
}

const fn block(
    network: &'static str,
    country_iso: &'static str,
    country: &'static str,
    region: &'static str,
    city: &'static str,
    latitude: f64,
    longitude: f64,
) -> GeoBlock {
    GeoBlock {
        network,
        country_iso,
        country,
        region,
        city,
        latitude,
        longitude,
    }
}

/// The blocks in the generated database.
pub const BLOCKS: &[GeoBlock] = &[
    block(
        "81.2.69.0/24",
        "GB",
        "United Kingdom",
        "England",
        "London",
        51.5142,
        -0.0931,
    ),
    block(
        "89.160.20.0/24",
        "SE",
        "Sweden",
        "Östergötland County",
        "Linköping",
        58.4167,
        15.6167,
    ),
    block(
        "216.160.83.0/24",
        "US",
        "United States",
        "Washington",
        "Milton",
        47.2513,
        -122.3149,
    ),
    block(
        "149.101.100.0/24",
        "US",
        "United States",
        "California",
        "San Francisco",
        37.7749,
        -122.4194,
    ),
    block(
        "175.16.199.0/24",
        "CN",
        "China",
        "Jilin",
        "Changchun",
        43.88,
        125.3228,
    ),
    block(
        "202.196.224.0/24",
        "PH",
        "Philippines",
        "Metro Manila",
        "Manila",
        14.5995,
        120.9842,
    ),
    block(
        "5.145.96.0/24",
        "ES",
        "Spain",
        "Madrid",
        "Madrid",
        40.4168,
        -3.7038,
    ),
    block(
        "93.184.216.0/24",
        "DE",
        "Germany",
        "Berlin",
        "Berlin",
        52.52,
        13.405,
    ),
    block(
        "185.52.1.0/24",
        "FR",
        "France",
        "Île-de-France",
        "Paris",
        48.8566,
        2.3522,
    ),
    block(
        "103.5.140.0/24",
        "JP",
        "Japan",
        "Tokyo",
        "Tokyo",
        35.6762,
        139.6503,
    ),
    block(
        "177.67.80.0/24",
        "BR",
        "Brazil",
        "São Paulo",
        "São Paulo",
        -23.5505,
        -46.6333,
    ),
    block(
        "2a02:cf40:1::/48",
        "NL",
        "Netherlands",
        "North Holland",
        "Amsterdam",
        52.3676,
        4.9041,
    ),
    block("41.76.8.0/24", "ZA", "South Africa", "", "", -29.0, 24.0),
];

/// Errors writing the database.
#[derive(Debug, thiserror::Error)]
pub enum GeoDbWriteError {
    /// The writer refused a block.
    #[error("cannot add {network}: {reason}")]
    Insert {
        /// The block's network.
        network: String,
        /// Why.
        reason: String,
    },
    /// Writing the file failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The output file.
        path: String,
        /// Why.
        reason: String,
    },
}

/// The database as bytes.
pub fn database_bytes() -> Result<Vec<u8>, GeoDbWriteError> {
    let mut writer = mmdb_writer::Writer::new("GeoLite2-City");
    for b in BLOCKS {
        let insert_error = |reason: String| GeoDbWriteError::Insert {
            network: b.network.to_string(),
            reason,
        };
        let net: mmdb_writer::ipnet::IpNet = b
            .network
            .parse()
            .map_err(|e: mmdb_writer::ipnet::AddrParseError| insert_error(e.to_string()))?;
        let mut record = json!({
            "country": { "iso_code": b.country_iso, "names": { "en": b.country } },
            "location": { "latitude": b.latitude, "longitude": b.longitude },
        });
        if !b.city.is_empty() {
            record["city"] = json!({ "names": { "en": b.city } });
            record["subdivisions"] = json!([{ "names": { "en": b.region } }]);
        }
        writer
            .insert(net, &record)
            .map_err(|e| insert_error(e.to_string()))?;
    }
    writer.to_bytes().map_err(|e| GeoDbWriteError::Write {
        path: "<memory>".into(),
        reason: e.to_string(),
    })
}

/// Writes the database to `path` (via a temporary file and a rename).
pub fn write(path: &Path) -> Result<(), GeoDbWriteError> {
    let write_error = |e: std::io::Error| GeoDbWriteError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let bytes = database_bytes()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(write_error)?;
    }
    let tmp = path.with_extension("mmdb.tmp");
    std::fs::write(&tmp, bytes).map_err(write_error)?;
    std::fs::rename(&tmp, path).map_err(write_error)
}
