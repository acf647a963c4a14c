//! Verifying a PIN, in three steps that let the store count the attempt *before* the
//! compare — as a smart card decrements its try counter first — so that neither
//! concurrency nor a crash can give an attacker a free guess:
//!
//! 1. [`plan`]: from the record and counter, either an outcome that needs no compare
//!    (locked, no PIN, expired unused PIN) or [`Plan::Compare`].
//! 2. The driver checks that the stored hash is usable by its configuration (a wrong key or
//!    test-only parameters are an error, before anything is counted), reserves an attempt
//!    in the store (a durable lease, [`crate::attempts`]: granted while wrong comparisons
//!    plus compares in flight stay under the limit, `TryLater` when compares in flight fill
//!    the rest, `Locked` only for good), then compares with the [`crate::hash::Hasher`]
//!    outside any storage lock.
//! 3. [`finish`]: what the compare means — the proof of authentication when the PIN
//!    matched, the settlement for the store and the record update (first use confirms
//!    delivery, NOIPA-7); the store's settlement then gives the outcome
//!    ([`Finished::outcome`]).
//!
//! Consecutive failures reset only on success; a compare that matched never adds to them
//! (POL-8). A blocked PIN stays blocked for good (POL-5).

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::actor::Actor;
use crate::audit::AuditEvent;
use crate::command::Authenticated;
use crate::format::PinFormat;
use crate::hash::{Compared, PinHash};
use crate::policy::Policy;
use crate::subject::{Attempts, DeliveryState, Level, Profile, Stage, Subject};

/// Why the PIN is being verified.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Purpose {
    /// Access to a service requiring `required` (INPS-1; ignored for NoiPA's single level).
    Access {
        /// The level the service requires.
        required: Level,
    },
    /// Authenticate to change the PIN (INPS-3, INPS-11): an initial or expired PIN is
    /// enough.
    Change,
    /// Prove the first half of a pre-assigned PIN (INPS-8).
    Activate,
}

/// Why a correct PIN no longer opens anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExpiryReason {
    /// The periodic change is due (INPS-11): change the PIN.
    Rotation,
    /// The PIN was issued and never used within its validity, so it can no longer be used:
    /// ask for a new one. The input was **not** compared: the answer is the same for a right
    /// and a wrong PIN, and costs the same.
    UnusedInitial,
}

/// What a verify tells the caller — what a PKCS#11 token would.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
#[must_use]
pub enum VerifyOutcome {
    /// The PIN is right and opens the service.
    Accepted {
        /// Level of the PIN.
        level: Level,
        /// When the periodic change falls due, if the role rotates.
        rotation_due: Option<DateTime<Utc>>,
        /// This was the first use, which confirmed the delivery (NOIPA-7).
        first_use: bool,
    },
    /// The PIN is wrong.
    Rejected {
        /// Attempts left before the PIN is blocked.
        remaining_attempts: u32,
        /// The next wrong attempt blocks the PIN.
        final_try: bool,
    },
    /// The PIN is blocked for good (INPS-12, POL-1); only a new issue helps (POL-5). Said
    /// only of a lock made permanent by wrong PINs: it is final.
    Locked,
    /// Not checked now, and not counted: other attempts on this PIN are still being
    /// compared and together they fill what is left of the attempt budget. Retry after
    /// `retry_after`; the PIN is not locked (POL-8).
    TryLater {
        /// How long to wait before retrying.
        #[serde(rename = "retry_after_secs", serialize_with = "ceil_secs")]
        retry_after: std::time::Duration,
    },
    /// The PIN is right but is the 16-character initial one: change it first (INPS-3).
    MustChange,
    /// The PIN can no longer be used: its periodic change is due (the PIN given was right),
    /// or it was never used in time (the input was not compared; see [`ExpiryReason`]).
    Expired {
        /// Why.
        reason: ExpiryReason,
    },
    /// The PIN is right but of a lower level than the service requires (INPS-1).
    InsufficientLevel {
        /// The PIN's level.
        have: Level,
        /// The service's requirement.
        need: Level,
    },
    /// There is no usable PIN (also the answer for a subject not on record, at the same
    /// cost).
    NoPin,
    /// Not checked now, and not counted: the service is in defended mode against a spray of
    /// guesses across many people ([`crate::population`]) and this source is not trusted.
    /// Run a challenge (a CAPTCHA, a proof of work) and retry with its proof; the PIN is not
    /// locked (POL-8).
    ChallengeRequired,
}

