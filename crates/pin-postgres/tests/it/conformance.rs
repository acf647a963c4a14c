//! pin-core's conformance suite, each check on a new database.
//! rule: NOIPA-8, INPS-12, POL-5, BOTH-1

use pin_postgres::PostgresStore;

use crate::common::{cluster, database};

#[test]
fn postgres_store_conforms() {
    let Some(c) = cluster("postgres_store_conforms") else {
        return;
    };
    pin_core::conformance::run_all(|| PostgresStore::open(&database(&c)).unwrap());
}

/// The same suite, each store with a single connection: operations take turns on it.
#[test]
fn one_connection_conforms() {
    let Some(c) = cluster("one_connection_conforms") else {
        return;
    };
    pin_core::conformance::run_all(|| {
        PostgresStore::open_with_pool_size(&database(&c), 1).unwrap()
    });
}
