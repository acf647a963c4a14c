//! Guessing races: ≥ 8 threads, each with its own `SqliteStore` (its own connections) on the
//! same file, fire 1,000 guesses at one subject through `PinService::verify`.
//! rule: INPS-12, POL-1 (blocked after 10 wrong attempts), POL-5 (a lock never re-opens).

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

use pin_core::VerifyOutcome;
use pin_core::conformance::lockout::Counting;
use pin_core::store::Store;
use pin_core::subject::Level;
use pin_sqlite::SqliteStore;

use crate::common::{enrol_noipa, service, t0, tax, wrong};

const THREADS: usize = 8;
const GUESSES: usize = 1_000;
const LIMIT: u32 = 10;

fn runs() -> u64 {
    if std::env::var_os("PIN_SQLITE_STRESS").is_some() {
        100
    } else {
        10
    }
}

/// What one run saw.
#[derive(Default)]
struct Tally {
    rejected: AtomicU32,
    locked: AtomicU32,
    accepted: AtomicU32,
    accepted_after_block_seen: AtomicU32,
    later: AtomicU32,
}

/// What a run leaves: compares made, outcomes, the store, the right PIN.
struct Race {
    granted: u32,
    tally: Tally,
    store: SqliteStore,
    pin: String,
    _dir: tempfile::TempDir,
}

/// One run: enrol, then `THREADS` threads share `GUESSES` guesses; thread 0 types the right
/// PIN every `right_every`-th guess (never when `None`).
fn race(run: u64, right_every: Option<usize>) -> Race {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.db");
    let t = tax(0);
    let pin = {
        let svc = service(SqliteStore::open(&path).unwrap(), run);
        enrol_noipa(&svc, &t, "mario.rossi@example.it")
    };
    let bad = wrong(&pin);
    let granted = AtomicU32::new(0);
    let tally = Tally::default();
    let blocked_seen = AtomicBool::new(false);
    std::thread::scope(|scope| {
        for i in 0..THREADS {
            let (path, t, pin, bad) = (&path, &t, &pin, &bad);
            let (granted, tally, blocked_seen) = (&granted, &tally, &blocked_seen);
            scope.spawn(move || {
                let store = Counting::counting(SqliteStore::open(path).unwrap(), granted);
                let svc = service(store, run * 100 + i as u64);
                for g in 0..GUESSES / THREADS {
                    let right = i == 0 && right_every.is_some_and(|n| g % n == 0);
                    // Once any thread saw the block in the database, no verify started
                    // afterwards may be accepted.
                    let block_seen_before = blocked_seen.load(Ordering::SeqCst);
                    let input = if right { pin } else { bad };
                    match svc.verify(t, input, Level::Online, t0()).unwrap() {
                        VerifyOutcome::Rejected { .. } => {
                            tally.rejected.fetch_add(1, Ordering::SeqCst)
                        }
                        VerifyOutcome::Locked => tally.locked.fetch_add(1, Ordering::SeqCst),
                        VerifyOutcome::Accepted { .. } => {
                            assert!(right, "a wrong PIN was accepted");
                            if block_seen_before {
                                tally
                                    .accepted_after_block_seen
                                    .fetch_add(1, Ordering::SeqCst);
                            }
                            tally.accepted.fetch_add(1, Ordering::SeqCst)
                        }
                        // Compares in flight fill the budget: not counted (POL-8).
                        VerifyOutcome::TryLater { .. } => {
                            tally.later.fetch_add(1, Ordering::SeqCst)
                        }
                        other => panic!("unexpected outcome {other:?}"),
                    };
                    if svc.store().load(t).unwrap().unwrap().attempts.blocked {
                        blocked_seen.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    let store = SqliteStore::open(&path).unwrap();
    Race {
        granted: granted.into_inner(),
        tally,
        store,
        pin,
        _dir: dir,
    }
}

// rule: INPS-12, POL-8 — at most 10 compares however many threads guess at once; the
// audit log explains the counter.
#[test]
fn thousand_wrong_guesses_from_eight_connections_compare_at_most_ten_times() {
    for run in 0..runs() {
        let Race {
            granted,
            tally,
            store,
            _dir,
            ..
        } = race(run, None);
        assert!(
            granted <= LIMIT,
            "run {run}: {granted} compares for a limit of {LIMIT}"
        );
        assert_eq!(granted, LIMIT, "run {run}: the limit must be reached");
        assert_eq!(tally.accepted.load(Ordering::SeqCst), 0);
        // Reservations counted 1..=10: nine answers "rejected", the tenth "locked".
        assert_eq!(
            tally.rejected.load(Ordering::SeqCst),
            LIMIT - 1,
            "run {run}"
        );
        let l = store.load(&tax(0)).unwrap().unwrap();
        assert!(l.attempts.blocked, "run {run}: the subject must end locked");
        assert_eq!(l.attempts.failures, LIMIT, "run {run}");
        let compared = store
            .audit_log(Some(&tax(0)))
            .unwrap()
            .into_iter()
            .filter(|e| e.outcome == "rejected")
            .count();
        assert_eq!(compared, 9, "run {run}: audit rows of plain rejections");
        assert!(store.verify_audit_chain().unwrap().is_intact(), "run {run}");
        pin_core::conformance::assert_audit_explains_counter(&store, &tax(0));
    }
}

// rule: POL-5, POL-8 — the right PIN is accepted (or asked to try later) only before the
// block, never counted as a failure, and never re-opens the lock.
#[test]
fn right_pin_mixed_in_never_reopens_a_lock() {
    let mut accepted_total = 0;
    for run in 0..runs() {
        let Race {
            granted,
            tally,
            store,
            pin,
            _dir,
        } = race(1_000 + run, Some(12));
        assert_eq!(
            tally.accepted_after_block_seen.load(Ordering::SeqCst),
            0,
            "run {run}: accepted after the block was visible"
        );
        let accepted = tally.accepted.load(Ordering::SeqCst);
        accepted_total += accepted;
        // Each success resets the count, so at most LIMIT compares per success, plus the
        // in-flight ones of the other threads.
        let bound = (accepted + 1) * (LIMIT + THREADS as u32);
        assert!(
            granted <= bound,
            "run {run}: {granted} compares with {accepted} successes"
        );
        let l = store.load(&tax(0)).unwrap().unwrap();
        assert!(
            l.attempts.blocked,
            "run {run}: 1,000 mostly wrong guesses must lock"
        );
        // After the lock the right PIN gets Locked, however often it is typed.
        let svc = service(store, run);
        for _ in 0..3 {
            let outcome = svc.verify(&tax(0), &pin, Level::Online, t0()).unwrap();
            assert_eq!(
                outcome,
                VerifyOutcome::Locked,
                "run {run}: the right PIN after the lock"
            );
        }
    }
    assert!(
        accepted_total > 0,
        "the right PIN was never accepted before a lock: a weak test"
    );
}
