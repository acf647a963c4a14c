//! Helpers shared by the tests: a fast policy, a service over a store, valid tax codes.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use pin_core::Policy;
use pin_core::actor::Actor;
use pin_core::command::{Command, Enrolment};
use pin_core::contact::{Contacts, Email};
use pin_core::hash::{HashParams, Keyring};
use pin_core::notify::MemoryOutbox;
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::PinService;
use pin_core::subject::Role;
use pin_core::tax_code::TaxCode;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub(crate) use pin_core::conformance::TAX_CODES;

/// The pepper of every test service; the secrets test looks for these bytes in the files.
pub(crate) const PEPPER: [u8; 32] = *b"pin-sqlite test pepper: 32 bytes";

pub(crate) type Service<S> = PinService<S, MemoryOutbox, ChaCha20Rng>;

pub(crate) fn tax(i: usize) -> TaxCode {
    TaxCode::parse(TAX_CODES[i]).unwrap()
}

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0).single().unwrap()
}

/// Cheap Argon2, generous re-send limits (the crash child re-sends often).
pub(crate) fn policy() -> Policy {
    let fast = HashParams::INSECURE_FAST_FOR_TESTS;
    Policy::builder()
        .hash_live(fast)
        .hash_floor(fast)
        .resend_limit(1_000)
        .resend_window(Duration::hours(1))
        .build()
        .unwrap()
}

pub(crate) fn service<S: pin_core::store::Store>(store: S, seed: u64) -> Service<S> {
    let keys = Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap());
    PinService::new(
        store,
        MemoryOutbox::new(),
        policy(),
        keys,
        ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap()
}

pub(crate) fn email(s: &str) -> Email {
    Email::parse(s).unwrap()
}

/// Enrols a NoiPA employee (a PIN is issued at once by e-mail, NOIPA-2) and returns the PIN.
pub(crate) fn enrol_noipa<S: pin_core::store::Store>(
    svc: &Service<S>,
    t: &TaxCode,
    mail: &str,
) -> String {
    let contacts = Contacts {
        email: Some(email(mail)),
        ..Contacts::default()
    };
    let cmd = Command::Enrol(Enrolment {
        role: Role::Employee,
        contacts,
        cns_holder: false,
        enrolled_on: NaiveDate::from_ymd_opt(2020, 3, 2),
    });
    let _ = svc
        .execute(t, &Actor::Rid("rid-1".into()), &cmd, t0())
        .unwrap();
    take_pin(svc)
}

/// The PIN in the outbox: its parts joined in order.
pub(crate) fn take_pin<S: pin_core::store::Store>(svc: &Service<S>) -> String {
    let mut parts: Vec<_> = svc
        .notifier()
        .take()
        .into_iter()
        .map(|m| {
            (
                m.delivery.part,
                m.delivery.secret.expose_secret().to_owned(),
            )
        })
        .collect();
    assert!(!parts.is_empty(), "a PIN was delivered");
    parts.sort_by_key(|p| p.0);
    parts.into_iter().map(|p| p.1).collect()
}

/// A wrong PIN of the same shape as `pin`.
pub(crate) fn wrong(pin: &str) -> String {
    pin.chars()
        .map(|c| match c {
            '0'..='8' => char::from(c as u8 + 1),
            '9' => '0',
            'A'..='Y' => char::from(c as u8 + 1),
            'Z' => '2',
            other => other,
        })
        .map(|c| if c == 'I' || c == 'O' { 'J' } else { c })
        .collect()
}
