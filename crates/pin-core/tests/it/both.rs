//! Rules common to both issuers (BOTH-*) and the policy choices (POL-*), walking
//! transitions with explicit times.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};

use chrono::{DateTime, Duration, TimeZone, Utc};
use pin_core::command::{Check, Command};
use pin_core::contact::{ContactProof, Email, Mobile};
use pin_core::format::{self, PinFormat};
use pin_core::hash::Keyring;
use pin_core::memory::MemoryStore;
use pin_core::notify::{DeliveryError, MemoryOutbox, Notifier, OutboxMessage, Receipt};
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::{ChangeOutcome, Executed, PinService};
use pin_core::store::Store;
use pin_core::subject::{Channel, DeliveryState, Origin, Role, Subject};
use pin_core::verify::ExpiryReason;
use pin_core::{Actor, Error, Level, Policy, Refusal, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::harness::*;

// ---------------------------------------------------------------------------
// Helpers of this module

fn keys() -> Keyring {
    Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap())
}

fn at(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, mi, s).single().unwrap()
}

fn rid() -> Actor {
    Actor::Rid("rid-1".into())
}

fn drain(outbox: &MemoryOutbox) -> Vec<Received> {
    outbox
        .take()
        .into_iter()
        .map(|OutboxMessage { delivery: d }| Received {
            serial: d.serial,
            part: d.part,
            of: d.of,
            channel: d.channel,
            recipient: d.recipient.clone(),
            text: d.secret.expose_secret().to_owned(),
        })
        .collect()
}

fn only_pin(s: &Service) -> String {
    let msgs = inbox(s);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    msgs[0].text.clone()
}

/// A 5-digit PIN that is not `pin`.
fn wrong5(pin: &str) -> String {
    let mut out: String = pin.chars().take(4).collect();
    let last = pin.chars().last().and_then(|c| c.to_digit(10)).unwrap();
    out.push(char::from_digit((last + 1) % 10, 10).unwrap());
    out
}

/// An 8-character INPS PIN that is not `pin`.
fn wrong8(pin: &str) -> String {
    let first = if pin.starts_with('2') { '3' } else { '2' };
    std::iter::once(first).chain(pin.chars().skip(1)).collect()
}

fn rejected(o: &VerifyOutcome) -> bool {
    matches!(o, VerifyOutcome::Rejected { .. })
}

fn audit_len(s: &Service) -> usize {
    s.store().audit_log(None).unwrap().len()
}

fn exec(
    s: &Service,
    code: &str,
    actor: &Actor,
    cmd: &Command,
    now: DateTime<Utc>,
) -> Result<Executed, Error> {
    s.execute(&tax(code), actor, cmd, now)
}

/// A NoiPA employee with a PIN at enrolment, e-mail only; returns the PIN.
fn employee_with_pin(s: &Service, code: &str, mail: &str, now: DateTime<Utc>) -> String {
    let _ = enrol_employee(s, code, email_only(mail), date(2020, 5, 1), now).unwrap();
    only_pin(s)
}

/// An INPS citizen with full contacts and a web-request PIN; returns the messages.
fn citizen_with_web_pin(s: &Service, code: &str, mail: &str, now: DateTime<Utc>) -> Vec<Received> {
    let _ = enrol_inps(s, code, Role::Citizen, full_contacts(mail), now);
    let _ = exec(
        s,
        code,
        &Actor::Subject,
        &Command::WebRequest {
            address: Check::Passed,
        },
        now,
    )
    .unwrap();
    inbox(s)
}

/// A refusal leaves the record, the audit log and the outbox as they were.
fn assert_refusal_changed_nothing(s: &Service, code: &str, before: &Subject, audit: usize) {
    assert_eq!(&subject(s, code), before, "a refusal changed the record");
    assert_eq!(audit_len(s), audit, "a refusal wrote to the audit log");
    assert!(inbox(s).is_empty(), "a refusal sent a message");
}

/// A notifier whose channels can be told to refuse or to be unavailable. Every attempted
/// delivery is copied to `attempted` (so that the test can still learn the PIN a refused
/// message carried) and its `Debug` text is kept.
#[derive(Debug, Default)]
struct Flaky {
    /// 0: sent; 1: refused for good; 2: unavailable.
    mode: AtomicU8,
    attempted: MemoryOutbox,
    debug: Mutex<Vec<String>>,
}

const SEND: u8 = 0;
const REFUSE: u8 = 1;
const UNAVAILABLE: u8 = 2;

impl Flaky {
    fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }
}

impl Notifier for Flaky {
    fn deliver(&self, d: &pin_core::command::Delivery) -> Result<Receipt, DeliveryError> {
        self.debug.lock().unwrap().push(format!("{d:?}"));
        let _ = self.attempted.deliver(d)?;
        match self.mode.load(Ordering::SeqCst) {
            SEND => Ok(Receipt::Sent),
            REFUSE => Err(DeliveryError::Refused("no such mailbox".into())),
            _ => Err(DeliveryError::Unavailable("gateway down".into())),
        }
    }
}

type FlakyService = PinService<MemoryStore, Flaky, ChaCha20Rng>;

