//! The population defence through the driver (`PinService::verify_from`): the source limit
//! and defended mode answer before any reservation and count nothing against the person
//! (POL-8); a trusted device passes them but not the per-person lockout (POL-1).

use chrono::{DateTime, TimeDelta, Utc};
use pin_core::conformance::support::{enrol_noipa, service, synthetic_tax_code, t0, wrong};
use pin_core::memory::MemoryStore;
use pin_core::population::{
    CountRequest, DeviceKey, DeviceToken, Mode, NetworkKey, PopulationPolicy, Source,
};
use pin_core::service::{PinService, PopulationDefence};
use pin_core::store::Store;
use pin_core::subject::Profile;
use pin_core::tax_code::TaxCode;
use pin_core::{Level, VerifyOutcome};

type Svc = pin_core::conformance::support::TestService<MemoryStore>;

fn defended(policy: PopulationPolicy) -> Svc {
    service(MemoryStore::new(), 7, &[3u8; 32]).with_population(PopulationDefence::new(
        policy,
        DeviceKey::new(&[5u8; 32]).unwrap(),
    ))
}

/// `n` NoiPA employees with their PINs.
fn people(svc: &Svc, n: u64) -> Vec<(TaxCode, String)> {
    (0..n)
        .map(|i| {
            let t = synthetic_tax_code(i);
            let pin = enrol_noipa(svc, &t, &format!("p{i}@example.org"));
            (t, pin)
        })
        .collect()
}

fn net(s: &str) -> Source {
    Source::network(NetworkKey::new(s).unwrap())
}

fn at(min: i64) -> DateTime<Utc> {
    t0() + TimeDelta::minutes(min)
}

fn remaining(svc: &Svc, t: &TaxCode, now: DateTime<Utc>) -> u32 {
    svc.status(t, now).unwrap().remaining_attempts
}

fn failed_guesses(svc: &Svc, now: DateTime<Utc>) -> u64 {
    let c = svc
        .store()
        .population_counts(&CountRequest {
            network: None,
            source_since: now - TimeDelta::days(1),
            population_since: now - TimeDelta::days(1),
        })
        .unwrap();
    c.failures_of(Profile::Noipa) + c.failures_of(Profile::Inps)
}

/// A budget that nothing in these tests exceeds unless it means to.
fn roomy() -> PopulationPolicy {
    PopulationPolicy::default().with_budget(TimeDelta::hours(1), 100, 100, 168)
}

// rule: POL-8 — a network at its limit is told to try later before any reservation: the
// right PIN of the next person is neither compared nor counted, and the same PIN from
// another network is accepted.
#[test]
fn pol8_source_limit_is_try_later_and_counts_nothing() {
    let svc = defended(roomy().with_source_limit(3, TimeDelta::hours(1)));
    let ppl = people(&svc, 5);
    let spray = net("203.0.113.0/24");
    for (t, pin) in ppl.iter().take(3) {
        let v = svc
            .verify_from(t, &wrong(pin), Level::Online, &spray, at(1))
            .unwrap();
        assert!(matches!(v.outcome, VerifyOutcome::Rejected { .. }));
    }
    assert_eq!(failed_guesses(&svc, at(1)), 3, "one row per wrong PIN");
    let (t, pin) = &ppl[3];
    let v = svc
        .verify_from(t, pin, Level::Online, &spray, at(2))
        .unwrap();
    let VerifyOutcome::TryLater { retry_after } = v.outcome else {
        panic!("expected try_later, got {:?}", v.outcome);
    };
    // The oldest failure (minute 1) leaves the window at minute 61.
    assert_eq!(retry_after, std::time::Duration::from_secs(59 * 60));
    assert!(v.proof.is_none() && v.device_token.is_none());
    assert_eq!(
        remaining(&svc, t, at(2)),
        10,
        "nothing counted against the person"
    );
    assert_eq!(
        failed_guesses(&svc, at(2)),
        3,
        "try_later is no failed guess"
    );
    // A wrong PIN from the limited network is not compared either.
    let v = svc
        .verify_from(t, &wrong(pin), Level::Online, &spray, at(2))
        .unwrap();
    assert!(matches!(v.outcome, VerifyOutcome::TryLater { .. }));
    assert_eq!(remaining(&svc, t, at(2)), 10);
    // Another network, or the same after the window, is served.
    let v = svc
        .verify_from(t, pin, Level::Online, &net("198.51.100.0/24"), at(3))
        .unwrap();
    assert!(matches!(v.outcome, VerifyOutcome::Accepted { .. }));
    let v = svc
        .verify_from(&ppl[4].0, &ppl[4].1, Level::Online, &spray, at(62))
        .unwrap();
    assert!(matches!(v.outcome, VerifyOutcome::Accepted { .. }), "{v:?}");
}

