//! A stage that runs a [`Transform`] compiled into the host, without Wasm, over the same
//! host-owned state. The benchmark uses it as the native baseline; tests use it to check
//! pipeline logic without building plugins.

use weir_sdk::abi::{Batch, BatchResult};
use weir_sdk::{HostApi, Level, Location, Transform};

use super::stage::{FiredTimer, Stage};
use crate::runtime::RuntimeError;
use crate::state::StageState;

/// A geo lookup answering like the `geo` capability.
type GeoLookup = dyn Fn(&str) -> Result<Option<Location>, String> + Send;

/// A native stage.
pub struct NativeStage<T: Transform> {
    name: String,
    transform: T,
    state: StageState,
    geo: Option<Box<GeoLookup>>,
}

impl<T: Transform + Send> NativeStage<T> {
    /// Initializes `T` with `config`.
    pub fn new(name: &str, config: Vec<(String, String)>) -> Result<Self, RuntimeError> {
        let transform =
            T::init(&weir_sdk::Config::new(config)).map_err(|reason| RuntimeError::Init {
                plugin: "native".into(),
                stage: name.into(),
                reason,
            })?;
        Ok(NativeStage {
            name: name.to_string(),
            transform,
            state: StageState::default(),
            geo: None,
        })
    }

    /// Answers geo lookups with `lookup`.
    pub fn with_geo(
        mut self,
        lookup: impl Fn(&str) -> Result<Option<Location>, String> + Send + 'static,
    ) -> Self {
        self.geo = Some(Box::new(lookup));
        self
    }
}

struct StateHost<'a> {
    state: &'a mut StageState,
    watermark: i64,
    geo: Option<&'a GeoLookup>,
}

impl HostApi for StateHost<'_> {
    fn state_get(&mut self, key: &[u8], name: &str) -> Option<Vec<u8>> {
        self.state.get(key, name)
    }
    fn state_put(&mut self, key: &[u8], name: &str, value: &[u8]) {
        self.state.put(key, name, value.to_vec());
    }
    fn state_delete(&mut self, key: &[u8], name: &str) {
        self.state.delete(key, name);
    }
    fn timer_set(&mut self, key: &[u8], at: i64) {
        self.state.set_timer(key, at);
    }
    fn timer_cancel(&mut self, key: &[u8], at: i64) {
        self.state.cancel_timer(key, at);
    }
    fn watermark(&mut self) -> i64 {
        self.watermark
    }
    fn log(&mut self, _level: Level, message: &str) {
        tracing::debug!("{message}");
    }
    fn counter(&mut self, _name: &str, _delta: u64) {}
    fn histogram(&mut self, _name: &str, _value: f64) {}
    fn geo_lookup(&mut self, ip: &str) -> Result<Option<Location>, String> {
        self.geo
            .ok_or_else(|| "no geo database configured".to_string())?(ip)
    }
}

impl<T: Transform + Send> Stage for NativeStage<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn plugin(&self) -> (&str, &str) {
        ("native", "")
    }

    fn process(&mut self, batch: &mut Batch, watermark: i64) -> Result<BatchResult, RuntimeError> {
        let mut host = StateHost {
            state: &mut self.state,
            watermark,
            geo: self.geo.as_deref(),
        };
        let result = weir_sdk::process_batch(&mut self.transform, batch, &mut host);
        self.state.commit();
        Ok(result)
    }

    fn next_timer(&self) -> Option<i64> {
        self.state.next_timer().map(|(at, _)| *at)
    }

    fn fire_due_timer(&mut self, watermark: i64) -> Result<Option<FiredTimer>, RuntimeError> {
        let Some((at, key)) = self.state.pop_due_timer(watermark) else {
            return Ok(None);
        };
        let mut host = StateHost {
            state: &mut self.state,
            watermark,
            geo: self.geo.as_deref(),
        };
        let result = weir_sdk::fire_timer(&mut self.transform, &key, at, &mut host);
        self.state.commit();
        Ok(Some(FiredTimer {
            key,
            at,
            outcome: Ok(result),
        }))
    }

    fn state(&self) -> &StageState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut StageState {
        &mut self.state
    }
}
