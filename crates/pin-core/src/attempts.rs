//! Attempt accounting: the rules every [`Store`](crate::store::Store) applies atomically, so
//! that a lockout keeps both of its promises (INPS-12, POL-1, POL-8).
//!
//! - **To attackers:** at most `limit` wrong comparisons per credential between two
//!   successes, under any concurrency and any crash. An attempt is *reserved* durably
//!   before its compare — as a smart card decrements its try counter first — and a
//!   reservation is granted only while `failures + in flight < limit`.
//! - **To the honest person:** a compare that matched never adds to the failures; the lock
//!   becomes permanent only from `limit` wrong comparisons, plus attempts whose compare
//!   never settled (a process killed mid-compare), each recorded in the audit log when it is
//!   counted. When compares in flight fill what is left of the budget, an extra attempt is
//!   answered [`Reservation::TryLater`] — not counted, not locked.
//!
//! ```text
//!             reserve (failures + in flight < limit)          settle Success
//!   counter ───────────────────────────────────────► lease ───────────────────► failures = 0
//!      │  ▲                                            │  │    settle Failure
//!      │  └──────────── TryLater (budget in flight) ───┘  └──────────────────► failures + 1
//!      │                                                    lease expired
//!      │                                                  ─────────────────►   failures + 1
//!      │                                                    (audit: unsettled_counted)
//!      └── failures ≥ limit ──► blocked for good: Locked, final (POL-5)
//! ```
//!
//! A store holds, per subject, the [`Attempts`] counter and the [`Lease`]s in flight. It
//! calls [`reserve_rule`] and [`settle_rule`] inside one atomic step (a transaction, a
//! mutex) and writes back exactly what they return — counter, leases and audit events — so
//! that every store behaves the same, as the conformance suite checks.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};

use crate::audit::AuditEvent;
use crate::subject::Attempts;
use crate::tax_code::TaxCode;

/// Identifies one reserved attempt (a compare in flight) within its store.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LeaseId(pub u64);

/// A reserved attempt whose compare has not settled yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// Its id.
    pub id: LeaseId,
    /// The credential serial it was reserved on.
    pub serial: u64,
    /// When it is deemed dead (its process killed mid-compare) and counted as a wrong PIN.
    pub expires_at: DateTime<Utc>,
}

/// What a driver asks of [`Store::reserve_attempt`](crate::store::Store::reserve_attempt).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReserveRequest {
    /// The credential serial the driver is about to compare against.
    pub serial: u64,
    /// The lockout limit of the subject's profile.
    pub limit: u32,
    /// The time of the attempt.
    pub now: DateTime<Utc>,
    /// How long the reservation lives before an unsettled compare counts as a wrong PIN.
    pub lease: TimeDelta,
}

/// What the store answered to a reservation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reservation {
    /// Reserved: compare, then settle `lease`.
    Granted {
        /// The reservation to settle.
        lease: LeaseId,
        /// Wrong comparisons settled so far (this attempt not included).
        failures: u32,
    },
    /// Compares in flight fill what is left of the budget: nothing was counted; retry after
    /// `retry_after`.
    TryLater {
        /// How long to wait.
        retry_after: Duration,
    },
    /// The credential is blocked for good.
    Locked {
        /// This reservation made the lock (expired leases reached the limit): notify.
        newly: bool,
    },
    /// The serial is no longer current: reload and plan again.
    Stale,
}

/// How a granted reservation is settled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// The PIN matched: the consecutive failures are cleared, unless the credential was
    /// blocked meanwhile (only possible once this lease had expired), which a success never
    /// undoes.
    Success,
    /// The PIN did not match: one more failure, and the credential is blocked for good once
    /// failures reach the limit.
    Failure,
    /// No compare took place (the hasher failed): the reservation is dropped uncounted.
    Release,
}

/// What the store answered to a settlement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Applied.
    Done {
        /// Consecutive wrong comparisons now counted.
        failures: u32,
        /// The credential is blocked for good.
        blocked: bool,
        /// This settlement made the lock: notify.
        newly_blocked: bool,
    },
    /// The PIN matched, but the credential had been blocked for good before this success
    /// settled (its lease expired and was counted): the answer is `Locked`, final.
    Locked,
    /// The serial is no longer the subject's current credential: the compare's outcome no
    /// longer means anything (BOTH-1); plan again.
    Stale,
}