fn flaky_service(seed: u64) -> FlakyService {
    let policy = cheap_policy().build().unwrap();
    PinService::new(
        MemoryStore::new(),
        Flaky::default(),
        policy,
        keys(),
        ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap()
}

fn flaky_pin(s: &FlakyService) -> String {
    let msgs = drain(&s.notifier().attempted);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    msgs[0].text.clone()
}

fn flaky_verify(s: &FlakyService, code: &str, pin: &str, now: DateTime<Utc>) -> VerifyOutcome {
    s.verify(&tax(code), pin, Level::Online, now).unwrap()
}

fn flaky_subject(s: &FlakyService, code: &str) -> Subject {
    s.store().load(&tax(code)).unwrap().unwrap().subject
}

/// Every string of the stored state of `code`: the record, the status and the whole audit
/// log, as JSON.
fn stored_text<S: Store, N: Notifier>(s: &PinService<S, N, ChaCha20Rng>, code: &str) -> String {
    let status = s.status(&tax(code), t0()).unwrap();
    let record =
        serde_json::to_string(&s.store().load(&tax(code)).unwrap().unwrap().subject).unwrap();
    let status = serde_json::to_string(&status).unwrap();
    let audit = serde_json::to_string(&s.store().audit_log(None).unwrap()).unwrap();
    format!("{record}\n{status}\n{audit}")
}

fn assert_absent(haystack: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!secret.is_empty());
        assert!(
            !haystack.contains(secret.as_str()),
            "secret {secret:?} found in stored/debug text"
        );
    }
}

// ---------------------------------------------------------------------------
// BOTH-1

// rule: BOTH-1 — a new issue invalidates the earlier PIN at once, whatever its delivery
// state (pending, sent, confirmed, failed, already used).
#[test]
fn both_1_new_issue_invalidates_earlier_pin_in_every_delivery_state() {
    let cases: [(&str, u8, DeliveryState); 5] = [
        ("pending", UNAVAILABLE, DeliveryState::Pending),
        ("sent", SEND, DeliveryState::Sent),
        ("confirmed", SEND, DeliveryState::Confirmed),
        ("failed", REFUSE, DeliveryState::Failed),
        ("used", SEND, DeliveryState::Confirmed),
    ];
    for (i, (name, mode, state)) in cases.into_iter().enumerate() {
        let s = flaky_service(100 + u64::try_from(i).unwrap());
        s.notifier().set(mode);
        let done = s
            .execute(
                &tax(MARIO),
                &rid(),
                &Command::Enrol(pin_core::command::Enrolment {
                    role: Role::Employee,
                    contacts: email_only("mario@example.it"),
                    cns_holder: false,
                    enrolled_on: Some(date(2020, 5, 1)),
                }),
                t0(),
            )
            .unwrap();
        let a = flaky_pin(&s);
        let serial = done.subject.credential.as_ref().unwrap().serial;
        let t1 = t0() + hours(1);
        if name == "confirmed" {
            let cmd = Command::Receipt {
                serial,
                part: 1,
                channel: Channel::Email,
                state: DeliveryState::Confirmed,
            };
            let _ = s.execute(&tax(MARIO), &Actor::System, &cmd, t1).unwrap();
        }
        if name == "used" {
            assert!(is_accepted(&flaky_verify(&s, MARIO, &a, t1)));
        }
        let parts = flaky_subject(&s, MARIO).credential.unwrap().parts;
        assert_eq!(parts[0].state, state, "{name}");

        // The RID issues a new PIN: the earlier one is gone at once.
        s.notifier().set(SEND);
        let t2 = t0() + hours(2);
        let _ = s
            .execute(
                &tax(MARIO),
                &rid(),
                &Command::Identify {
                    contacts: email_only("mario@example.it"),
                },
                t2,
            )
            .unwrap();
        let b = flaky_pin(&s);
        assert_ne!(a, b, "{name}");
        assert!(rejected(&flaky_verify(&s, MARIO, &a, t2)), "{name}");
        assert!(is_accepted(&flaky_verify(&s, MARIO, &b, t2)), "{name}");
        assert!(
            rejected(&flaky_verify(&s, MARIO, &a, t2 + hours(1))),
            "{name}"
        );
        // A late receipt for the old PIN changes nothing.
        let before = flaky_subject(&s, MARIO);
        let cmd = Command::Receipt {
            serial,
            part: 1,
            channel: Channel::Email,
            state: DeliveryState::Confirmed,
        };
        let _ = s
            .execute(&tax(MARIO), &Actor::System, &cmd, t2 + hours(2))
            .unwrap();
        assert_eq!(flaky_subject(&s, MARIO), before, "{name}");
    }
}

