//! The lockout's two promises as properties of a service over any [`Store`] (INPS-12, POL-1,
//! POL-8): never more than the limit of wrong comparisons, and never a right PIN counted as
//! a failure — under concurrency, storage faults and misconfiguration.
//!
//! [`run_all`] is called by [`super::run_all`]; each property takes a fresh store.

use std::sync::Barrier;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use super::assert_audit_explains_counter;
use super::support::{self, TestService};
use crate::audit::AuditEvent;
use crate::command::AttemptsUpdate;
use crate::error::{ConfigError, Error};
use crate::hash::{HashError, Keyring};
use crate::keycheck::KeyFingerprint;
use crate::notify::MemoryOutbox;
use crate::policy::Policy;
use crate::secret::{KeyId, Pepper};
use crate::service::{DriverOptions, PinService};
use crate::store::{
    LeaseId, Loaded, Reservation, ReserveRequest, Settled, Settlement, Store, StoreError,
};
use crate::subject::{Level, Subject};
use crate::tax_code::TaxCode;
use crate::verify::VerifyOutcome;

const PEPPER: [u8; 32] = [7; 32];
const LIMIT: u32 = 10;

fn now() -> DateTime<Utc> {
    support::t0() + TimeDelta::minutes(5)
}

fn enrolled<S: Store>(store: S, i: u64) -> (TestService<S>, TaxCode, String) {
    let svc = support::service(store, i, &PEPPER)
        .with_options(DriverOptions::default().with_settle_backoff(Duration::from_millis(1), 6));
    let tax = support::synthetic_tax_code(i);
    let pin = support::enrol_noipa(&svc, &tax, &format!("person{i}@example.it"));
    (svc, tax, pin)
}

fn verify<S: Store>(svc: &TestService<S>, tax: &TaxCode, pin: &str) -> VerifyOutcome {
    svc.verify(tax, pin, Level::Online, now())
        .unwrap_or_else(|e| panic!("verify failed: {e}"))
}

/// N concurrent copies of the right PIN (double submits, retries) never lock and never
/// count a failure: each is accepted or asked to try later.
/// rule: POL-8, INPS-12, POL-1
pub fn concurrent_right_pins_never_lock<S: Store + Sync>(store: S, n: usize) {
    let (svc, tax, pin) = enrolled(store, 100 + n as u64);
    let barrier = Barrier::new(n);
    let accepted = AtomicU32::new(0);
    let later = AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..n {
            scope.spawn(|| {
                barrier.wait();
                match verify(&svc, &tax, &pin) {
                    VerifyOutcome::Accepted { .. } => accepted.fetch_add(1, Ordering::SeqCst),
                    VerifyOutcome::TryLater { .. } => later.fetch_add(1, Ordering::SeqCst),
                    other => panic!("POL-8: a right PIN was answered {other:?}"),
                };
            });
        }
    });
    let a = svc.store().load(&tax).unwrap().unwrap().attempts;
    assert_eq!(
        (a.failures, a.blocked),
        (0, false),
        "POL-8: {n} right PINs at once left {a:?}"
    );
    assert!(accepted.load(Ordering::SeqCst) >= 1, "someone got in");
    assert_eq!(
        accepted.load(Ordering::SeqCst) + later.load(Ordering::SeqCst),
        u32::try_from(n).unwrap()
    );
    assert!(matches!(
        verify(&svc, &tax, &pin),
        VerifyOutcome::Accepted { .. }
    ));
    assert_audit_explains_counter(svc.store(), &tax);
}

/// After `limit − 1` failures, a right PIN racing wrong ones keeps a linearizable history:
/// whoever was told "accepted" is not locked out by the attempts that raced it, and once
/// anyone was told "locked" no later answer is "accepted".
/// rule: POL-8, INPS-12, POL-1
pub fn right_racing_wrong_is_linearizable<S: Store + Sync>(store: S, rounds: u64) {
    let store = &store;
    for round in 0..rounds {
        let (svc, tax, pin) = enrolled(store, 200 + round);
        let bad = support::wrong(&pin);
        for _ in 1..LIMIT {
            assert!(matches!(
                verify(&svc, &tax, &bad),
                VerifyOutcome::Rejected { .. }
            ));
        }
        let barrier = Barrier::new(3);
        let (right, wrong_a, wrong_b) = std::thread::scope(|scope| {
            let right = scope.spawn(|| {
                barrier.wait();
                verify(&svc, &tax, &pin)
            });
            let w1 = scope.spawn(|| {
                barrier.wait();
                verify(&svc, &tax, &bad)
            });
            let w2 = scope.spawn(|| {
                barrier.wait();
                verify(&svc, &tax, &bad)
            });
            (
                right.join().unwrap(),
                w1.join().unwrap(),
                w2.join().unwrap(),
            )
        });
        let answers = [right, wrong_a, wrong_b];
        assert!(
            matches!(
                right,
                VerifyOutcome::Accepted { .. }
                    | VerifyOutcome::TryLater { .. }
                    | VerifyOutcome::Locked
            ),
            "{answers:?}"
        );
        let after = verify(&svc, &tax, &pin);
        let a = svc.store().load(&tax).unwrap().unwrap().attempts;
        if matches!(right, VerifyOutcome::Accepted { .. }) {
            assert!(
                !a.blocked && matches!(after, VerifyOutcome::Accepted { .. }),
                "POL-8: accepted, then locked by the attempts that raced it: {answers:?} {a:?}"
            );
        }
        if answers.contains(&VerifyOutcome::Locked) {
            assert_eq!(
                after,
                VerifyOutcome::Locked,
                "Locked is final: {answers:?} then {after:?}"
            );
            assert!(a.blocked);
        }
        if a.blocked {
            // The lock came from the tenth wrong comparison, not from the right PIN.
            assert!(
                answers.contains(&VerifyOutcome::Locked),
                "a lock nobody was told about: {answers:?}"
            );
        }
        assert_audit_explains_counter(svc.store(), &tax);
    }
}

