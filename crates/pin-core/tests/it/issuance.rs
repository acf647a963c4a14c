//! Issuance integrity (issue 11): no first PIN without identity checks (INPS-16), no PIN in
//! use taken away by an unauthenticated request (POL-7), security notices (POL-6), the CNS
//! route (NOIPA-13), and the same answer for a tax code not on record as for a person whose
//! proof fails.

use chrono::{DateTime, Duration, Utc};
use pin_core::command::{
    Check, CnsAuthenticated, CnsAuthority, CnsError, Command, Imported, Notice, NoticeKind,
};
use pin_core::contact::{ContactProof, Contacts, Email, Mobile};
use pin_core::format::{self, PinFormat};
use pin_core::service::{ChangeOutcome, Executed, State};
use pin_core::store::Store;
use pin_core::subject::{Channel, Level, Origin, Role, Stage};
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Error, Refusal, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::harness::*;

const CHOSEN: &str = "K7QM2ZXA";

fn run(s: &Service, code: &str, actor: &Actor, cmd: &Command) -> Result<Executed, Error> {
    s.execute(&tax(code), actor, cmd, t0())
}

fn run_at(
    s: &Service,
    code: &str,
    actor: &Actor,
    cmd: &Command,
    now: DateTime<Utc>,
) -> Result<Executed, Error> {
    s.execute(&tax(code), actor, cmd, now)
}

fn branch() -> Actor {
    Actor::BranchOperator("b1".into())
}

fn cc() -> Actor {
    Actor::ContactCentre("cc1".into())
}

fn citizen(s: &Service, code: &str, e: &str) {
    let _ = enrol_inps(s, code, Role::Citizen, full_contacts(e), t0());
}

fn web(s: &Service, code: &str, address: Check) -> Result<Executed, Error> {
    run(s, code, &Actor::Subject, &Command::WebRequest { address })
}

fn at_branch(s: &Service, code: &str) -> String {
    let _ = run(
        s,
        code,
        &branch(),
        &Command::BranchRequest {
            identity_document: Check::Passed,
            on_behalf: None,
        },
    )
    .unwrap();
    assemble(&inbox(s))
}

fn reset_cmd(e: &str) -> Command {
    Command::Reset {
        proofs: vec![
            ContactProof::Email(Email::parse(e).unwrap()),
            ContactProof::Mobile(Mobile::parse("347 123 4567").unwrap()),
        ],
    }
}

fn reset(s: &Service, code: &str, e: &str) -> Result<Executed, Error> {
    run(s, code, &Actor::Subject, &reset_cmd(e))
}

/// The error and its message, for comparing two answers.
fn answer<T: std::fmt::Debug>(r: Result<T, Error>) -> (String, String) {
    let e = r.unwrap_err();
    (format!("{e:?}"), e.to_string())
}

fn is_contacts_do_not_match<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Refused(Refusal::ContactsDoNotMatch)))
}

fn is_not_possible<T: std::fmt::Debug>(r: &Result<T, Error>) -> bool {
    matches!(r, Err(Error::Refused(Refusal::RequestNotPossible)))
}

// ---------------------------------------------------------------------------------------
// INPS-16: reset is a recovery, never a first PIN.

