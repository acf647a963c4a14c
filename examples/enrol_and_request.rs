//! # NoiPA enrolment and an INPS web request, end to end, on the SQLite store
//!
//! What it shows: `PinService` over `pin_sqlite::SqliteStore` (a throw-away database) and
//! an in-memory notifier that plays every mailbox, phone and letter box. It prints what
//! each channel received — the PIN, or the half of it that channel carries — then verifies
//! as the people would:
//! - NoiPA (NOIPA-2, NOIPA-4): an employee enrolled by the RID with an e-mail address and a
//!   mobile number gets a 5-digit PIN by SMS only.
//! - INPS (INPS-6, INPS-3): a citizen asks on the web; once the residence address is
//!   validated the first 8 characters go by e-mail and the last 8 by post; the 16
//!   characters must then be changed to 8.
//!
//! Run it: `cargo run --example enrol_and_request` (CI runs it).
#![allow(clippy::print_stdout, reason = "an example talks to whoever runs it")]

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use pin_core::command::{Check, Command, Enrolment};
use pin_core::contact::{Address, Contacts, Email, Mobile};
use pin_core::hash::Keyring;
use pin_core::notify::MemoryOutbox;
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::{ChangeOutcome, PinService};
use pin_core::store::Store;
use pin_core::subject::Role;
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Level, Policy};
use pin_sqlite::SqliteStore;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

type Service = PinService<SqliteStore, MemoryOutbox, ChaCha20Rng>;

/// Prints every message the notifier carried since the last call, and returns the secrets
/// in order (this example plays the people reading them).
fn receive(service: &Service) -> Vec<String> {
    let mut secrets = Vec::new();
    for m in service.notifier().take() {
        let d = &m.delivery;
        let to = if d.recipient.is_empty() {
            "(in person)"
        } else {
            d.recipient.as_str()
        };
        println!(
            "   {:?} to {to}: part {} of {}: {}",
            d.channel,
            d.part,
            d.of,
            d.secret.expose_secret()
        );
        secrets.push(d.secret.expose_secret().to_owned());
    }
    secrets
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("pin.db"))?;
    // The pepper belongs in a secrets manager, and the generator is seeded from the OS; a
    // fixed value keeps this example short.
    let keys = Keyring::new(Pepper::new(KeyId(1), &[0x42; 32])?);
    let service = PinService::new(
        store,
        MemoryOutbox::new(),
        Policy::default(),
        keys,
        ChaCha20Rng::seed_from_u64(2026),
    )?;
    let now: DateTime<Utc> = Utc
        .with_ymd_and_hms(2026, 3, 2, 9, 30, 0)
        .single()
        .ok_or("a valid time")?;

    println!("NoiPA: the RID enrols Mario Rossi, with e-mail and mobile (NOIPA-2, NOIPA-4)");
    let mario = TaxCode::parse("RSSMRA85T10A562S")?;
    let enrolment = Enrolment {
        role: Role::Employee,
        contacts: Contacts {
            email: Some(Email::parse("mario.rossi@example.it")?),
            mobile: Some(Mobile::parse("3471234567")?),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: NaiveDate::from_ymd_opt(2020, 9, 1),
    };
    let done = service.execute(
        &mario,
        &Actor::Rid("R042".into()),
        &Command::Enrol(enrolment),
        now,
    )?;
    for d in &done.deliveries {
        println!(
            "   delivery: {:?} part {} of {}: {:?}",
            d.channel, d.part, d.of, d.state
        );
    }
    let received = receive(&service);
    let pin = received.first().ok_or("the SMS arrived")?;
    let outcome = service.verify(&mario, pin, Level::Online, now)?;
    println!("   Mario verifies the PIN from the SMS: {}", outcome.name());

    println!();
    println!("INPS: Anna Bianchi asks for a PIN on the web (INPS-6)");
    let anna = TaxCode::parse("BNCGNN70A41H501V")?;
    let enrolment = Enrolment {
        role: Role::Citizen,
        contacts: Contacts {
            email: Some(Email::parse("anna.bianchi@example.it")?),
            address: Some(Address::parse("Via Roma 1, 00100 Roma RM")?),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: None,
    };
    let _enrolled = service.execute(&anna, &Actor::Subject, &Command::Enrol(enrolment), now)?;
    let done = service.execute(
        &anna,
        &Actor::Subject,
        &Command::WebRequest {
            address: Check::Passed,
        },
        now,
    )?;
    for d in &done.deliveries {
        println!(
            "   delivery: {:?} part {} of {}: {:?}",
            d.channel, d.part, d.of, d.state
        );
    }
    let halves = receive(&service);
    let pin16 = halves.concat();
    let outcome = service.verify(&anna, &pin16, Level::Online, now)?;
    println!(
        "   Anna joins the two halves and verifies: {}",
        outcome.name()
    );
    match service.change_pin(&anna, &pin16, Some("K7QM2ZXA"), now)? {
        ChangeOutcome::Changed { .. } => println!("   Anna changes it to 8 characters (INPS-3)"),
        ChangeOutcome::NotAuthenticated(o) => println!("   change refused: {}", o.name()),
    }
    let outcome = service.verify(&anna, "K7QM2ZXA", Level::Online, now)?;
    println!("   Anna verifies the new PIN: {}", outcome.name());

    let events = service.store().audit_log(None)?.len();
    println!();
    println!("{events} audit events in the SQLite database; no PIN was stored in clear.");
    Ok(())
}
