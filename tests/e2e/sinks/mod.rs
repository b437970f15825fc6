//! Sinks against their real servers: one conformance suite run against every sink (Kafka on
//! Tansu, Parquet on a local folder and on s3s-fs, Redis, NDJSON), each through the same
//! epochs, crashes and recoveries, checking what a reader sees after each step.

mod conformance;
