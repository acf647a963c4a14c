//! The main flows end to end, briefly; the rule-by-rule tests live beside this module.

use crate::harness::*;
use pin_core::command::{Check, Command};
use pin_core::service::ChangeOutcome;
use pin_core::subject::{Channel, Role};
use pin_core::{Actor, VerifyOutcome};

#[test]
fn noipa_enrol_issue_verify() {
    let s = service();
    let done = enrol_employee(
        &s,
        MARIO,
        email_only("mario@example.it"),
        date(2020, 5, 1),
        t0(),
    )
    .unwrap();
    assert_eq!(done.deliveries.len(), 1);
    let msgs = inbox(&s);
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].channel, Channel::Email);
    let pin = msgs[0].text.clone();
    assert_eq!(pin.len(), 5);
    assert!(is_accepted(&verify(&s, MARIO, &pin, t0())));
}

#[test]
fn inps_web_request_change_and_use() {
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
    let msgs = inbox(&s);
    assert_eq!(msgs.len(), 2);
    let pin16 = assemble(&msgs);
    assert_eq!(pin16.len(), 16);
    assert_eq!(verify(&s, LAURA, &pin16, t0()), VerifyOutcome::MustChange);
    let changed = s
        .change_pin(&tax(LAURA), &pin16, Some("K7QM2ZXA"), t0())
        .unwrap();
    assert!(matches!(changed, ChangeOutcome::Changed { revealed: None }));
    assert!(is_accepted(&verify(&s, LAURA, "K7QM2ZXA", t0())));
    // The 16-character PIN is gone; typing it now is a wrong PIN like any other.
    let old = s.verify(&tax(LAURA), &pin16, pin_core::Level::Online, t0());
    assert!(matches!(old, Ok(VerifyOutcome::Rejected { .. })), "{old:?}");
}
