//! # Plugging in your own `Store` and your own `Notifier`
//!
//! What it shows:
//! - **A store**: `HashMapStore`, a `HashMap` behind a `Mutex`. A `Store` implements nine
//!   methods — `load`, `create`, `save`, `reserve_attempt`, `settle_attempt`,
//!   `key_fingerprints`, `record_key_fingerprint`, `append_audit`, `audit_log` — and
//!   `awaiting_outbound` for the contact centre's queue, the population counters
//!   (`record_failed_guess`, `population_counts`, `swap_baseline`, `prune_failed_guesses`,
//!   `top_sources`: their defaults refuse, so a service with the population defence needs
//!   them) (`create_many` and
//!   `create_streamed` have defaults; override them when your backend has transactions). Each
//!   must be atomic. The attempt rules are shared functions (`next_attempts`,
//!   `reserve_rule`, `settle_rule`): a store reads the counter and the leases in flight,
//!   applies the rule under its lock or transaction and writes back what it returns; and a
//!   NoiPA e-mail address must stay unique (NOIPA-8).
//! - **The proof**: `pin_core::conformance::run_all` (feature `conformance` of pin-core)
//!   runs the suite every store must pass — compare-and-swap, e-mail uniqueness, lockout
//!   for good, counters across saves, audit order, concurrent reservations, and the
//!   lockout's promises to the honest person (POL-8: concurrent right PINs never lock,
//!   storage faults and a wrong key file count nothing). `main` runs it
//!   first; put the same line in a `#[test]` of your own crate.
//! - **A notifier**: `SmsGateway`, which would POST each SMS to a provider's HTTP API. It
//!   only records the request it would send (no network here); `deliver` returns
//!   `Receipt::Sent` when the provider accepted the message, `DeliveryError::Refused` for a
//!   number the provider rejects for good (the part fails, and recovery is a fresh PIN,
//!   POL-3), `DeliveryError::Unavailable` when the provider is down (the part stays
//!   pending). It never logs the secret.
//! - **Wiring**: `pin_smtp::ChannelRouter` sends SMS to the gateway and the other channels
//!   elsewhere (here an in-memory outbox; in production e-mail/PEC to
//!   `pin_smtp::SmtpNotifier`).
//!
//! Run it: `cargo run --example custom_store_and_notifier` (CI runs it).
#![allow(clippy::print_stdout, reason = "an example talks to whoever runs it")]

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{NaiveDate, TimeZone, Utc};
use pin_core::audit::{AuditEvent, AuditRecord};
use pin_core::command::{AttemptsUpdate, Command, Delivery, Enrolment};
use pin_core::contact::{Contacts, Email, Mobile};
use pin_core::hash::{HashParams, Keyring};
use pin_core::keycheck::KeyFingerprint;
use pin_core::notify::{DeliveryError, MemoryOutbox, Notifier, Receipt};
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::PinService;
use pin_core::store::{Baseline, CountRequest, FailedGuess, NetworkKey, PopulationCounts};
use pin_core::store::{
    Lease, LeaseId, Loaded, Reservation, ReserveRequest, Settled, Settlement, Store, StoreError,
    next_attempts, reserve_rule, settle_rule,
};
use pin_core::subject::{Attempts, Channel, Profile, Role, Subject};
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Level, Policy};
use pin_smtp::ChannelRouter;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

// ---------------------------------------------------------------------------------------
// Your store.

#[derive(Default)]
struct Tables {
    /// Record, version (for compare-and-swap), attempt counter.
    subjects: HashMap<TaxCode, (Subject, u64, Attempts)>,
    /// Attempts in flight (reserved, not yet settled), and the last lease id given.
    leases: HashMap<TaxCode, Vec<Lease>>,
    last_lease: u64,
    /// Pepper-key fingerprints, by key id.
    keys: HashMap<KeyId, KeyFingerprint>,
    audit: Vec<AuditEvent>,
    /// Failed guesses for the population defence, and the learned baselines.
    guesses: Vec<FailedGuess>,
    baselines: HashMap<Profile, Baseline>,
}

/// A store in a `HashMap` behind one mutex: every method is atomic because it holds the
/// lock throughout.
#[derive(Default)]
struct HashMapStore {
    tables: Mutex<Tables>,
}

