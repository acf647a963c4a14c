//! Integration tests of pin-core: one binary, one module per area.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod api;
mod both;
mod delivery;
mod driver;
mod harness;
mod inps;
mod issuance;
mod lockout_model;
mod model;
mod noipa;
mod observe;
mod population;
mod security;
mod smoke;
