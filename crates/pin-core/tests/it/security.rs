//! Regression tests of the security fixes: each test was first a reproduction of a bug and
//! now asserts the fixed behaviour. Rule ids are cited per test.

use std::sync::atomic::{AtomicBool, Ordering};

use chrono::{DateTime, Duration, Utc};
use pin_core::audit::AuditEvent;
use pin_core::command::{Authenticated, Check, Command, Imported, NewPin, PROOF_TTL};
use pin_core::contact::{ContactProof, Contacts, Email, Mobile};
use pin_core::format::{self, PinFormat};
use pin_core::hash::{HashError, Keyring, Verified};
use pin_core::memory::MemoryStore;
use pin_core::notify::MemoryOutbox;
use pin_core::secret::{KeyId, Pepper};
use pin_core::self_service::{Proof, SelfService, authorize};
use pin_core::service::{ChangeOutcome, PinService};
use pin_core::store::{LeaseId, ReserveRequest};
use pin_core::store::{Loaded, Store, StoreError};
use pin_core::subject::{Channel, Level, Role, Stage, Subject};
use pin_core::tax_code::TaxCode;
use pin_core::verify::{self, Purpose, Reservation, Settled, Settlement};
use pin_core::{Actor, Error, Refusal, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::harness::*;

// ---------------------------------------------------------------------------------------
// Helpers

const NEW_MOBILE: &str = "333 000 0000";

fn access() -> Purpose {
    Purpose::Access {
        required: Level::Online,
    }
}

/// Mario's contacts with another mobile: what an impostor would redirect the PIN to.
fn redirected() -> Contacts {
    Contacts {
        mobile: mobile(NEW_MOBILE),
        ..full_contacts("mario@example.it")
    }
}

fn change_contacts(
    s: &Service,
    code: &str,
    proof: Option<Authenticated>,
    now: DateTime<Utc>,
) -> Result<pin_core::service::Executed, Error> {
    s.execute(
        &tax(code),
        &Actor::Subject,
        &Command::ChangeContacts {
            contacts: redirected(),
            authenticated: proof,
        },
        now,
    )
}

fn audit_len(s: &Service) -> usize {
    s.store().audit_log(None).unwrap().len()
}

/// An INPS citizen with a web-request PIN (16 characters, MustChange): the whole 16.
fn inps_web_pin(s: &Service, code: &str, now: DateTime<Utc>) -> String {
    let _ = enrol_inps(
        s,
        code,
        Role::Citizen,
        full_contacts("mario@example.it"),
        now,
    );
    let _ = s
        .execute(
            &tax(code),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            now,
        )
        .unwrap();
    let pin16 = assemble(&inbox(s));
    assert_eq!(pin16.len(), 16);
    pin16
}

const CHOSEN: &str = "R7KX2MQ9";

/// An INPS citizen whose PIN was changed to [`CHOSEN`] at `now`.
fn inps_in_use(s: &Service, code: &str, now: DateTime<Utc>) {
    let pin16 = inps_web_pin(s, code, now);
    let out = s.change_pin(&tax(code), &pin16, Some(CHOSEN), now).unwrap();
    assert!(matches!(out, ChangeOutcome::Changed { .. }), "{out:?}");
}

fn proof(
    s: &Service,
    code: &str,
    pin: &str,
    purpose: Purpose,
    now: DateTime<Utc>,
) -> Authenticated {
    let v = s.authenticate(&tax(code), pin, purpose, now).unwrap();
    v.proof
        .unwrap_or_else(|| panic!("no proof: {:?}", v.outcome))
}

fn assert_wrong_proof(r: &Result<pin_core::service::Executed, Error>) {
    assert!(
        matches!(r, Err(Error::Refused(Refusal::WrongProof { .. }))),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Forged proofs (BOTH-2)

// rule: BOTH-2, INPS-3 — a proof of authentication cannot be forged: `verify::finish` needs a
// `Compared`, which only `Hasher::compare` makes, and it grants a proof only when that
// compare matched *this* credential's stored hash.
#[test]
fn both_2_forged_proof_is_impossible() {
    let s = service();
    let pin16 = inps_web_pin(&s, MARIO, t0());
    let mario = subject(&s, MARIO);
    let hash = mario.credential.as_ref().unwrap().hash.clone();
    let policy = s.policy();
    let finish =
        |c: &pin_core::hash::Compared| verify::finish(&mario, c, Purpose::Change, t0(), policy);

    // A wrong PIN compared with the right hash: no proof.
    let wrong = format::parse_input(PinFormat::InpsIssued16, "AB3CD4EF5GH6JK7L").unwrap();
    let c = s.hasher().compare(&wrong, &hash).unwrap();
    assert_eq!(c.verified(), Verified::Mismatch);
    let f = finish(&c);
    assert!(f.proof.is_none());
    assert!(matches!(f.settle, Settlement::Failure));
    let settled = Settled::Done {
        failures: 1,
        blocked: false,
        newly_blocked: false,
    };
    assert!(
        matches!(f.outcome(settled), Some(VerifyOutcome::Rejected { .. })),
        "{:?}",
        f.outcome(settled)
    );

    // A PIN the attacker chose, compared with a hash the attacker made of it: it matches
    // that hash, but not Mario's, so it grants nothing.
    let own = s
        .hasher()
        .hash(&wrong, &mut ChaCha20Rng::seed_from_u64(1))
        .unwrap();
    let c = s.hasher().compare(&wrong, &own).unwrap();
    assert!(matches!(c.verified(), Verified::Match { .. }));
    assert!(c.matched(&own));
    assert!(!c.matched(&hash));
    let f = finish(&c);
    assert!(
        f.proof.is_none(),
        "a compare against another hash granted a proof"
    );
    assert!(matches!(f.settle, Settlement::Failure));

    // Another person's right PIN against their own credential does not open Mario's.
    let g16 = inps_web_pin(&s, GIUSEPPE, t0());
    let g_hash = subject(&s, GIUSEPPE).credential.unwrap().hash;
    let g_pin = format::parse_input(PinFormat::InpsIssued16, &g16).unwrap();
    let c = s.hasher().compare(&g_pin, &g_hash).unwrap();
    assert!(c.matched(&g_hash));
    assert!(finish(&c).proof.is_none());

    // Mario's own earlier PIN against his earlier hash: after a new issue (BOTH-1) the
    // compare made against the old hash no longer grants a proof on the new record.
    let right = format::parse_input(PinFormat::InpsIssued16, &pin16).unwrap();
    let old = s.hasher().compare(&right, &hash).unwrap();
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            t0() + Duration::minutes(1),
        )
        .unwrap();
    let _ = inbox(&s);
    let renewed = subject(&s, MARIO);
    let f = verify::finish(&renewed, &old, Purpose::Change, t0(), policy);
    assert!(
        f.proof.is_none(),
        "a compare against a replaced hash granted a proof"
    );

    // Control: the right PIN compared with the current hash does.
    let hash = renewed.credential.as_ref().unwrap().hash.clone();
    let c = s.hasher().compare(&right, &hash).unwrap();
    assert_eq!(c.verified(), Verified::Mismatch, "the old PIN is gone");
    let done = s.status(&tax(MARIO), t0()).unwrap();
    assert_eq!(
        done.attempts.failures, 0,
        "compares outside verify count nothing"
    );
}

// rule: INPS-3, INPS-12, POL-8 — a match is settled as a success, and means MustChange
// for an initial PIN whatever the failures counted before it.
#[test]
fn inps_12_finish_settles_a_match_as_success() {
    let s = service();
    let pin16 = inps_web_pin(&s, MARIO, t0());
    let mario = subject(&s, MARIO);
    let hash = mario.credential.as_ref().unwrap().hash.clone();
    let right = format::parse_input(PinFormat::InpsIssued16, &pin16).unwrap();
    let c = s.hasher().compare(&right, &hash).unwrap();
    let f = verify::finish(&mario, &c, Purpose::Change, t0(), s.policy());
    let settled = Settled::Done {
        failures: 0,
        blocked: false,
        newly_blocked: false,
    };
    assert_eq!(f.outcome(settled), Some(VerifyOutcome::MustChange));
    assert_eq!(f.outcome(Settled::Locked), Some(VerifyOutcome::Locked));
    assert_eq!(f.outcome(Settled::Stale), None);
    assert_eq!(f.settle, Settlement::Success);
    let p = f.proof.unwrap();
    assert_eq!(p.purpose(), Purpose::Change);
}

// ---------------------------------------------------------------------------------------
// Proofs for the wrong purpose

// rule: INPS-8, BOTH-2 — the letter's half proves only the right to activate: it cannot
// redirect the mobile to which activation then sends the second half.
#[test]
fn inps_8_activation_proof_cannot_change_contacts() {
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    let _ = s
        .execute(&tax(MARIO), &Actor::System, &Command::PreAssign, t0())
        .unwrap();
    let half = inbox(&s)[0].text.clone();
    let p = proof(&s, MARIO, &half, Purpose::Activate, t0());
    assert_eq!(p.purpose(), Purpose::Activate);
    let before = subject(&s, MARIO);
    let audit = audit_len(&s);
    let r = change_contacts(&s, MARIO, Some(p), t0());
    assert_wrong_proof(&r);
    assert_eq!(subject(&s, MARIO), before);
    assert_eq!(audit_len(&s), audit);
    // Nor does it change the PIN.
    let p = proof(&s, MARIO, &half, Purpose::Activate, t0());
    let r = s.execute(
        &tax(MARIO),
        &Actor::Subject,
        &Command::ChangePin {
            authenticated: p,
            new: NewPin::Generated,
        },
        t0(),
    );
    assert_wrong_proof(&r);
    // The second half goes to the mobile on record.
    let _ = s
        .activate(&tax(MARIO), &half, Check::Passed, t0())
        .unwrap()
        .unwrap();
    let msgs = inbox(&s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        msgs[0].recipient,
        Mobile::parse("347 123 4567").unwrap().as_str()
    );
}

// rule: INPS-8 — activation needs an activation proof, and the half it proved.
#[test]
fn inps_8_activation_needs_its_own_proof_and_half() {
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    let _ = s
        .execute(&tax(MARIO), &Actor::System, &Command::PreAssign, t0())
        .unwrap();
    let half = inbox(&s)[0].text.clone();
    let other = if half == "K7QM2ZXA" {
        "R7KX2MQ9"
    } else {
        "K7QM2ZXA"
    };
    let before = subject(&s, MARIO);
    // A proof of the half, with another half: WrongProof, nothing sent.
    let p = proof(&s, MARIO, &half, Purpose::Activate, t0());
    let r = s.execute(
        &tax(MARIO),
        &Actor::Subject,
        &Command::Activate {
            authenticated: p,
            first_half: format::parse_input(PinFormat::InpsInUse8, other).unwrap(),
            health_card: Check::Passed,
        },
        t0(),
    );
    assert_wrong_proof(&r);
    assert!(inbox(&s).is_empty());
    assert_eq!(subject(&s, MARIO), before);
}

// rule: INPS-3 — a 16-character PIN that must be changed allows nothing but the change: its
// proof does not change contacts.
#[test]
fn inps_3_must_change_pin_cannot_change_contacts() {
    let s = service();
    let pin16 = inps_web_pin(&s, MARIO, t0());
    // For access it gives no proof at all.
    let v = s.authenticate(&tax(MARIO), &pin16, access(), t0()).unwrap();
    assert_eq!(v.outcome, VerifyOutcome::MustChange);
    assert!(v.proof.is_none());
    // For a change it does, and that proof is refused for contacts.
    let v = s
        .authenticate(&tax(MARIO), &pin16, Purpose::Change, t0())
        .unwrap();
    assert_eq!(v.outcome, VerifyOutcome::MustChange);
    let before = subject(&s, MARIO);
    let r = change_contacts(&s, MARIO, v.proof, t0());
    assert_wrong_proof(&r);
    assert_eq!(subject(&s, MARIO), before);
    // The same kind of proof does change the PIN.
    let p = proof(&s, MARIO, &pin16, Purpose::Change, t0());
    let done = s
        .execute(
            &tax(MARIO),
            &Actor::Subject,
            &Command::ChangePin {
                authenticated: p,
                new: NewPin::Generated,
            },
            t0(),
        )
        .unwrap();
    assert!(done.revealed.is_some());
}

// rule: INPS-11 — a PIN whose periodic change is due allows only the change: its proof does
// not change contacts.
#[test]
fn inps_11_expired_pin_cannot_change_contacts() {
    let s = service();
    inps_in_use(&s, MARIO, t0());
    let later = t0() + Duration::days(200);
    assert!(matches!(
        s.verify(&tax(MARIO), CHOSEN, Level::Online, later).unwrap(),
        VerifyOutcome::Expired { .. }
    ));
    let v = s
        .authenticate(&tax(MARIO), CHOSEN, Purpose::Change, later)
        .unwrap();
    assert!(
        matches!(v.outcome, VerifyOutcome::Expired { .. }),
        "{:?}",
        v.outcome
    );
    let before = subject(&s, MARIO);
    let r = change_contacts(&s, MARIO, v.proof, later);
    assert_wrong_proof(&r);
    assert_eq!(subject(&s, MARIO), before);
    // The change itself is allowed, and then contacts can be changed with the new PIN.
    let out = s
        .change_pin(&tax(MARIO), CHOSEN, Some("K7QM2ZXA"), later)
        .unwrap();
    assert!(matches!(out, ChangeOutcome::Changed { .. }), "{out:?}");
    let p = proof(&s, MARIO, "K7QM2ZXA", access(), later);
    let _ = change_contacts(&s, MARIO, Some(p), later).unwrap();
    assert_eq!(subject(&s, MARIO).contacts, redirected());
}

// rule: NOIPA-11 — self-services accept only a proof made to access a service.
#[test]
fn noipa_11_self_service_refuses_a_change_proof() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        date(2020, 5, 1),
        t0(),
    )
    .unwrap();
    let pin = inbox(&s)[0].text.clone();
    let p = proof(&s, MARIO, &pin, Purpose::Change, t0());
    let st = s.status(&tax(MARIO), t0()).unwrap();
    assert!(matches!(
        authorize(
            &subject(&s, MARIO),
            &st.attempts,
            SelfService::SmallLoan,
            &Proof::Pin(&p),
            t0()
        ),
        Err(Refusal::WrongProof { .. })
    ));
    let p = proof(&s, MARIO, &pin, access(), t0());
    assert_eq!(
        authorize(
            &subject(&s, MARIO),
            &st.attempts,
            SelfService::SmallLoan,
            &Proof::Pin(&p),
            t0()
        ),
        Ok(())
    );
}

