//! A model-based test of random operation sequences over one NoiPA and one INPS subject,
//! and the lockout under threads.
//!
//! The model keeps, per subject, what the person knows (every PIN and part ever delivered,
//! read from the outbox) and what the rules say must hold (the current PIN, its stage, the
//! failures since the last success, the lock). Every operation goes through [`PinService`];
//! verify outcomes are predicted exactly; refusals must leave the record, the counter, the
//! outbox and the audit log untouched. After every step the invariants are checked against
//! the store, comparing PINs with the stored hash through the service's hasher, which
//! consumes no attempt.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};

use chrono::{DateTime, Duration, Months, Utc};
use pin_core::audit::AuditEvent;
use pin_core::command::{Check, Command};
use pin_core::contact::{ContactProof, Contacts, Email, Mobile};
use pin_core::format::{self, INPS_ALPHABET, PinFormat};
use pin_core::hash::{Keyring, Verified};
use pin_core::memory::MemoryStore;
use pin_core::notify::MemoryOutbox;
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::{ChangeOutcome, PinService};
use pin_core::store::{Loaded, Store, StoreError};
use pin_core::subject::{DeliveryState, Role, Stage};
use pin_core::verify::{ExpiryReason, Purpose, Reservation, Settlement, VerifyOutcome};
use pin_core::{Actor, Error, Level, Policy};
use proptest::prelude::*;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::harness::{
    LAURA, MARIO, PEPPER, Received, Service, cheap_policy, date, email_only, enrol_employee,
    enrol_inps, full_contacts, inbox, service_with, t0, tax,
};

/// A small lockout limit, so that random sequences reach the lock often.
const LIMIT: u32 = 3;

// ---------------------------------------------------------------------------------------
// Operations

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Noipa,
    Inps,
}

impl Who {
    fn code(self) -> &'static str {
        match self {
            Self::Noipa => MARIO,
            Self::Inps => LAURA,
        }
    }
    fn idx(self) -> usize {
        match self {
            Self::Noipa => 0,
            Self::Inps => 1,
        }
    }
}

/// Who asks for a re-send: the person, an operator (NoiPA support, INPS contact centre),
/// an operator in person (NoiPA RID, INPS branch) or the system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum By {
    Person,
    Operator,
    InPerson,
    System,
}

#[derive(Debug, Clone)]
enum Op {
    /// NoiPA identification by the RID (refused for INPS).
    Identify {
        who: Who,
        mobile: bool,
    },
    Resend {
        who: Who,
        by: By,
    },
    Web {
        who: Who,
        address: bool,
    },
    ContactCentre {
        who: Who,
        archives: bool,
    },
    Outbound {
        who: Who,
        passed: bool,
    },
    Branch {
        who: Who,
        document: bool,
    },
    PreAssign {
        who: Who,
    },
    /// Activation with the letter's half (right) or another half.
    Activate {
        who: Who,
        right: bool,
    },
    VerifyRight {
        who: Who,
        dispositivo: bool,
    },
    VerifyWrong {
        who: Who,
        nth: usize,
    },
    /// Some PIN or part delivered earlier (possibly the current one).
    VerifyOldPin {
        who: Who,
        pick: usize,
    },
    /// INPS change of PIN, with the right current PIN or a wrong one.
    Change {
        generated: bool,
        right: bool,
        chosen: String,
    },
    AdvanceTime(i64),
    Receipt {
        who: Who,
        stale: bool,
        pick: usize,
        state: DeliveryState,
    },
    Reset {
        who: Who,
        good: bool,
    },
    Convert {
        who: Who,
        document: bool,
        /// Recorded by a branch operator (else: the person tries it, refused, INPS-9).
        branch: bool,
    },
}

fn who() -> impl Strategy<Value = Who> {
    prop_oneof![2 => Just(Who::Noipa), 3 => Just(Who::Inps)]
}

fn chosen_pin() -> impl Strategy<Value = String> {
    let alphabet: Vec<char> = INPS_ALPHABET.chars().collect();
    proptest::collection::vec(proptest::sample::select(alphabet), 8)
        .prop_map(|cs| cs.into_iter().collect())
}

fn op() -> impl Strategy<Value = Op> {
    let by = prop_oneof![
        Just(By::Person),
        Just(By::Operator),
        Just(By::InPerson),
        Just(By::System)
    ];
    let state = prop_oneof![
        Just(DeliveryState::Pending),
        Just(DeliveryState::Sent),
        Just(DeliveryState::Confirmed),
        Just(DeliveryState::Failed),
    ];
    // Small steps, and jumps around the 30- and 90-day expiry of unused PINs and the
    // 6-month rotation.
    let hours = prop_oneof![
        3 => 1i64..48,
        1 => 24 * 25..24i64 * 35,
        1 => 24 * 85..24i64 * 95,
        1 => 24 * 170..24i64 * 200,
    ];
    prop_oneof![
        3 => (who(), any::<bool>()).prop_map(|(who, mobile)| Op::Identify { who, mobile }),
        3 => (who(), by).prop_map(|(who, by)| Op::Resend { who, by }),
        2 => (who(), any::<bool>()).prop_map(|(who, address)| Op::Web { who, address }),
        1 => (who(), any::<bool>()).prop_map(|(who, archives)| Op::ContactCentre { who, archives }),
        1 => (who(), any::<bool>()).prop_map(|(who, passed)| Op::Outbound { who, passed }),
        1 => (who(), any::<bool>()).prop_map(|(who, document)| Op::Branch { who, document }),
        1 => who().prop_map(|who| Op::PreAssign { who }),
        2 => (who(), any::<bool>()).prop_map(|(who, right)| Op::Activate { who, right }),
        6 => (who(), any::<bool>()).prop_map(|(who, dispositivo)| Op::VerifyRight { who, dispositivo }),
        8 => (who(), any::<usize>()).prop_map(|(who, nth)| Op::VerifyWrong { who, nth }),
        3 => (who(), any::<usize>()).prop_map(|(who, pick)| Op::VerifyOldPin { who, pick }),
        4 => (any::<bool>(), prop::bool::weighted(0.8), chosen_pin())
            .prop_map(|(generated, right, chosen)| Op::Change { generated, right, chosen }),
        3 => hours.prop_map(Op::AdvanceTime),
        2 => (who(), prop::bool::weighted(0.3), any::<usize>(), state)
            .prop_map(|(who, stale, pick, state)| Op::Receipt { who, stale, pick, state }),
        2 => (who(), prop::bool::weighted(0.7)).prop_map(|(who, good)| Op::Reset { who, good }),
        1 => (who(), any::<bool>(), prop::bool::weighted(0.8))
            .prop_map(|(who, document, branch)| Op::Convert { who, document, branch }),
    ]
}

// ---------------------------------------------------------------------------------------
// The model