// rule: INPS-16, INPS-6, INPS-14 — defect 1: a request waiting for (or failed at) the
// outbound call, or a person who never had a PIN, gets no PIN by reset.
#[test]
fn inps_16_reset_never_issues_a_first_pin() {
    let s = service();
    citizen(&s, LAURA, "laura@example.it");
    // Never had a PIN: refused.
    let r = reset(&s, LAURA, "laura@example.it");
    assert!(is_contacts_do_not_match(&r), "{r:?}");
    // The address check failed: the request waits for the outbound call; still refused.
    let _ = web(&s, LAURA, Check::Failed).unwrap();
    let r = reset(&s, LAURA, "laura@example.it");
    assert!(is_contacts_do_not_match(&r), "{r:?}");
    assert!(inbox(&s).is_empty(), "no PIN went anywhere");
    // The outbound call failed: still refused.
    let _ = run(
        &s,
        LAURA,
        &cc(),
        &Command::OutboundVerification {
            result: Check::Failed,
        },
    )
    .unwrap();
    let r = reset(&s, LAURA, "laura@example.it");
    assert!(is_contacts_do_not_match(&r), "{r:?}");
    assert!(inbox(&s).is_empty());
    assert!(subject(&s, LAURA).credential.is_none());
    assert!(!subject(&s, LAURA).verified_pin);
    // A PIN pre-assigned and not activated does not count either.
    let _ = run(&s, LAURA, &Actor::System, &Command::PreAssign).unwrap();
    let _ = inbox(&s);
    let r = reset(&s, LAURA, "laura@example.it");
    assert!(is_contacts_do_not_match(&r), "{r:?}");
    // Once a verifying channel issued one, reset is the recovery.
    let _ = at_branch(&s, LAURA);
    assert!(subject(&s, LAURA).verified_pin);
    let done = reset(&s, LAURA, "laura@example.it").unwrap();
    assert_eq!(done.deliveries.len(), 2);
    let _ = inbox(&s);
    // And it stays a recovery after the reset itself (the fact is never cleared).
    let _ = reset(&s, LAURA, "laura@example.it").unwrap();
}

// rule: INPS-16 — the channels that verify (web with the address validated, contact centre
// with the archives matched, outbound call passed, activation of a letter) and an import
// open the reset.
#[test]
fn inps_16_every_verifying_channel_opens_the_reset() {
    let s = service();
    citizen(&s, LAURA, "laura@example.it");
    let _ = web(&s, LAURA, Check::Passed).unwrap();
    let _ = inbox(&s);
    assert!(reset(&s, LAURA, "laura@example.it").is_ok());

    citizen(&s, MARIO, "mario@example.it");
    let _ = web(&s, MARIO, Check::Failed).unwrap();
    let _ = run(
        &s,
        MARIO,
        &cc(),
        &Command::OutboundVerification {
            result: Check::Passed,
        },
    )
    .unwrap();
    let _ = inbox(&s);
    assert!(reset(&s, MARIO, "mario@example.it").is_ok());

    citizen(&s, GIUSEPPE, "giuseppe@example.it");
    let _ = run(&s, GIUSEPPE, &Actor::System, &Command::PreAssign).unwrap();
    let letter = inbox(&s).pop().unwrap().text;
    let _ = s
        .activate(&tax(GIUSEPPE), &letter, Check::Passed, t0())
        .unwrap()
        .unwrap();
    let _ = inbox(&s);
    assert!(reset(&s, GIUSEPPE, "giuseppe@example.it").is_ok());

    let s = service();
    let pin = format::parse_input(PinFormat::InpsInUse8, CHOSEN).unwrap();
    let hash = s
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(3))
        .unwrap();
    let imported = Imported {
        role: Role::Citizen,
        contacts: full_contacts("mario@example.it"),
        hash,
        format: PinFormat::InpsInUse8,
        level: Level::Online,
        stage: Stage::Active,
        issued_at: t0() - Duration::days(30),
        changed_at: Some(t0() - Duration::days(30)),
    };
    let _ = s.import(vec![(tax(MARIO), imported)], t0()).unwrap();
    assert!(subject(&s, MARIO).verified_pin);
    assert!(reset(&s, MARIO, "mario@example.it").is_ok());
}

// ---------------------------------------------------------------------------------------
// POL-7: no unauthenticated request takes away a PIN in use.

/// A branch PIN changed to 8 characters: dispositivo, in use.
fn dispositivo_in_use(s: &Service, code: &str, e: &str) {
    citizen(s, code, e);
    let pin16 = at_branch(s, code);
    let out = s
        .change_pin(&tax(code), &pin16, Some(CHOSEN), t0())
        .unwrap();
    assert!(matches!(out, ChangeOutcome::Changed { .. }));
}

fn dispositivo_accepted(s: &Service, code: &str) -> bool {
    matches!(
        s.verify(&tax(code), CHOSEN, Level::Dispositivo, t0()),
        Ok(VerifyOutcome::Accepted {
            level: Level::Dispositivo,
            ..
        })
    )
}