impl HashMapStore {
    fn lock(&self) -> MutexGuard<'_, Tables> {
        self.tables.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// NOIPA-8: a NoiPA e-mail address belongs to one person.
fn email_taken(t: &Tables, s: &Subject) -> bool {
    let key = |x: &Subject| {
        (x.profile() == Profile::Noipa)
            .then(|| x.contacts.email.as_ref().map(Email::unique_key))
            .flatten()
    };
    let Some(mine) = key(s) else { return false };
    t.subjects
        .values()
        .any(|(other, _, _)| other.tax_code != s.tax_code && key(other).as_ref() == Some(&mine))
}

impl Store for HashMapStore {
    fn load(&self, tax_code: &TaxCode) -> Result<Option<Loaded>, StoreError> {
        Ok(self
            .lock()
            .subjects
            .get(tax_code)
            .map(|(subject, version, attempts)| Loaded {
                subject: subject.clone(),
                version: *version,
                attempts: *attempts,
            }))
    }

    fn create(&self, subject: &Subject, audit: &[AuditEvent]) -> Result<u64, StoreError> {
        let mut t = self.lock();
        if t.subjects.contains_key(&subject.tax_code) {
            return Err(StoreError::Exists);
        }
        if email_taken(&t, subject) {
            return Err(StoreError::EmailTaken);
        }
        let attempts = next_attempts(Attempts::default(), subject, AttemptsUpdate::Fresh);
        t.subjects
            .insert(subject.tax_code.clone(), (subject.clone(), 1, attempts));
        t.audit.extend_from_slice(audit);
        Ok(1)
    }

    fn save(
        &self,
        subject: &Subject,
        expected: u64,
        update: AttemptsUpdate,
        audit: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        let mut t = self.lock();
        let (version, counter) = match t.subjects.get(&subject.tax_code) {
            None => return Err(StoreError::NotFound),
            Some((_, v, _)) if *v != expected => return Err(StoreError::Conflict),
            Some((_, v, a)) => (*v, *a),
        };
        if email_taken(&t, subject) {
            return Err(StoreError::EmailTaken);
        }
        let next = version.checked_add(1).ok_or(StoreError::Conflict)?;
        let counter = next_attempts(counter, subject, update);
        t.subjects
            .insert(subject.tax_code.clone(), (subject.clone(), next, counter));
        t.audit.extend_from_slice(audit);
        Ok(next)
    }

    fn reserve_attempt(
        &self,
        tax_code: &TaxCode,
        request: &ReserveRequest,
    ) -> Result<Reservation, StoreError> {
        let mut guard = self.lock();
        let t = &mut *guard;
        let id = LeaseId(t.last_lease + 1);
        let (subject, _, counter) = t.subjects.get_mut(tax_code).ok_or(StoreError::NotFound)?;
        let current = subject.credential.as_ref().map(|c| c.serial);
        let leases = t.leases.entry(tax_code.clone()).or_default();
        // The shared rule decides; the store writes back exactly what it returns.
        let step = reserve_rule(tax_code, *counter, current, leases, request, id);
        *counter = step.counter;
        leases.retain(|l| !step.drop.contains(&l.id));
        if let Some(lease) = step.insert {
            leases.push(lease);
            t.last_lease = id.0;
        }
        t.audit.extend(step.audit);
        Ok(step.answer)
    }

    fn settle_attempt(
        &self,
        tax_code: &TaxCode,
        serial: u64,
        lease: LeaseId,
        limit: u32,
        settlement: Settlement,
        audit: &AuditEvent,
    ) -> Result<Settled, StoreError> {
        let mut guard = self.lock();
        let t = &mut *guard;
        let leases = t.leases.entry(tax_code.clone()).or_default();
        let live = leases.iter().any(|l| l.id == lease);
        leases.retain(|l| l.id != lease);
        let Some((subject, _, counter)) = t.subjects.get_mut(tax_code) else {
            return Ok(Settled::Stale);
        };
        let current = subject.credential.as_ref().map(|c| c.serial);
        let step = settle_rule(*counter, current, live, serial, limit, settlement, audit);
        *counter = step.counter;
        t.audit.push(step.audit);
        Ok(step.answer)
    }

    fn key_fingerprints(&self) -> Result<Vec<(KeyId, KeyFingerprint)>, StoreError> {
        Ok(self.lock().keys.iter().map(|(k, v)| (*k, *v)).collect())
    }

    fn awaiting_outbound(&self) -> Result<Vec<Subject>, StoreError> {
        // The shared ordering (oldest request first) over the records that wait for the
        // contact centre's outbound call (INPS-6, INPS-7).
        Ok(pin_core::store::outbound_queue(
            self.lock().subjects.values().map(|(s, _, _)| s.clone()),
        ))
    }

