//! The durable delivery queue (issue #12): every issued PIN reaches its channel or is known
//! to have failed; nothing secret at rest; failed deliveries do not spend the person's
//! re-send budget.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use chrono::{DateTime, Duration, Utc};
use pin_core::command::{Command, Delivery, Enrolment, Notice};
use pin_core::hash::Keyring;
use pin_core::memory::MemoryStore;
use pin_core::notify::{DeliveryError, Notifier, Receipt};
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::{DeliveryMode, DriverOptions, PinService};
use pin_core::store::Store;
use pin_core::subject::{DeliveryState, Role};
use pin_core::{Actor, Level, Policy, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::harness::{GIUSEPPE, MARIO, PEPPER, cheap_policy, date, email_only, t0, tax};

/// What the channel does with the next message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Up,
    Down,
    Refuse,
}

/// What the channel took: tax code, serial, part, message id, secret.
type Taken = (String, u64, u8, String, String);

/// A channel that can be switched off and on, keeping what it delivered (with the message
/// ids it saw) and counting every call.
#[derive(Debug)]
struct Channel {
    mode: Mutex<Mode>,
    calls: AtomicU32,
    notices: AtomicU32,
    got: Mutex<Vec<Taken>>,
}

impl Channel {
    fn new(mode: Mode) -> Self {
        Self {
            mode: Mutex::new(mode),
            calls: AtomicU32::new(0),
            notices: AtomicU32::new(0),
            got: Mutex::new(Vec::new()),
        }
    }
    fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }
    /// (tax code, serial, part, message id, secret) of every message taken.
    fn taken(&self) -> Vec<Taken> {
        std::mem::take(&mut *self.got.lock().unwrap())
    }
}

impl Notifier for Channel {
    fn deliver(&self, d: &Delivery) -> Result<Receipt, DeliveryError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match *self.mode.lock().unwrap() {
            Mode::Down => Err(DeliveryError::Unavailable("relay down".into())),
            Mode::Refuse => Err(DeliveryError::Refused("550 no such mailbox".into())),
            Mode::Up => {
                self.got.lock().unwrap().push((
                    d.subject.as_str().to_owned(),
                    d.serial,
                    d.part,
                    d.message_id(),
                    d.secret.expose_secret().to_owned(),
                ));
                Ok(Receipt::Sent)
            }
        }
    }
    fn notify(&self, _: &Notice) -> Result<Receipt, DeliveryError> {
        self.notices.fetch_add(1, Ordering::SeqCst);
        Ok(Receipt::Sent)
    }
}

type Svc<'a> = PinService<&'a MemoryStore, &'a Channel, ChaCha20Rng>;

fn keys() -> Keyring {
    Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap())
}

fn svc<'a>(store: &'a MemoryStore, channel: &'a Channel, mode: DeliveryMode) -> Svc<'a> {
    PinService::new(
        store,
        channel,
        cheap_policy().build().unwrap(),
        keys(),
        ChaCha20Rng::seed_from_u64(3),
    )
    .unwrap()
    .with_options(DriverOptions::default().with_delivery(mode))
}

fn enrol(s: &Svc<'_>, code: &str, now: DateTime<Utc>) -> pin_core::service::Executed {
    s.execute(
        &tax(code),
        &Actor::Rid("rid-1".into()),
        &Command::Enrol(Enrolment {
            role: Role::Employee,
            contacts: email_only("mario.rossi@example.it"),
            cns_holder: false,
            enrolled_on: Some(date(2020, 9, 1)),
        }),
        now,
    )
    .unwrap()
}

fn accepted(s: &Svc<'_>, code: &str, pin: &str, now: DateTime<Utc>) -> bool {
    matches!(
        s.verify(&tax(code), pin, Level::Online, now).unwrap(),
        VerifyOutcome::Accepted { .. }
    )
}

fn part_state(store: &MemoryStore, code: &str) -> (DeliveryState, bool) {
    let c = store
        .load(&tax(code))
        .unwrap()
        .unwrap()
        .subject
        .credential
        .unwrap();
    (c.parts[0].state, c.parts[0].queued.is_some())
}