// ---------------------------------------------------------------------------------------
// Lock and lifetime of a proof

// rule: POL-5, INPS-12 — a proof made before the PIN was blocked is refused after.
#[test]
fn pol_5_proof_is_refused_once_the_pin_is_blocked() {
    let s = service();
    inps_in_use(&s, MARIO, t0());
    let p_contacts = proof(&s, MARIO, CHOSEN, access(), t0());
    let p_change = proof(&s, MARIO, CHOSEN, access(), t0());
    for _ in 0..10 {
        let o = s
            .verify(&tax(MARIO), "HHHHHHHH", Level::Online, t0())
            .unwrap();
        assert!(!is_accepted(&o));
    }
    assert_eq!(
        s.verify(&tax(MARIO), CHOSEN, Level::Online, t0()).unwrap(),
        VerifyOutcome::Locked
    );
    let before = subject(&s, MARIO);
    let r = change_contacts(&s, MARIO, Some(p_contacts), t0());
    assert!(matches!(r, Err(Error::Refused(Refusal::Blocked))), "{r:?}");
    let r = s.execute(
        &tax(MARIO),
        &Actor::Subject,
        &Command::ChangePin {
            authenticated: p_change,
            new: NewPin::Generated,
        },
        t0(),
    );
    assert!(matches!(r, Err(Error::Refused(Refusal::Blocked))), "{r:?}");
    assert_eq!(subject(&s, MARIO), before);
}

