//! The blocking store inside an async runtime: a clear error from every entry point instead
//! of the blocking client's panic ("Cannot start a runtime from within a runtime"), and
//! the same store working on the runtime's blocking threads (`spawn_blocking`).

use std::sync::Arc;

use chrono::TimeDelta;
use pin_core::attempts::{LeaseId, ReserveRequest, Settlement};
use pin_core::command::AttemptsUpdate;
use pin_core::keycheck::KeyFingerprint;
use pin_core::secret::{KeyId, Pepper};
use pin_core::store::{Store, StoreError};
use pin_postgres::{InsideAsyncRuntime, OpenError, PostgresStore};

use crate::common::{PEPPER, cluster, database, enrol_noipa, service, t0, tax};

/// The error of a store method called on an async task: not retryable, says what to do.
fn assert_refused<T: std::fmt::Debug>(what: &str, r: Result<T, StoreError>) {
    match r {
        Err(StoreError::Backend(e)) => {
            assert!(e.is::<InsideAsyncRuntime>(), "{what}: {e}");
            let text = e.to_string();
            assert!(text.contains("inside an async runtime"), "{what}: {text}");
            assert!(text.contains("spawn_blocking"), "{what}: {text}");
        }
        other => panic!("{what}: expected the async-runtime error, got {other:?}"),
    }
}

/// Every entry point, called on the runtime's thread; each must refuse and change nothing.
fn call_everything_on_the_runtime_thread(store: &PostgresStore) {
    let known = tax(0);
    let fresh = tax(1);
    // Real arguments, read on a blocking thread beforehand by the caller.
    let loaded = std::thread::scope(|s| {
        s.spawn(|| store.load(&known).unwrap().unwrap())
            .join()
            .unwrap()
    });
    let serial = loaded.subject.credential.as_ref().unwrap().serial;
    let events = std::thread::scope(|s| s.spawn(|| store.audit_log(None).unwrap()).join().unwrap());
    let event = events.last().unwrap().clone();
    let mut other = loaded.subject.clone();
    other.tax_code = fresh.clone();
    let fingerprint = KeyFingerprint::of(&Pepper::new(KeyId(7), &PEPPER).unwrap());
    let request = ReserveRequest {
        serial,
        limit: 3,
        now: t0(),
        lease: TimeDelta::seconds(30),
    };

    assert_refused("load", store.load(&known));
    assert_refused("create", store.create(&other, &[]));
    assert_refused("create_many", store.create_many(&[(other.clone(), vec![])]));
    assert_refused(
        "save",
        store.save(&loaded.subject, loaded.version, AttemptsUpdate::Keep, &[]),
    );
    assert_refused("reserve_attempt", store.reserve_attempt(&known, &request));
    assert_refused(
        "settle_attempt",
        store.settle_attempt(&known, serial, LeaseId(1), 3, Settlement::Failure, &event),
    );
    assert_refused("key_fingerprints", store.key_fingerprints());
    assert_refused(
        "record_key_fingerprint",
        store.record_key_fingerprint(KeyId(7), &fingerprint),
    );
    assert_refused("append_audit", store.append_audit(&[event]));
    assert_refused("audit_log", store.audit_log(None));
    assert_refused("awaiting_outbound", store.awaiting_outbound());
    assert_refused("verify_audit_chain", store.verify_audit_chain());

    // Nothing was done.
    std::thread::scope(|s| {
        s.spawn(|| {
            let now = store.load(&known).unwrap().unwrap();
            assert_eq!(now.version, loaded.version);
            assert_eq!(now.attempts, loaded.attempts);
            assert!(store.load(&fresh).unwrap().is_none());
            assert_eq!(store.audit_log(None).unwrap().len(), events.len());
            assert!(
                !store
                    .key_fingerprints()
                    .unwrap()
                    .iter()
                    .any(|(id, _)| *id == KeyId(7))
            );
        })
        .join()
        .unwrap();
    });
}

async fn inside_a_runtime(test: &str) {
    let Some(c) = cluster(test) else {
        return;
    };
    let c = Arc::new(c);
    let url = {
        let c = Arc::clone(&c);
        tokio::task::spawn_blocking(move || database(&c))
            .await
            .unwrap()
    };

    // Opening on the runtime's thread is refused, with what to do instead.
    let e = PostgresStore::open(&url).unwrap_err();
    assert!(matches!(e, OpenError::InsideAsyncRuntime), "{e:?}");
    assert!(!e.is_retryable());
    let text = e.to_string();
    assert!(text.contains("inside an async runtime"), "{text}");
    assert!(text.contains("spawn_blocking"), "{text}");

    // On a blocking thread of the same runtime it opens and works.
    let store = {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            let store = PostgresStore::open(&url).unwrap();
            let svc = service(&store, 11);
            let _ = enrol_noipa(&svc, &tax(0), "mario.rossi@example.it");
            drop(svc);
            store
        })
        .await
        .unwrap()
    };
    let store = Arc::new(store);

    call_everything_on_the_runtime_thread(&store);
    // Telling async code costs the task none of its cooperative budget.
    assert!(tokio::task::coop::has_budget_remaining());

    // spawn_blocking, as the error says, works.
    let loaded = {
        let store = Arc::clone(&store);
        tokio::task::spawn_blocking(move || store.load(&tax(0)))
            .await
            .unwrap()
            .unwrap()
    };
    assert!(loaded.is_some());

    // Dropping the store (closing its pooled connections) on the runtime's thread does
    // not panic either.
    drop(Arc::into_inner(store).unwrap());
    // A cluster stopped from async code is the test's business, not the store's.
    let c = Arc::into_inner(c).unwrap();
    tokio::task::spawn_blocking(move || drop(c)).await.unwrap();
}

#[tokio::test]
async fn store_on_a_current_thread_runtime_errs_instead_of_panicking() {
    inside_a_runtime("store_on_a_current_thread_runtime_errs_instead_of_panicking").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_on_a_multi_thread_runtime_errs_instead_of_panicking() {
    inside_a_runtime("store_on_a_multi_thread_runtime_errs_instead_of_panicking").await;
}

/// Inside a spawned task, not only in the test's own future.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_in_a_spawned_task_errs() {
    let e = tokio::spawn(async {
        PostgresStore::open("postgres://pin:secret@127.0.0.1:1/pins").unwrap_err()
    })
    .await
    .unwrap();
    assert!(matches!(e, OpenError::InsideAsyncRuntime), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("secret"));
}

/// Outside any runtime nothing changes: the same call reaches the network (and fails
/// there, no server on port 1).
#[test]
fn open_outside_a_runtime_is_not_refused() {
    let e = PostgresStore::open("postgres://pin:secret@127.0.0.1:1/pins").unwrap_err();
    assert!(matches!(e, OpenError::Unreachable { .. }), "{e:?}");
}