/// The model of the current credential.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cur {
    /// The text the stored hash must match: the whole PIN, or the letter's half while a
    /// pre-assigned PIN awaits activation.
    pin: String,
    serial: u64,
    stage: Stage,
    level: Level,
    format: PinFormat,
    issued_at: DateTime<Utc>,
    changed_at: Option<DateTime<Utc>>,
    first_used_at: Option<DateTime<Utc>>,
    /// A part went by post or sealed envelope (90 days of validity when unused, else 30).
    physical: bool,
    /// Handed over in a sealed envelope: only a branch re-sends it (INPS-5).
    envelope: bool,
    /// A part told by phone: only the contact centre re-sends it (INPS-7).
    phone: bool,
}

impl Cur {
    fn unused_deadline(&self) -> Option<DateTime<Utc>> {
        if self.first_used_at.is_some() || self.changed_at.is_some() {
            return None;
        }
        // rule: POL-2 — by default a NoiPA PIN does not expire, used or not.
        if self.format == PinFormat::NoipaDigits5 {
            return None;
        }
        Some(
            self.issued_at
                + if self.physical {
                    Duration::days(90)
                } else {
                    Duration::days(30)
                },
        )
    }

    /// INPS-11: citizens change every 6 months; POL-2: NoiPA PINs do not expire.
    fn rotation_due(&self, who: Who) -> Option<DateTime<Utc>> {
        if who == Who::Noipa || self.stage != Stage::Active {
            return None;
        }
        let base = self
            .changed_at
            .or(self.first_used_at)
            .unwrap_or(self.issued_at);
        base.checked_add_months(Months::new(6))
    }
}

/// How an issue treats the attempt counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Counter {
    Fresh,
    CarryOver,
}

#[derive(Debug)]
struct Person {
    who: Who,
    cur: Option<Cur>,
    last_serial: u64,
    failures: u32,
    blocked: bool,
    pending: bool,
    /// rule: INPS-16 — once received a PIN through a verifying channel.
    verified: bool,
    identified_at: Option<DateTime<Utc>>,
    resends: Vec<DateTime<Utc>>,
    /// Every whole PIN and every part ever delivered or revealed.
    secrets: Vec<String>,
    /// The halves of every split issue.
    halves: Vec<(String, String)>,
    /// The PHC string last checked, and the texts already compared with it.
    checked: (String, HashSet<String>),
}

impl Person {
    fn new(who: Who) -> Self {
        Self {
            who,
            cur: None,
            last_serial: 0,
            failures: 0,
            blocked: false,
            pending: false,
            verified: false,
            identified_at: None,
            resends: Vec::new(),
            secrets: Vec::new(),
            halves: Vec::new(),
            checked: (String::new(), HashSet::new()),
        }
    }

    fn locked(&self) -> bool {
        self.blocked || self.failures >= LIMIT
    }

    /// rule: POL-4 — at most 5 PINs sent to the contacts on record in 24 hours by re-send,
    /// web request or reset.
    fn rate_ok(&self, now: DateTime<Utc>) -> bool {
        self.resends
            .iter()
            .filter(|t| **t + Duration::hours(24) > now)
            .count()
            < 5
    }

    fn rate_count(&mut self, now: DateTime<Utc>) {
        self.resends.retain(|t| *t + Duration::hours(24) > now);
        self.resends.push(now);
    }

    /// rule: POL-7 — the current PIN is in use (used and not blocked), or dispositivo: no
    /// web or contact-centre request or pre-assigned letter replaces it.
    fn in_use(&self) -> bool {
        self.cur.as_ref().is_some_and(|c| {
            ((c.first_used_at.is_some() || c.changed_at.is_some()) && !self.locked())
                || c.level == Level::Dispositivo
        })
    }

    /// Predicts a verify of `text` for `purpose` and applies it to the model: `Err(())`
    /// for input the service must refuse before counting an attempt (no PIN of any kind);
    /// the flag tells whether the PIN was compared and matched (the service then gives a
    /// proof).
    fn verify(
        &mut self,
        text: &str,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> (Result<VerifyOutcome, ()>, bool) {
        if !any_pin_shape(text) {
            return (Err(()), false);
        }
        let locked = self.locked();
        let who = self.who;
        let Some(c) = self.cur.as_mut() else {
            return (Ok(VerifyOutcome::NoPin), false);
        };
        let awaiting = c.stage == Stage::AwaitingActivation;
        if (purpose == Purpose::Activate) != awaiting {
            return (Ok(VerifyOutcome::NoPin), false);
        }
        // rule: INPS-12, POL-1, POL-5 — a blocked PIN answers Locked without a compare.
        if locked {
            return (Ok(VerifyOutcome::Locked), false);
        }
        if c.unused_deadline().is_some_and(|d| now >= d) {
            return (
                Ok(VerifyOutcome::Expired {
                    reason: ExpiryReason::UnusedInitial,
                }),
                false,
            );
        }
        // A well-formed PIN of another shape than the credential's is a wrong PIN like any
        // other: counted.
        let matches = format::parse_input(c.format, text).is_ok_and(|p| p.expose_secret() == c.pin);
        if !matches {
            self.failures += 1;
            let remaining = LIMIT - self.failures;
            if remaining == 0 {
                self.blocked = true;
                return (Ok(VerifyOutcome::Locked), false);
            }
            return (
                Ok(VerifyOutcome::Rejected {
                    remaining_attempts: remaining,
                    final_try: remaining == 1,
                }),
                false,
            );
        }
        self.failures = 0;
        let first_use = c.first_used_at.is_none();
        let rotation_due = c.rotation_due(who);
        if !awaiting && first_use {
            c.first_used_at = Some(now);
        }
        let expired = rotation_due.is_some_and(|d| now >= d);
        let accepted = VerifyOutcome::Accepted {
            level: c.level,
            rotation_due,
            first_use,
        };
        let outcome = match purpose {
            Purpose::Activate => VerifyOutcome::MustChange,
            _ if c.stage == Stage::MustChange => VerifyOutcome::MustChange,
            _ if expired => VerifyOutcome::Expired {
                reason: ExpiryReason::Rotation,
            },
            Purpose::Change => accepted,
            Purpose::Access { required } => {
                if who == Who::Inps && c.level < required {
                    VerifyOutcome::InsufficientLevel {
                        have: c.level,
                        need: required,
                    }
                } else {
                    accepted
                }
            }
        };
        (Ok(outcome), true)
    }

    /// A new credential delivered in `msgs` (all of one serial).
    #[allow(clippy::too_many_arguments)]
    fn issued(
        &mut self,
        msgs: &[Received],
        now: DateTime<Utc>,
        stage: Stage,
        level: Level,
        format: PinFormat,
        counter: Counter,
        letter: Option<&str>,
    ) {
        let serial = self.last_serial + 1;
        assert!(!msgs.is_empty(), "an issue delivers something");
        for m in msgs {
            assert_eq!(m.serial, serial, "serials never repeat and grow by one");
            self.secrets.push(m.text.clone());
        }
        let part = |n: u8| msgs.iter().find(|m| m.part == n).map(|m| m.text.clone());
        // Every copy of a part carries the same text (contact centre: phone and SMS).
        for m in msgs {
            assert_eq!(Some(&m.text), part(m.part).as_ref());
        }
        let pin = match (letter, part(1), part(2)) {
            (Some(first), None, Some(second)) => format!("{first}{second}"),
            (None, Some(first), Some(second)) => format!("{first}{second}"),
            (None, Some(whole), None) => whole,
            other => panic!("unexpected parts {:?}", other.0),
        };
        if let (Some(f), Some(s)) = (letter.map(str::to_owned).or_else(|| part(1)), part(2)) {
            self.halves.push((f, s));
        }
        assert_eq!(
            pin.len(),
            if stage == Stage::AwaitingActivation {
                8
            } else {
                format.len()
            }
        );
        let physical = msgs.iter().any(|m| m.channel.is_physical())
            || self
                .cur
                .as_ref()
                .is_some_and(|c| letter.is_some() && c.physical);
        let envelope = msgs
            .iter()
            .any(|m| m.channel == pin_core::subject::Channel::SealedEnvelope);
        let phone = msgs
            .iter()
            .any(|m| m.channel == pin_core::subject::Channel::Phone);
        self.secrets.push(pin.clone());
        self.cur = Some(Cur {
            pin,
            serial,
            stage,
            level,
            format,
            issued_at: now,
            changed_at: None,
            first_used_at: None,
            physical,
            envelope,
            phone,
        });
        self.last_serial = serial;
        self.pending = false;
        if counter == Counter::Fresh {
            self.failures = 0;
            self.blocked = false;
        }
    }

    /// The texts a person might type that must not match the current hash.
    fn impostors(&self, cur: &Cur) -> Vec<String> {
        let mut out: Vec<String> = self
            .secrets
            .iter()
            .filter(|s| s.len() == cur.pin.len())
            .cloned()
            .collect();
        if cur.pin.len() == 16 {
            let (a, b) = cur.pin.split_at(8);
            for (f, s) in &self.halves {
                out.push(format!("{f}{b}"));
                out.push(format!("{a}{s}"));
            }
        }
        out.retain(|s| *s != cur.pin);
        out
    }
}

struct World {
    svc: Service,
    now: DateTime<Utc>,
    people: [Person; 2],
    audit_seen: usize,
}

/// The state a refusal must leave untouched.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    loaded: [Option<Loaded>; 2],
    audit: usize,
}