/// Audit outcome of a reservation that expired unsettled and was counted as a wrong PIN.
pub const UNSETTLED_COUNTED: &str = "unsettled_counted";
/// Audit outcome of a wrong PIN that reached the limit and blocked the credential.
pub const REJECTED_NOW_LOCKED: &str = "rejected_now_locked";
/// Audit outcome of a wrong PIN (attempts remain).
pub const REJECTED: &str = "rejected";
/// Audit outcome of a wrong PIN whose reservation had already been counted on expiry.
pub const REJECTED_LATE: &str = "rejected_already_counted";
/// Audit outcome of a compare whose credential was replaced meanwhile (BOTH-1).
pub const SUPERSEDED: &str = "superseded";
/// Audit outcome of a reservation released without a compare.
pub const RELEASED: &str = "released_uncompared";

/// Whether an audit event of a verify counted one failure on the counter: the audit log
/// explains the counter (see [`failures_explained`]).
#[must_use]
pub fn counts_failure(outcome: &str) -> bool {
    matches!(outcome, UNSETTLED_COUNTED | REJECTED | REJECTED_NOW_LOCKED)
}

/// Whether an audit event of a verify cleared the failures (a compare that matched).
#[must_use]
pub fn clears_failures(action: &str, outcome: &str) -> bool {
    matches!(
        action,
        "verify" | "authenticate_for_change" | "authenticate_for_activation"
    ) && matches!(
        outcome,
        "accepted" | "must_change" | "expired" | "insufficient_level"
    )
}

/// Whether an issue recorded with this action keeps the failures of the credential it
/// replaces: a re-send (POL-3) issues a fresh PIN but carries the count over
/// ([`AttemptsUpdate::CarryOver`](crate::command::AttemptsUpdate::CarryOver)), so that asking
/// for a re-send never resets the lockout.
#[must_use]
pub fn carries_failures(action: &str) -> bool {
    action == "resend"
}

/// The failures the audit log of one subject accounts for on its credential `serial`: wrong
/// comparisons and unsettled attempts counted, since the last matched compare or the issue
/// of a credential that did not carry the count over. For every subject, this equals the
/// counter's `failures` (a conformance property).
#[must_use]
pub fn failures_explained<'a>(
    events: impl IntoIterator<Item = &'a AuditEvent>,
    serial: u64,
) -> u32 {
    let mut n = 0u32;
    let mut tracked: Option<u64> = None;
    for e in events {
        let Some(s) = e.serial else { continue };
        if tracked.is_some_and(|t| s < t) {
            continue; // a late event of a replaced credential: it counts nothing
        }
        if tracked != Some(s) {
            // A new credential: the count starts again, unless the issue carried it over.
            if !carries_failures(&e.action) {
                n = 0;
            }
            tracked = Some(s);
        }
        if clears_failures(&e.action, &e.outcome) {
            n = 0;
        } else if counts_failure(&e.outcome) {
            n = n.saturating_add(1);
        }
    }
    if tracked == Some(serial) { n } else { 0 }
}

/// What [`reserve_rule`] tells the store to write, atomically.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct ReserveStep {
    /// The answer.
    pub answer: Reservation,
    /// The counter to write back.
    pub counter: Attempts,
    /// Leases to delete: expired ones (counted) and those of earlier serials (not counted).
    pub drop: Vec<LeaseId>,
    /// The lease to insert when granted.
    pub insert: Option<Lease>,
    /// Audit events to append: one per expired lease counted.
    pub audit: Vec<AuditEvent>,
}

/// At most this long a `TryLater` asks to wait: compares take well under a second.
const RETRY_AFTER_MAX: Duration = Duration::from_secs(1);

/// The reservation rule. `leases` are the subject's leases in flight, `current_serial` the
/// serial of its current credential, and `new_lease` the id the store will give a granted
/// reservation.
pub fn reserve_rule(
    tax_code: &TaxCode,
    counter: Attempts,
    current_serial: Option<u64>,
    leases: &[Lease],
    request: &ReserveRequest,
    new_lease: LeaseId,
) -> ReserveStep {
    let ReserveRequest {
        serial,
        limit,
        now,
        lease,
    } = *request;
    let mut step = ReserveStep {
        answer: Reservation::Stale,
        counter,
        drop: Vec::new(),
        insert: None,
        audit: Vec::new(),
    };
    if current_serial != Some(serial) || counter.serial != serial {
        return step;
    }
    let mut live: Vec<&Lease> = Vec::new();
    for l in leases {
        if l.serial != serial {
            step.drop.push(l.id);
        } else if l.expires_at <= now {
            step.drop.push(l.id);
            if !step.counter.blocked {
                step.counter.failures = step.counter.failures.saturating_add(1);
                step.audit.push(unsettled_event(tax_code, l, now));
            }
        } else {
            live.push(l);
        }
    }
    let newly = !counter.blocked && step.counter.failures >= limit;
    step.counter.blocked = counter.blocked || step.counter.failures >= limit;
    if step.counter.blocked {
        step.answer = Reservation::Locked { newly };
        return step;
    }
    let in_flight = u32::try_from(live.len()).unwrap_or(u32::MAX);
    if step.counter.failures.saturating_add(in_flight) >= limit {
        let earliest = live.iter().map(|l| l.expires_at).min().unwrap_or(now);
        let until_expiry = (earliest - now).to_std().unwrap_or(Duration::ZERO);
        step.answer = Reservation::TryLater {
            retry_after: until_expiry.clamp(Duration::from_millis(100), RETRY_AFTER_MAX),
        };
        return step;
    }
    let expires_at = now.checked_add_signed(lease).unwrap_or(now);
    step.insert = Some(Lease {
        id: new_lease,
        serial,
        expires_at,
    });
    step.answer = Reservation::Granted {
        lease: new_lease,
        failures: step.counter.failures,
    };
    step
}

