//! NoiPA rules, one test (or a few) per rule, walking transitions with explicit times.

use chrono::{DateTime, Duration, Utc};
use pin_core::command::{
    Authenticated, CnsAuthenticated, CnsAuthority, CnsError, Command, Enrolment,
};
use pin_core::contact::{Contacts, Mobile};
use pin_core::format::PinFormat;
use pin_core::self_service::{Proof, SelfService, authorize};
use pin_core::service::Executed;
use pin_core::store::Store;
use pin_core::subject::{Channel, DeliveryState, Origin, Representation, Role, Subject};
use pin_core::verify::Purpose;
use pin_core::{Actor, Error, InputError, Level, Refusal, VerifyOutcome};

use crate::harness::*;

// ---------------------------------------------------------------------------
// Helpers of this module

const ALL_SELF_SERVICES: [SelfService; 7] = [
    SelfService::SmallLoan,
    SelfService::ComplementaryPension,
    SelfService::ContactChange,
    SelfService::FamilyDeductions,
    SelfService::ResidenceChange,
    SelfService::TaxAssistance730,
    SelfService::SalaryPaymentMethod,
];

/// Enrolled before the automatic issue (NOIPA-2): no PIN until identification.
fn before_2014() -> chrono::NaiveDate {
    date(2010, 9, 1)
}

/// Enrolled after 31 March 2014: PIN at enrolment (NOIPA-2).
fn after_2014() -> chrono::NaiveDate {
    date(2020, 5, 1)
}

fn rid() -> Actor {
    Actor::Rid("rid-1".into())
}

fn support() -> Actor {
    Actor::Support("support-7".into())
}

fn email_and_mobile(e: &str, m: &str) -> Contacts {
    Contacts {
        email: email(e),
        mobile: mobile(m),
        ..Contacts::default()
    }
}

fn run(
    s: &Service,
    code: &str,
    actor: &Actor,
    cmd: &Command,
    now: DateTime<Utc>,
) -> Result<Executed, Error> {
    s.execute(&tax(code), actor, cmd, now)
}

fn identify(
    s: &Service,
    code: &str,
    contacts: Contacts,
    now: DateTime<Utc>,
) -> Result<Executed, Error> {
    run(s, code, &rid(), &Command::Identify { contacts }, now)
}

/// The one message in the outbox: its text (the PIN, for NoiPA).
fn only_message(s: &Service) -> Received {
    let mut msgs = inbox(s);
    assert_eq!(msgs.len(), 1, "exactly one message expected: {msgs:?}");
    msgs.remove(0)
}

fn only_pin(s: &Service) -> String {
    only_message(s).text
}

/// A 5-digit PIN that is not `pin`.
fn wrong(pin: &str) -> String {
    let mut out: String = pin.chars().take(4).collect();
    let last = pin.chars().last().and_then(|c| c.to_digit(10)).unwrap();
    out.push(char::from_digit((last + 1) % 10, 10).unwrap());
    out
}

fn rejected(o: &VerifyOutcome) -> bool {
    matches!(o, VerifyOutcome::Rejected { .. })
}

/// [`authorize`] with the subject's record and attempt counter as the store has them.
fn authorize_at(
    s: &Service,
    code: &str,
    svc: SelfService,
    p: &Proof<'_>,
    now: DateTime<Utc>,
) -> Result<(), Refusal> {
    let st = s.status(&tax(code), now).unwrap();
    authorize(&subject(s, code), &st.attempts, svc, p, now)
}

fn proof(s: &Service, code: &str, pin: &str, now: DateTime<Utc>) -> Option<Authenticated> {
    s.authenticate(
        &tax(code),
        pin,
        Purpose::Access {
            required: Level::Online,
        },
        now,
    )
    .unwrap()
    .proof
}

fn audit_len(s: &Service) -> usize {
    s.store().audit_log(None).unwrap().len()
}

/// What a refusal must leave alone: the record, the audit log and the outbox.
struct Before {
    code: &'static str,
    subject: Subject,
    audit: usize,
}

fn before(s: &Service, code: &'static str) -> Before {
    assert!(
        inbox(s).is_empty(),
        "drain the outbox before taking a snapshot"
    );
    Before {
        code,
        subject: subject(s, code),
        audit: audit_len(s),
    }
}

fn assert_unchanged(s: &Service, b: &Before) {
    assert_eq!(
        subject(s, b.code),
        b.subject,
        "a refusal changed the record"
    );
    assert_eq!(audit_len(s), b.audit, "a refusal wrote to the audit log");
    assert!(inbox(s).is_empty(), "a refusal sent a message");
}

// ---------------------------------------------------------------------------
// NOIPA-1

