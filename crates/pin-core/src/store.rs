//! The storage port.
//!
//! A store keeps, per subject: the [`Subject`] record with a version for compare-and-swap
//! saves, the [`Attempts`] counter and the [`Lease`]s in flight beside it, the pepper-key
//! fingerprints, and an append-only audit log. The counter is changed only by
//! [`Store::reserve_attempt`] and [`Store::settle_attempt`] — atomic steps inside the store
//! (a transaction, a mutex) that apply the shared rules of [`crate::attempts`] — and by the
//! [`AttemptsUpdate`] rule of a save; never by a read-modify-write in the caller, so that
//! no race and no crash can give an attacker a free guess, and none can count a right PIN
//! as a wrong one (POL-8).
//!
//! Every implementation must pass the conformance suite, `pin_core::conformance` (feature
//! `conformance`).

pub use crate::attempts::{
    Lease, LeaseId, Reservation, ReserveRequest, ReserveStep, SettleStep, Settled, Settlement,
    reserve_rule, settle_rule,
};
use chrono::{DateTime, Utc};

use crate::audit::{AuditEvent, AuditRecord};
use crate::command::AttemptsUpdate;
use crate::keycheck::KeyFingerprint;
pub use crate::population::{Baseline, CountRequest, FailedGuess, NetworkKey, PopulationCounts};
use crate::secret::KeyId;
use crate::subject::Profile;
use crate::subject::{Attempts, Subject};
use crate::tax_code::TaxCode;

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

    /// Atomically and durably reserves one attempt on credential `request.serial` before
    /// its compare, by applying [`reserve_rule`] to the subject's counter and leases in one
    /// atomic step and writing back everything it returns (counter, leases dropped and
    /// inserted, audit events). The answer is the rule's.
    ///
    /// # Errors
    /// [`StoreError::NotFound`] or a backend failure; on error nothing was changed.
    fn reserve_attempt(
        &self,
        tax_code: &TaxCode,
        request: &ReserveRequest,
    ) -> Result<Reservation, StoreError>;

    /// Settles reservation `lease` on credential `serial`, by applying [`settle_rule`] in
    /// one atomic step: deletes the lease, writes back the counter and appends the audit
    /// event the rule returns. The answer is the rule's.
    ///
    /// # Errors
    /// A backend failure; on error nothing was changed.
    fn settle_attempt(
        &self,
        tax_code: &TaxCode,
        serial: u64,
        lease: LeaseId,
        limit: u32,
        settlement: Settlement,
        audit: &AuditEvent,
    ) -> Result<Settled, StoreError>;

    /// The pepper-key fingerprints recorded in the store: one per key id that hashes in it
    /// were made with ([`crate::keycheck`]).
    ///
    /// # Errors
    /// A backend failure.
    fn key_fingerprints(&self) -> Result<Vec<(KeyId, KeyFingerprint)>, StoreError>;

    /// Records the fingerprint of key `id` unless one is recorded already (then nothing is
    /// changed, whatever the value); returns the fingerprint on record afterwards.
    ///
    /// # Errors
    /// A backend failure.
    fn record_key_fingerprint(
        &self,
        id: KeyId,
        fingerprint: &KeyFingerprint,
    ) -> Result<KeyFingerprint, StoreError>;

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

    /// At most `limit` rows of the whole audit log, in order, after row id `after` (0: from
    /// the start): a page, so that a reader (an export) walks a log of any size with bounded
    /// memory, asking for the next page after the last id it got. An empty page is the end.
    ///
    /// The default, for stores written before this method, reads the whole log with
    /// [`Store::audit_log`] for every page (its memory grows with the log), numbers the
    /// events 1, 2, 3, … and gives no chain links; the SQL stores override it with one
    /// indexed query per page and the links of their chain.
    ///
    /// # Errors
    /// A backend failure or a corrupt row.
    fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        Ok((1_u64..)
            .zip(self.audit_log(None)?)
            .skip(usize::try_from(after).unwrap_or(usize::MAX))
            .take(limit)
            .map(|(id, event)| AuditRecord {
                id,
                event,
                link: None,
            })
            .collect())
    }

    /// How many stored PIN hashes each pepper key still protects: one `(key id, count)` per
    /// key id that at least one current credential's hash was made with, by ascending id.
    /// A key may be retired only when none does (its PINs could not be verified any more).
    ///
    /// The default refuses: a store that cannot count says so, rather than a key being
    /// retired on the strength of a count of zero that was never taken.
    ///
    /// # Errors
    /// A backend failure.
    fn hashes_per_key(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        Err(StoreError::Backend(
            "this store does not count the hashes per pepper key (Store::hashes_per_key)".into(),
        ))
    }

    /// The subjects whose request waits for the outbound contact-centre call (INPS-6,
    /// INPS-7), oldest request first (ties by tax code): the queue the operators work.
    /// Implementations select the records and order them with [`outbound_queue`]; the
    /// default, for stores written before this method, answers [`StoreError::Backend`]
    /// saying that the store does not list the queue.
    ///
    /// # Errors
    /// A backend failure or a corrupt row.
    fn awaiting_outbound(&self) -> Result<Vec<Subject>, StoreError> {
        Err(StoreError::Backend(
            "this store does not list the requests waiting for the outbound call".into(),
        ))
    }

    /// The tax codes of at most `limit` subjects with a part in the delivery queue due at
    /// `now` ([`crate::delivery::next_due`] ≤ `now`, compared in whole seconds; the driver
    /// checks each part exactly), earliest due first, ties by tax code. A store may return a
    /// subject whose part is no longer due (the driver re-reads the record); it must not
    /// leave out one that is, beyond `limit`.
    ///
    /// The default refuses: a store that cannot find due deliveries says so, rather than a
    /// worker silently never delivering.
    ///
    /// # Errors
    /// A backend failure.
    fn due_deliveries(&self, now: DateTime<Utc>, limit: usize) -> Result<Vec<TaxCode>, StoreError> {
        let _ = (now, limit);
        Err(StoreError::Backend(
            "this store keeps no delivery queue (Store::due_deliveries)".into(),
        ))
    }

    /// Records one failed guess for the population defence ([`crate::population`]): one
    /// row, written on its own (no transaction with the attempt counter, which stays the
    /// person's). The default refuses: a store that keeps no population counters says so.
    ///
    /// # Errors
    /// A backend failure.
    fn record_failed_guess(&self, guess: &FailedGuess) -> Result<(), StoreError> {
        let _ = guess;
        Err(no_population("record_failed_guess"))
    }

    /// Counts failed guesses for a decision: of `request.network` strictly after
    /// `request.source_since` (and the oldest of them), of each profile strictly after
    /// `request.population_since` — later ones included, whatever `now` the caller has —
    /// and the baselines on record. The default refuses.
    ///
    /// # Errors
    /// A backend failure or a corrupt row.
    fn population_counts(
        &self,
        request: &CountRequest<'_>,
    ) -> Result<PopulationCounts, StoreError> {
        let _ = request;
        Err(no_population("population_counts"))
    }

    /// Replaces the baseline of `profile` with `next` if the one on record is still
    /// `expected` (`None`: none on record) — compare and swap on its `folded_at` — and
    /// returns whether it did. The default refuses.
    ///
    /// # Errors
    /// A backend failure.
    fn swap_baseline(
        &self,
        profile: Profile,
        expected: Option<&Baseline>,
        next: &Baseline,
    ) -> Result<bool, StoreError> {
        let _ = (profile, expected, next);
        Err(no_population("swap_baseline"))
    }

    /// Deletes the failed guesses at or before `before`; returns how many. The default
    /// refuses.
    ///
    /// # Errors
    /// A backend failure.
    fn prune_failed_guesses(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
        let _ = before;
        Err(no_population("prune_failed_guesses"))
    }

    /// The at most `limit` networks with most failed guesses strictly after `since`, most
    /// first, ties by network. The default refuses.
    ///
    /// # Errors
    /// A backend failure or a corrupt row.
    fn top_sources(
        &self,
        since: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(NetworkKey, u64)>, StoreError> {
        let _ = (since, limit);
        Err(no_population("top_sources"))
    }
}