#[test]
fn an_unavailable_channel_leaves_the_part_due_and_the_worker_delivers_it_later() {
    // rule: BOTH-2 — while it waits, the record holds the part sealed, never in clear.
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Down);
    let s = svc(&store, &channel, DeliveryMode::Inline);
    let done = enrol(&s, MARIO, t0());
    assert_eq!(done.deliveries[0].state, DeliveryState::Pending);
    assert!(done.receipts_saved);
    let record = store.load(&tax(MARIO)).unwrap().unwrap().subject;
    let json = serde_json::to_string(&record).unwrap();
    let q = record.credential.as_ref().unwrap().parts[0]
        .queued
        .clone()
        .unwrap();
    assert_eq!(q.tries, 1, "the inline try counts");
    assert!(
        q.due_at > t0(),
        "due again after a backoff, not in a tight loop"
    );
    // Nothing due yet.
    assert!(s.deliver_due(t0(), 10).unwrap().parts.is_empty());
    // The channel comes back; the worker delivers at the due time.
    channel.set(Mode::Up);
    let run = s.deliver_due(q.due_at, 10).unwrap();
    assert_eq!((run.delivered(), run.deferred(), run.failed()), (1, 0, 0));
    let got = channel.taken();
    assert_eq!(got.len(), 1);
    let pin = got[0].4.clone();
    assert!(
        !json.contains(&pin),
        "the record held the PIN in clear: {json}"
    );
    assert_eq!(part_state(&store, MARIO), (DeliveryState::Sent, false));
    assert!(accepted(&s, MARIO, &pin, q.due_at));
    // Nothing more to do: the receipt erased the sealed copy.
    assert!(
        s.deliver_due(q.due_at + Duration::days(1), 10)
            .unwrap()
            .parts
            .is_empty()
    );
}

#[test]
fn a_deferred_service_never_calls_the_channel_inside_the_request() {
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Up);
    let s = svc(&store, &channel, DeliveryMode::Deferred);
    let done = enrol(&s, MARIO, t0());
    assert_eq!(channel.calls.load(Ordering::SeqCst), 0);
    assert_eq!(done.deliveries[0].state, DeliveryState::Pending);
    assert_eq!(done.deliveries[0].error, None);
    let run = s.deliver_due(t0(), 10).unwrap();
    assert_eq!(run.delivered(), 1);
    let got = channel.taken();
    assert!(accepted(&s, MARIO, &got[0].4, t0()));
}

/// A store whose saves fail from the n-th on: a process that dies right after the commit.
pub(crate) struct DiesAfter<'a> {
    pub(crate) inner: &'a MemoryStore,
    pub(crate) saves_left: AtomicU32,
}

impl pin_core::store::Store for DiesAfter<'_> {
    fn load(
        &self,
        t: &pin_core::tax_code::TaxCode,
    ) -> Result<Option<pin_core::store::Loaded>, pin_core::store::StoreError> {
        self.inner.load(t)
    }
    fn create(
        &self,
        s: &pin_core::subject::Subject,
        a: &[pin_core::audit::AuditEvent],
    ) -> Result<u64, pin_core::store::StoreError> {
        self.inner.create(s, a)
    }
    fn save(
        &self,
        s: &pin_core::subject::Subject,
        v: u64,
        u: pin_core::command::AttemptsUpdate,
        a: &[pin_core::audit::AuditEvent],
    ) -> Result<u64, pin_core::store::StoreError> {
        if self
            .saves_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(pin_core::store::StoreError::Unavailable("disk gone".into()));
        }
        self.inner.save(s, v, u, a)
    }
    fn reserve_attempt(
        &self,
        t: &pin_core::tax_code::TaxCode,
        r: &pin_core::store::ReserveRequest,
    ) -> Result<pin_core::store::Reservation, pin_core::store::StoreError> {
        self.inner.reserve_attempt(t, r)
    }
    fn settle_attempt(
        &self,
        t: &pin_core::tax_code::TaxCode,
        serial: u64,
        lease: pin_core::store::LeaseId,
        limit: u32,
        s: pin_core::store::Settlement,
        a: &pin_core::audit::AuditEvent,
    ) -> Result<pin_core::store::Settled, pin_core::store::StoreError> {
        self.inner.settle_attempt(t, serial, lease, limit, s, a)
    }
    fn audit_log(
        &self,
        t: Option<&pin_core::tax_code::TaxCode>,
    ) -> Result<Vec<pin_core::audit::AuditEvent>, pin_core::store::StoreError> {
        self.inner.audit_log(t)
    }
    fn key_fingerprints(
        &self,
    ) -> Result<Vec<(KeyId, pin_core::keycheck::KeyFingerprint)>, pin_core::store::StoreError> {
        self.inner.key_fingerprints()
    }
    fn record_key_fingerprint(
        &self,
        id: KeyId,
        f: &pin_core::keycheck::KeyFingerprint,
    ) -> Result<pin_core::keycheck::KeyFingerprint, pin_core::store::StoreError> {
        self.inner.record_key_fingerprint(id, f)
    }
    fn append_audit(
        &self,
        events: &[pin_core::audit::AuditEvent],
    ) -> Result<(), pin_core::store::StoreError> {
        self.inner.append_audit(events)
    }
}