// rule: POL-7, INPS-8 — defect 2: a pre-assigned letter does not replace a PIN in use.
#[test]
fn pol_7_pre_assigned_letter_does_not_take_away_a_pin_in_use() {
    let s = service();
    dispositivo_in_use(&s, MARIO, "mario@example.it");
    let before = subject(&s, MARIO);
    let r = run(&s, MARIO, &Actor::System, &Command::PreAssign);
    assert!(is_not_possible(&r), "{r:?}");
    assert!(inbox(&s).is_empty());
    assert_eq!(subject(&s, MARIO), before);
    assert!(dispositivo_accepted(&s, MARIO));
}

// rule: POL-7, INPS-2, INPS-7 — defect 3: a contact-centre request neither replaces a PIN in
// use nor lowers a dispositivo PIN, used or not; nor does a web request that waits for the
// outbound call.
#[test]
fn pol_7_contact_centre_request_does_not_downgrade_a_dispositivo_pin() {
    let s = service();
    dispositivo_in_use(&s, MARIO, "mario@example.it");
    let before = subject(&s, MARIO);
    for archives in [Check::Passed, Check::Failed] {
        let r = run(
            &s,
            MARIO,
            &cc(),
            &Command::ContactCentreRequest { archives },
        );
        assert!(is_not_possible(&r), "{archives:?}: {r:?}");
        let r = web(&s, MARIO, archives);
        assert!(is_not_possible(&r), "{archives:?}: {r:?}");
    }
    assert!(inbox(&s).is_empty());
    assert_eq!(subject(&s, MARIO), before);
    assert!(dispositivo_accepted(&s, MARIO));

    // An unused envelope PIN (dispositivo) is not lowered either.
    citizen(&s, LAURA, "laura@example.it");
    let _ = at_branch(&s, LAURA);
    let before = subject(&s, LAURA);
    let r = run(
        &s,
        LAURA,
        &cc(),
        &Command::ContactCentreRequest {
            archives: Check::Passed,
        },
    );
    assert!(is_not_possible(&r), "{r:?}");
    assert_eq!(subject(&s, LAURA), before);
    // A reset keeps the level: only conversion or a branch changes it.
    let _ = reset(&s, LAURA, "laura@example.it").unwrap();
    let cred = subject(&s, LAURA).credential.unwrap();
    assert_eq!(
        (cred.origin, cred.level),
        (Origin::Reset, Level::Dispositivo)
    );
}

// rule: POL-7, POL-5 — an online PIN in use is not replaced by the contact centre; a blocked
// one is (a new request that passes its own checks unblocks), and an unused online one is.
#[test]
fn pol_7_in_use_means_used_and_not_blocked() {
    let s = service_with(cheap_policy().inps_lockout(2).build().unwrap(), 9);
    citizen(&s, LAURA, "laura@example.it");
    let _ = web(&s, LAURA, Check::Passed).unwrap();
    // Unused: a contact-centre request replaces it.
    let _ = inbox(&s);
    let cc_req = Command::ContactCentreRequest {
        archives: Check::Passed,
    };
    let _ = run(&s, LAURA, &cc(), &cc_req).unwrap();
    let pin16 = assemble(&inbox(&s));
    let out = s
        .change_pin(&tax(LAURA), &pin16, Some(CHOSEN), t0())
        .unwrap();
    assert!(matches!(out, ChangeOutcome::Changed { .. }));
    // In use: refused.
    let r = run(&s, LAURA, &cc(), &cc_req);
    assert!(is_not_possible(&r), "{r:?}");
    // Blocked: accepted.
    for _ in 0..2 {
        let _ = verify(&s, LAURA, "W9RT4HJC", t0());
    }
    assert_eq!(s.status(&tax(LAURA), t0()).unwrap().state, State::Locked);
    let done = run(&s, LAURA, &cc(), &cc_req).unwrap();
    assert_eq!(done.deliveries.len(), 3);
}

// ---------------------------------------------------------------------------------------
// NOIPA-13: the CNS route.

/// A card middleware that answers with a fixed holder (the test plays the card check).
struct Middleware(Result<TaxCode, CnsError>);

impl CnsAuthority for Middleware {
    fn authenticate(&self, _evidence: &[u8]) -> Result<TaxCode, CnsError> {
        self.0.clone()
    }
}

