//! INPS rules, one by one (INPS-1 … INPS-14), walked through the service with explicit
//! times. Every refusal is checked to leave the record, the counter, the audit log and the
//! outbox exactly as they were.

use std::fmt::Debug;

use chrono::{DateTime, Duration, TimeZone, Utc};
use pin_core::command::{Advice, Check, Command, Imported};
use pin_core::contact::{ContactProof, Contacts, Email, Mobile};
use pin_core::error::InputError;
use pin_core::format::{self, PinFormat, PinInputError};
use pin_core::service::{ChangeOutcome, Executed};
use pin_core::store::{Loaded, Store};
use pin_core::subject::{Channel, Level, Origin, Pending, Representation, Role, Stage};
use pin_core::verify::{ExpiryReason, Purpose};
use pin_core::{Actor, Error, Refusal, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::harness::*;

// ---------------------------------------------------------------------------------------
// Helpers

const CHOSEN: &str = "K7QM2ZXA";
const CHOSEN_2: &str = "W9RT4HJC";
/// Right shape, wrong value (differs from `CHOSEN` in the last character).
const WRONG_8: &str = "K7QM2ZXB";

fn branch() -> Actor {
    Actor::BranchOperator("branch-1".into())
}
fn cc() -> Actor {
    Actor::ContactCentre("cc-1".into())
}

/// E-mail and address only (one reset contact).
fn email_and_address(e: &str) -> Contacts {
    Contacts {
        email: email(e),
        address: address("Via Roma 1, 00100 Roma RM"),
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

fn web(s: &Service, code: &str, address: Check, now: DateTime<Utc>) -> Executed {
    run(
        s,
        code,
        &Actor::Subject,
        &Command::WebRequest { address },
        now,
    )
    .unwrap()
}

fn loaded(s: &Service, code: &str) -> Option<Loaded> {
    s.store().load(&tax(code)).unwrap()
}

fn audit_len(s: &Service, code: &str) -> usize {
    s.store().audit_log(Some(&tax(code))).unwrap().len()
}

/// Runs `f`, which must fail, and checks that nothing changed: record, version, counter,
/// audit log, outbox. Returns the error.
fn refused<T: Debug>(s: &Service, code: &str, f: impl FnOnce() -> Result<T, Error>) -> Error {
    refused_checking(s, code, true, f)
}

/// As [`refused`], for a refusal that comes after a successful authentication, which is
/// itself audited: the audit log may grow, nothing else may change.
fn refused_after_auth<T: Debug>(
    s: &Service,
    code: &str,
    f: impl FnOnce() -> Result<T, Error>,
) -> Error {
    refused_checking(s, code, false, f)
}

fn refused_checking<T: Debug>(
    s: &Service,
    code: &str,
    audit_too: bool,
    f: impl FnOnce() -> Result<T, Error>,
) -> Error {
    assert!(
        inbox(s).is_empty(),
        "drain the outbox before checking a refusal"
    );
    let before = loaded(s, code);
    let audit_before = audit_len(s, code);
    let err = f().expect_err("expected a refusal or an error");
    assert_eq!(loaded(s, code), before, "the record changed on {err:?}");
    if audit_too {
        assert_eq!(
            audit_len(s, code),
            audit_before,
            "the audit log grew on {err:?}"
        );
    }
    assert!(inbox(s).is_empty(), "a message went out on {err:?}");
    err
}

fn access(s: &Service, code: &str, pin: &str, need: Level, now: DateTime<Utc>) -> VerifyOutcome {
    s.verify(&tax(code), pin, need, now).unwrap()
}

fn accepted_at(o: &VerifyOutcome, level: Level) -> bool {
    matches!(o, VerifyOutcome::Accepted { level: l, .. } if *l == level)
}

fn change(
    s: &Service,
    code: &str,
    current: &str,
    new: Option<&str>,
    now: DateTime<Utc>,
) -> ChangeOutcome {
    s.change_pin(&tax(code), current, new, now).unwrap()
}

fn assert_changed(o: &ChangeOutcome) {
    assert!(matches!(o, ChangeOutcome::Changed { .. }), "{o:?}");
}

/// Enrols a citizen with every contact, web request (address validated), changes the
/// issued 16 to `CHOSEN`. Returns the 16.
fn citizen_with_pin(s: &Service, code: &str, now: DateTime<Utc>) -> String {
    let _ = enrol_inps(
        s,
        code,
        Role::Citizen,
        full_contacts("person@example.it"),
        now,
    );
    let _ = web(s, code, Check::Passed, now);
    let pin16 = assemble(&inbox(s));
    assert_eq!(pin16.len(), 16);
    assert_changed(&change(s, code, &pin16, Some(CHOSEN), now));
    pin16
}

/// Appends the check character to the first 15 characters of a tax code (the algorithm
/// of `tax_code.rs`: odd positions through the table, even positions by value).
fn with_check(first15: &str) -> String {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let sum: u32 = first15
        .bytes()
        .enumerate()
        .map(|(i, c)| {
            let v = if c.is_ascii_digit() {
                c - b'0'
            } else {
                c - b'A'
            };
            if i % 2 == 0 {
                ODD[usize::from(v)]
            } else {
                u32::from(v)
            }
        })
        .sum();
    let check = char::from(b'A' + u8::try_from(sum % 26).unwrap());
    format!("{first15}{check}")
}

fn at(y: i32, mo: u32, d: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, mo, d, h, 0, 0).single().unwrap()
}

#[test]
fn check_character_helper_agrees_with_known_codes() {
    for code in [MARIO, GIUSEPPE, LAURA] {
        assert_eq!(with_check(&code[..15]), code);
    }
}

// ---------------------------------------------------------------------------------------
// INPS-1: two levels; online is not enough for a dispositivo service.

#[test]
fn inps_1_online_pin_is_not_enough_for_dispositivo_services() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    let later = now + hours(1);
    // The right 8-character online PIN: accepted where online suffices …
    assert!(accepted_at(
        &access(&s, LAURA, CHOSEN, Level::Online, later),
        Level::Online
    ));
    // … but not where dispositivo is required.
    assert_eq!(
        access(&s, LAURA, CHOSEN, Level::Dispositivo, later),
        VerifyOutcome::InsufficientLevel {
            have: Level::Online,
            need: Level::Dispositivo
        }
    );
    // No proof is given for a service the PIN does not open.
    let v = s
        .authenticate(
            &tax(LAURA),
            CHOSEN,
            Purpose::Access {
                required: Level::Dispositivo,
            },
            later,
        )
        .unwrap();
    assert!(v.proof.is_none());
    // A right PIN of the wrong level is not a wrong attempt.
    assert_eq!(s.status(&tax(LAURA), later).unwrap().attempts.failures, 0);
}

// ---------------------------------------------------------------------------------------
// INPS-2: dispositivo only after identification in person (branch) or a document check
// (conversion); every other channel gives online.

#[test]
fn inps_2_only_branch_and_conversion_give_dispositivo() {
    let s = service();
    let now = t0();
    // Branch: identified in person → dispositivo.
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        now,
    );
    let _ = run(
        &s,
        MARIO,
        &branch(),
        &Command::BranchRequest {
            identity_document: Check::Passed,
            on_behalf: None,
        },
        now,
    )
    .unwrap();
    assert_eq!(
        subject(&s, MARIO).credential.unwrap().level,
        Level::Dispositivo
    );
    assert!(subject(&s, MARIO).identified_at.is_some());
    let _ = inbox(&s);

    // Web → online.
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    assert_eq!(subject(&s, LAURA).credential.unwrap().level, Level::Online);
    let _ = inbox(&s);

    // Contact centre → online.
    let _ = enrol_inps(
        &s,
        GIUSEPPE,
        Role::Citizen,
        full_contacts("giuseppe@example.it"),
        now,
    );
    let _ = run(
        &s,
        GIUSEPPE,
        &cc(),
        &Command::ContactCentreRequest {
            archives: Check::Passed,
        },
        now,
    )
    .unwrap();
    assert_eq!(
        subject(&s, GIUSEPPE).credential.unwrap().level,
        Level::Online
    );
    let _ = inbox(&s);

    // Pre-assigned → online, before and after activation.
    let code = with_check("BNCGNN70A41H501");
    let _ = enrol_inps(
        &s,
        &code,
        Role::Citizen,
        full_contacts("giovanna@example.it"),
        now,
    );
    let _ = run(&s, &code, &Actor::System, &Command::PreAssign, now).unwrap();
    assert_eq!(subject(&s, &code).credential.unwrap().level, Level::Online);
    let letter = inbox(&s);
    let _ = s
        .activate(&tax(&code), &letter[0].text, Check::Passed, now)
        .unwrap()
        .unwrap();
    assert_eq!(subject(&s, &code).credential.unwrap().level, Level::Online);
    let _ = inbox(&s);

    // Conversion with a document check → dispositivo (INPS-9 covers the details).
    let _ = run(
        &s,
        LAURA,
        &branch(),
        &Command::Convert {
            document: Check::Passed,
        },
        now,
    )
    .unwrap();
    assert_eq!(
        subject(&s, LAURA).credential.unwrap().level,
        Level::Dispositivo
    );
}

// ---------------------------------------------------------------------------------------
// INPS-3: issued 16 → must change → 8 (chosen, non-trivial, or generated); then only the 8.

#[test]
fn inps_3_issued_pin_has_16_characters_and_must_be_changed() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let pin16 = assemble(&inbox(&s));
    assert_eq!(pin16.len(), 16);
    let cred = subject(&s, LAURA).credential.unwrap();
    assert_eq!(
        (cred.format, cred.stage),
        (PinFormat::InpsIssued16, Stage::MustChange)
    );
    // The right 16 opens no service, whatever the level: change it first.
    let later = now + hours(2);
    assert_eq!(
        access(&s, LAURA, &pin16, Level::Online, later),
        VerifyOutcome::MustChange
    );
    assert_eq!(
        access(&s, LAURA, &pin16, Level::Dispositivo, later),
        VerifyOutcome::MustChange
    );
    let v = s
        .authenticate(
            &tax(LAURA),
            &pin16,
            Purpose::Access {
                required: Level::Online,
            },
            later,
        )
        .unwrap();
    assert!(v.proof.is_none(), "a must-change PIN gives no access proof");
}

