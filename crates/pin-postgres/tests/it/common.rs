//! Helpers shared by the tests: a cluster per test, a fast policy, a service over a store.

use std::sync::atomic::{AtomicUsize, Ordering};

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
use pin_postgres::cluster::{self, Cluster};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

pub(crate) use pin_core::conformance::TAX_CODES;

/// The pepper of every test service; the secrets test looks for these bytes in the tables.
pub(crate) const PEPPER: [u8; 32] = *b"pin-pgsql test pepper: 32 bytes!";

pub(crate) type Service<S> = PinService<S, MemoryOutbox, ChaCha20Rng>;

/// A fresh cluster, or `None` (after a loud message) when the server binaries are absent.
/// In CI (`CI` set) their absence is a failure: `.ci/run` installs them.
pub(crate) fn cluster(test: &str) -> Option<Cluster> {
    if cluster::find_binaries().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{test}: no PostgreSQL server binaries in CI; .ci/run should have installed them"
        );
        eprintln!(
            "\n*** SKIPPED {test}: no PostgreSQL server binaries found (apt-get install postgresql, \
             or set PIN_POSTGRES_BIN) ***\n"
        );
        return None;
    }
    Some(Cluster::start().unwrap())
}

/// A new empty database on `c`; its URL.
pub(crate) fn database(c: &Cluster) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    c.create_database(&format!("t{}_{n}", std::process::id()))
        .unwrap()
}

pub(crate) fn tax(i: usize) -> TaxCode {
    TaxCode::parse(TAX_CODES[i]).unwrap()
}

pub(crate) fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 15, 9, 0, 0).single().unwrap()
}

/// Cheap Argon2, generous re-send limits.
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

/// The i-th valid tax code of a synthetic population (distinct for i < 26^6).
pub(crate) fn synthetic_tax_code(i: u64) -> TaxCode {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let mut letters = [b'A'; 6];
    let mut n = i;
    for l in letters.iter_mut().rev() {
        *l = b'A' + u8::try_from(n % 26).unwrap();
        n /= 26;
    }
    let mut s = String::from_utf8(letters.to_vec()).unwrap();
    s.push_str("80A01H501");
    let mut sum = 0;
    for (pos, c) in s.chars().enumerate() {
        let v = if c.is_ascii_digit() {
            c as u32 - '0' as u32
        } else {
            c as u32 - 'A' as u32
        };
        sum += if pos % 2 == 0 {
            ODD[usize::try_from(v).unwrap()]
        } else {
            v
        };
    }
    s.push(char::from(b'A' + u8::try_from(sum % 26).unwrap()));
    TaxCode::parse(&s).unwrap()
}

/// A direct connection for tests that look at (or damage) the tables themselves.
pub(crate) fn sql(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}
