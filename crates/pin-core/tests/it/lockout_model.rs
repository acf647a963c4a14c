//! Model-based test of the attempt protocol with concurrency and faults in the model
//! (rule: POL-8, INPS-12, POL-1, POL-5).
//!
//! A verify is three steps — reserve, compare, settle — and here several attempts are in
//! flight at once: each generated step starts an attempt (right or wrong PIN), settles one
//! in flight, lets one fail to settle (a busy store: the settlement is lost and retried
//! later), kills one mid-compare (it never settles), moves the clock (leases expire), or
//! issues a new PIN. After every step the invariants are checked against an independent
//! model of what must have been counted:
//!
//! - **bound**: an attacker alone gets at most `limit` compares on a credential;
//! - **no false failure**: settling a right PIN never adds a failure, and the counter
//!   equals the wrong settlements plus the expired leases counted since the last success;
//! - **honest answers**: `TryLater` changes nothing and is given only while the PIN is not
//!   blocked; `Locked` only once the counter is blocked, and blocked stays blocked;
//! - **linearizable**: a right PIN settled as a success never leaves the PIN blocked;
//! - **audit explains the counter**, and a failed settlement changes nothing.

use chrono::{DateTime, Duration, TimeDelta, TimeZone, Utc};
use pin_core::attempts::failures_explained;
use pin_core::audit::AuditEvent;
use pin_core::command::AttemptsUpdate;
use pin_core::conformance::lockout::Faulty;
use pin_core::conformance::sample_subject;
use pin_core::memory::MemoryStore;
use pin_core::store::{LeaseId, Reservation, ReserveRequest, Settled, Settlement, Store};
use pin_core::subject::{Role, Subject};
use pin_core::tax_code::TaxCode;
use proptest::prelude::*;

const LEASE_SECS: i64 = 60;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 6, 1, 8, 0, 0).single().unwrap()
}

fn tax() -> TaxCode {
    TaxCode::parse("RSSMRA85T10A562S").unwrap()
}

/// The in-memory store with faults armed on demand: a failed settlement touches nothing.
type FlakyStore = Faulty<'static, MemoryStore>;

#[derive(Clone, Copy, Debug)]
enum Op {
    /// A verify reserves its attempt (its compare then runs).
    Start { right: bool },
    /// The compare of the `n`-th attempt in flight finishes and settles.
    Settle { n: usize },
    /// The settlement of the `n`-th attempt in flight fails (busy store); it stays in flight.
    FailSettle { n: usize },
    /// The process of the `n`-th attempt in flight dies: it never settles.
    Kill { n: usize },
    /// Time passes.
    Wait { secs: i64 },
    /// A new PIN is issued (BOTH-1): everything in flight is of an old serial.
    Reissue,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop_oneof![1 => Just(true), 2 => Just(false)].prop_map(|right| Op::Start { right }),
        5 => (0usize..8).prop_map(|n| Op::Settle { n }),
        1 => (0usize..8).prop_map(|n| Op::FailSettle { n }),
        1 => (0usize..8).prop_map(|n| Op::Kill { n }),
        2 => prop_oneof![Just(1i64), Just(30), Just(LEASE_SECS), Just(LEASE_SECS + 1)]
            .prop_map(|secs| Op::Wait { secs }),
        1 => Just(Op::Reissue),
    ]
}

/// An attempt the model knows of.
#[derive(Clone, Copy, Debug)]
struct Attempt {
    lease: LeaseId,
    serial: u64,
    right: bool,
    expires_at: DateTime<Utc>,
    /// Its process is alive and may still settle (not settled, not killed).
    running: bool,
    /// The store still holds its lease (not settled, not expired and counted, not dropped).
    held: bool,
}

struct World {
    store: FlakyStore,
    limit: u32,
    now: DateTime<Utc>,
    serial: u64,
    version: u64,
    subject: Subject,
    attempts: Vec<Attempt>,
    /// Compares granted on the current serial (attacker-only bound).
    granted: u32,
    /// What the model says the counter holds.
    failures: u32,
    blocked: bool,
}