// rule: BOTH-1 — INPS halves of different issues never combine into a valid PIN.
#[test]
fn both_1_inps_halves_of_different_issues_never_combine() {
    let s = service();
    let a = citizen_with_web_pin(&s, LAURA, "laura@example.it", t0());
    assert_eq!(a.len(), 2);
    // Issue B: a reset quoting two registered contacts (INPS-14).
    let proofs = vec![
        ContactProof::Email(Email::parse("laura@example.it").unwrap()),
        ContactProof::Mobile(Mobile::parse("347 123 4567").unwrap()),
    ];
    let t1 = t0() + hours(3);
    let _ = exec(&s, LAURA, &Actor::Subject, &Command::Reset { proofs }, t1).unwrap();
    let b = inbox(&s);
    assert_eq!(b.len(), 2, "{b:?}");
    let half =
        |msgs: &[Received], part: u8| msgs.iter().find(|m| m.part == part).unwrap().text.clone();
    let (a1, a2, b1, b2) = (half(&a, 1), half(&a, 2), half(&b, 1), half(&b, 2));
    assert_ne!(a1, b1);
    assert_ne!(a2, b2);

    for (what, pin) in [
        ("part 1 of A + part 2 of B", format!("{a1}{b2}")),
        ("part 1 of B + part 2 of A", format!("{b1}{a2}")),
        ("all of A", format!("{a1}{a2}")),
    ] {
        let o = verify(&s, LAURA, &pin, t1);
        assert!(rejected(&o), "{what}: {o:?}");
        let c = s
            .change_pin(&tax(LAURA), &pin, Some("K7QM2ZXA"), t1)
            .unwrap();
        assert!(
            matches!(
                c,
                ChangeOutcome::NotAuthenticated(VerifyOutcome::Rejected { .. })
            ),
            "{what}: {c:?}"
        );
    }
    // Only B, whole, is the PIN (still to be changed, INPS-3).
    assert_eq!(
        verify(&s, LAURA, &format!("{b1}{b2}"), t1),
        VerifyOutcome::MustChange
    );
}

// rule: BOTH-1 — a second web request also replaces the first PIN at once.
#[test]
fn both_1_second_web_request_replaces_first() {
    let s = service();
    let a = assemble(&citizen_with_web_pin(&s, LAURA, "laura@example.it", t0()));
    let t1 = t0() + hours(1);
    let _ = exec(
        &s,
        LAURA,
        &Actor::Subject,
        &Command::WebRequest {
            address: Check::Passed,
        },
        t1,
    )
    .unwrap();
    let b = assemble(&inbox(&s));
    assert_ne!(a, b);
    assert!(rejected(&verify(&s, LAURA, &a, t1)));
    assert_eq!(verify(&s, LAURA, &b, t1), VerifyOutcome::MustChange);
}

// ---------------------------------------------------------------------------
// BOTH-2

// rule: BOTH-2 — the store keeps only hashes: no PIN, and no half of one, appears in the
// stored record, the status or the audit log.
#[test]
fn both_2_store_keeps_only_hashes() {
    let s = service();
    let mut secrets = Vec::new();

    // NoiPA: enrolment, identification, re-send, use.
    secrets.push(employee_with_pin(&s, MARIO, "mario@example.it", t0()));
    let _ = exec(
        &s,
        MARIO,
        &rid(),
        &Command::Identify {
            contacts: email_only("mario@example.it"),
        },
        t0() + hours(1),
    )
    .unwrap();
    secrets.push(only_pin(&s));
    let _ = exec(
        &s,
        MARIO,
        &Actor::Subject,
        &Command::Resend,
        t0() + hours(2),
    )
    .unwrap();
    let last = only_pin(&s);
    assert!(is_accepted(&verify(&s, MARIO, &last, t0() + hours(3))));
    secrets.push(last);

    // INPS: web request (halves), change to a chosen PIN, then a generated one.
    let msgs = citizen_with_web_pin(&s, LAURA, "laura@example.it", t0());
    let pin16 = assemble(&msgs);
    secrets.extend(msgs.iter().map(|m| m.text.clone()));
    secrets.push(pin16.clone());
    let c = s
        .change_pin(&tax(LAURA), &pin16, Some("K7QM2ZXA"), t0() + hours(1))
        .unwrap();
    assert!(matches!(c, ChangeOutcome::Changed { revealed: None }));
    secrets.push("K7QM2ZXA".into());
    let c = s
        .change_pin(&tax(LAURA), "K7QM2ZXA", None, t0() + hours(2))
        .unwrap();
    let ChangeOutcome::Changed {
        revealed: Some(generated),
    } = c
    else {
        panic!("{c:?}")
    };
    let generated = generated.expose_secret().to_owned();
    assert!(is_accepted(&verify(&s, LAURA, &generated, t0() + hours(3))));
    secrets.push(generated);

    for code in [MARIO, LAURA] {
        let stored = stored_text(&s, code);
        assert_absent(&stored, &secrets);
        // What is kept is a hash.
        let cred = subject(&s, code).credential.unwrap();
        let hash = serde_json::to_string(&cred.hash).unwrap();
        assert!(hash.contains("argon2id"), "{hash}");
    }
}

