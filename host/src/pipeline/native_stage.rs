//! A stage that runs a [`Transform`] compiled into the host, without Wasm, over the same
//! host-owned state and the same batches, results and checks as a Wasm stage. The benchmark
//! uses it as the native baseline; tests use it to check pipeline logic without building
//! plugins.

use std::sync::Arc;

use weir_sdk::abi::{Batch, BatchResult, Needs};
use weir_sdk::{HostApi, Level, Location, Transform};

use super::stage::{FiredTimers, Stage};
use super::stage_call::{apply_changes, check, due_timers, prefetch};
use crate::runtime::{InstanceSettings, RuntimeError};
use crate::state::{StageState, TtlPolicy};

/// A geo lookup answering like the `geo` capability.
type GeoLookup = dyn Fn(&str) -> Result<Option<Location>, String> + Send;

/// A native stage.
pub struct NativeStage<T: Transform> {
    name: String,
    transform: T,
    needs: Needs,
    settings: InstanceSettings,
    ttl: Arc<TtlPolicy>,
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
        let needs = transform.needs();
        Ok(NativeStage {
            name: name.to_string(),
            ttl: Arc::new(TtlPolicy::new(&needs.ttls, None)),
            needs,
            transform,
            settings: InstanceSettings::default(),
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

    /// Runs `call` over `batch` with the stage's state as a Wasm stage would: prefetch,
    /// check, apply the changes and commit. A native transform cannot be isolated, so a
    /// refused result is an error here.
    fn call(
        &mut self,
        batch: &mut Batch,
        watermark: i64,
        call: impl FnOnce(&mut T, &Needs, &Batch, &mut dyn HostApi) -> BatchResult,
    ) -> Result<BatchResult, RuntimeError> {
        prefetch(
            batch,
            &mut self.state,
            &self.needs,
            &self.ttl,
            watermark,
            &self.name,
        );
        let limits = self.settings.state_limits();
        let mut host = StateHost {
            state: &mut self.state,
            limits,
            geo: self.geo.as_deref(),
        };
        let result = call(&mut self.transform, &self.needs, batch, &mut host);
        let refused = |e: crate::runtime::CallFailure| RuntimeError::Init {
            plugin: "native".into(),
            stage: self.name.clone(),
            reason: e.to_string(),
        };
        check(&result, batch.len(), self.settings.output_limit).map_err(refused)?;
        apply_changes(&result.changes, &mut self.state, limits).map_err(refused)?;
        self.state.commit();
        Ok(result)
    }
}

struct StateHost<'a> {
    state: &'a mut StageState,
    limits: crate::runtime::StateLimits,
    geo: Option<&'a GeoLookup>,
}

impl HostApi for StateHost<'_> {
    fn state_get(&mut self, key: &[u8], name: &str) -> Option<Vec<u8>> {
        self.state.get(key, name)
    }
    fn apply_changes(&mut self, changes: &[u8]) {
        if let Err(e) = apply_changes(changes, self.state, self.limits) {
            tracing::warn!(error = %e, "A native stage's early changes were refused.");
        }
    }
    fn log(&mut self, _level: Level, message: &str) {
        tracing::debug!("{message}");
    }
    fn counter(&mut self, _name: &str, _delta: u64) {}
    fn histogram(&mut self, _name: &str, _value: f64) {}
    fn geo_lookup(&mut self, ips: &[&str]) -> Vec<Result<Option<Location>, String>> {
        ips.iter()
            .map(|ip| match self.geo {
                Some(lookup) => lookup(ip),
                None => Err("no geo database configured".to_string()),
            })
            .collect()
    }
}

impl<T: Transform + Send> Stage for NativeStage<T> {
    fn name(&self) -> &str {
        &self.name
    }

    fn plugin(&self) -> (&str, &str) {
        ("native", "")
    }

    fn begin(&mut self) -> &Needs {
        &self.needs
    }

    fn process(&mut self, batch: &mut Batch, watermark: i64) -> Result<BatchResult, RuntimeError> {
        self.call(batch, watermark, |t, needs, batch, host| {
            weir_sdk::process_batch(t, needs, batch, host)
        })
    }

    fn next_timer(&self) -> Option<i64> {
        self.state.next_timer().map(|(at, _)| *at)
    }

    fn fire_due_timers(
        &mut self,
        watermark: i64,
        max: usize,
    ) -> Result<Option<FiredTimers>, RuntimeError> {
        let Some(mut batch) = due_timers(&mut self.state, watermark, max) else {
            return Ok(None);
        };
        let result = self.call(&mut batch, watermark, |t, needs, timers, host| {
            weir_sdk::fire_timers(t, needs, timers, host)
        })?;
        Ok(Some(FiredTimers { batch, result }))
    }

    fn state(&self) -> &StageState {
        &self.state
    }

    fn state_mut(&mut self) -> &mut StageState {
        &mut self.state
    }
}