fn enrol_cns_holder(s: &Service, code: &str, cns: bool) {
    let _ = s
        .execute(
            &tax(code),
            &Actor::Rid("rid-1".into()),
            &Command::Enrol(pin_core::command::Enrolment {
                role: Role::Employee,
                contacts: email_only(&format!("{}@example.it", code.to_lowercase())),
                cns_holder: cns,
                enrolled_on: Some(date(2010, 1, 1)),
            }),
            t0(),
        )
        .unwrap();
}

fn cns_change(
    s: &Service,
    code: &str,
    proof: CnsAuthenticated,
    e: &str,
    now: DateTime<Utc>,
) -> Result<Executed, Error> {
    run_at(
        s,
        code,
        &Actor::Subject,
        &Command::ChangeContactsWithCns {
            contacts: email_only(e),
            cns: proof,
        },
        now,
    )
}

// rule: NOIPA-13, NOIPA-10 — a CNS holder changes their own contacts with the card; the
// proof comes only from the card middleware, names the holder and expires; a subject not
// registered as a CNS holder is refused.
#[test]
fn noipa_13_cns_holder_changes_own_contacts_with_the_card() {
    let s = service();
    enrol_cns_holder(&s, MARIO, true);
    enrol_cns_holder(&s, GIUSEPPE, false);
    let mario = Middleware(Ok(tax(MARIO)));
    // The card did not authenticate: no proof at all.
    let failed = Middleware(Err(CnsError("revoked certificate".into())));
    assert!(CnsAuthenticated::check(&failed, b"card", t0()).is_err());
    // Another person's card.
    let proof = CnsAuthenticated::check(&mario, b"card", t0()).unwrap();
    let r = cns_change(&s, GIUSEPPE, proof, "g.new@example.it", t0());
    assert!(
        matches!(r, Err(Error::Refused(Refusal::StaleAuthentication))),
        "{r:?}"
    );
    // A stale proof.
    let proof = CnsAuthenticated::check(&mario, b"card", t0()).unwrap();
    let r = cns_change(
        &s,
        MARIO,
        proof,
        "m.new@example.it",
        t0() + Duration::minutes(6),
    );
    assert!(
        matches!(r, Err(Error::Refused(Refusal::StaleAuthentication))),
        "{r:?}"
    );
    // Not registered as a CNS holder, with their own card.
    let giuseppe = Middleware(Ok(tax(GIUSEPPE)));
    let proof = CnsAuthenticated::check(&giuseppe, b"card", t0()).unwrap();
    let r = cns_change(&s, GIUSEPPE, proof, "g.new@example.it", t0());
    assert!(
        matches!(r, Err(Error::Refused(Refusal::Stage { .. }))),
        "{r:?}"
    );
    // The holder, fresh: changed, and the old mailbox hears of it (POL-6).
    let old = subject(&s, MARIO).contacts;
    let proof = CnsAuthenticated::check(&mario, b"card", t0()).unwrap();
    let done = cns_change(&s, MARIO, proof, "m.new@example.it", t0()).unwrap();
    assert_eq!(subject(&s, MARIO).contacts, email_only("m.new@example.it"));
    assert_eq!(done.notices.len(), 1);
    let notices = s.notifier().take_notices();
    assert_eq!(
        notices,
        Notice::to_contacts(&tax(MARIO), &old, NoticeKind::ContactsChanged, t0())
    );
    // Only the person: an operator with a card proof is refused.
    let proof = CnsAuthenticated::check(&mario, b"card", t0()).unwrap();
    let r = run(
        &s,
        MARIO,
        &Actor::Support("s1".into()),
        &Command::ChangeContactsWithCns {
            contacts: email_only("x@example.it"),
            cns: proof,
        },
    );
    assert!(
        matches!(r, Err(Error::Refused(Refusal::Actor { .. }))),
        "{r:?}"
    );
}

// ---------------------------------------------------------------------------------------
// POL-6: security notices.

/// Every notice of `s`, checked to carry none of `secrets`.
fn notices_without(s: &Service, secrets: &[String]) -> Vec<Notice> {
    let notices = s.notifier().take_notices();
    for n in &notices {
        let shown = format!("{n:?}");
        for secret in secrets {
            assert!(!secret.is_empty());
            assert!(!shown.contains(secret.as_str()), "{shown} holds a secret");
            for half in [secret.get(..8), secret.get(8..)].into_iter().flatten() {
                if half.len() >= 5 {
                    assert!(!shown.contains(half), "{shown} holds part of a secret");
                }
            }
        }
    }
    notices
}