fn policy() -> Policy {
    cheap_policy()
        .noipa_lockout(LIMIT)
        .inps_lockout(LIMIT)
        .build()
        .unwrap()
}

fn inps_contacts() -> Contacts {
    full_contacts("laura@example.it")
}

/// Whether `text` is a PIN of some kind: 5 digits, or 8 or 16 characters of the INPS
/// alphabet.
fn any_pin_shape(text: &str) -> bool {
    [
        PinFormat::NoipaDigits5,
        PinFormat::InpsInUse8,
        PinFormat::InpsIssued16,
    ]
    .iter()
    .any(|f| format::parse_input(*f, text).is_ok())
}

fn wrong_of(pin: &str, format: PinFormat, nth: usize) -> String {
    let alphabet: Vec<char> = format.alphabet().chars().collect();
    let mut cs: Vec<char> = pin.chars().collect();
    let i = nth % cs.len();
    let pos = alphabet.iter().position(|c| *c == cs[i]).unwrap_or(0);
    cs[i] = alphabet[(pos + 1 + nth / 7 % (alphabet.len() - 1)) % alphabet.len()];
    let wrong: String = cs.into_iter().collect();
    assert_ne!(wrong, pin);
    wrong
}

impl World {
    fn new(seed: u64) -> Self {
        let svc = service_with(policy(), seed);
        let now = t0();
        let mut people = [Person::new(Who::Noipa), Person::new(Who::Inps)];
        // rule: NOIPA-2 — enrolled after 31 March 2014: a PIN at enrolment.
        let _ = enrol_employee(
            &svc,
            MARIO,
            email_only("mario@example.it"),
            date(2020, 5, 1),
            now,
        )
        .unwrap();
        let msgs = inbox(&svc);
        people[0].issued(
            &msgs,
            now,
            Stage::Active,
            Level::Online,
            PinFormat::NoipaDigits5,
            Counter::Fresh,
            None,
        );
        let _ = enrol_inps(&svc, LAURA, Role::Citizen, inps_contacts(), now);
        assert!(inbox(&svc).is_empty());
        let mut w = Self {
            svc,
            now,
            people,
            audit_seen: 0,
        };
        w.check();
        w
    }

    fn snapshot(&self) -> Snapshot {
        let load = |code| self.svc.store().load(&tax(code)).unwrap();
        Snapshot {
            loaded: [load(MARIO), load(LAURA)],
            audit: self.svc.store().audit_log(None).unwrap().len(),
        }
    }

    fn exec(&self, who: Who, actor: Actor, cmd: Command) -> Result<Vec<Received>, Error> {
        let r = self.svc.execute(&tax(who.code()), &actor, &cmd, self.now);
        let msgs = inbox(&self.svc);
        r.map(|_| msgs)
    }

    /// A refusal changes nothing: record, version, counter, audit log, outbox.
    fn assert_unchanged(&self, before: &Snapshot, why: &dyn std::fmt::Debug) {
        assert_eq!(&self.snapshot(), before, "a refusal changed state: {why:?}");
        assert!(
            inbox(&self.svc).is_empty(),
            "a refusal delivered something: {why:?}"
        );
    }

    fn person(&mut self, who: Who) -> &mut Person {
        &mut self.people[who.idx()]
    }

    /// Runs a verify-like call whose outcome the model predicted.
    fn expect_verify(
        &mut self,
        who: Who,
        before: &Snapshot,
        predicted: Result<VerifyOutcome, ()>,
        actual: Result<VerifyOutcome, Error>,
        was_closed: bool,
    ) {
        match (predicted, actual) {
            (Err(()), Err(Error::Input(_))) => {
                self.assert_unchanged(before, &"malformed PIN input")
            }
            (Ok(p), Ok(a)) => {
                assert_eq!(a, p, "{who:?}: verify outcome");
                // rule: INPS-12, POL-1, POL-5 — a locked or expired PIN is never accepted.
                if was_closed {
                    assert!(
                        !matches!(a, VerifyOutcome::Accepted { .. }),
                        "a closed PIN was accepted"
                    );
                }
            }
            (p, a) => panic!("{who:?}: predicted {p:?}, got {a:?}"),
        }
    }