// rule: NOIPA-1 — five decimal digits, tied to one employee.
#[test]
fn noipa_1_pin_is_five_digits_and_belongs_to_one_employee() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let mario = only_pin(&s);
    let _ = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("giuseppe@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let giuseppe = only_pin(&s);
    assert_ne!(mario, giuseppe);
    let mut issued = vec![mario.clone(), giuseppe.clone()];
    // Every PIN ever issued is five decimal digits: try a few more issues.
    for i in 1..=20 {
        let _ = identify(
            &s,
            GIUSEPPE,
            email_only("giuseppe@example.it"),
            t0() + Duration::minutes(i),
        )
        .unwrap();
        issued.push(only_pin(&s));
    }
    for p in &issued {
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p.chars().all(|c| c.is_ascii_digit()), "{p:?}");
    }
    let giuseppe = issued.last().unwrap().clone();
    assert_eq!(
        subject(&s, MARIO).credential.unwrap().format,
        PinFormat::NoipaDigits5
    );

    // Tied to one employee: Mario's PIN does not open Giuseppe's profile, and vice versa.
    let later = t0() + hours(1);
    assert_ne!(mario, giuseppe);
    assert!(rejected(&verify(&s, GIUSEPPE, &mario, later)));
    assert!(rejected(&verify(&s, MARIO, &giuseppe, later)));
    assert!(is_accepted(&verify(&s, MARIO, &mario, later)));
    assert!(is_accepted(&verify(&s, GIUSEPPE, &giuseppe, later)));

    // Anything but five digits is malformed input, and no attempt is counted.
    for bad in ["1234", "123456", "12a45", "ABCDE", "", "12 345"] {
        let r = s.verify(&tax(MARIO), bad, Level::Online, later);
        assert!(
            matches!(r, Err(Error::Input(InputError::Pin(_)))),
            "{bad:?}: {r:?}"
        );
    }
    let st = s.status(&tax(MARIO), later).unwrap();
    assert_eq!(st.attempts.failures, 0);
    assert_eq!(st.remaining_attempts, 10);
}

// ---------------------------------------------------------------------------
// NOIPA-2

// rule: NOIPA-2 — enrolled on 31 March 2014: no PIN at enrolment; 1 April 2014: PIN at once.
#[test]
fn noipa_2_auto_issue_boundary_is_after_31_march_2014() {
    let s = service();
    let done = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        date(2014, 3, 31),
        t0(),
    )
    .unwrap();
    assert!(done.deliveries.is_empty());
    assert!(inbox(&s).is_empty());
    assert_eq!(done.subject.credential, None);
    assert_eq!(subject(&s, MARIO).credential, None);
    assert_eq!(verify(&s, MARIO, "12345", t0()), VerifyOutcome::NoPin);

    let done = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("giuseppe@example.it"),
        date(2014, 4, 1),
        t0(),
    )
    .unwrap();
    assert_eq!(done.deliveries.len(), 1);
    let cred = done.subject.credential.unwrap();
    assert_eq!(cred.origin, Origin::Enrolment);
    assert_eq!(cred.issued_at, t0());
    let pin = only_pin(&s);
    assert!(is_accepted(&verify(&s, GIUSEPPE, &pin, t0())));
}

// rule: NOIPA-2 — someone enrolled earlier, with no PIN, gets one at the end of identification.
#[test]
fn noipa_2_earlier_enrolment_gets_pin_at_identification() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        before_2014(),
        t0(),
    )
    .unwrap();
    assert!(inbox(&s).is_empty());
    // Time passes with no PIN at all.
    let t1 = t0() + Duration::days(40);
    assert_eq!(verify(&s, MARIO, "12345", t1), VerifyOutcome::NoPin);

    let done = identify(&s, MARIO, email_only("mario@example.it"), t1).unwrap();
    assert_eq!(done.deliveries.len(), 1);
    let subj = subject(&s, MARIO);
    assert_eq!(subj.identified_at, Some(t1));
    let cred = subj.credential.unwrap();
    assert_eq!(cred.origin, Origin::Identification);
    assert_eq!(cred.issued_at, t1);
    let pin = only_pin(&s);
    assert!(is_accepted(&verify(&s, MARIO, &pin, t1 + hours(1))));
}

// ---------------------------------------------------------------------------
// NOIPA-3

