//! BOTH-2: after a scripted lifecycle, neither the database file nor its WAL holds a PIN in
//! clear, half a split PIN, or the pepper.

use pin_core::VerifyOutcome;
use pin_core::actor::Actor;
use pin_core::command::{Check, Command, Enrolment};
use pin_core::contact::{Address, Contacts, Mobile};
use pin_core::service::ChangeOutcome;
use pin_core::subject::{Level, Role};
use pin_sqlite::SqliteStore;

use crate::common::{PEPPER, email, enrol_noipa, service, t0, take_pin, tax, wrong};

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

// rule: BOTH-2
#[test]
fn no_pin_and_no_pepper_in_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets.db");
    let svc = service(SqliteStore::open(&path).unwrap(), 7);
    let rid = Actor::Rid("rid-1".into());
    let mut whole: Vec<String> = Vec::new();
    let mut halves: Vec<String> = Vec::new();
    let at = |m: i64| t0() + chrono::Duration::minutes(m);

    // NoiPA (rule: NOIPA-2, NOIPA-6): enrolment, use, identification, re-send, a wrong try.
    let noipa = tax(0);
    let pin = enrol_noipa(&svc, &noipa, "mario.rossi@example.it");
    assert!(matches!(
        svc.verify(&noipa, &pin, Level::Online, at(1)).unwrap(),
        VerifyOutcome::Accepted { .. }
    ));
    whole.push(pin);
    let contacts = Contacts {
        email: Some(email("mario.rossi@example.it")),
        ..Contacts::default()
    };
    let _ = svc
        .execute(&noipa, &rid, &Command::Identify { contacts }, at(2))
        .unwrap();
    whole.push(take_pin(&svc));
    let _ = svc.execute(&noipa, &rid, &Command::Resend, at(3)).unwrap();
    let pin = take_pin(&svc);
    let _ = svc
        .verify(&noipa, &wrong(&pin), Level::Online, at(4))
        .unwrap();
    whole.push(pin);

    // INPS (rule: INPS-3, INPS-6): web request with split delivery, change, re-send.
    let inps = tax(1);
    let contacts = Contacts {
        email: Some(email("anna.bianchi@example.it")),
        mobile: Some(Mobile::parse("+39 333 123 4567").unwrap()),
        pec: None,
        address: Some(Address::parse("Via Roma 1, 00184 Roma").unwrap()),
    };
    let enrol = Command::Enrol(Enrolment {
        role: Role::Citizen,
        contacts,
        cns_holder: false,
        enrolled_on: None,
    });
    let _ = svc.execute(&inps, &Actor::Subject, &enrol, at(5)).unwrap();
    let _ = svc
        .execute(
            &inps,
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            at(6),
        )
        .unwrap();
    let first16 = take_pin(&svc);
    halves.push(first16[..8].to_owned());
    halves.push(first16[8..].to_owned());
    whole.push(first16);
    let _ = svc
        .execute(&inps, &Actor::System, &Command::Resend, at(7))
        .unwrap();
    let pin16 = take_pin(&svc);
    halves.push(pin16[..8].to_owned());
    halves.push(pin16[8..].to_owned());
    let ChangeOutcome::Changed { revealed } = svc.change_pin(&inps, &pin16, None, at(8)).unwrap()
    else {
        panic!("change refused")
    };
    whole.push(pin16);
    let pin8 = revealed.unwrap().expose_secret().to_owned();
    assert!(matches!(
        svc.verify(&inps, &pin8, Level::Online, at(9)).unwrap(),
        VerifyOutcome::Accepted { .. }
    ));
    let ChangeOutcome::Changed { .. } = svc
        .change_pin(&inps, &pin8, Some("K7M3Q9TX"), at(10))
        .unwrap()
    else {
        panic!("change refused")
    };
    whole.push(pin8);
    whole.push("K7M3Q9TX".to_owned());

    // Scan while the store is open (the WAL holds the recent pages), then after closing.
    let scan = |when: &str| {
        let mut files = 0;
        let mut control = false;
        for suffix in ["", "-wal", "-shm"] {
            let p = dir.path().join(format!("secrets.db{suffix}"));
            let Ok(bytes) = std::fs::read(&p) else {
                continue;
            };
            files += 1;
            // Positive control: the scan sees stored text (the e-mail address is stored).
            control |= contains(&bytes, b"mario.rossi@example.it");
            for s in whole.iter().chain(&halves) {
                assert!(
                    !contains(&bytes, s.as_bytes()),
                    "{when}: a PIN in {}",
                    p.display()
                );
            }
            assert!(
                !contains(&bytes, &PEPPER),
                "{when}: the pepper in {}",
                p.display()
            );
            assert!(
                !contains(&bytes, &PEPPER[..16]),
                "{when}: pepper bytes in {}",
                p.display()
            );
        }
        assert!(
            control,
            "{when}: the scan must find the stored e-mail address"
        );
        files
    };
    assert!(scan("open") >= 2, "the database and its WAL were scanned");
    drop(svc);
    assert!(scan("closed") >= 1);
}