// rule: BOTH-2 — `Debug` of deliveries, PINs, outbox messages, results and the service
// never shows a PIN.
#[test]
fn both_2_debug_never_shows_a_pin() {
    let s = flaky_service(3);
    let cmd = Command::Enrol(pin_core::command::Enrolment {
        role: Role::Citizen,
        contacts: full_contacts("laura@example.it"),
        cns_holder: false,
        enrolled_on: None,
    });
    let _ = s.execute(&tax(LAURA), &Actor::Subject, &cmd, t0()).unwrap();
    let done = s
        .execute(
            &tax(LAURA),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            t0(),
        )
        .unwrap();
    let executed_debug = format!("{done:?}");
    let delivery_debug = s.notifier().debug.lock().unwrap().join("\n");
    assert_eq!(s.notifier().debug.lock().unwrap().len(), 2);
    let messages = s.notifier().attempted.take();
    let outbox_debug = format!("{messages:?}");
    let texts: Vec<String> = messages
        .iter()
        .map(|m| m.delivery.secret.expose_secret().to_owned())
        .collect();
    let whole = texts.concat();
    let mut secrets = texts.clone();
    secrets.push(whole.clone());

    let generated = s
        .change_pin(&tax(LAURA), &whole, None, t0() + hours(1))
        .unwrap();
    let change_debug = format!("{generated:?}");
    let ChangeOutcome::Changed {
        revealed: Some(pin),
    } = generated
    else {
        panic!()
    };
    let pin_debug = format!("{pin:?}");
    secrets.push(pin.expose_secret().to_owned());
    let parsed = format::parse_input(PinFormat::NoipaDigits5, "48213").unwrap();
    let parsed_debug = format!("{parsed:?}");
    secrets.push("48213".into());
    let service_debug = format!("{s:?}");
    let status_debug = format!("{:?}", s.status(&tax(LAURA), t0()).unwrap());

    for (what, text) in [
        ("Delivery", &delivery_debug),
        ("OutboxMessage", &outbox_debug),
        ("Executed", &executed_debug),
        ("ChangeOutcome", &change_debug),
        ("Pin", &pin_debug),
        ("parsed Pin", &parsed_debug),
        ("PinService", &service_debug),
        ("Status", &status_debug),
    ] {
        assert!(!text.is_empty(), "{what}");
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} Debug shows {secret:?}: {text}"
            );
        }
    }
    // The pepper does not show either.
    assert!(
        !service_debug.contains("5a5a") && !service_debug.contains("90, 90"),
        "{service_debug}"
    );
}

// rule: BOTH-2 — split delivery gives each channel only its half: no single message holds
// the whole 16 characters, and the halves travel on different channels.
#[test]
fn both_2_split_delivery_gives_each_channel_one_half() {
    let s = service();
    // Web request (INPS-6): SMS + post.
    let web = citizen_with_web_pin(&s, LAURA, "laura@example.it", t0());
    // Contact centre (INPS-7): phone + SMS, and post.
    let _ = enrol_inps(
        &s,
        GIUSEPPE,
        Role::Citizen,
        full_contacts("giuseppe@example.it"),
        t0(),
    );
    let cmd = Command::ContactCentreRequest {
        archives: Check::Passed,
    };
    let _ = exec(
        &s,
        GIUSEPPE,
        &Actor::ContactCentre("cc-1".into()),
        &cmd,
        t0(),
    )
    .unwrap();
    let cc = inbox(&s);
    assert_eq!(web.len(), 2, "{web:?}");
    assert_eq!(cc.len(), 3, "{cc:?}");

    for (code, msgs) in [(LAURA, &web), (GIUSEPPE, &cc)] {
        let whole = assemble(msgs);
        assert_eq!(whole.len(), 16);
        assert_eq!(verify(&s, code, &whole, t0()), VerifyOutcome::MustChange);
        for m in msgs.iter() {
            assert_eq!(m.of, 2);
            assert_eq!(m.text.len(), 8, "{m:?}");
            assert!(!m.text.contains(&whole));
            let expected = if m.part == 1 {
                &whole[..8]
            } else {
                &whole[8..]
            };
            assert_eq!(m.text, expected);
        }
        let first: Vec<Channel> = msgs
            .iter()
            .filter(|m| m.part == 1)
            .map(|m| m.channel)
            .collect();
        let second: Vec<Channel> = msgs
            .iter()
            .filter(|m| m.part == 2)
            .map(|m| m.channel)
            .collect();
        assert_eq!(second, vec![Channel::Post]);
        assert!(!first.contains(&Channel::Post), "{first:?}");
        // Neither half alone is the PIN.
        for m in msgs.iter() {
            let r = s.verify(&tax(code), &m.text, Level::Online, t0());
            assert!(
                !matches!(
                    r,
                    Ok(VerifyOutcome::Accepted { .. } | VerifyOutcome::MustChange)
                ),
                "{r:?}"
            );
        }
    }
    let cc_first: Vec<Channel> = cc
        .iter()
        .filter(|m| m.part == 1)
        .map(|m| m.channel)
        .collect();
    assert_eq!(cc_first, vec![Channel::Phone, Channel::Sms]);
}

// ---------------------------------------------------------------------------
// POL-1