// rule: NOIPA-3, NOIPA-12 — after enrolment only the RID identifies (and gives new
// contacts); an enrolment operator and everyone else are refused.
#[test]
fn noipa_12_after_enrolment_only_the_rid_identifies() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        before_2014(),
        t0(),
    )
    .unwrap();
    let b = before(&s, MARIO);
    let contacts = email_only("mario@example.it");
    for actor in [
        Actor::Subject,
        support(),
        Actor::System,
        Actor::EnrolmentOperator("enrol-1".into()),
        Actor::BranchOperator("branch-1".into()),
        Actor::ContactCentre("cc-1".into()),
        Actor::Representative(Representation::Guardian),
    ] {
        let r = run(
            &s,
            MARIO,
            &actor,
            &Command::Identify {
                contacts: contacts.clone(),
            },
            t0() + hours(1),
        );
        assert!(
            matches!(r, Err(Error::Refused(Refusal::Actor { .. }))),
            "{actor:?}: {r:?}"
        );
        assert_unchanged(&s, &b);
    }
    let r = run(
        &s,
        MARIO,
        &Actor::Delegate("friend".into()),
        &Command::Identify {
            contacts: contacts.clone(),
        },
        t0(),
    );
    assert!(matches!(r, Err(Error::Refused(Refusal::Delegate))), "{r:?}");
    assert_unchanged(&s, &b);

    // An enrolment operator may not replace the e-mail after enrolment (NOIPA-12).
    let other = email_only("new.mailbox@example.it");
    let r = run(
        &s,
        MARIO,
        &Actor::EnrolmentOperator("enrol-1".into()),
        &Command::Identify {
            contacts: other.clone(),
        },
        t0() + hours(1),
    );
    match &r {
        Err(Error::Refused(Refusal::Actor { rule, .. })) => assert!(rule.starts_with("NOIPA-12")),
        other => panic!("{other:?}"),
    }
    assert_unchanged(&s, &b);
    // The RID may.
    let t3 = t0() + hours(3);
    let _ = identify(&s, MARIO, other.clone(), t3).unwrap();
    assert_eq!(inbox(&s).len(), 1);
    assert_eq!(subject(&s, MARIO).identified_at, Some(t3));
    assert_eq!(subject(&s, MARIO).contacts, other);
    let _ = contacts;
}

// rule: NOIPA-3 — enrolment of an employee is also an operator's act, not the person's.
#[test]
fn noipa_3_employee_cannot_enrol_themself() {
    let s = service();
    let cmd = Command::Enrol(Enrolment {
        role: Role::Employee,
        contacts: email_only("mario@example.it"),
        cns_holder: false,
        enrolled_on: Some(after_2014()),
    });
    let r = run(&s, MARIO, &Actor::Subject, &cmd, t0());
    assert!(
        matches!(r, Err(Error::Refused(Refusal::Actor { .. }))),
        "{r:?}"
    );
    assert!(matches!(
        s.status(&tax(MARIO), t0()),
        Err(Error::UnknownSubject(_))
    ));
    assert!(inbox(&s).is_empty());
}

// rule: NOIPA-3 — an e-mail address is required, a mobile number optional.
#[test]
fn noipa_3_email_required_mobile_optional() {
    let s = service();
    // At enrolment.
    let r = enrol_employee(
        &s,
        MARIO,
        Contacts {
            mobile: mobile("347 123 4567"),
            ..Contacts::default()
        },
        after_2014(),
        t0(),
    );
    assert!(
        matches!(r, Err(Error::Input(InputError::MissingContact { .. }))),
        "{r:?}"
    );
    assert!(matches!(
        s.status(&tax(MARIO), t0()),
        Err(Error::UnknownSubject(_))
    ));
    assert!(inbox(&s).is_empty());

    // At identification.
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        before_2014(),
        t0(),
    )
    .unwrap();
    let b = before(&s, MARIO);
    for contacts in [
        Contacts::default(),
        Contacts {
            mobile: mobile("347 123 4567"),
            ..Contacts::default()
        },
    ] {
        let r = identify(&s, MARIO, contacts, t0() + hours(1));
        assert!(
            matches!(r, Err(Error::Input(InputError::MissingContact { .. }))),
            "{r:?}"
        );
        assert_unchanged(&s, &b);
    }
    // E-mail alone is enough; e-mail and mobile too.
    let _ = identify(&s, MARIO, email_only("mario@example.it"), t0() + hours(2)).unwrap();
    assert_eq!(inbox(&s).len(), 1);
    let _ = identify(
        &s,
        MARIO,
        email_and_mobile("mario@example.it", "347 123 4567"),
        t0() + hours(3),
    )
    .unwrap();
    assert_eq!(inbox(&s).len(), 1);
    let c = subject(&s, MARIO).contacts;
    assert_eq!(c.email, email("mario@example.it"));
    assert_eq!(c.mobile, mobile("347 123 4567"));
}

// ---------------------------------------------------------------------------
// NOIPA-4

// rule: NOIPA-4 — e-mail only: the PIN goes by e-mail.
#[test]
fn noipa_4_email_only_goes_by_email() {
    let s = service();
    let done = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let m = only_message(&s);
    assert_eq!((m.channel, m.part, m.of), (Channel::Email, 1, 1));
    assert_eq!(m.recipient, "mario@example.it");
    let parts = done.subject.credential.unwrap().parts;
    assert_eq!(parts.len(), 1);
    assert_eq!(parts[0].channel, Channel::Email);
    assert!(is_accepted(&verify(&s, MARIO, &m.text, t0())));
}

