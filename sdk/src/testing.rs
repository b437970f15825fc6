//! A native harness for unit-testing a [`Transform`] with plain `cargo test`: in-memory state
//! and timers, a watermark the test controls, a pluggable geo lookup, and outputs decoded as
//! JSON. It builds batches the way the host does (only the declared fields, the declared
//! state prefetched) and applies results the way the host does (edits, state and timer
//! changes, state lifetimes in event time), so what passes here behaves the same in Wasm.
//! Nothing here needs Wasm.

use std::collections::{BTreeSet, HashMap};

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::abi::{
    self, Batch, BatchResult, Change, Edit, Needs, OutputKind, StateTtl, TtlRefresh, ValueKind,
};
use crate::host_api::{HostApi, Level, Location};
use crate::{Config, Transform, json};

type GeoFn = Box<dyn Fn(&str) -> Result<Option<Location>, String>>;

/// In-memory host capabilities, like the host's own per-partition state.
#[derive(Default)]
pub struct MemoryHost {
    /// Each entry's value and the event time it was last touched.
    state: HashMap<(Vec<u8>, String), (Vec<u8>, i64)>,
    /// The declared state lifetimes.
    ttls: Vec<StateTtl>,
    /// The latest time of the current call's records of each key: when it touches them.
    touch_times: HashMap<Vec<u8>, i64>,
    timers: BTreeSet<(i64, Vec<u8>)>,
    watermark: i64,
    /// Every log line, in order.
    pub logs: Vec<(Level, String)>,
    /// Counter totals by name.
    pub counters: HashMap<String, u64>,
    /// Histogram observations by name.
    pub histograms: HashMap<String, Vec<f64>>,
    /// How many geo host calls were made (each may look up many addresses).
    pub geo_calls: usize,
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
        self.read(key, name).cloned()
    }
    fn apply_changes(&mut self, changes: &[u8]) {
        self.apply(changes);
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
    fn geo_lookup(&mut self, ips: &[&str]) -> Vec<Result<Option<Location>, String>> {
        self.geo_calls += 1;
        ips.iter()
            .map(|ip| match &self.geo {
                Some(lookup) => lookup(ip),
                None => Err("no geo database configured".to_string()),
            })
            .collect()
    }
}

impl MemoryHost {
    /// The value `name` of `key`, touching it when its lifetime restarts on reads.
    fn read(&mut self, key: &[u8], name: &str) -> Option<&Vec<u8>> {
        let touch = self.touch_times.get(key).copied();
        let refresh = self.lifetime(name).map(|t| t.refresh);
        let (value, touched) = self.state.get_mut(&(key.to_vec(), name.to_string()))?;
        if let (Some(TtlRefresh::OnReadAndWrite), Some(t)) = (refresh, touch) {
            *touched = (*touched).max(t);
        }
        Some(value)
    }

    fn lifetime(&self, name: &str) -> Option<&StateTtl> {
        self.ttls.iter().find(|t| t.name == name)
    }

    /// Drops the entries whose lifetime ended by the watermark, as the host does.
    fn expire(&mut self) {
        let (ttls, watermark) = (&self.ttls, self.watermark);
        self.state.retain(|(_, name), (_, touched)| {
            let ttl = ttls.iter().find(|t| t.name == *name);
            ttl.is_none_or(|t| touched.saturating_add(t.ttl_ms as i64) > watermark)
        });
    }

    /// Notes when the batch's records touch their keys.
    fn begin_call(&mut self, batch: &Batch) {
        self.touch_times.clear();
        for i in 0..batch.len() {
            let latest = self
                .touch_times
                .entry(batch.key(i).to_vec())
                .or_insert(i64::MIN);
            *latest = (*latest).max(batch.times[i]);
        }
    }