#[test]
fn inps_3_trivial_or_malformed_chosen_pin_is_refused_before_any_attempt() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let pin16 = assemble(&inbox(&s));
    for bad in ["ABCDEFGH", "22222222", "ABABABAB", "HGFEDCBA"] {
        let e = refused(&s, LAURA, || {
            s.change_pin(&tax(LAURA), &pin16, Some(bad), now)
        });
        assert!(
            matches!(e, Error::Input(InputError::Pin(PinInputError::Trivial))),
            "{bad}: {e:?}"
        );
    }
    // Wrong length and letters outside the alphabet (O, I, 0, 1) are input errors too; even
    // a wrong current PIN costs nothing when the new one is bad.
    for bad in ["K7QM2ZX", "K7QM2ZXAB", "K7QM2ZXO", "K7QM2Z1A"] {
        let e = refused(&s, LAURA, || {
            s.change_pin(&tax(LAURA), "22222222AAAAAAAA", Some(bad), now)
        });
        assert!(
            matches!(e, Error::Input(InputError::Pin(_))),
            "{bad}: {e:?}"
        );
    }
    assert_eq!(s.status(&tax(LAURA), now).unwrap().remaining_attempts, 10);
    // The 16 still works and still must be changed.
    assert_eq!(
        access(&s, LAURA, &pin16, Level::Online, now),
        VerifyOutcome::MustChange
    );
}

#[test]
fn inps_3_change_to_chosen_8_then_only_the_8_works() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let pin16 = assemble(&inbox(&s));
    let before = subject(&s, LAURA).credential.unwrap();
    let t1 = now + hours(3);
    let out = change(&s, LAURA, &pin16, Some(CHOSEN), t1);
    assert!(
        matches!(out, ChangeOutcome::Changed { revealed: None }),
        "{out:?}"
    );
    assert!(inbox(&s).is_empty(), "a chosen PIN is never sent anywhere");
    let cred = subject(&s, LAURA).credential.unwrap();
    assert_eq!(
        (cred.format, cred.stage, cred.level),
        (PinFormat::InpsInUse8, Stage::Active, Level::Online)
    );
    assert_eq!(cred.changed_at, Some(t1));
    assert!(cred.serial > before.serial);
    assert_ne!(cred.hash, before.hash);
    // Lower case is the same PIN.
    assert!(accepted_at(
        &access(&s, LAURA, &CHOSEN.to_lowercase(), Level::Online, t1),
        Level::Online
    ));
    // The 16 is gone: typed for the 8-character PIN it is a wrong PIN like any other,
    // counted (not an input error, which would tell the shape of the current PIN).
    let old = s.verify(&tax(LAURA), &pin16, Level::Online, t1);
    assert_eq!(
        old.unwrap(),
        VerifyOutcome::Rejected {
            remaining_attempts: 9,
            final_try: false
        }
    );
    // Neither half of it opens anything.
    assert!(matches!(
        access(&s, LAURA, &pin16[..8], Level::Online, t1),
        VerifyOutcome::Rejected { .. }
    ));
    assert!(matches!(
        access(&s, LAURA, &pin16[8..], Level::Online, t1),
        VerifyOutcome::Rejected { .. }
    ));
    // Changing again needs the 8, not the 16.
    let e = s.change_pin(&tax(LAURA), &pin16, Some(CHOSEN_2), t1);
    assert!(
        matches!(
            e,
            Ok(ChangeOutcome::NotAuthenticated(VerifyOutcome::Rejected {
                remaining_attempts: 6,
                ..
            }))
        ),
        "{e:?}"
    );
    assert_eq!(s.status(&tax(LAURA), t1).unwrap().attempts.failures, 4);
}

#[test]
fn inps_3_change_to_system_generated_8() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let pin16 = assemble(&inbox(&s));
    let ChangeOutcome::Changed {
        revealed: Some(generated),
    } = change(&s, LAURA, &pin16, None, now)
    else {
        panic!("a generated PIN must be revealed to the person");
    };
    let generated = generated.expose_secret().to_owned();
    assert_eq!(generated.len(), 8);
    assert!(generated.chars().all(|c| format::INPS_ALPHABET.contains(c)));
    assert!(!format::is_trivial(&generated));
    assert!(inbox(&s).is_empty(), "the generated PIN is shown, not sent");
    assert!(accepted_at(
        &access(&s, LAURA, &generated, Level::Online, now),
        Level::Online
    ));
    assert!(matches!(
        s.verify(&tax(LAURA), &pin16, Level::Online, now),
        Ok(VerifyOutcome::Rejected { .. })
    ));
}

#[test]
fn inps_3_wrong_current_pin_changes_nothing_but_counts() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let pin16 = assemble(&inbox(&s));
    let before = subject(&s, LAURA);
    let wrong16 = format!("{}{}", &pin16[8..], &pin16[..8]);
    let out = change(&s, LAURA, &wrong16, Some(CHOSEN), now);
    assert!(
        matches!(
            out,
            ChangeOutcome::NotAuthenticated(VerifyOutcome::Rejected {
                remaining_attempts: 9,
                ..
            })
        ),
        "{out:?}"
    );
    assert_eq!(subject(&s, LAURA), before);
    assert!(inbox(&s).is_empty());
}

// ---------------------------------------------------------------------------------------
// INPS-4: a legacy 16 in use keeps working until the periodic change, then becomes 8.

fn import_legacy(
    s: &Service,
    code: &str,
    pin16: &str,
    issued: DateTime<Utc>,
    changed: Option<DateTime<Utc>>,
) {
    let pin = format::parse_input(PinFormat::InpsIssued16, pin16).unwrap();
    let hash = s
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(99))
        .unwrap();
    let cmd = Command::Import(Imported {
        role: Role::Citizen,
        contacts: full_contacts("legacy@example.it"),
        hash,
        format: PinFormat::InpsIssued16,
        level: Level::Online,
        stage: Stage::Active,
        issued_at: issued,
        changed_at: changed,
    });
    let _ = run(s, code, &Actor::System, &cmd, t0()).unwrap();
}

const LEGACY: &str = "AB3CD4EF5GH6JK7L";

#[test]
fn inps_4_legacy_16_keeps_working_until_rotation_then_becomes_8() {
    let s = service();
    // Last changed 1 December 2025: due 1 June 2026 (6 months, citizen).
    let changed = at(2025, 12, 1, 10);
    let due = at(2026, 6, 1, 10);
    import_legacy(&s, MARIO, LEGACY, at(2025, 1, 1, 10), Some(changed));
    assert!(inbox(&s).is_empty());
    let cred = subject(&s, MARIO).credential.unwrap();
    assert_eq!(
        (cred.format, cred.stage, cred.origin),
        (PinFormat::InpsIssued16, Stage::Active, Origin::Import)
    );
    // In use: accepted, no change asked, up to the instant before the due date.
    for now in [t0(), due - Duration::seconds(1)] {
        let o = access(&s, MARIO, LEGACY, Level::Online, now);
        assert!(
            matches!(o, VerifyOutcome::Accepted { level: Level::Online, rotation_due: Some(d), .. } if d == due),
            "{o:?}"
        );
    }
    // A legacy PIN already in use is not re-sent.
    let e = refused(&s, MARIO, || {
        run(&s, MARIO, &Actor::Subject, &Command::Resend, t0())
    });
    assert!(
        matches!(e, Error::Refused(Refusal::AlreadyUsed { .. })),
        "{e:?}"
    );
    // At the periodic change it stops opening services …
    assert_eq!(
        access(&s, MARIO, LEGACY, Level::Online, due),
        VerifyOutcome::Expired {
            reason: ExpiryReason::Rotation
        }
    );
    // … and the change leads to 8 characters.
    let t = due + hours(1);
    assert_changed(&change(&s, MARIO, LEGACY, Some(CHOSEN), t));
    let cred = subject(&s, MARIO).credential.unwrap();
    assert_eq!(
        (cred.format, cred.stage),
        (PinFormat::InpsInUse8, Stage::Active)
    );
    assert!(accepted_at(
        &access(&s, MARIO, CHOSEN, Level::Online, t),
        Level::Online
    ));
    // The legacy 16 is now a wrong PIN like any other (counted, not an input error).
    assert!(matches!(
        s.verify(&tax(MARIO), LEGACY, Level::Online, t),
        Ok(VerifyOutcome::Rejected { .. })
    ));
}

#[test]
fn inps_4_legacy_16_may_also_be_changed_before_rotation() {
    let s = service();
    import_legacy(
        &s,
        MARIO,
        LEGACY,
        at(2025, 1, 1, 10),
        Some(at(2025, 12, 1, 10)),
    );
    let ChangeOutcome::Changed { revealed: Some(p) } = change(&s, MARIO, LEGACY, None, t0()) else {
        panic!("expected a generated PIN");
    };
    assert_eq!(p.len(), 8);
    assert!(accepted_at(
        &access(&s, MARIO, p.expose_secret(), Level::Online, t0()),
        Level::Online
    ));
}

#[test]
fn inps_4_legacy_16_without_known_change_date_is_in_use_not_unused() {
    // An imported PIN in stage Active is in use (INPS-4) even when the earlier system did
    // not record the last change: it is never treated as an initial PIN that expired
    // unused, and rotation counts from its issue, the last change known.
    let s = service();
    let issued = at(2025, 12, 20, 10);
    import_legacy(&s, MARIO, LEGACY, issued, None);
    // First use here 60 days after issue, past the 30-day validity of an unused PIN.
    let t = issued + Duration::days(60);
    let due = at(2026, 6, 20, 10);
    let o = access(&s, MARIO, LEGACY, Level::Online, t);
    assert!(
        matches!(o, VerifyOutcome::Accepted { rotation_due: Some(d), .. } if d == due),
        "{o:?}"
    );
    assert_eq!(
        access(&s, MARIO, LEGACY, Level::Online, due),
        VerifyOutcome::Expired {
            reason: ExpiryReason::Rotation
        }
    );
    assert_changed(&change(&s, MARIO, LEGACY, Some(CHOSEN), due));
    assert!(accepted_at(
        &access(&s, MARIO, CHOSEN, Level::Online, due),
        Level::Online
    ));
}

