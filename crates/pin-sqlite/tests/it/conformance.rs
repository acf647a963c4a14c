//! pin-core's `Store` conformance suite against file databases.

use std::sync::atomic::{AtomicUsize, Ordering};

use pin_sqlite::SqliteStore;

#[test]
fn file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let n = AtomicUsize::new(0);
    pin_core::conformance::run_all(|| {
        let i = n.fetch_add(1, Ordering::SeqCst);
        SqliteStore::open(dir.path().join(format!("conformance-{i}.db"))).unwrap()
    });
}

#[test]
fn memory_store_conforms() {
    pin_core::conformance::run_all(|| SqliteStore::open_in_memory().unwrap());
}
