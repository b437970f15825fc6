//! The process's metrics recorder: Prometheus behind `/metrics` (histograms with explicit
//! buckets, so they are real Prometheus histograms, not summaries, kept up to date by a small
//! upkeep thread), the OTLP export, or both.

use std::time::Duration;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

use crate::histogram_buckets::{EVENT_LATENCY_BUCKETS, EVENT_LATENCY_HISTOGRAM, SECONDS_BUCKETS};

/// Installs the process-wide recorder: Prometheus (returning the handle that renders it)
/// when `prometheus` is set, and `otlp` when given, both at once if need be.
pub fn install_recorders(
    prometheus: bool,
    otlp: Option<crate::telemetry::OtlpRecorder>,
) -> Result<Option<PrometheusHandle>, String> {
    let prometheus = prometheus.then(prometheus_recorder).transpose()?;
    let handle = prometheus.as_ref().map(|recorder| recorder.handle());
    // One recorder is installed as it is: a fan-out costs an allocation per registration.
    let installed = match (prometheus, otlp) {
        (Some(prometheus), Some(otlp)) => metrics::set_global_recorder(
            metrics_util::layers::FanoutBuilder::default()
                .add_recorder(prometheus)
                .add_recorder(otlp)
                .build(),
        )
        .map_err(|e| e.to_string()),
        (Some(prometheus), None) => {
            metrics::set_global_recorder(prometheus).map_err(|e| e.to_string())
        }
        (None, Some(otlp)) => metrics::set_global_recorder(otlp).map_err(|e| e.to_string()),
        (None, None) => return Ok(None),
    };
    installed?;
    if let Some(handle) = &handle {
        let upkeep = handle.clone();
        std::thread::Builder::new()
            .name("weir-metrics".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(Duration::from_secs(5));
                    upkeep.run_upkeep();
                }
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(handle)
}

fn prometheus_recorder() -> Result<metrics_exporter_prometheus::PrometheusRecorder, String> {
    Ok(PrometheusBuilder::new()
        .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS)
        .map_err(|e| e.to_string())?
        // A full name is matched before a suffix.
        .set_buckets_for_metric(
            Matcher::Full(EVENT_LATENCY_HISTOGRAM.into()),
            EVENT_LATENCY_BUCKETS,
        )
        .map_err(|e| e.to_string())?
        .build_recorder())
}