#[test]
fn inps_4_import_is_for_the_system_only_and_must_be_consistent() {
    let s = service();
    let pin = format::parse_input(PinFormat::InpsIssued16, LEGACY).unwrap();
    let hash = s
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(1))
        .unwrap();
    let imported = |format, stage| {
        Command::Import(Imported {
            role: Role::Citizen,
            contacts: full_contacts("legacy@example.it"),
            hash: hash.clone(),
            format,
            level: Level::Online,
            stage,
            issued_at: at(2025, 1, 1, 10),
            changed_at: None,
        })
    };
    let cmd = imported(PinFormat::InpsIssued16, Stage::Active);
    for actor in [Actor::Subject, branch(), cc()] {
        let e = refused(&s, MARIO, || run(&s, MARIO, &actor, &cmd, t0()));
        assert!(
            matches!(e, Error::Refused(Refusal::Actor { .. })),
            "{actor:?}: {e:?}"
        );
    }
    for (format, stage) in [
        (PinFormat::NoipaDigits5, Stage::Active),
        (PinFormat::InpsInUse8, Stage::MustChange),
        (PinFormat::InpsIssued16, Stage::AwaitingActivation),
    ] {
        let cmd = imported(format, stage);
        let e = refused(&s, MARIO, || run(&s, MARIO, &Actor::System, &cmd, t0()));
        assert!(
            matches!(e, Error::Input(InputError::Import(_))),
            "{format:?} {stage:?}: {e:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// INPS-5: branch counter.

#[test]
fn inps_5_branch_hands_over_a_sealed_dispositivo_16_to_change() {
    let s = service();
    let now = t0();
    // No contacts are needed for a sealed envelope.
    let _ = enrol_inps(&s, MARIO, Role::Citizen, Contacts::default(), now);
    let done = run(
        &s,
        MARIO,
        &branch(),
        &Command::BranchRequest {
            identity_document: Check::Passed,
            on_behalf: None,
        },
        now,
    )
    .unwrap();
    assert_eq!(done.deliveries.len(), 1);
    let msgs = inbox(&s);
    assert_eq!(msgs.len(), 1);
    let m = &msgs[0];
    assert_eq!((m.channel, m.part, m.of), (Channel::SealedEnvelope, 1, 1));
    assert_eq!(m.text.len(), 16, "the whole 16 in the envelope");
    let subj = subject(&s, MARIO);
    assert_eq!(subj.identified_at, Some(now));
    let cred = subj.credential.unwrap();
    assert_eq!(
        (cred.format, cred.level, cred.stage, cred.origin),
        (
            PinFormat::InpsIssued16,
            Level::Dispositivo,
            Stage::MustChange,
            Origin::Branch
        )
    );
    assert_eq!(
        access(&s, MARIO, &m.text, Level::Dispositivo, now),
        VerifyOutcome::MustChange
    );
    // After the change the 8 keeps the level: it opens dispositivo services.
    assert_changed(&change(&s, MARIO, &m.text, Some(CHOSEN), now));
    assert!(accepted_at(
        &access(&s, MARIO, CHOSEN, Level::Dispositivo, now),
        Level::Dispositivo
    ));
}

#[test]
fn inps_5_only_a_branch_operator_and_only_after_the_document_check() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        now,
    );
    let _ = inbox(&s);
    let ok = Command::BranchRequest {
        identity_document: Check::Passed,
        on_behalf: None,
    };
    for actor in [
        Actor::Subject,
        cc(),
        Actor::System,
        Actor::Rid("rid-1".into()),
        Actor::Representative(Representation::Guardian),
    ] {
        let e = refused(&s, MARIO, || run(&s, MARIO, &actor, &ok, now));
        assert!(
            matches!(e, Error::Refused(Refusal::Actor { .. })),
            "{actor:?}: {e:?}"
        );
    }
    let failed = Command::BranchRequest {
        identity_document: Check::Failed,
        on_behalf: None,
    };
    let e = refused(&s, MARIO, || run(&s, MARIO, &branch(), &failed, now));
    assert!(
        matches!(e, Error::Refused(Refusal::CheckFailed(_))),
        "{e:?}"
    );
    assert!(subject(&s, MARIO).credential.is_none());
}

#[test]
fn inps_5_branch_issue_replaces_an_earlier_pin() {
    // BOTH-1 at the counter: a person who lost the PIN gets a new one, the old one is gone.
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    let t = now + hours(5);
    let _ = run(
        &s,
        LAURA,
        &branch(),
        &Command::BranchRequest {
            identity_document: Check::Passed,
            on_behalf: None,
        },
        t,
    )
    .unwrap();
    let msgs = inbox(&s);
    // The old 8 is a wrong PIN for the new 16 (counted like any other).
    assert!(matches!(
        s.verify(&tax(LAURA), CHOSEN, Level::Online, t),
        Ok(VerifyOutcome::Rejected { .. })
    ));
    assert_eq!(
        access(&s, LAURA, &msgs[0].text, Level::Online, t),
        VerifyOutcome::MustChange
    );
}

// ---------------------------------------------------------------------------------------
// INPS-6: web request.

#[test]
fn inps_6_validated_address_first_half_by_sms_second_by_post() {
    let s = service();
    let now = t0();
    let contacts = full_contacts("laura@example.it");
    let _ = enrol_inps(&s, LAURA, Role::Citizen, contacts.clone(), now);
    let done = web(&s, LAURA, Check::Passed, now);
    assert_eq!(done.deliveries.len(), 2);
    let msgs = inbox(&s);
    assert_eq!(msgs.len(), 2);
    let (first, second) = (&msgs[0], &msgs[1]);
    assert_eq!((first.part, first.of, first.channel), (1, 2, Channel::Sms));
    assert_eq!(first.recipient, contacts.mobile.unwrap().as_str());
    assert_eq!(
        (second.part, second.of, second.channel),
        (2, 2, Channel::Post)
    );
    assert_eq!(second.recipient, contacts.address.unwrap().as_str());
    assert_eq!((first.text.len(), second.text.len()), (8, 8));
    assert_eq!(first.serial, second.serial);
    let cred = subject(&s, LAURA).credential.unwrap();
    assert_eq!(
        (cred.level, cred.stage, cred.origin),
        (Level::Online, Stage::MustChange, Origin::Web)
    );
    // Active: the two halves make the PIN, which can be changed at once.
    let pin16 = assemble(&msgs);
    assert_eq!(
        access(&s, LAURA, &pin16, Level::Online, now),
        VerifyOutcome::MustChange
    );
    // Neither half alone is the PIN (BOTH-2): a wrong PIN.
    let e = s.verify(&tax(LAURA), &first.text, Level::Online, now);
    assert!(matches!(e, Ok(VerifyOutcome::Rejected { .. })), "{e:?}");
}

#[test]
fn inps_6_without_mobile_first_half_goes_by_email() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        email_and_address("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let msgs = inbox(&s);
    let channels: Vec<_> = msgs
        .iter()
        .map(|m| (m.part, m.channel, m.recipient.as_str()))
        .collect();
    assert_eq!(
        channels,
        vec![
            (1, Channel::Email, "laura@example.it"),
            (2, Channel::Post, "Via Roma 1, 00100 Roma RM")
        ]
    );
    assert_eq!(
        access(&s, LAURA, &assemble(&msgs), Level::Online, now),
        VerifyOutcome::MustChange
    );
}

#[test]
fn inps_6_unvalidated_address_waits_for_outbound_verification() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let done = web(&s, LAURA, Check::Failed, now);
    assert!(done.deliveries.is_empty());
    assert!(done.advice.contains(&Advice::AwaitingOutboundVerification));
    assert!(inbox(&s).is_empty(), "no PIN, no message");
    let subj = subject(&s, LAURA);
    assert!(subj.credential.is_none());
    assert_eq!(
        subj.pending,
        Pending::OutboundVerification {
            origin: Origin::Web,
            since: now
        }
    );
    assert_eq!(
        access(&s, LAURA, "AB3CD4EF5GH6JK7L", Level::Online, now),
        VerifyOutcome::NoPin
    );
    // A second request while one waits is refused, with the answer a tax code not on
    // record gets (the requester is not authenticated).
    let e = refused(&s, LAURA, || {
        run(
            &s,
            LAURA,
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            now,
        )
    });
    assert!(
        matches!(e, Error::Refused(Refusal::RequestNotPossible)),
        "{e:?}"
    );
    // Only the contact centre makes the outbound call.
    for actor in [Actor::Subject, branch(), Actor::System] {
        let cmd = Command::OutboundVerification {
            result: Check::Passed,
        };
        let e = refused(&s, LAURA, || run(&s, LAURA, &actor, &cmd, now));
        assert!(
            matches!(e, Error::Refused(Refusal::Actor { .. })),
            "{actor:?}: {e:?}"
        );
    }
    // Verified: the same delivery as a validated address.
    let t = now + hours(26);
    let _ = run(
        &s,
        LAURA,
        &cc(),
        &Command::OutboundVerification {
            result: Check::Passed,
        },
        t,
    )
    .unwrap();
    let msgs = inbox(&s);
    let routes: Vec<_> = msgs.iter().map(|m| (m.part, m.of, m.channel)).collect();
    assert_eq!(routes, vec![(1, 2, Channel::Sms), (2, 2, Channel::Post)]);
    let subj = subject(&s, LAURA);
    assert_eq!(subj.pending, Pending::None);
    let cred = subj.credential.unwrap();
    assert_eq!(
        (cred.level, cred.stage, cred.origin, cred.issued_at),
        (Level::Online, Stage::MustChange, Origin::Web, t)
    );
    assert_eq!(
        access(&s, LAURA, &assemble(&msgs), Level::Online, t),
        VerifyOutcome::MustChange
    );
    // Nothing is pending any more.
    let cmd = Command::OutboundVerification {
        result: Check::Passed,
    };
    let e = refused(&s, LAURA, || run(&s, LAURA, &cc(), &cmd, t));
    assert!(
        matches!(e, Error::Refused(Refusal::NothingPending)),
        "{e:?}"
    );
}