// rule: POL-8 — in defended mode an untrusted source gets challenge_required, for a right
// and a wrong PIN, for a tax code on record or not; nothing is compared or counted; with a
// challenge proof the verify goes on; the mode ends by itself.
#[test]
fn pol8_defended_mode_challenges_untrusted_sources_and_counts_nothing() {
    // Threshold: 1 × max(baseline 2, floor 2) = 2 failed guesses per hour.
    let policy = PopulationPolicy::default().with_budget(TimeDelta::hours(1), 1, 2, 168);
    let svc = defended(policy);
    let ppl = people(&svc, 5);
    for (i, (t, pin)) in ppl.iter().take(3).enumerate() {
        let src = net(&format!("192.0.2.{i}"));
        let v = svc
            .verify_from(t, &wrong(pin), Level::Online, &src, at(1))
            .unwrap();
        assert!(matches!(v.outcome, VerifyOutcome::Rejected { .. }), "{v:?}");
    }
    assert_eq!(
        svc.population_report(5, at(2)).unwrap().mode,
        Mode::Defended
    );
    let (t, pin) = &ppl[3];
    for input in [pin.clone(), wrong(pin)] {
        let v = svc
            .verify_from(t, &input, Level::Online, &net("198.51.100.7"), at(2))
            .unwrap();
        assert_eq!(v.outcome, VerifyOutcome::ChallengeRequired);
        // `verify` is an unknown source: challenged alike.
        assert_eq!(
            svc.verify(t, &input, Level::Online, at(2)).unwrap(),
            VerifyOutcome::ChallengeRequired
        );
    }
    // A tax code not on record: the same answer (no oracle).
    assert_eq!(
        svc.verify(&synthetic_tax_code(999), "12345", Level::Online, at(2))
            .unwrap(),
        VerifyOutcome::ChallengeRequired
    );
    assert_eq!(
        remaining(&svc, t, at(2)),
        10,
        "nothing counted against the person"
    );
    assert_eq!(
        failed_guesses(&svc, at(2)),
        3,
        "a challenge is no failed guess"
    );
    // With a challenge proof: verified as usual.
    let proven = Source {
        challenge_passed: true,
        ..net("198.51.100.7")
    };
    let v = svc
        .verify_from(t, pin, Level::Online, &proven, at(2))
        .unwrap();
    assert!(matches!(v.outcome, VerifyOutcome::Accepted { .. }));
    // The window slides past the failures: normal again, without anyone acting.
    assert_eq!(svc.population_report(5, at(62)).unwrap().mode, Mode::Normal);
    let (t, pin) = &ppl[4];
    assert!(matches!(
        svc.verify(t, pin, Level::Online, at(62)).unwrap(),
        VerifyOutcome::Accepted { .. }
    ));
}

