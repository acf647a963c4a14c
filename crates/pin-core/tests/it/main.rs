//! Integration tests of pin-core: one binary, one module per area.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod harness;
mod smoke;
mod both;
mod driver;
mod inps;
mod model;
mod noipa;
