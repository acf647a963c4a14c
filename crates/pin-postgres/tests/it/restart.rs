//! A server restart in the middle of a load run: worker threads, each with its own store
//! (its own pool), issue and verify PINs of the subjects they own while the server is
//! restarted twice (`pg_ctl restart -m fast`, every connection cut). Afterwards nothing
//! acknowledged is lost, each subject has exactly the last acknowledged PIN, the audit
//! chain is intact, and every worker made progress after the last restart with the store
//! it started with.
//! rule: BOTH-1 (only the last PIN issued is valid), INPS-12 / POL-1 (no counted failure is
//! lost), POL-5 (a lock never re-opens).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pin_core::VerifyOutcome;
use pin_core::actor::Actor;
use pin_core::command::Command;
use pin_core::contact::Contacts;
use pin_core::format;
use pin_core::hash::Verified;
use pin_core::store::Store;
use pin_core::subject::Level;
use pin_core::tax_code::TaxCode;
use pin_postgres::PostgresStore;
use rand_chacha::ChaCha20Rng;
use rand_core::{Rng, SeedableRng};

use crate::common::{
    Service, cluster, database, email, enrol_noipa, service, sql, synthetic_tax_code, t0, take_pin,
    wrong,
};

const WORKERS: u64 = 3;
const SUBJECTS_PER_WORKER: u64 = 2;
const LIMIT: u32 = 10;

/// What a worker knows of one of its subjects from acknowledged answers.
#[derive(Clone, Debug)]
struct Acked {
    tax: TaxCode,
    mail: String,
    serial: u64,
    pin: String,
    failures: u32,
    locked: bool,
    /// False after an operation failed: its outcome is unknown until the next issue.
    certain: bool,
    /// False after a verify failed: the count may be higher than acknowledged.
    exact: bool,
}

struct Worker {
    svc: Service<PostgresStore>,
    rng: ChaCha20Rng,
    now: chrono::DateTime<chrono::Utc>,
    acked_ops: u64,
    errors: u64,
    last_error: String,
}

impl Worker {
    fn tick(&mut self) -> chrono::DateTime<chrono::Utc> {
        self.now += chrono::Duration::minutes(1);
        self.now
    }

    fn failed(&mut self, s: &mut Acked, e: &dyn std::fmt::Display) {
        self.errors += 1;
        self.last_error = e.to_string();
        s.certain = false;
        s.exact = false;
        let _ = self.svc.notifier().take();
        std::thread::sleep(Duration::from_millis(20));
    }

    /// A new PIN after identification by the RID (fresh counter).
    fn identify(&mut self, s: &mut Acked) {
        let contacts = Contacts {
            email: Some(email(&s.mail)),
            ..Contacts::default()
        };
        let now = self.tick();
        let cmd = Command::Identify { contacts };
        match self
            .svc
            .execute(&s.tax, &Actor::Rid("rid-1".into()), &cmd, now)
        {
            Ok(done) => {
                s.pin = take_pin(&self.svc);
                s.serial = done.subject.credential.as_ref().unwrap().serial;
                s.failures = 0;
                s.locked = false;
                s.certain = true;
                s.exact = true;
                self.acked_ops += 1;
            }
            Err(e) => self.failed(s, &e),
        }
    }

    fn verify(&mut self, s: &mut Acked, right: bool) {
        let input = if right { s.pin.clone() } else { wrong(&s.pin) };
        let now = self.tick();
        match self.svc.verify(&s.tax, &input, Level::Online, now) {
            Ok(VerifyOutcome::Rejected {
                remaining_attempts, ..
            }) => {
                assert!(!right, "the right PIN was rejected: {s:?}");
                s.failures = LIMIT - remaining_attempts;
                s.locked = s.failures >= LIMIT;
                self.acked_ops += 1;
            }
            Ok(VerifyOutcome::Locked) => {
                s.locked = true;
                self.acked_ops += 1;
            }
            Ok(VerifyOutcome::Accepted { .. }) => {
                assert!(right, "a wrong PIN was accepted: {s:?}");
                s.failures = 0;
                s.exact = true;
                self.acked_ops += 1;
            }
            Ok(other) => panic!("unexpected outcome {other:?} for {s:?}"),
            Err(e) => {
                self.failed(s, &e);
                // A success may have reset the count: nothing is known of it.
                if right {
                    s.failures = 0;
                }
            }
        }
    }

    fn step(&mut self, s: &mut Acked) {
        if !s.certain || s.locked {
            return self.identify(s);
        }
        match self.rng.next_u32() % 10 {
            0 => self.identify(s),
            1 | 2 => self.verify(s, true),
            _ => self.verify(s, false),
        }
    }
}

