//! Benchmarks. Every figure that matters is a **ratio against a baseline measured in the
//! same run** (printed at the end and recorded in BENCHMARKS.md), never an absolute time:
//!
//! - verify overhead: `PinService::verify` on a SQLite file (attempt reserved and settled
//!   durably) ÷ a bare Argon2id verify with the same parameters and pepper (goal ≤ 1.05);
//! - scaling: verify throughput of different subjects on 2 threads ÷ 1 thread (goal ≥ 1.8);
//! - scale of the store: verify overhead with many subjects ÷ with 1,000 (goal ≤ 1.05), and
//!   bytes of database per subject (goal ≤ 512);
//! - pure decisions per second, no hashing (goal ≥ 1,000,000/s);
//! - the argon2 crate ÷ the C reference implementation (feature `bench-c-reference`).
//!
//! Run: `cargo bench --bench verify` (add `--features bench-c-reference` for the C
//! comparison, which needs libclang). `PIN_BENCH_SUBJECTS` sets the large store size
//! (default 1,000,000). In CI: `cargo bench --bench verify -- --test` runs each once.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::{Path, PathBuf};
use std::time::{Duration as StdDuration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use criterion::{Criterion, criterion_group};
use pin_core::command::{Check, Command, Enrolment};
use pin_core::contact::{Contacts, Email};
use pin_core::format::{self, PinFormat};
use pin_core::hash::{HashParams, Hasher, Keyring};
use pin_core::machine::{self, Context, Mint};
use pin_core::notify::MemoryOutbox;
use pin_core::secret::{KeyId, Pepper, Pin};
use pin_core::service::PinService;
use pin_core::store::Store;
use pin_core::subject::{Attempts, Channel, DeliveryState, Role, Subject};
use pin_core::tax_code::TaxCode;
use pin_core::verify::{self, Plan, Purpose};
use pin_core::{Actor, Level, Policy};
use pin_sqlite::SqliteStore;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

const PEPPER: [u8; 32] = [0x42; 32];

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 12, 0, 0).unwrap()
}

fn keys() -> Keyring {
    Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap())
}

fn hasher(policy: &Policy) -> Hasher {
    Hasher::new(
        policy.hash_live(),
        policy.hash_floor(),
        policy.hash_cap(),
        keys(),
    )
    .unwrap()
}

use pin_core::conformance::support::synthetic_tax_code;

type Service = PinService<SqliteStore, MemoryOutbox, ChaCha20Rng>;

fn service_on(path: &Path, policy: Policy) -> Service {
    PinService::new(
        SqliteStore::open(path).unwrap(),
        MemoryOutbox::new(),
        policy,
        keys(),
        ChaCha20Rng::seed_from_u64(1),
    )
    .unwrap()
}