impl World {
    fn new(limit: u32) -> Self {
        let store = FlakyStore::new(MemoryStore::new());
        let subject = sample_subject(tax(), Role::Citizen, "a@example.it", 1);
        let version = store.create(&subject, &[]).unwrap();
        Self {
            store,
            limit,
            now: t0(),
            serial: 1,
            version,
            subject,
            attempts: Vec::new(),
            granted: 0,
            failures: 0,
            blocked: false,
        }
    }

    fn event(&self, right: bool) -> AuditEvent {
        AuditEvent {
            at: self.now,
            subject: tax(),
            actor: "subject".into(),
            action: "verify".into(),
            outcome: if right { "accepted" } else { "rejected" }.into(),
            serial: Some(self.serial),
            channels: Vec::new(),
            detail: String::new(),
        }
    }

    fn running(&self, n: usize) -> Option<usize> {
        let idx: Vec<usize> = (0..self.attempts.len())
            .filter(|&i| self.attempts[i].running)
            .collect();
        (!idx.is_empty()).then(|| idx[n % idx.len()])
    }

    fn step(&mut self, op: Op, attacker_only: bool) -> Result<(), TestCaseError> {
        match op {
            Op::Start { right } => self.start(right, attacker_only)?,
            Op::Settle { n } => {
                if let Some(i) = self.running(n) {
                    self.settle(i)?;
                }
            }
            Op::FailSettle { n } => {
                if let Some(i) = self.running(n) {
                    let before = (self.store.load(&tax()).unwrap(), self.audit_len());
                    self.store.arm(1, 0);
                    let a = self.attempts[i];
                    let r = self.store.settle_attempt(
                        &tax(),
                        a.serial,
                        a.lease,
                        self.limit,
                        if a.right {
                            Settlement::Success
                        } else {
                            Settlement::Failure
                        },
                        &self.event(a.right),
                    );
                    prop_assert!(r.is_err_and(|e| e.is_retryable()));
                    let after = (self.store.load(&tax()).unwrap(), self.audit_len());
                    prop_assert_eq!(before, after, "a failed settlement changed something");
                }
            }
            Op::Kill { n } => {
                if let Some(i) = self.running(n) {
                    self.attempts[i].running = false;
                }
            }
            Op::Wait { secs } => self.now += Duration::seconds(secs),
            Op::Reissue => {
                let mut next = self.subject.clone();
                self.serial += 1;
                if let Some(c) = next.credential.as_mut() {
                    c.serial = self.serial;
                }
                next.last_serial = self.serial;
                self.version = self
                    .store
                    .save(&next, self.version, AttemptsUpdate::Fresh, &[])
                    .unwrap();
                self.subject = next;
                self.granted = 0;
                self.failures = 0;
                self.blocked = false;
            }
        }
        self.check()
    }

    fn audit_len(&self) -> usize {
        self.store.audit_log(Some(&tax())).unwrap().len()
    }