fn check(url: &str, subjects: &[Acked]) {
    let store = PostgresStore::open(url).unwrap();
    let chain = store.verify_audit_chain().unwrap();
    assert!(chain.is_intact(), "audit chain {chain:?}");
    let svc = service(&store, 0);
    for s in subjects {
        let l = store.load(&s.tax).unwrap().unwrap();
        let cred = l.subject.credential.as_ref().unwrap();
        let a = l.attempts;
        assert_eq!(
            a.serial, cred.serial,
            "the counter follows the credential: {s:?}"
        );
        if !s.certain {
            assert!(cred.serial >= s.serial, "serial went back: {s:?} {cred:?}");
            continue;
        }
        assert_eq!(
            cred.serial, s.serial,
            "the last acknowledged PIN is the current one (BOTH-1): {s:?}"
        );
        let pin = format::parse_input(cred.format, &s.pin).unwrap();
        assert!(
            matches!(
                svc.hasher().verify(&pin, &cred.hash).unwrap(),
                Verified::Match { .. }
            ),
            "the last acknowledged PIN must verify: {s:?}"
        );
        if s.locked {
            assert!(a.is_locked(LIMIT), "a lock was lost: {s:?} {a:?}");
        }
        if s.exact {
            assert_eq!(a.failures, s.failures, "{s:?} {a:?}");
        } else {
            assert!(
                a.failures >= s.failures,
                "acknowledged failures lost: {s:?} {a:?}"
            );
        }
    }
    let mut c = sql(url);
    let one_each: bool = c
        .query_one(
            "SELECT count(*) = count(DISTINCT tax_code) FROM credentials",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(one_each, "a subject with two current PINs");
    let head: i64 = c
        .query_one("SELECT id FROM audit_head", &[])
        .unwrap()
        .get(0);
    let rows: i64 = c
        .query_one("SELECT count(*) FROM audit", &[])
        .unwrap()
        .get(0);
    assert_eq!(head, rows, "the head is the last row");
}

// rule: BOTH-1, POL-1, POL-5 — restarts of the server under load lose nothing acknowledged.
#[test]
fn server_restart_under_load() {
    let Some(c) = cluster("server_restart_under_load") else {
        return;
    };
    let url = database(&c);
    let stop = AtomicBool::new(false);
    let restarts_done = AtomicU64::new(0);
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..WORKERS)
            .map(|w| {
                let (url, stop, restarts_done) = (&url, &stop, &restarts_done);
                scope.spawn(move || {
                    let mut worker = Worker {
                        svc: service(PostgresStore::open_with_pool_size(url, 2).unwrap(), w),
                        rng: ChaCha20Rng::seed_from_u64(w),
                        now: t0(),
                        acked_ops: 0,
                        errors: 0,
                        last_error: String::new(),
                    };
                    let mut mine: Vec<Acked> = (0..SUBJECTS_PER_WORKER)
                        .map(|i| {
                            let n = w * SUBJECTS_PER_WORKER + i;
                            let tax = synthetic_tax_code(n);
                            let mail = format!("worker{n}@example.it");
                            let pin = enrol_noipa(&worker.svc, &tax, &mail);
                            let serial = worker.svc.store().load(&tax).unwrap().unwrap();
                            Acked {
                                serial: serial.subject.credential.unwrap().serial,
                                tax,
                                mail,
                                pin,
                                failures: 0,
                                locked: false,
                                certain: true,
                                exact: true,
                            }
                        })
                        .collect();
                    let mut after_last_restart = 0;
                    let mut i = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let before = worker.acked_ops;
                        let n = mine.len();
                        let s = &mut mine[i % n];
                        worker.step(s);
                        if restarts_done.load(Ordering::SeqCst) == 2 {
                            after_last_restart += worker.acked_ops - before;
                        }
                        i += 1;
                    }
                    // Leave each subject certain, so that the check sees a known state.
                    for s in &mut mine {
                        while !s.certain {
                            worker.identify(s);
                        }
                    }
                    (
                        mine,
                        worker.acked_ops,
                        worker.errors,
                        worker.last_error,
                        after_last_restart,
                    )
                })
            })
            .collect();
        let start = Instant::now();
        for (n, at) in [Duration::from_millis(1500), Duration::from_millis(3500)]
            .into_iter()
            .enumerate()
        {
            std::thread::sleep(at.saturating_sub(start.elapsed()));
            c.restart().unwrap();
            restarts_done.store(n as u64 + 1, Ordering::SeqCst);
        }
        std::thread::sleep(Duration::from_millis(6000).saturating_sub(start.elapsed()));
        stop.store(true, Ordering::SeqCst);
        handles
            .into_iter()
            .map(|h| h.join().unwrap())
            .collect::<Vec<_>>()
    });
    let mut all = Vec::new();
    for (w, (mine, acked, errors, last_error, after)) in results.into_iter().enumerate() {
        eprintln!(
            "worker {w}: {acked} acknowledged operations, {errors} failed during restarts, \
             {after} after the last restart; last error: {last_error}"
        );
        assert!(after > 0, "worker {w} did not recover after the restart");
        if errors > 0 {
            assert!(
                last_error.contains("PostgreSQL") || last_error.contains("cannot reach"),
                "a failure names the server: {last_error}"
            );
        }
        all.extend(mine);
    }
    check(&url, &all);
}