    fn closed(&self, who: Who) -> bool {
        let p = &self.people[who.idx()];
        p.locked()
            || p.cur.as_ref().is_some_and(|c| {
                c.unused_deadline().is_some_and(|d| self.now >= d)
                    || c.rotation_due(who).is_some_and(|d| self.now >= d)
            })
    }

    fn current_or(&self, who: Who, default: &str) -> String {
        self.people[who.idx()]
            .cur
            .as_ref()
            .map_or_else(|| default.to_owned(), |c| c.pin.clone())
    }

    /// Runs a command whose success the model predicted; on success `then` updates the model
    /// from the delivered messages.
    fn command(
        &mut self,
        who: Who,
        actor: Actor,
        cmd: Command,
        ok: bool,
        then: impl FnOnce(&mut Person, &[Received], DateTime<Utc>),
    ) {
        let before = self.snapshot();
        let name = cmd.name();
        match self.exec(who, actor, cmd) {
            Ok(msgs) => {
                assert!(ok, "{who:?} {name}: expected a refusal");
                let now = self.now;
                then(self.person(who), &msgs, now);
            }
            Err(e) => {
                assert!(!ok, "{who:?} {name}: unexpected refusal {e}");
                self.assert_unchanged(&before, &e);
            }
        }
    }

    fn apply(&mut self, op: &Op) {
        let now = self.now;
        match *op {
            Op::AdvanceTime(h) => self.now += Duration::hours(h),
            Op::Identify { who, mobile } => {
                let mut contacts = email_only("mario@example.it");
                if mobile {
                    contacts.mobile = Some(Mobile::parse("347 765 4321").unwrap());
                }
                // rule: NOIPA-6, BOTH-1 — a new identification issues a new PIN; only it is valid.
                let cmd = Command::Identify { contacts };
                self.command(
                    who,
                    Actor::Rid("rid-1".into()),
                    cmd,
                    who == Who::Noipa,
                    |p, msgs, now| {
                        assert_eq!(msgs.len(), 1);
                        // rule: NOIPA-4 — by SMS only when a mobile was given, else by e-mail.
                        let channel = if mobile {
                            pin_core::subject::Channel::Sms
                        } else {
                            pin_core::subject::Channel::Email
                        };
                        assert_eq!(msgs[0].channel, channel);
                        p.identified_at = Some(now);
                        p.issued(
                            msgs,
                            now,
                            Stage::Active,
                            Level::Online,
                            PinFormat::NoipaDigits5,
                            Counter::Fresh,
                            None,
                        );
                    },
                );
            }
            Op::Resend { who, by } => {
                let actor = match (by, who) {
                    (By::Person, _) => Actor::Subject,
                    (By::Operator, Who::Noipa) => Actor::Support("sup-1".into()),
                    (By::Operator, Who::Inps) => Actor::ContactCentre("cc-1".into()),
                    (By::InPerson, Who::Noipa) => Actor::Rid("rid-1".into()),
                    (By::InPerson, Who::Inps) => Actor::BranchOperator("br-1".into()),
                    (By::System, _) => Actor::System,
                };
                // rule: POL-4 — a re-send replacing a PIN whose delivery failed for good is
                // not counted: nothing reached the person.
                let failed = self
                    .svc
                    .store()
                    .load(&tax(who.code()))
                    .unwrap()
                    .and_then(|l| l.subject.credential)
                    .is_some_and(|c| c.parts.iter().any(|p| p.state == DeliveryState::Failed));
                let p = &self.people[who.idx()];
                let ok = p.cur.as_ref().is_some_and(|c| {
                    // rule: POL-5 — a re-send never unlocks a blocked PIN.
                    !p.locked()
                        && c.first_used_at.is_none()
                        && c.changed_at.is_none()
                        // rule: INPS-5 — a sealed envelope is re-issued only at a branch.
                        && (!c.envelope || by == By::InPerson)
                        // rule: INPS-7 — a PIN told by phone, only by the contact centre.
                        && (!c.phone || by == By::Operator)
                        // rule: NOIPA-5 — support re-sends only 12 hours after the issue.
                        && !(who == Who::Noipa
                            && by == By::Operator
                            && now < c.issued_at + Duration::hours(12))
                        && (failed || p.rate_ok(now))
                });
                self.command(who, actor, Command::Resend, ok, move |p, msgs, now| {
                    if !failed {
                        p.rate_count(now);
                    }
                    let c = p.cur.clone().unwrap();
                    // rule: POL-3 — a fresh PIN on the same channels; failures carry over.
                    p.issued(
                        msgs,
                        now,
                        c.stage,
                        c.level,
                        c.format,
                        Counter::CarryOver,
                        None,
                    );
                });
            }
            Op::Web { who, address } => {
                let p = &self.people[1];
                // rule: INPS-6, POL-4 — a web request is for a first PIN (a PIN in use is
                // replaced only by reset) and counts towards the rate limit.
                let ok = who == Who::Inps && !p.pending && !p.in_use() && p.rate_ok(now);
                let cmd = Command::WebRequest {
                    address: if address {
                        Check::Passed
                    } else {
                        Check::Failed
                    },
                };
                self.command(who, Actor::Subject, cmd, ok, |p, msgs, now| {
                    p.rate_count(now);
                    if address {
                        p.verified = true;
                        // rule: INPS-6 — first half by SMS/e-mail, second half by post.
                        p.issued(
                            msgs,
                            now,
                            Stage::MustChange,
                            Level::Online,
                            PinFormat::InpsIssued16,
                            Counter::Fresh,
                            None,
                        );
                    } else {
                        assert!(msgs.is_empty());
                        p.pending = true;
                    }
                });
            }
            Op::ContactCentre { who, archives } => {
                let ok = who == Who::Inps && !self.people[1].pending && !self.people[1].in_use();
                let cmd = Command::ContactCentreRequest {
                    archives: if archives {
                        Check::Passed
                    } else {
                        Check::Failed
                    },
                };
                self.command(
                    who,
                    Actor::ContactCentre("cc-1".into()),
                    cmd,
                    ok,
                    |p, msgs, now| {
                        if archives {
                            p.verified = true;
                            // rule: INPS-7 — first half by phone and SMS, second by post.
                            assert_eq!(msgs.len(), 3);
                            p.issued(
                                msgs,
                                now,
                                Stage::MustChange,
                                Level::Online,
                                PinFormat::InpsIssued16,
                                Counter::Fresh,
                                None,
                            );
                        } else {
                            assert!(msgs.is_empty());
                            p.pending = true;
                        }
                    },
                );
            }
            Op::Outbound { who, passed } => {
                let ok = who == Who::Inps
                    && self.people[1].pending
                    && !(passed && self.people[1].in_use());
                let cmd = Command::OutboundVerification {
                    result: if passed { Check::Passed } else { Check::Failed },
                };
                self.command(
                    who,
                    Actor::ContactCentre("cc-2".into()),
                    cmd,
                    ok,
                    |p, msgs, now| {
                        if passed {
                            p.verified = true;
                            p.issued(
                                msgs,
                                now,
                                Stage::MustChange,
                                Level::Online,
                                PinFormat::InpsIssued16,
                                Counter::Fresh,
                                None,
                            );
                        } else {
                            assert!(msgs.is_empty());
                            p.pending = false;
                        }
                    },
                );
            }
            Op::Branch { who, document } => {
                let ok = who == Who::Inps && document;
                let cmd = Command::BranchRequest {
                    identity_document: if document {
                        Check::Passed
                    } else {
                        Check::Failed
                    },
                    on_behalf: None,
                };
                self.command(
                    who,
                    Actor::BranchOperator("br-1".into()),
                    cmd,
                    ok,
                    |p, msgs, now| {
                        // rule: INPS-5, INPS-2 — a sealed envelope with a dispositivo PIN.
                        p.identified_at = Some(now);
                        p.verified = true;
                        p.issued(
                            msgs,
                            now,
                            Stage::MustChange,
                            Level::Dispositivo,
                            PinFormat::InpsIssued16,
                            Counter::Fresh,
                            None,
                        );
                    },
                );
            }
            Op::PreAssign { who } => {
                let ok = who == Who::Inps && !self.people[1].pending && !self.people[1].in_use();
                self.command(
                    who,
                    Actor::System,
                    Command::PreAssign,
                    ok,
                    |p, msgs, now| {
                        // rule: INPS-8 — the letter carries the first half only.
                        assert_eq!(msgs.len(), 1);
                        p.issued(
                            msgs,
                            now,
                            Stage::AwaitingActivation,
                            Level::Online,
                            PinFormat::InpsInUse8,
                            Counter::Fresh,
                            None,
                        );
                    },
                );
            }
            Op::Activate { who, right } => {
                let letter = self.current_or(who, "K7QM2ZXA");
                let text = if right {
                    letter.clone()
                } else {
                    wrong_of(&letter, PinFormat::InpsInUse8, 3)
                };
                let before = self.snapshot();
                let was_closed = self.closed(who);
                let r = self
                    .svc
                    .activate(&tax(who.code()), &text, Check::Passed, now);
                if format::parse_input(PinFormat::InpsInUse8, &text).is_err() {
                    assert!(matches!(r, Err(Error::Input(_))), "{r:?}");
                    self.assert_unchanged(&before, &"malformed half");
                    return;
                }
                let (predicted, matched) = self.person(who).verify(&text, Purpose::Activate, now);
                match r {
                    Ok(Ok(_)) => {
                        assert!(matched, "activated without the letter's half");
                        let msgs = inbox(&self.svc);
                        // rule: INPS-8 — the second half follows by SMS or e-mail.
                        assert_eq!(msgs.len(), 1);
                        let p = self.person(who);
                        p.verified = true;
                        // The activated PIN is the person's: a pending outbound
                        // verification of an earlier request is cleared.
                        p.issued(
                            &msgs,
                            now,
                            Stage::MustChange,
                            Level::Online,
                            PinFormat::InpsIssued16,
                            Counter::Fresh,
                            Some(&letter),
                        );
                    }
                    Ok(Err(outcome)) => {
                        assert!(!matched);
                        self.expect_verify(who, &before, predicted, Ok(outcome), was_closed);
                    }
                    Err(e) => self.expect_verify(who, &before, predicted, Err(e), was_closed),
                }
            }
            Op::VerifyRight { who, dispositivo } => {
                let text = self.current_or(who, "12345");
                let level = if dispositivo {
                    Level::Dispositivo
                } else {
                    Level::Online
                };
                self.verify_as(who, &text, Purpose::Access { required: level });
            }
            Op::VerifyWrong { who, nth } => {
                let text = self.people[who.idx()]
                    .cur
                    .as_ref()
                    .map_or_else(|| "12345".to_owned(), |c| wrong_of(&c.pin, c.format, nth));
                self.verify_as(
                    who,
                    &text,
                    Purpose::Access {
                        required: Level::Online,
                    },
                );
            }
            Op::VerifyOldPin { who, pick } => {
                let s = &self.people[who.idx()].secrets;
                let text = if s.is_empty() {
                    "00000".to_owned()
                } else {
                    s[pick % s.len()].clone()
                };
                self.verify_as(
                    who,
                    &text,
                    Purpose::Access {
                        required: Level::Online,
                    },
                );
            }
            Op::Change {
                generated,
                right,
                ref chosen,
            } => self.change(generated, right, chosen),
            Op::Receipt {
                who,
                stale,
                pick,
                state,
            } => self.receipt(who, stale, pick, state),
            Op::Reset { who, good } => {
                let proofs = vec![
                    ContactProof::Email(Email::parse("laura@example.it").unwrap()),
                    ContactProof::Mobile(
                        Mobile::parse(if good { "347 123 4567" } else { "333 000 1111" }).unwrap(),
                    ),
                ];
                // rule: POL-4 — a reset sends a PIN without authenticating: rate-limited.
                // rule: INPS-16 — only after a PIN from a verifying channel, nothing pending.
                let p = &self.people[1];
                let ok = who == Who::Inps && good && p.verified && !p.pending && p.rate_ok(now);
                // rule: POL-7 — a reset keeps the level of a dispositivo PIN.
                let level = p.cur.as_ref().map_or(Level::Online, |c| c.level);
                self.command(
                    who,
                    Actor::Subject,
                    Command::Reset { proofs },
                    ok,
                    |p, msgs, now| {
                        p.rate_count(now);
                        // rule: INPS-14 — a new 16-character PIN, halves to the proven contacts.
                        assert_eq!(msgs.len(), 2);
                        assert!(msgs.iter().all(|m| !m.channel.is_physical()));
                        p.issued(
                            msgs,
                            now,
                            Stage::MustChange,
                            level,
                            PinFormat::InpsIssued16,
                            Counter::Fresh,
                            None,
                        );
                    },
                );
            }
            Op::Convert {
                who,
                document,
                branch,
            } => {
                let p = &self.people[who.idx()];
                // rule: INPS-9 — whoever checks the document records the conversion, not
                // the person.
                let ok = who == Who::Inps
                    && branch
                    && document
                    && p.cur.as_ref().is_some_and(|c| {
                        c.stage != Stage::AwaitingActivation && c.level == Level::Online
                    });
                let cmd = Command::Convert {
                    document: if document {
                        Check::Passed
                    } else {
                        Check::Failed
                    },
                };
                let actor = if branch {
                    Actor::BranchOperator("br-1".into())
                } else {
                    Actor::Subject
                };
                self.command(who, actor, cmd, ok, |p, msgs, _| {
                    assert!(msgs.is_empty());
                    // rule: INPS-9 — same value, same serial, higher level.
                    if let Some(c) = p.cur.as_mut() {
                        c.level = Level::Dispositivo;
                    }
                });
            }
        }
    }

