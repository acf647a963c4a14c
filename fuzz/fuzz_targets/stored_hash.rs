#![no_main]
//! Fuzz target: see `pin_lifecycle::fuzz::stored_hash` for the invariants checked.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| pin_lifecycle::fuzz::stored_hash(data));
