//! Verify overhead on PostgreSQL: `PinService::verify` over a `PostgresStore` (the attempt
//! reserved and settled durably, the audit event appended to the chain) ÷ a bare Argon2id
//! verify with the same parameters and pepper, measured in the same run, on a throw-away
//! server on 127.0.0.1 (default settings: `fsync` and `synchronous_commit` on). The SQLite
//! figure of the same ratio comes from `benches/verify.rs`.
//!
//! Run: `cargo bench --bench postgres`. In CI: `cargo bench --bench postgres -- --test`
//! verifies once each. Without PostgreSQL server binaries it says so and does nothing.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    missing_docs
)]

use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use pin_core::command::{Command, Enrolment};
use pin_core::contact::{Contacts, Email};
use pin_core::format::{self, PinFormat};
use pin_core::hash::{Hasher, Keyring};
use pin_core::notify::MemoryOutbox;
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::PinService;
use pin_core::subject::Role;
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Level, Policy};
use pin_postgres::PostgresStore;
use pin_postgres::cluster::{self, Cluster};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const PEPPER: [u8; 32] = [0x42; 32];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn keys() -> Keyring {
    Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap())
}

/// The median of `samples` runs of `f`.
fn median(samples: usize, mut f: impl FnMut()) -> Duration {
    let mut times: Vec<Duration> = (0..samples)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    let test_mode = std::env::args().any(|a| a == "--test");
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    if cluster::find_binaries().is_none() {
        println!(
            "postgres bench: SKIPPED — no PostgreSQL server binaries (apt-get install postgresql, or set PIN_POSTGRES_BIN)"
        );
        return;
    }
    let c = Cluster::start().unwrap();
    let url = c.create_database("bench").unwrap();
    let policy = Policy::default();
    let live = policy.hash_live();
    let h = Hasher::new(live, policy.hash_floor(), policy.hash_cap(), keys()).unwrap();
    let pin = format::parse_input(PinFormat::NoipaDigits5, "48213").unwrap();
    let hash = h.hash(&pin, &mut ChaCha20Rng::seed_from_u64(2)).unwrap();
    let svc = PinService::new(
        PostgresStore::open(&url).unwrap(),
        MemoryOutbox::new(),
        policy,
        keys(),
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap();
    let tax = TaxCode::parse("RSSMRA85T10A562S").unwrap();
    let contacts = Contacts {
        email: Some(Email::parse("e0@example.it").unwrap()),
        ..Contacts::default()
    };
    let cmd = Command::Enrol(Enrolment {
        role: Role::Employee,
        contacts,
        cns_holder: false,
        enrolled_on: chrono::NaiveDate::from_ymd_opt(2020, 1, 1),
    });
    let _ = svc
        .execute(&tax, &Actor::Rid("bench".into()), &cmd, now())
        .unwrap();
    let good = svc.notifier().take().pop().unwrap();
    let good = good.delivery.secret.expose_secret().to_owned();
    // First use once, so that later verifies are the steady state.
    let _ = svc.verify(&tax, &good, Level::Online, now()).unwrap();

    let samples = if test_mode { 1 } else { 41 };
    let mut bare = Duration::ZERO;
    let mut service = Duration::ZERO;
    // Interleaved rounds, so that a slow moment of the machine hits both alike.
    let rounds = if test_mode { 1 } else { 3 };
    for _ in 0..rounds {
        bare += median(samples, || {
            let _ = h.verify(&pin, &hash).unwrap();
        });
        service += median(samples, || {
            let _ = svc.verify(&tax, &good, Level::Online, now()).unwrap();
        });
    }
    if test_mode {
        println!("postgres bench: verify ran once on a throw-away server (test mode)");
        return;
    }
    let ratio = service.as_secs_f64() / bare.as_secs_f64();
    println!(
        "verify overhead on PostgreSQL: service {:.2} ms / bare Argon2id {:.2} ms = {ratio:.3} (goal <= 1.05)",
        service.as_secs_f64() * 1e3 / f64::from(rounds),
        bare.as_secs_f64() * 1e3 / f64::from(rounds),
    );
}