    fn verify_as(&mut self, who: Who, text: &str, purpose: Purpose) {
        let before = self.snapshot();
        let was_closed = self.closed(who);
        let now = self.now;
        let (predicted, _) = self.person(who).verify(text, purpose, now);
        let actual = self
            .svc
            .authenticate(&tax(who.code()), text, purpose, self.now)
            .map(|v| v.outcome);
        self.expect_verify(who, &before, predicted, actual, was_closed);
        assert!(inbox(&self.svc).is_empty());
    }

    fn change(&mut self, generated: bool, right: bool, chosen: &str) {
        let who = Who::Inps;
        let now = self.now;
        let current = self.current_or(who, "K7QM2ZXA");
        let text = match (&self.people[1].cur, right) {
            (Some(c), false) => wrong_of(&c.pin, c.format, 5),
            _ => current.clone(),
        };
        let before = self.snapshot();
        let was_closed = self.closed(who);
        let new = (!generated).then_some(chosen);
        let r = self.svc.change_pin(&tax(LAURA), &text, new, now);
        if !generated && format::parse_chosen(PinFormat::InpsInUse8, chosen).is_err() {
            assert!(matches!(r, Err(Error::Input(_))), "{r:?}");
            return self.assert_unchanged(&before, &"trivial new PIN");
        }
        let (predicted, matched) = self.person(who).verify(&text, Purpose::Change, now);
        match r {
            Ok(ChangeOutcome::Changed { revealed }) => {
                assert!(matched, "changed without the current PIN");
                let pin = match (revealed, new) {
                    (Some(p), None) => p.expose_secret().to_owned(),
                    (None, Some(c)) => c.to_owned(),
                    (r, _) => panic!("revealed {r:?} for generated={generated}"),
                };
                let msgs = inbox(&self.svc);
                assert!(msgs.is_empty(), "a change delivers nothing");
                let p = self.person(who);
                let c = p.cur.as_mut().unwrap();
                // rule: INPS-3 — the new PIN has 8 characters; the 16 is gone.
                assert_eq!(pin.len(), 8);
                p.last_serial += 1;
                c.serial = p.last_serial;
                c.pin = pin.clone();
                c.stage = Stage::Active;
                c.format = PinFormat::InpsInUse8;
                c.changed_at = Some(now);
                c.first_used_at = c.first_used_at.or(Some(now));
                p.failures = 0;
                p.blocked = false;
                p.secrets.push(pin);
            }
            Ok(ChangeOutcome::NotAuthenticated(outcome)) => {
                assert!(!matched);
                self.expect_verify(who, &before, predicted, Ok(outcome), was_closed);
            }
            Err(Error::Refused(pin_core::Refusal::SamePin)) => {
                assert!(matched && current == chosen, "SamePin for a different PIN");
            }
            Err(e) => self.expect_verify(who, &before, predicted, Err(e), was_closed),
        }
    }