// rule: POL-1 — a trusted device passes the source limit and defended mode (a person on
// their own device is not slowed by someone else's spraying), but its wrong PINs still
// lock after 10.
#[test]
fn trusted_device_passes_spraying_defences_but_not_the_lockout() {
    let policy = PopulationPolicy::default()
        .with_budget(TimeDelta::hours(1), 1, 1, 168)
        .with_source_limit(1, TimeDelta::hours(1));
    let svc = defended(policy);
    let ppl = people(&svc, 3);
    let home = net("198.51.100.0/24");
    let (t, pin) = &ppl[0];
    let v = svc
        .verify_from(t, pin, Level::Online, &home, at(0))
        .unwrap();
    assert!(matches!(v.outcome, VerifyOutcome::Accepted { .. }));
    let token = v
        .device_token
        .expect("a right PIN from a new device gets a token");
    let token = DeviceToken::parse(&token.encode()).unwrap();
    // A spray from the same network makes it over its limit and the service defended.
    for (u, p) in ppl.iter().skip(1) {
        let _ = svc
            .verify_from(u, &wrong(p), Level::Online, &home, at(1))
            .unwrap();
    }
    let untrusted = svc
        .verify_from(t, pin, Level::Online, &home, at(2))
        .unwrap();
    assert!(matches!(untrusted.outcome, VerifyOutcome::TryLater { .. }));
    let mine = Source {
        device: Some(token.clone()),
        ..home.clone()
    };
    let v = svc
        .verify_from(t, pin, Level::Online, &mine, at(2))
        .unwrap();
    assert!(matches!(v.outcome, VerifyOutcome::Accepted { .. }), "{v:?}");
    assert!(v.device_token.is_none(), "a trusted device keeps its token");
    // The token is the subject's own: another person's verify from it is untrusted.
    let (u, p) = &ppl[1];
    let v = svc.verify_from(u, p, Level::Online, &mine, at(2)).unwrap();
    assert!(matches!(v.outcome, VerifyOutcome::TryLater { .. }));
    // Wrong PINs from the trusted device count against the person and lock at 10.
    for k in 0..9 {
        let v = svc
            .verify_from(t, &wrong(pin), Level::Online, &mine, at(3))
            .unwrap();
        assert!(
            matches!(v.outcome, VerifyOutcome::Rejected { .. }),
            "attempt {k}: {v:?}"
        );
    }
    let v = svc
        .verify_from(t, &wrong(pin), Level::Online, &mine, at(3))
        .unwrap();
    assert_eq!(v.outcome, VerifyOutcome::Locked);
    let v = svc
        .verify_from(t, pin, Level::Online, &mine, at(4))
        .unwrap();
    assert_eq!(v.outcome, VerifyOutcome::Locked);
    // A trusted device's failures count for the population, never for its network: the
    // network has only the one spray guess it made before its limit (the second was
    // try_later, not counted).
    let report = svc.population_report(5, at(4)).unwrap();
    assert_eq!(report.top_sources, vec![("198.51.100.0/24".to_owned(), 1)]);
    assert_eq!(report.profiles[0].failures, 11);
}

// Without the defence, the source is ignored: no gate, no token, no counters needed.
#[test]
fn without_the_defence_verify_from_is_verify() {
    let svc = service(MemoryStore::new(), 7, &[3u8; 32]);
    let ppl = people(&svc, 1);
    let (t, pin) = &ppl[0];
    let v = svc
        .verify_from(t, pin, Level::Online, &net("198.51.100.0/24"), at(0))
        .unwrap();
    assert!(matches!(v.outcome, VerifyOutcome::Accepted { .. }));
    assert!(v.device_token.is_none());
    assert_eq!(failed_guesses(&svc, at(0)), 0);
}

/// A store that keeps no population counters (the `Store` defaults).
struct NoCounters(MemoryStore);

impl Store for NoCounters {
    fn load(
        &self,
        t: &TaxCode,
    ) -> Result<Option<pin_core::store::Loaded>, pin_core::store::StoreError> {
        self.0.load(t)
    }
    fn create(
        &self,
        s: &pin_core::subject::Subject,
        a: &[pin_core::audit::AuditEvent],
    ) -> Result<u64, pin_core::store::StoreError> {
        self.0.create(s, a)
    }
    fn save(
        &self,
        s: &pin_core::subject::Subject,
        e: u64,
        u: pin_core::command::AttemptsUpdate,
        a: &[pin_core::audit::AuditEvent],
    ) -> Result<u64, pin_core::store::StoreError> {
        self.0.save(s, e, u, a)
    }
    fn reserve_attempt(
        &self,
        t: &TaxCode,
        r: &pin_core::store::ReserveRequest,
    ) -> Result<pin_core::store::Reservation, pin_core::store::StoreError> {
        self.0.reserve_attempt(t, r)
    }
    fn settle_attempt(
        &self,
        t: &TaxCode,
        s: u64,
        l: pin_core::store::LeaseId,
        limit: u32,
        x: pin_core::store::Settlement,
        a: &pin_core::audit::AuditEvent,
    ) -> Result<pin_core::store::Settled, pin_core::store::StoreError> {
        self.0.settle_attempt(t, s, l, limit, x, a)
    }
    fn key_fingerprints(
        &self,
    ) -> Result<
        Vec<(pin_core::secret::KeyId, pin_core::keycheck::KeyFingerprint)>,
        pin_core::store::StoreError,
    > {
        self.0.key_fingerprints()
    }
    fn record_key_fingerprint(
        &self,
        id: pin_core::secret::KeyId,
        f: &pin_core::keycheck::KeyFingerprint,
    ) -> Result<pin_core::keycheck::KeyFingerprint, pin_core::store::StoreError> {
        self.0.record_key_fingerprint(id, f)
    }
    fn append_audit(
        &self,
        e: &[pin_core::audit::AuditEvent],
    ) -> Result<(), pin_core::store::StoreError> {
        self.0.append_audit(e)
    }
    fn audit_log(
        &self,
        t: Option<&TaxCode>,
    ) -> Result<Vec<pin_core::audit::AuditEvent>, pin_core::store::StoreError> {
        self.0.audit_log(t)
    }
}

