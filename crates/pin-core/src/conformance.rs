//! The conformance suite every [`Store`] must pass (feature `conformance`).
//!
//! Call [`run_all`] from a test of your adapter with a function that makes a fresh, empty
//! store each time:
//!
//! ```ignore
//! #[test]
//! fn conforms() {
//!     pin_core::conformance::run_all(|| MyStore::open_temp().unwrap());
//! }
//! ```
//!
//! Each check panics with a message naming the property that failed.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use chrono::{DateTime, TimeDelta, TimeZone, Utc};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::attempts;
use crate::audit::AuditEvent;
use crate::command::AttemptsUpdate;
use crate::contact::{Contacts, Email};
use crate::format::{self, PinFormat};
use crate::hash::{HashParams, Hasher, Keyring};
use crate::keycheck::KeyFingerprint;
use crate::secret::{KeyId, Pepper};
use crate::store::{LeaseId, Reservation, ReserveRequest, Settled, Settlement, Store, StoreError};
use crate::subject::{
    Attempts, Channel, Credential, DeliveryState, Level, Origin, Part, Pending, Role, Stage,
    Subject,
};
use crate::tax_code::TaxCode;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0).single().unwrap()
}

/// Valid tax codes for the suite.
pub const TAX_CODES: [&str; 3] = ["RSSMRA85T10A562S", "VRDGPP80A01H501U", "BNCLRA90M41F205Z"];

fn tax(i: usize) -> TaxCode {
    TaxCode::parse(TAX_CODES[i]).unwrap()
}

fn hasher() -> Hasher {
    let p = HashParams::INSECURE_FAST_FOR_TESTS;
    Hasher::new(
        p,
        p,
        p,
        Keyring::new(Pepper::new(KeyId(1), &[9u8; 32]).unwrap()),
    )
    .unwrap()
}

/// A record with a credential of `serial`, for the suite.
#[must_use]
pub fn sample_subject(tax_code: TaxCode, role: Role, email: &str, serial: u64) -> Subject {
    let mut rng = ChaCha20Rng::seed_from_u64(serial);
    let format = if role == Role::Employee {
        PinFormat::NoipaDigits5
    } else {
        PinFormat::InpsIssued16
    };
    let pin = format::generate(format, &mut rng);
    let hash = hasher().hash(&pin, &mut rng).unwrap();
    let contacts = Contacts {
        email: Some(Email::parse(email).unwrap()),
        ..Contacts::default()
    };
    Subject {
        tax_code,
        role,
        registered: contacts.clone(),
        contacts,
        cns_holder: false,
        enrolled_on: None,
        identified_at: None,
        represented_by: None,
        declaration: None,
        verified_pin: serial > 0,
        pending: Pending::None,
        credential: (serial > 0).then(|| Credential {
            serial,
            hash,
            format,
            level: Level::Online,
            stage: if role == Role::Employee {
                Stage::Active
            } else {
                Stage::MustChange
            },
            origin: Origin::Identification,
            issued_at: t0(),
            changed_at: None,
            first_used_at: None,
            parts: vec![Part {
                index: 1,
                of: 1,
                channel: Channel::Email,
                state: DeliveryState::Pending,
                updated_at: t0(),
                queued: None,
            }],
        }),
        last_serial: serial,
        resends: vec![],
        created_at: t0(),
    }
}

fn event(t: &TaxCode, action: &str) -> AuditEvent {
    AuditEvent {
        at: t0(),
        subject: t.clone(),
        actor: "system".into(),
        action: action.into(),
        outcome: "ok".into(),
        serial: None,
        channels: vec![],
        detail: String::new(),
    }
}

fn with_serial(mut s: Subject, serial: u64) -> Subject {
    let fresh = sample_subject(s.tax_code.clone(), s.role, "x@example.it", serial);
    s.credential = fresh.credential;
    s.last_serial = serial;
    s
}

