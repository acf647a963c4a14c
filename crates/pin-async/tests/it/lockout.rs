//! The lockout through the async driver, on the in-memory store and on SQLite: concurrent
//! verifies, each on its own pool thread, keep both promises of the blocking driver —
//! never more than the limit of wrong comparisons, never a right PIN counted or locked.

use std::sync::atomic::{AtomicU32, Ordering};

use pin_core::VerifyOutcome;
use pin_core::conformance::lockout::Counting;
use pin_core::memory::MemoryStore;
use pin_core::store::Store;
use pin_core::subject::Level;
use pin_sqlite::SqliteStore;

use crate::common::{LIMIT, counter, enrolled, now, wrong};

/// `n` copies of the right PIN at once, on a pool of `n` threads: each is accepted or asked
/// to try later, never locked, and the credential is left with no failure.
async fn right_pins_at_once<S: Store + Send + Sync + 'static>(store: S, n: usize, i: u64) {
    let (svc, tax, pin) = enrolled(store, i, n);
    let calls: Vec<_> = (0..n)
        .map(|_| tokio::spawn(svc.verify(&tax, pin.as_str(), Level::Online, now())))
        .collect();
    let (mut accepted, mut later) = (0, 0);
    for call in calls {
        match call.await.unwrap().unwrap() {
            VerifyOutcome::Accepted { .. } => accepted += 1,
            VerifyOutcome::TryLater { .. } => later += 1,
            other => panic!("POL-8: a right PIN was answered {other:?}"),
        }
    }
    assert!(accepted >= 1, "someone got in");
    assert_eq!(accepted + later, n);
    let a = counter(&svc, &tax).await;
    assert_eq!(
        (a.failures, a.blocked),
        (0, false),
        "POL-8: {n} right PINs at once left {a:?}"
    );
    let status = svc.status(&tax, now()).await.unwrap();
    assert!(
        !status.locked && status.remaining_attempts == LIMIT,
        "{status:?}"
    );
}

/// `n` wrong PINs at once, on a pool of `n` threads: at most the limit are compared
/// (granted reservations, counted by the store wrapper), exactly the limit counted, and
/// the PIN ends locked — after which the right PIN is `Locked` too.
async fn wrong_pins_at_once<S: Store + Send + Sync + 'static>(
    store: S,
    granted: &'static AtomicU32,
    n: usize,
    i: u64,
) {
    let (svc, tax, pin) = enrolled(Counting::counting(store, granted), i, n);
    let bad = wrong(&pin);
    let calls: Vec<_> = (0..n)
        .map(|_| tokio::spawn(svc.verify(&tax, bad.as_str(), Level::Online, now())))
        .collect();
    for call in calls {
        let outcome = call.await.unwrap().unwrap();
        assert!(
            matches!(
                outcome,
                VerifyOutcome::Rejected { .. }
                    | VerifyOutcome::TryLater { .. }
                    | VerifyOutcome::Locked
            ),
            "{outcome:?}"
        );
    }
    let compares = granted.load(Ordering::SeqCst);
    assert!(
        compares <= LIMIT,
        "INPS-12: {compares} wrong PINs compared with a limit of {LIMIT}"
    );
    let a = counter(&svc, &tax).await;
    assert_eq!((a.failures, a.blocked), (LIMIT, true), "{a:?}");
    assert_eq!(
        svc.verify(&tax, pin, Level::Online, now()).await.unwrap(),
        VerifyOutcome::Locked
    );
    assert!(
        granted.load(Ordering::SeqCst) <= LIMIT,
        "a locked PIN is not compared"
    );
}

// rule: POL-8 — 11 right PINs at once: all accepted or TryLater, never Locked, never counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pol_8_right_pins_at_once_never_lock_memory() {
    right_pins_at_once(MemoryStore::new(), 11, 1).await;
    right_pins_at_once(MemoryStore::new(), 30, 2).await;
}

// rule: POL-8 — the same on SQLite (each reservation and settlement a durable transaction).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pol_8_right_pins_at_once_never_lock_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    right_pins_at_once(SqliteStore::open(dir.path().join("a.db")).unwrap(), 11, 3).await;
    right_pins_at_once(SqliteStore::open(dir.path().join("b.db")).unwrap(), 30, 4).await;
}

// rule: INPS-12 — 20 wrong PINs at once: never more than 10 compares counted; locked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inps_12_wrong_pins_at_once_compare_at_most_the_limit_memory() {
    static GRANTED: AtomicU32 = AtomicU32::new(0);
    wrong_pins_at_once(MemoryStore::new(), &GRANTED, 20, 5).await;
}

// rule: INPS-12 — the same on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inps_12_wrong_pins_at_once_compare_at_most_the_limit_sqlite() {
    static GRANTED: AtomicU32 = AtomicU32::new(0);
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("pins.db")).unwrap();
    wrong_pins_at_once(store, &GRANTED, 20, 6).await;
}

/// After `LIMIT − 1` failures, the right PIN racing two wrong ones through the driver keeps
/// a linearizable history: "accepted" is never followed by a lock the racing attempts made,
/// and once anyone was told "locked", the PIN stays locked.
async fn right_racing_wrong<S: Store + Send + Sync + 'static>(make: impl Fn() -> S, rounds: u64) {
    for round in 0..rounds {
        let (svc, tax, pin) = enrolled(make(), 50 + round, 3);
        let bad = wrong(&pin);
        for _ in 1..LIMIT {
            let outcome = svc.verify(&tax, bad.as_str(), Level::Online, now()).await;
            assert!(matches!(outcome.unwrap(), VerifyOutcome::Rejected { .. }));
        }
        let right = tokio::spawn(svc.verify(&tax, pin.as_str(), Level::Online, now()));
        let w1 = tokio::spawn(svc.verify(&tax, bad.as_str(), Level::Online, now()));
        let w2 = tokio::spawn(svc.verify(&tax, bad.as_str(), Level::Online, now()));
        let answers = [
            right.await.unwrap().unwrap(),
            w1.await.unwrap().unwrap(),
            w2.await.unwrap().unwrap(),
        ];
        let after = svc.verify(&tax, pin.as_str(), Level::Online, now()).await;
        let after = after.unwrap();
        let a = counter(&svc, &tax).await;
        if matches!(answers[0], VerifyOutcome::Accepted { .. }) {
            assert!(
                !a.blocked && matches!(after, VerifyOutcome::Accepted { .. }),
                "POL-8: accepted, then locked by the attempts that raced it: {answers:?} {a:?}"
            );
        }
        if answers.contains(&VerifyOutcome::Locked) {
            assert_eq!(after, VerifyOutcome::Locked, "{answers:?}");
        }
        if a.blocked {
            assert!(
                answers.contains(&VerifyOutcome::Locked),
                "a lock nobody was told about: {answers:?}"
            );
        }
    }
}

// rule: POL-8, POL-5 — the race on the in-memory store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pol_8_right_racing_wrong_is_linearizable_memory() {
    right_racing_wrong(MemoryStore::new, 8).await;
}

// rule: POL-8, POL-5 — the race on SQLite.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pol_8_right_racing_wrong_is_linearizable_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let n = std::sync::atomic::AtomicUsize::new(0);
    right_racing_wrong(
        || {
            let i = n.fetch_add(1, Ordering::SeqCst);
            SqliteStore::open(dir.path().join(format!("race{i}.db"))).unwrap()
        },
        8,
    )
    .await;
}
