//! A dropped future never leaves an operation half done: a verify taken by a pool thread
//! settles its attempt anyway (only the answer is lost); one dropped before a thread took
//! it never runs. Driven by hand with a no-op waker: no runtime at all.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Waker};

use futures_executor::block_on;
use pin_core::VerifyOutcome;
use pin_core::memory::MemoryStore;
use pin_core::store::Store;
use pin_core::subject::Level;

use crate::common::{Gate, Gated, LIMIT, blocking, counter, now, threads, wrong};

/// Polls `call` once (which queues it); the callers hold its thread or its settlement, so
/// it cannot be answered yet.
fn poll_once<F: Future + Unpin>(call: &mut F) {
    let mut cx = Context::from_waker(Waker::noop());
    assert!(Pin::new(call).poll(&mut cx).is_pending());
}

/// A service (one pool thread) over a gated in-memory store, with `LIMIT − 1` failures
/// already counted: one more would lock, one lease left in flight would fill the budget.
fn nine_failures(
    i: u64,
) -> (
    crate::common::Async<Gated<MemoryStore>>,
    std::sync::Arc<Gate>,
    pin_core::tax_code::TaxCode,
    String,
) {
    let gate = Gate::new();
    let store = Gated::new(MemoryStore::new(), &gate);
    let (svc, tax, pin) = blocking(store, i);
    for _ in 1..LIMIT {
        let outcome = svc
            .verify(&tax, &wrong(&pin), Level::Online, now())
            .unwrap();
        assert!(matches!(outcome, VerifyOutcome::Rejected { .. }));
    }
    let svc = pin_async::AsyncPinService::with_options(svc, threads(1)).unwrap();
    (svc, gate, tax, pin)
}

// rule: POL-8 — a right PIN whose caller went away mid-compare is still settled as a
// success: no failure left, no lease left holding the last place in the budget.
#[test]
fn pol_8_dropped_right_pin_still_settles() {
    let (svc, gate, tax, pin) = nine_failures(1);
    let audit_before = block_on(svc.run({
        let tax = tax.clone();
        move |s| s.store().audit_log(Some(&tax)).unwrap().len()
    }));
    gate.arm();
    let mut call = svc.verify(&tax, pin.as_str(), Level::Online, now());
    poll_once(&mut call);
    gate.arrived(); // reserved and compared; the settlement is held at the store
    drop(call);
    gate.release();
    // One thread: this runs after the dropped verify finished.
    let a = block_on(counter(&svc, &tax));
    assert_eq!(
        (a.failures, a.blocked),
        (0, false),
        "the dropped right PIN settled as a success: {a:?}"
    );
    let audit_after = block_on(svc.run({
        let tax = tax.clone();
        move |s| s.store().audit_log(Some(&tax)).unwrap().len()
    }));
    assert!(audit_after > audit_before, "its settlement was audited");
}

// rule: INPS-12 — a wrong PIN whose caller went away mid-compare is counted once, at once:
// the tenth locks the PIN now, not when a lease expires.
#[test]
fn inps_12_dropped_wrong_pin_still_counts_once() {
    let (svc, gate, tax, pin) = nine_failures(2);
    gate.arm();
    let mut call = svc.verify(&tax, wrong(&pin), Level::Online, now());
    poll_once(&mut call);
    gate.arrived();
    drop(call);
    gate.release();
    let status = block_on(svc.status(&tax, now())).unwrap();
    assert!(status.locked, "{status:?}");
    assert_eq!(status.attempts.failures, LIMIT);
    assert_eq!(
        block_on(svc.verify(&tax, pin, Level::Online, now())).unwrap(),
        VerifyOutcome::Locked
    );
}

/// A verify dropped while it waited for a thread never runs: nothing counted or audited.
#[test]
fn a_call_dropped_before_it_started_never_runs() {
    let (svc, _gate, tax, pin) = nine_failures(3);
    let audit = |svc: &crate::common::Async<Gated<MemoryStore>>| {
        let tax = tax.clone();
        block_on(svc.run(move |s| s.store().audit_log(Some(&tax)).unwrap().len()))
    };
    let before = audit(&svc);
    // Hold the only thread until the wrong verify is queued and dropped.
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let mut busy = svc.run(move |_| held.recv().unwrap());
    poll_once(&mut busy);
    let mut call = svc.verify(&tax, wrong(&pin), Level::Online, now());
    poll_once(&mut call);
    drop(call);
    hold.send(()).unwrap();
    block_on(busy);
    let a = block_on(counter(&svc, &tax));
    assert_eq!(
        a.failures,
        LIMIT - 1,
        "the dropped wrong PIN was not counted"
    );
    assert_eq!(audit(&svc), before, "nor audited");
    // A future that is never polled queues nothing either.
    let unpolled = svc.verify(&tax, wrong(&pin), Level::Online, now());
    drop(unpolled);
    assert_eq!(block_on(counter(&svc, &tax)).failures, LIMIT - 1);
}