// rule: POL-6, NOIPA-8 — a change of contacts by the RID is notified, without any secret,
// to the contacts on record before the change; so is the new PIN the RID issues.
#[test]
fn pol_6_noipa_identification_notifies_the_old_contacts() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        Contacts {
            mobile: mobile("347 123 4567"),
            ..email_only("old@example.it")
        },
        date(2020, 1, 1),
        t0(),
    )
    .unwrap();
    let first = inbox(&s).pop().unwrap().text;
    assert!(
        s.notifier().take_notices().is_empty(),
        "enrolment is no news"
    );
    let old = subject(&s, MARIO).contacts;
    let done = identify_rid(&s, MARIO, email_only("new@example.it"));
    let second = inbox(&s).pop().unwrap();
    assert_eq!(second.recipient, "new@example.it");
    let notices = notices_without(&s, &[first, second.text]);
    let mut want = Notice::to_contacts(&tax(MARIO), &old, NoticeKind::ContactsChanged, t0());
    want.extend(Notice::to_contacts(
        &tax(MARIO),
        &old,
        NoticeKind::PinIssuedByOther { by: "rid" },
        t0(),
    ));
    assert_eq!(notices, want);
    assert!(notices.iter().all(|n| n.recipient != "new@example.it"));
    let recipients: Vec<&str> = notices.iter().map(|n| n.recipient.as_str()).collect();
    assert!(recipients.contains(&"old@example.it"));
    assert!(recipients.contains(&"+393471234567"));
    assert_eq!(done.notices.len(), 4);
    assert!(done.notices.iter().all(|n| n.sent));
}

fn identify_rid(s: &Service, code: &str, contacts: Contacts) -> Executed {
    s.execute(
        &tax(code),
        &Actor::Rid("rid-1".into()),
        &Command::Identify { contacts },
        t0(),
    )
    .unwrap()
}

// rule: POL-6, INPS-14 — a reset and a branch issue are notified to the contacts on record,
// without any secret; a change of contacts at the branch goes to the old ones.
#[test]
fn pol_6_inps_reset_branch_and_contact_change_are_notified() {
    let s = service();
    citizen(&s, LAURA, "laura@example.it");
    let envelope = at_branch(&s, LAURA);
    let on_record = subject(&s, LAURA).contacts;
    let branch_notices = notices_without(&s, std::slice::from_ref(&envelope));
    assert_eq!(
        branch_notices,
        Notice::to_contacts(
            &tax(LAURA),
            &on_record,
            NoticeKind::PinIssuedByOther {
                by: "branch_operator"
            },
            t0()
        )
    );
    let _ = reset(&s, LAURA, "laura@example.it").unwrap();
    let pin = assemble(&inbox(&s));
    let notices = notices_without(&s, &[envelope, pin.clone()]);
    assert_eq!(
        notices,
        Notice::to_contacts(&tax(LAURA), &on_record, NoticeKind::PinReset, t0())
    );
    // Contacts changed at the branch: the old e-mail is told, not the new one.
    let new = Contacts {
        email: email("laura.new@example.it"),
        ..on_record.clone()
    };
    let _ = run(
        &s,
        LAURA,
        &branch(),
        &Command::ChangeContacts {
            contacts: new,
            authenticated: None,
        },
    )
    .unwrap();
    let notices = notices_without(&s, &[pin]);
    assert_eq!(
        notices,
        Notice::to_contacts(&tax(LAURA), &on_record, NoticeKind::ContactsChanged, t0())
    );
    assert!(notices.iter().any(|n| n.recipient == "laura@example.it"));
    // The person's own web request is no one else's act: no notice.
    citizen(&s, MARIO, "mario@example.it");
    let _ = web(&s, MARIO, Check::Passed).unwrap();
    let _ = inbox(&s);
    assert!(s.notifier().take_notices().is_empty());
}