    /// Applies a call's state and timer changes, as the host does after a call.
    #[expect(
        clippy::expect_used,
        reason = "a malformed result fails the test that produced it"
    )]
    fn apply(&mut self, changes: &[u8]) {
        for change in abi::changes(changes) {
            match change.expect("the SDK writes well-framed changes") {
                Change::Put { key, name, value } => {
                    let name = String::from_utf8_lossy(name).into_owned();
                    let touch = self.touch_times.get(key).copied().unwrap_or(self.watermark);
                    let entry = (key.to_vec(), name);
                    let touched = self.state.get(&entry).map_or(touch, |e| e.1.max(touch));
                    self.state.insert(entry, (value.to_vec(), touched));
                }
                Change::Delete { key, name } => {
                    let name = String::from_utf8_lossy(name).into_owned();
                    self.state.remove(&(key.to_vec(), name));
                }
                Change::SetTimer { key, at } => {
                    self.timers.insert((at, key.to_vec()));
                }
                Change::CancelTimer { key, at } => {
                    self.timers.remove(&(at, key.to_vec()));
                }
            }
        }
    }

    /// Fills in the batch's key ids and the declared state of each distinct key.
    fn prefetch(&mut self, batch: &mut Batch, names: &[String]) {
        self.begin_call(batch);
        let mut ids: HashMap<Vec<u8>, u32> = HashMap::new();
        let mut order: Vec<Vec<u8>> = Vec::new();
        for i in 0..batch.len() {
            let key = batch.key(i).to_vec();
            let next = ids.len() as u32;
            let id = *ids.entry(key.clone()).or_insert_with(|| {
                order.push(key);
                next
            });
            batch.key_ids.push(id);
        }
        for key in &order {
            for name in names {
                let value = self.read(key, name).cloned();
                batch.push_state(value.as_deref());
            }
        }
    }
}

/// Where a test output went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sent {
    /// On to the next stage.
    Emit,
    /// To a route.
    Route(String),
    /// To the dead-letter output, with a reason.
    DeadLetter(String),
}

/// One output as a test sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct TestOutput {
    /// Index of the input within its `process` call; `None` for timer outputs.
    pub input: Option<usize>,
    /// Where the output goes.
    pub kind: Sent,
    /// The output value with its edits applied, parsed.
    pub value: Value,
    /// Its key (the input's unless the transform gave it one).
    pub key: String,
    /// Its event time (the input's or the timer's unless the transform gave it one).
    pub time: i64,
}

impl TestOutput {
    /// The route name, if routed.
    pub fn route(&self) -> Option<&str> {
        match &self.kind {
            Sent::Route(r) => Some(r),
            _ => None,
        }
    }

    /// Whether the output goes on to the next stage.
    pub fn is_emit(&self) -> bool {
        self.kind == Sent::Emit
    }