/// A store instrumented for tests: its next `fail_settles` settlements and `fail_reserves`
/// reservations fail with a retryable [`StoreError::Busy`] before reaching the inner store,
/// and it can count the reservations the inner store granted — each is exactly one compare
/// by a driver, so adapters' tests can check the bound of wrong comparisons.
pub struct Faulty<'a, S> {
    inner: S,
    fail_settles: AtomicU32,
    fail_reserves: AtomicU32,
    granted: Option<&'a AtomicU32>,
}

/// The same wrapper, used to count granted reservations ([`Faulty::counting`]).
pub type Counting<'a, S> = Faulty<'a, S>;

impl<'a, S> Faulty<'a, S> {
    /// Wraps `inner`; no faults until armed, nothing counted.
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            fail_settles: AtomicU32::new(0),
            fail_reserves: AtomicU32::new(0),
            granted: None,
        }
    }

    /// Wraps `inner`, adding every reservation it grants to `granted` (which several
    /// wrappers, e.g. one per thread or connection, may share).
    pub fn counting(inner: S, granted: &'a AtomicU32) -> Self {
        Self {
            granted: Some(granted),
            ..Self::new(inner)
        }
    }

    /// The next `settles` settlements and `reserves` reservations fail.
    pub fn arm(&self, settles: u32, reserves: u32) {
        self.fail_settles.store(settles, Ordering::SeqCst);
        self.fail_reserves.store(reserves, Ordering::SeqCst);
    }

    fn take(counter: &AtomicU32) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }
}

fn busy() -> StoreError {
    StoreError::Busy("injected fault: the database is locked".into())
}

