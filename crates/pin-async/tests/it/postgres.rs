//! PostgreSQL through the async driver, from inside a tokio runtime: the blocking
//! `postgres` client panics when used on a runtime thread, and works here because every
//! store call (opening and dropping included) happens on the pool's threads.

use pin_async::AsyncPinService;
use pin_core::VerifyOutcome;
use pin_core::service::State;
use pin_core::subject::Level;
use pin_postgres::PostgresStore;
use pin_postgres::cluster::{self, Cluster};

use crate::common::{
    DropProbe, Gate, Gated, LIMIT, enrol_noipa, now, synthetic_tax_code, threads, wrong,
};

/// A fresh cluster and a database URL on it, or `None` (loudly) without server binaries;
/// in CI their absence is a failure.
fn cluster(test: &str) -> Option<(Cluster, String)> {
    if cluster::find_binaries().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: no PostgreSQL server binaries in CI"
        );
        eprintln!("\n*** SKIPPED {test}: no PostgreSQL server binaries found ***\n");
        return None;
    }
    let c = Cluster::start().unwrap();
    let url = c.create_database("pin_async").unwrap();
    Some((c, url))
}

// rule: INPS-12 — on PostgreSQL from a tokio runtime: right PIN accepted, wrong ones
// counted down to the lock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inps_12_postgres_store_from_a_tokio_runtime() {
    let Some((c, url)) =
        tokio::task::spawn_blocking(|| cluster("inps_12_postgres_store_from_a_tokio_runtime"))
            .await
            .unwrap()
    else {
        return;
    };

    // The control: on a runtime thread the blocking store refuses to open (it says why,
    // rather than letting the blocking client panic), and dropping one there is harmless.
    let direct = tokio::spawn({
        let url = url.clone();
        async move { PostgresStore::open(&url).map(drop) }
    })
    .await
    .expect("no panic on a runtime thread");
    assert!(
        matches!(direct, Err(pin_postgres::OpenError::InsideAsyncRuntime)),
        "the blocking store must refuse a runtime thread: {direct:?}"
    );
    let opened = tokio::task::spawn_blocking({
        let url = url.clone();
        move || PostgresStore::open(&url).unwrap()
    })
    .await
    .unwrap();
    tokio::spawn(async move { drop(opened) })
        .await
        .expect("dropping the store on a runtime thread does not panic");

    // Through the driver: opened, used and dropped off the runtime.
    let open_url = url.clone();
    let (probe, dropped_on) = std::sync::mpsc::channel();
    let svc = AsyncPinService::open_with(threads(2), move || {
        let mut store = Gated::new(PostgresStore::open(&open_url)?, &Gate::new());
        store.probe = Some(DropProbe(probe));
        Ok::<_, pin_postgres::OpenError>(pin_core::conformance::support::service(
            store,
            40,
            &crate::common::PEPPER,
        ))
    })
    .await
    .unwrap();
    let tax = synthetic_tax_code(40);
    let pin = svc
        .run({
            let tax = tax.clone();
            move |s| enrol_noipa(s, &tax, "pg@example.it")
        })
        .await;
    assert!(matches!(
        svc.verify(&tax, pin.as_str(), Level::Online, now())
            .await
            .unwrap(),
        VerifyOutcome::Accepted { .. }
    ));
    let bad = wrong(&pin);
    let calls: Vec<_> = (0..LIMIT + 2)
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
    let status = svc.status(&tax, now()).await.unwrap();
    assert_eq!(status.state, State::Locked, "{status:?}");
    assert_eq!(status.attempts.failures, LIMIT);
    let chain = svc
        .run(|s| s.store().inner.verify_audit_chain())
        .await
        .unwrap();
    assert!(chain.is_intact(), "{chain:?}");
    // Dropped here, on the runtime: the store goes down with the pool's last thread, and
    // cleanly.
    drop(svc);
    let (thread, panicking) = tokio::task::spawn_blocking(move || dropped_on.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(thread.starts_with("pin-async-"), "dropped on {thread:?}");
    assert!(!panicking, "the store's drop panicked on {thread}");
    tokio::task::spawn_blocking(move || drop(c)).await.unwrap();
}