// rule: POL-1 — NoiPA: 9 wrong attempts leave one try; the 10th blocks; then even the right
// PIN is refused.
#[test]
fn pol_1_noipa_lockout_after_10_consecutive_wrong_attempts() {
    assert_eq!(Policy::default().noipa_lockout(), 10);
    let s = service();
    let pin = employee_with_pin(&s, MARIO, "mario@example.it", t0());
    let bad = wrong5(&pin);
    let mut now = t0();
    for i in 1..=9u32 {
        now += Duration::minutes(1);
        let o = verify(&s, MARIO, &bad, now);
        assert_eq!(
            o,
            VerifyOutcome::Rejected {
                remaining_attempts: 10 - i,
                final_try: i == 9
            },
            "attempt {i}"
        );
    }
    assert_eq!(
        verify(&s, MARIO, &bad, now + Duration::minutes(1)),
        VerifyOutcome::Locked
    );
    assert_eq!(
        verify(&s, MARIO, &pin, now + Duration::minutes(2)),
        VerifyOutcome::Locked
    );
    assert_eq!(
        verify(&s, MARIO, &pin, now + Duration::days(30)),
        VerifyOutcome::Locked
    );
    let st = s.status(&tax(MARIO), now).unwrap();
    assert!(st.locked);
    assert!(st.attempts.blocked);
    assert_eq!(st.remaining_attempts, 0);
}

// rule: POL-1 — the attempts are consecutive: a success starts the count again.
#[test]
fn pol_1_success_resets_the_count() {
    let s = service();
    let pin = employee_with_pin(&s, MARIO, "mario@example.it", t0());
    let bad = wrong5(&pin);
    for _ in 0..9 {
        assert!(rejected(&verify(&s, MARIO, &bad, t0())));
    }
    assert!(is_accepted(&verify(&s, MARIO, &pin, t0())));
    for i in 1..=9u32 {
        let o = verify(&s, MARIO, &bad, t0() + hours(1));
        assert_eq!(
            o,
            VerifyOutcome::Rejected {
                remaining_attempts: 10 - i,
                final_try: i == 9
            }
        );
    }
    assert!(is_accepted(&verify(&s, MARIO, &pin, t0() + hours(2))));
}

// ---------------------------------------------------------------------------
// POL-2

// rule: POL-2 — a NoiPA PIN in use does not expire: still accepted years later.
#[test]
fn pol_2_noipa_pin_does_not_expire() {
    assert_eq!(Policy::default().noipa_rotation_months(), None);
    let s = service();
    let pin = employee_with_pin(&s, MARIO, "mario@example.it", t0());
    assert!(is_accepted(&verify(&s, MARIO, &pin, t0() + hours(1))));
    let years = t0() + Duration::days(365 * 7);
    let o = verify(&s, MARIO, &pin, years);
    assert!(
        matches!(
            o,
            VerifyOutcome::Accepted {
                rotation_due: None,
                ..
            }
        ),
        "{o:?}"
    );
    assert_eq!(s.status(&tax(MARIO), years).unwrap().rotation_due, None);
}

// rule: POL-2, INPS-11 — INPS rotation in calendar months from the last change: changed on
// 31 August + 6 months = 28 February; expired at that instant, accepted one second before.
#[test]
fn pol_2_inps_citizen_rotation_in_calendar_months() {
    let s = service();
    let changed = at(2026, 8, 31, 10, 0, 0);
    let pin16 = assemble(&citizen_with_web_pin(
        &s,
        LAURA,
        "laura@example.it",
        changed,
    ));
    let c = s
        .change_pin(&tax(LAURA), &pin16, Some("K7QM2ZXA"), changed)
        .unwrap();
    assert!(matches!(c, ChangeOutcome::Changed { .. }));
    let due = at(2027, 2, 28, 10, 0, 0);
    assert_eq!(
        subject(&s, LAURA).credential.unwrap().changed_at,
        Some(changed)
    );
    assert_eq!(
        s.status(&tax(LAURA), changed).unwrap().rotation_due,
        Some(due)
    );

    let o = verify(&s, LAURA, "K7QM2ZXA", due - Duration::seconds(1));
    assert!(
        matches!(o, VerifyOutcome::Accepted { rotation_due: Some(d), .. } if d == due),
        "{o:?}"
    );
    assert_eq!(
        verify(&s, LAURA, "K7QM2ZXA", due),
        VerifyOutcome::Expired {
            reason: ExpiryReason::Rotation
        }
    );
    // An expired PIN still authenticates a change; the count starts again from it.
    let c = s
        .change_pin(&tax(LAURA), "K7QM2ZXA", Some("P4HT9WNC"), due)
        .unwrap();
    assert!(matches!(c, ChangeOutcome::Changed { .. }), "{c:?}");
    let next = at(2027, 8, 28, 10, 0, 0);
    let o = verify(&s, LAURA, "P4HT9WNC", next - Duration::seconds(1));
    assert!(
        matches!(o, VerifyOutcome::Accepted { rotation_due: Some(d), .. } if d == next),
        "{o:?}"
    );
    assert_eq!(
        verify(&s, LAURA, "P4HT9WNC", next),
        VerifyOutcome::Expired {
            reason: ExpiryReason::Rotation
        }
    );
}