impl VerifyOutcome {
    /// A stable snake-case name (`accepted`, `rejected`, `locked`, …).
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Accepted { .. } => "accepted",
            Self::Rejected { .. } => "rejected",
            Self::Locked => "locked",
            Self::TryLater { .. } => "try_later",
            Self::MustChange => "must_change",
            Self::Expired { .. } => "expired",
            Self::InsufficientLevel { .. } => "insufficient_level",
            Self::NoPin => "no_pin",
            Self::ChallengeRequired => "challenge_required",
        }
    }
}

/// Serialises a duration as whole seconds, rounded up (a client told "retry after 0 s"
/// would retry at once).
fn ceil_secs<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
    s.serialize_u64(secs)
}

/// Step 1's answer.
#[derive(Debug)]
#[must_use]
pub enum Plan {
    /// No compare is needed: this is the outcome. The driver still performs a dummy verify
    /// when `dummy` is set, so that the answer costs the same as a real compare.
    Done {
        /// The outcome.
        outcome: VerifyOutcome,
        /// Spend the cost of a hash.
        dummy: bool,
        /// Audit event to append, if any.
        audit: Option<AuditEvent>,
    },
    /// Reserve an attempt on `serial` under `limit`, then compare the input, parsed as
    /// `format`, with `hash`.
    Compare {
        /// Credential serial.
        serial: u64,
        /// Lockout limit.
        limit: u32,
        /// How to parse the input.
        format: PinFormat,
        /// The stored hash.
        hash: PinHash,
    },
}

/// The audit event of a verify of `subject` for `purpose` that ended with `outcome`.
#[must_use]
pub fn audit_event(
    subject: &Subject,
    now: DateTime<Utc>,
    purpose: Purpose,
    outcome: &str,
) -> AuditEvent {
    AuditEvent {
        at: now,
        subject: subject.tax_code.clone(),
        actor: Actor::Subject.label(),
        action: match purpose {
            Purpose::Access { .. } => "verify",
            Purpose::Change => "authenticate_for_change",
            Purpose::Activate => "authenticate_for_activation",
        }
        .to_owned(),
        outcome: outcome.to_owned(),
        serial: subject.credential.as_ref().map(|c| c.serial),
        channels: Vec::new(),
        detail: String::new(),
    }
}

