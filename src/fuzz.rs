//! Checks shared by the fuzz targets in `fuzz/` and the corpus replay in `tests/`.
//!
//! Each function takes untrusted bytes and panics only when an invariant is broken — a
//! parser that panics on its own, or a state machine that lets two PINs verify. The fuzz
//! targets call them under libFuzzer; `tests/fuzz_corpus.rs` replays the committed corpora
//! with stable Rust, so CI checks every saved input without nightly.
#![allow(
    clippy::panic,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use pin_core::command::{Check, Command, Enrolment};
use pin_core::contact::{Address, ContactProof, Contacts, Email, Mobile};
use pin_core::format::{self, PinFormat};
use pin_core::hash::{HashParams, Hasher, Keyring, PinHash, Verified};
use pin_core::memory::MemoryStore;
use pin_core::notify::MemoryOutbox;
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::PinService;
use pin_core::subject::{Role, Subject};
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Level, Policy, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

fn text(data: &[u8]) -> Option<&str> {
    std::str::from_utf8(data).ok()
}

/// Tax codes: parsing never panics; an accepted code is 16 upper-case ASCII characters and
/// parses again to itself.
pub fn tax_code(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(t) = TaxCode::parse(s) {
        assert_eq!(t.as_str().len(), 16);
        assert!(
            t.as_str()
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        );
        assert_eq!(TaxCode::parse(t.as_str()).as_ref(), Ok(&t));
        let _ = t.birth_date(NaiveDate::from_ymd_opt(2026, 1, 1).unwrap());
    }
}

/// Contacts: e-mail, mobile and address parsers never panic and are idempotent.
pub fn contacts(data: &[u8]) {
    let Some(s) = text(data) else { return };
    if let Ok(e) = Email::parse(s) {
        assert_eq!(Email::parse(e.as_str()).as_ref(), Ok(&e));
        let _ = e.masked();
    }
    if let Ok(m) = Mobile::parse(s) {
        assert!(m.as_str().starts_with('+'));
        assert_eq!(Mobile::parse(m.as_str()).as_ref(), Ok(&m));
        let _ = m.masked();
    }
    if let Ok(a) = Address::parse(s) {
        assert_eq!(Address::parse(a.as_str()).as_ref(), Ok(&a));
    }
}

/// PIN input: never panics; an accepted PIN has the format's length and alphabet.
pub fn pin_input(data: &[u8]) {
    let Some(s) = text(data) else { return };
    for f in [
        PinFormat::NoipaDigits5,
        PinFormat::InpsIssued16,
        PinFormat::InpsInUse8,
    ] {
        if let Ok(p) = format::parse_input(f, s) {
            assert_eq!(p.len(), f.len());
            assert!(p.expose_secret().chars().all(|c| f.alphabet().contains(c)));
        }
        if let Ok(p) = format::parse_chosen(f, s) {
            assert!(!format::is_trivial(p.expose_secret()));
        }
    }
    let _ = format::parse_any_inps(s);
}

fn cheap_hasher() -> Hasher {
    let p = HashParams::INSECURE_FAST_FOR_TESTS;
    Hasher::new(
        p,
        p,
        p,
        Keyring::new(Pepper::new(KeyId(1), &[3u8; 32]).unwrap()),
    )
    .unwrap()
}

/// Stored hashes: a hostile PHC string never panics, never makes Argon2 run outside
/// floor..=cap, and never matches.
pub fn stored_hash(data: &[u8]) {
    let Some(s) = text(data) else { return };
    let hasher = cheap_hasher();
    let pin = format::parse_input(PinFormat::NoipaDigits5, "97531").unwrap();
    for key in [1, 2] {
        let stored = PinHash {
            key_id: KeyId(key),
            phc: s.to_owned(),
        };
        if let Ok(v) = hasher.verify(&pin, &stored) {
            assert_eq!(v, Verified::Mismatch, "a fuzzed hash must not match");
        }
    }
}

/// Stored records: deserializing a hostile record never panics, and what is accepted
/// round-trips.
pub fn stored_record(data: &[u8]) {
    if let Ok(s) = serde_json::from_slice::<Subject>(data) {
        let again = serde_json::to_vec(&s).unwrap();
        let back: Subject = serde_json::from_slice(&again).unwrap();
        assert_eq!(back, s);
    }
}

const LIMIT: u32 = 3;