#[test]
fn inps_6_failed_outbound_verification_rejects_the_request() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Failed, now);
    let done = run(
        &s,
        LAURA,
        &cc(),
        &Command::OutboundVerification {
            result: Check::Failed,
        },
        now + hours(1),
    )
    .unwrap();
    assert!(done.deliveries.is_empty());
    assert!(inbox(&s).is_empty());
    let subj = subject(&s, LAURA);
    assert_eq!(subj.pending, Pending::None);
    assert!(subj.credential.is_none());
    assert_eq!(subj.last_serial, 0);
    // The person may ask again.
    let _ = web(&s, LAURA, Check::Passed, now + hours(2));
    assert_eq!(inbox(&s).len(), 2);
}

#[test]
fn inps_6_missing_residence_address_is_an_input_error() {
    let s = service();
    let now = t0();
    let contacts = Contacts {
        address: None,
        ..full_contacts("laura@example.it")
    };
    let _ = enrol_inps(&s, LAURA, Role::Citizen, contacts, now);
    for address in [Check::Passed, Check::Failed] {
        let e = refused(&s, LAURA, || {
            run(
                &s,
                LAURA,
                &Actor::Subject,
                &Command::WebRequest { address },
                now,
            )
        });
        assert!(
            matches!(e, Error::Input(InputError::MissingContact { .. })),
            "{e:?}"
        );
    }
}

#[test]
fn inps_6_only_the_person_or_a_representative_asks_on_the_web() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    for actor in [branch(), cc(), Actor::System, Actor::Support("s-1".into())] {
        let cmd = Command::WebRequest {
            address: Check::Passed,
        };
        let e = refused(&s, LAURA, || run(&s, LAURA, &actor, &cmd, now));
        assert!(
            matches!(e, Error::Refused(Refusal::Actor { .. })),
            "{actor:?}: {e:?}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// INPS-7: contact centre.

#[test]
fn inps_7_contact_centre_tells_first_half_by_phone_and_sends_it_second_by_post() {
    let s = service();
    let now = t0();
    let contacts = full_contacts("giuseppe@example.it");
    let _ = enrol_inps(&s, GIUSEPPE, Role::Citizen, contacts.clone(), now);
    let done = run(
        &s,
        GIUSEPPE,
        &cc(),
        &Command::ContactCentreRequest {
            archives: Check::Passed,
        },
        now,
    )
    .unwrap();
    assert_eq!(done.deliveries.len(), 3);
    let msgs = inbox(&s);
    let routes: Vec<_> = msgs.iter().map(|m| (m.part, m.of, m.channel)).collect();
    assert_eq!(
        routes,
        vec![
            (1, 2, Channel::Phone),
            (1, 2, Channel::Sms),
            (2, 2, Channel::Post)
        ]
    );
    assert_eq!(
        msgs[0].text, msgs[1].text,
        "the same first half, told and sent"
    );
    assert_eq!(msgs[2].recipient, contacts.address.unwrap().as_str());
    assert!(msgs.iter().all(|m| m.text.len() == 8));
    let cred = subject(&s, GIUSEPPE).credential.unwrap();
    assert_eq!(
        (cred.level, cred.stage, cred.origin, cred.format),
        (
            Level::Online,
            Stage::MustChange,
            Origin::ContactCentre,
            PinFormat::InpsIssued16
        )
    );
    let pin16 = assemble(&msgs);
    assert_eq!(
        access(&s, GIUSEPPE, &pin16, Level::Online, now),
        VerifyOutcome::MustChange
    );
    assert_changed(&change(&s, GIUSEPPE, &pin16, Some(CHOSEN), now));
}

#[test]
fn inps_7_contact_centre_without_mobile_sends_first_half_by_email() {
    // The first half is told on the call in progress and sent by e-mail when no mobile
    // number is on record ("SMS or e-mail", INPS-7).
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        GIUSEPPE,
        Role::Citizen,
        email_and_address("giuseppe@example.it"),
        now,
    );
    let _ = run(
        &s,
        GIUSEPPE,
        &cc(),
        &Command::ContactCentreRequest {
            archives: Check::Passed,
        },
        now,
    )
    .unwrap();
    let msgs = inbox(&s);
    let routes: Vec<_> = msgs.iter().map(|m| (m.part, m.channel)).collect();
    assert_eq!(
        routes,
        vec![(1, Channel::Phone), (1, Channel::Email), (2, Channel::Post)]
    );
    assert_eq!(
        access(&s, GIUSEPPE, &assemble(&msgs), Level::Online, now),
        VerifyOutcome::MustChange
    );
}

#[test]
fn inps_7_archives_mismatch_goes_to_outbound_verification() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        GIUSEPPE,
        Role::Citizen,
        full_contacts("giuseppe@example.it"),
        now,
    );
    let done = run(
        &s,
        GIUSEPPE,
        &cc(),
        &Command::ContactCentreRequest {
            archives: Check::Failed,
        },
        now,
    )
    .unwrap();
    assert!(done.deliveries.is_empty());
    assert!(done.advice.contains(&Advice::AwaitingOutboundVerification));
    assert!(inbox(&s).is_empty());
    let subj = subject(&s, GIUSEPPE);
    assert!(subj.credential.is_none());
    assert_eq!(
        subj.pending,
        Pending::OutboundVerification {
            origin: Origin::ContactCentre,
            since: now
        }
    );
    // The outbound call verifies: the PIN goes out in halves, online.
    let t = now + hours(4);
    let _ = run(
        &s,
        GIUSEPPE,
        &cc(),
        &Command::OutboundVerification {
            result: Check::Passed,
        },
        t,
    )
    .unwrap();
    let msgs = inbox(&s);
    assert!(
        msgs.iter()
            .filter(|m| m.part == 1)
            .all(|m| m.channel != Channel::Post)
    );
    assert!(
        msgs.iter()
            .filter(|m| m.part == 2)
            .all(|m| m.channel == Channel::Post)
    );
    let cred = subject(&s, GIUSEPPE).credential.unwrap();
    assert_eq!(
        (cred.level, cred.origin),
        (Level::Online, Origin::ContactCentre)
    );
    assert_eq!(
        access(&s, GIUSEPPE, &assemble(&msgs), Level::Online, t),
        VerifyOutcome::MustChange
    );
}