// rule: POL-2, INPS-11 — intermediaries rotate every 3 calendar months: 30 November → 28
// February (2027 is not a leap year); and the count runs from the *last* change.
#[test]
fn pol_2_inps_intermediary_rotation_from_last_change() {
    let s = service();
    let issued = at(2026, 11, 1, 8, 0, 0);
    let _ = enrol_inps(
        &s,
        GIUSEPPE,
        Role::Intermediary,
        full_contacts("caf@example.it"),
        issued,
    );
    let _ = exec(
        &s,
        GIUSEPPE,
        &Actor::Subject,
        &Command::WebRequest {
            address: Check::Passed,
        },
        issued,
    )
    .unwrap();
    let pin16 = assemble(&inbox(&s));
    let first = at(2026, 11, 2, 8, 0, 0);
    let _ = s
        .change_pin(&tax(GIUSEPPE), &pin16, Some("K7QM2ZXA"), first)
        .unwrap();
    let changed = at(2026, 11, 30, 8, 0, 0);
    let _ = s
        .change_pin(&tax(GIUSEPPE), "K7QM2ZXA", Some("P4HT9WNC"), changed)
        .unwrap();
    let due = at(2027, 2, 28, 8, 0, 0);
    // Not counted from the first change (which would give 2 February).
    assert!(is_accepted(&verify(
        &s,
        GIUSEPPE,
        "P4HT9WNC",
        at(2027, 2, 2, 8, 0, 0)
    )));
    assert!(is_accepted(&verify(
        &s,
        GIUSEPPE,
        "P4HT9WNC",
        due - Duration::seconds(1)
    )));
    assert_eq!(
        verify(&s, GIUSEPPE, "P4HT9WNC", due),
        VerifyOutcome::Expired {
            reason: ExpiryReason::Rotation
        }
    );
}

// ---------------------------------------------------------------------------
// POL-3

// rule: POL-3 — a failed delivery leaves the part Failed; a re-send issues a fresh,
// different PIN; the old one no longer verifies; neither is stored in clear.
#[test]
fn pol_3_failed_delivery_is_recovered_by_a_fresh_pin() {
    let s = flaky_service(11);
    s.notifier().set(REFUSE);
    let cmd = Command::Enrol(pin_core::command::Enrolment {
        role: Role::Employee,
        contacts: email_only("mario@example.it"),
        cns_holder: false,
        enrolled_on: Some(date(2020, 5, 1)),
    });
    let done = s.execute(&tax(MARIO), &rid(), &cmd, t0()).unwrap();
    assert_eq!(done.deliveries.len(), 1);
    assert_eq!(done.deliveries[0].state, DeliveryState::Failed);
    let err = done.deliveries[0].error.clone().unwrap();
    let old = flaky_pin(&s);
    assert!(!err.contains(&old), "{err}");
    let cred = flaky_subject(&s, MARIO).credential.unwrap();
    assert_eq!(cred.parts.len(), 1);
    assert_eq!(cred.parts[0].state, DeliveryState::Failed);
    assert_eq!(cred.serial, 1);

    // The channel works again; the person asks for a re-send.
    s.notifier().set(SEND);
    let t1 = t0() + hours(1);
    let done = s
        .execute(&tax(MARIO), &Actor::Subject, &Command::Resend, t1)
        .unwrap();
    assert_eq!(done.deliveries[0].state, DeliveryState::Sent);
    let new = flaky_pin(&s);
    assert_ne!(old, new);
    let cred = flaky_subject(&s, MARIO).credential.unwrap();
    assert_eq!((cred.serial, cred.origin), (2, Origin::Resend));
    assert_eq!(cred.parts[0].state, DeliveryState::Sent);
    assert!(rejected(&flaky_verify(&s, MARIO, &old, t1)));
    assert!(is_accepted(&flaky_verify(&s, MARIO, &new, t1)));
    assert_absent(&stored_text(&s, MARIO), &[old, new]);
}

// rule: POL-3 — the same for INPS halves: both halves are fresh after a re-send.
#[test]
fn pol_3_inps_failed_half_is_recovered_by_fresh_halves() {
    let s = flaky_service(12);
    let cmd = Command::Enrol(pin_core::command::Enrolment {
        role: Role::Citizen,
        contacts: full_contacts("laura@example.it"),
        cns_holder: false,
        enrolled_on: None,
    });
    let _ = s.execute(&tax(LAURA), &Actor::Subject, &cmd, t0()).unwrap();
    s.notifier().set(REFUSE);
    let done = s
        .execute(
            &tax(LAURA),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            t0(),
        )
        .unwrap();
    assert!(
        done.deliveries
            .iter()
            .all(|d| d.state == DeliveryState::Failed)
    );
    let old = drain(&s.notifier().attempted);
    s.notifier().set(SEND);
    let t1 = t0() + hours(1);
    let _ = s
        .execute(&tax(LAURA), &Actor::Subject, &Command::Resend, t1)
        .unwrap();
    let new = drain(&s.notifier().attempted);
    assert_eq!(new.len(), 2);
    for part in 1..=2u8 {
        let o = old.iter().find(|m| m.part == part).unwrap();
        let n = new.iter().find(|m| m.part == part).unwrap();
        assert_eq!(o.channel, n.channel);
        assert_ne!(o.text, n.text, "part {part} re-used");
    }
    assert!(rejected(&flaky_verify(&s, LAURA, &assemble(&old), t1)));
    assert_eq!(
        flaky_verify(&s, LAURA, &assemble(&new), t1),
        VerifyOutcome::MustChange
    );
    let mut secrets: Vec<String> = old.iter().chain(&new).map(|m| m.text.clone()).collect();
    secrets.push(assemble(&old));
    secrets.push(assemble(&new));
    assert_absent(&stored_text(&s, LAURA), &secrets);
}

