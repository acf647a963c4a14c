//! Runtime-agnostic: the driver on `futures::executor::block_on`, with no tokio runtime
//! anywhere, many calls in flight at once on a single-threaded executor; and the
//! behaviours of the pool itself (panics, sizing, debug output, opening).

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::future::join_all;
use futures_executor::block_on;
use pin_async::{AsyncPinService, PoolOptions, StartError};
use pin_core::VerifyOutcome;
use pin_core::hash::Keyring;
use pin_core::memory::MemoryStore;
use pin_core::notify::MemoryOutbox;
use pin_core::rand_chacha::ChaCha20Rng;
use pin_core::rand_core::SeedableRng;
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::PinService;
use pin_core::subject::Level;
use pin_core::{Error, Policy};

use crate::common::{LIMIT, blocking, counter, enrolled, now, threads, wrong};

// rule: POL-8 — on a plain single-threaded executor: 50 right PINs in flight at once are all
// answered, none locked, none counted.
#[test]
fn pol_8_block_on_without_a_runtime() {
    let (svc, tax, pin) = enrolled(MemoryStore::new(), 10, 2);
    block_on(async {
        assert!(
            tokio::runtime::Handle::try_current().is_err(),
            "no tokio here"
        );
        let calls = (0..50).map(|_| svc.verify(&tax, pin.as_str(), Level::Online, now()));
        for outcome in join_all(calls).await {
            assert!(
                matches!(
                    outcome.unwrap(),
                    VerifyOutcome::Accepted { .. } | VerifyOutcome::TryLater { .. }
                ),
                "POL-8"
            );
        }
        let a = counter(&svc, &tax).await;
        assert_eq!((a.failures, a.blocked), (0, false));
        let wrong = svc.verify(&tax, wrong(&pin), Level::Online, now()).await;
        assert_eq!(
            wrong.unwrap(),
            VerifyOutcome::Rejected {
                remaining_attempts: LIMIT - 1,
                final_try: false
            }
        );
    });
}

/// At most `threads` operations run at once; the rest wait for a thread, none started.
#[test]
fn no_more_operations_at_once_than_threads() {
    static RUNNING: AtomicUsize = AtomicUsize::new(0);
    static MOST: AtomicUsize = AtomicUsize::new(0);
    let (svc, _, _) = enrolled(MemoryStore::new(), 11, 3);
    let names = block_on(join_all((0..60).map(|_| {
        svc.run(|_| {
            let now = RUNNING.fetch_add(1, Ordering::SeqCst) + 1;
            MOST.fetch_max(now, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(2));
            RUNNING.fetch_sub(1, Ordering::SeqCst);
            std::thread::current().name().unwrap().to_owned()
        })
    })));
    assert!(
        MOST.load(Ordering::SeqCst) <= 3,
        "{}",
        MOST.load(Ordering::SeqCst)
    );
    let mut distinct: Vec<_> = names.clone();
    distinct.sort();
    distinct.dedup();
    assert!(distinct.len() <= 3, "{distinct:?}");
    assert!(
        distinct.iter().all(|n| n.starts_with("pin-async-")),
        "{distinct:?}"
    );
    assert_eq!(svc.threads().get(), 3);
}

/// A panic in an operation is resumed in the awaiting task; the pool's thread survives.
#[test]
fn a_panic_reaches_the_caller_and_the_pool_survives() {
    let (svc, tax, pin) = enrolled(MemoryStore::new(), 12, 1);
    let call = svc.run(|_| -> u32 { panic!("boom in the pool") });
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| block_on(call)));
    let payload = caught.unwrap_err();
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"boom in the pool"));
    // The only thread is still there.
    assert!(matches!(
        block_on(svc.verify(&tax, pin, Level::Online, now())).unwrap(),
        VerifyOutcome::Accepted { .. }
    ));
}

/// Bad input gets pin-core's own error, through the pool, and counts nothing.
#[test]
fn errors_are_pin_cores() {
    let (svc, tax, _) = enrolled(MemoryStore::new(), 13, 1);
    let e = block_on(svc.verify(&tax, "not a pin", Level::Online, now())).unwrap_err();
    assert!(matches!(e, Error::Input(_)), "{e}");
    assert_eq!(block_on(counter(&svc, &tax)).failures, 0);
}

/// The default pool has one thread per core; the memory figure is threads × live m_kib;
/// `Debug` shows the bound and the parameters, never the pepper.
#[test]
fn sizing_memory_and_debug() {
    assert_eq!(
        PoolOptions::default().threads,
        std::thread::available_parallelism().unwrap()
    );
    let keys = Keyring::new(Pepper::new(KeyId(1), &crate::common::PEPPER).unwrap());
    let service = PinService::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        Policy::default(),
        keys,
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let svc = AsyncPinService::with_options(service, threads(3)).unwrap();
    assert_eq!(svc.hash_memory_kib(), 3 * 19_456);
    assert_eq!(svc.policy(), &Policy::default());
    let debug = format!("{svc:?}");
    assert!(
        debug.contains("threads: 3") && debug.contains("19456"),
        "{debug}"
    );
    assert!(!debug.contains("pin-async test pepper"), "{debug}");
    let clone = svc.clone();
    drop(svc);
    assert_eq!(clone.threads().get(), 3, "clones share the pool");
}

/// `open_with` builds the service off the executor and hands back its error, or resumes its
/// panic; a service opened so works like any other.
#[test]
fn open_with_reports_the_constructors_error() {
    let failed = block_on(
        AsyncPinService::<MemoryStore, MemoryOutbox, ChaCha20Rng>::open_with(threads(1), || {
            Err::<PinService<_, _, _>, _>("no database")
        }),
    );
    match failed {
        Err(StartError::Open(e)) => assert_eq!(e, "no database"),
        other => panic!("{other:?}"),
    }
    let caught = std::panic::catch_unwind(|| {
        block_on(
            AsyncPinService::<MemoryStore, MemoryOutbox, ChaCha20Rng>::open_with(
                threads(1),
                || -> Result<PinService<_, _, _>, ()> { panic!("opening panicked") },
            ),
        )
    });
    assert!(caught.is_err());
    let opened = block_on(AsyncPinService::open_with(threads(1), || {
        let (svc, _, _) = blocking(MemoryStore::new(), 14);
        Ok::<_, ()>(svc)
    }))
    .unwrap();
    let tax = crate::common::synthetic_tax_code(14);
    assert!(block_on(opened.status(&tax, now())).is_ok());
}

/// Calls waiting for a thread start first come, first served (the order of their first
/// poll).
#[test]
fn waiting_calls_start_in_order() {
    let (svc, _, _) = enrolled(MemoryStore::new(), 15, 1);
    let (hold, held) = std::sync::mpsc::channel::<()>();
    let busy = svc.run(move |_| held.recv().unwrap());
    let order = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let calls: Vec<_> = (0..20)
        .map(|k| {
            let order = std::sync::Arc::clone(&order);
            svc.run(move |_| order.lock().unwrap().push(k))
        })
        .collect();
    // Polled once, in order: queued in order behind the held thread; then released.
    let mut all = futures::future::join(busy, join_all(calls));
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(std::pin::Pin::new(&mut all).poll(&mut cx).is_pending());
    hold.send(()).unwrap();
    let _ = block_on(all);
    assert_eq!(*order.lock().unwrap(), (0..20).collect::<Vec<_>>());
}
