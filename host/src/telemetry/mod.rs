//! OpenTelemetry: spans of the work (batch, stage call, sink write, epoch commit) and, if
//! asked, the metrics, exported over OTLP/HTTP with protobuf bodies to a collector.

mod otlp_metrics;
pub mod spans;

use std::collections::{BTreeMap, HashMap};

use opentelemetry::KeyValue;
use opentelemetry::metrics::{MeterProvider, ObservableGauge};
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use serde::Deserialize;

pub use otlp_metrics::OtlpRecorder;

use crate::units::HumanDuration;

/// `[telemetry]`: where spans and metrics go over OTLP.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// The collector's OTLP/HTTP base URL, e.g. `http://127.0.0.1:4318`; spans go to
    /// `/v1/traces` under it and metrics to `/v1/metrics`. Unset: nothing is exported.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// Export spans. Default: true (when an endpoint is set).
    #[serde(default = "yes")]
    pub traces: bool,
    /// The share of batches (and epoch commits) traced, 0 to 1; a traced batch traces its
    /// stage calls and sink writes too. Default: 1.
    #[serde(default = "one")]
    pub sample_ratio: f64,
    /// Export the metrics too (the same names and labels as `/metrics`). Default: false.
    #[serde(default)]
    pub metrics: bool,
    /// How often metrics are exported. Default: 10s.
    #[serde(default = "ten_seconds")]
    pub metrics_interval: HumanDuration,
    /// `service.name` of the resource. Default: `weir`.
    #[serde(default = "default_service_name")]
    pub service_name: String,
    /// Headers sent with each export (an API key, say).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            otlp_endpoint: None,
            traces: yes(),
            sample_ratio: one(),
            metrics: false,
            metrics_interval: ten_seconds(),
            service_name: default_service_name(),
            headers: BTreeMap::new(),
        }
    }
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

fn ten_seconds() -> HumanDuration {
    HumanDuration::from_secs(10)
}

fn default_service_name() -> String {
    "weir".into()
}

impl TelemetryConfig {
    /// Checks the fields; on error, the field's name (under `telemetry.`) and why.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if let Some(endpoint) = &self.otlp_endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err((
                "otlp_endpoint",
                format!("{endpoint:?} must be an http:// or https:// URL (OTLP over HTTP)"),
            ));
        }
        if !(0.0..=1.0).contains(&self.sample_ratio) {
            return Err((
                "sample_ratio",
                format!("{} is not within 0 to 1", self.sample_ratio),
            ));
        }
        if self.metrics_interval.0.is_zero() {
            return Err(("metrics_interval", "must be more than zero".into()));
        }
        Ok(())
    }

    fn url(&self, signal: &str) -> Option<String> {
        let base = self.otlp_endpoint.as_deref()?.trim_end_matches('/');
        Some(format!("{base}/v1/{signal}"))
    }
}

/// The exporters running: they send what is left when dropped (at the end of `weir run`).
pub struct Telemetry {
    traces: Option<SdkTracerProvider>,
    metrics: Option<SdkMeterProvider>,
    _partition_gauges: Vec<ObservableGauge<f64>>,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(traces) = &self.traces
            && let Err(e) = traces.shutdown()
        {
            tracing::warn!(error = %e, "Sending the last spans over OTLP failed.");
        }
        if let Some(metrics) = &self.metrics
            && let Err(e) = metrics.shutdown()
        {
            tracing::warn!(error = %e, "Sending the last metrics over OTLP failed.");
        }
    }
}

/// Starts the OTLP exporters `config` asks for, as instance `instance`; returns them and,
/// when metrics are exported, the recorder to install.
pub fn install(
    config: &TelemetryConfig,
    instance: &str,
) -> anyhow::Result<(Telemetry, Option<OtlpRecorder>)> {
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.instance.id", instance.to_string()))
        .with_attribute(KeyValue::new(
            "service.version",
            env!("CARGO_PKG_VERSION").to_string(),
        ))
        .build();
    let headers: HashMap<String, String> = config.headers.clone().into_iter().collect();
    let mut telemetry = Telemetry {
        traces: None,
        metrics: None,
        _partition_gauges: Vec::new(),
    };
    if let Some(url) = config.url("traces").filter(|_| config.traces) {
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(&url)
            .with_headers(headers.clone())
            .build()
            .map_err(|e| anyhow::anyhow!("telemetry.otlp_endpoint: {e}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                config.sample_ratio,
            ))))
            .with_resource(resource.clone())
            .build();
        spans::set_tracer(provider.tracer("weir"));
        tracing::info!(
            url,
            sample_ratio = config.sample_ratio,
            "Exporting spans over OTLP."
        );
        telemetry.traces = Some(provider);
    }
    let mut recorder = None;
    if let Some(url) = config.url("metrics").filter(|_| config.metrics) {
        let exporter = opentelemetry_otlp::MetricExporter::builder()
            .with_http()
            .with_endpoint(&url)
            .with_headers(headers)
            .build()
            .map_err(|e| anyhow::anyhow!("telemetry.otlp_endpoint: {e}"))?;
        let reader = PeriodicReader::builder(exporter)
            .with_interval(config.metrics_interval.0)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(resource)
            .build();
        let meter = provider.meter("weir");
        telemetry._partition_gauges = otlp_metrics::partition_gauges(&meter);
        recorder = Some(OtlpRecorder::new(meter));
        tracing::info!(url, interval = ?config.metrics_interval.0, "Exporting metrics over OTLP.");
        telemetry.metrics = Some(provider);
    }
    Ok((telemetry, recorder))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> TelemetryConfig {
        toml::from_str(text).unwrap()
    }

    #[test]
    fn a_bad_field_is_refused_by_name() {
        let cases = [
            ("otlp_endpoint = \"127.0.0.1:4318\"", "otlp_endpoint"),
            ("sample_ratio = 1.5", "sample_ratio"),
            ("metrics_interval = \"0s\"", "metrics_interval"),
        ];
        for (text, field) in cases {
            assert_eq!(parse(text).validate().unwrap_err().0, field, "{text}");
        }
        assert!(
            parse("otlp_endpoint = \"https://otel.example:4318/\"")
                .validate()
                .is_ok()
        );
    }

    #[test]
    fn each_signal_has_its_path_under_the_endpoint() {
        let config = parse("otlp_endpoint = \"http://127.0.0.1:4318/\"");
        assert_eq!(
            config.url("traces").unwrap(),
            "http://127.0.0.1:4318/v1/traces"
        );
        assert_eq!(parse("").url("metrics"), None);
    }
}
