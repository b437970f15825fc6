//! What every Prometheus client library exports about its process, read at scrape time: CPU
//! seconds, resident and virtual memory, open file descriptors and the start time; and
//! `weir_build_info`, which names the version and the plugin contract this binary runs.

use std::fmt::Write;

use crate::runtime::WORLD_VERSION;

/// The process metrics and the build info in the Prometheus text format.
pub fn render(started_at_unix: f64) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    if let Some(cpu) = cpu_seconds() {
        gauge(
            "process_cpu_seconds_total",
            "counter",
            "User and system CPU time spent, in seconds.",
            cpu,
        );
    }
    if let Some((virtual_bytes, resident_bytes)) = memory_bytes() {
        gauge(
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
            resident_bytes,
        );
        gauge(
            "process_virtual_memory_bytes",
            "gauge",
            "Virtual memory size in bytes.",
            virtual_bytes,
        );
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        gauge(
            "process_open_fds",
            "gauge",
            "Open file descriptors.",
            fds.count() as f64,
        );
    }
    gauge(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
        started_at_unix,
    );
    let _ = writeln!(
        out,
        "# HELP weir_build_info The weir version and the plugin contract it runs.\n\
         # TYPE weir_build_info gauge\n\
         weir_build_info{{version=\"{}\",contract=\"weir:transform@{WORLD_VERSION}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    out
}

/// User plus system CPU time of the whole process.
fn cpu_seconds() -> Option<f64> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
    // SAFETY: getrusage writes a full rusage into the pointer it is given.
    let usage = unsafe {
        if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
            return None;
        }
        usage.assume_init()
    };
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    Some(seconds(usage.ru_utime) + seconds(usage.ru_stime))
}

/// Virtual and resident size in bytes, from `/proc/self/statm` (in pages).
fn memory_bytes() -> Option<(f64, f64)> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let mut pages = statm.split_whitespace().map(str::parse::<f64>);
    let (size, resident) = (pages.next()?.ok()?, pages.next()?.ok()?);
    // SAFETY: sysconf only reads a configuration value.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as f64;
    Some((size * page, resident * page))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_this_process_cpu_memory_and_build() {
        let text = render(1_700_000_000.0);
        let value = |name: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{name} missing:\n{text}"))
                .parse()
                .unwrap()
        };
        assert!(value("process_cpu_seconds_total") > 0.0);
        assert!(value("process_resident_memory_bytes") > 1e6);
        assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
        assert!(value("process_open_fds") >= 3.0);
        assert_eq!(value("process_start_time_seconds"), 1_700_000_000.0);
        assert!(text.contains("# TYPE process_cpu_seconds_total counter"));
        assert!(text.contains(&format!(
            "weir_build_info{{version=\"{}\",contract=\"weir:transform@{WORLD_VERSION}\"}} 1",
            env!("CARGO_PKG_VERSION")
        )));
    }
}