// rule: POL-1, POL-5, NOIPA-11 — NoiPA self-services refuse a proof once the PIN is blocked.
#[test]
fn pol_1_self_service_refuses_a_proof_after_the_lock() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        date(2020, 5, 1),
        t0(),
    )
    .unwrap();
    let pin = inbox(&s)[0].text.clone();
    let p = proof(&s, MARIO, &pin, access(), t0());
    let wrong = if pin == "00000" { "11111" } else { "00000" };
    for _ in 0..10 {
        let _ = s.verify(&tax(MARIO), wrong, Level::Online, t0()).unwrap();
    }
    let st = s.status(&tax(MARIO), t0()).unwrap();
    assert!(st.attempts.blocked);
    assert_eq!(
        authorize(
            &subject(&s, MARIO),
            &st.attempts,
            SelfService::SmallLoan,
            &Proof::Pin(&p),
            t0()
        ),
        Err(Refusal::Blocked)
    );
}

// rule: NOIPA-9, INPS-3 — a proof is usable for PROOF_TTL after it was made, not later, and
// not before.
#[test]
fn proof_expires_after_proof_ttl() {
    let s = service();
    inps_in_use(&s, MARIO, t0());
    let t = t0() + Duration::hours(1);
    let late = proof(&s, MARIO, CHOSEN, access(), t);
    let early = proof(&s, MARIO, CHOSEN, access(), t);
    let on_time = proof(&s, MARIO, CHOSEN, access(), t);
    let before = subject(&s, MARIO);
    let r = change_contacts(&s, MARIO, Some(late), t + PROOF_TTL + Duration::seconds(1));
    assert!(
        matches!(r, Err(Error::Refused(Refusal::StaleAuthentication))),
        "{r:?}"
    );
    let r = change_contacts(&s, MARIO, Some(early), t - Duration::seconds(1));
    assert!(
        matches!(r, Err(Error::Refused(Refusal::StaleAuthentication))),
        "{r:?}"
    );
    assert_eq!(subject(&s, MARIO), before);
    let _ = change_contacts(&s, MARIO, Some(on_time), t + PROOF_TTL).unwrap();
    assert_eq!(subject(&s, MARIO).contacts, redirected());
    // NoiPA self-services alike.
    let _ = enrol_employee(
        &s,
        LAURA,
        email_only("laura@example.it"),
        date(2020, 5, 1),
        t0(),
    )
    .unwrap();
    let pin = inbox(&s)[0].text.clone();
    let p = proof(&s, LAURA, &pin, access(), t);
    let st = s.status(&tax(LAURA), t).unwrap();
    let at = |now| {
        authorize(
            &subject(&s, LAURA),
            &st.attempts,
            SelfService::ResidenceChange,
            &Proof::Pin(&p),
            now,
        )
    };
    assert_eq!(at(t + PROOF_TTL), Ok(()));
    assert_eq!(
        at(t + PROOF_TTL + Duration::seconds(1)),
        Err(Refusal::StaleAuthentication)
    );
}

// ---------------------------------------------------------------------------------------
// Verify input

// rule: BOTH-2, POL-1 — input that is no PIN of any kind gets the same input error whether
// the subject exists, has a PIN or not, with no attempt counted and no audit row; a
// well-formed PIN of another shape than the subject's is a counted wrong attempt.
#[test]
fn malformed_input_is_the_same_error_for_known_and_unknown_subjects() {
    let s = service();
    let pin16 = inps_web_pin(&s, MARIO, t0());
    let _ = enrol_employee(
        &s,
        LAURA,
        email_only("laura@example.it"),
        date(2020, 5, 1),
        t0(),
    )
    .unwrap();
    let _ = inbox(&s);
    // Enrolled before April 2014: no PIN (NOIPA-2).
    let _ = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("g@example.it"),
        date(2010, 1, 1),
        t0(),
    )
    .unwrap();
    let unknown = unknown_code();
    let audit = audit_len(&s);
    let counters = || [MARIO, LAURA, GIUSEPPE].map(|c| s.status(&tax(c), t0()).unwrap().attempts);
    let before = counters();
    for input in [
        "x",
        "",
        "1234",
        "123456",
        "ABCDEFGHI",
        "AB3CD4EF5GH6JK7",
        "!!!!!!!!",
        "1234a",
    ] {
        let mut answers: Vec<String> = [MARIO, LAURA, GIUSEPPE]
            .iter()
            .map(|c| {
                let r = s.verify(&tax(c), input, Level::Online, t0());
                assert!(matches!(r, Err(Error::Input(_))), "{c} {input:?}: {r:?}");
                format!("{r:?}")
            })
            .collect();
        let r = s.verify(&unknown, input, Level::Online, t0());
        answers.push(format!("{r:?}"));
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{input:?}: {answers:?}"
        );
    }
    assert_eq!(counters(), before, "malformed input counted an attempt");
    assert_eq!(audit_len(&s), audit, "malformed input wrote an audit row");

    // A PIN of another shape is a wrong PIN: counted and audited, at the same cost.
    let o = s.verify(&tax(MARIO), "12345", Level::Online, t0()).unwrap();
    assert!(matches!(o, VerifyOutcome::Rejected { .. }), "{o:?}");
    let o = s
        .verify(&tax(MARIO), &pin16[..8], Level::Online, t0())
        .unwrap();
    assert!(matches!(o, VerifyOutcome::Rejected { .. }), "{o:?}");
    let o = s.verify(&tax(LAURA), &pin16, Level::Online, t0()).unwrap();
    assert!(matches!(o, VerifyOutcome::Rejected { .. }), "{o:?}");
    assert_eq!(s.status(&tax(MARIO), t0()).unwrap().attempts.failures, 2);
    assert_eq!(s.status(&tax(LAURA), t0()).unwrap().attempts.failures, 1);
    assert_eq!(audit_len(&s), audit + 3);
}

/// A valid tax code that is never enrolled: the one check letter that parses.
fn unknown_code() -> TaxCode {
    ('A'..='Z')
        .find_map(|c| TaxCode::parse(&format!("BNCGNN70A41H501{c}")).ok())
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// POL-4: every PIN a person can have sent without authenticating is rate-limited

fn reset_proofs() -> Vec<ContactProof> {
    vec![
        ContactProof::Email(Email::parse("mario@example.it").unwrap()),
        ContactProof::Mobile(Mobile::parse("347 123 4567").unwrap()),
    ]
}

fn web(s: &Service, code: &str, now: DateTime<Utc>) -> Result<pin_core::service::Executed, Error> {
    s.execute(
        &tax(code),
        &Actor::Subject,
        &Command::WebRequest {
            address: Check::Passed,
        },
        now,
    )
}

fn reset(
    s: &Service,
    code: &str,
    now: DateTime<Utc>,
) -> Result<pin_core::service::Executed, Error> {
    s.execute(
        &tax(code),
        &Actor::Subject,
        &Command::Reset {
            proofs: reset_proofs(),
        },
        now,
    )
}

// rule: POL-4, INPS-6 — web requests by an unauthenticated person are rate-limited.
#[test]
fn pol_4_unauthenticated_web_requests_are_rate_limited() {
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    for k in 0..5 {
        let _ = web(&s, MARIO, t0() + Duration::minutes(k)).unwrap();
    }
    assert_eq!(inbox(&s).len(), 10);
    let before = subject(&s, MARIO);
    let audit = audit_len(&s);
    let r = web(&s, MARIO, t0() + Duration::minutes(5));
    match r {
        Err(Error::Refused(Refusal::ResendLimit { until })) => {
            assert_eq!(until, t0() + Duration::hours(24));
        }
        other => panic!("{other:?}"),
    }
    assert!(inbox(&s).is_empty());
    assert_eq!(subject(&s, MARIO), before);
    assert_eq!(audit_len(&s), audit);
    // A failed address check (waiting for an outbound call) counts too.
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Failed,
            },
            t0(),
        )
        .unwrap();
    assert_eq!(subject(&s, MARIO).resends, vec![t0()]);
    // The window slides.
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    for k in 0..5 {
        let _ = web(&s, MARIO, t0() + Duration::hours(k)).unwrap();
    }
    assert!(web(&s, MARIO, t0() + Duration::hours(24) - Duration::seconds(1)).is_err());
    let _ = web(&s, MARIO, t0() + Duration::hours(24)).unwrap();
}

