//! A bounded pool under load: a full server (`too many clients`) is `OpenError::Refused`
//! when opening and `StoreError::Unavailable` later, each with a plain message, retryable,
//! and nothing changed; a pool whose connections all stay in use is `StoreError::Busy`
//! after the pool timeout; a server that frees a slot within the timeout is waited for.

use std::time::Duration;

use pin_core::conformance::sample_subject;
use pin_core::store::{Store, StoreError};
use pin_core::subject::Role;
use pin_postgres::cluster::Cluster;
use pin_postgres::{DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT, OpenError, PostgresOptions};

use crate::common::{database, sql, tax};

/// A small server, or `None` when there are no binaries (see `common::cluster`).
fn small_cluster(test: &str, max_connections: u32) -> Option<Cluster> {
    if pin_postgres::cluster::find_binaries().is_none() {
        // Says why it skips (or fails in CI).
        return crate::common::cluster(test);
    }
    Some(Cluster::start_with_max_connections(max_connections).unwrap())
}

/// Opens raw connections until the server refuses one; returns them.
fn fill(url: &str) -> Vec<postgres::Client> {
    let mut held = Vec::new();
    while let Ok(c) = postgres::Client::connect(url, postgres::NoTls) {
        held.push(c);
        assert!(held.len() < 100, "the server never got full");
    }
    held
}

fn short(ms: u64) -> PostgresOptions {
    PostgresOptions::new().pool_timeout(Duration::from_millis(ms))
}

#[test]
fn the_documented_defaults() {
    assert_eq!(DEFAULT_POOL_SIZE, 8);
    assert_eq!(DEFAULT_POOL_TIMEOUT, Duration::from_secs(30));
    let o = PostgresOptions::new();
    assert_eq!((o.pool_size, o.pool_timeout), (8, DEFAULT_POOL_TIMEOUT));
    assert_eq!(PostgresOptions::default(), o);
    assert_eq!(PostgresOptions::new().pool_size(0).pool_size, 1);
}

#[test]
fn a_full_server_is_refused_plainly_and_retryable() {
    let Some(c) = small_cluster("a_full_server_is_refused_plainly_and_retryable", 6) else {
        return;
    };
    let url = database(&c);
    let store = short(300).pool_size(2).open(&url).unwrap();
    store
        .create(
            &sample_subject(tax(0), Role::Employee, "mario@example.it", 1),
            &[],
        )
        .unwrap();
    let mut held = fill(&url);

    // Opening: refused, after asking again for the pool timeout; a plain message.
    let e = short(300).open(&url).unwrap_err();
    assert!(matches!(e, OpenError::Refused { .. }), "{e:?}");
    assert!(e.is_retryable());
    let msg = e.to_string();
    assert!(
        msg.contains("refuses new connections") && msg.contains("too many clients"),
        "{msg}"
    );
    assert!(msg.contains("retry"), "{msg}");
    assert!(
        !msg.contains("pin-test-"),
        "the password is never shown: {msg}"
    );

    // Later: the store's connection is cut and its slot taken, so the pool must connect
    // anew: Unavailable, retryable, nothing changed.
    held[0]
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
              WHERE application_name = 'pin-postgres'",
            &[],
        )
        .unwrap();
    // The terminated backend's slot frees asynchronously: take it as soon as it is free.
    let mut more = Vec::new();
    for _ in 0..200 {
        more.extend(fill(&url));
        if !more.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(!more.is_empty(), "the freed slot was taken");
    let other = sample_subject(tax(1), Role::Citizen, "anna@example.it", 1);
    let e = store.create(&other, &[]).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(e.is_retryable());
    let msg = e.to_string();
    assert!(msg.contains("too many clients"), "{msg}");

    // Slots free again: the same store works, and the failed create had changed nothing.
    held.clear();
    more.clear();
    assert!(store.load(&tax(1)).unwrap().is_none());
    assert!(store.load(&tax(0)).unwrap().is_some());
    store.create(&other, &[]).unwrap();
}

#[test]
fn a_slot_freed_within_the_timeout_is_waited_for() {
    let Some(c) = small_cluster("a_slot_freed_within_the_timeout_is_waited_for", 6) else {
        return;
    };
    let url = database(&c);
    let mut held = fill(&url);
    let last = held.pop().unwrap();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        drop(last);
    });
    // The server is full when the open starts; it asks again until a slot frees.
    let store = PostgresOptions::new().pool_size(1).open(&url).unwrap();
    releaser.join().unwrap();
    assert!(store.load(&tax(0)).unwrap().is_none());
    drop(held);
}

#[test]
fn a_pool_in_use_past_the_timeout_is_busy() {
    let Some(c) = crate::common::cluster("a_pool_in_use_past_the_timeout_is_busy") else {
        return;
    };
    let url = database(&c);
    let store = short(200).pool_size(1).open(&url).unwrap();
    // Another session locks the subjects table: a load waits on it, holding the pool's
    // only connection.
    let mut locker = sql(&url);
    let mut tx = locker.transaction().unwrap();
    tx.batch_execute("LOCK TABLE subjects IN ACCESS EXCLUSIVE MODE")
        .unwrap();
    std::thread::scope(|s| {
        let waiting = s.spawn(|| store.load(&tax(0)));
        let mut watcher = sql(&url);
        let mut blocked = false;
        for _ in 0..500 {
            let n: i64 = watcher
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                      WHERE application_name = 'pin-postgres' AND wait_event_type = 'Lock'",
                    &[],
                )
                .unwrap()
                .get(0);
            if n > 0 {
                blocked = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(blocked, "the load never waited on the lock");
        let e = store.load(&tax(0)).unwrap_err();
        assert!(matches!(e, StoreError::Busy(_)), "{e:?}");
        assert!(e.is_retryable());
        let msg = e.to_string();
        assert!(
            msg.contains("all 1 connection(s) of the PostgreSQL pool stayed in use"),
            "{msg}"
        );
        tx.rollback().unwrap();
        assert!(waiting.join().unwrap().unwrap().is_none());
    });
    // Free again: the same call succeeds.
    assert!(store.load(&tax(0)).unwrap().is_none());
}