/// Step 1: decides whether a compare is needed.
pub fn plan(
    subject: Option<&Subject>,
    attempts: &Attempts,
    purpose: Purpose,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Plan {
    let none = |audit| Plan::Done {
        outcome: VerifyOutcome::NoPin,
        dummy: true,
        audit,
    };
    let Some(subject) = subject else {
        return none(None);
    };
    let Some(cred) = subject.credential.as_ref() else {
        return none(Some(audit_event(subject, now, purpose, "no_pin")));
    };
    let wanted_stage = match purpose {
        Purpose::Activate => cred.stage == Stage::AwaitingActivation,
        Purpose::Access { .. } | Purpose::Change => cred.stage != Stage::AwaitingActivation,
    };
    if !wanted_stage {
        return none(Some(audit_event(subject, now, purpose, "no_pin")));
    }
    let limit = policy.lockout(subject.profile());
    // Only a lock made permanent is answered here. A count at the limit that is not yet
    // blocked (compares still running) goes to the store's reservation, which refuses it
    // and blocks for good in the same step — so every `Locked` answer is final.
    if attempts.serial == cred.serial && attempts.blocked {
        return Plan::Done {
            outcome: VerifyOutcome::Locked,
            dummy: true,
            audit: Some(audit_event(subject, now, purpose, "locked")),
        };
    }
    if cred.unused_deadline(policy).is_some_and(|d| now >= d) {
        return Plan::Done {
            outcome: VerifyOutcome::Expired {
                reason: ExpiryReason::UnusedInitial,
            },
            dummy: true,
            audit: Some(audit_event(subject, now, purpose, "expired_unused")),
        };
    }
    Plan::Compare {
        serial: cred.serial,
        limit,
        format: cred.format,
        hash: cred.hash.clone(),
    }
}

pub use crate::attempts::{Reservation, Settled, Settlement};

/// Step 3's answer: what the compare means, before the store settles it.
#[derive(Debug)]
#[must_use]
pub struct Finished {
    /// What the compare means when it is settled as counted ([`Finished::outcome`]).
    matched: Option<VerifyOutcome>,
    /// The lockout limit.
    limit: u32,
    /// Proof for a follow-up command, when the PIN matched and the purpose allows it.
    pub proof: Option<Authenticated>,
    /// How to settle the reservation.
    pub settle: Settlement,
    /// The record to save (compare-and-swap) when the first use confirms delivery.
    pub update: Option<Subject>,
    /// Audit event, stored with the settlement (the store's rule makes its outcome exact).
    pub audit: AuditEvent,
}

impl Finished {
    /// The outcome, once the store answered the settlement; `None` when the credential was
    /// replaced meanwhile ([`Settled::Stale`]) and the driver must plan again.
    #[must_use]
    pub fn outcome(&self, settled: Settled) -> Option<VerifyOutcome> {
        match (settled, self.matched) {
            (Settled::Stale, _) => None,
            (Settled::Locked, _) => Some(VerifyOutcome::Locked),
            (Settled::Done { .. }, Some(outcome)) => Some(outcome),
            (Settled::Done { blocked: true, .. }, None) => Some(VerifyOutcome::Locked),
            (Settled::Done { failures, .. }, None) => {
                let remaining = self.limit.saturating_sub(failures).max(1);
                Some(VerifyOutcome::Rejected {
                    remaining_attempts: remaining,
                    final_try: remaining == 1,
                })
            }
        }
    }
}

/// Step 3: what a compare means. The failures, and so the answer to a wrong PIN, come from
/// the store's settlement ([`Finished::outcome`]).
pub fn finish(
    subject: &Subject,
    compared: &Compared,
    purpose: Purpose,
    now: DateTime<Utc>,
    policy: &Policy,
) -> Finished {
    let limit = policy.lockout(subject.profile());
    let matched = subject
        .credential
        .as_ref()
        .is_some_and(|c| compared.matched(&c.hash));
    let wrong = |audit| Finished {
        matched: None,
        limit,
        proof: None,
        settle: Settlement::Failure,
        update: None,
        audit,
    };
    let Some(cred) = subject.credential.as_ref() else {
        return wrong(audit_event(subject, now, purpose, "no_pin"));
    };
    if !matched {
        return wrong(audit_event(
            subject,
            now,
            purpose,
            crate::attempts::REJECTED,
        ));
    }
    let first_use = cred.first_used_at.is_none();
    let update = first_use.then(|| {
        let mut next = subject.clone();
        if let Some(c) = next.credential.as_mut() {
            if c.stage != Stage::AwaitingActivation {
                c.first_used_at = Some(now);
            }
            for p in &mut c.parts {
                if p.state != DeliveryState::Confirmed {
                    p.set_state(DeliveryState::Confirmed, now);
                }
            }
        }
        next
    });
    let proof = Authenticated {
        purpose,
        at: now,
        subject: subject.tax_code.clone(),
        serial: cred.serial,
        stage: cred.stage,
    };
    let rotation_due = cred.rotation_due(subject.role, policy);
    let expired = rotation_due.is_some_and(|d| now >= d);
    let (outcome, proof) = match purpose {
        Purpose::Activate => (
            VerifyOutcome::Accepted {
                level: cred.level,
                rotation_due: None,
                first_use,
            },
            Some(proof),
        ),
        Purpose::Change => (
            if cred.stage == Stage::MustChange {
                VerifyOutcome::MustChange
            } else if expired {
                VerifyOutcome::Expired {
                    reason: ExpiryReason::Rotation,
                }
            } else {
                VerifyOutcome::Accepted {
                    level: cred.level,
                    rotation_due,
                    first_use,
                }
            },
            Some(proof),
        ),
        Purpose::Access { required } => {
            if cred.stage == Stage::MustChange {
                (VerifyOutcome::MustChange, None)
            } else if expired {
                (
                    VerifyOutcome::Expired {
                        reason: ExpiryReason::Rotation,
                    },
                    None,
                )
            } else if subject.profile() == Profile::Inps && cred.level < required {
                (
                    VerifyOutcome::InsufficientLevel {
                        have: cred.level,
                        need: required,
                    },
                    None,
                )
            } else {
                (
                    VerifyOutcome::Accepted {
                        level: cred.level,
                        rotation_due,
                        first_use,
                    },
                    Some(proof),
                )
            }
        }
    };
    let audit = audit_event(subject, now, purpose, outcome.name());
    Finished {
        matched: Some(outcome),
        limit,
        proof,
        settle: Settlement::Success,
        update,
        audit,
    }
}