    fn due_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<TaxCode>, StoreError> {
        // The shared rule (earliest due first) over the credentials with a part waiting in
        // the delivery queue: what `PinService::deliver_due` sends.
        let inner = self.lock();
        Ok(pin_core::store::due_queue(
            inner
                .subjects
                .values()
                .filter_map(|(s, _, _)| s.credential.as_ref().map(|c| (&s.tax_code, c))),
            now,
            limit,
        ))
    }

    fn record_key_fingerprint(
        &self,
        id: KeyId,
        fingerprint: &KeyFingerprint,
    ) -> Result<KeyFingerprint, StoreError> {
        Ok(*self.lock().keys.entry(id).or_insert(*fingerprint))
    }

    // The population counters (pin_core::population): one row per failed guess; counts
    // are strictly after `since`, with no upper bound (a clock that went back hides none).
    fn record_failed_guess(&self, guess: &FailedGuess) -> Result<(), StoreError> {
        self.lock().guesses.push(guess.clone());
        Ok(())
    }

    fn population_counts(&self, r: &CountRequest<'_>) -> Result<PopulationCounts, StoreError> {
        let t = self.lock();
        let from_source: Vec<_> = t
            .guesses
            .iter()
            .filter(|g| r.network.is_some() && g.network.as_ref() == r.network)
            .filter(|g| g.at > r.source_since)
            .map(|g| g.at)
            .collect();
        let failures = [Profile::Noipa, Profile::Inps].map(|p| {
            let n = t
                .guesses
                .iter()
                .filter(|g| g.profile == p && g.at > r.population_since)
                .count();
            (p, n as u64)
        });
        Ok(PopulationCounts {
            source: from_source.len() as u64,
            source_oldest: from_source.iter().min().copied(),
            failures: failures.to_vec(),
            baselines: t.baselines.iter().map(|(p, b)| (*p, *b)).collect(),
        })
    }

    fn swap_baseline(
        &self,
        profile: Profile,
        expected: Option<&Baseline>,
        next: &Baseline,
    ) -> Result<bool, StoreError> {
        let mut t = self.lock();
        if t.baselines.get(&profile).map(|b| b.folded_at) != expected.map(|b| b.folded_at) {
            return Ok(false);
        }
        t.baselines.insert(profile, *next);
        Ok(true)
    }

    fn prune_failed_guesses(&self, before: chrono::DateTime<Utc>) -> Result<u64, StoreError> {
        let mut t = self.lock();
        let was = t.guesses.len();
        t.guesses.retain(|g| g.at > before);
        Ok((was - t.guesses.len()) as u64)
    }