/// Create, load, and refuse a second create.
pub fn create_and_load<S: Store>(store: &S) {
    let s = sample_subject(tax(0), Role::Employee, "mario@example.it", 1);
    assert!(
        store.load(&tax(0)).unwrap().is_none(),
        "empty store must load nothing"
    );
    let v = store.create(&s, &[event(&tax(0), "enrol")]).unwrap();
    let l = store
        .load(&tax(0))
        .unwrap()
        .expect("created subject must load");
    assert_eq!(l.subject, s, "the record must round-trip unchanged");
    assert_eq!(l.version, v, "load must return the version create returned");
    assert_eq!(
        l.attempts,
        Attempts {
            serial: 1,
            failures: 0,
            blocked: false
        },
        "fresh counter"
    );
    assert!(
        matches!(store.create(&s, &[]), Err(StoreError::Exists)),
        "second create is Exists"
    );
    assert_eq!(
        store.audit_log(Some(&tax(0))).unwrap().len(),
        1,
        "create appends its audit"
    );
}

/// Compare-and-swap saves.
pub fn compare_and_swap<S: Store>(store: &S) {
    let s = sample_subject(tax(0), Role::Employee, "mario@example.it", 1);
    let v1 = store.create(&s, &[]).unwrap();
    let mut next = s.clone();
    next.cns_holder = true;
    let v2 = store
        .save(&next, v1, AttemptsUpdate::Keep, &[event(&tax(0), "a")])
        .unwrap();
    assert_ne!(v1, v2, "a save must change the version");
    let stale = store.save(&s, v1, AttemptsUpdate::Keep, &[event(&tax(0), "b")]);
    assert!(
        matches!(stale, Err(StoreError::Conflict)),
        "a stale version must be a Conflict"
    );
    let l = store.load(&tax(0)).unwrap().unwrap();
    assert_eq!(l.subject, next, "a refused save must change nothing");
    let log = store.audit_log(Some(&tax(0))).unwrap();
    assert_eq!(
        log.len(),
        1,
        "a refused save must not append its audit events"
    );
    let other = sample_subject(tax(1), Role::Citizen, "x@example.it", 1);
    assert!(matches!(
        store.save(&other, 1, AttemptsUpdate::Keep, &[]),
        Err(StoreError::NotFound)
    ));
}

/// NOIPA-8: e-mail addresses are unique among NoiPA users, case-insensitively; INPS
/// subjects may share them.
pub fn noipa_email_unique<S: Store>(store: &S) {
    let a = sample_subject(tax(0), Role::Employee, "same@example.it", 1);
    store.create(&a, &[]).unwrap();
    let b = sample_subject(tax(1), Role::Employee, "SAME@Example.IT", 1);
    assert!(
        matches!(store.create(&b, &[]), Err(StoreError::EmailTaken)),
        "NOIPA-8 on create"
    );
    assert!(
        store.load(&tax(1)).unwrap().is_none(),
        "a refused create must leave nothing"
    );
    let b = sample_subject(tax(1), Role::Employee, "other@example.it", 1);
    let v = store.create(&b, &[]).unwrap();
    let mut b2 = b.clone();
    b2.contacts.email = Some(Email::parse("same@example.it").unwrap());
    assert!(
        matches!(
            store.save(&b2, v, AttemptsUpdate::Keep, &[]),
            Err(StoreError::EmailTaken)
        ),
        "NOIPA-8 on save"
    );
    let c = sample_subject(tax(2), Role::Citizen, "same@example.it", 1);
    store.create(&c, &[]).unwrap();
}

fn request(serial: u64, limit: u32, now: DateTime<Utc>) -> ReserveRequest {
    ReserveRequest {
        serial,
        limit,
        now,
        lease: TimeDelta::seconds(60),
    }
}

fn granted(r: Reservation) -> LeaseId {
    match r {
        Reservation::Granted { lease, .. } => lease,
        other => panic!("expected a granted reservation, got {other:?}"),
    }
}

/// The audit log explains the counter: its failures equal the wrong comparisons and the
/// unsettled attempts counted that the log records since the last match (POL-8).
pub fn assert_audit_explains_counter<S: Store>(store: &S, tax_code: &TaxCode) {
    let l = store.load(tax_code).unwrap().unwrap();
    let log = store.audit_log(Some(tax_code)).unwrap();
    assert_eq!(
        attempts::failures_explained(&log, l.attempts.serial),
        l.attempts.failures,
        "POL-8: the audit log must explain the counter {:?}",
        l.attempts
    );
}

