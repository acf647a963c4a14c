//! An in-memory [`Store`], for tests and for callers who need no persistence.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::audit::AuditEvent;
use crate::command::AttemptsUpdate;
use crate::keycheck::KeyFingerprint;
use crate::population::{Baseline, CountRequest, FailedGuess, NetworkKey, PopulationCounts};
use crate::secret::KeyId;
use crate::store::{
    Lease, LeaseId, Loaded, Reservation, ReserveRequest, Settled, Settlement, Store, StoreError,
    next_attempts, reserve_rule, settle_rule,
};
use crate::subject::{Attempts, Profile, Subject};
use crate::tax_code::TaxCode;

#[derive(Debug, Default)]
struct Inner {
    subjects: BTreeMap<TaxCode, (Subject, u64, Attempts)>,
    leases: BTreeMap<TaxCode, Vec<Lease>>,
    next_lease: u64,
    keys: BTreeMap<KeyId, KeyFingerprint>,
    audit: Vec<AuditEvent>,
    /// Failed guesses (unix milliseconds, sorted) per network and per profile.
    by_network: BTreeMap<NetworkKey, Vec<i64>>,
    by_profile: [Vec<i64>; 2],
    baselines: [Option<Baseline>; 2],
}

fn slot(profile: Profile) -> usize {
    match profile {
        Profile::Noipa => 0,
        Profile::Inps => 1,
    }
}

/// Inserts `at` keeping `times` sorted.
fn insert_sorted(times: &mut Vec<i64>, at: i64) {
    let i = times.partition_point(|t| *t <= at);
    times.insert(i, at);
}

/// The times strictly after `since`.
fn after(times: &[i64], since: i64) -> &[i64] {
    let i = times.partition_point(|t| *t <= since);
    times.get(i..).unwrap_or_default()
}

fn from_millis(ms: i64) -> Result<chrono::DateTime<chrono::Utc>, StoreError> {
    chrono::DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| StoreError::Corrupt(format!("time out of range: {ms}")))
}

/// A [`Store`] in memory, behind one mutex. Every operation is atomic.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    /// An empty store.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-written entry: every mutation
        // below is a single assignment after all checks.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn email_taken(inner: &Inner, subject: &Subject) -> bool {
    if subject.profile() != Profile::Noipa {
        return false;
    }
    let Some(key) = subject
        .contacts
        .email
        .as_ref()
        .map(crate::contact::Email::unique_key)
    else {
        return false;
    };
    inner.subjects.values().any(|(other, _, _)| {
        other.tax_code != subject.tax_code
            && other.profile() == Profile::Noipa
            && other
                .contacts
                .email
                .as_ref()
                .map(crate::contact::Email::unique_key)
                .as_ref()
                == Some(&key)
    })
}

impl Store for MemoryStore {
    fn load(&self, tax_code: &TaxCode) -> Result<Option<Loaded>, StoreError> {
        Ok(self.lock().subjects.get(tax_code).map(|(s, v, a)| Loaded {
            subject: s.clone(),
            version: *v,
            attempts: *a,
        }))
    }