    /// The dead-letter reason, if dead-lettered.
    pub fn dead_letter_reason(&self) -> Option<&str> {
        match &self.kind {
            Sent::DeadLetter(r) => Some(r),
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
    pub value: Value,
}

impl TestEvent {
    /// A record with `key`, event time `time` and JSON `value`.
    pub fn new(key: &str, time: i64, value: Value) -> Self {
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
    needs: Needs,
    host: MemoryHost,
}

impl<T: Transform> TestHarness<T> {
    /// Initializes the transform with `config`, as the host would.
    pub fn new(config: &[(&str, &str)]) -> Result<Self, String> {
        let pairs = config
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let transform = T::init(&Config::new(pairs))?;
        let needs = transform.needs();
        Ok(TestHarness {
            host: MemoryHost {
                ttls: needs.ttls.clone(),
                ..MemoryHost::default()
            },
            needs,
            transform,
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

    /// What the transform declared it reads.
    pub fn needs(&self) -> &Needs {
        &self.needs
    }

    /// Runs one batch. The watermark does not move; call [`Self::advance_watermark`].
    pub fn process(&mut self, events: &[TestEvent]) -> Vec<TestOutput> {
        let mut batch = Batch {
            watermark: self.host.watermark,
            ..Batch::default()
        };
        let mut inputs = Vec::with_capacity(events.len());
        for e in events {
            let value = serde_json::to_vec(&e.value).unwrap_or_default();
            batch.push_record(e.key.as_bytes(), e.time);
            for field in &self.needs.fields {
                batch.push_field(json::find_raw(&value, field).unwrap_or_default());
            }
            if self.needs.values {
                batch.push_value(&value);
            }
            if self.needs.headers {
                batch.push_headers(&[]);
            }
            inputs.push((e.value.clone(), e.key.clone(), e.time));
        }
        self.host.prefetch(&mut batch, &self.needs.state);
        let result = crate::process_batch(&mut self.transform, &self.needs, &batch, &mut self.host);
        self.host.apply(&result.changes);
        decode(&result, &inputs, true)
    }

    /// Runs one batch holding a single event.
    pub fn process_one(&mut self, key: &str, time: i64, value: Value) -> Vec<TestOutput> {
        self.process(&[TestEvent::new(key, time, value)])
    }

    /// Moves the watermark to `watermark` (never backwards), drops the state entries whose
    /// lifetime ended by it, and fires every timer at or below it, earliest first, in
    /// batches as the host does (timers a batch sets that are already due fire in the next
    /// one).
    pub fn advance_watermark(&mut self, watermark: i64) -> Vec<TestOutput> {
        self.host.watermark = self.host.watermark.max(watermark);
        self.host.expire();
        let mut outputs = Vec::new();
        loop {
            let due: Vec<(i64, Vec<u8>)> = self
                .host
                .timers
                .iter()
                .take_while(|(at, _)| *at <= self.host.watermark)
                .cloned()
                .collect();
            if due.is_empty() {
                return outputs;
            }
            let mut batch = Batch {
                watermark: self.host.watermark,
                ..Batch::default()
            };
            let mut inputs = Vec::with_capacity(due.len());
            for timer in &due {
                self.host.timers.remove(timer);
                batch.push_record(&timer.1, timer.0);
                let key = String::from_utf8_lossy(&timer.1).into_owned();
                inputs.push((Value::Object(Default::default()), key, timer.0));
            }
            self.host.prefetch(&mut batch, &self.needs.state);
            let result =
                crate::fire_timers(&mut self.transform, &self.needs, &batch, &mut self.host);
            self.host.apply(&result.changes);
            outputs.extend(decode(&result, &inputs, false));
        }
    }

    /// The decoded state value `name` of `key`.
    pub fn state<S: DeserializeOwned>(&self, key: &str, name: &str) -> Option<S> {
        postcard::from_bytes(&self.state_bytes(key, name)?).ok()
    }

    /// The raw state value `name` of `key`.
    pub fn state_bytes(&self, key: &str, name: &str) -> Option<Vec<u8>> {
        self.host
            .state
            .get(&(key.as_bytes().to_vec(), name.to_string()))
            .map(|(value, _)| value.clone())
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

/// The outputs of a call, with values as the host would make them. `inputs` are each input's
/// value, key and time.
#[expect(
    clippy::expect_used,
    reason = "a malformed result fails the test that produced it"
)]
fn decode(
    result: &BatchResult,
    inputs: &[(Value, String, i64)],
    from_inputs: bool,
) -> Vec<TestOutput> {
    (0..result.outputs.len())
        .map(|i| {
            let output = result.outputs[i];
            let parts = result.parts(i).expect("the SDK writes well-formed outputs");
            let (input, key, time) = &inputs[output.input as usize];
            let value = match output.value {
                ValueKind::Unchanged => input.clone(),
                ValueKind::Replaced => serde_json::from_slice(parts.value).unwrap_or(Value::Null),
                ValueKind::Edited => {
                    let mut value = input.clone();
                    for edit in abi::edits(parts.value) {
                        match edit.expect("the SDK writes well-framed edits") {
                            Edit::Set(name, raw) => {
                                value[name] =
                                    serde_json::from_slice(raw).expect("an edit's value is JSON");
                            }
                            Edit::Remove(name) => {
                                if let Some(object) = value.as_object_mut() {
                                    object.remove(name);
                                }
                            }
                        }
                    }
                    value
                }
            };
            TestOutput {
                input: from_inputs.then_some(output.input as usize),
                kind: match output.kind {
                    OutputKind::Emit => Sent::Emit,
                    OutputKind::Route => Sent::Route(parts.text.to_string()),
                    OutputKind::DeadLetter => Sent::DeadLetter(parts.text.to_string()),
                },
                value,
                key: parts
                    .key
                    .map_or_else(|| key.clone(), |k| String::from_utf8_lossy(k).into_owned()),
                time: output.time.unwrap_or(*time),
            }
        })
        .collect()
}