struct Person {
    code: TaxCode,
    issued: Vec<String>,
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0).single().unwrap()
}

/// The state machine: each byte of `data` picks an operation on a NoiPA employee and an INPS
/// citizen; after every step, at most one PIN of each verifies (the last issued), failures
/// never exceed the limit, a locked PIN is never accepted, and no audit event holds a PIN.
pub fn machine(data: &[u8]) {
    let p = HashParams::INSECURE_FAST_FOR_TESTS;
    let policy = Policy::builder()
        .hash_live(p)
        .hash_floor(p)
        .noipa_lockout(LIMIT)
        .inps_lockout(LIMIT)
        .build()
        .unwrap();
    let keys = Keyring::new(Pepper::new(KeyId(1), &[3u8; 32]).unwrap());
    let seed = data
        .iter()
        .fold(0u64, |a, b| a.rotate_left(5) ^ u64::from(*b));
    let svc = PinService::new(
        MemoryStore::new(),
        MemoryOutbox::new(),
        policy,
        keys,
        ChaCha20Rng::seed_from_u64(seed),
    )
    .unwrap();
    let mut now = t0();
    let rid = Actor::Rid("rid-1".into());
    let contacts = Contacts {
        email: Some(Email::parse("p@example.it").unwrap()),
        mobile: Some(Mobile::parse("3471234567").unwrap()),
        pec: None,
        address: Some(Address::parse("Via Roma 1, 00100 Roma").unwrap()),
    };
    let mut noipa = Person {
        code: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
        issued: vec![],
    };
    let mut inps = Person {
        code: TaxCode::parse("BNCLRA90M41F205Z").unwrap(),
        issued: vec![],
    };
    let enrol = |role, enrolled_on| {
        Command::Enrol(Enrolment {
            role,
            contacts: contacts.clone(),
            cns_holder: false,
            enrolled_on,
        })
    };
    let _ = svc
        .execute(
            &noipa.code,
            &rid,
            &enrol(Role::Employee, NaiveDate::from_ymd_opt(2010, 1, 1)),
            now,
        )
        .unwrap();
    let _ = svc
        .execute(
            &inps.code,
            &Actor::Subject,
            &enrol(Role::Citizen, None),
            now,
        )
        .unwrap();

    let collect = |svc: &PinService<MemoryStore, MemoryOutbox, ChaCha20Rng>,
                   person: &mut Person| {
        let mut msgs = svc.notifier().take();
        msgs.sort_by_key(|m| m.delivery.part);
        let mut pin = String::new();
        let mut last = 0;
        for m in &msgs {
            if m.delivery.part != last {
                pin.push_str(m.delivery.secret.expose_secret());
                last = m.delivery.part;
            }
        }
        if !pin.is_empty() {
            person.issued.push(pin);
        }
    };
    let wrong = |pin: Option<&String>| -> String {
        match pin {
            Some(p) if p.len() == 5 => {
                if p == "13579" {
                    "97531".into()
                } else {
                    "13579".into()
                }
            }
            Some(p) if p.len() == 16 => "Z".repeat(16),
            _ => "ZZZZZZZZ".into(),
        }
    };

    let mut bytes = data.iter().copied();
    while let Some(b) = bytes.next() {
        let arg = bytes.next().unwrap_or(0);
        match b % 12 {
            0 => {
                let _ = svc.execute(
                    &noipa.code,
                    &rid,
                    &Command::Identify {
                        contacts: contacts.clone(),
                    },
                    now,
                );
                collect(&svc, &mut noipa);
            }
            1 => {
                let _ = svc.execute(&noipa.code, &Actor::Subject, &Command::Resend, now);
                collect(&svc, &mut noipa);
            }
            2 | 3 => {
                let pin = if b % 12 == 2 {
                    noipa.issued.last().cloned()
                } else {
                    Some(wrong(noipa.issued.last()))
                };
                if let Some(pin) = pin {
                    let _ = svc.verify(&noipa.code, &pin, Level::Online, now);
                }
            }
            4 => {
                let (person, code) = if arg % 2 == 0 {
                    (&noipa, &noipa.code)
                } else {
                    (&inps, &inps.code)
                };
                if let Some(old) = person
                    .issued
                    .get(usize::from(arg) % person.issued.len().max(1))
                {
                    let _ = svc.verify(code, old, Level::Online, now);
                }
            }
            5 => {
                let cmd = if arg % 2 == 0 {
                    Command::WebRequest {
                        address: if arg % 4 == 0 {
                            Check::Passed
                        } else {
                            Check::Failed
                        },
                    }
                } else {
                    Command::Reset {
                        proofs: vec![
                            ContactProof::Email(Email::parse("p@example.it").unwrap()),
                            ContactProof::Mobile(Mobile::parse("3471234567").unwrap()),
                        ],
                    }
                };
                let _ = svc.execute(&inps.code, &Actor::Subject, &cmd, now);
                collect(&svc, &mut inps);
            }
            6 => {
                let cmd = Command::OutboundVerification {
                    result: if arg % 2 == 0 {
                        Check::Passed
                    } else {
                        Check::Failed
                    },
                };
                let _ = svc.execute(&inps.code, &Actor::ContactCentre("cc-1".into()), &cmd, now);
                collect(&svc, &mut inps);
            }
            7 | 8 => {
                let pin = if b % 12 == 7 {
                    inps.issued.last().cloned()
                } else {
                    Some(wrong(inps.issued.last()))
                };
                if let Some(pin) = pin {
                    let _ = svc.verify(&inps.code, &pin, Level::Online, now);
                }
            }
            9 => {
                if let Some(cur) = inps.issued.last().cloned() {
                    let new = if arg % 2 == 0 { None } else { Some("K7QM2ZXA") };
                    if let Ok(pin_core::service::ChangeOutcome::Changed { revealed }) =
                        svc.change_pin(&inps.code, &cur, new, now)
                    {
                        let pin = revealed.map_or_else(
                            || "K7QM2ZXA".to_owned(),
                            |p| p.expose_secret().to_owned(),
                        );
                        inps.issued.push(pin);
                    }
                }
            }
            10 => now += Duration::hours(i64::from(arg) * 24),
            _ => {
                let cmd = Command::Convert {
                    document: Check::Passed,
                };
                let _ = svc.execute(&inps.code, &Actor::System, &cmd, now);
            }
        }
        check_invariants(&svc, &[&noipa, &inps], now);
    }
}

