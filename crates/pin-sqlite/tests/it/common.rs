//! Helpers shared by the tests: a fast policy, a service over a store, valid tax codes.

use pin_core::tax_code::TaxCode;

pub(crate) use pin_core::conformance::TAX_CODES;
pub(crate) use pin_core::conformance::support::{
    TestService as Service, email, enrol_noipa, t0, take_pin, wrong,
};

/// The pepper of every test service; the secrets test looks for these bytes in the files.
pub(crate) const PEPPER: [u8; 32] = *b"pin-sqlite test pepper: 32 bytes";

pub(crate) fn tax(i: usize) -> TaxCode {
    TaxCode::parse(TAX_CODES[i]).unwrap()
}

/// A service over `store` with the test policy and this crate's test pepper.
pub(crate) fn service<S: pin_core::store::Store>(store: S, seed: u64) -> Service<S> {
    pin_core::conformance::support::service(store, seed, &PEPPER)
}