/// Reserve and settle: `limit` wrong comparisons lock for good; `Locked` is final.
/// rule: INPS-12, POL-1, POL-5
pub fn attempts_lock_for_good<S: Store>(store: &S) {
    let s = sample_subject(tax(0), Role::Citizen, "a@example.it", 1);
    store.create(&s, &[]).unwrap();
    let ev = event(&tax(0), "verify");
    for i in 1..=3u32 {
        let r = store
            .reserve_attempt(&tax(0), &request(1, 3, t0()))
            .unwrap();
        assert_eq!(
            r,
            Reservation::Granted {
                lease: granted(r),
                failures: i - 1
            },
            "reservation {i} must be granted"
        );
        let settled = store
            .settle_attempt(&tax(0), 1, granted(r), 3, Settlement::Failure, &ev)
            .unwrap();
        assert_eq!(
            settled,
            Settled::Done {
                failures: i,
                blocked: i == 3,
                newly_blocked: i == 3
            }
        );
    }
    assert_eq!(
        store
            .reserve_attempt(&tax(0), &request(1, 3, t0()))
            .unwrap(),
        Reservation::Locked { newly: false }
    );
    let l = store.load(&tax(0)).unwrap().unwrap();
    assert!(l.attempts.blocked, "reaching the limit must block for good");
    assert_eq!(
        store
            .reserve_attempt(&tax(0), &request(1, 10, t0()))
            .unwrap(),
        Reservation::Locked { newly: false },
        "a blocked PIN stays blocked even under a higher limit (POL-5)"
    );
    assert_audit_explains_counter(store, &tax(0));
    assert_eq!(
        store
            .reserve_attempt(&tax(0), &request(7, 3, t0()))
            .unwrap(),
        Reservation::Stale
    );
    assert!(matches!(
        store.reserve_attempt(&tax(1), &request(1, 3, t0())),
        Err(StoreError::NotFound)
    ));
}

/// Compares in flight that fill the budget make an extra attempt `TryLater` — not counted,
/// not locked — and successes settle to zero failures.
/// rule: POL-8, INPS-12
pub fn in_flight_budget_is_try_later<S: Store>(store: &S) {
    let s = sample_subject(tax(0), Role::Citizen, "a@example.it", 1);
    store.create(&s, &[]).unwrap();
    let ev = event(&tax(0), "verify");
    let leases: Vec<LeaseId> = (0..3)
        .map(|_| {
            granted(
                store
                    .reserve_attempt(&tax(0), &request(1, 3, t0()))
                    .unwrap(),
            )
        })
        .collect();
    let extra = store
        .reserve_attempt(&tax(0), &request(1, 3, t0()))
        .unwrap();
    assert!(
        matches!(extra, Reservation::TryLater { retry_after } if !retry_after.is_zero()),
        "POL-8: a full budget in flight is TryLater, got {extra:?}"
    );
    let a = store.load(&tax(0)).unwrap().unwrap().attempts;
    assert_eq!(
        (a.failures, a.blocked),
        (0, false),
        "TryLater counts nothing"
    );
    for lease in leases {
        let settled = store
            .settle_attempt(&tax(0), 1, lease, 3, Settlement::Success, &ev)
            .unwrap();
        assert!(matches!(settled, Settled::Done { failures: 0, .. }));
    }
    let a = store.load(&tax(0)).unwrap().unwrap().attempts;
    assert_eq!((a.failures, a.blocked), (0, false), "successes never count");
    let _ = granted(
        store
            .reserve_attempt(&tax(0), &request(1, 3, t0()))
            .unwrap(),
    );
    assert_audit_explains_counter(store, &tax(0));
}

