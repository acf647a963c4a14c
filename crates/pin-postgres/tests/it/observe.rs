//! Observability (issue #13): the adapter counts the migrations it applies, the waits for a
//! pooled connection and the busy errors it answers, through the `metrics` facade.

use std::time::Duration;

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use pin_core::store::{Store, StoreError};
use pin_core::telemetry::{STORE_BUSY_TOTAL, STORE_MIGRATIONS_TOTAL, STORE_POOL_WAIT};
use pin_postgres::PostgresOptions;

use crate::common::{database, sql, tax};

#[test]
fn migrations_pool_waits_and_busy_errors_are_counted() {
    let Some(c) = crate::common::cluster("migrations_pool_waits_and_busy_errors_are_counted")
    else {
        return;
    };
    let url = database(&c);
    let recorder = DebuggingRecorder::new();
    metrics::with_local_recorder(&recorder, || {
        let store = PostgresOptions::new()
            .pool_size(1)
            .pool_timeout(Duration::from_millis(200))
            .open(&url)
            .unwrap();
        assert!(store.load(&tax(0)).unwrap().is_none());
        // Another session locks the subjects table: a load waits on it, holding the pool's
        // only connection, and the next load finds the pool busy.
        let mut locker = sql(&url);
        let mut tx = locker.transaction().unwrap();
        tx.batch_execute("LOCK TABLE subjects IN ACCESS EXCLUSIVE MODE")
            .unwrap();
        std::thread::scope(|s| {
            let waiting = s.spawn(|| store.load(&tax(0)));
            let mut watcher = sql(&url);
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
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            let e = store.load(&tax(0)).unwrap_err();
            assert!(matches!(e, StoreError::Busy(_)), "{e:?}");
            tx.rollback().unwrap();
            assert!(waiting.join().unwrap().unwrap().is_none());
        });
    });
    // One snapshot: taking one resets the counters.
    let snap = recorder.snapshotter().snapshot().into_vec();
    let find = |name: &str| {
        snap.iter()
            .find(|(key, _, _, _)| {
                key.key().name() == name
                    && key
                        .key()
                        .labels()
                        .any(|l| l.key() == "backend" && l.value() == "postgres")
            })
            .map(|(_, _, _, v)| v)
    };
    match find(STORE_MIGRATIONS_TOTAL) {
        Some(DebugValue::Counter(n)) => {
            assert_eq!(*n, u64::try_from(pin_postgres::SCHEMA_VERSION).unwrap());
        }
        other => panic!("no migrations counted: {other:?}"),
    }
    match find(STORE_BUSY_TOTAL) {
        Some(DebugValue::Counter(n)) => assert_eq!(*n, 1),
        other => panic!("no busy error counted: {other:?}"),
    }
    match find(STORE_POOL_WAIT) {
        Some(DebugValue::Histogram(v)) => assert!(!v.is_empty()),
        other => panic!("no pool wait recorded: {other:?}"),
    }
}
