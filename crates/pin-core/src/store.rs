//! The storage port.
//!
//! A store keeps, per subject: the [`Subject`] record with a version for compare-and-swap
//! saves, the [`Attempts`] counter beside it, and an append-only audit log. The counter is
//! changed only by [`Store::reserve_attempt`] and [`Store::settle_attempt`] — atomic
//! operations inside the store (an SQL `UPDATE … RETURNING`, a mutex) — and by the
//! [`AttemptsUpdate`] rule of a save; never by a read-modify-write in the caller, so that
//! no race and no crash can give an attacker a free guess.
//!
//! Every implementation must pass the conformance suite, `pin_core::conformance` (feature
//! `conformance`).

use crate::audit::AuditEvent;
use crate::command::AttemptsUpdate;
use crate::subject::{Attempts, Subject};
use crate::tax_code::TaxCode;
use crate::verify::{Reservation, Settlement};

/// A record as loaded, with its version and attempt counter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Loaded {
    /// The record.
    pub subject: Subject,
    /// Its version, for [`Store::save`].
    pub version: u64,
    /// The attempt counter of the current credential.
    pub attempts: Attempts,
}

/// A storage failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record changed since it was loaded (compare-and-swap failed).
    #[error("the record changed since it was loaded")]
    Conflict,
    /// A subject with this tax code already exists.
    #[error("a subject with this tax code already exists")]
    Exists,
    /// A subject with this tax code does not exist.
    #[error("no such subject")]
    NotFound,
    /// The NoiPA e-mail address is taken by another subject (NOIPA-8).
    #[error("the e-mail address is already registered to another NoiPA user")]
    EmailTaken,
    /// Stored data could not be read back as a valid record.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The backend failed (I/O, database).
    #[error("{0}")]
    Backend(Box<dyn std::error::Error + Send + Sync>),
    /// The backend is busy: another writer held the lock past the store's busy deadline, or
    /// every connection of a pool is in use. Nothing was changed; retrying later may
    /// succeed ([`StoreError::is_retryable`]).
    #[error("the database is busy; nothing was changed, retry shortly ({0})")]
    Busy(Box<dyn std::error::Error + Send + Sync>),
    /// The backend cannot be reached or refuses connections (a server down, restarting, or
    /// out of connection slots). Nothing was changed; retrying later may succeed.
    #[error("the database is unavailable; nothing was changed, retry later ({0})")]
    Unavailable(Box<dyn std::error::Error + Send + Sync>),
}

impl StoreError {
    /// Whether the same call may succeed later unchanged: the store was busy, unreachable,
    /// or the record moved under a compare-and-swap. Corrupt data, a missing subject or a
    /// taken e-mail address are not retryable.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Conflict | Self::Busy(_) | Self::Unavailable(_))
    }
}

/// Persistent storage of subjects, attempt counters and the audit log.
pub trait Store {
    /// Loads a subject.
    ///
    /// # Errors
    /// [`StoreError`] when the backend fails or the row is corrupt.
    fn load(&self, tax_code: &TaxCode) -> Result<Option<Loaded>, StoreError>;

    /// Creates a subject (version 1) with a fresh counter for its credential, and appends
    /// `audit`, atomically.
    ///
    /// # Errors
    /// [`StoreError::Exists`], [`StoreError::EmailTaken`], or a backend failure.
    fn create(&self, subject: &Subject, audit: &[AuditEvent]) -> Result<u64, StoreError>;

    /// Creates many subjects at once, for bulk import. The default creates them one by one;
    /// a store that can should do it in one transaction (all or nothing).
    ///
    /// # Errors
    /// As [`Store::create`], for the first subject that fails.
    fn create_many(&self, batch: &[(Subject, Vec<AuditEvent>)]) -> Result<(), StoreError> {
        for (subject, audit) in batch {
            let _ = self.create(subject, audit)?;
        }
        Ok(())
    }

    /// Creates the subjects that `batch` yields, in order, for a bulk import that streams:
    /// all or nothing, and the count created. An `Err` from `batch` stops the import: the
    /// store writes nothing and returns that error.
    ///
    /// A store that overrides it (SQLite does) pulls one subject at a time into one
    /// transaction, so its memory does not grow with the batch, and a subject it refuses
    /// is the last one pulled. The default collects the whole batch and calls
    /// [`Store::create_many`]: all or nothing only where that is, and its memory grows
    /// with the batch.
    ///
    /// # Errors
    /// The first `Err` of `batch`, or as [`Store::create_many`].
    fn create_streamed(
        &self,
        batch: &mut dyn Iterator<Item = Result<(Subject, Vec<AuditEvent>), StoreError>>,
    ) -> Result<u64, StoreError> {
        let all = batch.collect::<Result<Vec<_>, StoreError>>()?;
        self.create_many(&all)?;
        Ok(u64::try_from(all.len()).unwrap_or(u64::MAX))
    }

    /// Replaces the record if its version is still `expected`, applies `attempts` to the
    /// counter, and appends `audit`, atomically. Returns the new version.
    ///
    /// # Errors
    /// [`StoreError::Conflict`] when the version moved, [`StoreError::NotFound`],
    /// [`StoreError::EmailTaken`], or a backend failure.
    fn save(
        &self,
        subject: &Subject,
        expected: u64,
        attempts: AttemptsUpdate,
        audit: &[AuditEvent],
    ) -> Result<u64, StoreError>;