/// A reservation never settled (its process killed mid-compare) counts as a wrong PIN once
/// its lease expires — with an audit event — and its late settlement counts nothing more.
/// rule: POL-8, POL-1
pub fn expired_lease_counts_once<S: Store>(store: &S) {
    let s = sample_subject(tax(0), Role::Citizen, "a@example.it", 1);
    store.create(&s, &[]).unwrap();
    let ev = event(&tax(0), "verify");
    let dead = granted(
        store
            .reserve_attempt(&tax(0), &request(1, 10, t0()))
            .unwrap(),
    );
    let later = t0() + TimeDelta::seconds(61);
    let r = store
        .reserve_attempt(&tax(0), &request(1, 10, later))
        .unwrap();
    assert!(
        matches!(r, Reservation::Granted { failures: 1, .. }),
        "{r:?}"
    );
    let counted: Vec<AuditEvent> = store
        .audit_log(Some(&tax(0)))
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == attempts::UNSETTLED_COUNTED)
        .collect();
    assert_eq!(counted.len(), 1, "the counted attempt is in the audit log");
    let late = store
        .settle_attempt(&tax(0), 1, dead, 10, Settlement::Failure, &ev)
        .unwrap();
    assert!(
        matches!(late, Settled::Done { failures: 1, .. }),
        "{late:?}"
    );
    let _ = store
        .settle_attempt(&tax(0), 1, granted(r), 10, Settlement::Failure, &ev)
        .unwrap();
    assert_eq!(store.load(&tax(0)).unwrap().unwrap().attempts.failures, 2);
    assert_audit_explains_counter(store, &tax(0));
}

/// The counter follows saves: Keep, Fresh, CarryOver; a stale settle changes nothing.
pub fn counter_follows_saves<S: Store>(store: &S) {
    let s = sample_subject(tax(0), Role::Citizen, "a@example.it", 1);
    let mut v = store.create(&s, &[]).unwrap();
    let ev = event(&tax(0), "verify");
    for _ in 1..=2 {
        let lease = granted(
            store
                .reserve_attempt(&tax(0), &request(1, 10, t0()))
                .unwrap(),
        );
        let _ = store
            .settle_attempt(&tax(0), 1, lease, 10, Settlement::Failure, &ev)
            .unwrap();
    }
    let mut keep = s.clone();
    keep.cns_holder = true;
    v = store.save(&keep, v, AttemptsUpdate::Keep, &[]).unwrap();
    assert_eq!(
        store.load(&tax(0)).unwrap().unwrap().attempts.failures,
        2,
        "Keep keeps"
    );
    let in_flight = granted(
        store
            .reserve_attempt(&tax(0), &request(1, 10, t0()))
            .unwrap(),
    );
    let s2 = with_serial(keep, 2);
    v = store.save(&s2, v, AttemptsUpdate::CarryOver, &[]).unwrap();
    let a = store.load(&tax(0)).unwrap().unwrap().attempts;
    assert_eq!(
        a,
        Attempts {
            serial: 2,
            failures: 2,
            blocked: false
        },
        "CarryOver moves the count"
    );
    assert_eq!(
        store
            .reserve_attempt(&tax(0), &request(1, 10, t0()))
            .unwrap(),
        Reservation::Stale,
        "old serial"
    );
    let stale = store
        .settle_attempt(&tax(0), 1, in_flight, 10, Settlement::Success, &ev)
        .unwrap();
    assert_eq!(
        stale,
        Settled::Stale,
        "BOTH-1: the compare was of a replaced PIN"
    );
    assert_eq!(
        store.load(&tax(0)).unwrap().unwrap().attempts.failures,
        2,
        "stale settle: no-op"
    );
    let s3 = with_serial(s2, 3);
    store.save(&s3, v, AttemptsUpdate::Fresh, &[]).unwrap();
    let a = store.load(&tax(0)).unwrap().unwrap().attempts;
    assert_eq!(
        a,
        Attempts {
            serial: 3,
            failures: 0,
            blocked: false
        },
        "Fresh resets"
    );
    // The lease of the replaced credential holds no place in the new budget.
    for _ in 0..10 {
        let _ = granted(
            store
                .reserve_attempt(&tax(0), &request(3, 10, t0()))
                .unwrap(),
        );
    }
}

/// Pepper-key fingerprints: recorded once per key id, never overwritten.
pub fn key_fingerprints_recorded_once<S: Store>(store: &S) {
    assert!(store.key_fingerprints().unwrap().is_empty());
    let a = KeyFingerprint([1; 32]);
    let b = KeyFingerprint([2; 32]);
    assert_eq!(store.record_key_fingerprint(KeyId(1), &a).unwrap(), a);
    assert_eq!(
        store.record_key_fingerprint(KeyId(1), &b).unwrap(),
        a,
        "a recorded fingerprint is never replaced"
    );
    assert_eq!(store.record_key_fingerprint(KeyId(2), &b).unwrap(), b);
    let mut all = store.key_fingerprints().unwrap();
    all.sort_by_key(|(id, _)| *id);
    assert_eq!(all, vec![(KeyId(1), a), (KeyId(2), b)]);
}