#[test]
fn inps_7_only_a_contact_centre_operator() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        GIUSEPPE,
        Role::Citizen,
        full_contacts("giuseppe@example.it"),
        now,
    );
    for actor in [
        Actor::Subject,
        branch(),
        Actor::System,
        Actor::Representative(Representation::Curator),
    ] {
        let cmd = Command::ContactCentreRequest {
            archives: Check::Passed,
        };
        let e = refused(&s, GIUSEPPE, || run(&s, GIUSEPPE, &actor, &cmd, now));
        assert!(
            matches!(e, Error::Refused(Refusal::Actor { .. })),
            "{actor:?}: {e:?}"
        );
    }
    let no_address = with_check("BNCGNN70A41H501");
    let _ = enrol_inps(
        &s,
        &no_address,
        Role::Citizen,
        Contacts {
            address: None,
            ..full_contacts("g@example.it")
        },
        now,
    );
    let cmd = Command::ContactCentreRequest {
        archives: Check::Passed,
    };
    let e = refused(&s, &no_address, || run(&s, &no_address, &cc(), &cmd, now));
    assert!(
        matches!(e, Error::Input(InputError::MissingContact { .. })),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------
// INPS-8: pre-assigned letter, activation with health-card data.

fn pre_assigned(s: &Service, code: &str, contacts: Contacts, now: DateTime<Utc>) -> String {
    let _ = enrol_inps(s, code, Role::Citizen, contacts, now);
    let done = run(s, code, &Actor::System, &Command::PreAssign, now).unwrap();
    assert!(done.advice.contains(&Advice::AwaitingActivation));
    let msgs = inbox(s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (msgs[0].part, msgs[0].of, msgs[0].channel),
        (1, 2, Channel::Post)
    );
    assert_eq!(msgs[0].text.len(), 8);
    msgs[0].text.clone()
}

#[test]
fn inps_8_letter_carries_the_first_half_and_no_usable_pin() {
    let s = service();
    let now = t0();
    let half = pre_assigned(&s, MARIO, full_contacts("mario@example.it"), now);
    let cred = subject(&s, MARIO).credential.unwrap();
    assert_eq!(
        (cred.stage, cred.level, cred.origin),
        (
            Stage::AwaitingActivation,
            Level::Online,
            Origin::PreAssigned
        )
    );
    // Nothing usable yet: the half, or anything else, gets NoPin.
    assert_eq!(
        access(&s, MARIO, &half, Level::Online, now),
        VerifyOutcome::NoPin
    );
    assert_eq!(
        access(&s, MARIO, "AB3CD4EF5GH6JK7L", Level::Online, now),
        VerifyOutcome::NoPin
    );
    let out = change(&s, MARIO, &half, Some(CHOSEN), now);
    assert!(
        matches!(out, ChangeOutcome::NotAuthenticated(VerifyOutcome::NoPin)),
        "{out:?}"
    );
    let e = refused(&s, MARIO, || {
        run(
            &s,
            MARIO,
            &branch(),
            &Command::Convert {
                document: Check::Passed,
            },
            now,
        )
    });
    assert!(matches!(e, Error::Refused(Refusal::Stage { .. })), "{e:?}");
    assert_eq!(s.status(&tax(MARIO), now).unwrap().attempts.failures, 0);
}

#[test]
fn inps_8_activation_sends_second_half_and_the_whole_must_be_changed() {
    let s = service();
    let now = t0();
    let contacts = full_contacts("mario@example.it");
    let half = pre_assigned(&s, MARIO, contacts.clone(), now);
    let t = now + Duration::days(10);
    let done = s
        .activate(&tax(MARIO), &half, Check::Passed, t)
        .unwrap()
        .unwrap();
    assert_eq!(done.deliveries.len(), 1);
    let msgs = inbox(&s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(
        (msgs[0].part, msgs[0].of, msgs[0].channel),
        (2, 2, Channel::Sms)
    );
    assert_eq!(msgs[0].recipient, contacts.mobile.unwrap().as_str());
    assert_eq!(msgs[0].text.len(), 8);
    let cred = subject(&s, MARIO).credential.unwrap();
    assert_eq!(
        (cred.format, cred.stage, cred.level, cred.origin),
        (
            PinFormat::InpsIssued16,
            Stage::MustChange,
            Level::Online,
            Origin::PreAssigned
        )
    );
    let pin16 = format!("{half}{}", msgs[0].text);
    assert_eq!(
        access(&s, MARIO, &pin16, Level::Online, t),
        VerifyOutcome::MustChange
    );
    // The half alone is no longer anything: a wrong PIN.
    assert!(matches!(
        s.verify(&tax(MARIO), &half, Level::Online, t),
        Ok(VerifyOutcome::Rejected { .. })
    ));
    // Activating twice: there is nothing awaiting activation.
    let again = s.activate(&tax(MARIO), &half, Check::Passed, t).unwrap();
    assert!(matches!(again, Err(VerifyOutcome::NoPin)), "{again:?}");
    assert_changed(&change(&s, MARIO, &pin16, Some(CHOSEN), t));
    assert!(accepted_at(
        &access(&s, MARIO, CHOSEN, Level::Online, t),
        Level::Online
    ));
}

#[test]
fn inps_8_second_half_by_email_without_mobile() {
    let s = service();
    let now = t0();
    let half = pre_assigned(&s, MARIO, email_and_address("mario@example.it"), now);
    let _ = s
        .activate(&tax(MARIO), &half, Check::Passed, now)
        .unwrap()
        .unwrap();
    let msgs = inbox(&s);
    assert_eq!(
        (msgs[0].part, msgs[0].channel, msgs[0].recipient.as_str()),
        (2, Channel::Email, "mario@example.it")
    );
}

#[test]
fn inps_8_wrong_half_is_a_wrong_attempt_and_a_failed_health_card_is_refused() {
    let s = service();
    let now = t0();
    let half = pre_assigned(&s, MARIO, full_contacts("mario@example.it"), now);
    // Health card not confirmed: refused before any attempt, nothing changes.
    let e = refused(&s, MARIO, || {
        s.activate(&tax(MARIO), &half, Check::Failed, now)
    });
    assert!(
        matches!(e, Error::Refused(Refusal::CheckFailed(_))),
        "{e:?}"
    );
    // Malformed half: input error, nothing changes.
    let e = refused(&s, MARIO, || {
        s.activate(&tax(MARIO), "SHORT", Check::Passed, now)
    });
    assert!(matches!(e, Error::Input(_)), "{e:?}");
    assert_eq!(s.status(&tax(MARIO), now).unwrap().attempts.failures, 0);
    // Wrong half: a counted wrong attempt, no message.
    let wrong: String = half.chars().rev().collect();
    assert_ne!(wrong, half);
    let out = s.activate(&tax(MARIO), &wrong, Check::Passed, now).unwrap();
    assert!(
        matches!(
            out,
            Err(VerifyOutcome::Rejected {
                remaining_attempts: 9,
                final_try: false
            })
        ),
        "{out:?}"
    );
    assert!(inbox(&s).is_empty());
    assert_eq!(
        subject(&s, MARIO).credential.unwrap().stage,
        Stage::AwaitingActivation
    );
    // The right half still activates; the failure count starts again for the new PIN.
    let _ = s
        .activate(&tax(MARIO), &half, Check::Passed, now)
        .unwrap()
        .unwrap();
    assert_eq!(inbox(&s).len(), 1);
    assert_eq!(s.status(&tax(MARIO), now).unwrap().remaining_attempts, 10);
}

#[test]
fn inps_8_only_the_system_pre_assigns_and_only_with_an_address() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        now,
    );
    for actor in [Actor::Subject, branch(), cc()] {
        let e = refused(&s, MARIO, || {
            run(&s, MARIO, &actor, &Command::PreAssign, now)
        });
        assert!(
            matches!(e, Error::Refused(Refusal::Actor { .. })),
            "{actor:?}: {e:?}"
        );
    }
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        Contacts {
            address: None,
            ..full_contacts("l@example.it")
        },
        now,
    );
    let e = refused(&s, LAURA, || {
        run(&s, LAURA, &Actor::System, &Command::PreAssign, now)
    });
    assert!(
        matches!(e, Error::Input(InputError::MissingContact { .. })),
        "{e:?}"
    );
}

// ---------------------------------------------------------------------------------------
// INPS-9: conversion online → dispositivo, same PIN value.

#[test]
fn inps_9_conversion_keeps_the_pin_and_raises_the_level() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    let before = subject(&s, LAURA).credential.unwrap();
    assert_eq!(before.level, Level::Online);
    let t = now + Duration::days(3);
    let _ = run(
        &s,
        LAURA,
        &branch(),
        &Command::Convert {
            document: Check::Passed,
        },
        t,
    )
    .unwrap();
    assert!(
        inbox(&s).is_empty(),
        "nothing is sent: the value does not change"
    );
    let after = subject(&s, LAURA).credential.unwrap();
    assert_eq!(after.level, Level::Dispositivo);
    assert_eq!(after.hash.phc, before.hash.phc);
    assert_eq!(after.hash, before.hash);
    assert_eq!(after.serial, before.serial);
    assert_eq!(
        after.changed_at, before.changed_at,
        "conversion is not a change of PIN (INPS-11)"
    );
    // The same 8 now opens dispositivo services.
    assert!(accepted_at(
        &access(&s, LAURA, CHOSEN, Level::Dispositivo, t),
        Level::Dispositivo
    ));
    assert!(accepted_at(
        &access(&s, LAURA, CHOSEN, Level::Online, t),
        Level::Dispositivo
    ));
}

#[test]
fn inps_9_conversion_by_branch_or_back_office_and_of_an_issued_16() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let pin16 = assemble(&inbox(&s));
    let before = subject(&s, LAURA).credential.unwrap();
    let _ = run(
        &s,
        LAURA,
        &branch(),
        &Command::Convert {
            document: Check::Passed,
        },
        now,
    )
    .unwrap();
    let after = subject(&s, LAURA).credential.unwrap();
    assert_eq!(
        (after.level, after.stage, &after.hash, after.serial),
        (
            Level::Dispositivo,
            Stage::MustChange,
            &before.hash,
            before.serial
        )
    );
    // Changing the 16 keeps the level.
    assert_changed(&change(&s, LAURA, &pin16, Some(CHOSEN), now));
    assert!(accepted_at(
        &access(&s, LAURA, CHOSEN, Level::Dispositivo, now),
        Level::Dispositivo
    ));
    // The system (back office) may also convert.
    citizen_with_pin(&s, MARIO, now);
    let _ = run(
        &s,
        MARIO,
        &Actor::System,
        &Command::Convert {
            document: Check::Passed,
        },
        now,
    )
    .unwrap();
    assert_eq!(
        subject(&s, MARIO).credential.unwrap().level,
        Level::Dispositivo
    );
}

#[test]
fn inps_9_failed_check_or_already_dispositivo_or_no_pin_is_refused() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    let failed = Command::Convert {
        document: Check::Failed,
    };
    let e = refused(&s, LAURA, || run(&s, LAURA, &branch(), &failed, now));
    assert!(
        matches!(e, Error::Refused(Refusal::CheckFailed(_))),
        "{e:?}"
    );
    assert_eq!(
        access(&s, LAURA, CHOSEN, Level::Dispositivo, now),
        VerifyOutcome::InsufficientLevel {
            have: Level::Online,
            need: Level::Dispositivo
        }
    );
    // rule: INPS-9 — the person sends the request; whoever checks the document (a branch,
    // the back office) records the conversion: neither the person nor the contact centre.
    for actor in [
        cc(),
        Actor::Representative(Representation::Guardian),
        Actor::Subject,
    ] {
        let cmd = Command::Convert {
            document: Check::Passed,
        };
        let e = refused(&s, LAURA, || run(&s, LAURA, &actor, &cmd, now));
        assert!(
            matches!(e, Error::Refused(Refusal::Actor { .. })),
            "{actor:?}: {e:?}"
        );
    }
    let passed = Command::Convert {
        document: Check::Passed,
    };
    let _ = run(&s, LAURA, &branch(), &passed, now).unwrap();
    let e = refused(&s, LAURA, || run(&s, LAURA, &branch(), &passed, now));
    assert!(
        matches!(e, Error::Refused(Refusal::AlreadyDispositivo)),
        "{e:?}"
    );
    // A branch PIN is dispositivo from the start.
    let _ = enrol_inps(&s, MARIO, Role::Citizen, Contacts::default(), now);
    let _ = run(
        &s,
        MARIO,
        &branch(),
        &Command::BranchRequest {
            identity_document: Check::Passed,
            on_behalf: None,
        },
        now,
    )
    .unwrap();
    let _ = inbox(&s);
    let e = refused(&s, MARIO, || run(&s, MARIO, &branch(), &passed, now));
    assert!(
        matches!(e, Error::Refused(Refusal::AlreadyDispositivo)),
        "{e:?}"
    );
    // No PIN, nothing to convert.
    let _ = enrol_inps(
        &s,
        GIUSEPPE,
        Role::Citizen,
        full_contacts("g@example.it"),
        now,
    );
    let e = refused(&s, GIUSEPPE, || run(&s, GIUSEPPE, &branch(), &passed, now));
    assert!(matches!(e, Error::Refused(Refusal::NoPin)), "{e:?}");
}

// ---------------------------------------------------------------------------------------
// INPS-10: representatives; parents only for minors; never delegates.

/// Born 1 January 2015 in Rome: a minor at `t0()`.
fn minor() -> String {
    with_check("RSSLCU15A01H501")
}

/// Born 16 January 2008: 17 at `t0()` (15 January 2026), 18 the next day.
fn almost_adult() -> String {
    with_check("RSSLCU08A16H501")
}

#[test]
fn inps_10_tax_codes_of_the_test_are_what_they_say() {
    let today = t0().date_naive();
    assert!(tax(&minor()).is_minor(today));
    assert!(tax(&almost_adult()).is_minor(today));
    assert!(!tax(&almost_adult()).is_minor(today + Duration::days(1)));
    assert!(!tax(MARIO).is_minor(today));
}

