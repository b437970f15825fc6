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
    /// Memory-maps the database at `path`.
    pub fn open(path: &Path) -> Result<Self, RuntimeError> {
        // SAFETY: the map is only read, and weir replaces databases by rename, never by writing
        // into the mapped file; a file truncated under us by someone else is outside that contract.
        let reader = unsafe { Reader::open_mmap(path) }.map_err(|e| RuntimeError::Geo {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
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
