//! Guessing races across processes: several OS processes (this test binary, re-invoked with
//! an environment variable), each with its own `PostgresStore` and so its own connections,
//! fire 1,000 wrong guesses at one subject through `PinService::verify`, all released at
//! once. At most the limit is compared, the PIN ends locked, and nothing is accepted.
//! rule: INPS-12, POL-1 (blocked after 10 wrong attempts), POL-5 (a lock never re-opens).

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command as Process, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

use pin_core::VerifyOutcome;
use pin_core::conformance::lockout::Counting;
use pin_core::store::Store;
use pin_core::subject::Level;
use pin_postgres::PostgresStore;

use crate::common::{cluster, database, enrol_noipa, service, t0, tax, wrong};

const CHILD_URL: &str = "PIN_PG_RACE_CHILD_URL";
const CHILD_PIN: &str = "PIN_PG_RACE_CHILD_PIN";
const CHILD_SEED: &str = "PIN_PG_RACE_CHILD_SEED";
const PROCESSES: usize = 4;
const GUESSES: usize = 1_000;
const LIMIT: u32 = 10;

fn runs() -> u64 {
    if std::env::var_os("PIN_POSTGRES_STRESS").is_some() {
        50
    } else {
        4
    }
}

/// One guessing process; does nothing unless started by [`processes_race`]. Opens its
/// store, says READY, waits for a line on stdin (all start together), guesses with two
/// threads, and prints its tally.
#[test]
fn race_child() {
    let Some(url) = std::env::var_os(CHILD_URL) else {
        return;
    };
    let url = url.into_string().unwrap();
    let pin = std::env::var(CHILD_PIN).unwrap();
    let seed: u64 = std::env::var(CHILD_SEED).unwrap().parse().unwrap();
    let granted = AtomicU32::new(0);
    let store = Counting::counting(
        PostgresStore::open_with_pool_size(&url, 2).unwrap(),
        &granted,
    );
    let svc = service(store, seed);
    let bad = wrong(&pin);
    let (rejected, locked, other) = (AtomicU32::new(0), AtomicU32::new(0), AtomicU32::new(0));
    let later = AtomicU32::new(0);
    println!("READY");
    std::io::stdout().flush().unwrap();
    let mut go = String::new();
    let _ = std::io::stdin().read_line(&mut go).unwrap();
    let t = tax(0);
    std::thread::scope(|scope| {
        for _ in 0..2 {
            scope.spawn(|| {
                for _ in 0..GUESSES / PROCESSES / 2 {
                    match svc.verify(&t, &bad, Level::Online, t0()).unwrap() {
                        VerifyOutcome::Rejected { .. } => rejected.fetch_add(1, Ordering::SeqCst),
                        VerifyOutcome::Locked => locked.fetch_add(1, Ordering::SeqCst),
                        // Compares in flight fill the budget: not counted (POL-8).
                        VerifyOutcome::TryLater { .. } => later.fetch_add(1, Ordering::SeqCst),
                        _ => other.fetch_add(1, Ordering::SeqCst),
                    };
                }
            });
        }
    });
    println!(
        "TALLY {} {} {} {} {}",
        granted.load(Ordering::SeqCst),
        rejected.into_inner(),
        locked.into_inner(),
        other.into_inner(),
        later.into_inner()
    );
}

// rule: INPS-12, POL-1, POL-5, POL-8 — 1,000 wrong guesses from 4 processes: 10 compares,
// locked; a guess that finds the budget in flight is told to try later, not counted.
#[test]
fn processes_race() {
    let Some(c) = cluster("processes_race") else {
        return;
    };
    let exe = std::env::current_exe().unwrap();
    for run in 0..runs() {
        let url = database(&c);
        let t = tax(0);
        let pin = enrol_noipa(
            &service(PostgresStore::open(&url).unwrap(), run),
            &t,
            "mario.rossi@example.it",
        );
        let mut children: Vec<_> = (0..PROCESSES)
            .map(|i| {
                Process::new(&exe)
                    .args([
                        "--exact",
                        "concurrency::race_child",
                        "--nocapture",
                        "--test-threads=1",
                        "-q",
                    ])
                    .env(CHILD_URL, &url)
                    .env(CHILD_PIN, &pin)
                    .env(CHILD_SEED, format!("{}", run * 100 + i as u64))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::piped())
                    .stderr(Stdio::inherit())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut outs: Vec<_> = children
            .iter_mut()
            .map(|ch| {
                let mut out = BufReader::new(ch.stdout.take().unwrap());
                let mut line = String::new();
                while !line.starts_with("READY") {
                    line.clear();
                    assert!(out.read_line(&mut line).unwrap() > 0, "a child died early");
                }
                out
            })
            .collect();
        for ch in &mut children {
            let mut stdin = ch.stdin.take().unwrap();
            stdin.write_all(b"go\n").unwrap();
        }
        let (mut granted, mut rejected, mut locked, mut other, mut later) = (0, 0, 0, 0, 0);
        for (ch, out) in children.iter_mut().zip(&mut outs) {
            let mut rest = String::new();
            out.read_to_string(&mut rest).unwrap();
            assert!(ch.wait().unwrap().success(), "run {run}: a child failed");
            let tally = rest
                .lines()
                .find_map(|l| l.strip_prefix("TALLY "))
                .unwrap_or_else(|| panic!("run {run}: no tally in {rest:?}"));
            let n: Vec<u32> = tally.split(' ').map(|x| x.parse().unwrap()).collect();
            granted += n[0];
            rejected += n[1];
            locked += n[2];
            other += n[3];
            later += n[4];
        }
        let ctx = format!(
            "run {run}: granted {granted}, rejected {rejected}, locked {locked}, other {other}"
        );
        assert!(granted <= LIMIT, "{ctx}: more compares than the limit");
        assert_eq!(
            granted, LIMIT,
            "{ctx}: every allowed wrong guess is compared"
        );
        // The tenth wrong guess is answered Locked: it reached the limit.
        assert!(rejected < LIMIT, "{ctx}");
        assert_eq!(other, 0, "{ctx}: nothing but rejected, locked or try-later");
        assert_eq!(rejected + locked + later, GUESSES as u32, "{ctx}");
        let store = PostgresStore::open(&url).unwrap();
        let a = store.load(&t).unwrap().unwrap().attempts;
        assert!(a.blocked, "{ctx}: blocked for good: {a:?}");
        assert_eq!(a.failures, LIMIT, "{ctx}: {a:?}");
        let chain = store.verify_audit_chain().unwrap();
        assert!(chain.is_intact(), "{ctx}: {chain:?}");
        // The right PIN no longer opens it either (POL-5).
        let svc = service(store, 9);
        assert_eq!(
            svc.verify(&t, &pin, Level::Online, t0()).unwrap(),
            VerifyOutcome::Locked,
            "{ctx}"
        );
    }
}