#[test]
fn a_receipt_lost_after_the_send_means_a_second_send_of_the_same_pin_never_a_lost_one() {
    // The command commits, the channel takes the message, then the store fails: the command
    // still answers Ok (repeating it would kill the delivered PIN), and the part stays due.
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Up);
    let dying = DiesAfter {
        inner: &store,
        saves_left: AtomicU32::new(0),
    };
    let s = PinService::new(
        &dying,
        &channel,
        cheap_policy().build().unwrap(),
        keys(),
        ChaCha20Rng::seed_from_u64(5),
    )
    .unwrap();
    let done = s
        .execute(
            &tax(MARIO),
            &Actor::Rid("rid-1".into()),
            &Command::Enrol(Enrolment {
                role: Role::Employee,
                contacts: email_only("mario.rossi@example.it"),
                cns_holder: false,
                enrolled_on: Some(date(2020, 9, 1)),
            }),
            t0(),
        )
        .expect("a committed command answers Ok");
    assert!(!done.receipts_saved);
    let first = channel.taken();
    assert_eq!(first.len(), 1);
    // A fresh process (the store works again) runs the worker: nothing before the claim
    // expires, then the same message again, same id, same PIN.
    let restarted = svc(&store, &channel, DeliveryMode::Inline);
    assert!(
        restarted
            .deliver_due(t0() + Duration::seconds(10), 10)
            .unwrap()
            .parts
            .is_empty()
    );
    let later = t0() + Policy::default().delivery_claim();
    let run = restarted.deliver_due(later, 10).unwrap();
    assert_eq!(run.delivered(), 1);
    let second = channel.taken();
    assert_eq!(
        second[0].3, first[0].3,
        "same message id: the channel can drop the copy"
    );
    assert_eq!(second[0].4, first[0].4, "the same PIN, not a new one");
    assert!(accepted(&restarted, MARIO, &second[0].4, later));
}

#[test]
fn a_refused_part_fails_for_good_and_the_fresh_pin_does_not_spend_the_resend_budget() {
    // rule: POL-3 — a failed delivery is recovered by a fresh PIN, and its sealed copy is
    // erased; rule: POL-4 — re-sends that replace failed deliveries are not counted.
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Refuse);
    let s = svc(&store, &channel, DeliveryMode::Inline);
    let done = enrol(&s, MARIO, t0());
    assert_eq!(done.deliveries[0].state, DeliveryState::Failed);
    assert_eq!(part_state(&store, MARIO), (DeliveryState::Failed, false));
    // rule: POL-6 — the person is told, on the contacts on record, how to recover.
    assert!(
        done.notices
            .iter()
            .any(|n| n.kind == pin_core::command::NoticeKind::DeliveryFailed && n.sent),
        "{:?}",
        done.notices
    );
    // Ten re-sends in an hour, every one refused by the channel: none is counted.
    for i in 0..10 {
        let at = t0() + Duration::minutes(i * 5 + 1);
        let r = s
            .execute(&tax(MARIO), &Actor::Subject, &Command::Resend, at)
            .unwrap();
        assert_eq!(r.deliveries[0].state, DeliveryState::Failed);
    }
    assert!(
        store
            .load(&tax(MARIO))
            .unwrap()
            .unwrap()
            .subject
            .resends
            .is_empty()
    );
    // The address is fixed at the channel's end: the next re-send arrives, and counts.
    channel.set(Mode::Up);
    let at = t0() + Duration::hours(1);
    let _ = s
        .execute(&tax(MARIO), &Actor::Subject, &Command::Resend, at)
        .unwrap();
    let got = channel.taken();
    assert_eq!(got.len(), 1);
    assert!(
        store
            .load(&tax(MARIO))
            .unwrap()
            .unwrap()
            .subject
            .resends
            .is_empty()
    );
    // A re-send of a PIN that did arrive is what POL-4 counts.
    let at = at + Duration::minutes(1);
    let _ = s
        .execute(&tax(MARIO), &Actor::Subject, &Command::Resend, at)
        .unwrap();
    assert_eq!(
        store
            .load(&tax(MARIO))
            .unwrap()
            .unwrap()
            .subject
            .resends
            .len(),
        1
    );
    let got = channel.taken();
    assert!(accepted(&s, MARIO, &got[0].4, at));
}