// rule: POL-4, INPS-14 — resets by an unauthenticated person are rate-limited, in the same
// window as web requests and re-sends.
#[test]
fn pol_4_unauthenticated_resets_are_rate_limited() {
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    // INPS-16: reset is for a person who once received a PIN through a verifying channel.
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::BranchOperator("b1".into()),
            &Command::BranchRequest {
                identity_document: Check::Passed,
                on_behalf: None,
            },
            t0(),
        )
        .unwrap();
    let _ = inbox(&s);
    for k in 0..5 {
        let _ = reset(&s, MARIO, t0() + Duration::minutes(k)).unwrap();
    }
    assert_eq!(inbox(&s).len(), 10);
    let before = subject(&s, MARIO);
    let audit = audit_len(&s);
    let r = reset(&s, MARIO, t0() + Duration::minutes(5));
    assert!(
        matches!(r, Err(Error::Refused(Refusal::ResendLimit { .. }))),
        "{r:?}"
    );
    assert!(inbox(&s).is_empty());
    assert_eq!(subject(&s, MARIO), before);
    assert_eq!(audit_len(&s), audit);

    // Shared window: 2 web requests, 2 resets, 1 re-send; then none of them.
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    let _ = web(&s, MARIO, t0()).unwrap();
    let _ = web(&s, MARIO, t0() + Duration::minutes(1)).unwrap();
    let _ = reset(&s, MARIO, t0() + Duration::minutes(2)).unwrap();
    let _ = reset(&s, MARIO, t0() + Duration::minutes(3)).unwrap();
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::Subject,
            &Command::Resend,
            t0() + Duration::minutes(4),
        )
        .unwrap();
    let _ = inbox(&s);
    let now = t0() + Duration::minutes(5);
    for r in [
        web(&s, MARIO, now),
        reset(&s, MARIO, now),
        s.execute(&tax(MARIO), &Actor::Subject, &Command::Resend, now),
    ] {
        assert!(
            matches!(r, Err(Error::Refused(Refusal::ResendLimit { .. }))),
            "{r:?}"
        );
    }
    assert!(inbox(&s).is_empty());
}

// ---------------------------------------------------------------------------------------
// Web request vs a PIN in use

// rule: INPS-2, INPS-5, INPS-6, INPS-14 — a web request does not replace a PIN in use: a
// dispositivo PIN cannot be revoked and downgraded to online by anyone who knows a tax code.
#[test]
fn inps_6_web_request_cannot_replace_an_in_use_dispositivo_pin() {
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::BranchOperator("b1".into()),
            &Command::BranchRequest {
                identity_document: Check::Passed,
                on_behalf: None,
            },
            t0(),
        )
        .unwrap();
    let envelope = inbox(&s);
    assert_eq!(envelope[0].channel, Channel::SealedEnvelope);
    // First access: the 16 is used (and must be changed).
    assert_eq!(
        verify(&s, MARIO, &envelope[0].text, t0()),
        VerifyOutcome::MustChange
    );
    let before = subject(&s, MARIO);
    assert_eq!(
        before.credential.as_ref().unwrap().level,
        Level::Dispositivo
    );
    let audit = audit_len(&s);
    for k in 0..3 {
        let r = web(&s, MARIO, t0() + Duration::seconds(k));
        assert!(
            matches!(r, Err(Error::Refused(Refusal::RequestNotPossible))),
            "{r:?}"
        );
    }
    assert!(inbox(&s).is_empty());
    assert_eq!(subject(&s, MARIO), before);
    assert_eq!(audit_len(&s), audit);
    // Changed to 8: still dispositivo, still not replaced by a web request.
    let out = s
        .change_pin(&tax(MARIO), &envelope[0].text, Some(CHOSEN), t0())
        .unwrap();
    assert!(matches!(out, ChangeOutcome::Changed { .. }));
    let r = web(&s, MARIO, t0() + Duration::hours(1));
    assert!(
        matches!(r, Err(Error::Refused(Refusal::RequestNotPossible))),
        "{r:?}"
    );
    assert!(accepted_dispositivo(&s, MARIO, CHOSEN));
}

// rule: INPS-2, INPS-5 — not even an unused sealed-envelope PIN is replaced (and lowered to
// online) by an unauthenticated web request.
#[test]
fn inps_5_web_request_cannot_replace_an_unused_envelope_pin() {
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::BranchOperator("b1".into()),
            &Command::BranchRequest {
                identity_document: Check::Passed,
                on_behalf: None,
            },
            t0(),
        )
        .unwrap();
    let envelope = inbox(&s);
    let before = subject(&s, MARIO);
    let r = web(&s, MARIO, t0() + Duration::minutes(5));
    assert!(
        matches!(r, Err(Error::Refused(Refusal::RequestNotPossible))),
        "{r:?}"
    );
    assert!(inbox(&s).is_empty());
    assert_eq!(subject(&s, MARIO), before);
    assert_eq!(
        verify(&s, MARIO, &envelope[0].text, t0()),
        VerifyOutcome::MustChange
    );
}

fn accepted_dispositivo(s: &Service, code: &str, pin: &str) -> bool {
    matches!(
        s.verify(
            &tax(code),
            pin,
            Level::Dispositivo,
            t0() + Duration::hours(2)
        ),
        Ok(VerifyOutcome::Accepted {
            level: Level::Dispositivo,
            ..
        })
    )
}

// rule: INPS-4, INPS-6 — an imported PIN is in use: a web request does not replace it.
#[test]
fn inps_6_web_request_cannot_replace_an_imported_pin() {
    let s = service();
    let pin = format::parse_input(PinFormat::InpsInUse8, CHOSEN).unwrap();
    let hash = s
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(5))
        .unwrap();
    let _ = s.import(vec![(tax(MARIO), imported(hash))], t0()).unwrap();
    let r = web(&s, MARIO, t0());
    assert!(
        matches!(r, Err(Error::Refused(Refusal::RequestNotPossible))),
        "{r:?}"
    );
    assert!(inbox(&s).is_empty());
}

fn imported(hash: pin_core::hash::PinHash) -> Imported {
    Imported {
        role: Role::Citizen,
        contacts: full_contacts("mario@example.it"),
        hash,
        format: PinFormat::InpsInUse8,
        level: Level::Dispositivo,
        stage: Stage::Active,
        issued_at: t0() - Duration::days(30),
        changed_at: Some(t0() - Duration::days(30)),
    }
}

// ---------------------------------------------------------------------------------------
// Re-sends of physical and phone deliveries