fn unsettled_event(tax_code: &TaxCode, lease: &Lease, now: DateTime<Utc>) -> AuditEvent {
    AuditEvent {
        at: now,
        subject: tax_code.clone(),
        actor: "system".to_owned(),
        action: "verify".to_owned(),
        outcome: UNSETTLED_COUNTED.to_owned(),
        serial: Some(lease.serial),
        channels: Vec::new(),
        detail: format!(
            "attempt {} was reserved and never settled before {}: counted as a wrong PIN",
            lease.id.0,
            lease
                .expires_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    }
}

/// What [`settle_rule`] tells the store to write, atomically. The store always deletes the
/// settled lease.
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct SettleStep {
    /// The answer.
    pub answer: Settled,
    /// The counter to write back.
    pub counter: Attempts,
    /// The audit event to append (the driver's, with its outcome made exact).
    pub audit: AuditEvent,
}

/// The settlement rule. `lease_live` says whether the settled lease was still in the store
/// (not expired and counted by another reservation meanwhile); `audit` is the driver's
/// event for this verify.
pub fn settle_rule(
    counter: Attempts,
    current_serial: Option<u64>,
    lease_live: bool,
    serial: u64,
    limit: u32,
    settlement: Settlement,
    audit: &AuditEvent,
) -> SettleStep {
    let mut event = audit.clone();
    event.serial = Some(serial);
    let mut next = counter;
    let answer = if current_serial != Some(serial) || counter.serial != serial {
        event.outcome = SUPERSEDED.to_owned();
        Settled::Stale
    } else {
        match settlement {
            Settlement::Release => {
                event.outcome = RELEASED.to_owned();
                Settled::Done {
                    failures: counter.failures,
                    blocked: counter.blocked,
                    newly_blocked: false,
                }
            }
            Settlement::Success if counter.blocked => {
                event.outcome = "locked".to_owned();
                Settled::Locked
            }
            Settlement::Success => {
                next.failures = 0;
                Settled::Done {
                    failures: 0,
                    blocked: false,
                    newly_blocked: false,
                }
            }
            Settlement::Failure if !lease_live || counter.blocked => {
                // Already counted when its lease expired (or the lock came first).
                event.outcome = REJECTED_LATE.to_owned();
                Settled::Done {
                    failures: counter.failures,
                    blocked: counter.blocked,
                    newly_blocked: false,
                }
            }
            Settlement::Failure => {
                next.failures = counter.failures.saturating_add(1);
                next.blocked = next.failures >= limit;
                event.outcome = if next.blocked {
                    REJECTED_NOW_LOCKED
                } else {
                    REJECTED
                }
                .to_owned();
                Settled::Done {
                    failures: next.failures,
                    blocked: next.blocked,
                    newly_blocked: next.blocked,
                }
            }
        }
    };
    SettleStep {
        answer,
        counter: next,
        audit: event,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use chrono::TimeZone;

    fn t(s: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(1_780_000_000 + s, 0).unwrap()
    }
    fn tax() -> TaxCode {
        TaxCode::parse("RSSMRA85T10A562S").unwrap()
    }
    fn req(now: i64) -> ReserveRequest {
        ReserveRequest {
            serial: 1,
            limit: 3,
            now: t(now),
            lease: TimeDelta::seconds(60),
        }
    }
    fn counter(failures: u32) -> Attempts {
        Attempts {
            serial: 1,
            failures,
            blocked: false,
        }
    }
    fn lease(id: u64, expires: i64) -> Lease {
        Lease {
            id: LeaseId(id),
            serial: 1,
            expires_at: t(expires),
        }
    }
    fn ev() -> AuditEvent {
        AuditEvent {
            at: t(0),
            subject: tax(),
            actor: "subject".into(),
            action: "verify".into(),
            outcome: "rejected".into(),
            serial: Some(1),
            channels: Vec::new(),
            detail: String::new(),
        }
    }

    // rule: POL-8, INPS-12 — the budget in flight gives TryLater, never Locked, and counts nothing.
    #[test]
    fn budget_in_flight_is_try_later_not_locked() {
        let leases = [lease(1, 60), lease(2, 60)];
        let s = reserve_rule(&tax(), counter(1), Some(1), &leases, &req(0), LeaseId(3));
        assert!(matches!(s.answer, Reservation::TryLater { .. }));
        assert_eq!(s.counter, counter(1));
        assert!(s.insert.is_none() && s.drop.is_empty() && s.audit.is_empty());
    }

    // rule: POL-8, POL-1 — an expired lease counts as a wrong PIN, with an audit event.
    #[test]
    fn expired_lease_counts_once_with_audit() {
        let leases = [lease(1, 10)];
        let s = reserve_rule(&tax(), counter(1), Some(1), &leases, &req(10), LeaseId(2));
        assert_eq!(s.counter.failures, 2);
        assert_eq!(s.drop, vec![LeaseId(1)]);
        assert_eq!(s.audit.len(), 1);
        assert_eq!(s.audit[0].outcome, UNSETTLED_COUNTED);
        assert!(matches!(s.answer, Reservation::Granted { failures: 2, .. }));
        // Its late settlement as a failure counts nothing more.
        let late = settle_rule(s.counter, Some(1), false, 1, 3, Settlement::Failure, &ev());
        assert_eq!(late.counter.failures, 2);
        assert_eq!(late.audit.outcome, REJECTED_LATE);
    }

    // rule: POL-8, INPS-12 — expired leases that reach the limit lock for good, and say so once.
    #[test]
    fn expired_leases_reaching_the_limit_lock() {
        let leases = [lease(1, 5), lease(2, 5)];
        let s = reserve_rule(&tax(), counter(1), Some(1), &leases, &req(5), LeaseId(3));
        assert_eq!(s.answer, Reservation::Locked { newly: true });
        assert!(s.counter.blocked);
        let again = reserve_rule(&tax(), s.counter, Some(1), &[], &req(6), LeaseId(4));
        assert_eq!(again.answer, Reservation::Locked { newly: false });
    }

    // rule: POL-8 — a success clears, a late success on a blocked counter is Locked (final).
    #[test]
    fn settle_success_clears_unless_blocked() {
        let s = settle_rule(counter(2), Some(1), true, 1, 3, Settlement::Success, &ev());
        assert_eq!(s.counter.failures, 0);
        let blocked = Attempts {
            blocked: true,
            ..counter(3)
        };
        let s = settle_rule(blocked, Some(1), false, 1, 3, Settlement::Success, &ev());
        assert_eq!(s.answer, Settled::Locked);
        assert_eq!(s.counter, blocked);
    }

    // rule: INPS-12 — the limit-th wrong PIN blocks for good.
    #[test]
    fn limit_th_failure_blocks() {
        let s = settle_rule(counter(2), Some(1), true, 1, 3, Settlement::Failure, &ev());
        assert_eq!(
            s.answer,
            Settled::Done {
                failures: 3,
                blocked: true,
                newly_blocked: true
            }
        );
        assert_eq!(s.audit.outcome, REJECTED_NOW_LOCKED);
    }

    // rule: BOTH-1 — a settlement on a replaced credential changes nothing.
    #[test]
    fn settle_on_other_serial_is_stale() {
        let s = settle_rule(counter(2), Some(2), true, 1, 3, Settlement::Failure, &ev());
        assert_eq!(s.answer, Settled::Stale);
        assert_eq!(s.counter, counter(2));
        let r = reserve_rule(&tax(), counter(0), Some(2), &[], &req(0), LeaseId(1));
        assert_eq!(r.answer, Reservation::Stale);
    }

    #[test]
    fn leases_of_old_serials_are_dropped_uncounted() {
        let old = Lease {
            serial: 0,
            ..lease(1, 0)
        };
        let s = reserve_rule(&tax(), counter(0), Some(1), &[old], &req(10), LeaseId(2));
        assert_eq!(s.drop, vec![LeaseId(1)]);
        assert_eq!(s.counter.failures, 0);
        assert!(s.audit.is_empty());
    }
}
