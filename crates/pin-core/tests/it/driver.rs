//! The driver's own duties: rehash on key rotation, equal answers for unknown subjects,
//! delivery failures, compare-and-swap under contention.

use crate::harness::*;
use pin_core::command::{Check, Command, Delivery};
use pin_core::hash::{HashParams, Keyring};
use pin_core::memory::MemoryStore;
use pin_core::notify::{DeliveryError, MemoryOutbox, Notifier, Receipt};
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::PinService;
use pin_core::store::Store;
use pin_core::subject::{DeliveryState, Role};
use pin_core::{Actor, Error, Level, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

// rule: BOTH-2 — peppers rotate: a hash made under an earlier key still verifies, and the
// successful verify rehashes it under the current key and live parameters.
#[test]
fn key_rotation_rehashes_on_success() {
    let store = MemoryStore::new();
    let old = cheap_policy().build().unwrap();
    let s1 = PinService::new(
        &store,
        MemoryOutbox::new(),
        old,
        Keyring::new(Pepper::new(KeyId(1), &[1u8; 32]).unwrap()),
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    enrol_employee_on(&s1, MARIO);
    let pin = s1
        .notifier()
        .take()
        .pop()
        .unwrap()
        .delivery
        .secret
        .expose_secret()
        .to_owned();
    assert_eq!(
        store
            .load(&tax(MARIO))
            .unwrap()
            .unwrap()
            .subject
            .credential
            .unwrap()
            .hash
            .key_id,
        KeyId(1)
    );

    // New key 2 and stronger live parameters; key 1 kept for verification only.
    let stronger = HashParams {
        m_kib: 128,
        t_cost: 2,
        p_cost: 1,
    };
    let policy = cheap_policy().hash_live(stronger).build().unwrap();
    let keys = Keyring::new(Pepper::new(KeyId(2), &[2u8; 32]).unwrap())
        .with_previous(Pepper::new(KeyId(1), &[1u8; 32]).unwrap());
    let s2 = PinService::new(
        &store,
        MemoryOutbox::new(),
        policy,
        keys,
        ChaCha20Rng::seed_from_u64(2),
    )
    .unwrap();
    assert!(is_accepted(
        &s2.verify(&tax(MARIO), &pin, Level::Online, t0()).unwrap()
    ));
    let hash = store
        .load(&tax(MARIO))
        .unwrap()
        .unwrap()
        .subject
        .credential
        .unwrap()
        .hash;
    assert_eq!(hash.key_id, KeyId(2), "rehashed under the current key");
    assert!(
        hash.phc.contains("m=128,t=2"),
        "rehashed with the live parameters: {}",
        hash.phc
    );
    assert!(is_accepted(
        &s2.verify(&tax(MARIO), &pin, Level::Online, t0()).unwrap()
    ));
    // Without key 1 the old hash could not have been verified: a keyring lacking the key
    // reports an error rather than a wrong PIN.
}

fn enrol_employee_on<N: Notifier>(s: &PinService<&MemoryStore, N, ChaCha20Rng>, code: &str) {
    let _ = s
        .execute(
            &tax(code),
            &Actor::Rid("rid-1".into()),
            &Command::Enrol(pin_core::command::Enrolment {
                role: Role::Employee,
                contacts: email_only("mario@example.it"),
                cns_holder: false,
                enrolled_on: Some(date(2020, 1, 1)),
            }),
            t0(),
        )
        .unwrap();
}

#[test]
fn unknown_subject_and_subject_without_pin_answer_alike() {
    let s = service();
    // Enrolled before April 2014: no PIN until identification (NOIPA-2).
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        date(2010, 1, 1),
        t0(),
    )
    .unwrap();
    assert_eq!(verify(&s, MARIO, "48213", t0()), VerifyOutcome::NoPin);
    assert_eq!(verify(&s, GIUSEPPE, "48213", t0()), VerifyOutcome::NoPin);
    // Input that is no PIN of any kind is refused before any lookup: the same input error
    // for the unknown subject and for the one without a PIN.
    let unknown = s.verify(&tax(GIUSEPPE), "not a pin", Level::Online, t0());
    let known = s.verify(&tax(MARIO), "not a pin", Level::Online, t0());
    assert!(matches!(unknown, Err(Error::Input(_))), "{unknown:?}");
    assert_eq!(format!("{unknown:?}"), format!("{known:?}"));
}

struct Down;
impl Notifier for Down {
    fn deliver(&self, _: &Delivery) -> Result<Receipt, DeliveryError> {
        Err(DeliveryError::Unavailable("relay down".into()))
    }
}

// rule: POL-3 — a message that could not be handed over stays pending; nothing is kept to
// send again; recovery is a fresh issue.
#[test]
fn unavailable_channel_leaves_parts_pending() {
    let s = PinService::new(
        MemoryStore::new(),
        Down,
        cheap_policy().build().unwrap(),
        Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap()),
        ChaCha20Rng::seed_from_u64(3),
    )
    .unwrap();
    let done = s
        .execute(
            &tax(MARIO),
            &Actor::Rid("rid-1".into()),
            &Command::Enrol(pin_core::command::Enrolment {
                role: Role::Employee,
                contacts: email_only("mario@example.it"),
                cns_holder: false,
                enrolled_on: Some(date(2020, 1, 1)),
            }),
            t0(),
        )
        .unwrap();
    assert_eq!(done.deliveries[0].state, DeliveryState::Pending);
    assert!(
        done.deliveries[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("relay down"))
    );
    let cred = done.subject.credential.unwrap();
    assert_eq!(cred.parts[0].state, DeliveryState::Pending);
    let again = s
        .execute(
            &tax(MARIO),
            &Actor::Subject,
            &Command::Resend,
            t0() + hours(1),
        )
        .unwrap();
    let next = again.subject.credential.unwrap();
    assert!(next.serial > cred.serial, "a re-send is a fresh issue");
    assert_ne!(next.hash, cred.hash);
}