impl<S: Store> Store for Faulty<'_, S> {
    fn load(&self, t: &TaxCode) -> Result<Option<Loaded>, StoreError> {
        self.inner.load(t)
    }
    fn create(&self, s: &Subject, a: &[AuditEvent]) -> Result<u64, StoreError> {
        self.inner.create(s, a)
    }
    fn create_many(&self, b: &[(Subject, Vec<AuditEvent>)]) -> Result<(), StoreError> {
        self.inner.create_many(b)
    }
    fn create_streamed(
        &self,
        b: &mut dyn Iterator<Item = Result<(Subject, Vec<AuditEvent>), StoreError>>,
    ) -> Result<u64, StoreError> {
        self.inner.create_streamed(b)
    }
    fn awaiting_outbound(&self) -> Result<Vec<Subject>, StoreError> {
        self.inner.awaiting_outbound()
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
        if Self::take(&self.fail_reserves) {
            return Err(busy());
        }
        let answer = self.inner.reserve_attempt(t, r)?;
        if let (Reservation::Granted { .. }, Some(granted)) = (answer, self.granted) {
            granted.fetch_add(1, Ordering::SeqCst);
        }
        Ok(answer)
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
        if Self::take(&self.fail_settles) {
            return Err(busy());
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

/// A settlement that meets a busy store is retried: once the store recovers, a right PIN
/// leaves no failure counted and a wrong one exactly one. A reservation that cannot be
/// made counts nothing.
/// rule: POL-8, INPS-12
pub fn storage_faults_count_no_right_pin<S: Store>(store: S) {
    let (svc, tax, pin) = enrolled(Faulty::new(store), 300);
    let bad = support::wrong(&pin);
    let failures = || svc.store().load(&tax).unwrap().unwrap().attempts.failures;
    assert!(matches!(
        verify(&svc, &tax, &bad),
        VerifyOutcome::Rejected { .. }
    ));
    assert_eq!(failures(), 1);
    for k in 1..=3 {
        svc.store().arm(k, 0);
        assert!(
            matches!(verify(&svc, &tax, &pin), VerifyOutcome::Accepted { .. }),
            "a right PIN whose settlement failed {k} time(s) is still accepted"
        );
        assert_eq!(
            failures(),
            0,
            "POL-8: no failure left by {k} settle fault(s)"
        );
        svc.store().arm(k, 0);
        assert!(matches!(
            verify(&svc, &tax, &bad),
            VerifyOutcome::Rejected { .. }
        ));
        assert_eq!(failures(), 1, "a wrong PIN counts once, faults or not");
        svc.store().arm(0, 0);
        assert!(matches!(
            verify(&svc, &tax, &pin),
            VerifyOutcome::Accepted { .. }
        ));
    }
    // A reservation that fails counts nothing, and says so: retryable.
    svc.store().arm(0, 1);
    let e = svc.verify(&tax, &pin, Level::Online, now()).unwrap_err();
    assert!(e.is_retryable(), "{e}");
    assert_eq!(failures(), 0);
    assert_audit_explains_counter(svc.store(), &tax);
}

/// A service with the wrong key file, a store of test-only hashes under real parameters,
/// or a hash under a key not in the keyring: refused with a configuration error that says
/// what is wrong, before any attempt is counted.
/// rule: POL-8, INPS-12
pub fn misconfiguration_counts_nothing<S: Store>(store: S) {
    let (svc, tax, pin) = enrolled(&store, 400);
    drop(svc);
    let counter = || store.load(&tax).unwrap().unwrap().attempts;
    let before = counter();
    // Another key file under the same key id.
    let other = Keyring::new(Pepper::new(KeyId(1), &[8u8; 32]).unwrap());
    let e = PinService::new(
        &store,
        MemoryOutbox::new(),
        support::policy(),
        other,
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap_err();
    assert!(
        matches!(e, Error::Config(ConfigError::WrongKey(KeyId(1)))),
        "{e}"
    );
    assert!(e.to_string().contains("wrong key file"), "{e}");
    // The right key, but the hashes were made with test-only parameters.
    let real = PinService::new(
        &store,
        MemoryOutbox::new(),
        Policy::default(),
        Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap()),
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let e = real.verify(&tax, &pin, Level::Online, now()).unwrap_err();
    assert!(matches!(e, Error::Config(ConfigError::TestOnlyHash)), "{e}");
    assert!(e.to_string().contains("test-only parameters"), "{e}");
    // A keyring without the hash's key.
    let rotated = PinService::new(
        &store,
        MemoryOutbox::new(),
        support::policy(),
        Keyring::new(Pepper::new(KeyId(2), &[3u8; 32]).unwrap()),
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let e = rotated
        .verify(&tax, &pin, Level::Online, now())
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Config(ConfigError::UnusableHash(HashError::UnknownKey(KeyId(1))))
        ),
        "{e}"
    );
    for _ in 0..LIMIT + 1 {
        let _ = rotated.verify(&tax, &pin, Level::Online, now());
    }
    assert_eq!(
        counter(),
        before,
        "POL-8: misconfiguration counted an attempt"
    );
    // With the right configuration the PIN works.
    let right = support::service(&store, 1, &PEPPER);
    assert!(matches!(
        right.verify(&tax, &pin, Level::Online, now()).unwrap(),
        VerifyOutcome::Accepted { .. }
    ));
    assert_audit_explains_counter(&store, &tax);
}

/// Constructing a service reads the key fingerprints and writes nothing; the first write
/// records the current key's, once.
pub fn key_fingerprint_recorded_by_the_first_write<S: Store>(store: S) {
    let svc = support::service(&store, 1, &PEPPER);
    assert!(
        store.key_fingerprints().unwrap().is_empty(),
        "constructing a service wrote a fingerprint"
    );
    let _ = support::enrol_noipa(&svc, &support::synthetic_tax_code(500), "k@example.it");
    let recorded = store.key_fingerprints().unwrap();
    assert_eq!(
        recorded,
        vec![(
            KeyId(1),
            KeyFingerprint::of(&Pepper::new(KeyId(1), &PEPPER).unwrap())
        )]
    );
    assert!(
        !recorded[0]
            .1
            .to_hex()
            .contains(&format!("{:02x}", PEPPER[0]).repeat(8)),
        "the fingerprint is not the key"
    );
}

/// Runs every lockout property, each on a fresh store from `make`.
pub fn run_all<S: Store + Sync>(make: &impl Fn() -> S) {
    for n in [11, 30, 200] {
        concurrent_right_pins_never_lock(make(), n);
    }
    right_racing_wrong_is_linearizable(make(), 8);
    storage_faults_count_no_right_pin(make());
    misconfiguration_counts_nothing(make());
    key_fingerprint_recorded_by_the_first_write(make());
}