// rule: INPS-5, INPS-2 — a sealed-envelope PIN is re-issued only at a branch: not by the
// unauthenticated person, the system or the contact centre.
#[test]
fn inps_5_only_a_branch_re_sends_an_envelope_pin() {
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::BranchOperator("b1".into()),
            &Command::BranchRequest {
                identity_document: Check::Passed,
                on_behalf: None,
            },
            t0(),
        )
        .unwrap();
    let _ = inbox(&s);
    let before = subject(&s, MARIO);
    let audit = audit_len(&s);
    for actor in [
        Actor::Subject,
        Actor::System,
        Actor::ContactCentre("cc-1".into()),
    ] {
        let r = s.execute(&tax(MARIO), &actor, &Command::Resend, t0() + hours(1));
        assert!(
            matches!(r, Err(Error::Refused(Refusal::Actor { .. }))),
            "{actor:?}: {r:?}"
        );
    }
    assert_eq!(subject(&s, MARIO), before);
    assert_eq!(audit_len(&s), audit);
    assert!(inbox(&s).is_empty());
    // At the branch: a new envelope, still dispositivo.
    let done = s
        .execute(
            &tax(MARIO),
            &Actor::BranchOperator("b2".into()),
            &Command::Resend,
            t0() + hours(1),
        )
        .unwrap();
    let cred = done.subject.credential.unwrap();
    assert_eq!(cred.level, Level::Dispositivo);
    let msgs = inbox(&s);
    assert!(
        msgs.iter().all(|m| m.channel == Channel::SealedEnvelope),
        "{msgs:?}"
    );
}

// rule: INPS-7 — a PIN whose first half was told by phone is re-sent only by the contact
// centre.
#[test]
fn inps_7_only_the_contact_centre_re_sends_a_phone_pin() {
    let s = service();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        t0(),
    );
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::ContactCentre("cc-1".into()),
            &Command::ContactCentreRequest {
                archives: Check::Passed,
            },
            t0(),
        )
        .unwrap();
    assert!(inbox(&s).iter().any(|m| m.channel == Channel::Phone));
    let before = subject(&s, MARIO);
    for actor in [
        Actor::Subject,
        Actor::System,
        Actor::BranchOperator("b1".into()),
    ] {
        let r = s.execute(&tax(MARIO), &actor, &Command::Resend, t0() + hours(1));
        assert!(
            matches!(r, Err(Error::Refused(Refusal::Actor { .. }))),
            "{actor:?}: {r:?}"
        );
    }
    assert_eq!(subject(&s, MARIO), before);
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::ContactCentre("cc-2".into()),
            &Command::Resend,
            t0() + hours(1),
        )
        .unwrap();
    assert!(inbox(&s).iter().any(|m| m.channel == Channel::Phone));
}

