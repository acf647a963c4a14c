//! Helpers shared by the tests: services over any store, enrolled subjects, and a store
//! that can hold a verify at its settlement.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use pin_async::{AsyncPinService, PoolOptions};
use pin_core::audit::AuditEvent;
use pin_core::chrono::{DateTime, TimeDelta, Utc};
use pin_core::command::AttemptsUpdate;
use pin_core::keycheck::KeyFingerprint;
use pin_core::notify::MemoryOutbox;
use pin_core::rand_chacha::ChaCha20Rng;
use pin_core::secret::KeyId;
use pin_core::service::DriverOptions;
use pin_core::store::{
    LeaseId, Loaded, Reservation, ReserveRequest, Settled, Settlement, Store, StoreError,
};
use pin_core::subject::Subject;
use pin_core::tax_code::TaxCode;

pub(crate) use pin_core::conformance::support::{
    TestService, enrol_noipa, synthetic_tax_code, t0, wrong,
};

/// The pepper of every test service.
pub(crate) const PEPPER: [u8; 32] = *b"pin-async test pepper, 32 bytes!";

/// The lockout limit of the test policy (INPS-12, POL-1).
pub(crate) const LIMIT: u32 = 10;

/// The async driver over `S` as the tests use it.
pub(crate) type Async<S> = AsyncPinService<S, MemoryOutbox, ChaCha20Rng>;

/// Five minutes after the enrolments.
pub(crate) fn now() -> DateTime<Utc> {
    t0() + TimeDelta::minutes(5)
}

/// `n` as pool options.
pub(crate) fn threads(n: usize) -> PoolOptions {
    PoolOptions::default().with_threads(NonZeroUsize::new(n).unwrap())
}

/// A blocking service over `store` (test policy, tiny settlement backoff) with subject
/// `i` enrolled; its tax code and PIN.
pub(crate) fn blocking<S: Store>(store: S, i: u64) -> (TestService<S>, TaxCode, String) {
    let svc = pin_core::conformance::support::service(store, i, &PEPPER)
        .with_options(DriverOptions::default().with_settle_backoff(Duration::from_millis(1), 6));
    let tax = synthetic_tax_code(i);
    let pin = enrol_noipa(&svc, &tax, &format!("person{i}@example.it"));
    (svc, tax, pin)
}

/// [`blocking`], then moved onto a pool of `n` threads.
pub(crate) fn enrolled<S: Store + Send + Sync + 'static>(
    store: S,
    i: u64,
    n: usize,
) -> (Async<S>, TaxCode, String) {
    let (svc, tax, pin) = blocking(store, i);
    let svc = AsyncPinService::with_options(svc, threads(n)).unwrap();
    (svc, tax, pin)
}

/// The attempt counter on record (read on the pool, as a service would).
pub(crate) async fn counter<S: Store + Send + Sync + 'static>(
    svc: &Async<S>,
    tax: &TaxCode,
) -> pin_core::subject::Attempts {
    let tax = tax.clone();
    svc.run(move |s| s.store().load(&tax).unwrap().unwrap().attempts)
        .await
}

/// Where a [`Gated`] store holds a settlement: the verify arrives (first wait), then waits
/// to be released (second wait).
pub(crate) struct Gate {
    armed: AtomicBool,
    barrier: Barrier,
}

impl Gate {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            armed: AtomicBool::new(false),
            barrier: Barrier::new(2),
        })
    }

    /// The next settlement stops at the gate.
    pub(crate) fn arm(&self) {
        self.armed.store(true, Ordering::SeqCst);
    }

    /// Waits until a settlement is held at the gate.
    pub(crate) fn arrived(&self) {
        let _ = self.barrier.wait();
    }

    /// Lets the held settlement go on.
    pub(crate) fn release(&self) {
        let _ = self.barrier.wait();
    }
}

/// A store whose settlement can be held at a [`Gate`]: the verify has then reserved its
/// attempt and compared, and its settlement has not reached the store yet.
pub(crate) struct Gated<S> {
    pub(crate) inner: S,
    pub(crate) gate: Arc<Gate>,
    /// Dropped after `inner` (fields drop in order): tells where, and whether unwinding.
    pub(crate) probe: Option<DropProbe>,
}

impl<S> Gated<S> {
    pub(crate) fn new(inner: S, gate: &Arc<Gate>) -> Self {
        Self {
            inner,
            gate: Arc::clone(gate),
            probe: None,
        }
    }
}

/// Sends, when dropped, the name of the thread that dropped it and whether that thread
/// was panicking.
pub(crate) struct DropProbe(pub(crate) std::sync::mpsc::Sender<(String, bool)>);

impl Drop for DropProbe {
    fn drop(&mut self) {
        let name = std::thread::current().name().unwrap_or("").to_owned();
        let _ = self.0.send((name, std::thread::panicking()));
    }
}

impl<S: Store> Store for Gated<S> {
    fn load(&self, t: &TaxCode) -> Result<Option<Loaded>, StoreError> {
        self.inner.load(t)
    }
    fn create(&self, s: &Subject, a: &[AuditEvent]) -> Result<u64, StoreError> {
        self.inner.create(s, a)
    }
    fn save(
        &self,
        s: &Subject,
        e: u64,
        u: AttemptsUpdate,
        a: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        self.inner.save(s, e, u, a)
    }
    fn reserve_attempt(&self, t: &TaxCode, r: &ReserveRequest) -> Result<Reservation, StoreError> {
        self.inner.reserve_attempt(t, r)
    }
    fn settle_attempt(
        &self,
        t: &TaxCode,
        s: u64,
        l: LeaseId,
        limit: u32,
        x: Settlement,
        a: &AuditEvent,
    ) -> Result<Settled, StoreError> {
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.arrived();
            self.gate.release();
        }
        self.inner.settle_attempt(t, s, l, limit, x, a)
    }
    fn key_fingerprints(&self) -> Result<Vec<(KeyId, KeyFingerprint)>, StoreError> {
        self.inner.key_fingerprints()
    }
    fn record_key_fingerprint(
        &self,
        id: KeyId,
        f: &KeyFingerprint,
    ) -> Result<KeyFingerprint, StoreError> {
        self.inner.record_key_fingerprint(id, f)
    }
    fn append_audit(&self, e: &[AuditEvent]) -> Result<(), StoreError> {
        self.inner.append_audit(e)
    }
    fn audit_log(&self, t: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_log(t)
    }
}