#[test]
fn inps_15_representatives_ask_only_at_a_branch() {
    let s = service();
    let now = t0();
    for (code, r) in [
        (MARIO, Representation::Guardian),
        (LAURA, Representation::Curator),
        (GIUSEPPE, Representation::SupportAdministrator),
    ] {
        let rep = Actor::Representative(r);
        let enrol = Command::Enrol(pin_core::command::Enrolment {
            role: Role::Citizen,
            contacts: full_contacts("rep@example.it"),
            cns_holder: false,
            enrolled_on: None,
        });
        let _ = run(&s, code, &rep, &enrol, now).unwrap();
        // Registering data records no representation: only the branch does, with the
        // declaration.
        assert_eq!(subject(&s, code).represented_by, None);
        let proofs = vec![proof_email("rep@example.it"), proof_mobile("347 123 4567")];
        for cmd in [
            Command::WebRequest {
                address: Check::Passed,
            },
            Command::Reset { proofs },
            Command::ContactCentreRequest {
                archives: Check::Passed,
            },
            Command::Resend,
        ] {
            let e = refused(&s, code, || run(&s, code, &rep, &cmd, now));
            match &e {
                Error::Refused(Refusal::Actor { rule, .. }) => {
                    assert!(rule.starts_with("INPS-15"), "{cmd:?}: {rule}");
                }
                other => panic!("{r:?} {cmd:?}: {other:?}"),
            }
        }
        // At the branch, the role and the self-declaration are recorded, in the record and
        // in the audit event.
        let cmd = Command::BranchRequest {
            identity_document: Check::Passed,
            on_behalf: Some(r),
        };
        let _ = run(&s, code, &branch(), &cmd, now).unwrap();
        let subj = subject(&s, code);
        assert_eq!(subj.represented_by, Some(r));
        let d = subj.declaration.unwrap();
        assert_eq!(
            (d.role, d.received_by.as_str(), d.at),
            (r, "branch_operator:branch-1", now)
        );
        let log = s.store().audit_log(Some(&tax(code))).unwrap();
        let ev = log.iter().rfind(|e| e.action == "branch_request").unwrap();
        let role = format!("{r:?}").to_lowercase();
        assert!(
            ev.detail.contains(&format!("on_behalf={role}"))
                && ev.detail.contains("self_declaration=art46_dpr445_2000")
                && ev.detail.contains("received_by=branch_operator:branch-1"),
            "{}",
            ev.detail
        );
        assert_eq!(inbox(&s).len(), 1);
    }
}

#[test]
fn inps_10_representative_at_the_branch() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(&s, MARIO, Role::Citizen, Contacts::default(), now);
    let cmd = Command::BranchRequest {
        identity_document: Check::Passed,
        on_behalf: Some(Representation::SupportAdministrator),
    };
    let _ = run(&s, MARIO, &branch(), &cmd, now).unwrap();
    assert_eq!(
        subject(&s, MARIO).represented_by,
        Some(Representation::SupportAdministrator)
    );
    assert_eq!(inbox(&s).len(), 1);
}

#[test]
fn inps_10_parent_only_for_a_minor() {
    let s = service();
    let now = t0();
    let parent = Actor::Representative(Representation::Parent);
    let enrol = |contacts| {
        Command::Enrol(pin_core::command::Enrolment {
            role: Role::Citizen,
            contacts,
            cns_holder: false,
            enrolled_on: None,
        })
    };
    // A minor: the parent enrols, and asks at the branch (INPS-15).
    let child = minor();
    let _ = run(
        &s,
        &child,
        &parent,
        &enrol(full_contacts("parent@example.it")),
        now,
    )
    .unwrap();
    let at_branch = Command::BranchRequest {
        identity_document: Check::Passed,
        on_behalf: Some(Representation::Parent),
    };
    let _ = run(&s, &child, &branch(), &at_branch, now).unwrap();
    assert_eq!(inbox(&s).len(), 1);
    assert_eq!(
        subject(&s, &child).represented_by,
        Some(Representation::Parent)
    );

    // An adult: every parental request is refused, and nothing is created or changed.
    let e = refused(&s, MARIO, || {
        run(
            &s,
            MARIO,
            &parent,
            &enrol(full_contacts("p@example.it")),
            now,
        )
    });
    assert!(matches!(e, Error::Refused(Refusal::ParentOfAdult)), "{e:?}");
    assert!(loaded(&s, MARIO).is_none());
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        now,
    );
    let e = refused(&s, MARIO, || run(&s, MARIO, &branch(), &at_branch, now));
    assert!(matches!(e, Error::Refused(Refusal::ParentOfAdult)), "{e:?}");
}

#[test]
fn inps_10_parent_power_ends_at_majority() {
    let s = service();
    let now = t0();
    let parent = Actor::Representative(Representation::Parent);
    let code = almost_adult();
    let enrol = Command::Enrol(pin_core::command::Enrolment {
        role: Role::Citizen,
        contacts: full_contacts("parent@example.it"),
        cns_holder: false,
        enrolled_on: None,
    });
    let _ = run(&s, &code, &parent, &enrol, now).unwrap();
    // The 18th birthday: 16 January 2026.
    let birthday = at(2026, 1, 16, 0);
    let at_branch = Command::BranchRequest {
        identity_document: Check::Passed,
        on_behalf: Some(Representation::Parent),
    };
    let e = refused(&s, &code, || {
        run(&s, &code, &branch(), &at_branch, birthday)
    });
    assert!(matches!(e, Error::Refused(Refusal::ParentOfAdult)), "{e:?}");
    // The day before, the parent could.
    let _ = run(
        &s,
        &code,
        &branch(),
        &at_branch,
        birthday - Duration::seconds(1),
    )
    .unwrap();
    assert_eq!(inbox(&s).len(), 1);
}

#[test]
fn inps_10_delegates_are_refused_for_every_command() {
    let s = service();
    let now = t0();
    let delegate = Actor::Delegate("friend".into());
    // A subject with a PIN, for the commands that need proofs.
    citizen_with_pin(&s, LAURA, now);
    let proof = || {
        s.authenticate(&tax(LAURA), CHOSEN, Purpose::Change, now)
            .unwrap()
            .proof
            .expect("right PIN gives a proof")
    };
    let serial = subject(&s, LAURA).credential.unwrap().serial;
    let pin = format::parse_input(PinFormat::InpsIssued16, LEGACY).unwrap();
    let hash = s
        .hasher()
        .hash(&pin, &mut ChaCha20Rng::seed_from_u64(5))
        .unwrap();
    let commands = vec![
        Command::Enrol(pin_core::command::Enrolment {
            role: Role::Citizen,
            contacts: full_contacts("x@example.it"),
            cns_holder: false,
            enrolled_on: None,
        }),
        Command::Import(Imported {
            role: Role::Citizen,
            contacts: full_contacts("x@example.it"),
            hash,
            format: PinFormat::InpsIssued16,
            level: Level::Online,
            stage: Stage::Active,
            issued_at: now,
            changed_at: Some(now),
        }),
        Command::Identify {
            contacts: full_contacts("x@example.it"),
        },
        Command::Resend,
        Command::ChangeContacts {
            contacts: full_contacts("x@example.it"),
            authenticated: None,
        },
        Command::ChangeContacts {
            contacts: full_contacts("x@example.it"),
            authenticated: Some(proof()),
        },
        Command::BranchRequest {
            identity_document: Check::Passed,
            on_behalf: None,
        },
        Command::BranchRequest {
            identity_document: Check::Passed,
            on_behalf: Some(Representation::Guardian),
        },
        Command::WebRequest {
            address: Check::Passed,
        },
        Command::WebRequest {
            address: Check::Failed,
        },
        Command::ContactCentreRequest {
            archives: Check::Passed,
        },
        Command::OutboundVerification {
            result: Check::Passed,
        },
        Command::PreAssign,
        Command::Activate {
            authenticated: proof(),
            first_half: format::parse_input(PinFormat::InpsInUse8, CHOSEN).unwrap(),
            health_card: Check::Passed,
        },
        Command::Convert {
            document: Check::Passed,
        },
        Command::Reset {
            proofs: vec![
                ContactProof::Email(Email::parse("person@example.it").unwrap()),
                ContactProof::Mobile(Mobile::parse("347 123 4567").unwrap()),
            ],
        },
        Command::ChangePin {
            authenticated: proof(),
            new: pin_core::command::NewPin::Chosen(
                format::parse_chosen(PinFormat::InpsInUse8, CHOSEN_2).unwrap(),
            ),
        },
        Command::ChangePin {
            authenticated: proof(),
            new: pin_core::command::NewPin::Generated,
        },
        Command::Receipt {
            serial,
            part: 1,
            channel: Channel::Sms,
            state: pin_core::subject::DeliveryState::Confirmed,
        },
    ];
    for cmd in &commands {
        // On the subject on record, and on one not on record.
        for code in [LAURA, MARIO] {
            let e = refused(&s, code, || run(&s, code, &delegate, cmd, now));
            assert!(
                matches!(e, Error::Refused(Refusal::Delegate)),
                "{}: {e:?}",
                cmd.name()
            );
        }
    }
    assert!(loaded(&s, MARIO).is_none());
    assert!(accepted_at(
        &access(&s, LAURA, CHOSEN, Level::Online, now),
        Level::Online
    ));
}

// ---------------------------------------------------------------------------------------
// INPS-11: periodic change, 6 months for citizens, 3 for intermediaries, from the last change.

