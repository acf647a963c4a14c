//! An in-memory [`Store`], for tests and for callers who need no persistence.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::audit::AuditEvent;
use crate::command::AttemptsUpdate;
use crate::keycheck::KeyFingerprint;
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
}