#[test]
fn a_part_undeliverable_past_the_deadline_fails_and_the_person_can_ask_again() {
    // rule: POL-3 — past the delivery deadline the part is failed, not retried forever.
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Down);
    let s = svc(&store, &channel, DeliveryMode::Deferred);
    let _ = enrol(&s, MARIO, t0());
    let mut now = t0();
    let mut tries = 0;
    let deadline = t0() + Policy::default().delivery_deadline();
    loop {
        let run = s.deliver_due(now, 10).unwrap();
        tries += run.parts.len();
        if run.failed() == 1 {
            assert!(run.parts[0].gave_up);
            assert!(
                run.notices
                    .iter()
                    .any(|n| n.kind == pin_core::command::NoticeKind::DeliveryFailed),
                "the person is told: {run:?}"
            );
            break;
        }
        assert!(now <= deadline + Duration::hours(1), "never gave up");
        now += Duration::minutes(5);
    }
    assert!(now >= deadline);
    // Backoff: far fewer tries than 5-minute polls over 24 hours (288).
    assert!(tries < 120, "{tries} tries");
    assert_eq!(part_state(&store, MARIO), (DeliveryState::Failed, false));
    let audit = store.audit_log(Some(&tax(MARIO))).unwrap();
    assert!(audit.iter().any(|e| e.outcome == "undeliverable"));
}

#[test]
fn a_part_of_a_replaced_pin_is_never_sent() {
    // rule: BOTH-1 — only the last PIN issued is valid: the queue holds no older one.
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Down);
    let s = svc(&store, &channel, DeliveryMode::Inline);
    let _ = enrol(&s, MARIO, t0());
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::Subject,
            &Command::Resend,
            t0() + Duration::minutes(1),
        )
        .unwrap();
    channel.set(Mode::Up);
    let run = s.deliver_due(t0() + Duration::hours(1), 10).unwrap();
    assert_eq!(run.delivered(), 1);
    let got = channel.taken();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].1, 2, "serial 2 only");
}

#[test]
fn a_retired_key_makes_the_waiting_part_fail_not_hang() {
    // rule: POL-3 — a sealed copy nobody can open is a failed delivery: a fresh issue follows.
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Down);
    let s = svc(&store, &channel, DeliveryMode::Inline);
    let _ = enrol(&s, MARIO, t0());
    drop(s);
    channel.set(Mode::Up);
    // Rotated: the new key is current and the old one kept for the hashes. Still opens.
    let rotated = Keyring::new(Pepper::new(KeyId(2), &[0x33; 32]).unwrap())
        .with_previous(Pepper::new(KeyId(1), &PEPPER).unwrap());
    let s2 = PinService::new(
        &store,
        &channel,
        cheap_policy().build().unwrap(),
        rotated,
        ChaCha20Rng::seed_from_u64(9),
    )
    .unwrap();
    let later = t0() + Duration::hours(1);
    assert_eq!(s2.deliver_due(later, 10).unwrap().delivered(), 1);
    let got = channel.taken();
    assert!(accepted(&s2, MARIO, &got[0].4, later));
    // A second person's part sealed under key 1, then key 1 gone for good: failed.
    channel.set(Mode::Down);
    let s1 = svc(&store, &channel, DeliveryMode::Inline);
    enrol_other(&s1, GIUSEPPE, later);
    drop(s1);
    channel.set(Mode::Up);
    let only_new = Keyring::new(Pepper::new(KeyId(2), &[0x33; 32]).unwrap());
    let s3 = PinService::new(
        &store,
        &channel,
        cheap_policy().build().unwrap(),
        only_new,
        ChaCha20Rng::seed_from_u64(9),
    )
    .unwrap();
    let run = s3.deliver_due(later + Duration::hours(1), 10).unwrap();
    assert_eq!(run.failed(), 1, "{run:?}");
    assert!(
        run.parts[0]
            .delivery
            .error
            .as_deref()
            .unwrap()
            .contains("key")
    );
    assert!(channel.taken().is_empty());
}