    fn receipt(&mut self, who: Who, stale: bool, pick: usize, state: DeliveryState) {
        let loaded = self.svc.store().load(&tax(who.code())).unwrap().unwrap();
        let before = self.snapshot();
        let cred = loaded.subject.credential.as_ref();
        let (serial, part, channel) = match cred {
            Some(c) if !stale && !c.parts.is_empty() => {
                let p = &c.parts[pick % c.parts.len()];
                (c.serial, p.index, p.channel)
            }
            Some(c) => (
                c.serial.saturating_sub(1 + pick as u64 % 3),
                1,
                pin_core::subject::Channel::Email,
            ),
            None => (1, 1, pin_core::subject::Channel::Email),
        };
        let cmd = Command::Receipt {
            serial,
            part,
            channel,
            state,
        };
        match self.exec(who, Actor::System, cmd) {
            Ok(msgs) => {
                assert!(msgs.is_empty());
                let after = self.svc.store().load(&tax(who.code())).unwrap().unwrap();
                // A receipt never touches the PIN or the counter (BOTH-1 for stale ones).
                let strip = |l: &Loaded| {
                    let mut s = l.subject.clone();
                    if let Some(c) = s.credential.as_mut() {
                        c.parts.clear();
                    }
                    (s, l.attempts)
                };
                assert_eq!(strip(&after), strip(&loaded));
                if cred.is_none_or(|c| c.serial != serial) {
                    assert_eq!(
                        after.subject, loaded.subject,
                        "a stale receipt changed the record"
                    );
                }
            }
            Err(e) => {
                assert!(matches!(e, Error::Input(_)), "{e}");
                self.assert_unchanged(&before, &e);
            }
        }
    }

    /// The invariants, after every step.
    fn check(&mut self) {
        let hasher = self.svc.hasher();
        for p in &mut self.people {
            let loaded = self.svc.store().load(&tax(p.who.code())).unwrap().unwrap();
            let cred = loaded.subject.credential.as_ref();
            // (e) The counter belongs to the current credential.
            assert_eq!(
                loaded.attempts.serial,
                cred.map_or(0, |c| c.serial),
                "{:?}: counter serial",
                p.who
            );
            // (b) rule: INPS-12, POL-1 — failures since the last success never exceed the limit.
            assert!(
                loaded.attempts.failures <= LIMIT,
                "{:?}: {:?}",
                p.who,
                loaded.attempts
            );
            assert_eq!(
                loaded.attempts.failures, p.failures,
                "{:?}: failures",
                p.who
            );
            assert_eq!(loaded.attempts.blocked, p.blocked, "{:?}: blocked", p.who);
            assert_eq!(loaded.subject.last_serial, p.last_serial);
            assert_eq!(
                loaded.subject.pending != pin_core::subject::Pending::None,
                p.pending
            );
            assert_eq!(loaded.subject.resends, p.resends);
            assert_eq!(loaded.subject.identified_at, p.identified_at);
            assert_eq!(cred.is_some(), p.cur.is_some());
            let (Some(cred), Some(cur)) = (cred, p.cur.as_ref()) else {
                continue;
            };
            assert_eq!(
                (cred.serial, cred.stage, cred.level, cred.format),
                (cur.serial, cur.stage, cur.level, cur.format),
                "{:?}: credential",
                p.who
            );
            assert_eq!(
                (cred.issued_at, cred.changed_at, cred.first_used_at),
                (cur.issued_at, cur.changed_at, cur.first_used_at),
                "{:?}: credential times",
                p.who
            );
            // (a) rule: BOTH-1, NOIPA-6 — the current PIN matches the stored hash, and no
            // earlier PIN, part or mix of halves of different issues does.
            if p.checked.0 != cred.hash.phc {
                p.checked = (cred.hash.phc.clone(), HashSet::new());
                let pin = format::parse_input(cur.format, &cur.pin).unwrap_or_else(|_| {
                    format::parse_input(PinFormat::InpsInUse8, &cur.pin).unwrap()
                });
                assert!(
                    matches!(hasher.verify(&pin, &cred.hash), Ok(Verified::Match { .. })),
                    "{:?}: the current PIN does not match its hash",
                    p.who
                );
            }
            for text in p.impostors(cur) {
                if p.checked.1.insert(text.clone()) {
                    let fmt = if text.len() == 8 {
                        PinFormat::InpsInUse8
                    } else {
                        cur.format
                    };
                    let Ok(pin) = format::parse_input(fmt, &text) else {
                        continue;
                    };
                    assert_eq!(
                        hasher.verify(&pin, &cred.hash).unwrap(),
                        Verified::Mismatch,
                        "{:?}: an earlier PIN or part still matches",
                        p.who
                    );
                }
            }
        }
        // (d) rule: BOTH-2 — no secret in the audit log, nor in the stored records.
        let log = self.svc.store().audit_log(None).unwrap();
        let fresh: &[AuditEvent] = log.get(self.audit_seen..).unwrap_or_default();
        let mut texts: Vec<String> = fresh
            .iter()
            .map(|e| scrub(serde_json::to_string(e).unwrap()))
            .collect();
        for code in [MARIO, LAURA] {
            let mut subject = self.svc.store().load(&tax(code)).unwrap().unwrap().subject;
            // The PHC string is the one-way hash (BOTH-2); its base64 may hold any 5 digits.
            if let Some(c) = subject.credential.as_mut() {
                c.hash.phc.clear();
            }
            texts.push(scrub(serde_json::to_string(&subject).unwrap()));
        }
        self.audit_seen = log.len();
        self.assert_no_secret(&texts);
    }