// rule: NOIPA-4 — with a mobile number the PIN goes ONLY by SMS, with no e-mail at all.
#[test]
fn noipa_4_mobile_given_goes_only_by_sms() {
    let s = service();
    let contacts = email_and_mobile("mario@example.it", "347 123 4567");
    let done = enrol_employee(&s, MARIO, contacts.clone(), after_2014(), t0()).unwrap();
    let msgs = inbox(&s);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    assert!(msgs.iter().all(|m| m.channel == Channel::Sms), "{msgs:?}");
    assert!(msgs.iter().all(|m| m.channel != Channel::Email));
    assert_eq!(
        msgs[0].recipient,
        Mobile::parse("347 123 4567").unwrap().as_str()
    );
    let parts = done.subject.credential.unwrap().parts;
    assert_eq!(
        parts.iter().map(|p| p.channel).collect::<Vec<_>>(),
        vec![Channel::Sms]
    );
    assert!(is_accepted(&verify(&s, MARIO, &msgs[0].text, t0())));

    // The same at identification: e-mail only → e-mail; then with a mobile → SMS only.
    let _ = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("giuseppe@example.it"),
        before_2014(),
        t0(),
    )
    .unwrap();
    let _ = identify(
        &s,
        GIUSEPPE,
        email_only("giuseppe@example.it"),
        t0() + hours(1),
    )
    .unwrap();
    assert_eq!(only_message(&s).channel, Channel::Email);
    let _ = identify(
        &s,
        GIUSEPPE,
        email_and_mobile("giuseppe@example.it", "333 765 4321"),
        t0() + hours(2),
    )
    .unwrap();
    let m = only_message(&s);
    assert_eq!(m.channel, Channel::Sms);
    assert_eq!(m.recipient, Mobile::parse("333 765 4321").unwrap().as_str());
}

// ---------------------------------------------------------------------------
// NOIPA-5

// rule: NOIPA-5 — support re-sends only 12 hours after identification: 11h59 refused, 12h ok.
#[test]
fn noipa_5_support_resend_waits_12_hours_from_identification() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        before_2014(),
        t0(),
    )
    .unwrap();
    let t_id = t0() + hours(2);
    let _ = identify(
        &s,
        MARIO,
        email_and_mobile("mario@example.it", "347 123 4567"),
        t_id,
    )
    .unwrap();
    let first = only_pin(&s);
    let b = before(&s, MARIO);
    let until = t_id + hours(12);
    for early in [
        t_id,
        t_id + Duration::minutes(11 * 60 + 59),
        until - Duration::seconds(1),
    ] {
        let r = run(&s, MARIO, &support(), &Command::Resend, early);
        match r {
            Err(Error::Refused(Refusal::ResendTooEarly { until: u })) => assert_eq!(u, until),
            other => panic!("at {early}: {other:?}"),
        }
        assert_unchanged(&s, &b);
    }

    // At 12 hours exactly: a fresh PIN to the contacts given at identification (SMS, NOIPA-4).
    let done = run(&s, MARIO, &support(), &Command::Resend, until).unwrap();
    assert_eq!(done.deliveries.len(), 1);
    let m = only_message(&s);
    assert_eq!(m.channel, Channel::Sms);
    assert_eq!(m.recipient, Mobile::parse("347 123 4567").unwrap().as_str());
    assert_eq!(done.subject.contacts, b.subject.contacts);
    assert_eq!(
        done.subject.credential.as_ref().unwrap().origin,
        Origin::Resend
    );
    assert_ne!(m.text, first);
    assert!(rejected(&verify(&s, MARIO, &first, until)));
    assert!(is_accepted(&verify(&s, MARIO, &m.text, until)));
}

// rule: NOIPA-5 — support re-sends only to the recorded contacts and cannot change them.
#[test]
fn noipa_5_support_cannot_change_contacts() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        before_2014(),
        t0(),
    )
    .unwrap();
    let _ = identify(&s, MARIO, email_only("mario@example.it"), t0()).unwrap();
    let _ = inbox(&s);
    let b = before(&s, MARIO);
    let cmd = Command::ChangeContacts {
        contacts: email_and_mobile("attacker@example.it", "333 000 1111"),
        authenticated: None,
    };
    let r = run(&s, MARIO, &support(), &cmd, t0() + hours(13));
    assert!(
        matches!(r, Err(Error::Refused(Refusal::Actor { .. }))),
        "{r:?}"
    );
    assert_unchanged(&s, &b);

    // The re-send goes to the address recorded at identification, nowhere else.
    let _ = run(&s, MARIO, &support(), &Command::Resend, t0() + hours(13)).unwrap();
    let m = only_message(&s);
    assert_eq!(
        (m.channel, m.recipient.as_str()),
        (Channel::Email, "mario@example.it")
    );
    assert_eq!(subject(&s, MARIO).contacts, b.subject.contacts);
}