// rule: NOIPA-5 — support re-sends only when the PIN has not arrived within 12 hours of its
// issue, also when it was issued at enrolment (no identification on record).
#[test]
fn noipa_5_support_cannot_re_send_an_enrolment_pin_within_12_hours() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        date(2020, 1, 1),
        t0(),
    )
    .unwrap();
    let _ = inbox(&s);
    assert_eq!(subject(&s, MARIO).identified_at, None);
    let support = Actor::Support("s1".into());
    let before = subject(&s, MARIO);
    for now in [
        t0() + Duration::minutes(1),
        t0() + hours(12) - Duration::seconds(1),
    ] {
        let r = s.execute(&tax(MARIO), &support, &Command::Resend, now);
        match r {
            Err(Error::Refused(Refusal::ResendTooEarly { until })) => {
                assert_eq!(until, t0() + hours(12));
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(subject(&s, MARIO), before);
    assert!(inbox(&s).is_empty());
    let _ = s
        .execute(&tax(MARIO), &support, &Command::Resend, t0() + hours(12))
        .unwrap();
    assert_eq!(inbox(&s).len(), 1);
    // The wait counts from the PIN just re-sent.
    let r = s.execute(&tax(MARIO), &support, &Command::Resend, t0() + hours(13));
    assert!(
        matches!(r, Err(Error::Refused(Refusal::ResendTooEarly { .. }))),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// Attempt counting (through the Store API)

fn lease(r: Reservation) -> LeaseId {
    match r {
        Reservation::Granted { lease, .. } => lease,
        other => panic!("not granted: {other:?}"),
    }
}

// rule: INPS-12, POL-1, POL-8 — guesses in flight hold places in the budget; the owner's
// success clears the failures settled before it, and the guesses still count when they
// settle: never more than the limit of wrong comparisons.
#[test]
fn inps_12_guesses_in_flight_stay_bounded_around_a_success() {
    let s = service();
    let _ = inps_web_pin(&s, MARIO, t0());
    let st = s.store();
    let loaded = st.load(&tax(MARIO)).unwrap().unwrap();
    let serial = loaded.subject.credential.as_ref().unwrap().serial;
    let ev = verify::audit_event(&loaded.subject, t0(), Purpose::Change, "test");
    let request = ReserveRequest {
        serial,
        limit: 10,
        now: t0(),
        lease: chrono::TimeDelta::minutes(2),
    };
    let reserve = || st.reserve_attempt(&tax(MARIO), &request).unwrap();
    let failures = || st.load(&tax(MARIO)).unwrap().unwrap().attempts.failures;
    // The owner's attempt, then 9 guesses in flight: the budget is full.
    let owner = lease(reserve());
    let guesses: Vec<LeaseId> = (0..9).map(|_| lease(reserve())).collect();
    assert!(matches!(reserve(), Reservation::TryLater { .. }));
    // The owner's compare finishes first.
    let settle = |l, x| {
        st.settle_attempt(&tax(MARIO), serial, l, 10, x, &ev)
            .unwrap()
    };
    assert!(matches!(
        settle(owner, Settlement::Success),
        Settled::Done { failures: 0, .. }
    ));
    for g in guesses {
        let _ = settle(g, Settlement::Failure);
    }
    assert_eq!(failures(), 9, "the guesses count when they settle");
    // One more guess: the 10th blocks for good; nothing more is granted.
    let last = lease(reserve());
    assert!(matches!(
        settle(last, Settlement::Failure),
        Settled::Done {
            blocked: true,
            newly_blocked: true,
            ..
        }
    ));
    assert_eq!(reserve(), Reservation::Locked { newly: false });
}

// rule: INPS-12, POL-5, POL-8 — compares killed mid-way hold their places until their lease
// expires (the right PIN meanwhile is told TryLater, never Locked), then count as wrong PINs
// with an audit event each (the smart-card rule): ten of them lock for good.
#[test]
fn inps_12_killed_compares_count_when_their_lease_expires() {
    let s = service();
    let pin16 = inps_web_pin(&s, MARIO, t0());
    let serial = subject(&s, MARIO).credential.unwrap().serial;
    let request = ReserveRequest {
        serial,
        limit: 10,
        now: t0(),
        lease: s.options().attempt_lease,
    };
    for _ in 0..10 {
        // Reserved and never settled: as if the process died during the compare.
        let _ = lease(s.store().reserve_attempt(&tax(MARIO), &request).unwrap());
    }
    let soon = t0() + Duration::seconds(1);
    assert!(matches!(
        verify(&s, MARIO, &pin16, soon),
        VerifyOutcome::TryLater { .. }
    ));
    let a = s.status(&tax(MARIO), soon).unwrap().attempts;
    assert_eq!((a.failures, a.blocked), (0, false), "nothing counted yet");
    let later = t0() + s.options().attempt_lease + Duration::seconds(1);
    assert_eq!(verify(&s, MARIO, &pin16, later), VerifyOutcome::Locked);
    assert!(s.status(&tax(MARIO), later).unwrap().attempts.blocked);
    let counted = s
        .store()
        .audit_log(Some(&tax(MARIO)))
        .unwrap()
        .into_iter()
        .filter(|e| e.outcome == pin_core::attempts::UNSETTLED_COUNTED)
        .count();
    assert_eq!(counted, 10, "every counted attempt is in the audit log");
    assert_eq!(verify(&s, MARIO, &pin16, later), VerifyOutcome::Locked);
}

// ---------------------------------------------------------------------------------------
// BOTH-1: a compare whose credential was replaced meanwhile

/// A store that issues a new PIN (another hash, the next serial) to the subject just before
/// the first settlement, as if an operator issued one while the compare ran.
#[derive(Debug)]
struct ReplacingStore {
    inner: MemoryStore,
    new_hash: pin_core::hash::PinHash,
    done: AtomicBool,
}

impl Store for ReplacingStore {
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
        u: pin_core::command::AttemptsUpdate,
        a: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        self.inner.save(s, e, u, a)
    }
    fn reserve_attempt(&self, t: &TaxCode, r: &ReserveRequest) -> Result<Reservation, StoreError> {
        self.inner.reserve_attempt(t, r)
    }
    fn key_fingerprints(
        &self,
    ) -> Result<Vec<(pin_core::secret::KeyId, pin_core::keycheck::KeyFingerprint)>, StoreError>
    {
        self.inner.key_fingerprints()
    }
    fn record_key_fingerprint(
        &self,
        id: pin_core::secret::KeyId,
        f: &pin_core::keycheck::KeyFingerprint,
    ) -> Result<pin_core::keycheck::KeyFingerprint, StoreError> {
        self.inner.record_key_fingerprint(id, f)
    }
    fn settle_attempt(
        &self,
        t: &TaxCode,
        s: u64,
        lease: LeaseId,
        l: u32,
        x: Settlement,
        a: &AuditEvent,
    ) -> Result<Settled, StoreError> {
        if !self.done.swap(true, Ordering::SeqCst) {
            let loaded = self.inner.load(t)?.ok_or(StoreError::NotFound)?;
            let mut next = loaded.subject.clone();
            let serial = next.last_serial + 1;
            let cred = next.credential.as_mut().ok_or(StoreError::NotFound)?;
            cred.serial = serial;
            cred.hash = self.new_hash.clone();
            next.last_serial = serial;
            let _ = self.inner.save(
                &next,
                loaded.version,
                pin_core::command::AttemptsUpdate::Fresh,
                &[],
            )?;
        }
        self.inner.settle_attempt(t, s, lease, l, x, a)
    }
    fn append_audit(&self, e: &[AuditEvent]) -> Result<(), StoreError> {
        self.inner.append_audit(e)
    }
    fn audit_log(&self, t: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_log(t)
    }
}

// rule: BOTH-1 — only the last PIN issued is valid: a compare of the old PIN whose
// credential was replaced between reservation and settlement is not reported Accepted and
// gives no proof.
#[test]
fn both_1_compare_of_a_replaced_pin_is_not_accepted() {
    let keys = || Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap());
    let policy = cheap_policy().build().unwrap();
    let hasher = pin_core::hash::Hasher::new(
        pin_core::hash::HashParams::INSECURE_FAST_FOR_TESTS,
        pin_core::hash::HashParams::INSECURE_FAST_FOR_TESTS,
        pin_core::hash::HashParams::RECOMMENDED,
        keys(),
    )
    .unwrap();
    let other = format::parse_input(PinFormat::InpsInUse8, "K7QM2ZXA").unwrap();
    let new_hash = hasher
        .hash(&other, &mut ChaCha20Rng::seed_from_u64(11))
        .unwrap();
    let s = PinService::new(
        ReplacingStore {
            inner: MemoryStore::new(),
            new_hash,
            done: AtomicBool::new(true),
        },
        MemoryOutbox::new(),
        policy,
        keys(),
        ChaCha20Rng::seed_from_u64(3),
    )
    .unwrap();
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::Rid("r1".into()),
            &Command::Enrol(pin_core::command::Enrolment {
                role: Role::Employee,
                contacts: email_only("mario@example.it"),
                cns_holder: false,
                enrolled_on: Some(date(2020, 1, 1)),
            }),
            t0(),
        )
        .unwrap();
    let pin = s.notifier().take()[0]
        .delivery
        .secret
        .expose_secret()
        .to_owned();
    let old_serial = s
        .status(&tax(MARIO), t0())
        .unwrap()
        .credential
        .unwrap()
        .serial;
    // Arm the replacement: it happens during the next verify.
    s.store().done.store(false, Ordering::SeqCst);
    let v = s.authenticate(&tax(MARIO), &pin, access(), t0()).unwrap();
    assert!(
        !matches!(v.outcome, VerifyOutcome::Accepted { .. }),
        "the replaced PIN was accepted: {:?}",
        v.outcome
    );
    assert!(v.proof.is_none());
    let st = s.status(&tax(MARIO), t0()).unwrap();
    assert_eq!(st.credential.unwrap().serial, old_serial + 1);
    // The old PIN is a wrong PIN against the new credential, counted on it.
    assert!(
        matches!(v.outcome, VerifyOutcome::Rejected { .. }),
        "{:?}",
        v.outcome
    );
    assert_eq!(st.attempts.failures, 1);
}

// ---------------------------------------------------------------------------------------
// Import

fn import_one(s: &Service, hash: pin_core::hash::PinHash) -> Result<usize, Error> {
    let good = s
        .hasher()
        .hash(
            &format::parse_input(PinFormat::InpsInUse8, CHOSEN).unwrap(),
            &mut ChaCha20Rng::seed_from_u64(1),
        )
        .unwrap();
    s.import(
        vec![
            (
                tax(GIUSEPPE),
                Imported {
                    contacts: full_contacts("giuseppe@example.it"),
                    ..imported(good)
                },
            ),
            (tax(MARIO), imported(hash)),
        ],
        t0(),
    )
}

/// What the import error must be.
type Expect = fn(&HashError) -> bool;

// rule: INPS-4 — an import refuses a hash this service could not verify (unknown pepper
// key, parameters out of bounds, malformed), naming the record; nothing is stored.
#[test]
fn inps_4_import_refuses_unknown_key_and_out_of_bounds_params() {
    let s = service();
    let pin = format::parse_input(PinFormat::InpsInUse8, CHOSEN).unwrap();
    let good = s
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(2))
        .unwrap();
    let unknown_key = pin_core::hash::PinHash {
        key_id: KeyId(9),
        ..good.clone()
    };
    let above_cap = pin_core::hash::PinHash {
        phc: good.phc.replace("m=64,", "m=4194304,"),
        ..good.clone()
    };
    assert_ne!(above_cap.phc, good.phc);
    let below_floor = pin_core::hash::PinHash {
        phc: good.phc.replace("m=64,", "m=32,"),
        ..good.clone()
    };
    let malformed = pin_core::hash::PinHash {
        phc: "$argon2id$v=19$garbage".into(),
        ..good.clone()
    };
    let not_argon2id = pin_core::hash::PinHash {
        phc: good.phc.replace("$argon2id$", "$argon2i$"),
        ..good.clone()
    };
    let cases: [(pin_core::hash::PinHash, Expect); 5] = [
        (unknown_key, |e| {
            matches!(e, HashError::UnknownKey(KeyId(9)))
        }),
        (above_cap, |e| {
            matches!(e, HashError::ParamsAboveCap { param: "m_kib", .. })
        }),
        (below_floor, |e| {
            matches!(e, HashError::ParamsBelowFloor { param: "m_kib", .. })
        }),
        (malformed, |e| matches!(e, HashError::Malformed(_))),
        (not_argon2id, |e| {
            matches!(e, HashError::UnsupportedAlgorithm | HashError::Malformed(_))
        }),
    ];
    for (hash, expected) in cases {
        let r = import_one(&s, hash.clone());
        match &r {
            Err(Error::Batch { index: 1, source }) => match source.as_ref() {
                Error::Hash(e) => assert!(expected(e), "{}: {e:?}", hash.phc),
                other => panic!("{}: {other:?}", hash.phc),
            },
            other => panic!("{}: {other:?}", hash.phc),
        }
        assert!(s.store().load(&tax(GIUSEPPE)).unwrap().is_none(), "stored");
        assert!(s.store().load(&tax(MARIO)).unwrap().is_none(), "stored");
    }
    // The good hash is imported and verifies.
    assert_eq!(import_one(&s, good).unwrap(), 2);
    assert!(is_accepted(&verify(&s, MARIO, CHOSEN, t0())));
}

// ---------------------------------------------------------------------------------------
// A Locked answer must be final (found by `model::threaded_right_pin_only_before_the_lock`)