// rule: POL-8 — a store that keeps no population counters makes the defended verify fail
// with a storage error before anything is reserved: nothing is counted.
#[test]
fn pol8_a_store_without_counters_refuses_before_counting() {
    let svc: PinService<_, _, _> = service(NoCounters(MemoryStore::new()), 7, &[3u8; 32])
        .with_population(PopulationDefence::new(
            PopulationPolicy::default(),
            DeviceKey::new(&[5u8; 32]).unwrap(),
        ));
    let t = synthetic_tax_code(0);
    let pin = enrol_noipa(&svc, &t, "p0@example.org");
    let err = svc
        .verify(&t, &wrong(&pin), Level::Online, at(1))
        .unwrap_err();
    assert!(err.to_string().contains("population counters"), "{err}");
    assert_eq!(svc.status(&t, at(1)).unwrap().remaining_attempts, 10);
}

// The baseline learns once per window, only through `learn` (so a verify that fails writes
// nothing), and the instance that wins the swap prunes the rows no window needs.
#[test]
fn learning_swaps_once_per_window_and_prunes_old_rows() {
    use pin_core::population::{self, FailedGuess, Trust};
    let store = MemoryStore::new();
    let policy = PopulationPolicy::default();
    let key = DeviceKey::new(&[5u8; 32]).unwrap();
    let tax = synthetic_tax_code(1);
    let src = net("192.0.2.0/24");
    store
        .record_failed_guess(&FailedGuess {
            at: at(0),
            profile: Profile::Noipa,
            network: src.network.clone(),
        })
        .unwrap();
    let a = population::admit(&store, &policy, &key, &src, &tax, Some(1), at(1)).unwrap();
    assert_eq!(a.trust, Trust::Untrusted);
    assert!(
        a.learn.iter().all(Option::is_some),
        "first sight: both profiles start"
    );
    let counts = |now| {
        store
            .population_counts(&CountRequest {
                network: None,
                source_since: now - TimeDelta::days(1),
                population_since: now - TimeDelta::days(1),
            })
            .unwrap()
    };
    assert!(counts(at(1)).baselines.is_empty(), "admit writes nothing");
    population::learn(&store, &policy, &a, at(1));
    assert_eq!(counts(at(1)).baselines.len(), 2);
    // Within the window: nothing to learn. Two hours later: learn, and prune the row of
    // minute 0 (older than the one-hour retention).
    let a = population::admit(&store, &policy, &key, &src, &tax, Some(1), at(30)).unwrap();
    assert!(a.learn.iter().all(Option::is_none));
    let a = population::admit(&store, &policy, &key, &src, &tax, Some(1), at(121)).unwrap();
    population::learn(&store, &policy, &a, at(121));
    assert_eq!(counts(at(121)).failures_of(Profile::Noipa), 0, "pruned");
    // A second instance that read the same baseline loses the swap: no double learning.
    let before = counts(at(121)).baselines;
    population::learn(&store, &policy, &a, at(122));
    assert_eq!(counts(at(122)).baselines, before);
}