// rule: POL-6 — a notifier that cannot carry notices says so; the command still succeeds
// and the report says the notice was not sent.
#[test]
fn pol_6_a_notifier_without_notices_reports_them_unsent() {
    use pin_core::command::Delivery;
    use pin_core::notify::{DeliveryError, Notifier, Receipt};
    struct OnlyPins;
    impl Notifier for OnlyPins {
        fn deliver(&self, _d: &Delivery) -> Result<Receipt, DeliveryError> {
            Ok(Receipt::Sent)
        }
    }
    let n = Notice::to_contacts(
        &tax(MARIO),
        &email_only("m@example.it"),
        NoticeKind::Locked,
        t0(),
    );
    assert_eq!(n.len(), 1);
    assert!(matches!(
        OnlyPins.notify(&n[0]),
        Err(DeliveryError::Unavailable(_))
    ));
    assert_eq!(n[0].channel, Channel::Email);
    // Through the service: the identification succeeds, its PIN is sent, the notices are
    // reported unsent with the notifier's reason.
    let keys = pin_core::hash::Keyring::new(
        pin_core::secret::Pepper::new(pin_core::secret::KeyId(1), &PEPPER).unwrap(),
    );
    let s = pin_core::service::PinService::new(
        pin_core::memory::MemoryStore::new(),
        OnlyPins,
        cheap_policy().build().unwrap(),
        keys,
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let _ = s
        .execute(
            &tax(MARIO),
            &Actor::Rid("rid-1".into()),
            &Command::Enrol(pin_core::command::Enrolment {
                role: Role::Employee,
                contacts: email_only("old@example.it"),
                cns_holder: false,
                enrolled_on: Some(date(2020, 1, 1)),
            }),
            t0(),
        )
        .unwrap();
    let done = s
        .execute(
            &tax(MARIO),
            &Actor::Rid("rid-1".into()),
            &Command::Identify {
                contacts: email_only("new@example.it"),
            },
            t0(),
        )
        .unwrap();
    assert_eq!(done.deliveries.len(), 1);
    assert_eq!(done.notices.len(), 2);
    assert!(
        done.notices
            .iter()
            .all(|n| !n.sent && n.error.as_deref().is_some_and(|e| e.contains("notices"))),
        "{:?}",
        done.notices
    );
}

// ---------------------------------------------------------------------------------------
// Defect 9: a tax code not on record answers as a person whose proof fails.

// rule: INPS-14, INPS-16 — reset: unknown, wrong contacts, never a PIN, pending: one answer.
#[test]
fn unknown_subject_reset_answers_as_wrong_contacts() {
    let s = service();
    citizen(&s, LAURA, "laura@example.it");
    let _ = at_branch(&s, LAURA);
    let unknown = answer(reset(&s, MARIO, "mario@example.it"));
    let wrong = answer(reset(&s, LAURA, "other@example.it"));
    citizen(&s, GIUSEPPE, "giuseppe@example.it");
    let never = answer(reset(&s, GIUSEPPE, "giuseppe@example.it"));
    let _ = web(&s, GIUSEPPE, Check::Failed).unwrap();
    let pending = answer(reset(&s, GIUSEPPE, "giuseppe@example.it"));
    assert_eq!(unknown, wrong);
    assert_eq!(unknown, never);
    assert_eq!(unknown, pending);
    assert!(!unknown.1.contains(MARIO));
}

// rule: INPS-6, POL-7 — web request: unknown answers as a registered person with a PIN in
// use or a request waiting.
#[test]
fn unknown_subject_web_request_answers_as_a_refused_request() {
    let s = service();
    dispositivo_in_use(&s, LAURA, "laura@example.it");
    citizen(&s, GIUSEPPE, "giuseppe@example.it");
    let _ = web(&s, GIUSEPPE, Check::Failed).unwrap();
    let unknown = answer(web(&s, MARIO, Check::Passed));
    assert_eq!(unknown, answer(web(&s, LAURA, Check::Passed)));
    assert_eq!(unknown, answer(web(&s, GIUSEPPE, Check::Passed)));
    assert!(!unknown.1.contains(MARIO));
    assert!(s.store().load(&tax(MARIO)).unwrap().is_none());
}

// rule: POL-3 — a re-send by the person: unknown answers as a person with no PIN.
#[test]
fn unknown_subject_resend_answers_as_no_pin() {
    let s = service();
    citizen(&s, LAURA, "laura@example.it");
    let unknown = answer(run(&s, MARIO, &Actor::Subject, &Command::Resend));
    let known = answer(run(&s, LAURA, &Actor::Subject, &Command::Resend));
    assert_eq!(unknown, known);
    // Operators still learn that the subject is not on record.
    let r = run(&s, MARIO, &cc(), &Command::Resend);
    assert!(matches!(r, Err(Error::UnknownSubject(_))), "{r:?}");
}

// rule: NOIPA-9 — change of PIN and of contacts with the PIN: unknown answers as a person
// with no PIN (the PIN proof fails the same way).
#[test]
fn unknown_subject_change_and_contacts_answer_as_no_pin() {
    let s = service();
    citizen(&s, LAURA, "laura@example.it");
    let unknown = s
        .change_contacts_with_pin(&tax(MARIO), CHOSEN, email_only("x@example.it"), t0())
        .unwrap()
        .unwrap_err();
    let known = s
        .change_contacts_with_pin(&tax(LAURA), CHOSEN, email_only("x@example.it"), t0())
        .unwrap()
        .unwrap_err();
    assert_eq!(unknown, known);
    let unknown = s.change_pin(&tax(MARIO), CHOSEN, Some("W9RT4HJC"), t0());
    let known = s.change_pin(&tax(LAURA), CHOSEN, Some("W9RT4HJC"), t0());
    assert_eq!(format!("{unknown:?}"), format!("{known:?}"));
}

// ---------------------------------------------------------------------------------------
// Defect 10: advice names a path that works for the profile.

// rule: NOIPA-6, INPS-14 — a used PIN is not re-sent: NoiPA is told of the RID, INPS of
// reset; neither is told of what its profile lacks.
#[test]
fn used_pin_resend_advice_fits_the_profile() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("m@example.it"),
        date(2020, 1, 1),
        t0(),
    )
    .unwrap();
    let pin = inbox(&s).pop().unwrap().text;
    assert!(is_accepted(&verify(&s, MARIO, &pin, t0())));
    let noipa = run(&s, MARIO, &Actor::Support("s1".into()), &Command::Resend)
        .unwrap_err()
        .to_string();
    assert!(noipa.contains("RID"), "{noipa}");
    assert!(!noipa.contains("reset"), "{noipa}");
    dispositivo_in_use(&s, LAURA, "laura@example.it");
    let inps = run(&s, LAURA, &Actor::Subject, &Command::Resend)
        .unwrap_err()
        .to_string();
    assert!(inps.contains("reset"), "{inps}");
    assert!(!inps.contains("RID"), "{inps}");
}