// ---------------------------------------------------------------------------
// NOIPA-6

// rule: NOIPA-6 — a new PIN from the RID at any time; only the last one sent is valid.
#[test]
fn noipa_6_only_the_last_pin_is_valid() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let p1 = only_pin(&s);
    assert!(is_accepted(&verify(&s, MARIO, &p1, t0())));
    // Lost: a new one the next day, then another more than a year later.
    let t1 = t0() + Duration::days(1);
    let _ = identify(&s, MARIO, email_only("mario@example.it"), t1).unwrap();
    let p2 = only_pin(&s);
    assert!(is_accepted(&verify(&s, MARIO, &p2, t1)));
    let t2 = t0() + Duration::days(400);
    let _ = identify(&s, MARIO, email_only("mario@example.it"), t2).unwrap();
    let p3 = only_pin(&s);
    assert_ne!(p1, p2);
    assert_ne!(p2, p3);
    assert_ne!(p1, p3);
    assert!(rejected(&verify(&s, MARIO, &p1, t2)));
    assert!(rejected(&verify(&s, MARIO, &p2, t2)));
    assert!(is_accepted(&verify(&s, MARIO, &p3, t2)));
    assert_eq!(subject(&s, MARIO).credential.unwrap().serial, 3);
}

// ---------------------------------------------------------------------------
// NOIPA-7

// rule: NOIPA-7 — re-identified with a new mailbox: the PIN goes there; first use confirms it.
#[test]
fn noipa_7_new_mailbox_and_first_use_confirms() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("old.box@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let old_pin = only_pin(&s);
    assert!(is_accepted(&verify(&s, MARIO, &old_pin, t0())));

    let t1 = t0() + Duration::days(60);
    let done = identify(&s, MARIO, email_only("new.box@example.it"), t1).unwrap();
    let m = only_message(&s);
    assert_eq!(
        (m.channel, m.recipient.as_str()),
        (Channel::Email, "new.box@example.it")
    );
    assert_eq!(done.subject.contacts.email, email("new.box@example.it"));
    let cred = done.subject.credential.unwrap();
    assert_eq!(cred.first_used_at, None);
    assert!(
        cred.parts.iter().all(|p| p.state == DeliveryState::Sent),
        "{:?}",
        cred.parts
    );

    // First use, an hour later: accepted as first use; the delivery is confirmed.
    let t2 = t1 + hours(1);
    let first = verify(&s, MARIO, &m.text, t2);
    assert!(
        matches!(
            first,
            VerifyOutcome::Accepted {
                first_use: true,
                ..
            }
        ),
        "{first:?}"
    );
    let cred = subject(&s, MARIO).credential.unwrap();
    assert_eq!(cred.first_used_at, Some(t2));
    assert!(
        cred.parts
            .iter()
            .all(|p| p.state == DeliveryState::Confirmed && p.updated_at == t2),
        "{:?}",
        cred.parts
    );
    let again = verify(&s, MARIO, &m.text, t2 + hours(1));
    assert!(
        matches!(
            again,
            VerifyOutcome::Accepted {
                first_use: false,
                ..
            }
        ),
        "{again:?}"
    );
    assert_eq!(
        subject(&s, MARIO).credential.unwrap().first_used_at,
        Some(t2)
    );
    // The PIN of the lost mailbox is gone.
    assert!(rejected(&verify(&s, MARIO, &old_pin, t2)));
}

// ---------------------------------------------------------------------------
// NOIPA-8