fn rotation_walk(role: Role, months: u32) {
    let s = service();
    let now = t0();
    let _ = enrol_inps(&s, LAURA, role, full_contacts("laura@example.it"), now);
    let _ = web(&s, LAURA, Check::Passed, now);
    let pin16 = assemble(&inbox(&s));
    // Changed two days after issue: rotation counts from here, not from the issue.
    let changed = now + Duration::days(2);
    assert_changed(&change(&s, LAURA, &pin16, Some(CHOSEN), changed));
    let due = changed
        .checked_add_months(chrono::Months::new(months))
        .unwrap();
    assert_eq!(
        s.status(&tax(LAURA), changed).unwrap().rotation_due,
        Some(due)
    );
    // Uses in between do not move the due date.
    for t in [
        changed + hours(1),
        changed + Duration::days(40),
        due - Duration::seconds(1),
    ] {
        let o = access(&s, LAURA, CHOSEN, Level::Online, t);
        assert!(
            matches!(o, VerifyOutcome::Accepted { rotation_due: Some(d), .. } if d == due),
            "{t}: {o:?}"
        );
    }
    // At the due instant: right PIN, but expired for rotation. Not a failure.
    for t in [due, due + Duration::days(30)] {
        assert_eq!(
            access(&s, LAURA, CHOSEN, Level::Online, t),
            VerifyOutcome::Expired {
                reason: ExpiryReason::Rotation
            }
        );
    }
    assert_eq!(s.status(&tax(LAURA), due).unwrap().attempts.failures, 0);
    // The change is allowed with the expired PIN, not to the same value …
    let t = due + Duration::days(31);
    let e = refused_after_auth(&s, LAURA, || {
        s.change_pin(&tax(LAURA), CHOSEN, Some(CHOSEN), t)
    });
    assert!(matches!(e, Error::Refused(Refusal::SamePin)), "{e:?}");
    // … and sets a new due date from this change.
    assert_changed(&change(&s, LAURA, CHOSEN, Some(CHOSEN_2), t));
    let new_due = t.checked_add_months(chrono::Months::new(months)).unwrap();
    assert_eq!(
        s.status(&tax(LAURA), t).unwrap().rotation_due,
        Some(new_due)
    );
    let o = access(&s, LAURA, CHOSEN_2, Level::Online, t);
    assert!(
        matches!(o, VerifyOutcome::Accepted { rotation_due: Some(d), .. } if d == new_due),
        "{o:?}"
    );
    assert!(matches!(
        access(&s, LAURA, CHOSEN, Level::Online, t),
        VerifyOutcome::Rejected { .. }
    ));
    assert_eq!(
        access(&s, LAURA, CHOSEN_2, Level::Online, new_due),
        VerifyOutcome::Expired {
            reason: ExpiryReason::Rotation
        }
    );
}

#[test]
fn inps_11_citizen_rotation_every_6_months() {
    rotation_walk(Role::Citizen, 6);
}

#[test]
fn inps_11_intermediary_rotation_every_3_months() {
    rotation_walk(Role::Intermediary, 3);
}

#[test]
fn inps_11_rotation_is_in_calendar_months() {
    // POL-2: changed on 30 November → due on 28 February (3 months, intermediary).
    let s = service();
    let now = at(2026, 11, 1, 9);
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Intermediary,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let pin16 = assemble(&inbox(&s));
    let changed = at(2026, 11, 30, 9);
    assert_changed(&change(&s, LAURA, &pin16, Some(CHOSEN), changed));
    let due = at(2027, 2, 28, 9);
    assert!(is_accepted(&access(
        &s,
        LAURA,
        CHOSEN,
        Level::Online,
        due - Duration::seconds(1)
    )));
    assert_eq!(
        access(&s, LAURA, CHOSEN, Level::Online, due),
        VerifyOutcome::Expired {
            reason: ExpiryReason::Rotation
        }
    );
}

#[test]
fn inps_11_a_must_change_pin_has_no_rotation_date() {
    let s = service();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        t0(),
    );
    let _ = web(&s, LAURA, Check::Passed, t0());
    let _ = inbox(&s);
    assert_eq!(s.status(&tax(LAURA), t0()).unwrap().rotation_due, None);
}

// ---------------------------------------------------------------------------------------
// INPS-12: blocked after 10 consecutive wrong attempts.

#[test]
fn inps_12_ten_consecutive_wrong_attempts_block_the_pin() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    for i in 1..=9u32 {
        let t = now + Duration::minutes(i.into());
        let o = access(&s, LAURA, WRONG_8, Level::Online, t);
        assert_eq!(
            o,
            VerifyOutcome::Rejected {
                remaining_attempts: 10 - i,
                final_try: i == 9
            },
            "attempt {i}"
        );
        let st = s.status(&tax(LAURA), t).unwrap();
        assert_eq!((st.remaining_attempts, st.locked), (10 - i, false));
    }
    // The tenth wrong attempt blocks.
    let t = now + hours(1);
    assert_eq!(
        access(&s, LAURA, WRONG_8, Level::Online, t),
        VerifyOutcome::Locked
    );
    let st = s.status(&tax(LAURA), t).unwrap();
    assert!(st.locked && st.attempts.blocked);
    assert_eq!(st.remaining_attempts, 0);
    // For good: the right PIN, days later, is locked too; so is a change.
    let later = t + Duration::days(10);
    assert_eq!(
        access(&s, LAURA, CHOSEN, Level::Online, later),
        VerifyOutcome::Locked
    );
    let out = change(&s, LAURA, CHOSEN, Some(CHOSEN_2), later);
    assert!(
        matches!(out, ChangeOutcome::NotAuthenticated(VerifyOutcome::Locked)),
        "{out:?}"
    );
    assert!(s.status(&tax(LAURA), later).unwrap().locked);
}

#[test]
fn inps_12_a_success_resets_the_count() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    for round in 0..3 {
        for i in 1..=9u32 {
            let o = access(&s, LAURA, WRONG_8, Level::Online, now);
            assert_eq!(
                o,
                VerifyOutcome::Rejected {
                    remaining_attempts: 10 - i,
                    final_try: i == 9
                },
                "round {round}"
            );
        }
        assert!(
            is_accepted(&access(&s, LAURA, CHOSEN, Level::Online, now)),
            "round {round}"
        );
        assert_eq!(s.status(&tax(LAURA), now).unwrap().remaining_attempts, 10);
    }
    // 27 wrong attempts in all, never 10 in a row: not blocked.
    assert!(!s.status(&tax(LAURA), now).unwrap().locked);
}

#[test]
fn inps_12_wrong_attempts_on_the_issued_16_count_too() {
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let pin16 = assemble(&inbox(&s));
    let wrong = format!("{}{}", &pin16[8..], &pin16[..8]);
    for i in 1..=9u32 {
        let o = change(&s, LAURA, &wrong, Some(CHOSEN), now);
        assert!(
            matches!(o, ChangeOutcome::NotAuthenticated(VerifyOutcome::Rejected { remaining_attempts: r, .. }) if r == 10 - i),
            "{o:?}"
        );
    }
    assert_eq!(
        access(&s, LAURA, &wrong, Level::Online, now),
        VerifyOutcome::Locked
    );
    let out = change(&s, LAURA, &pin16, Some(CHOSEN), now);
    assert!(
        matches!(out, ChangeOutcome::NotAuthenticated(VerifyOutcome::Locked)),
        "{out:?}"
    );
}

// ---------------------------------------------------------------------------------------
// INPS-13: fewer than two reset contacts → advice.

fn enrol_advice(code: &str, contacts: Contacts) -> Vec<Advice> {
    let s = service();
    enrol_inps(&s, code, Role::Citizen, contacts, t0()).advice
}

#[test]
fn inps_13_enrolment_with_fewer_than_two_reset_contacts_is_advised() {
    let few = Advice::FewerThanTwoResetContacts;
    // None, one, or one plus an address (the address does not count).
    assert!(enrol_advice(MARIO, Contacts::default()).contains(&few));
    assert!(enrol_advice(MARIO, email_only("m@example.it")).contains(&few));
    assert!(enrol_advice(MARIO, email_and_address("m@example.it")).contains(&few));
    assert!(
        enrol_advice(
            MARIO,
            Contacts {
                pec: email("m@pec.example.it"),
                ..Contacts::default()
            }
        )
        .contains(&few)
    );
    // Any two of mobile, e-mail, PEC: no advice.
    for contacts in [
        Contacts {
            email: email("m@example.it"),
            mobile: mobile("347 123 4567"),
            ..Contacts::default()
        },
        Contacts {
            email: email("m@example.it"),
            pec: email("m@pec.example.it"),
            ..Contacts::default()
        },
        Contacts {
            mobile: mobile("347 123 4567"),
            pec: email("m@pec.example.it"),
            ..Contacts::default()
        },
        full_contacts("m@example.it"),
    ] {
        let advice = enrol_advice(MARIO, contacts.clone());
        assert!(!advice.contains(&few), "{contacts:?}: {advice:?}");
    }
}

#[test]
fn inps_13_web_request_with_fewer_than_two_reset_contacts_is_advised() {
    let s = service();
    let now = t0();
    let few = Advice::FewerThanTwoResetContacts;
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        email_and_address("laura@example.it"),
        now,
    );
    let done = web(&s, LAURA, Check::Passed, now);
    assert!(done.advice.contains(&few));
    assert_eq!(done.deliveries.len(), 2, "advice, not refusal");
    let _ = inbox(&s);
    let _ = enrol_inps(
        &s,
        MARIO,
        Role::Citizen,
        full_contacts("mario@example.it"),
        now,
    );
    let done = web(&s, MARIO, Check::Passed, now);
    assert!(!done.advice.contains(&few), "{:?}", done.advice);
    let _ = inbox(&s);
    // Also when the request waits for outbound verification.
    let _ = enrol_inps(
        &s,
        GIUSEPPE,
        Role::Citizen,
        email_and_address("g@example.it"),
        now,
    );
    let done = web(&s, GIUSEPPE, Check::Failed, now);
    assert!(done.advice.contains(&few));
}

// ---------------------------------------------------------------------------------------
// INPS-14: reset with the tax code and two registered contacts.

fn proof_email(s: &str) -> ContactProof {
    ContactProof::Email(Email::parse(s).unwrap())
}
fn proof_mobile(s: &str) -> ContactProof {
    ContactProof::Mobile(Mobile::parse(s).unwrap())
}
fn proof_pec(s: &str) -> ContactProof {
    ContactProof::Pec(Email::parse(s).unwrap())
}

fn reset(
    s: &Service,
    code: &str,
    proofs: Vec<ContactProof>,
    now: DateTime<Utc>,
) -> Result<Executed, Error> {
    run(s, code, &Actor::Subject, &Command::Reset { proofs }, now)
}