    fn top_sources(
        &self,
        since: chrono::DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(NetworkKey, u64)>, StoreError> {
        let t = self.lock();
        let mut by: HashMap<&NetworkKey, u64> = HashMap::new();
        for g in t.guesses.iter().filter(|g| g.at > since) {
            if let Some(n) = &g.network {
                *by.entry(n).or_default() += 1;
            }
        }
        let mut top: Vec<_> = by.into_iter().map(|(n, c)| (n.clone(), c)).collect();
        top.sort_by(|(a, x), (b, y)| y.cmp(x).then_with(|| a.cmp(b)));
        top.truncate(limit);
        Ok(top)
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

    /// How many current PIN hashes each pepper key protects (for key retirement).
    fn hashes_per_key(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        let mut counts: std::collections::BTreeMap<KeyId, u64> = Default::default();
        for (subject, _, _) in self.lock().subjects.values() {
            if let Some(c) = &subject.credential {
                *counts.entry(c.hash.key_id).or_insert(0) += 1;
            }
        }
        Ok(counts.into_iter().collect())
    }

    /// A page of the log for a streaming reader (an export): ids are positions, and this
    /// store keeps no hash chain, so no links.
    fn audit_page(&self, after: u64, limit: usize) -> Result<Vec<AuditRecord>, StoreError> {
        let inner = self.lock();
        Ok((1_u64..)
            .zip(inner.audit.iter())
            .skip(usize::try_from(after).unwrap_or(usize::MAX))
            .take(limit)
            .map(|(id, event)| AuditRecord {
                id,
                event: event.clone(),
                link: None,
            })
            .collect())
    }
}

// ---------------------------------------------------------------------------------------
// Your notifier.

/// An SMS provider's HTTP API. A real one would POST `{"to", "text"}` to `endpoint` with an
/// HTTP client and read the provider's answer; this one records the request instead, and
/// plays the provider: numbers ending in `0000` do not exist.
struct SmsGateway {
    endpoint: String,
    sent: Mutex<Vec<(String, String)>>,
}

impl Notifier for SmsGateway {
    fn deliver(&self, d: &Delivery) -> Result<Receipt, DeliveryError> {
        if d.channel != Channel::Sms {
            return Err(DeliveryError::Unavailable(format!(
                "the SMS gateway carries SMS only, not {:?}",
                d.channel
            )));
        }
        let text = format!(
            "Your PIN{}: {}. Never share it.",
            if d.of > 1 {
                format!(" (part {} of {})", d.part, d.of)
            } else {
                String::new()
            },
            d.secret.expose_secret()
        );
        // POST {endpoint} {"to": d.recipient, "text": text} — here, only recorded. The error
        // messages below name the endpoint and the provider's answer, never the text.
        if d.recipient.ends_with("0000") {
            return Err(DeliveryError::Refused(format!(
                "{}: the provider does not know this number",
                self.endpoint
            )));
        }
        self.sent
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((d.recipient.clone(), text));
        Ok(Receipt::Sent)
    }
}

// ---------------------------------------------------------------------------------------

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("1. The conformance suite proves HashMapStore (pin_core::conformance::run_all)...");
    pin_core::conformance::run_all(HashMapStore::default);
    println!("   passed.");

    let gateway = Arc::new(SmsGateway {
        endpoint: "http://127.0.0.1:9/sms".into(),
        sent: Mutex::new(Vec::new()),
    });
    let others = Arc::new(MemoryOutbox::new());
    let notifier = ChannelRouter::new()
        .route_shared(&[Channel::Sms], gateway.clone())
        .otherwise_shared(others.clone());
    // Tiny Argon2 costs keep the example quick; a service uses `Policy::default()`.
    let fast = HashParams::INSECURE_FAST_FOR_TESTS;
    let policy = Policy::builder().hash_live(fast).hash_floor(fast).build()?;
    let service = PinService::new(
        HashMapStore::default(),
        notifier,
        policy,
        Keyring::new(Pepper::new(KeyId(1), &[0x42; 32])?),
        ChaCha20Rng::seed_from_u64(7),
    )?;
    let now = Utc
        .with_ymd_and_hms(2026, 3, 2, 9, 30, 0)
        .single()
        .ok_or("a valid time")?;

    println!("2. NoiPA enrolment with a mobile number: the PIN goes only by SMS (NOIPA-4).");
    let mario = TaxCode::parse("RSSMRA85T10A562S")?;
    let enrolment = Enrolment {
        role: Role::Employee,
        contacts: Contacts {
            email: Some(Email::parse("mario.rossi@example.it")?),
            mobile: Some(Mobile::parse("3471234567")?),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: NaiveDate::from_ymd_opt(2020, 9, 1),
    };
    let done = service.execute(
        &mario,
        &Actor::Rid("R042".into()),
        &Command::Enrol(enrolment),
        now,
    )?;
    for d in &done.deliveries {
        println!(
            "   {:?} part {} of {}: {:?}",
            d.channel, d.part, d.of, d.state
        );
    }
    let sent = std::mem::take(&mut *gateway.sent.lock().unwrap_or_else(PoisonError::into_inner));
    for (to, text) in &sent {
        println!(
            "   the gateway would POST to {}: to={to} text={text:?}",
            gateway.endpoint
        );
    }
    let pin = sent
        .first()
        .and_then(|(_, text)| text.rsplit_once(": "))
        .map(|(_, rest)| rest)
        .and_then(|rest| rest.split('.').next())
        .ok_or("an SMS with the PIN")?;
    let outcome = service.verify(&mario, pin, Level::Online, now)?;
    println!("   Mario verifies the PIN from the SMS: {}", outcome.name());

    println!("3. A number the provider rejects: the part is failed (POL-3: re-issue).");
    let giulia = TaxCode::parse("VRDLCU01M29Z404A")?;
    let enrolment = Enrolment {
        role: Role::Employee,
        contacts: Contacts {
            email: Some(Email::parse("giulia.verdi@example.it")?),
            mobile: Some(Mobile::parse("3470000000")?),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: NaiveDate::from_ymd_opt(2020, 9, 1),
    };
    let done = service.execute(
        &giulia,
        &Actor::Rid("R042".into()),
        &Command::Enrol(enrolment),
        now,
    )?;
    for d in &done.deliveries {
        println!(
            "   {:?} part {} of {}: {:?} ({})",
            d.channel,
            d.part,
            d.of,
            d.state,
            d.error.as_deref().unwrap_or("")
        );
    }
    println!(
        "   other channels carried {} messages.",
        others.take().len()
    );
    Ok(())
}
