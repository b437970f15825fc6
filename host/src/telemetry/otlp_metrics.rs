//! Metrics over OTLP: a `metrics` recorder, installed next to the Prometheus one, that keeps
//! every counter, gauge and histogram the host records in an OpenTelemetry instrument of the
//! same name and labels; and observable gauges over the per-partition gauges, so a partition
//! that leaves this instance leaves the export too.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use metrics::{Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName};
use metrics::{Metadata, Recorder, SharedString, Unit};
use opentelemetry::KeyValue;
use opentelemetry::metrics::{Meter, ObservableGauge};

use crate::partition_gauges;

/// Forwards what the host records to OpenTelemetry instruments.
pub struct OtlpRecorder {
    meter: Meter,
    counters: Mutex<HashMap<Key, Arc<CounterHandle>>>,
    gauges: Mutex<HashMap<Key, Arc<GaugeHandle>>>,
    histograms: Mutex<HashMap<Key, Arc<HistogramHandle>>>,
}

impl OtlpRecorder {
    /// A recorder whose instruments come from `meter`.
    pub fn new(meter: Meter) -> Self {
        OtlpRecorder {
            meter,
            counters: Mutex::default(),
            gauges: Mutex::default(),
            histograms: Mutex::default(),
        }
    }
}

/// The handle of `key` in `handles`, made by `make` the first time.
fn handle<T>(
    handles: &Mutex<HashMap<Key, Arc<T>>>,
    key: &Key,
    make: impl FnOnce(Vec<KeyValue>) -> T,
) -> Arc<T> {
    let mut handles = handles.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(handle) = handles.get(key) {
        return handle.clone();
    }
    let attributes = key
        .labels()
        .map(|l| KeyValue::new(l.key().to_string(), l.value().to_string()))
        .collect();
    let handle = Arc::new(make(attributes));
    handles.insert(key.clone(), handle.clone());
    handle
}

impl Recorder for OtlpRecorder {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(handle(&self.counters, key, |attributes| CounterHandle {
            counter: self.meter.u64_counter(key.name().to_string()).build(),
            attributes,
            total: AtomicU64::new(0),
        }))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(handle(&self.gauges, key, |attributes| GaugeHandle {
            gauge: self.meter.f64_gauge(key.name().to_string()).build(),
            attributes,
            value: Mutex::new(0.0),
        }))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::from_arc(handle(&self.histograms, key, |attributes| {
            let boundaries = crate::histogram_buckets::buckets_for(key.name());
            HistogramHandle {
                histogram: self
                    .meter
                    .f64_histogram(key.name().to_string())
                    .with_boundaries(boundaries.to_vec())
                    .build(),
                attributes,
            }
        }))
    }
}

struct CounterHandle {
    counter: opentelemetry::metrics::Counter<u64>,
    attributes: Vec<KeyValue>,
    /// What the counter adds up to, so an absolute value can be turned into an increment.
    total: AtomicU64,
}

impl CounterFn for CounterHandle {
    fn increment(&self, value: u64) {
        self.total.fetch_add(value, Ordering::Relaxed);
        self.counter.add(value, &self.attributes);
    }

    fn absolute(&self, value: u64) {
        let before = self.total.fetch_max(value, Ordering::Relaxed);
        if value > before {
            self.counter.add(value - before, &self.attributes);
        }
    }
}

struct GaugeHandle {
    gauge: opentelemetry::metrics::Gauge<f64>,
    attributes: Vec<KeyValue>,
    /// The current value, which increments and decrements move.
    value: Mutex<f64>,
}

impl GaugeHandle {
    fn update(&self, change: impl FnOnce(f64) -> f64) {
        let mut value = self.value.lock().unwrap_or_else(PoisonError::into_inner);
        *value = change(*value);
        self.gauge.record(*value, &self.attributes);
    }
}

impl GaugeFn for GaugeHandle {
    fn increment(&self, value: f64) {
        self.update(|v| v + value);
    }

    fn decrement(&self, value: f64) {
        self.update(|v| v - value);
    }

    fn set(&self, value: f64) {
        self.update(|_| value);
    }
}

struct HistogramHandle {
    histogram: opentelemetry::metrics::Histogram<f64>,
    attributes: Vec<KeyValue>,
}

impl HistogramFn for HistogramHandle {
    fn record(&self, value: f64) {
        self.histogram.record(value, &self.attributes);
    }
}

/// Observable gauges over the per-partition gauges: each collection reports the partitions
/// this instance owns at that moment, and nothing for those it gave up. Keep them alive as
/// long as the meter provider.
pub fn partition_gauges(meter: &Meter) -> Vec<ObservableGauge<f64>> {
    partition_gauges::NAMES
        .iter()
        .map(|&name| {
            meter
                .f64_observable_gauge(name)
                .with_callback(move |observer| {
                    partition_gauges::for_each(name, |topic, partition, label, value| {
                        let mut attributes = vec![
                            KeyValue::new("topic", topic.to_string()),
                            KeyValue::new("partition", partition.to_string()),
                        ];
                        if let Some((label, value)) = label {
                            attributes.push(KeyValue::new(label.to_string(), value.to_string()));
                        }
                        observer.observe(value, &attributes);
                    });
                })
                .build()
        })
        .collect()
}