    fn assert_no_secret(&self, texts: &[String]) {
        for p in &self.people {
            for s in &p.secrets {
                for t in texts {
                    assert!(
                        !t.contains(s.as_str()),
                        "{:?}: a secret is written out: {t}",
                        p.who
                    );
                }
            }
        }
    }

    fn finish(&self) {
        let log = self.svc.store().audit_log(None).unwrap();
        let texts: Vec<String> = log
            .iter()
            .map(|e| scrub(serde_json::to_string(e).unwrap()))
            .collect();
        self.assert_no_secret(&texts);
    }
}

/// Removes the public values of the test subjects (phone numbers, postal code, tax codes),
/// whose digit runs could be mistaken for a 5-digit PIN.
fn scrub(mut text: String) -> String {
    for public in [
        "+393471234567",
        "+393477654321",
        "Via Roma 1, 00100 Roma RM",
        "laura@example.it",
        "mario@example.it",
        "pec.user@pec.example.it",
        MARIO,
        LAURA,
    ] {
        text = text.replace(public, "");
    }
    text
}

fn run(seed: u64, ops: &[Op]) {
    let mut w = World::new(seed);
    for op in ops {
        w.apply(op);
        w.check();
    }
    w.finish();
}

/// 10,000 cases by default; `PROPTEST_CASES` overrides.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    ProptestConfig {
        cases,
        max_shrink_iters: 4_096,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    // rule: BOTH-1, BOTH-2, INPS-3, INPS-12, POL-1, POL-3, POL-5
    #[test]
    fn model_random_sequences(
        seed in any::<u64>(),
        inps_pin in any::<bool>(),
        ops in proptest::collection::vec(op(), 1..30),
    ) {
        // Half the cases start with an INPS PIN, so that its lifecycle is reached often.
        let start = inps_pin.then_some(Op::Web { who: Who::Inps, address: true });
        let ops: Vec<Op> = start.into_iter().chain(ops).collect();
        run(seed, &ops);
    }
}

/// Found by the model: activating a pre-assigned PIN used to leave a pending outbound
/// verification of an earlier contact-centre request pending, so that a later outbound call
/// replaced the PIN just activated. Activation now clears it: the outbound call is refused.
// rule: INPS-8, BOTH-1
#[test]
fn model_regression_activation_clears_pending_request() {
    run(
        0,
        &[
            Op::PreAssign { who: Who::Inps },
            Op::ContactCentre {
                who: Who::Inps,
                archives: false,
            },
            Op::Activate {
                who: Who::Inps,
                right: true,
            },
            Op::Outbound {
                who: Who::Inps,
                passed: true,
            },
            Op::VerifyRight {
                who: Who::Inps,
                dispositivo: false,
            },
        ],
    );
}

// ---------------------------------------------------------------------------------------
// Threads

/// The in-memory store, counting the reservations it granted: each is one PIN comparison.
#[derive(Debug, Default)]
struct CountingStore {
    inner: MemoryStore,
    granted: AtomicU32,
}

impl Store for CountingStore {
    fn load(&self, t: &pin_core::tax_code::TaxCode) -> Result<Option<Loaded>, StoreError> {
        self.inner.load(t)
    }
    fn create(&self, s: &pin_core::subject::Subject, a: &[AuditEvent]) -> Result<u64, StoreError> {
        self.inner.create(s, a)
    }
    fn save(
        &self,
        s: &pin_core::subject::Subject,
        e: u64,
        u: pin_core::command::AttemptsUpdate,
        a: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        self.inner.save(s, e, u, a)
    }
    fn reserve_attempt(
        &self,
        t: &pin_core::tax_code::TaxCode,
        r: &pin_core::store::ReserveRequest,
    ) -> Result<Reservation, StoreError> {
        let r = self.inner.reserve_attempt(t, r)?;
        if matches!(r, Reservation::Granted { .. }) {
            self.granted.fetch_add(1, Ordering::SeqCst);
        }
        Ok(r)
    }
    fn settle_attempt(
        &self,
        t: &pin_core::tax_code::TaxCode,
        s: u64,
        lease: pin_core::store::LeaseId,
        l: u32,
        x: Settlement,
        a: &AuditEvent,
    ) -> Result<pin_core::store::Settled, StoreError> {
        self.inner.settle_attempt(t, s, lease, l, x, a)
    }
    fn key_fingerprints(
        &self,
    ) -> Result<Vec<(KeyId, pin_core::keycheck::KeyFingerprint)>, StoreError> {
        self.inner.key_fingerprints()
    }
    fn record_key_fingerprint(
        &self,
        id: KeyId,
        f: &pin_core::keycheck::KeyFingerprint,
    ) -> Result<pin_core::keycheck::KeyFingerprint, StoreError> {
        self.inner.record_key_fingerprint(id, f)
    }
    fn append_audit(&self, e: &[AuditEvent]) -> Result<(), StoreError> {
        self.inner.append_audit(e)
    }
    fn audit_log(
        &self,
        t: Option<&pin_core::tax_code::TaxCode>,
    ) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_log(t)
    }
}

type Counted = PinService<CountingStore, MemoryOutbox, ChaCha20Rng>;