// rule: NOIPA-8 — an e-mail already used by another NoiPA user is refused, whatever its case.
#[test]
fn noipa_8_email_unique_among_noipa_users_case_insensitive() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario.rossi@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let _ = inbox(&s);
    let audit = audit_len(&s);

    // Enrolment with the same address in other case: refused, nobody created, nothing sent.
    let r = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("Mario.Rossi@EXAMPLE.it"),
        after_2014(),
        t0(),
    );
    assert!(matches!(r, Err(Error::EmailInUse)), "{r:?}");
    assert!(matches!(
        s.status(&tax(GIUSEPPE), t0()),
        Err(Error::UnknownSubject(_))
    ));
    assert!(inbox(&s).is_empty());
    assert_eq!(audit_len(&s), audit);

    // Giuseppe on record with his own address cannot take Mario's, by identification or by
    // a contact change.
    let _ = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("giuseppe@example.it"),
        before_2014(),
        t0(),
    )
    .unwrap();
    let b = before(&s, GIUSEPPE);
    let t1 = t0() + hours(1);
    let r = identify(&s, GIUSEPPE, email_only("MARIO.ROSSI@example.it"), t1);
    assert!(matches!(r, Err(Error::EmailInUse)), "{r:?}");
    assert_unchanged(&s, &b);
    let cmd = Command::ChangeContacts {
        contacts: email_only("mario.rossi@example.it"),
        authenticated: None,
    };
    let r = run(&s, GIUSEPPE, &rid(), &cmd, t1);
    assert!(matches!(r, Err(Error::EmailInUse)), "{r:?}");
    assert_unchanged(&s, &b);

    // Mario keeps his own address when re-identified.
    let _ = identify(&s, MARIO, email_only("Mario.Rossi@example.it"), t1).unwrap();
    assert_eq!(only_message(&s).recipient, "Mario.Rossi@example.it");

    // An INPS citizen is not a NoiPA user: the same address is fine there.
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        email_only("mario.rossi@example.it"),
        t1,
    );
    assert_eq!(
        subject(&s, LAURA).contacts.email,
        email("mario.rossi@example.it")
    );
}

// rule: NOIPA-8 — once Mario moves to another address, his old one is free for others.
#[test]
fn noipa_8_released_address_can_be_taken() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("shared@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let cmd = Command::ChangeContacts {
        contacts: email_only("mario@example.it"),
        authenticated: None,
    };
    let _ = run(&s, MARIO, &rid(), &cmd, t0() + hours(1)).unwrap();
    let _ = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("shared@example.it"),
        after_2014(),
        t0() + hours(2),
    )
    .unwrap();
    assert_eq!(
        subject(&s, GIUSEPPE).contacts.email,
        email("shared@example.it")
    );
}

// ---------------------------------------------------------------------------
// NOIPA-9

// rule: NOIPA-9 — the RID changes contacts; the change sends no PIN.
#[test]
fn noipa_9_rid_changes_contacts() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let pin = only_pin(&s);
    let serial = subject(&s, MARIO).credential.unwrap().serial;
    let new = email_and_mobile("mario.new@example.it", "347 123 4567");
    let cmd = Command::ChangeContacts {
        contacts: new.clone(),
        authenticated: None,
    };
    let done = run(&s, MARIO, &rid(), &cmd, t0() + hours(1)).unwrap();
    assert_eq!(done.subject.contacts, new);
    assert!(inbox(&s).is_empty());
    // The PIN did not change.
    assert_eq!(subject(&s, MARIO).credential.unwrap().serial, serial);
    assert!(is_accepted(&verify(&s, MARIO, &pin, t0() + hours(2))));
}

// rule: NOIPA-9 — the person changes contacts after authenticating with the PIN.
#[test]
fn noipa_9_subject_changes_contacts_with_pin() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let pin = only_pin(&s);
    let new = email_and_mobile("mario.new@example.it", "347 123 4567");
    let done = s
        .change_contacts_with_pin(&tax(MARIO), &pin, new.clone(), t0() + hours(1))
        .unwrap()
        .unwrap();
    assert_eq!(done.subject.contacts, new);
    assert_eq!(subject(&s, MARIO).contacts, new);
    assert!(inbox(&s).is_empty());
}