#[test]
fn concurrent_commands_all_land_through_compare_and_swap() {
    let s = service();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        t0(),
    );
    let _ = s
        .execute(
            &tax(LAURA),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            t0(),
        )
        .unwrap();
    let serial = subject(&s, LAURA).credential.unwrap().serial;
    let _ = inbox(&s);
    // Four threads change contacts (as the branch) while receipts arrive.
    std::thread::scope(|scope| {
        for i in 0..4 {
            let s = &s;
            scope.spawn(move || {
                for j in 0..10 {
                    let mut c = full_contacts(&format!("laura{i}{j}@example.it"));
                    c.pec = None;
                    let _ = s
                        .execute(
                            &tax(LAURA),
                            &Actor::BranchOperator("b-1".into()),
                            &Command::ChangeContacts {
                                contacts: c,
                                authenticated: None,
                            },
                            t0(),
                        )
                        .unwrap();
                }
            });
        }
        scope.spawn(|| {
            let _ = s
                .execute(
                    &tax(LAURA),
                    &Actor::System,
                    &Command::Receipt {
                        serial,
                        part: 2,
                        channel: pin_core::subject::Channel::Post,
                        state: DeliveryState::Confirmed,
                    },
                    t0(),
                )
                .unwrap();
        });
    });
    let audit = s.store().audit_log(Some(&tax(LAURA))).unwrap();
    assert_eq!(
        audit
            .iter()
            .filter(|e| e.action == "change_contacts")
            .count(),
        40,
        "no lost update"
    );
    let part2 = subject(&s, LAURA)
        .credential
        .unwrap()
        .parts
        .into_iter()
        .find(|p| p.index == 2)
        .unwrap();
    assert_eq!(
        part2.state,
        DeliveryState::Confirmed,
        "the receipt survived the concurrent saves"
    );
}

// rule: POL-2 — NoiPA PINs do not expire, not even when never used; the validity of unused
// PINs is a policy value (INPS: 30 days digital, 90 by post; NoiPA: none unless set).
#[test]
fn unused_noipa_pin_does_not_expire_unless_policy_says_so() {
    let s = service();
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        date(2020, 1, 1),
        t0(),
    )
    .unwrap();
    let pin = inbox(&s).pop().unwrap().text;
    assert!(is_accepted(&verify(
        &s,
        MARIO,
        &pin,
        t0() + chrono::Duration::days(400)
    )));

    let s = service_with(
        cheap_policy()
            .noipa_unused_expiry(Some(chrono::Duration::days(30)))
            .build()
            .unwrap(),
        9,
    );
    let _ = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        date(2020, 1, 1),
        t0(),
    )
    .unwrap();
    let pin = inbox(&s).pop().unwrap().text;
    assert_eq!(
        verify(&s, MARIO, &pin, t0() + chrono::Duration::days(30)),
        VerifyOutcome::Expired {
            reason: pin_core::verify::ExpiryReason::UnusedInitial
        }
    );
}

// An INPS PIN never used expires after the policy's validity for its slowest channel.
#[test]
fn unused_inps_pin_expires_after_its_channel_validity() {
    let s = service();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        t0(),
    );
    let _ = s
        .execute(
            &tax(LAURA),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            t0(),
        )
        .unwrap();
    let pin = assemble(&inbox(&s));
    // Part 2 went by post: 90 days.
    assert_eq!(
        verify(&s, LAURA, &pin, t0() + chrono::Duration::days(89)),
        VerifyOutcome::MustChange
    );
    let s2 = service();
    let _ = enrol_inps(
        &s2,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        t0(),
    );
    let _ = s2
        .execute(
            &tax(LAURA),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            t0(),
        )
        .unwrap();
    let pin = assemble(&inbox(&s2));
    assert_eq!(
        verify(&s2, LAURA, &pin, t0() + chrono::Duration::days(90)),
        VerifyOutcome::Expired {
            reason: pin_core::verify::ExpiryReason::UnusedInitial
        }
    );
}

// rule: INPS-3, BOTH-2 — an issued PIN never used in time answers the same for a right and a
// wrong input, counts nothing, and its audit says the input was not compared: the answer is
// no oracle for the PIN (issue 11, defect 8).
#[test]
fn expired_unused_pin_answers_the_same_for_any_input() {
    let s = service();
    let _ = enrol_inps(
        &s,
        LAURA,
        Role::Citizen,
        full_contacts("laura@example.it"),
        t0(),
    );
    let _ = s
        .execute(
            &tax(LAURA),
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            t0(),
        )
        .unwrap();
    let pin = assemble(&inbox(&s));
    let late = t0() + chrono::Duration::days(91);
    let expired = VerifyOutcome::Expired {
        reason: pin_core::verify::ExpiryReason::UnusedInitial,
    };
    let wrong: String = pin
        .chars()
        .map(|c| if c == 'A' { 'B' } else { 'A' })
        .collect();
    assert_eq!(verify(&s, LAURA, &pin, late), expired);
    assert_eq!(verify(&s, LAURA, &wrong, late), expired);
    assert_eq!(verify(&s, LAURA, "K7QM2ZXA", late), expired);
    let st = s.status(&tax(LAURA), late).unwrap();
    assert_eq!(st.attempts.failures, 0, "nothing was compared or counted");
    let outcomes: Vec<String> = s
        .store()
        .audit_log(Some(&tax(LAURA)))
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "verify")
        .map(|e| e.outcome)
        .collect();
    assert_eq!(
        outcomes,
        vec!["expired_unused"; 3],
        "the same audit for any input"
    );
}
