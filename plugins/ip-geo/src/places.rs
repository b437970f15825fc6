//! What each address looked up gave, remembered: the raw values of the configured output
//! fields, or why there are none. Bounded: when full it starts over, so a flood of distinct
//! addresses costs memory once.

use std::collections::HashMap;
use std::net::IpAddr;

use foldhash::fast::RandomState;
use weir_sdk::Location;

use crate::config::GeoField;

/// Most addresses remembered at once.
const CAPACITY: usize = 16_384;

/// The outcome of one address's lookup.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Place {
    /// Found: each configured output field's raw JSON value, if the location has it.
    Located(Vec<Option<Vec<u8>>>),
    /// Found, but the record holds no location (only the registered country, say).
    NoLocation,
    /// Not in the database.
    NotFound,
    /// The lookup failed, with the host's reason.
    Failed(String),
}

impl Place {
    /// The place a host answer gives, for the configured `outputs`.
    pub(crate) fn of(
        answer: Result<Option<Location>, String>,
        outputs: &[(GeoField, String)],
    ) -> Self {
        match answer {
            Ok(Some(location)) => {
                let located = location.country_iso.is_some()
                    || location.city.is_some()
                    || location.region.is_some()
                    || (location.latitude.is_some() && location.longitude.is_some());
                if !located {
                    return Place::NoLocation;
                }
                Place::Located(
                    outputs
                        .iter()
                        .map(|(field, _)| field.raw(&location))
                        .collect(),
                )
            }
            Ok(None) => Place::NotFound,
            Err(e) => Place::Failed(e),
        }
    }
}

/// Addresses already looked up.
#[derive(Debug, Default)]
pub(crate) struct Places {
    known: HashMap<IpAddr, Place, RandomState>,
}

impl Places {
    pub(crate) fn get(&self, ip: &IpAddr) -> Option<&Place> {
        self.known.get(ip)
    }

    pub(crate) fn contains(&self, ip: &IpAddr) -> bool {
        self.known.contains_key(ip)
    }

    /// Makes room for `n` more addresses (starting over when they would not fit), so that
    /// what a batch looks up stays known while the batch is processed.
    pub(crate) fn make_room(&mut self, n: usize) {
        if self.known.len() + n > CAPACITY {
            self.known.clear();
        }
    }

    /// Remembers `place` for `ip`.
    pub(crate) fn insert(&mut self, ip: IpAddr, place: Place) {
        self.known.insert(ip, place);
    }
}
