//! Per-instance memory limit that remembers whether the plugin hit it, so a failed call can be
//! reported as `memory limit` rather than as the trap the guest's allocator turns it into.

use wasmtime::ResourceLimiter;

/// Caps linear memory and table growth for one plugin instance.
#[derive(Debug)]
pub struct MemoryLimiter {
    max_memory_bytes: usize,
    exceeded: bool,
}

impl MemoryLimiter {
    /// A limiter allowing `max_memory_bytes` of linear memory.
    pub fn new(max_memory_bytes: usize) -> Self {
        MemoryLimiter {
            max_memory_bytes,
            exceeded: false,
        }
    }

    /// Whether a growth was refused since the last [`Self::reset`].
    pub fn exceeded(&self) -> bool {
        self.exceeded
    }

    /// Forgets refused growths (before each call).
    pub fn reset(&mut self) {
        self.exceeded = false;
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_memory_bytes {
            self.exceeded = true;
            // Trap instead of returning -1 from memory.grow: a Rust guest aborts anyway, and a
            // trap stops a guest that would keep going with a failed allocation.
            wasmtime::bail!("memory limit of {} bytes exceeded", self.max_memory_bytes);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}
