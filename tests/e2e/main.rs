//! End-to-end tests of weir.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod harness;
mod isolation;
