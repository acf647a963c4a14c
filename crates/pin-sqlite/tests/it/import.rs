//! `Store::create_streamed` on SQLite: one transaction, fed one subject at a time.

use std::cell::Cell;

use pin_core::audit::AuditEvent;
use pin_core::conformance::sample_subject;
use pin_core::store::{Store, StoreError};
use pin_core::subject::{Role, Subject};
use pin_sqlite::SqliteStore;

use pin_core::conformance::support::synthetic_tax_code;
use pin_core::tax_code::TaxCode;

use crate::common::t0;

fn tax(i: usize) -> TaxCode {
    synthetic_tax_code(i as u64)
}

fn event(i: usize) -> AuditEvent {
    AuditEvent {
        at: t0(),
        subject: tax(i),
        actor: "system".into(),
        action: "import".into(),
        outcome: "imported".into(),
        serial: Some(1),
        channels: vec![],
        detail: String::new(),
    }
}

fn subject(i: usize) -> Subject {
    sample_subject(tax(i), Role::Employee, &format!("p{i}@example.it"), 1)
}

type Item = Result<(Subject, Vec<AuditEvent>), StoreError>;

/// Feeds `items` to `create_streamed`, counting how many the store pulled.
fn feed(store: &SqliteStore, items: Vec<Item>) -> (Result<u64, StoreError>, usize) {
    let pulled = Cell::new(0);
    let mut it = items.into_iter().inspect(|_| pulled.set(pulled.get() + 1));
    let r = store.create_streamed(&mut it);
    (r, pulled.get())
}

fn nothing_stored(store: &SqliteStore) {
    for i in 0..5 {
        assert!(store.load(&tax(i)).unwrap().is_none(), "subject {i} stored");
    }
    assert!(store.audit_log(None).unwrap().is_empty(), "audit written");
}

#[test]
fn create_streamed_stores_all_in_order_with_their_audit() {
    let store = SqliteStore::open_in_memory().unwrap();
    let items = (0..5).map(|i| Ok((subject(i), vec![event(i)]))).collect();
    let (r, pulled) = feed(&store, items);
    assert_eq!(r.unwrap(), 5);
    assert_eq!(pulled, 5);
    for i in 0..5 {
        assert_eq!(store.load(&tax(i)).unwrap().unwrap().subject, subject(i));
    }
    let log = store.audit_log(None).unwrap();
    let order: Vec<_> = log.iter().map(|e| e.subject.clone()).collect();
    assert_eq!(order, (0..5).map(tax).collect::<Vec<_>>());
    assert!(store.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn create_streamed_stops_at_an_error_of_the_source_and_writes_nothing() {
    let store = SqliteStore::open_in_memory().unwrap();
    let mut items: Vec<Item> = (0..5).map(|i| Ok((subject(i), vec![event(i)]))).collect();
    items[2] = Err(StoreError::Corrupt("line 3 is bad".into()));
    let (r, pulled) = feed(&store, items);
    assert!(
        matches!(&r, Err(StoreError::Corrupt(m)) if m == "line 3 is bad"),
        "{r:?}"
    );
    assert_eq!(pulled, 3, "nothing is pulled after the error");
    nothing_stored(&store);
}

#[test]
fn create_streamed_refuses_the_last_subject_pulled_and_writes_nothing() {
    // A duplicate inside the stream: the store pulls one subject at a time, so the one it
    // refuses is the last one pulled (the fourth), and the first three are rolled back.
    let store = SqliteStore::open_in_memory().unwrap();
    let mut items: Vec<Item> = (0..5).map(|i| Ok((subject(i), vec![event(i)]))).collect();
    items[3] = Ok((subject(1), vec![event(1)]));
    let (r, pulled) = feed(&store, items);
    assert!(matches!(r, Err(StoreError::Exists)), "{r:?}");
    assert_eq!(pulled, 4);
    nothing_stored(&store);
    // Already on record: refused too, the record unchanged.
    store.create(&subject(0), &[event(0)]).unwrap();
    let items = vec![Ok((subject(1), vec![event(1)])), Ok((subject(0), vec![]))];
    let (r, pulled) = feed(&store, items);
    assert!(matches!(r, Err(StoreError::Exists)), "{r:?}");
    assert_eq!(pulled, 2);
    assert!(store.load(&tax(1)).unwrap().is_none());
    assert_eq!(store.audit_log(None).unwrap().len(), 1);
}