const THREADS: usize = 8;
const GUESSES: usize = 1_000;
const RUNS: u64 = 20;

/// A NoiPA subject with a lockout of 10 and its PIN.
fn counted(seed: u64) -> (Counted, String) {
    let policy = cheap_policy().noipa_lockout(10).build().unwrap();
    let keys = Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap());
    let svc = PinService::new(
        CountingStore::default(),
        MemoryOutbox::new(),
        policy,
        keys,
        ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap();
    let cmd = Command::Enrol(pin_core::command::Enrolment {
        role: Role::Employee,
        contacts: email_only("mario@example.it"),
        cns_holder: false,
        enrolled_on: Some(date(2020, 5, 1)),
    });
    let _ = svc
        .execute(&tax(MARIO), &Actor::Rid("rid-1".into()), &cmd, t0())
        .unwrap();
    let msgs = svc.notifier().take();
    let pin = msgs[0].delivery.secret.expose_secret().to_owned();
    (svc, pin)
}

fn wrong_noipa(pin: &str, i: usize) -> String {
    let w = format!("{:05}", i % 100_000);
    if w == pin {
        wrong_of(pin, PinFormat::NoipaDigits5, i)
    } else {
        w
    }
}

fn rejected_events(svc: &Counted) -> usize {
    let log = svc.store().audit_log(Some(&tax(MARIO))).unwrap();
    log.iter()
        .filter(|e| e.outcome.starts_with("rejected"))
        .count()
}

// rule: POL-1, INPS-12 — 1,000 wrong guesses from 8 threads: at most 10 comparisons, then
// locked, never a success.
#[test]
fn threaded_wrong_guesses_compare_at_most_limit() {
    for run in 0..RUNS {
        let (svc, pin) = counted(run);
        let svc = &svc;
        let pin = pin.as_str();
        let outcomes: Vec<VerifyOutcome> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    scope.spawn(move || {
                        (0..GUESSES / THREADS)
                            .map(|i| {
                                let guess = wrong_noipa(pin, t * 1_000 + i);
                                svc.verify(&tax(MARIO), &guess, Level::Online, t0())
                                    .unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        assert_eq!(outcomes.len(), GUESSES);
        let granted = svc.store().granted.load(Ordering::SeqCst);
        assert_eq!(granted, 10, "run {run}: PIN comparisons");
        let rejected = outcomes
            .iter()
            .filter(|o| matches!(o, VerifyOutcome::Rejected { .. }))
            .count();
        assert_eq!(rejected, 9, "run {run}");
        assert!(outcomes.iter().all(|o| matches!(
            o,
            VerifyOutcome::Rejected { .. } | VerifyOutcome::Locked | VerifyOutcome::TryLater { .. }
        )));
        assert_eq!(
            rejected_events(svc),
            10,
            "run {run}: audit events of a comparison"
        );
        let status = svc.status(&tax(MARIO), t0()).unwrap();
        assert!(
            status.locked && status.attempts.blocked,
            "run {run}: {status:?}"
        );
        assert_eq!(status.attempts.failures, 10);
        // rule: POL-5 — the right PIN no longer opens anything.
        assert_eq!(
            svc.verify(&tax(MARIO), pin, Level::Online, t0()).unwrap(),
            VerifyOutcome::Locked
        );
    }
}

// rule: POL-1, POL-5, POL-8 — the right PIN mixed into a flood of wrong guesses: accepted
// (or asked to try later) only while the PIN is not blocked; once blocked, the right PIN
// gets Locked for good.
#[test]
fn threaded_right_pin_only_before_the_lock() {
    for run in 0..RUNS {
        let (svc, pin) = counted(1_000 + run);
        let svc = &svc;
        let pin = pin.as_str();
        let clock = AtomicU64::new(0);
        let clock = &clock;
        let blocked_seen = AtomicBool::new(false);
        let blocked_seen = &blocked_seen;
        // (thread, start tick, end tick, right PIN?, outcome)
        let records: Vec<(usize, u64, u64, bool, VerifyOutcome)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    scope.spawn(move || {
                        let mut out = Vec::new();
                        for i in 0..GUESSES / THREADS {
                            // Thread 0 types the right PIN every other time; the others
                            // guess, with an occasional right PIN.
                            let right = if t == 0 { i % 2 == 0 } else { i % 16 == 15 };
                            let guess = if right {
                                pin.to_owned()
                            } else {
                                wrong_noipa(pin, t * 1_000 + i)
                            };
                            let blocked_before = svc
                                .store()
                                .load(&tax(MARIO))
                                .unwrap()
                                .unwrap()
                                .attempts
                                .blocked;
                            let start = clock.fetch_add(1, Ordering::SeqCst);
                            let o = svc
                                .verify(&tax(MARIO), &guess, Level::Online, t0())
                                .unwrap();
                            let end = clock.fetch_add(1, Ordering::SeqCst);
                            if blocked_before {
                                blocked_seen.store(true, Ordering::SeqCst);
                                // The lock is never re-opened.
                                assert_eq!(
                                    o,
                                    VerifyOutcome::Locked,
                                    "run {run}: blocked PIN answered"
                                );
                            }
                            if right {
                                assert!(
                                    matches!(
                                        o,
                                        VerifyOutcome::Accepted { .. }
                                            | VerifyOutcome::Locked
                                            | VerifyOutcome::TryLater { .. }
                                    ),
                                    "run {run}: the right PIN got {o:?}"
                                );
                            } else {
                                assert!(!matches!(o, VerifyOutcome::Accepted { .. }), "run {run}");
                            }
                            out.push((t, start, end, right, o));
                        }
                        out
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        let status = svc.status(&tax(MARIO), t0()).unwrap();
        assert!(status.attempts.failures <= 10);
        assert!(svc.store().granted.load(Ordering::SeqCst) as usize <= GUESSES);
        // A Locked answer means the PIN is blocked for good: a right PIN typed after any
        // Locked answer was returned is Locked too, and the subject ends blocked.
        let first_locked_end = records
            .iter()
            .filter(|r| r.4 == VerifyOutcome::Locked)
            .map(|r| r.2)
            .min();
        if let Some(e) = first_locked_end {
            assert!(
                status.attempts.blocked,
                "run {run}: Locked was answered, yet the PIN is not blocked"
            );
            for r in records.iter().filter(|r| r.3 && r.1 > e) {
                assert_eq!(
                    r.4,
                    VerifyOutcome::Locked,
                    "run {run}: the right PIN after the lock: {r:?}"
                );
            }
            assert_eq!(
                svc.verify(&tax(MARIO), pin, Level::Online, t0()).unwrap(),
                VerifyOutcome::Locked
            );
        } else {
            assert!(!status.attempts.blocked);
        }
        let _ = blocked_seen.load(Ordering::SeqCst);
    }
}