// rule: NOIPA-9 — support, or the person without the PIN, may not change contacts; a wrong
// PIN changes nothing.
#[test]
fn noipa_9_refused_without_rid_or_pin() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let pin = only_pin(&s);
    let new = email_and_mobile("mario.new@example.it", "347 123 4567");
    let t1 = t0() + hours(1);
    let b = before(&s, MARIO);

    for actor in [
        support(),
        Actor::Subject,
        Actor::EnrolmentOperator("enrol-1".into()),
        Actor::System,
    ] {
        let cmd = Command::ChangeContacts {
            contacts: new.clone(),
            authenticated: None,
        };
        let r = run(&s, MARIO, &actor, &cmd, t1);
        assert!(
            matches!(r, Err(Error::Refused(Refusal::Actor { .. }))),
            "{actor:?}: {r:?}"
        );
        assert_unchanged(&s, &b);
    }

    // Support holding the person's proof is still support.
    let held = proof(&s, MARIO, &pin, t1).unwrap();
    // A proof is not `Clone`: a second one for the stale check below.
    let p = proof(&s, MARIO, &pin, t1).unwrap();
    let b = before(&s, MARIO); // the first use confirmed the delivery
    let cmd = Command::ChangeContacts {
        contacts: new.clone(),
        authenticated: Some(held),
    };
    let r = run(&s, MARIO, &support(), &cmd, t1);
    assert!(
        matches!(r, Err(Error::Refused(Refusal::Actor { .. }))),
        "{r:?}"
    );
    assert_unchanged(&s, &b);

    // A wrong PIN: an outcome, not a change.
    let r = s
        .change_contacts_with_pin(&tax(MARIO), &wrong(&pin), new.clone(), t1)
        .unwrap();
    assert!(matches!(r, Err(VerifyOutcome::Rejected { .. })), "{r:?}");
    // The failed attempt is audited and counted, but the record is untouched.
    assert_eq!(subject(&s, MARIO), b.subject);
    assert!(inbox(&s).is_empty());
    assert_eq!(s.status(&tax(MARIO), t1).unwrap().attempts.failures, 1);

    // A proof made for an earlier PIN is stale (still within PROOF_TTL: the serial
    // refuses it).
    let _ = identify(
        &s,
        MARIO,
        email_only("mario@example.it"),
        t1 + Duration::minutes(1),
    )
    .unwrap();
    let _ = inbox(&s);
    let b = before(&s, MARIO);
    let cmd = Command::ChangeContacts {
        contacts: new.clone(),
        authenticated: Some(p),
    };
    let r = run(&s, MARIO, &Actor::Subject, &cmd, t1 + Duration::minutes(2));
    assert!(
        matches!(r, Err(Error::Refused(Refusal::StaleAuthentication))),
        "{r:?}"
    );
    assert_unchanged(&s, &b);

    // Even with the PIN, the e-mail cannot be dropped (NOIPA-3, NOIPA-8).
    let p = only_pin_after_identify(&s);
    let none = Contacts {
        mobile: mobile("347 123 4567"),
        ..Contacts::default()
    };
    let r = s.change_contacts_with_pin(&tax(MARIO), &p, none, t1 + hours(3));
    assert!(
        matches!(r, Err(Error::Input(InputError::MissingContact { .. }))),
        "{r:?}"
    );
    assert_eq!(subject(&s, MARIO).contacts, b.subject.contacts);
}

/// Identifies Mario again and returns the new PIN.
fn only_pin_after_identify(s: &Service) -> String {
    let _ = identify(s, MARIO, email_only("mario@example.it"), t0() + hours(4)).unwrap();
    only_pin(s)
}

// rule: NOIPA-9 — the PIN is sent only to contacts already on record.
#[test]
fn noipa_9_pin_goes_to_contacts_on_record() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let _ = inbox(&s);
    let cmd = Command::ChangeContacts {
        contacts: email_and_mobile("mario@example.it", "347 123 4567"),
        authenticated: None,
    };
    let _ = run(&s, MARIO, &rid(), &cmd, t0() + hours(1)).unwrap();
    let _ = run(
        &s,
        MARIO,
        &Actor::Subject,
        &Command::Resend,
        t0() + hours(2),
    )
    .unwrap();
    let m = only_message(&s);
    assert_eq!(m.channel, Channel::Sms);
    assert_eq!(m.recipient, Mobile::parse("347 123 4567").unwrap().as_str());
}

// ---------------------------------------------------------------------------
// NOIPA-10

/// The card middleware, played by the test: it answers with a fixed holder or error.
struct Card(Result<pin_core::tax_code::TaxCode, CnsError>);

impl CnsAuthority for Card {
    fn authenticate(&self, _evidence: &[u8]) -> Result<pin_core::tax_code::TaxCode, CnsError> {
        self.0.clone()
    }
}

/// The proof of `code`'s card at `now`.
fn card(code: &str, now: DateTime<Utc>) -> CnsAuthenticated {
    CnsAuthenticated::check(&Card(Ok(tax(code))), b"card", now).unwrap()
}

fn enrol_cns(s: &Service, code: &str, now: DateTime<Utc>) -> Executed {
    let cmd = Command::Enrol(Enrolment {
        role: Role::Employee,
        contacts: email_only("cns.holder@example.it"),
        cns_holder: true,
        enrolled_on: Some(after_2014()),
    });
    run(s, code, &rid(), &cmd, now).unwrap()
}