/// The audit log keeps order and filters by subject.
pub fn audit_log_order<S: Store>(store: &S) {
    store
        .create(
            &sample_subject(tax(0), Role::Citizen, "a@example.it", 0),
            &[],
        )
        .unwrap();
    store
        .create(
            &sample_subject(tax(1), Role::Citizen, "b@example.it", 0),
            &[],
        )
        .unwrap();
    let events: Vec<AuditEvent> = (0..5)
        .map(|i| event(&tax(i % 2), &format!("step{i}")))
        .collect();
    store.append_audit(&events[..3]).unwrap();
    store.append_audit(&events[3..]).unwrap();
    assert_eq!(
        store.audit_log(None).unwrap(),
        events,
        "all events, oldest first"
    );
    let mine: Vec<AuditEvent> = events
        .iter()
        .filter(|e| e.subject == tax(1))
        .cloned()
        .collect();
    assert_eq!(
        store.audit_log(Some(&tax(1))).unwrap(),
        mine,
        "filtered by subject"
    );
}

/// The audit log read page by page ([`Store::audit_page`]): every event once, in order, ids
/// 1, 2, 3, … and an empty page at the end; a store that chains its log gives each row's
/// link, the stored text being the event and each `prev_hash` the hash before it.
pub fn audit_pages<S: Store>(store: &S) {
    let events: Vec<AuditEvent> = (0..5)
        .map(|i| event(&tax(i % 2), &format!("step{i}")))
        .collect();
    store.append_audit(&events).unwrap();
    let mut all = Vec::new();
    let mut after = 0;
    loop {
        let page = store.audit_page(after, 2).unwrap();
        assert!(page.len() <= 2, "a page holds at most `limit` rows");
        let Some(last) = page.last() else { break };
        after = last.id;
        all.extend(page);
    }
    assert_eq!(
        all.iter().map(|r| r.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(
        all.iter().map(|r| r.event.clone()).collect::<Vec<_>>(),
        events
    );
    assert!(store.audit_page(5, 10).unwrap().is_empty());
    assert_eq!(store.audit_page(3, 1).unwrap()[0].id, 4);
    let mut prev = crate::audit::chain::GENESIS;
    for record in &all {
        if let Some(link) = &record.link {
            assert_eq!(
                link.prev_hash, prev,
                "row {} links to the one before",
                record.id
            );
            assert_eq!(
                crate::audit::chain::read_event(record.event.subject.as_str(), &link.stored)
                    .unwrap(),
                record.event
            );
            prev = link.hash;
        }
    }
}

/// [`Store::hashes_per_key`] counts the current credentials' hashes by pepper key id.
pub fn hashes_per_key_counts<S: Store>(store: &S) {
    assert_eq!(store.hashes_per_key().unwrap(), Vec::new());
    let with = |i: usize, serial: u64| {
        sample_subject(tax(i), Role::Citizen, &format!("k{i}@example.it"), serial)
    };
    store.create(&with(0, 1), &[]).unwrap();
    store.create(&with(1, 2), &[]).unwrap();
    store.create(&with(2, 0), &[]).unwrap();
    let id = with(0, 1).credential.unwrap().hash.key_id;
    assert_eq!(store.hashes_per_key().unwrap(), vec![(id, 2)]);
    // A credential rehashed under another key moves to that key's count.
    let loaded = store.load(&tax(1)).unwrap().unwrap();
    let mut moved = loaded.subject.clone();
    if let Some(c) = moved.credential.as_mut() {
        c.hash.key_id = KeyId(id.0 + 1);
    }
    let _ = store
        .save(&moved, loaded.version, AttemptsUpdate::Keep, &[])
        .unwrap();
    assert_eq!(
        store.hashes_per_key().unwrap(),
        vec![(id, 1), (KeyId(id.0 + 1), 1)]
    );
}

/// Many threads reserving at once: exactly `limit` wrong comparisons are granted.
/// rule: INPS-12, POL-8
pub fn concurrent_reservations<S: Store + Sync>(store: &S) {
    let s = sample_subject(tax(0), Role::Citizen, "a@example.it", 1);
    store.create(&s, &[]).unwrap();
    let granted_n = std::sync::atomic::AtomicU32::new(0);
    std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                let ev = event(&tax(0), "verify");
                for _ in 0..40 {
                    match store
                        .reserve_attempt(&tax(0), &request(1, 10, t0()))
                        .unwrap()
                    {
                        Reservation::Granted { lease, .. } => {
                            granted_n.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            let _ = store
                                .settle_attempt(&tax(0), 1, lease, 10, Settlement::Failure, &ev)
                                .unwrap();
                        }
                        Reservation::TryLater { .. } => std::thread::yield_now(),
                        Reservation::Locked { .. } => break,
                        Reservation::Stale => panic!("the serial did not change"),
                    }
                }
            });
        }
    });
    assert_eq!(
        granted_n.into_inner(),
        10,
        "exactly the limit may be granted"
    );
    assert!(store.load(&tax(0)).unwrap().unwrap().attempts.blocked);
    assert_audit_explains_counter(store, &tax(0));
}