/// The refusal of a store that keeps no population counters.
fn no_population(method: &str) -> StoreError {
    StoreError::Backend(format!("this store keeps no population counters (Store::{method})").into())
}

/// The tax codes among `credentials` due at `now`, earliest first, ties by tax code, at most
/// `limit`: the shared rule of [`Store::due_deliveries`] for stores that scan.
pub fn due_queue<'a>(
    credentials: impl IntoIterator<Item = (&'a TaxCode, &'a crate::subject::Credential)>,
    now: DateTime<Utc>,
    limit: usize,
) -> Vec<TaxCode> {
    let mut due: Vec<(i64, &TaxCode)> = credentials
        .into_iter()
        .filter_map(|(t, c)| crate::delivery::next_due(c).map(|d| (d.timestamp(), t)))
        .filter(|(d, _)| *d <= now.timestamp())
        .collect();
    due.sort();
    due.into_iter()
        .take(limit)
        .map(|(_, t)| t.clone())
        .collect()
}

/// The records of `subjects` that wait for the outbound call, oldest request first, ties
/// by tax code: the shared rule every store applies for [`Store::awaiting_outbound`].
pub fn outbound_queue(subjects: impl IntoIterator<Item = Subject>) -> Vec<Subject> {
    let mut waiting: Vec<(DateTime<Utc>, Subject)> = subjects
        .into_iter()
        .filter_map(|s| match s.pending {
            crate::subject::Pending::OutboundVerification { since, .. } => Some((since, s)),
            crate::subject::Pending::None => None,
        })
        .collect();
    waiting.sort_by(|(a, x), (b, y)| (a, &x.tax_code).cmp(&(b, &y.tax_code)));
    waiting.into_iter().map(|(_, s)| s).collect()
}

