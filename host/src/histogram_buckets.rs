//! The bucket bounds of weir's histograms, the same in Prometheus and over OTLP.

/// Buckets of every `*_seconds` histogram: 100 µs to 60 s.
pub const SECONDS_BUCKETS: &[f64] = &[
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Buckets of the event-time latency at the sinks: 1 ms to an hour (late and replayed events
/// are minutes or hours behind).
pub const EVENT_LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];

/// The histogram that takes [`EVENT_LATENCY_BUCKETS`]; every other takes [`SECONDS_BUCKETS`].
pub const EVENT_LATENCY_HISTOGRAM: &str = "weir_sink_event_latency_seconds";

/// The buckets of histogram `name` (the same in Prometheus and over OTLP).
pub fn buckets_for(name: &str) -> &'static [f64] {
    if name == EVENT_LATENCY_HISTOGRAM {
        EVENT_LATENCY_BUCKETS
    } else {
        SECONDS_BUCKETS
    }
}