/// Run by [`HookStore`] before a settlement.
type Hook = Box<dyn FnOnce(&MemoryStore) + Send>;

/// A store that runs a hook once, just before the next settlement is applied.
#[derive(Default)]
struct HookStore {
    inner: MemoryStore,
    before_settle: std::sync::Mutex<Option<Hook>>,
}

impl Store for HookStore {
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
        u: pin_core::command::AttemptsUpdate,
        a: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        self.inner.save(s, e, u, a)
    }
    fn reserve_attempt(&self, t: &TaxCode, r: &ReserveRequest) -> Result<Reservation, StoreError> {
        self.inner.reserve_attempt(t, r)
    }
    fn key_fingerprints(
        &self,
    ) -> Result<Vec<(pin_core::secret::KeyId, pin_core::keycheck::KeyFingerprint)>, StoreError>
    {
        self.inner.key_fingerprints()
    }
    fn record_key_fingerprint(
        &self,
        id: pin_core::secret::KeyId,
        f: &pin_core::keycheck::KeyFingerprint,
    ) -> Result<pin_core::keycheck::KeyFingerprint, StoreError> {
        self.inner.record_key_fingerprint(id, f)
    }
    fn settle_attempt(
        &self,
        t: &TaxCode,
        s: u64,
        lease: LeaseId,
        l: u32,
        x: Settlement,
        a: &AuditEvent,
    ) -> Result<Settled, StoreError> {
        let hook = self.before_settle.lock().unwrap().take();
        if let Some(hook) = hook {
            hook(&self.inner);
        }
        self.inner.settle_attempt(t, s, lease, l, x, a)
    }
    fn append_audit(&self, e: &[AuditEvent]) -> Result<(), StoreError> {
        self.inner.append_audit(e)
    }
    fn audit_log(&self, t: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
        self.inner.audit_log(t)
    }
}

// rule: INPS-12, POL-1, POL-5, POL-8 — a success that settles while a guess is compared
// keeps a linearizable history: the guess counts after it, nobody is told Locked, and the
// right PIN still opens.
//
// The interleaving (lockout 3): the owner's right PIN reserves an attempt; a guess is
// rejected (failures 1); the next guess reserves (1 settled + 1 in flight + itself < 3),
// and the owner's success settles in between (failures 0), so the guess settles to 1.
// Under the old accounting this answered Locked and then accepted the right PIN.
#[test]
fn pol_5_locked_answer_is_final_when_a_success_settles_in_between() {
    let policy = cheap_policy().noipa_lockout(3).build().unwrap();
    let s = PinService::new(
        HookStore::default(),
        MemoryOutbox::new(),
        policy,
        Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap()),
        ChaCha20Rng::seed_from_u64(5),
    )
    .unwrap();
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::Rid("r1".into()),
            &Command::Enrol(pin_core::command::Enrolment {
                role: Role::Employee,
                contacts: email_only("mario@example.it"),
                cns_holder: false,
                enrolled_on: Some(date(2020, 1, 1)),
            }),
            t0(),
        )
        .unwrap();
    let pin = s.notifier().take()[0]
        .delivery
        .secret
        .expose_secret()
        .to_owned();
    let wrong = if pin == "00000" { "11111" } else { "00000" };
    let loaded = s.store().load(&tax(MARIO)).unwrap().unwrap();
    let serial = loaded.subject.credential.as_ref().unwrap().serial;
    let ev = verify::audit_event(&loaded.subject, t0(), access(), "accepted");
    // The owner's attempt is reserved (its compare runs).
    let request = ReserveRequest {
        serial,
        limit: 3,
        now: t0(),
        lease: chrono::TimeDelta::minutes(2),
    };
    let owner = lease(s.store().reserve_attempt(&tax(MARIO), &request).unwrap());
    assert!(matches!(
        s.verify(&tax(MARIO), wrong, Level::Online, t0()).unwrap(),
        VerifyOutcome::Rejected {
            remaining_attempts: 2,
            ..
        }
    ));
    // The owner's success settles while the next guess is being compared.
    let code = tax(MARIO);
    *s.store().before_settle.lock().unwrap() = Some(Box::new(move |inner: &MemoryStore| {
        let _ = inner
            .settle_attempt(&code, serial, owner, 3, Settlement::Success, &ev)
            .unwrap();
    }));
    let o = s.verify(&tax(MARIO), wrong, Level::Online, t0()).unwrap();
    assert_eq!(
        o,
        VerifyOutcome::Rejected {
            remaining_attempts: 2,
            final_try: false
        },
        "the guess counts after the owner's success"
    );
    assert!(matches!(
        s.verify(&tax(MARIO), &pin, Level::Online, t0()).unwrap(),
        VerifyOutcome::Accepted { .. }
    ));
    let a = s.store().load(&tax(MARIO)).unwrap().unwrap().attempts;
    assert_eq!((a.failures, a.blocked), (0, false));
}

// rule: POL-6, INPS-12, POL-1 — the verify that blocks the PIN tells the person, once, on the
// contacts on record, with no secret; later Locked answers send nothing more.
#[test]
fn pol_6_the_lock_is_notified_once_without_a_secret() {
    let s = service();
    let pin16 = inps_web_pin(&s, MARIO, t0());
    let _ = s.notifier().take_notices();
    let bad = "AB3CD4EF5GH6JK7L";
    assert_ne!(bad, pin16);
    for _ in 0..9 {
        assert!(matches!(
            verify(&s, MARIO, bad, t0()),
            VerifyOutcome::Rejected { .. }
        ));
    }
    assert!(
        s.notifier().take_notices().is_empty(),
        "no notice before the lock"
    );
    assert_eq!(verify(&s, MARIO, bad, t0()), VerifyOutcome::Locked);
    let notices = s.notifier().take_notices();
    assert!(!notices.is_empty(), "the lock is notified");
    for n in &notices {
        assert_eq!(n.kind, pin_core::command::NoticeKind::Locked);
        let shown = format!("{n:?}");
        assert!(
            !shown.contains(&pin16) && !shown.contains(&pin16[..8]),
            "{shown}"
        );
    }
    assert_eq!(verify(&s, MARIO, &pin16, t0()), VerifyOutcome::Locked);
    assert!(s.notifier().take_notices().is_empty(), "notified once");
}

// ---------------------------------------------------------------------------------------
// What each operation costs in Argon2 evaluations (`Hasher::evaluations`)

/// A service whose subject MARIO holds an imported INPS PIN `CHOSEN`, hashed by `maker`.
fn with_imported(s: &Service, maker: &Service) {
    let pin = format::parse_input(PinFormat::InpsInUse8, CHOSEN).unwrap();
    let hash = maker
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(3))
        .unwrap();
    assert_eq!(
        s.import(vec![(tax(MARIO), imported(hash))], t0()).unwrap(),
        1
    );
}

#[test]
fn hash_evaluations_none_to_construct_import_or_read_one_per_verify() {
    let maker = service();
    let s = service();
    assert_eq!(s.hasher().evaluations(), 0, "constructing a service");
    with_imported(&s, &maker);
    assert_eq!(maker.hasher().evaluations(), 1, "the one hash made");
    assert_eq!(s.hasher().evaluations(), 0, "an import hashes nothing");
    let _ = s.status(&tax(MARIO), t0()).unwrap();
    let _ = s.store().audit_log(None).unwrap();
    assert_eq!(s.hasher().evaluations(), 0, "status reads, never hashes");
    let mut expected = 0;
    let mut cost = |what: &str, outcome: VerifyOutcome, accepted: bool| {
        expected += 1;
        assert_eq!(is_accepted(&outcome), accepted, "{what}: {outcome:?}");
        assert_eq!(s.hasher().evaluations(), expected, "{what}: one Argon2id");
    };
    cost("the right PIN", verify(&s, MARIO, CHOSEN, t0()), true);
    cost("a wrong PIN", verify(&s, MARIO, "R7KX2MQ8", t0()), false);
    cost(
        "an unknown subject",
        verify(&s, GIUSEPPE, CHOSEN, t0()),
        false,
    );
    cost("the right PIN again", verify(&s, MARIO, CHOSEN, t0()), true);
}

