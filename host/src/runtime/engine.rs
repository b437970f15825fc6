//! The process-wide wasmtime engine, its linker with every host import, and the epoch ticker
//! that enforces per-call deadlines.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use wasmtime::component::{Component, HasSelf, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::bindings::{Transform, TransformPre, WORLD_VERSION};
use super::compile_cache::CompileCache;
use super::host_impl::StoreData;
use super::plugin::Plugin;
use super::{Result, RuntimeError};

/// Engine-wide limits, taken from the pipeline config.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// The largest memory limit of any stage; pooled memory slots are this big.
    pub max_memory_bytes: usize,
    /// How many plugin instances may exist at once.
    pub max_instances: u32,
    /// Epoch tick: the granularity of per-call deadlines.
    pub tick: Duration,
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_memory_bytes: 256 << 20,
            max_instances: 128,
            tick: Duration::from_millis(5),
        }
    }
}

/// The engine, linker and epoch ticker shared by every plugin.
pub struct PluginEngine {
    engine: Engine,
    linker: Linker<StoreData>,
    tick: Duration,
    stop: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("tick", &self.tick)
            .finish()
    }
}

fn engine_config(settings: &EngineSettings, pooling: bool) -> Result<Config> {
    let mut config = Config::new();
    config.wasm_component_model(true).epoch_interruption(true);
    // One cache per engine: a new version compiles only the functions that changed.
    config
        .enable_incremental_compilation(Arc::new(CompileCache::default()))
        .map_err(|e| RuntimeError::Engine(e.to_string()))?;
    // `WEIR_WASM_PROFILER=perfmap` names JIT-compiled plugin functions for `perf`.
    if std::env::var("WEIR_WASM_PROFILER").is_ok_and(|v| v == "perfmap") {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        let instances = settings.max_instances;
        // A Rust wasip2 component holds a few core instances (the module plus the WASI adapter
        // shims); size the pool for that.
        pool.total_component_instances(instances)
            .total_core_instances(instances * 8)
            .total_memories(instances * 2)
            .total_tables(instances * 4)
            .max_memory_size(settings.max_memory_bytes.max(1 << 20));
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    Ok(config)
}

/// Lowers the scheduling priority of the calling thread (nice 10), so work on it yields to the
/// data path when the cores are busy. Linux applies it to this thread only.
pub fn lower_thread_priority() {
    // SAFETY: gettid and setpriority only read their integer arguments.
    let result = unsafe {
        let tid = libc::gettid();
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, 10)
    };
    if result != 0 {
        tracing::debug!(error = %std::io::Error::last_os_error(), "Could not lower a thread's priority.");
    }
}

/// Wasmtime compiles on rayon's global pool. Its threads run at a lower priority, so compiling
/// a new plugin version while the pipeline runs takes the cores the data path leaves idle.
fn lower_compile_priority() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let built = rayon::ThreadPoolBuilder::new()
            .thread_name(|i| format!("weir-compile-{i}"))
            .start_handler(|_| lower_thread_priority())
            .build_global();
        if let Err(e) = built {
            tracing::debug!(error = %e, "The compile pool was already set up.");
        }
    });
}

impl PluginEngine {
    /// Creates the engine with the pooling allocator (falling back to on-demand allocation
    /// when the machine cannot reserve the pool) and starts the epoch ticker.
    pub fn new(settings: &EngineSettings) -> Result<Self> {
        lower_compile_priority();
        let engine = match Engine::new(&engine_config(settings, true)?) {
            Ok(engine) => engine,
            Err(e) => {
                tracing::warn!(error = %e, "Pooling allocator unavailable, using on-demand allocation.");
                Engine::new(&engine_config(settings, false)?)
                    .map_err(|e| RuntimeError::Engine(e.to_string()))?
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;
        Transform::add_to_linker::<_, HasSelf<StoreData>>(&mut linker, |data| data)
            .map_err(|e| RuntimeError::Engine(e.to_string()))?;

        let stop = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, stop, tick) = (engine.clone(), stop.clone(), settings.tick);
            std::thread::Builder::new()
                .name("weir-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(tick);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| RuntimeError::Engine(format!("cannot start the epoch ticker: {e}")))?
        };
        Ok(PluginEngine {
            engine,
            linker,
            tick: settings.tick,
            stop,
            ticker: Some(ticker),
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The epoch tick.
    pub fn tick(&self) -> Duration {
        self.tick
    }

    /// Reads, compiles and type-checks the plugin at `path`; its name is the file stem.
    pub fn load_file(&self, path: &Path) -> Result<Plugin> {
        let bytes = std::fs::read(path).map_err(|source| RuntimeError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let name = path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.load_bytes(&name, &bytes)
    }

    /// Compiles and type-checks a plugin from bytes. Compilation happens here, not on the hot
    /// path; instantiation afterwards is cheap.
    pub fn load_bytes(&self, name: &str, bytes: &[u8]) -> Result<Plugin> {
        let rejected = |reason: String| RuntimeError::Rejected {
            plugin: name.to_string(),
            reason: crate::error::one_line(&reason),
        };
        let component = Component::from_binary(&self.engine, bytes)
            .map_err(|e| rejected(format!("not a valid component: {e:#}")))?;
        if let Some(version) = other_world_version(&self.engine, &component) {
            return Err(rejected(format!(
                "built against weir:transform@{version}, but this host runs \
                 weir:transform@{WORLD_VERSION}: rebuild it with the weir-sdk of this release"
            )));
        }
        let pre = self.linker.instantiate_pre(&component).map_err(|e| {
            rejected(format!(
                "does not match world weir:transform/transform@{WORLD_VERSION}: {e:#}"
            ))
        })?;
        let pre = TransformPre::new(pre).map_err(|e| {
            rejected(format!(
                "does not export the weir:transform@{WORLD_VERSION} functions: {e:#}"
            ))
        })?;
        Ok(Plugin::new(name, bytes, component, pre))
    }
}

/// The version of the `weir:transform` package a component imports, when it is not the one
/// this host runs.
fn other_world_version(engine: &Engine, component: &Component) -> Option<String> {
    component
        .component_type()
        .imports(engine)
        .filter_map(|(name, _)| name.strip_prefix("weir:transform/"))
        .filter_map(|rest| rest.split_once('@').map(|(_, version)| version.to_string()))
        .find(|version| version != WORLD_VERSION)
}

impl Drop for PluginEngine {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}
