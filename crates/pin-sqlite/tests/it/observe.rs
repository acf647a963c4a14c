//! Observability (issue #13): the adapter counts the migrations it applies and the busy
//! errors it answers, through the `metrics` facade.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use pin_core::conformance::sample_subject;
use pin_core::store::{Store, StoreError};
use pin_core::subject::Role;
use pin_core::telemetry::{STORE_BUSY_TOTAL, STORE_MIGRATIONS_TOTAL};
use pin_sqlite::{SqliteOptions, SqliteStore};

use crate::common::tax;

/// The counter `name` with `backend="sqlite"` in what `recorder` holds.
fn sqlite_counter(recorder: &DebuggingRecorder, name: &str) -> u64 {
    recorder
        .snapshotter()
        .snapshot()
        .into_vec()
        .into_iter()
        .find_map(|(key, _, _, value)| {
            let k = key.key();
            let sqlite = k
                .labels()
                .any(|l| l.key() == "backend" && l.value() == "sqlite");
            match value {
                DebugValue::Counter(n) if k.name() == name && sqlite => Some(n),
                _ => None,
            }
        })
        .unwrap_or(0)
}

#[test]
fn migrations_and_busy_errors_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pins.db");
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let store = SqliteStore::open(&path).unwrap();
        drop(store);
    });
    let applied = sqlite_counter(&recorder, STORE_MIGRATIONS_TOTAL);
    assert!(applied >= 1, "a fresh database is migrated");

    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        // An up-to-date database: no migration.
        let store = SqliteOptions::new()
            .busy_timeout(Duration::from_millis(50))
            .open(&path)
            .unwrap();
        let writer = rusqlite::Connection::open(&path).unwrap();
        writer.execute_batch("BEGIN IMMEDIATE").unwrap();
        let s = sample_subject(tax(1), Role::Citizen, "anna@example.it", 1);
        let err = store.create(&s, &[]).unwrap_err();
        assert!(matches!(err, StoreError::Busy(_)), "{err:?}");
    });
    // One snapshot: taking one resets the counters.
    let snap = recorder.snapshotter().snapshot().into_vec();
    let get = |name: &str| {
        snap.iter()
            .find_map(|(key, _, _, value)| match value {
                DebugValue::Counter(n) if key.key().name() == name => Some(*n),
                _ => None,
            })
            .unwrap_or(0)
    };
    assert_eq!(get(STORE_MIGRATIONS_TOTAL), 0);
    assert_eq!(get(STORE_BUSY_TOTAL), 1);
}