/// Enrols NoiPA employee `i` (PIN issued at enrolment) and returns the PIN.
fn enrol(svc: &Service, i: u64) -> (TaxCode, String) {
    let tax = synthetic_tax_code(i);
    let contacts = Contacts {
        email: Some(Email::parse(&format!("e{i}@example.it")).unwrap()),
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
    let pin = svc
        .notifier()
        .take()
        .pop()
        .unwrap()
        .delivery
        .secret
        .expose_secret()
        .to_owned();
    // First use once, so that later verifies are the steady state.
    let _ = svc.verify(&tax, &pin, Level::Online, now()).unwrap();
    (tax, pin)
}

/// Whether criterion runs in test mode (`-- --test`: each benchmark once, no measurement).
fn test_mode() -> bool {
    std::env::args().any(|a| a == "--test" || a == "--list")
}

/// A paired measurement: `a` and `b` alternate, one call each per round, so that drift of
/// the machine (frequency, neighbours) hits both alike. Returns time(b) / time(a).
fn paired(rounds: u32, mut a: impl FnMut(), mut b: impl FnMut()) -> f64 {
    let (mut ta, mut tb) = (StdDuration::ZERO, StdDuration::ZERO);
    for _ in 0..rounds {
        let t = Instant::now();
        a();
        ta += t.elapsed();
        let t = Instant::now();
        b();
        tb += t.elapsed();
    }
    tb.as_secs_f64() / ta.as_secs_f64()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pin-bench-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn bench_verify_overhead(c: &mut Criterion) {
    let policy = Policy::default();
    let h = hasher(&policy);
    let pin = format::parse_input(PinFormat::NoipaDigits5, "48213").unwrap();
    let hash = h.hash(&pin, &mut ChaCha20Rng::seed_from_u64(2)).unwrap();
    let dir = temp_dir("overhead");
    let svc = service_on(&dir.join("pin.db"), policy.clone());
    let (tax, good) = enrol(&svc, 0);

    let mut g = c.benchmark_group("verify");
    g.sample_size(30);
    g.bench_function("argon2_bare", |b| b.iter(|| h.verify(&pin, &hash).unwrap()));
    g.bench_function("service_sqlite_file", |b| {
        b.iter(|| svc.verify(&tax, &good, Level::Online, now()).unwrap());
    });
    let live = policy.hash_live();
    let params = argon2::Params::new(live.m_kib, live.t_cost, live.p_cost, Some(32)).unwrap();
    let raw = argon2::Argon2::new_with_secret(
        &PEPPER,
        argon2::Algorithm::Argon2id,
        argon2::Version::V0x13,
        params,
    )
    .unwrap();
    g.bench_function("argon2_crate_raw", |b| {
        let mut out = [0u8; 32];
        b.iter(|| {
            raw.hash_password_into(b"48213", b"0123456789abcdef", &mut out)
                .unwrap()
        });
    });
    #[cfg(feature = "bench-c-reference")]
    {
        let c_hash = argon2_kdf::Hasher::new()
            .algorithm(argon2_kdf::Algorithm::Argon2id)
            .memory_cost_kib(live.m_kib)
            .iterations(live.t_cost)
            .threads(live.p_cost)
            .hash_length(32)
            .custom_salt(b"0123456789abcdef")
            .secret(argon2_kdf::Secret::using(&PEPPER))
            .hash(b"48213")
            .unwrap();
        g.bench_function("argon2_c_reference", |b| {
            b.iter(|| {
                assert!(c_hash.verify_with_secret(b"48213", argon2_kdf::Secret::using(&PEPPER)))
            });
        });
    }
    g.finish();
    if !test_mode() {
        let r = paired(
            300,
            || {
                let _ = std::hint::black_box(h.verify(&pin, &hash).unwrap());
            },
            || {
                let _ =
                    std::hint::black_box(svc.verify(&tax, &good, Level::Online, now()).unwrap());
            },
        );
        println!(
            "paired: verify overhead, service on SQLite file / bare Argon2id = {r:.3} (goal <= 1.05)"
        );
    }
    drop(svc);
    let _ = std::fs::remove_dir_all(&dir);
}

fn bench_scaling(c: &mut Criterion) {
    let policy = Policy::default();
    let dir = temp_dir("scaling");
    let svc = service_on(&dir.join("pin.db"), policy);
    let people: Vec<(TaxCode, String)> = (0..2).map(|i| enrol(&svc, i)).collect();
    let mut g = c.benchmark_group("scaling");
    g.sample_size(20);
    for threads in [1usize, 2] {
        g.bench_function(format!("threads_{threads}"), |b| {
            // One iteration = one verify on each of `threads` threads, of different subjects.
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for (tax, pin) in people.iter().take(threads) {
                        let svc = &svc;
                        s.spawn(move || {
                            for _ in 0..iters {
                                let _ = svc.verify(tax, pin, Level::Online, now()).unwrap();
                            }
                        });
                    }
                });
                start.elapsed()
            });
        });
    }
    // The physical limit: bare Argon2id on 1 and 2 threads, same parameters. Two hashes of
    // 19 MiB each compete for memory bandwidth and cache, so even they may not scale 2×.
    let h = hasher(&Policy::default());
    let pin = format::parse_input(PinFormat::NoipaDigits5, "48213").unwrap();
    let hash = h.hash(&pin, &mut ChaCha20Rng::seed_from_u64(5)).unwrap();
    for threads in [1usize, 2] {
        g.bench_function(format!("argon2_threads_{threads}"), |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                std::thread::scope(|s| {
                    for _ in 0..threads {
                        s.spawn(|| {
                            for _ in 0..iters {
                                let _ = std::hint::black_box(h.verify(&pin, &hash).unwrap());
                            }
                        });
                    }
                });
                start.elapsed()
            });
        });
    }
    g.finish();
    drop(svc);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Fills a store with `n` NoiPA subjects carrying one pre-computed hash (no Argon2 per
/// subject), through the store's bulk import.
fn populate(store: &SqliteStore, n: u64, template: &Subject) {
    const BATCH: u64 = 10_000;
    let mut i = 1;
    while i < n {
        let end = (i + BATCH).min(n);
        let batch: Vec<Subject> = (i..end)
            .map(|k| {
                let mut s = template.clone();
                s.tax_code = synthetic_tax_code(k);
                s.contacts.email = Some(Email::parse(&format!("e{k}@example.it")).unwrap());
                s.registered = s.contacts.clone();
                s
            })
            .collect();
        let batch: Vec<(Subject, Vec<pin_core::audit::AuditEvent>)> =
            batch.into_iter().map(|s| (s, Vec::new())).collect();
        store.create_many(&batch).unwrap();
        i = end;
    }
}

fn bench_store_scale(c: &mut Criterion) {
    let big: u64 = std::env::var("PIN_BENCH_SUBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let big = if test_mode() { 2_000 } else { big };
    let policy = Policy::default();
    let mut g = c.benchmark_group("store_scale");
    g.sample_size(30);
    // Both stores stay open, so that the paired measurement below can alternate them.
    let mut stores = Vec::new();
    for n in [1_000, big] {
        let dir = temp_dir(&format!("scale{n}"));
        let path = dir.join("pin.db");
        let svc = service_on(&path, policy.clone());
        let (tax, pin) = enrol(&svc, 0);
        let template = svc.store().load(&tax).unwrap().unwrap().subject;
        let t = Instant::now();
        populate(svc.store(), n, &template);
        let took = t.elapsed();
        let _ = svc.store().checkpoint();
        let bytes = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        println!(
            "store_scale: {n} subjects imported in {:.2} s ({:.0}/s); database {} bytes = {:.0} bytes/subject",
            took.as_secs_f64(),
            n as f64 / took.as_secs_f64().max(1e-9),
            bytes,
            bytes as f64 / n as f64
        );
        g.bench_function(format!("verify_{n}"), |b| {
            b.iter(|| svc.verify(&tax, &pin, Level::Online, now()).unwrap());
        });
        stores.push((dir, svc, tax, pin));
    }
    g.finish();
    if let ([(_, small, ts, ps), (_, large, tl, pl)], false) = (stores.as_slice(), test_mode()) {
        let r = paired(
            300,
            || {
                let _ = std::hint::black_box(small.verify(ts, ps, Level::Online, now()).unwrap());
            },
            || {
                let _ = std::hint::black_box(large.verify(tl, pl, Level::Online, now()).unwrap());
            },
        );
        println!(
            "paired: store scale, verify with {big} subjects / with 1,000 = {r:.3} (goal <= 1.05)"
        );
    }
    for (dir, svc, _, _) in stores {
        drop(svc);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A mint that must never be asked: decisions below need no randomness and no hashing.
struct NoMint;
impl Mint for NoMint {
    fn generate(&mut self, _: PinFormat) -> Pin {
        unreachable!("no PIN is generated in a pure decision")
    }
    fn seal(&mut self, _: &Pin) -> Result<pin_core::hash::PinHash, pin_core::Error> {
        unreachable!("no hash in a pure decision")
    }
    fn matches(&mut self, _: &Pin, _: &pin_core::hash::PinHash) -> Result<bool, pin_core::Error> {
        unreachable!("no hash in a pure decision")
    }
    fn seal_part(&mut self, _: &pin_core::command::Delivery) -> pin_core::delivery::SealedPart {
        unreachable!("nothing is issued in a pure decision")
    }
}

fn bench_decisions(c: &mut Criterion) {
    let policy = pin_core::Policy::builder()
        .hash_live(HashParams::INSECURE_FAST_FOR_TESTS)
        .hash_floor(HashParams::INSECURE_FAST_FOR_TESTS)
        .build()
        .unwrap();
    let svc = PinService::new(
        pin_core::memory::MemoryStore::new(),
        MemoryOutbox::new(),
        policy.clone(),
        keys(),
        ChaCha20Rng::seed_from_u64(3),
    )
    .unwrap();
    let tax = TaxCode::parse("BNCLRA90M41F205Z").unwrap();
    let contacts = Contacts {
        email: Some(Email::parse("laura@example.it").unwrap()),
        mobile: Some(pin_core::contact::Mobile::parse("3471234567").unwrap()),
        pec: None,
        address: Some(pin_core::contact::Address::parse("Via Roma 1, 00100 Roma").unwrap()),
    };
    let _ = svc
        .execute(
            &tax,
            &Actor::Subject,
            &Command::Enrol(Enrolment {
                role: Role::Citizen,
                contacts,
                cns_holder: false,
                enrolled_on: None,
            }),
            now(),
        )
        .unwrap();
    let _ = svc
        .execute(
            &tax,
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            now(),
        )
        .unwrap();
    let subject = pin_core::store::Store::load(svc.store(), &tax)
        .unwrap()
        .unwrap()
        .subject;
    let serial = subject.credential.as_ref().unwrap().serial;
    let attempts = Attempts {
        serial,
        failures: 0,
        blocked: false,
    };
    let ctx = Context {
        now: now(),
        policy: &policy,
    };
    let receipt = Command::Receipt {
        serial,
        part: 2,
        channel: Channel::Post,
        state: DeliveryState::Confirmed,
    };

    // One compare made beforehand (a wrong PIN): the loop below decides, it does not hash.
    let wrong = format::parse_input(PinFormat::InpsIssued16, "ZZZZZZZZZZZZZZZZ").unwrap();
    let compared = svc
        .hasher()
        .compare(&wrong, &subject.credential.as_ref().unwrap().hash)
        .unwrap();
    let mut g = c.benchmark_group("decisions");
    g.bench_function("verify_plan_and_finish", |b| {
        b.iter(|| {
            let plan = verify::plan(
                Some(&subject),
                &attempts,
                Purpose::Access {
                    required: Level::Online,
                },
                now(),
                &policy,
            );
            assert!(matches!(plan, Plan::Compare { .. }));
            verify::finish(
                &subject,
                &compared,
                Purpose::Access {
                    required: Level::Online,
                },
                now(),
                &policy,
            )
        });
    });
    g.bench_function("machine_receipt", |b| {
        b.iter(|| {
            machine::decide(
                &tax,
                Some(&subject),
                &attempts,
                &Actor::System,
                &receipt,
                &ctx,
                &mut NoMint,
            )
            .unwrap()
        });
    });
    g.finish();
}

criterion_group!(
    benches,
    bench_decisions,
    bench_verify_overhead,
    bench_scaling,
    bench_store_scale
);

/// Mean of a benchmark from criterion's saved estimates, in nanoseconds.
fn mean_ns(group: &str, name: &str) -> Option<f64> {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"));
    let file = target
        .join("criterion")
        .join(group)
        .join(name)
        .join("new/estimates.json");
    let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    v["mean"]["point_estimate"].as_f64()
}

fn report() {
    let ratio = |a: Option<f64>, b: Option<f64>| a.zip(b).map(|(a, b)| a / b);
    println!("\n== ratios (same run) ==");
    if let Some(r) = ratio(
        mean_ns("verify", "service_sqlite_file"),
        mean_ns("verify", "argon2_bare"),
    ) {
        println!("verify overhead: service on SQLite file / bare Argon2id = {r:.3} (goal <= 1.05)");
    }
    if let Some(r) = ratio(
        mean_ns("verify", "argon2_bare"),
        mean_ns("verify", "argon2_crate_raw"),
    ) {
        println!("PHC parsing and checks: Hasher::verify / raw argon2 hash = {r:.3}");
    }
    if let Some(r) = ratio(
        mean_ns("verify", "argon2_crate_raw"),
        mean_ns("verify", "argon2_c_reference"),
    ) {
        println!("argon2 crate / C reference = {r:.3}");
    }
    if let Some(r) = ratio(
        mean_ns("scaling", "threads_1"),
        mean_ns("scaling", "threads_2"),
    ) {
        println!(
            "scaling: throughput 2 threads / 1 thread = {:.3} (goal >= 1.8)",
            2.0 * r
        );
    }
    if let Some(r) = ratio(
        mean_ns("scaling", "argon2_threads_1"),
        mean_ns("scaling", "argon2_threads_2"),
    ) {
        println!(
            "scaling of bare Argon2id itself (the physical limit here) = {:.3}",
            2.0 * r
        );
    }
    let big: u64 = std::env::var("PIN_BENCH_SUBJECTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    if let Some(r) = ratio(
        mean_ns("store_scale", &format!("verify_{big}")),
        mean_ns("store_scale", "verify_1000"),
    ) {
        println!("store scale: verify with {big} subjects / with 1,000 = {r:.3} (goal <= 1.05)");
    }
    for name in ["verify_plan_and_finish", "machine_receipt"] {
        if let Some(ns) = mean_ns("decisions", name) {
            println!(
                "decisions: {name} = {:.0}/s (goal >= 1,000,000/s)",
                1e9 / ns
            );
        }
    }
}

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    if !test_mode() {
        report();
    }
    let _ = StdDuration::ZERO;
}