/// The queue of the outbound call (INPS-6, INPS-7): only the records waiting, oldest
/// request first, ties by tax code; a record that stops waiting leaves it. Also: the facts
/// added to the record later (declaration, verified PIN) round-trip.
pub fn outbound_queue_oldest_first<S: Store>(store: &S) {
    use crate::subject::{Declaration, Pending, Representation};
    assert!(store.awaiting_outbound().unwrap().is_empty(), "empty store");
    let waiting = |i: usize, minutes: i64| {
        let mut s = sample_subject(tax(i), Role::Citizen, &format!("p{i}@example.it"), 0);
        s.pending = Pending::OutboundVerification {
            origin: Origin::Web,
            since: t0() + chrono::Duration::minutes(minutes),
        };
        s
    };
    // Created in another order than they wait; tax(3) does not wait at all.
    let mut late = waiting(0, 30);
    late.declaration = Some(Declaration {
        role: Representation::Guardian,
        received_by: "branch_operator:B1".to_owned(),
        at: t0(),
    });
    late.verified_pin = true;
    let first = waiting(1, 10);
    let idle = sample_subject(tax(2), Role::Citizen, "p2@example.it", 1);
    for s in [&late, &idle, &first] {
        store.create(s, &[event(&s.tax_code, "enrol")]).unwrap();
    }
    let queue = store.awaiting_outbound().unwrap();
    let order: Vec<&TaxCode> = queue.iter().map(|s| &s.tax_code).collect();
    assert_eq!(
        order,
        vec![&tax(1), &tax(0)],
        "oldest first, only the waiting"
    );
    assert_eq!(
        queue.last(),
        Some(&late),
        "the record round-trips unchanged"
    );
    // Once the call is made, the record leaves the queue.
    let l = store.load(&tax(1)).unwrap().unwrap();
    let mut done = l.subject;
    done.pending = Pending::None;
    let _ = store
        .save(&done, l.version, AttemptsUpdate::Keep, &[])
        .unwrap();
    let left: Vec<TaxCode> = store
        .awaiting_outbound()
        .unwrap()
        .into_iter()
        .map(|s| s.tax_code)
        .collect();
    assert_eq!(left, vec![tax(0)]);
}