#[test]
fn hash_evaluations_a_verify_that_rehashes_costs_two_then_one() {
    // The PIN was hashed with weaker (older) parameters than the live ones: the first
    // right verify compares (one) and stores a fresh hash (two); later ones cost one.
    let maker = service();
    let live = pin_core::hash::HashParams {
        m_kib: 128,
        t_cost: 1,
        p_cost: 1,
    };
    let s = service_with(cheap_policy().hash_live(live).build().unwrap(), 7);
    with_imported(&s, &maker);
    assert_eq!(s.hasher().evaluations(), 0);
    assert!(is_accepted(&verify(&s, MARIO, CHOSEN, t0())));
    assert_eq!(s.hasher().evaluations(), 2, "compare and rehash");
    let stored = subject(&s, MARIO).credential.unwrap().hash;
    assert!(
        stored.phc.starts_with("$argon2id$v=19$m=128,t=1,p=1$"),
        "{}",
        stored.phc
    );
    assert!(is_accepted(&verify(&s, MARIO, CHOSEN, t0())));
    assert_eq!(s.hasher().evaluations(), 3, "no rehash needed any more");
    let _ = verify(&s, GIUSEPPE, CHOSEN, t0());
    assert_eq!(
        s.hasher().evaluations(),
        4,
        "the dummy: one, at the live cost"
    );
}

/// The import of MARIO with `f` applied to a good record, and what it answered.
fn import_dated(s: &Service, f: impl FnOnce(&mut Imported)) -> Result<usize, Error> {
    let pin = format::parse_input(PinFormat::InpsInUse8, CHOSEN).unwrap();
    let hash = s
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(4))
        .unwrap();
    let mut record = imported(hash);
    f(&mut record);
    s.import(vec![(tax(MARIO), record)], t0())
}

// rule: INPS-11 — rotation runs from the imported change date: a date in the future (year
// 9999), an issue in the future, or a change before the issue would defeat or corrupt it.
// Each is refused naming the record, and nothing is stored.
#[test]
fn inps_11_import_refuses_impossible_dates() {
    let s = service();
    let far = DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
        .unwrap()
        .with_timezone(&Utc);
    type Change = Box<dyn FnOnce(&mut Imported)>;
    let cases: [(&str, Change); 4] = [
        (
            "changed_at is in the future",
            Box::new(move |i| i.changed_at = Some(far)),
        ),
        (
            "changed_at is in the future",
            Box::new(|i| i.changed_at = Some(t0() + Duration::seconds(1))),
        ),
        (
            "issued_at is in the future",
            Box::new(|i| {
                i.issued_at = t0() + Duration::days(1);
                i.changed_at = None;
            }),
        ),
        (
            "changed_at is before issued_at",
            Box::new(|i| i.changed_at = Some(i.issued_at - Duration::seconds(1))),
        ),
    ];
    for (expected, f) in cases {
        match import_dated(&s, f) {
            Err(Error::Batch { index: 0, source }) => match *source {
                Error::Input(pin_core::InputError::Import(m)) => assert_eq!(m, expected),
                other => panic!("{expected}: {other:?}"),
            },
            other => panic!("{expected}: {other:?}"),
        }
        assert!(s.store().load(&tax(MARIO)).unwrap().is_none(), "{expected}");
        assert_eq!(audit_len(&s), 0, "{expected}");
    }
    // The edges are possible: issued and changed at the same instant, now.
    assert_eq!(
        import_dated(&s, |i| {
            i.issued_at = t0();
            i.changed_at = Some(t0());
        })
        .unwrap(),
        1
    );
}

// rule: BOTH-2 — only hashes as strong as ours are imported: a salt of 8 bytes (which
// Argon2 accepts) is refused, naming the record; nothing is stored.
#[test]
fn both_2_import_refuses_salts_shorter_than_16_bytes() {
    let s = service();
    let pin = format::parse_input(PinFormat::InpsInUse8, CHOSEN).unwrap();
    let good = s
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(5))
        .unwrap();
    let fields: Vec<&str> = good.phc.split('$').collect();
    // 8 bytes of salt, unpadded base64: 11 characters.
    let short = pin_core::hash::PinHash {
        phc: format!(
            "${}${}${}${}${}",
            fields[1], fields[2], fields[3], "c2FsdHNhbHQ", fields[5]
        ),
        ..good.clone()
    };
    match import_one(&s, short) {
        Err(Error::Batch { index: 1, source }) => match *source {
            Error::Hash(HashError::Malformed(m)) => assert!(m.contains("16 bytes"), "{m}"),
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    }
    assert!(s.store().load(&tax(GIUSEPPE)).unwrap().is_none(), "stored");
    assert!(s.store().load(&tax(MARIO)).unwrap().is_none(), "stored");
    assert_eq!(import_one(&s, good).unwrap(), 2);
}

// rule: INPS-4 — a streamed import stops at the first record its source fails to give,
// naming it, and stores nothing of the records before it.
#[test]
fn inps_4_streamed_import_is_all_or_nothing_when_the_source_fails() {
    let s = service();
    let pin = format::parse_input(PinFormat::InpsInUse8, CHOSEN).unwrap();
    let hash = s
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(6))
        .unwrap();
    let records = vec![
        Ok((tax(MARIO), imported(hash.clone()))),
        Ok((
            tax(GIUSEPPE),
            Imported {
                contacts: full_contacts("giuseppe@example.it"),
                ..imported(hash)
            },
        )),
        Err(pin_core::InputError::Import("the source failed").into()),
    ];
    match s.import_streamed(records, t0()) {
        Err(Error::Batch { index: 2, source }) => assert!(
            matches!(
                *source,
                Error::Input(pin_core::InputError::Import("the source failed"))
            ),
            "{source:?}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(s.store().load(&tax(MARIO)).unwrap().is_none(), "stored");
    assert!(s.store().load(&tax(GIUSEPPE)).unwrap().is_none(), "stored");
    assert_eq!(audit_len(&s), 0);
}

// rule: BOTH-2, INPS-12, POL-8 — every verify outcome costs exactly one Argon2id, so that
// timing tells no outcome from another (issue 11, defect 9): a wrong PIN, a locked PIN, an
// unknown subject, a subject with no PIN, and an issued PIN never used in time.
#[test]
fn every_verify_outcome_costs_one_hash() {
    let s = service();
    let pin16 = inps_web_pin(&s, MARIO, t0());
    let bad = "AB3CD4EF5GH6JK7L";
    assert_ne!(bad, pin16);
    let one = |what: &str, f: &dyn Fn() -> VerifyOutcome| {
        let before = s.hasher().evaluations();
        let outcome = f();
        assert_eq!(
            s.hasher().evaluations() - before,
            1,
            "{what} ({outcome:?}) must cost one Argon2id"
        );
        outcome
    };
    // (The right PIN's cost is checked by hash_evaluations_none_to_construct_…; using it
    // here would end the "never used" state checked below.)
    assert!(matches!(
        one("a wrong PIN", &|| verify(&s, MARIO, bad, t0())),
        VerifyOutcome::Rejected { .. }
    ));
    assert_eq!(
        one("an unknown subject", &|| verify(&s, GIUSEPPE, bad, t0())),
        VerifyOutcome::NoPin
    );
    // Never used in time: the answer is the same for any input, at the same cost.
    let late = t0() + Duration::days(400);
    assert!(matches!(
        one("an expired unused PIN", &|| verify(&s, MARIO, bad, late)),
        VerifyOutcome::Expired { .. }
    ));
    for _ in 0..10 {
        let _ = verify(&s, MARIO, bad, t0());
    }
    assert_eq!(
        one("a locked PIN", &|| verify(&s, MARIO, &pin16, t0())),
        VerifyOutcome::Locked
    );
}
