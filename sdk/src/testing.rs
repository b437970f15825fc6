//! A native harness for unit-testing a [`Transform`] with plain `cargo test`: in-memory state
//! and timers, a watermark the test controls, a pluggable geo lookup, and outputs decoded as
//! JSON. Nothing here needs Wasm.

use std::collections::{BTreeSet, HashMap};

use serde::de::DeserializeOwned;

use crate::abi::{Batch, BatchResult, OutputKind};
use crate::host_api::{HostApi, Level, Location};
use crate::{Config, Transform};

type GeoFn = Box<dyn Fn(&str) -> Result<Option<Location>, String>>;

/// In-memory host capabilities, like the host's own per-partition state.
#[derive(Default)]
pub struct MemoryHost {
    state: HashMap<(Vec<u8>, String), Vec<u8>>,
    timers: BTreeSet<(i64, Vec<u8>)>,
    watermark: i64,
    /// Every log line, in order.
    pub logs: Vec<(Level, String)>,
    /// Counter totals by name.
    pub counters: HashMap<String, u64>,
    /// Histogram observations by name.
    pub histograms: HashMap<String, Vec<f64>>,
    geo: Option<GeoFn>,
}

impl std::fmt::Debug for MemoryHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryHost")
            .field("state_entries", &self.state.len())
            .field("timers", &self.timers)
            .finish()
    }
}

impl HostApi for MemoryHost {
    fn state_get(&mut self, key: &[u8], name: &str) -> Option<Vec<u8>> {
        self.state.get(&(key.to_vec(), name.to_string())).cloned()
    }
    fn state_put(&mut self, key: &[u8], name: &str, value: &[u8]) {
        self.state
            .insert((key.to_vec(), name.to_string()), value.to_vec());
    }
    fn state_delete(&mut self, key: &[u8], name: &str) {
        self.state.remove(&(key.to_vec(), name.to_string()));
    }
    fn timer_set(&mut self, key: &[u8], at: i64) {
        self.timers.insert((at, key.to_vec()));
    }
    fn timer_cancel(&mut self, key: &[u8], at: i64) {
        self.timers.remove(&(at, key.to_vec()));
    }
    fn watermark(&mut self) -> i64 {
        self.watermark
    }
    fn log(&mut self, level: Level, message: &str) {
        self.logs.push((level, message.to_string()));
    }
    fn counter(&mut self, name: &str, delta: u64) {
        *self.counters.entry(name.to_string()).or_default() += delta;
    }
    fn histogram(&mut self, name: &str, value: f64) {
        self.histograms
            .entry(name.to_string())
            .or_default()
            .push(value);
    }
    fn geo_lookup(&mut self, ip: &str) -> Result<Option<Location>, String> {
        match &self.geo {
            Some(lookup) => lookup(ip),
            None => Err("no geo database configured".to_string()),
        }
    }
}

/// One output as a test sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutput {
    /// Index of the input within its `process` call; `None` for timer outputs.
    pub input: Option<usize>,
    /// Where the output goes.
    pub kind: OutputKind,
    /// The output value, parsed.
    pub value: serde_json::Value,
}

impl TestOutput {
    /// The route name, if routed.
    pub fn route(&self) -> Option<&str> {
        match &self.kind {
            OutputKind::Route(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the output goes on to the next stage.
    pub fn is_emit(&self) -> bool {
        self.kind == OutputKind::Emit
    }

    /// The dead-letter reason, if dead-lettered.
    pub fn dead_letter_reason(&self) -> Option<&str> {
        match &self.kind {
            OutputKind::DeadLetter(r) => Some(r),
            _ => None,
        }
    }
}

/// An input record for [`TestHarness::process`].
#[derive(Debug, Clone)]
pub struct TestEvent {
    /// Record key.
    pub key: String,
    /// Event time, ms.
    pub time: i64,
    /// JSON value.
    pub value: serde_json::Value,
}

impl TestEvent {
    /// A record with `key`, event time `time` and JSON `value`.
    pub fn new(key: &str, time: i64, value: serde_json::Value) -> Self {
        TestEvent {
            key: key.to_string(),
            time,
            value,
        }
    }
}

/// Runs one transform natively against a [`MemoryHost`].
pub struct TestHarness<T: Transform> {
    transform: T,
    host: MemoryHost,
}

impl<T: Transform> TestHarness<T> {
    /// Initializes the transform with `config`, as the host would.
    pub fn new(config: &[(&str, &str)]) -> Result<Self, String> {
        let pairs = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Ok(TestHarness {
            transform: T::init(&Config::new(pairs))?,
            host: MemoryHost::default(),
        })
    }

    /// Answers geo lookups with `lookup`.
    pub fn with_geo(
        mut self,
        lookup: impl Fn(&str) -> Result<Option<Location>, String> + 'static,
    ) -> Self {
        self.host.geo = Some(Box::new(lookup));
        self
    }

    /// Runs one batch. The watermark does not move; call [`Self::advance_watermark`].
    pub fn process(&mut self, events: &[TestEvent]) -> Vec<TestOutput> {
        let mut batch = Batch::default();
        for e in events {
            let value = serde_json::to_vec(&e.value).unwrap_or_default();
            batch.push(e.key.as_bytes(), &value, e.time, &[]);
        }
        let result = crate::process_batch(&mut self.transform, &batch, &mut self.host);
        decode(&result, true)
    }

    /// Runs one batch holding a single event.
    pub fn process_one(
        &mut self,
        key: &str,
        time: i64,
        value: serde_json::Value,
    ) -> Vec<TestOutput> {
        self.process(&[TestEvent::new(key, time, value)])
    }

    /// Moves the watermark to `watermark` (never backwards) and fires every timer at or
    /// below it in `(time, key)` order, as the host does.
    pub fn advance_watermark(&mut self, watermark: i64) -> Vec<TestOutput> {
        self.host.watermark = self.host.watermark.max(watermark);
        let mut outputs = Vec::new();
        while let Some(first) = self.host.timers.first().cloned() {
            if first.0 > self.host.watermark {
                break;
            }
            self.host.timers.remove(&first);
            let result = crate::fire_timer(&mut self.transform, &first.1, first.0, &mut self.host);
            outputs.extend(decode(&result, false));
        }
        outputs
    }

    /// The decoded state value `name` of `key`.
    pub fn state<S: DeserializeOwned>(&self, key: &str, name: &str) -> Option<S> {
        let raw = self
            .host
            .state
            .get(&(key.as_bytes().to_vec(), name.to_string()))?;
        postcard::from_bytes(raw).ok()
    }

    /// Pending timers as `(at, key)`, earliest first.
    pub fn timers(&self) -> Vec<(i64, String)> {
        self.host
            .timers
            .iter()
            .map(|(at, k)| (*at, String::from_utf8_lossy(k).into_owned()))
            .collect()
    }

    /// The host, for logs and metrics.
    pub fn host(&self) -> &MemoryHost {
        &self.host
    }
}

fn decode(result: &BatchResult, from_inputs: bool) -> Vec<TestOutput> {
    result
        .iter()
        .map(|(o, value)| TestOutput {
            input: from_inputs.then_some(o.input as usize),
            kind: o.kind.clone(),
            value: serde_json::from_slice(value).unwrap_or(serde_json::Value::Null),
        })
        .collect()
}