fn enrol_other(s: &Svc<'_>, code: &str, now: DateTime<Utc>) {
    let _ = s
        .execute(
            &tax(code),
            &Actor::Rid("rid-1".into()),
            &Command::Enrol(Enrolment {
                role: Role::Employee,
                contacts: email_only(&format!("{}@example.it", code.to_lowercase())),
                cns_holder: false,
                enrolled_on: Some(date(2020, 9, 1)),
            }),
            now,
        )
        .unwrap();
}

#[test]
fn a_relay_down_during_a_hundred_issues_loses_none_of_them() {
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Down);
    let s = svc(&store, &channel, DeliveryMode::Inline);
    let codes = crate::harness::valid_codes(100);
    for (i, code) in codes.iter().enumerate() {
        enrol_other(
            &s,
            code,
            t0() + Duration::seconds(i64::try_from(i).unwrap()),
        );
    }
    // The worker polls while the relay is down: nothing lost, nothing sent.
    let mut now = t0();
    for _ in 0..6 {
        now += Duration::minutes(1);
        assert_eq!(s.deliver_due(now, 1000).unwrap().delivered(), 0);
    }
    channel.set(Mode::Up);
    let mut delivered = 0;
    for _ in 0..40 {
        now += Duration::minutes(1);
        delivered += s.deliver_due(now, 1000).unwrap().delivered();
    }
    assert_eq!(delivered, 100);
    let got = channel.taken();
    assert_eq!(got.len(), 100, "each exactly once");
    for (code, _, _, _, pin) in got.iter().take(5) {
        assert!(accepted(&s, code, pin, now));
    }
}

#[test]
fn two_workers_at_once_send_each_part_once() {
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Up);
    let s = svc(&store, &channel, DeliveryMode::Deferred);
    for code in crate::harness::valid_codes(40) {
        enrol_other(&s, &code, t0());
    }
    std::thread::scope(|scope| {
        for _ in 0..2 {
            let _ = scope.spawn(|| s.deliver_due(t0(), 1000).unwrap());
        }
    });
    let got = channel.taken();
    let mut ids: Vec<String> = got.iter().map(|g| g.3.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 40);
    assert_eq!(
        got.len(),
        40,
        "a claimed part is not sent by the other worker"
    );
}

#[test]
fn a_deferred_service_leaves_security_notices_to_the_worker_too() {
    // rule: POL-6 — the lock notice is sent, but not inside the verify that locked.
    let store = MemoryStore::new();
    let channel = Channel::new(Mode::Up);
    let s = svc(&store, &channel, DeliveryMode::Deferred);
    let _ = enrol(&s, MARIO, t0());
    let _ = s.deliver_due(t0(), 10).unwrap();
    let pin = channel.taken()[0].4.clone();
    let wrong = if pin == "11111" { "22222" } else { "11111" };
    for i in 0..10 {
        let _ = s
            .verify(
                &tax(MARIO),
                wrong,
                Level::Online,
                t0() + Duration::seconds(i),
            )
            .unwrap();
    }
    assert!(matches!(
        s.verify(
            &tax(MARIO),
            &pin,
            Level::Online,
            t0() + Duration::minutes(1)
        )
        .unwrap(),
        VerifyOutcome::Locked
    ));
    assert_eq!(
        channel.notices.load(Ordering::SeqCst),
        0,
        "none inside the requests"
    );
    let run = s.deliver_due(t0() + Duration::minutes(2), 10).unwrap();
    assert!(
        run.notices
            .iter()
            .any(|n| n.kind == pin_core::command::NoticeKind::Locked && n.sent),
        "{run:?}"
    );
    assert!(channel.notices.load(Ordering::SeqCst) >= 1);
}