// ---------------------------------------------------------------------------------------
// Policy options from the sources.

// rule: NOIPA-4 — by default SMS only when a mobile is on record; with the policy option,
// by e-mail as well (the same PIN, both copies valid until the next issue).
#[test]
fn noipa_4_policy_option_sends_by_email_as_well() {
    let contacts = Contacts {
        mobile: mobile("347 123 4567"),
        ..email_only("m@example.it")
    };
    let s = service();
    let _ = enrol_employee(&s, MARIO, contacts.clone(), date(2020, 1, 1), t0()).unwrap();
    let msgs = inbox(&s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].channel, Channel::Sms);

    let s = service_with(
        cheap_policy().noipa_email_with_sms(true).build().unwrap(),
        7,
    );
    let _ = enrol_employee(&s, MARIO, contacts, date(2020, 1, 1), t0()).unwrap();
    let msgs = inbox(&s);
    let channels: Vec<Channel> = msgs.iter().map(|m| m.channel).collect();
    assert_eq!(channels, vec![Channel::Sms, Channel::Email]);
    assert_eq!(msgs[0].text, msgs[1].text);
    assert!(msgs.iter().all(|m| (m.part, m.of) == (1, 1)));
    assert!(is_accepted(&verify(&s, MARIO, &msgs[1].text, t0())));
    // E-mail only: one message, as by default.
    let _ = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("g@example.it"),
        date(2020, 1, 1),
        t0(),
    )
    .unwrap();
    assert_eq!(inbox(&s).len(), 1);
}