/// Forwards every method of [`Store`], provided ones included (a store that overrides
/// [`Store::create_many`] or [`Store::awaiting_outbound`] keeps its own behind a pointer).
macro_rules! forward_store {
    ($($ty:ty),+) => {$(
        impl<S: Store + ?Sized> Store for $ty {
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
            fn reserve_attempt(&self, t: &TaxCode, r: &ReserveRequest) -> Result<Reservation, StoreError> {
                (**self).reserve_attempt(t, r)
            }
            fn settle_attempt(
                &self,
                t: &TaxCode,
                s: u64,
                l: LeaseId,
                limit: u32,
                x: Settlement,
                a: &AuditEvent,
            ) -> Result<Settled, StoreError> {
                (**self).settle_attempt(t, s, l, limit, x, a)
            }
            fn key_fingerprints(&self) -> Result<Vec<(KeyId, KeyFingerprint)>, StoreError> {
                (**self).key_fingerprints()
            }
            fn record_key_fingerprint(
                &self,
                id: KeyId,
                f: &KeyFingerprint,
            ) -> Result<KeyFingerprint, StoreError> {
                (**self).record_key_fingerprint(id, f)
            }
            fn append_audit(&self, e: &[AuditEvent]) -> Result<(), StoreError> {
                (**self).append_audit(e)
            }
            fn audit_log(&self, t: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
                (**self).audit_log(t)
            }
            fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
                (**self).audit_page(after, limit)
            }
            fn hashes_per_key(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
                (**self).hashes_per_key()
            }
            fn awaiting_outbound(&self) -> Result<Vec<Subject>, StoreError> {
                (**self).awaiting_outbound()
            }
            fn due_deliveries(
                &self,
                now: DateTime<Utc>,
                limit: usize,
            ) -> Result<Vec<TaxCode>, StoreError> {
                (**self).due_deliveries(now, limit)
            }
            fn record_failed_guess(&self, g: &FailedGuess) -> Result<(), StoreError> {
                (**self).record_failed_guess(g)
            }
            fn population_counts(
                &self,
                r: &CountRequest<'_>,
            ) -> Result<PopulationCounts, StoreError> {
                (**self).population_counts(r)
            }
            fn swap_baseline(
                &self,
                p: Profile,
                e: Option<&Baseline>,
                n: &Baseline,
            ) -> Result<bool, StoreError> {
                (**self).swap_baseline(p, e, n)
            }
            fn prune_failed_guesses(&self, before: DateTime<Utc>) -> Result<u64, StoreError> {
                (**self).prune_failed_guesses(before)
            }
            fn top_sources(
                &self,
                since: DateTime<Utc>,
                limit: usize,
            ) -> Result<Vec<(NetworkKey, u64)>, StoreError> {
                (**self).top_sources(since, limit)
            }
        }
    )+};
}

forward_store!(&S, Box<S>, std::sync::Arc<S>);

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
