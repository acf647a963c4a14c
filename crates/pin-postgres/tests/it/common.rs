//! Helpers shared by the tests: a cluster per test, a fast policy, a service over a store.

use std::sync::atomic::{AtomicUsize, Ordering};

use pin_core::tax_code::TaxCode;
use pin_postgres::cluster::{self, Cluster};

pub(crate) use pin_core::conformance::TAX_CODES;
pub(crate) use pin_core::conformance::support::{
    TestService as Service, email, enrol_noipa, synthetic_tax_code, t0, take_pin, wrong,
};

/// The pepper of every test service; the secrets test looks for these bytes in the tables.
pub(crate) const PEPPER: [u8; 32] = *b"pin-pgsql test pepper: 32 bytes!";

/// A fresh cluster, or `None` (after a loud message) when the server binaries are absent.
/// In CI (`CI` set) their absence is a failure: `.ci/run` installs them.
pub(crate) fn cluster(test: &str) -> Option<Cluster> {
    if cluster::find_binaries().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: no PostgreSQL server binaries in CI; .ci/run should have installed them"
        );
        eprintln!(
            "\n*** SKIPPED {test}: no PostgreSQL server binaries found (apt-get install postgresql, \
             or set PIN_POSTGRES_BIN) ***\n"
        );
        return None;
    }
    Some(Cluster::start().unwrap())
}

/// A new empty database on `c`; its URL.
pub(crate) fn database(c: &Cluster) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    c.create_database(&format!("t{}_{n}", std::process::id()))
        .unwrap()
}

pub(crate) fn tax(i: usize) -> TaxCode {
    TaxCode::parse(TAX_CODES[i]).unwrap()
}

/// A direct connection for tests that look at (or damage) the tables themselves.
pub(crate) fn sql(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

/// A service over `store` with the test policy and this crate's test pepper.
pub(crate) fn service<S: pin_core::store::Store>(store: S, seed: u64) -> Service<S> {
    pin_core::conformance::support::service(store, seed, &PEPPER)
}