#[test]
fn inps_14_reset_issues_a_new_16_in_halves_to_the_proven_contacts() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    let old = subject(&s, LAURA).credential.unwrap();
    let t = now + Duration::days(7);
    // Case and spacing of the quoted contacts do not matter.
    let done = reset(
        &s,
        LAURA,
        vec![
            proof_email("Person@Example.IT"),
            proof_mobile("+39 347 1234567"),
        ],
        t,
    )
    .unwrap();
    assert_eq!(done.deliveries.len(), 2);
    let msgs = inbox(&s);
    let routes: Vec<_> = msgs
        .iter()
        .map(|m| (m.part, m.of, m.channel, m.recipient.as_str()))
        .collect();
    let mobile = Mobile::parse("347 123 4567").unwrap();
    assert_eq!(
        routes,
        vec![
            (1, 2, Channel::Email, "person@example.it"),
            (2, 2, Channel::Sms, mobile.as_str())
        ]
    );
    let cred = subject(&s, LAURA).credential.unwrap();
    assert_eq!(
        (cred.format, cred.stage, cred.level, cred.origin),
        (
            PinFormat::InpsIssued16,
            Stage::MustChange,
            Level::Online,
            Origin::Reset
        )
    );
    assert!(cred.serial > old.serial);
    let pin16 = assemble(&msgs);
    assert_eq!(pin16.len(), 16);
    // The old 8 is gone: a wrong PIN for the new 16.
    assert!(matches!(
        s.verify(&tax(LAURA), CHOSEN, Level::Online, t),
        Ok(VerifyOutcome::Rejected { .. })
    ));
    assert_eq!(
        access(&s, LAURA, &pin16, Level::Online, t),
        VerifyOutcome::MustChange
    );
    // Change to a new 8: the old 8 stays invalid.
    assert_changed(&change(&s, LAURA, &pin16, Some(CHOSEN_2), t));
    assert!(is_accepted(&access(&s, LAURA, CHOSEN_2, Level::Online, t)));
    assert!(matches!(
        access(&s, LAURA, CHOSEN, Level::Online, t),
        VerifyOutcome::Rejected { .. }
    ));
}

#[test]
fn inps_14_reset_with_pec_and_mobile() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    let _ = reset(
        &s,
        LAURA,
        vec![
            proof_mobile("347 123 4567"),
            proof_pec("pec.user@pec.example.it"),
        ],
        now,
    )
    .unwrap();
    let msgs = inbox(&s);
    let routes: Vec<_> = msgs.iter().map(|m| (m.part, m.channel)).collect();
    assert_eq!(routes, vec![(1, Channel::Sms), (2, Channel::Pec)]);
    assert_eq!(
        access(&s, LAURA, &assemble(&msgs), Level::Online, now),
        VerifyOutcome::MustChange
    );
}

#[test]
fn inps_14_reset_unblocks_a_blocked_pin() {
    // POL-5: the blocked PIN never becomes valid again; the reset issues a new one.
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    for _ in 0..10 {
        let _ = access(&s, LAURA, WRONG_8, Level::Online, now);
    }
    assert!(s.status(&tax(LAURA), now).unwrap().locked);
    let t = now + hours(1);
    let _ = reset(
        &s,
        LAURA,
        vec![
            proof_email("person@example.it"),
            proof_pec("pec.user@pec.example.it"),
        ],
        t,
    )
    .unwrap();
    let st = s.status(&tax(LAURA), t).unwrap();
    assert!(!st.locked);
    assert_eq!(st.remaining_attempts, 10);
    let pin16 = assemble(&inbox(&s));
    assert_eq!(
        access(&s, LAURA, &pin16, Level::Online, t),
        VerifyOutcome::MustChange
    );
    assert_changed(&change(&s, LAURA, &pin16, Some(CHOSEN_2), t));
    assert!(is_accepted(&access(&s, LAURA, CHOSEN_2, Level::Online, t)));
    // The blocked PIN is not valid again.
    assert!(matches!(
        access(&s, LAURA, CHOSEN, Level::Online, t),
        VerifyOutcome::Rejected { .. }
    ));
}

/// What a refusal must look like.
type ErrorCheck = fn(&Error) -> bool;

#[test]
fn inps_14_one_matching_contact_or_the_same_kind_twice_is_refused() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    let cases: Vec<(Vec<ContactProof>, ErrorCheck)> = vec![
        // One right, one wrong.
        (
            vec![
                proof_email("person@example.it"),
                proof_mobile("347 000 0000"),
            ],
            |e| matches!(e, Error::Refused(Refusal::ContactsDoNotMatch)),
        ),
        // One only.
        (vec![proof_email("person@example.it")], |e| {
            matches!(e, Error::Refused(Refusal::ContactsDoNotMatch))
        }),
        // None.
        (vec![], |e| {
            matches!(e, Error::Refused(Refusal::ContactsDoNotMatch))
        }),
        // The e-mail quoted as PEC does not match (kinds are kept apart).
        (
            vec![proof_pec("person@example.it"), proof_mobile("347 123 4567")],
            |e| matches!(e, Error::Refused(Refusal::ContactsDoNotMatch)),
        ),
        // The same kind twice, even both right.
        (
            vec![
                proof_email("person@example.it"),
                proof_email("person@example.it"),
            ],
            |e| matches!(e, Error::Input(InputError::DuplicateContactKind)),
        ),
        (
            vec![
                proof_mobile("347 123 4567"),
                proof_mobile("347 123 4567"),
                proof_email("person@example.it"),
            ],
            |e| matches!(e, Error::Input(InputError::DuplicateContactKind)),
        ),
    ];
    for (proofs, ok) in cases {
        let e = refused(&s, LAURA, || reset(&s, LAURA, proofs.clone(), now));
        assert!(ok(&e), "{proofs:?}: {e:?}");
    }
    // The PIN in use is untouched.
    assert!(is_accepted(&access(&s, LAURA, CHOSEN, Level::Online, now)));
}

#[test]
fn inps_14_only_contacts_registered_at_first_registration_count() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    let registered = subject(&s, LAURA).registered;
    // The person changes e-mail and mobile later.
    let new_contacts = Contacts {
        email: email("new.laura@example.it"),
        mobile: mobile("333 999 8888"),
        pec: None,
        address: address("Via Milano 2, 20100 Milano MI"),
    };
    let _ = s
        .change_contacts_with_pin(&tax(LAURA), CHOSEN, new_contacts.clone(), now)
        .unwrap()
        .unwrap();
    let subj = subject(&s, LAURA);
    assert_eq!(subj.contacts, new_contacts);
    assert_eq!(
        subj.registered, registered,
        "the snapshot of the first registration stays"
    );
    // The new contacts do not count.
    let e = refused(&s, LAURA, || {
        reset(
            &s,
            LAURA,
            vec![
                proof_email("new.laura@example.it"),
                proof_mobile("333 999 8888"),
            ],
            now,
        )
    });
    assert!(
        matches!(e, Error::Refused(Refusal::ContactsDoNotMatch)),
        "{e:?}"
    );
    // The registered ones do, and the halves go to them.
    let _ = reset(
        &s,
        LAURA,
        vec![
            proof_email("person@example.it"),
            proof_mobile("347 123 4567"),
        ],
        now,
    )
    .unwrap();
    let msgs = inbox(&s);
    assert_eq!(msgs[0].recipient, "person@example.it");
    assert_eq!(msgs[1].recipient, registered.mobile.unwrap().as_str());
    // The contacts on record are still the new ones.
    assert_eq!(subject(&s, LAURA).contacts, new_contacts);
}

#[test]
fn inps_14_reset_with_fewer_than_two_registered_contacts_is_impossible() {
    // Why INPS-13 advises: with one registered contact, no reset can succeed.
    let s = service();
    let now = t0();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        email_and_address("laura@example.it"),
        now,
    );
    let _ = web(&s, LAURA, Check::Passed, now);
    let _ = inbox(&s);
    let e = refused(&s, LAURA, || {
        reset(
            &s,
            LAURA,
            vec![
                proof_email("laura@example.it"),
                proof_mobile("347 123 4567"),
            ],
            now,
        )
    });
    assert!(
        matches!(e, Error::Refused(Refusal::ContactsDoNotMatch)),
        "{e:?}"
    );
}

#[test]
fn inps_14_inps_15_only_the_person_resets() {
    let s = service();
    let now = t0();
    citizen_with_pin(&s, LAURA, now);
    let proofs = vec![
        proof_email("person@example.it"),
        proof_mobile("347 123 4567"),
    ];
    for actor in [branch(), cc(), Actor::System] {
        let cmd = Command::Reset {
            proofs: proofs.clone(),
        };
        let e = refused(&s, LAURA, || run(&s, LAURA, &actor, &cmd, now));
        assert!(
            matches!(e, Error::Refused(Refusal::Actor { .. })),
            "{actor:?}: {e:?}"
        );
    }
    // INPS-15: a representative asks at a branch, not by reset.
    let guardian = Actor::Representative(Representation::Guardian);
    let cmd = Command::Reset {
        proofs: proofs.clone(),
    };
    let e = refused(&s, LAURA, || run(&s, LAURA, &guardian, &cmd, now));
    assert!(matches!(e, Error::Refused(Refusal::Actor { .. })), "{e:?}");
    let _ = run(&s, LAURA, &Actor::Subject, &Command::Reset { proofs }, now).unwrap();
    assert_eq!(inbox(&s).len(), 2);
}

// ---------------------------------------------------------------------------------------
// Commands on subjects that do not exist or already exist change nothing.

#[test]
fn unknown_and_existing_subjects() {
    let s = service();
    let now = t0();
    let e = refused(&s, LAURA, || {
        run(
            &s,
            LAURA,
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            now,
        )
    });
    // Defect 9: an unauthenticated web request does not tell whether LAURA is on record.
    assert!(
        matches!(e, Error::Refused(Refusal::RequestNotPossible)),
        "{e:?}"
    );
    assert_eq!(
        access(&s, LAURA, CHOSEN, Level::Online, now),
        VerifyOutcome::NoPin
    );
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        now,
    );
    let enrol = Command::Enrol(pin_core::command::Enrolment {
        role: Role::Citizen,
        contacts: email_only("other@example.it"),
        cns_holder: false,
        enrolled_on: None,
    });
    let e = refused(&s, LAURA, || run(&s, LAURA, &Actor::Subject, &enrol, now));
    assert!(matches!(e, Error::SubjectExists(_)), "{e:?}");
}
