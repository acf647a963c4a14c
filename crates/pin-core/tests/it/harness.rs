//! A service over the in-memory store and outbox, with cheap Argon2 and an explicit clock.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use pin_core::command::{Command, Enrolment};
use pin_core::contact::{Address, Contacts, Email, Mobile};
use pin_core::hash::{HashParams, Keyring};
use pin_core::memory::MemoryStore;
use pin_core::notify::{MemoryOutbox, OutboxMessage};
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::{Executed, PinService};
use pin_core::subject::{Channel, Role, Subject};
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Error, Level, Policy, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub(crate) type Service = PinService<MemoryStore, MemoryOutbox, ChaCha20Rng>;

/// Valid tax codes: an adult man, an adult man, an adult woman.
pub(crate) const MARIO: &str = "RSSMRA85T10A562S";
pub(crate) const GIUSEPPE: &str = "VRDGPP80A01H501U";
pub(crate) const LAURA: &str = "BNCLRA90M41F205Z";

pub(crate) const PEPPER: [u8; 32] = [0x5a; 32];

pub(crate) fn tax(s: &str) -> TaxCode {
    TaxCode::parse(s).unwrap()
}

/// 2026-01-15 09:00 UTC.
pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0).single().unwrap()
}

pub(crate) fn hours(h: i64) -> Duration {
    Duration::hours(h)
}

pub(crate) fn cheap_policy() -> pin_core::policy::PolicyBuilder {
    let p = HashParams::INSECURE_FAST_FOR_TESTS;
    Policy::builder().hash_live(p).hash_floor(p)
}

pub(crate) fn service_with(policy: Policy, seed: u64) -> Service {
    let keys = Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap());
    PinService::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        policy,
        keys,
        ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap()
}

pub(crate) fn service() -> Service {
    service_with(cheap_policy().build().unwrap(), 7)
}

pub(crate) fn email(s: &str) -> Option<Email> {
    Some(Email::parse(s).unwrap())
}
pub(crate) fn mobile(s: &str) -> Option<Mobile> {
    Some(Mobile::parse(s).unwrap())
}
pub(crate) fn address(s: &str) -> Option<Address> {
    Some(Address::parse(s).unwrap())
}

/// E-mail only.
pub(crate) fn email_only(e: &str) -> Contacts {
    Contacts {
        email: email(e),
        ..Contacts::default()
    }
}

/// Everything: e-mail, mobile, PEC, address.
pub(crate) fn full_contacts(e: &str) -> Contacts {
    Contacts {
        email: email(e),
        mobile: mobile("347 123 4567"),
        pec: email("pec.user@pec.example.it"),
        address: address("Via Roma 1, 00100 Roma RM"),
    }
}

/// A message as the person received it (test side: reading the secret is the point).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) serial: u64,
    pub(crate) part: u8,
    pub(crate) of: u8,
    pub(crate) channel: Channel,
    pub(crate) recipient: String,
    pub(crate) text: String,
}

pub(crate) fn inbox(s: &Service) -> Vec<Received> {
    s.notifier()
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

/// The whole PIN from the messages of one issue: part 1 then part 2 (the first copy of
/// each part).
pub(crate) fn assemble(msgs: &[Received]) -> String {
    let mut out = String::new();
    for part in 1..=2u8 {
        if let Some(m) = msgs.iter().find(|m| m.part == part) {
            out.push_str(&m.text);
        }
    }
    out
}

/// Enrols a NoiPA employee enrolled on `enrolled_on`.
pub(crate) fn enrol_employee(
    s: &Service,
    code: &str,
    contacts: Contacts,
    enrolled_on: NaiveDate,
    now: DateTime<Utc>,
) -> Result<Executed, Error> {
    s.execute(
        &tax(code),
        &Actor::Rid("rid-1".into()),
        &Command::Enrol(Enrolment {
            role: Role::Employee,
            contacts,
            cns_holder: false,
            enrolled_on: Some(enrolled_on),
        }),
        now,
    )
}

/// Enrols an INPS subject as the person (web registration).
pub(crate) fn enrol_inps(
    s: &Service,
    code: &str,
    role: Role,
    contacts: Contacts,
    now: DateTime<Utc>,
) -> Executed {
    s.execute(
        &tax(code),
        &Actor::Subject,
        &Command::Enrol(Enrolment {
            role,
            contacts,
            cns_holder: false,
            enrolled_on: None,
        }),
        now,
    )
    .unwrap()
}

pub(crate) fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

pub(crate) fn verify(s: &Service, code: &str, pin: &str, now: DateTime<Utc>) -> VerifyOutcome {
    s.verify(&tax(code), pin, Level::Online, now).unwrap()
}

pub(crate) fn subject(s: &Service, code: &str) -> Subject {
    // The stored record: the status is a view without the hash and with masked contacts.
    pin_core::store::Store::load(s.store(), &tax(code))
        .unwrap()
        .unwrap()
        .subject
}

pub(crate) fn is_accepted(o: &VerifyOutcome) -> bool {
    matches!(o, VerifyOutcome::Accepted { .. })
}

/// `n` distinct valid tax codes.
pub(crate) fn valid_codes(n: u64) -> Vec<String> {
    (0..n)
        .map(|i| {
            pin_core::conformance::support::synthetic_tax_code(i)
                .as_str()
                .to_owned()
        })
        .collect()
}