    fn create(&self, subject: &Subject, audit: &[AuditEvent]) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        if inner.subjects.contains_key(&subject.tax_code) {
            return Err(StoreError::Exists);
        }
        if email_taken(&inner, subject) {
            return Err(StoreError::EmailTaken);
        }
        let attempts = next_attempts(Attempts::default(), subject, AttemptsUpdate::Fresh);
        inner
            .subjects
            .insert(subject.tax_code.clone(), (subject.clone(), 1, attempts));
        inner.audit.extend_from_slice(audit);
        Ok(1)
    }

    fn save(
        &self,
        subject: &Subject,
        expected: u64,
        attempts: AttemptsUpdate,
        audit: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        let mut inner = self.lock();
        let (version, counter) = match inner.subjects.get(&subject.tax_code) {
            None => return Err(StoreError::NotFound),
            Some((_, v, _)) if *v != expected => return Err(StoreError::Conflict),
            Some((_, v, a)) => (*v, *a),
        };
        if email_taken(&inner, subject) {
            return Err(StoreError::EmailTaken);
        }
        let next = version.checked_add(1).ok_or(StoreError::Conflict)?;
        let counter = next_attempts(counter, subject, attempts);
        inner
            .subjects
            .insert(subject.tax_code.clone(), (subject.clone(), next, counter));
        inner.audit.extend_from_slice(audit);
        Ok(next)
    }

    fn reserve_attempt(
        &self,
        tax_code: &TaxCode,
        request: &ReserveRequest,
    ) -> Result<Reservation, StoreError> {
        let mut inner = self.lock();
        let id = LeaseId(inner.next_lease.saturating_add(1));
        let Inner {
            subjects,
            leases,
            next_lease,
            audit,
            ..
        } = &mut *inner;
        let (subject, _, counter) = subjects.get_mut(tax_code).ok_or(StoreError::NotFound)?;
        let current = subject.credential.as_ref().map(|c| c.serial);
        let mine = leases.entry(tax_code.clone()).or_default();
        let step = reserve_rule(tax_code, *counter, current, mine, request, id);
        *counter = step.counter;
        mine.retain(|l| !step.drop.contains(&l.id));
        if let Some(l) = step.insert {
            mine.push(l);
            *next_lease = id.0;
        }
        audit.extend(step.audit);
        Ok(step.answer)
    }

    fn settle_attempt(
        &self,
        tax_code: &TaxCode,
        serial: u64,
        lease: LeaseId,
        limit: u32,
        settlement: Settlement,
        event: &AuditEvent,
    ) -> Result<Settled, StoreError> {
        let mut inner = self.lock();
        let Inner {
            subjects,
            leases,
            audit,
            ..
        } = &mut *inner;
        let mine = leases.entry(tax_code.clone()).or_default();
        let live = mine.iter().any(|l| l.id == lease);
        mine.retain(|l| l.id != lease);
        let Some((subject, _, counter)) = subjects.get_mut(tax_code) else {
            return Ok(Settled::Stale);
        };
        let current = subject.credential.as_ref().map(|c| c.serial);
        let step = settle_rule(*counter, current, live, serial, limit, settlement, event);
        *counter = step.counter;
        audit.push(step.audit);
        Ok(step.answer)
    }

    fn key_fingerprints(&self) -> Result<Vec<(KeyId, KeyFingerprint)>, StoreError> {
        Ok(self.lock().keys.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn record_key_fingerprint(
        &self,
        id: KeyId,
        fingerprint: &KeyFingerprint,
    ) -> Result<KeyFingerprint, StoreError> {
        Ok(*self.lock().keys.entry(id).or_insert(*fingerprint))
    }

    fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        self.lock().audit.extend_from_slice(events);
        Ok(())
    }

    fn audit_log(&self, tax_code: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
        Ok(self
            .lock()
            .audit
            .iter()
            .filter(|e| tax_code.is_none_or(|t| &e.subject == t))
            .cloned()
            .collect())
    }

    fn hashes_per_key(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        let mut counts: BTreeMap<KeyId, u64> = BTreeMap::new();
        for (subject, _, _) in self.lock().subjects.values() {
            if let Some(c) = &subject.credential {
                *counts.entry(c.hash.key_id).or_insert(0) += 1;
            }
        }
        Ok(counts.into_iter().collect())
    }

    fn audit_page(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<crate::audit::AuditRecord>, StoreError> {
        let inner = self.lock();
        Ok((1_u64..)
            .zip(inner.audit.iter())
            .skip(usize::try_from(after).unwrap_or(usize::MAX))
            .take(limit)
            .map(|(id, event)| crate::audit::AuditRecord {
                id,
                event: event.clone(),
                link: None,
            })
            .collect())
    }

    fn awaiting_outbound(&self) -> Result<Vec<Subject>, StoreError> {
        let inner = self.lock();
        Ok(crate::store::outbound_queue(
            inner.subjects.values().map(|(s, _, _)| s.clone()),
        ))
    }

    fn due_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<TaxCode>, StoreError> {
        let inner = self.lock();
        Ok(crate::store::due_queue(
            inner
                .subjects
                .values()
                .filter_map(|(s, _, _)| s.credential.as_ref().map(|c| (&s.tax_code, c))),
            now,
            limit,
        ))
    }

    fn record_failed_guess(&self, guess: &FailedGuess) -> Result<(), StoreError> {
        let at = guess.at.timestamp_millis();
        let mut inner = self.lock();
        if let Some(n) = &guess.network {
            insert_sorted(inner.by_network.entry(n.clone()).or_default(), at);
        }
        if let Some(times) = inner.by_profile.get_mut(slot(guess.profile)) {
            insert_sorted(times, at);
        }
        Ok(())
    }

    fn population_counts(
        &self,
        request: &CountRequest<'_>,
    ) -> Result<PopulationCounts, StoreError> {
        let inner = self.lock();
        let source = request
            .network
            .and_then(|n| inner.by_network.get(n))
            .map(|t| after(t, request.source_since.timestamp_millis()))
            .unwrap_or_default();
        let since = request.population_since.timestamp_millis();
        let mut counts = PopulationCounts {
            source: source.len() as u64,
            source_oldest: source.first().map(|t| from_millis(*t)).transpose()?,
            ..PopulationCounts::default()
        };
        for p in [Profile::Noipa, Profile::Inps] {
            if let Some(times) = inner.by_profile.get(slot(p)) {
                counts.failures.push((p, after(times, since).len() as u64));
            }
            if let Some(Some(b)) = inner.baselines.get(slot(p)) {
                counts.baselines.push((p, *b));
            }
        }
        Ok(counts)
    }

    fn swap_baseline(
        &self,
        profile: Profile,
        expected: Option<&Baseline>,
        next: &Baseline,
    ) -> Result<bool, StoreError> {
        let mut inner = self.lock();
        let Some(cell) = inner.baselines.get_mut(slot(profile)) else {
            return Ok(false);
        };
        if cell.map(|b| b.folded_at) != expected.map(|b| b.folded_at) {
            return Ok(false);
        }
        *cell = Some(*next);
        Ok(true)
    }

    fn prune_failed_guesses(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        let before = before.timestamp_millis();
        let mut inner = self.lock();
        let Inner {
            by_network,
            by_profile,
            ..
        } = &mut *inner;
        let mut pruned = 0u64;
        for times in by_profile.iter_mut() {
            let i = times.partition_point(|t| *t <= before);
            times.drain(..i);
            pruned += i as u64;
        }
        for times in by_network.values_mut() {
            let i = times.partition_point(|t| *t <= before);
            times.drain(..i);
        }
        by_network.retain(|_, t| !t.is_empty());
        Ok(pruned)
    }

    fn top_sources(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<(NetworkKey, u64)>, StoreError> {
        let since = since.timestamp_millis();
        let inner = self.lock();
        let mut top: Vec<(NetworkKey, u64)> = inner
            .by_network
            .iter()
            .map(|(n, t)| (n.clone(), after(t, since).len() as u64))
            .filter(|(_, c)| *c > 0)
            .collect();
        top.sort_by(|(a, x), (b, y)| y.cmp(x).then_with(|| a.cmp(b)));
        top.truncate(limit);
        Ok(top)
    }
}