// ---------------------------------------------------------------------------
// POL-4

// rule: POL-4 — 5 re-sends in 24 h; the 6th is refused and changes nothing; once the oldest
// leaves the sliding window, one more is allowed.
#[test]
fn pol_4_resend_rate_limit_slides() {
    assert_eq!(Policy::default().resend_limit(), 5);
    let s = service();
    let mut pin = employee_with_pin(&s, MARIO, "mario@example.it", t0());
    for k in 1..=5 {
        let _ = exec(
            &s,
            MARIO,
            &Actor::Subject,
            &Command::Resend,
            t0() + hours(k),
        )
        .unwrap();
        let next = only_pin(&s);
        assert_ne!(next, pin);
        pin = next;
    }
    let before = subject(&s, MARIO);
    let audit = audit_len(&s);
    let first = t0() + hours(1);
    for now in [t0() + hours(6), first + hours(24) - Duration::seconds(1)] {
        let r = exec(&s, MARIO, &Actor::Subject, &Command::Resend, now);
        match r {
            Err(Error::Refused(Refusal::ResendLimit { until })) => {
                assert_eq!(until, first + hours(24))
            }
            other => panic!("{other:?}"),
        }
        assert_refusal_changed_nothing(&s, MARIO, &before, audit);
        // Support is limited alike, once its 12-hour wait since the last issue (+5 h) is
        // over (NOIPA-5).
        let r = exec(
            &s,
            MARIO,
            &Actor::Support("s-1".into()),
            &Command::Resend,
            now,
        );
        if now < t0() + hours(5) + hours(12) {
            assert!(
                matches!(r, Err(Error::Refused(Refusal::ResendTooEarly { .. }))),
                "{r:?}"
            );
        } else {
            assert!(
                matches!(r, Err(Error::Refused(Refusal::ResendLimit { .. }))),
                "{r:?}"
            );
        }
        assert_refusal_changed_nothing(&s, MARIO, &before, audit);
    }
    // The last PIN sent is untouched by the refusals.
    assert!(is_accepted(&verify(&s, MARIO, &pin, t0() + hours(7))));
    // …but a used PIN is no longer re-sent; start again with a fresh identification.
    let _ = exec(
        &s,
        MARIO,
        &rid(),
        &Command::Identify {
            contacts: email_only("mario@example.it"),
        },
        t0() + hours(8),
    )
    .unwrap();
    let _ = inbox(&s);
    // Re-sends at +1 … +5 h are still in the window: refused until +25 h.
    let r = exec(
        &s,
        MARIO,
        &Actor::Subject,
        &Command::Resend,
        t0() + hours(9),
    );
    assert!(
        matches!(r, Err(Error::Refused(Refusal::ResendLimit { .. }))),
        "{r:?}"
    );
    // At +25 h the first re-send has left the window: one more is allowed, and then the
    // next waits for the second (+2 h) to leave.
    let _ = exec(
        &s,
        MARIO,
        &Actor::Subject,
        &Command::Resend,
        first + hours(24),
    )
    .unwrap();
    assert_eq!(inbox(&s).len(), 1);
    let r = exec(
        &s,
        MARIO,
        &Actor::Subject,
        &Command::Resend,
        first + hours(24),
    );
    match r {
        Err(Error::Refused(Refusal::ResendLimit { until })) => {
            assert_eq!(until, t0() + hours(2) + hours(24))
        }
        other => panic!("{other:?}"),
    }
    let _ = exec(
        &s,
        MARIO,
        &Actor::Subject,
        &Command::Resend,
        t0() + hours(26),
    )
    .unwrap();
    assert_eq!(inbox(&s).len(), 1);
}

// ---------------------------------------------------------------------------
// POL-5