/// The delivery queue ([`Store::due_deliveries`]): a saved record with a sealed part is
/// found when due — earliest first, at most `limit`, ties by tax code — not before, and no
/// longer once the receipt erased the copy; the sealed copy round-trips unchanged.
pub fn delivery_queue_due_first<S: Store>(store: &S) {
    use crate::delivery::Queued;
    let min = chrono::Duration::minutes;
    assert!(
        store
            .due_deliveries(t0() + min(600), 10)
            .unwrap()
            .is_empty()
    );
    let keys = Keyring::new(Pepper::new(KeyId(1), &[9u8; 32]).unwrap());
    let queued = |i: usize, due: i64| {
        let mut s = sample_subject(tax(i), Role::Citizen, &format!("q{i}@example.it"), 1);
        let cred = s.credential.as_mut().unwrap();
        let d = crate::command::Delivery {
            subject: s.tax_code.clone(),
            serial: 1,
            part: 1,
            of: 1,
            channel: Channel::Email,
            recipient: format!("q{i}@example.it"),
            secret: crate::secret::Pin::from_string("A7KQ2MXPA7KQ2MXP".into()),
            origin: Origin::Identification,
        };
        cred.parts[0].queued = Some(Queued {
            sealed: crate::delivery::seal(&keys, &d, [u8::try_from(i).unwrap(); 24]),
            tries: 2,
            due_at: t0() + min(due),
        });
        s
    };
    // Created in another order than they are due.
    let late = queued(0, 30);
    let early = queued(1, 10);
    let idle = sample_subject(tax(2), Role::Citizen, "q2@example.it", 1);
    for s in [&late, &idle, &early] {
        store.create(s, &[event(&s.tax_code, "enrol")]).unwrap();
    }
    assert!(
        store.due_deliveries(t0(), 10).unwrap().is_empty(),
        "none due yet"
    );
    assert_eq!(
        store.due_deliveries(t0() + min(10), 10).unwrap(),
        vec![tax(1)]
    );
    assert_eq!(
        store.due_deliveries(t0() + min(60), 10).unwrap(),
        vec![tax(1), tax(0)],
        "earliest first, only the queued"
    );
    assert_eq!(
        store.due_deliveries(t0() + min(60), 1).unwrap(),
        vec![tax(1)]
    );
    let back = store.load(&tax(0)).unwrap().unwrap().subject;
    assert_eq!(back, late, "the sealed copy round-trips unchanged");
    // Claimed (due later) it leaves the window; receipted it leaves the queue.
    let l = store.load(&tax(1)).unwrap().unwrap();
    let mut claimed = l.subject;
    let _ = crate::delivery::claim(claimed.credential.as_mut().unwrap(), t0() + min(60), min(2));
    let v = store
        .save(&claimed, l.version, AttemptsUpdate::Keep, &[])
        .unwrap();
    assert_eq!(
        store.due_deliveries(t0() + min(60), 10).unwrap(),
        vec![tax(0)]
    );
    let mut sent = claimed;
    sent.credential.as_mut().unwrap().parts[0].set_state(DeliveryState::Sent, t0() + min(61));
    let _ = store.save(&sent, v, AttemptsUpdate::Keep, &[]).unwrap();
    assert_eq!(
        store.due_deliveries(t0() + min(600), 10).unwrap(),
        vec![tax(0)]
    );
}

/// Runs every check, each on a fresh store from `make`.
pub fn run_all<S: Store + Sync>(make: impl Fn() -> S) {
    create_and_load(&make());
    compare_and_swap(&make());
    noipa_email_unique(&make());
    attempts_lock_for_good(&make());
    in_flight_budget_is_try_later(&make());
    expired_lease_counts_once(&make());
    counter_follows_saves(&make());
    key_fingerprints_recorded_once(&make());
    audit_log_order(&make());
    audit_pages(&make());
    hashes_per_key_counts(&make());
    concurrent_reservations(&make());
    lockout::run_all(&make);
    outbound_queue_oldest_first(&make());
    delivery_queue_due_first(&make());
    population::run_all(&make);
}

pub mod lockout;
pub mod population;

#[cfg(test)]
mod tests {
    // rule: NOIPA-8 — the in-memory store passes the suite, e-mail uniqueness included.
    #[test]
    fn memory_store_conforms() {
        super::run_all(crate::memory::MemoryStore::new);
    }
}

/// Helpers for adapters' own tests and benchmarks: a cheap policy, a service over any store,
/// a NoiPA enrolment that returns the PIN delivered, synthetic valid tax codes.
pub mod support {
    use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    use crate::actor::Actor;
    use crate::command::{Command, Enrolment};
    use crate::contact::{Contacts, Email};
    use crate::hash::{HashParams, Keyring};
    use crate::notify::MemoryOutbox;
    use crate::policy::Policy;
    use crate::secret::{KeyId, Pepper};
    use crate::service::PinService;
    use crate::store::Store;
    use crate::subject::Role;
    use crate::tax_code::TaxCode;