    /// Atomically and durably counts one attempt on credential `serial` before its compare:
    /// refused ([`Reservation::Locked`]) when the counter is blocked or at `limit` — and a
    /// refusal at the limit blocks the counter for good in the same atomic step, so a lock
    /// anyone was told about is never re-opened — and [`Reservation::Stale`] when `serial`
    /// is not the subject's current credential.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or a backend failure.
    fn reserve_attempt(
        &self,
        tax_code: &TaxCode,
        serial: u64,
        limit: u32,
    ) -> Result<Reservation, StoreError>;

    /// Settles a granted reservation and appends `audit`, atomically ([`settle_rule`]):
    /// `Success { reserved }` clears the failures counted up to that reservation unless the
    /// counter is blocked; `Failure` blocks the counter for good once failures reach
    /// `limit`. Returns whether `serial` is still the subject's current credential; when it
    /// is not, the counter is left alone and the caller must not report the compare's
    /// outcome (the PIN it checked is no longer valid, BOTH-1).
    ///
    /// # Errors
    /// A backend failure.
    fn settle_attempt(
        &self,
        tax_code: &TaxCode,
        serial: u64,
        limit: u32,
        settlement: Settlement,
        audit: &AuditEvent,
    ) -> Result<bool, StoreError>;

    /// Appends audit events that come with no record change.
    ///
    /// # Errors
    /// A backend failure.
    fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError>;

    /// The audit log, oldest first; of one subject, or of all.
    ///
    /// # Errors
    /// A backend failure or a corrupt row.
    fn audit_log(&self, tax_code: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError>;
}

impl<S: Store + ?Sized> Store for &S {
    fn load(&self, t: &TaxCode) -> Result<Option<Loaded>, StoreError> {
        (**self).load(t)
    }
    fn create(&self, s: &Subject, a: &[AuditEvent]) -> Result<u64, StoreError> {
        (**self).create(s, a)
    }
    fn create_many(&self, b: &[(Subject, Vec<AuditEvent>)]) -> Result<(), StoreError> {
        (**self).create_many(b)
    }
    fn create_streamed(
        &self,
        b: &mut dyn Iterator<Item = Result<(Subject, Vec<AuditEvent>), StoreError>>,
    ) -> Result<u64, StoreError> {
        (**self).create_streamed(b)
    }
    fn save(
        &self,
        s: &Subject,
        e: u64,
        u: AttemptsUpdate,
        a: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        (**self).save(s, e, u, a)
    }
    fn reserve_attempt(&self, t: &TaxCode, s: u64, l: u32) -> Result<Reservation, StoreError> {
        (**self).reserve_attempt(t, s, l)
    }
    fn settle_attempt(
        &self,
        t: &TaxCode,
        s: u64,
        l: u32,
        x: Settlement,
        a: &AuditEvent,
    ) -> Result<bool, StoreError> {
        (**self).settle_attempt(t, s, l, x, a)
    }
    fn append_audit(&self, e: &[AuditEvent]) -> Result<(), StoreError> {
        (**self).append_audit(e)
    }
    fn audit_log(&self, t: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
        (**self).audit_log(t)
    }
}

/// The counter a save leaves behind: the shared rule every store applies.
#[must_use]
pub fn next_attempts(previous: Attempts, subject: &Subject, update: AttemptsUpdate) -> Attempts {
    let serial = subject.credential.as_ref().map_or(0, |c| c.serial);
    match update {
        AttemptsUpdate::Keep => previous,
        AttemptsUpdate::Fresh => Attempts {
            serial,
            failures: 0,
            blocked: false,
        },
        AttemptsUpdate::CarryOver => Attempts { serial, ..previous },
    }
}

/// The reservation rule every store applies atomically: returns the answer and the new
/// counter.
#[must_use]
pub fn reserve_rule(
    counter: Attempts,
    current_serial: Option<u64>,
    serial: u64,
    limit: u32,
) -> (Reservation, Attempts) {
    if current_serial != Some(serial) || counter.serial != serial {
        return (Reservation::Stale, counter);
    }
    if counter.is_locked(limit) {
        // Once anyone has been told "locked", the lock is for good: a correct PIN whose
        // compare is still running cannot re-open it by settling a success.
        return (
            Reservation::Locked,
            Attempts {
                blocked: true,
                ..counter
            },
        );
    }
    let failures = counter.failures.saturating_add(1);
    (
        Reservation::Granted { failures },
        Attempts {
            failures,
            ..counter
        },
    )
}

/// The settlement rule every store applies atomically.
#[must_use]
pub fn settle_rule(counter: Attempts, serial: u64, limit: u32, settlement: Settlement) -> Attempts {
    if counter.serial != serial {
        return counter;
    }
    match settlement {
        Settlement::Success { reserved } if !counter.blocked => Attempts {
            failures: counter.failures.saturating_sub(reserved),
            ..counter
        },
        Settlement::Success { .. } => counter,
        Settlement::Failure { reserved } => Attempts {
            blocked: counter.blocked || counter.failures >= limit || reserved >= limit,
            ..counter
        },
    }
}