// rule: POL-5 — a blocked PIN never becomes valid: a re-send is refused; a higher limit does
// not unblock it; re-identification issues a new working PIN.
#[test]
fn pol_5_blocked_pin_never_becomes_valid() {
    let s = service();
    let pin = employee_with_pin(&s, MARIO, "mario@example.it", t0());
    let bad = wrong5(&pin);
    for _ in 0..10 {
        let _ = verify(&s, MARIO, &bad, t0());
    }
    assert_eq!(verify(&s, MARIO, &pin, t0()), VerifyOutcome::Locked);

    // A re-send would be a way around the block: refused for everyone, nothing changed.
    let before = subject(&s, MARIO);
    let audit = audit_len(&s);
    let t1 = t0() + hours(13);
    for actor in [
        Actor::Subject,
        Actor::Support("s-1".into()),
        rid(),
        Actor::System,
    ] {
        let r = exec(&s, MARIO, &actor, &Command::Resend, t1);
        assert!(
            matches!(r, Err(Error::Refused(Refusal::Blocked))),
            "{actor:?}: {r:?}"
        );
        assert_refusal_changed_nothing(&s, MARIO, &before, audit);
    }

    // A service with a higher limit over the same store: still locked.
    let lenient = cheap_policy().noipa_lockout(20).build().unwrap();
    let outbox = MemoryOutbox::new();
    let other = PinService::new(
        s.store(),
        &outbox,
        lenient,
        keys(),
        ChaCha20Rng::seed_from_u64(99),
    )
    .unwrap();
    assert_eq!(
        other.verify(&tax(MARIO), &pin, Level::Online, t1).unwrap(),
        VerifyOutcome::Locked
    );
    assert!(other.status(&tax(MARIO), t1).unwrap().locked);
    let r = other.execute(&tax(MARIO), &Actor::Subject, &Command::Resend, t1);
    assert!(matches!(r, Err(Error::Refused(Refusal::Blocked))), "{r:?}");
    assert!(drain(&outbox).is_empty());
    assert_eq!(verify(&s, MARIO, &pin, t1), VerifyOutcome::Locked);

    // Re-identification by the RID: a new PIN with a fresh count; the blocked one is gone.
    let t2 = t1 + hours(1);
    let _ = exec(
        &s,
        MARIO,
        &rid(),
        &Command::Identify {
            contacts: email_only("mario@example.it"),
        },
        t2,
    )
    .unwrap();
    let fresh = only_pin(&s);
    assert_ne!(fresh, pin);
    let st = s.status(&tax(MARIO), t2).unwrap();
    assert!(!st.locked);
    assert_eq!(st.remaining_attempts, 10);
    assert!(is_accepted(&verify(&s, MARIO, &fresh, t2)));
    assert!(rejected(&verify(&s, MARIO, &pin, t2)));
}

// rule: POL-5 — a re-send does not restore the attempt budget either.
#[test]
fn pol_5_resend_carries_failures_over() {
    let s = service();
    let pin = employee_with_pin(&s, MARIO, "mario@example.it", t0());
    for _ in 0..6 {
        assert!(rejected(&verify(&s, MARIO, &wrong5(&pin), t0())));
    }
    let _ = exec(
        &s,
        MARIO,
        &Actor::Subject,
        &Command::Resend,
        t0() + hours(1),
    )
    .unwrap();
    let new = only_pin(&s);
    assert_eq!(s.status(&tax(MARIO), t0()).unwrap().remaining_attempts, 4);
    let o = verify(&s, MARIO, &wrong5(&new), t0() + hours(1));
    assert_eq!(
        o,
        VerifyOutcome::Rejected {
            remaining_attempts: 3,
            final_try: false
        }
    );
}

// rule: POL-5, INPS-12, INPS-14 — INPS: a blocked PIN is unblocked only by a reset, which
// issues a new PIN.
#[test]
fn pol_5_inps_reset_issues_new_pin_after_block() {
    let s = service();
    let pin16 = assemble(&citizen_with_web_pin(&s, LAURA, "laura@example.it", t0()));
    let _ = s
        .change_pin(&tax(LAURA), &pin16, Some("K7QM2ZXA"), t0())
        .unwrap();
    for _ in 0..10 {
        let _ = verify(&s, LAURA, &wrong8("K7QM2ZXA"), t0() + hours(1));
    }
    assert_eq!(
        verify(&s, LAURA, "K7QM2ZXA", t0() + hours(1)),
        VerifyOutcome::Locked
    );
    let c = s
        .change_pin(&tax(LAURA), "K7QM2ZXA", Some("P4HT9WNC"), t0() + hours(1))
        .unwrap();
    assert!(
        matches!(c, ChangeOutcome::NotAuthenticated(VerifyOutcome::Locked)),
        "{c:?}"
    );

    let proofs = vec![
        ContactProof::Email(Email::parse("laura@example.it").unwrap()),
        ContactProof::Pec(Email::parse("pec.user@pec.example.it").unwrap()),
    ];
    let t2 = t0() + hours(2);
    let _ = exec(&s, LAURA, &Actor::Subject, &Command::Reset { proofs }, t2).unwrap();
    let reset = assemble(&inbox(&s));
    assert_eq!(verify(&s, LAURA, &reset, t2), VerifyOutcome::MustChange);
    let c = s
        .change_pin(&tax(LAURA), &reset, Some("P4HT9WNC"), t2)
        .unwrap();
    assert!(matches!(c, ChangeOutcome::Changed { .. }), "{c:?}");
    assert!(is_accepted(&verify(&s, LAURA, "P4HT9WNC", t2)));
    assert!(rejected(&verify(&s, LAURA, "K7QM2ZXA", t2)));
}