// rule: NOIPA-10 — a CNS holder gets no PIN at enrolment; the card opens the self-services.
#[test]
fn noipa_10_cns_holder_needs_no_pin() {
    let s = service();
    let done = enrol_cns(&s, MARIO, t0());
    assert!(done.deliveries.is_empty());
    assert!(inbox(&s).is_empty());
    let subj = subject(&s, MARIO);
    assert!(subj.cns_holder);
    assert_eq!(subj.credential, None);
    assert_eq!(verify(&s, MARIO, "12345", t0()), VerifyOutcome::NoPin);
    for svc in ALL_SELF_SERVICES {
        assert_eq!(
            authorize_at(&s, MARIO, svc, &Proof::Cns(&card(MARIO, t0())), t0()),
            Ok(()),
            "{svc:?}"
        );
        // Another person's card, or a proof past its time, does not open them.
        assert_eq!(
            authorize_at(&s, MARIO, svc, &Proof::Cns(&card(GIUSEPPE, t0())), t0()),
            Err(Refusal::StaleAuthentication)
        );
        assert_eq!(
            authorize_at(
                &s,
                MARIO,
                svc,
                &Proof::Cns(&card(MARIO, t0())),
                t0() + Duration::minutes(6)
            ),
            Err(Refusal::StaleAuthentication)
        );
    }
    // rule: NOIPA-13 — a card the middleware does not authenticate gives no proof at all.
    let refused = CnsAuthenticated::check(&Card(Err(CnsError("revoked".into()))), b"x", t0());
    assert!(refused.is_err());

    // Someone without a CNS on record cannot use a card.
    let _ = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("giuseppe@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let r = authorize_at(
        &s,
        GIUSEPPE,
        SelfService::SmallLoan,
        &Proof::Cns(&card(GIUSEPPE, t0())),
        t0(),
    );
    assert!(matches!(r, Err(Refusal::Stage { .. })), "{r:?}");
}

// ---------------------------------------------------------------------------
// NOIPA-11

// rule: NOIPA-11 — self-services need a PIN proof (or the CNS); a proof made before a new
// issue is refused.
#[test]
fn noipa_11_self_services_need_a_current_pin_proof() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let pin = only_pin(&s);
    let t1 = t0() + hours(1);
    // A wrong PIN gives no proof.
    assert_eq!(proof(&s, MARIO, &wrong(&pin), t1), None);
    let p = proof(&s, MARIO, &pin, t1).unwrap();
    for svc in ALL_SELF_SERVICES {
        assert_eq!(
            authorize_at(&s, MARIO, svc, &Proof::Pin(&p), t1),
            Ok(()),
            "{svc:?}"
        );
    }
    // Without a CNS on record the card does not substitute the PIN.
    assert!(
        authorize_at(
            &s,
            MARIO,
            SelfService::SmallLoan,
            &Proof::Cns(&card(MARIO, t1)),
            t1
        )
        .is_err()
    );

    // A new PIN is issued: the old proof is stale for every service (still within
    // PROOF_TTL, so it is the serial that refuses it).
    let t2 = t1 + Duration::minutes(1);
    let _ = identify(&s, MARIO, email_only("mario@example.it"), t2).unwrap();
    let new_pin = only_pin(&s);
    for svc in ALL_SELF_SERVICES {
        assert_eq!(
            authorize_at(&s, MARIO, svc, &Proof::Pin(&p), t2),
            Err(Refusal::StaleAuthentication),
            "{svc:?}"
        );
    }
    let fresh = proof(&s, MARIO, &new_pin, t1 + hours(2)).unwrap();
    assert_eq!(
        authorize_at(
            &s,
            MARIO,
            SelfService::TaxAssistance730,
            &Proof::Pin(&fresh),
            t1 + hours(2)
        ),
        Ok(())
    );
}

// rule: NOIPA-11 — the proof of one employee does not open another employee's self-services.
#[test]
fn noipa_11_proof_of_another_employee_is_refused() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let _ = inbox(&s);
    let _ = enrol_employee(
        &s,
        GIUSEPPE,
        email_only("giuseppe@example.it"),
        after_2014(),
        t0(),
    )
    .unwrap();
    let g_pin = only_pin(&s);
    let g_proof = proof(&s, GIUSEPPE, &g_pin, t0() + hours(1)).unwrap();
    let mario = subject(&s, MARIO);
    assert_eq!(
        mario.credential.as_ref().unwrap().serial,
        g_proof.serial(),
        "same serial: the test is meaningful"
    );
    let r = authorize_at(
        &s,
        MARIO,
        SelfService::SalaryPaymentMethod,
        &Proof::Pin(&g_proof),
        t0() + hours(1),
    );
    assert_eq!(r, Err(Refusal::StaleAuthentication));
    // Nor does it change Mario's contacts.
    let b = before(&s, MARIO);
    let cmd = Command::ChangeContacts {
        contacts: email_only("evil@example.it"),
        authenticated: Some(g_proof),
    };
    let r = run(&s, MARIO, &Actor::Subject, &cmd, t0() + hours(1));
    assert!(
        matches!(r, Err(Error::Refused(Refusal::StaleAuthentication))),
        "{r:?}"
    );
    assert_unchanged(&s, &b);
}

// rule: NOIPA-11 — the self-services are NoiPA's: an INPS record is refused.
#[test]
fn noipa_11_not_for_inps_subjects() {
    let s = service();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        t0(),
    );
    let r = authorize_at(
        &s,
        LAURA,
        SelfService::SmallLoan,
        &Proof::Cns(&card(LAURA, t0())),
        t0(),
    );
    assert!(matches!(r, Err(Refusal::NotForProfile { .. })), "{r:?}");
}