    /// A service over `S` with an in-memory outbox and a seeded ChaCha20 generator.
    pub type TestService<S> = PinService<S, MemoryOutbox, ChaCha20Rng>;

    /// 2026-01-15 09:00 UTC.
    #[must_use]
    pub fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0).single().unwrap()
    }

    /// Cheap Argon2 (tests only) and generous re-send limits.
    #[must_use]
    pub fn policy() -> Policy {
        let fast = HashParams::INSECURE_FAST_FOR_TESTS;
        Policy::builder()
            .hash_live(fast)
            .hash_floor(fast)
            .resend_limit(1_000)
            .resend_window(Duration::hours(1))
            .build()
            .unwrap()
    }

    /// A service over `store` with [`policy`], the pepper `pepper` (key id 1) and a generator
    /// seeded with `seed`.
    pub fn service<S: Store>(store: S, seed: u64, pepper: &[u8]) -> TestService<S> {
        let keys = Keyring::new(Pepper::new(KeyId(1), pepper).unwrap());
        PinService::new(
            store,
            MemoryOutbox::new(),
            policy(),
            keys,
            ChaCha20Rng::seed_from_u64(seed),
        )
        .unwrap()
    }

    /// A parsed e-mail address.
    #[must_use]
    pub fn email(s: &str) -> Email {
        Email::parse(s).unwrap()
    }

    /// Enrols a NoiPA employee at [`t0`] (a PIN is issued at once by e-mail, NOIPA-2) and
    /// returns the PIN delivered.
    pub fn enrol_noipa<S: Store>(svc: &TestService<S>, t: &TaxCode, mail: &str) -> String {
        let contacts = Contacts {
            email: Some(email(mail)),
            ..Contacts::default()
        };
        let cmd = Command::Enrol(Enrolment {
            role: Role::Employee,
            contacts,
            cns_holder: false,
            enrolled_on: NaiveDate::from_ymd_opt(2020, 3, 2),
        });
        let _ = svc
            .execute(t, &Actor::Rid("rid-1".into()), &cmd, t0())
            .unwrap();
        take_pin(svc)
    }

    /// The PIN in the outbox: its parts joined in order.
    pub fn take_pin<S: Store>(svc: &TestService<S>) -> String {
        let mut parts: Vec<_> = svc
            .notifier()
            .take()
            .into_iter()
            .map(|m| {
                (
                    m.delivery.part,
                    m.delivery.secret.expose_secret().to_owned(),
                )
            })
            .collect();
        assert!(!parts.is_empty(), "a PIN was delivered");
        parts.sort_by_key(|p| p.0);
        parts.into_iter().map(|p| p.1).collect()
    }

    /// A wrong PIN of the same shape as `pin`.
    #[must_use]
    pub fn wrong(pin: &str) -> String {
        pin.chars()
            .map(|c| match c {
                '0'..='8' | 'A'..='Y' => char::from(c as u8 + 1),
                '9' => '0',
                'Z' => '2',
                other => other,
            })
            .map(|c| if c == 'I' || c == 'O' { 'J' } else { c })
            .collect()
    }

    /// The i-th valid tax code of a synthetic population (distinct for i < 26^6).
    #[must_use]
    pub fn synthetic_tax_code(i: u64) -> TaxCode {
        const ODD: [u32; 26] = [
            1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25,
            24, 23,
        ];
        let mut letters = [b'A'; 6];
        let mut n = i;
        for l in letters.iter_mut().rev() {
            *l = b'A' + u8::try_from(n % 26).unwrap();
            n /= 26;
        }
        let mut s = String::from_utf8(letters.to_vec()).unwrap();
        s.push_str("80A01H501");
        let mut sum = 0;
        for (pos, c) in s.chars().enumerate() {
            let v = if c.is_ascii_digit() {
                c as u32 - '0' as u32
            } else {
                c as u32 - 'A' as u32
            };
            sum += if pos % 2 == 0 {
                ODD[usize::try_from(v).unwrap()]
            } else {
                v
            };
        }
        s.push(char::from(b'A' + u8::try_from(sum % 26).unwrap()));
        TaxCode::parse(&s).unwrap()
    }
}
