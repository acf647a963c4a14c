//! 1,000 verifies in flight on a tokio runtime with 2 worker threads leave the runtime free:
//! a timer task keeps ticking while they wait for the pool and while they run. Progress
//! is asserted in ticks counted, never as a time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use pin_core::VerifyOutcome;
use pin_core::memory::MemoryStore;
use pin_core::subject::Level;

use crate::common::{LIMIT, blocking, counter, now, threads};

const VERIFIES: usize = 1_000;
const SUBJECTS: u64 = 10;

// rule: POL-8 — 1,000 right PINs through the driver: all accepted, none counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pol_8_a_thousand_verifies_leave_the_runtime_ticking() {
    // Enrol on the blocking driver, then hand the service to a pool of 2 threads.
    let (svc, _, _) = blocking(MemoryStore::new(), 0);
    let mut people = Vec::new();
    for i in 1..=SUBJECTS {
        let tax = crate::common::synthetic_tax_code(1_000 + i);
        let pin = crate::common::enrol_noipa(&svc, &tax, &format!("p{i}@example.it"));
        people.push((tax, pin));
    }
    let svc = pin_async::AsyncPinService::with_options(svc, threads(2)).unwrap();

    let ticks = Arc::new(AtomicU64::new(0));
    let ticker = tokio::spawn({
        let ticks = Arc::clone(&ticks);
        async move {
            let mut interval = tokio::time::interval(Duration::from_millis(1));
            loop {
                let _ = interval.tick().await;
                ticks.fetch_add(1, Ordering::SeqCst);
            }
        }
    });

    // Phase 1: the pool's two threads are held, and 1,000 verifies are queued behind them.
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let held = Arc::new(std::sync::Mutex::new(held));
    let holders: Vec<_> = (0..2)
        .map(|_| {
            let held = Arc::clone(&held);
            tokio::spawn(svc.run(move |_| held.lock().unwrap().recv().unwrap()))
        })
        .collect();
    let queued = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let last_done_at = Arc::new(AtomicU64::new(0));
    let calls: Vec<_> = (0..VERIFIES)
        .map(|k| {
            let (tax, pin) = &people[k % people.len()];
            let call = svc.verify(tax, pin.as_str(), Level::Online, now());
            let (queued, done) = (Arc::clone(&queued), Arc::clone(&done));
            let (ticks, last_done_at) = (Arc::clone(&ticks), Arc::clone(&last_done_at));
            tokio::spawn(async move {
                queued.fetch_add(1, Ordering::SeqCst);
                let outcome = call.await;
                done.fetch_add(1, Ordering::SeqCst);
                last_done_at.fetch_max(ticks.load(Ordering::SeqCst), Ordering::SeqCst);
                outcome
            })
        })
        .collect();
    while queued.load(Ordering::SeqCst) < VERIFIES {
        tokio::task::yield_now().await;
    }
    let start = ticks.load(Ordering::SeqCst);
    while ticks.load(Ordering::SeqCst) < start + 20 {
        tokio::task::yield_now().await;
    }
    assert_eq!(
        done.load(Ordering::SeqCst),
        0,
        "the verifies were waiting for the pool while the timer ticked 20 times"
    );

    // Phase 2: the pool runs them; the timer keeps ticking meanwhile.
    let released_at = ticks.load(Ordering::SeqCst);
    for _ in 0..2 {
        hold.send(()).unwrap();
    }
    for h in holders {
        h.await.unwrap();
    }
    for call in calls {
        assert!(matches!(
            call.await.unwrap().unwrap(),
            VerifyOutcome::Accepted { .. }
        ));
    }
    assert_eq!(done.load(Ordering::SeqCst), VERIFIES);
    let last = last_done_at.load(Ordering::SeqCst);
    assert!(
        last > released_at,
        "the timer ticked while the pool hashed: {released_at} at the release, {last} when \
         the last verify was answered"
    );
    ticker.abort();
    for (tax, _) in &people {
        let a = counter(&svc, tax).await;
        assert_eq!((a.failures, a.blocked), (0, false));
        let status = svc.status(tax, now()).await.unwrap();
        assert_eq!(status.remaining_attempts, LIMIT);
    }
}
