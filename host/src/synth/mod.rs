//! Synthetic inputs for the example, the demo and the tests: a realistic clickstream and a
//! small MaxMind database whose ranges the clickstream's IPs fall into.

pub mod clickstream;
pub mod geodb;
