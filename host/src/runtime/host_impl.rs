//! The data each plugin `Store` holds and the host side of every import: state reads and
//! early-applied changes go to the stage's [`StageState`], logs to `tracing`, metrics to the
//! `metrics` facade, geo to the shared [`GeoDb`]. WASI is present only as an empty sandbox: no files, network, env or
//! inherited stdio.

use std::sync::Arc;

use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use weir_sdk::abi::{StateTtl, TtlRefresh};

use super::bindings::weir::transform::{geo, log, metrics, state, types};
use super::geo::GeoDb;
use super::instance::{CallFailure, InstanceSettings, StateLimits};
use super::limits::MemoryLimiter;
use crate::state::StageState;

/// Who an instance is, for logs and metric labels.
#[derive(Debug, Clone)]
pub struct InstanceLabels {
    /// Stage name from the pipeline config.
    pub stage: Arc<str>,
    /// Plugin name (file stem).
    pub plugin: Arc<str>,
    /// Short sha256 of the plugin file.
    pub version: Arc<str>,
}

/// Everything one plugin instance's `Store` owns.
pub struct StoreData {
    wasi: WasiCtx,
    table: ResourceTable,
    pub(crate) limiter: MemoryLimiter,
    /// Set when the call asked for more state or timers than the stage allows; the host
    /// refused the change and the call fails with this.
    pub(crate) refused: Option<CallFailure>,
    state_limit: usize,
    timer_limit: usize,
    /// The stage's state, swapped in for the duration of a call.
    pub(crate) state: StageState,
    geo: Option<Arc<GeoDb>>,
    labels: InstanceLabels,
    /// State lifetimes declared by `init`; `None` once `init` returned (later declarations
    /// are ignored).
    pub(crate) declared_ttls: Option<Vec<StateTtl>>,
}

impl StoreData {
    /// Fresh store data with an empty WASI sandbox.
    pub fn new(
        labels: InstanceLabels,
        settings: &InstanceSettings,
        geo: Option<Arc<GeoDb>>,
    ) -> Self {
        // The builder's defaults grant nothing: no preopened directories, no environment, no
        // arguments, stdin empty, stdout/stderr discarded, and no socket address allowed.
        let wasi = WasiCtxBuilder::new()
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        StoreData {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter::new(settings.memory_limit),
            refused: None,
            state_limit: settings.state_limit,
            timer_limit: settings.timer_limit,
            state: StageState::default(),
            geo,
            labels,
            declared_ttls: Some(Vec::new()),
        }
    }
}

impl WasiView for StoreData {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for StoreData {}

impl state::Host for StoreData {
    fn get(&mut self, key: Vec<u8>, name: String) -> Option<Vec<u8>> {
        self.state.get(&key, &name)
    }

    fn apply(&mut self, changes: Vec<u8>) -> wasmtime::Result<()> {
        let limits = StateLimits {
            state_limit: self.state_limit,
            timer_limit: self.timer_limit,
        };
        match crate::pipeline::apply_changes(&changes, &mut self.state, limits) {
            Ok(()) => Ok(()),
            // A refused change ends the call: the plugin must not carry on as if its state
            // were what it computed.
            Err(failure) => {
                let message = failure.to_string();
                self.refused = Some(failure);
                Err(wasmtime::format_err!("{message}"))
            }
        }
    }

    fn expire_after(&mut self, name: String, ttl_ms: u64, refresh: state::TtlRefresh) {
        let Some(declared) = self.declared_ttls.as_mut() else {
            return;
        };
        let refresh = match refresh {
            state::TtlRefresh::OnWrite => TtlRefresh::OnWrite,
            state::TtlRefresh::OnReadAndWrite => TtlRefresh::OnReadAndWrite,
        };
        declared.retain(|t| t.name != name);
        declared.push(StateTtl {
            name,
            ttl_ms: ttl_ms.max(1),
            refresh,
        });
    }
}

impl log::Host for StoreData {
    fn log(&mut self, level: log::Level, message: String) {
        let labels = &self.labels;
        let (stage, plugin, version) = (&*labels.stage, &*labels.plugin, &*labels.version);
        match level {
            log::Level::Trace => tracing::trace!(stage, plugin, version, "{message}"),
            log::Level::Debug => tracing::debug!(stage, plugin, version, "{message}"),
            log::Level::Info => tracing::info!(stage, plugin, version, "{message}"),
            log::Level::Warn => tracing::warn!(stage, plugin, version, "{message}"),
            log::Level::Error => tracing::error!(stage, plugin, version, "{message}"),
        }
    }
}

impl metrics::Host for StoreData {
    fn counter(&mut self, name: String, delta: u64) {
        ::metrics::counter!("weir_plugin_events_total", "stage" => self.labels.stage.to_string(), "name" => name)
            .increment(delta);
    }
    fn histogram(&mut self, name: String, value: f64) {
        ::metrics::histogram!("weir_plugin_values", "stage" => self.labels.stage.to_string(), "name" => name)
            .record(value);
    }
}

impl geo::Host for StoreData {
    fn lookup(&mut self, ips: Vec<String>) -> Vec<Result<Option<geo::Location>, String>> {
        let Some(db) = self.geo.as_ref() else {
            return ips
                .iter()
                .map(|_| Err("no geo database configured".to_string()))
                .collect();
        };
        ips.iter()
            .map(|ip| {
                Ok(db.lookup(ip)?.map(|l| geo::Location {
                    country_iso: l.country_iso,
                    country_name: l.country_name,
                    region: l.region,
                    city: l.city,
                    latitude: l.latitude,
                    longitude: l.longitude,
                }))
            })
            .collect()
    }
}
