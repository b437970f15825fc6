//! The `geo` capability: one MaxMind database (GeoLite2-City or -Country format), memory-mapped
//! once per process and shared by every plugin instance.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use maxminddb::{Mmap, Reader, geoip2};
use weir_sdk::Location;

use super::RuntimeError;

/// Answers kept per address: clickstream IPs repeat (one user, many events), and a lookup
/// plus decode costs far more than a hash probe. Cleared when full, so memory stays bounded.
const CACHE_ENTRIES: usize = 65_536;

type Cache = HashMap<IpAddr, Option<Location>, foldhash::fast::RandomState>;

/// An open MaxMind database.
pub struct GeoDb {
    reader: Reader<Mmap>,
    path: PathBuf,
    cache: Mutex<Cache>,
}

impl std::fmt::Debug for GeoDb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoDb").field("path", &self.path).finish()
    }
}

impl GeoDb {
    /// Memory-maps the database at `path`, with every page read in now (`MAP_POPULATE`): a
    /// lookup in a page the process never touched would otherwise read the disk inside a
    /// plugin call and count against its time budget (a cold GeoLite2-City file made the first
    /// batch of ip-geo time out). Reading a 60 MB database costs a one-time fraction of a
    /// second at start, outside any call.
    pub fn open(path: &Path) -> Result<Self, RuntimeError> {
        let failed = |reason: String| RuntimeError::Geo {
            path: path.to_path_buf(),
            reason,
        };
        let file = std::fs::File::open(path).map_err(|e| failed(e.to_string()))?;
        // SAFETY: the map is only read, and weir replaces databases by rename, never by writing
        // into the mapped file; a file truncated under us by someone else is outside that contract.
        let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }
            .map_err(|e| failed(e.to_string()))?;
        let reader = Reader::from_source(map).map_err(|e| failed(e.to_string()))?;
        Ok(GeoDb {
            reader,
            path: path.to_path_buf(),
            cache: Mutex::new(Cache::default()),
        })
    }

    /// The database type from its metadata (e.g. `GeoLite2-City`).
    pub fn database_type(&self) -> &str {
        &self.reader.metadata().database_type
    }

    /// Looks `ip` up. `Ok(None)` when the address is not in the database.
    pub fn lookup(&self, ip: &str) -> Result<Option<Location>, String> {
        let addr: IpAddr = ip
            .trim()
            .parse()
            .map_err(|_| format!("not an IP address: {ip:?}"))?;
        if let Some(hit) = self.cache.lock().ok().and_then(|c| c.get(&addr).cloned()) {
            return Ok(hit);
        }
        let found = self.lookup_uncached(addr)?;
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_ENTRIES {
                cache.clear();
            }
            cache.insert(addr, found.clone());
        }
        Ok(found)
    }

    fn lookup_uncached(&self, addr: IpAddr) -> Result<Option<Location>, String> {
        let result = self.reader.lookup(addr).map_err(|e| e.to_string())?;
        let Some(city) = result.decode::<geoip2::City>().map_err(|e| e.to_string())? else {
            return Ok(None);
        };
        let location = Location {
            country_iso: city.country.iso_code.map(str::to_string),
            country_name: city.country.names.english.map(str::to_string),
            region: city
                .subdivisions
                .first()
                .and_then(|s| s.names.english)
                .map(str::to_string),
            city: city.city.names.english.map(str::to_string),
            latitude: city.location.latitude,
            longitude: city.location.longitude,
        };
        Ok(Some(location))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A City database of `networks` /24 blocks, each with a city of its own.
    fn large_database(path: &Path, networks: u32) {
        let mut writer = mmdb_writer::Writer::new("GeoLite2-City");
        for n in 0..networks {
            let net = format!("{}.{}.{}.0/24", 1 + n / 65_536, (n / 256) % 256, n % 256);
            let record = serde_json::json!({
                "country": { "iso_code": "GB", "names": { "en": "United Kingdom" } },
                "city": { "names": { "en": format!("City number {n}") } },
                "location": { "latitude": 51.5, "longitude": -0.1 },
            });
            let net: mmdb_writer::ipnet::IpNet = net.parse().unwrap();
            writer.insert(net, &record).unwrap();
        }
        std::fs::write(path, writer.to_bytes().unwrap()).unwrap();
    }

    /// KiB of the maps of `path` that are in this process's page tables (`Rss` in smaps).
    fn mapped_kib(path: &Path) -> u64 {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let name = path.to_str().unwrap();
        let mut total = 0;
        let mut ours = false;
        for line in smaps.lines() {
            // A map's header line starts with its address range; its fields with `Name:`.
            let first = line.split_whitespace().next().unwrap_or_default();
            if first.contains('-') && !first.ends_with(':') {
                ours = line.ends_with(name);
            } else if ours && let Some(kib) = line.strip_prefix("Rss:") {
                total += kib
                    .trim()
                    .trim_end_matches("kB")
                    .trim()
                    .parse::<u64>()
                    .unwrap();
            }
        }
        total
    }

    /// Opening the database maps every page of it in, so no lookup reads the disk or
    /// faults a page in inside a plugin call: that one-time cost is in the open.
    #[test]
    fn the_whole_database_is_mapped_in_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("geo.mmdb");
        large_database(&path, 40_000);
        let kib = std::fs::metadata(&path).unwrap().len() / 1024;
        assert!(kib > 1024, "{kib} KiB");
        let db = GeoDb::open(&path).unwrap();
        assert!(
            mapped_kib(&path) >= kib,
            "{} of {kib} KiB mapped in after the open",
            mapped_kib(&path)
        );
        assert!(db.lookup("1.0.7.9").unwrap().is_some());
    }
}