fn check_invariants(
    svc: &PinService<MemoryStore, MemoryOutbox, ChaCha20Rng>,
    people: &[&Person],
    now: DateTime<Utc>,
) {
    let audit =
        serde_json::to_string(&pin_core::store::Store::audit_log(svc.store(), None).unwrap())
            .unwrap();
    for person in people {
        let status = svc.status(&person.code, now).unwrap();
        assert!(
            status.attempts.failures <= LIMIT,
            "failures since last success exceed the limit"
        );
        // The status has no hash: the compare below needs the stored record.
        let record = pin_core::store::Store::load(svc.store(), &person.code)
            .unwrap()
            .unwrap()
            .subject;
        let Some(cred) = record.credential.as_ref() else {
            continue;
        };
        assert_eq!(
            status.attempts.serial, cred.serial,
            "the counter follows the credential"
        );
        // At most one PIN ever issued verifies, and it is the last one (BOTH-1).
        let matching: Vec<&String> = person
            .issued
            .iter()
            .filter(|p| {
                format::parse_input(cred.format, p).is_ok_and(|pin| {
                    matches!(
                        svc.hasher().verify(&pin, &cred.hash),
                        Ok(Verified::Match { .. })
                    )
                })
            })
            .collect();
        // The same value may be issued twice (a chosen PIN reused after a reset, two equal
        // 5-digit draws): count distinct values.
        let mut distinct = matching.clone();
        distinct.sort();
        distinct.dedup();
        assert!(distinct.len() <= 1, "two PINs verify");
        if let Some(m) = matching.first() {
            assert_eq!(
                Some(*m),
                person.issued.last(),
                "only the last PIN issued may verify"
            );
        }
        if status.locked
            && let Some(last) = person.issued.last()
            && let Ok(o) = svc.verify(&person.code, last, Level::Online, now)
        {
            assert!(
                !matches!(o, VerifyOutcome::Accepted { .. }),
                "a locked PIN was accepted"
            );
        }
        for pin in person.issued.iter().filter(|p| p.len() >= 8) {
            assert!(!audit.contains(pin.as_str()), "a PIN reached the audit log");
            for half in [pin.get(..8), pin.get(8..)]
                .into_iter()
                .flatten()
                .filter(|h| h.len() == 8)
            {
                assert!(!audit.contains(half), "half a PIN reached the audit log");
            }
        }
    }
}
