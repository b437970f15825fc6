//! The capabilities a transform may use, as a trait: implemented over the WIT imports inside
//! Wasm, in memory by [`crate::testing`], and over the host's own state for native stages.
//! State writes and timers go back with a call's result, or through `apply_changes` when a
//! call's pending changes grow large.

/// What the geo database knows about an address.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Location {
    /// ISO 3166-1 alpha-2 country code.
    pub country_iso: Option<String>,
    /// Country name in English.
    pub country_name: Option<String>,
    /// First subdivision (state, region) name in English.
    pub region: Option<String>,
    /// City name in English.
    pub city: Option<String>,
    /// Latitude in degrees.
    pub latitude: Option<f64>,
    /// Longitude in degrees.
    pub longitude: Option<f64>,
}

/// Log levels, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Very detailed tracing.
    Trace,
    /// Debugging detail.
    Debug,
    /// Normal operation.
    Info,
    /// Something unexpected that the transform handled.
    Warn,
    /// Something the transform could not handle.
    Error,
}

/// Host capabilities. State is scoped by the host to the partition and the stage.
pub trait HostApi {
    /// The state value under `name` for `key`, with the changes applied so far in the call.
    fn state_get(&mut self, key: &[u8], name: &str) -> Option<Vec<u8>>;
    /// Applies state and timer changes (framed, see [`crate::abi::Change`]) now.
    fn apply_changes(&mut self, changes: &[u8]);
    /// Writes to the host log.
    fn log(&mut self, level: Level, message: &str);
    /// Adds to a counter.
    fn counter(&mut self, name: &str, delta: u64);
    /// Records a histogram value.
    fn histogram(&mut self, name: &str, value: f64);
    /// Looks IP addresses up in the geo database, answering in order. `Err` when there is no
    /// database or the text is not an address.
    fn geo_lookup(&mut self, ips: &[&str]) -> Vec<Result<Option<Location>, String>>;
}