// rule: INPS-11 — rotation is on by default; the NIST SP 800-63B mode turns it off.
#[test]
fn inps_11_nist_mode_has_no_periodic_change() {
    let later = t0() + Duration::days(200);
    for (nist, state) in [(false, State::Expired), (true, State::Active)] {
        let s = service_with(
            cheap_policy().no_periodic_rotation(nist).build().unwrap(),
            7,
        );
        dispositivo_in_use(&s, LAURA, "laura@example.it");
        let st = s.status(&tax(LAURA), later).unwrap();
        assert_eq!(st.state, state, "nist={nist}");
        assert_eq!(st.rotation_due.is_none(), nist);
    }
}

// rule: POL-6 — the notices are sent before the messages that carry the new PIN.
#[test]
fn pol_6_notices_go_before_the_pin() {
    use pin_core::command::Delivery;
    use pin_core::notify::{DeliveryError, Notifier, Receipt};
    #[derive(Default)]
    struct Log(std::sync::Mutex<Vec<&'static str>>);
    impl Notifier for Log {
        fn deliver(&self, _d: &Delivery) -> Result<Receipt, DeliveryError> {
            self.0.lock().unwrap().push("pin");
            Ok(Receipt::Sent)
        }
        fn notify(&self, _n: &Notice) -> Result<Receipt, DeliveryError> {
            self.0.lock().unwrap().push("notice");
            Ok(Receipt::Sent)
        }
    }
    let keys = pin_core::hash::Keyring::new(
        pin_core::secret::Pepper::new(pin_core::secret::KeyId(1), &PEPPER).unwrap(),
    );
    let s = pin_core::service::PinService::new(
        pin_core::memory::MemoryStore::new(),
        Log::default(),
        cheap_policy().build().unwrap(),
        keys,
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let rid = Actor::Rid("rid-1".into());
    let _ = s
        .execute(
            &tax(MARIO),
            &rid,
            &Command::Enrol(pin_core::command::Enrolment {
                role: Role::Employee,
                contacts: email_only("old@example.it"),
                cns_holder: false,
                enrolled_on: Some(date(2020, 1, 1)),
            }),
            t0(),
        )
        .unwrap();
    let _ = std::mem::take(&mut *s.notifier().0.lock().unwrap());
    let _ = s
        .execute(
            &tax(MARIO),
            &rid,
            &Command::Identify {
                contacts: email_only("new@example.it"),
            },
            t0(),
        )
        .unwrap();
    assert_eq!(
        *s.notifier().0.lock().unwrap(),
        vec!["notice", "notice", "pin"]
    );
}

// rule: NOIPA-1, INPS-3, INPS-12 — a change of PIN checks the current PIN first for every
// subject: a wrong PIN gets the same answer from a NoiPA employee (who has no change) as
// from an INPS citizen, and counts as the guess it is; the right NoiPA PIN is then refused.
#[test]
fn change_answers_a_wrong_pin_alike_for_noipa_and_inps() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("m@example.it"),
        date(2020, 1, 1),
        t0(),
    )
    .unwrap();
    let noipa_pin = inbox(&s).pop().unwrap().text;
    dispositivo_in_use(&s, LAURA, "laura@example.it");
    let wrong_noipa = if noipa_pin == "13579" {
        "24680"
    } else {
        "13579"
    };
    let noipa = s.change_pin(&tax(MARIO), wrong_noipa, Some("W9RT4HJC"), t0());
    let inps = s.change_pin(&tax(LAURA), "R7KX2MQ8", Some("W9RT4HJC"), t0());
    assert_eq!(format!("{noipa:?}"), format!("{inps:?}"));
    assert!(matches!(
        noipa,
        Ok(ChangeOutcome::NotAuthenticated(
            VerifyOutcome::Rejected { .. }
        ))
    ));
    assert_eq!(s.status(&tax(MARIO), t0()).unwrap().attempts.failures, 1);
    let right = s.change_pin(&tax(MARIO), &noipa_pin, Some("W9RT4HJC"), t0());
    assert!(
        matches!(right, Err(Error::Refused(Refusal::NotForProfile { .. }))),
        "{right:?}"
    );
}