    fn start(&mut self, right: bool, attacker_only: bool) -> Result<(), TestCaseError> {
        // What the model expects the reservation to do first: drop the leases of old
        // serials, and count every lease of this serial that expired unsettled.
        let mut expired = 0;
        for a in &mut self.attempts {
            if a.held && a.serial != self.serial {
                a.held = false;
            } else if a.held && a.expires_at <= self.now {
                a.held = false;
                expired += 1;
            }
        }
        let before = self.store.load(&tax()).unwrap().unwrap().attempts;
        let request = ReserveRequest {
            serial: self.serial,
            limit: self.limit,
            now: self.now,
            lease: TimeDelta::seconds(LEASE_SECS),
        };
        let answer = self.store.reserve_attempt(&tax(), &request).unwrap();
        if !self.blocked {
            self.failures += expired;
            self.blocked = self.failures >= self.limit;
        }
        let live = u32::try_from(self.attempts.iter().filter(|a| a.held).count()).unwrap();
        match answer {
            Reservation::Granted { lease, failures } => {
                prop_assert!(!self.blocked, "granted on a blocked PIN");
                prop_assert_eq!(failures, self.failures);
                prop_assert!(
                    self.failures + live < self.limit,
                    "granted beyond the budget: {} failures, {} in flight",
                    self.failures,
                    live
                );
                self.granted += 1;
                if attacker_only {
                    prop_assert!(
                        self.granted <= self.limit,
                        "INPS-12: {} compares for an attacker",
                        self.granted
                    );
                }
                self.attempts.push(Attempt {
                    lease,
                    serial: self.serial,
                    right,
                    expires_at: self.now + TimeDelta::seconds(LEASE_SECS),
                    running: true,
                    held: true,
                });
            }
            Reservation::TryLater { retry_after } => {
                prop_assert!(!self.blocked, "TryLater on a blocked PIN");
                prop_assert!(!retry_after.is_zero());
                prop_assert!(self.failures + live >= self.limit);
                let after = self.store.load(&tax()).unwrap().unwrap().attempts;
                prop_assert_eq!(
                    after.failures,
                    before.failures + expired,
                    "TryLater counted something beyond the expired leases"
                );
            }
            Reservation::Locked { .. } => {
                prop_assert!(self.blocked, "Locked while the model is not blocked");
            }
            Reservation::Stale => prop_assert!(false, "the serial is current"),
        }
        Ok(())
    }

    fn settle(&mut self, i: usize) -> Result<(), TestCaseError> {
        let a = self.attempts[i];
        self.attempts[i].running = false;
        self.attempts[i].held = false;
        let settled = self
            .store
            .settle_attempt(
                &tax(),
                a.serial,
                a.lease,
                self.limit,
                if a.right {
                    Settlement::Success
                } else {
                    Settlement::Failure
                },
                &self.event(a.right),
            )
            .unwrap();
        if a.serial != self.serial {
            prop_assert_eq!(settled, Settled::Stale, "BOTH-1");
            return Ok(());
        }
        if a.right {
            // A right PIN never adds a failure; once blocked it is told Locked (final).
            if self.blocked {
                prop_assert_eq!(settled, Settled::Locked);
            } else {
                prop_assert!(
                    matches!(
                        settled,
                        Settled::Done {
                            failures: 0,
                            blocked: false,
                            ..
                        }
                    ),
                    "POL-8: a right PIN settled as {:?}",
                    settled
                );
                self.failures = 0;
            }
        } else {
            if a.held && !self.blocked {
                self.failures += 1;
                self.blocked = self.failures >= self.limit;
            }
            prop_assert!(
                matches!(settled, Settled::Done { .. }),
                "a wrong PIN settled as {:?}",
                settled
            );
        }
        Ok(())
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let a = self.store.load(&tax()).unwrap().unwrap().attempts;
        prop_assert_eq!(a.serial, self.serial);
        prop_assert_eq!(
            a.failures,
            self.failures,
            "the counter differs from the model"
        );
        prop_assert_eq!(a.blocked, self.blocked);
        prop_assert!(a.failures <= self.limit);
        let log = self.store.audit_log(Some(&tax())).unwrap();
        prop_assert_eq!(
            failures_explained(&log, self.serial),
            a.failures,
            "the audit log does not explain the counter"
        );
        Ok(())
    }
}

fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(10_000);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    // rule: POL-8, INPS-12, POL-1, POL-5 — interleaved reserve/compare/settle of several
    // attempts, with failed settlements, killed compares, expiring leases and re-issues.
    #[test]
    fn lockout_model_with_concurrency_and_faults(
        limit in 2u32..=4,
        attacker_only in proptest::bool::weighted(0.25),
        ops in proptest::collection::vec(op(), 1..48),
    ) {
        let mut w = World::new(limit);
        for op in ops {
            let op = match op {
                Op::Start { .. } if attacker_only => Op::Start { right: false },
                other => other,
            };
            w.step(op, attacker_only)?;
        }
    }
}
