//! [`PinService`]: the blocking driver that carries out the machine's decisions.
//!
//! For a command: load → decide (generating and hashing happen here, outside any storage
//! lock) → compare-and-swap save with the audit events (retried on conflict) → deliver →
//! record the receipts. For a verify: load → plan → reserve an attempt durably → compare
//! outside any lock → settle.

use std::sync::{Mutex, PoisonError};

use chrono::{DateTime, Utc};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, SeedableRng};

use crate::actor::Actor;
use crate::command::{Advice, AttemptsUpdate, Check, Command, Decision, Effect, NewPin};
use crate::contact::Contacts;
use crate::error::{Error, InputError, Refusal};
use crate::format::{self, PinFormat};
use crate::hash::{Hasher, Keyring, PinHash, Verified};
use crate::keycheck;
use crate::machine::{self, Context, Mint, Minter};
use crate::notify::{DeliveryError, Notifier, Receipt};
use crate::policy::Policy;
use crate::population::{
    self, CountRequest, DeviceId, DeviceKey, DeviceToken, Gate, Source, Trust,
};
use crate::secret::Pin;
use crate::store::{LeaseId, Reservation, ReserveRequest, Settled, Settlement};
use crate::store::{Loaded, Store, StoreError};
use crate::subject::{Attempts, Channel, DeliveryState, Subject};
use crate::tax_code::TaxCode;
use crate::telemetry::{self, Stopwatch};
use crate::verify::{self, Plan, Purpose, VerifyOutcome};

/// How many times a command is re-decided when the record changed under it.
const CAS_RETRIES: usize = 8;

/// The longest pause between two tries of a settlement.
const MAX_SETTLE_BACKOFF: std::time::Duration = std::time::Duration::from_secs(1);

/// How a driver carries out the attempt protocol; the defaults suit most services.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct DriverOptions {
    /// How long a reserved attempt may stay unsettled before it is deemed dead (its process
    /// killed mid-compare) and counted as a wrong PIN, with an audit event. It bounds how
    /// long a dead attempt holds a place in the budget; it must be far longer than a compare
    /// plus [`DriverOptions::settle_retries`]. Default: 2 minutes.
    pub attempt_lease: chrono::TimeDelta,
    /// How many times a settlement that failed with a retryable storage error is tried
    /// again. Default: 6, which with the default backoff waits at most about 2.5 s.
    pub settle_retries: u32,
    /// The first pause before trying a settlement again; it doubles each time, up to 1 s.
    /// Default: 40 ms.
    pub settle_backoff: std::time::Duration,
    /// Whether [`PinService::execute`] hands the messages of a command to the notifier
    /// itself, or only queues them for [`PinService::deliver_due`]. Default:
    /// [`DeliveryMode::Inline`].
    pub delivery: DeliveryMode,
}

/// When the messages of a command are handed to the notifier. Either way they are first
/// committed, sealed, with the command ([`crate::delivery`]): nothing is lost if the process
/// dies, and a delivery worker ([`PinService::deliver_due`]) sends what is still due.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeliveryMode {
    /// Right after the commit, inside [`PinService::execute`]: the caller learns each
    /// channel's answer (a CLI, a batch job). A channel that is unavailable leaves the part
    /// due for the worker.
    #[default]
    Inline,
    /// Never inside the request: `execute` returns once the command is committed, every
    /// part reported pending, and a worker delivers (a service whose requests must not wait
    /// on SMTP or an SMS gateway). Security notices (POL-6, no secret), including the one a
    /// lock sends from `verify`, are also left to the next [`PinService::deliver_due`] of
    /// the same process.
    Deferred,
}

impl Default for DriverOptions {
    fn default() -> Self {
        Self {
            attempt_lease: chrono::TimeDelta::minutes(2),
            settle_retries: 6,
            settle_backoff: std::time::Duration::from_millis(40),
            delivery: DeliveryMode::Inline,
        }
    }
}

impl DriverOptions {
    /// The defaults with another settlement backoff (tests make it tiny).
    #[must_use]
    pub fn with_settle_backoff(mut self, first: std::time::Duration, retries: u32) -> Self {
        self.settle_backoff = first;
        self.settle_retries = retries;
        self
    }

    /// The same options with another [`DeliveryMode`].
    #[must_use]
    pub fn with_delivery(mut self, mode: DeliveryMode) -> Self {
        self.delivery = mode;
        self
    }

    /// The defaults with another attempt lease.
    #[must_use]
    pub fn with_attempt_lease(mut self, lease: chrono::TimeDelta) -> Self {
        self.attempt_lease = lease;
        self
    }
}

/// What happened to one delivery.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryReport {
    /// Credential serial.
    pub serial: u64,
    /// Part number.
    pub part: u8,
    /// Number of parts.
    pub of: u8,
    /// Channel.
    pub channel: Channel,
    /// State after the attempt.
    pub state: DeliveryState,
    /// The channel's error, if any (never contains the secret).
    pub error: Option<String>,
}

/// What happened to one security notice (POL-6).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct NoticeReport {
    /// Why it was sent.
    pub kind: crate::command::NoticeKind,
    /// Channel.
    pub channel: Channel,
    /// Whether the channel took it.
    pub sent: bool,
    /// The channel's error, if any.
    pub error: Option<String>,
}

/// The result of a command.
#[derive(Debug)]
#[must_use]
pub struct Executed {
    /// The record as saved (after the delivery receipts).
    pub subject: Subject,
    /// One report per message.
    pub deliveries: Vec<DeliveryReport>,
    /// Advice for the caller.
    pub advice: Vec<Advice>,
    /// A PIN generated at the subject's own request, to show to that subject alone.
    pub revealed: Option<Pin>,
    /// One report per security notice (POL-6), sent before the messages with a PIN.
    pub notices: Vec<NoticeReport>,
    /// Whether the receipts of the deliveries were recorded. `false` when the store failed
    /// after the command was committed and the messages handed over: the command stands
    /// (do not repeat it — a repeat would issue another PIN and kill the one delivered), and
    /// the parts stay due, so a delivery worker sends them again (at least once).
    pub receipts_saved: bool,
}

/// One part a delivery worker handled ([`PinService::deliver_due`]).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkerReport {
    /// Whose PIN.
    pub subject: TaxCode,
    /// What happened to it.
    pub delivery: DeliveryReport,
    /// The part failed for good or stayed undeliverable past the deadline: recovery is a
    /// fresh issue (POL-3), which does not count against the person's re-send budget.
    pub gave_up: bool,
}

/// What one run of a delivery worker did.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct DeliveryRun {
    /// Every part taken, in order.
    pub parts: Vec<WorkerReport>,
    /// Subjects whose record could not be read or written this run (left due; the next
    /// run tries again), with the error.
    pub errors: Vec<(TaxCode, String)>,
    /// The security notices sent (POL-6): those the commands of this process left for the
    /// worker in [`DeliveryMode::Deferred`], and a part that failed for good tells the
    /// person, on the contacts on record, to ask for a fresh PIN (POL-3).
    pub notices: Vec<NoticeReport>,
}

impl DeliveryRun {
    /// Parts the channels took (sent or confirmed).
    #[must_use]
    pub fn delivered(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| {
                matches!(
                    p.delivery.state,
                    DeliveryState::Sent | DeliveryState::Confirmed
                )
            })
            .count()
    }
    /// Parts still due later (channel unavailable).
    #[must_use]
    pub fn deferred(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| p.delivery.state == DeliveryState::Pending)
            .count()
    }
    /// Parts failed for good.
    #[must_use]
    pub fn failed(&self) -> usize {
        self.parts
            .iter()
            .filter(|p| p.delivery.state == DeliveryState::Failed)
            .count()
    }
}

/// The result of a verify.
#[derive(Debug)]
#[must_use]
pub struct Verification {
    /// The outcome.
    pub outcome: VerifyOutcome,
    /// Proof for a follow-up command, when the PIN matched.
    pub proof: Option<crate::command::Authenticated>,
}

/// The result of [`PinService::verify_from`].
#[derive(Debug)]
#[must_use]
pub struct SourcedVerification {
    /// The outcome.
    pub outcome: VerifyOutcome,
    /// Proof for a follow-up command, when the PIN matched.
    pub proof: Option<crate::command::Authenticated>,
    /// A new device token for the client to keep, when the PIN matched from a device that
    /// was not trusted (only with the population defence).
    pub device_token: Option<DeviceToken>,
}

/// The population defence of a service: its policy and the key that signs device tokens
/// (kept apart from the database and the pepper).
#[derive(Debug)]
pub struct PopulationDefence {
    /// The limits.
    pub policy: crate::population::PopulationPolicy,
    key: DeviceKey,
}

impl PopulationDefence {
    /// The defence with `policy`, signing device tokens with `key`.
    #[must_use]
    pub fn new(policy: crate::population::PopulationPolicy, key: DeviceKey) -> Self {
        Self { policy, key }
    }

    /// The key that signs device tokens.
    pub fn device_key(&self) -> &DeviceKey {
        &self.key
    }
}

/// The result of a change of PIN.
#[derive(Debug)]
#[must_use]
pub enum ChangeOutcome {
    /// Changed; `revealed` holds the PIN the system generated, for the subject alone.
    Changed {
        /// The generated PIN, when the system chose it.
        revealed: Option<Pin>,
    },
    /// The current PIN did not authenticate: nothing changed.
    NotAuthenticated(VerifyOutcome),
}

/// Where a subject stands at a given time, in one word.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// No PIN on record.
    NoPin,
    /// A request waits for the outbound contact-centre call (INPS-6, INPS-7).
    AwaitingOutboundVerification,
    /// A pre-assigned PIN waits for activation (INPS-8).
    AwaitingActivation,
    /// The 16-character PIN must be changed at first access (INPS-3).
    MustChange,
    /// In use.
    Active,
    /// Expired: rotation due (INPS-11), or issued and never used in time.
    Expired,
    /// Blocked after too many wrong attempts (INPS-12, POL-1).
    Locked,
}

impl State {
    /// A stable snake-case name (`no_pin`, `must_change`, …).
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::NoPin => "no_pin",
            Self::AwaitingOutboundVerification => "awaiting_outbound_verification",
            Self::AwaitingActivation => "awaiting_activation",
            Self::MustChange => "must_change",
            Self::Active => "active",
            Self::Expired => "expired",
            Self::Locked => "locked",
        }
    }
}

pub use crate::status::{CredentialSummary, MaskedContacts, Status};

/// The driver: a store, a notifier, the policy, the hasher and a random generator.
///
/// **Blocking.** Its methods block on the store, the notifier and Argon2id (tens of
/// milliseconds of CPU and 19 MiB per hash at the default policy). In an async service never
/// call them from an async task: use the async driver `pin-async` (`AsyncPinService`, the
/// same driver on a bounded pool of its own threads) or `spawn_blocking` with a bound of
/// your own.
pub struct PinService<S, N, R> {
    store: S,
    notifier: N,
    policy: Policy,
    hasher: Hasher,
    rng: Mutex<R>,
    options: DriverOptions,
    /// Whether the current key's fingerprint is known to be on record in the store.
    key_recorded: std::sync::atomic::AtomicBool,
    /// Security notices waiting for [`PinService::deliver_due`] in
    /// [`DeliveryMode::Deferred`] (they carry no secret; best effort, as inline).
    notices_due: Mutex<Vec<crate::command::Notice>>,
    /// The population defence, when configured ([`PinService::with_population`]).
    population: Option<PopulationDefence>,
    /// The monotonic clock latencies are measured with, if the embedder gave one.
    stopwatch: Option<Stopwatch>,
}

impl<S, N, R> std::fmt::Debug for PinService<S, N, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            store: _,
            notifier: _,
            policy,
            hasher,
            rng: _,
            options,
            key_recorded: _,
            notices_due: _,
            population,
            stopwatch: _,
        } = self;
        f.debug_struct("PinService")
            .field("policy", policy)
            .field("hasher", hasher)
            .field("options", options)
            .field("population", population)
            .finish_non_exhaustive()
    }
}

/// The service's [`Mint`]: draws from the shared generator under its mutex only for the
/// moment of the draw, then hashes without holding anything.
struct ServiceMint<'a, R> {
    hasher: &'a Hasher,
    rng: &'a Mutex<R>,
}

impl<R: CryptoRng> ServiceMint<'_, R> {
    fn local_rng(&self) -> ChaCha20Rng {
        let mut seed = [0u8; 32];
        self.rng
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .fill_bytes(&mut seed);
        ChaCha20Rng::from_seed(seed)
    }
}

impl<R: CryptoRng> Mint for ServiceMint<'_, R> {
    fn generate(&mut self, format: PinFormat) -> Pin {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        Minter::new(self.hasher, &mut *rng).generate(format)
    }
    fn seal(&mut self, pin: &Pin) -> Result<PinHash, Error> {
        // Hash with a generator seeded under the lock, so the lock is not held while hashing.
        let sealed = Minter::new(self.hasher, &mut self.local_rng()).seal(pin);
        if sealed.is_ok() {
            telemetry::hashed(self.hasher.current_key_id());
        }
        sealed
    }
    fn matches(&mut self, pin: &Pin, hash: &PinHash) -> Result<bool, Error> {
        Minter::new(self.hasher, &mut self.local_rng()).matches(pin, hash)
    }
    fn seal_part(&mut self, delivery: &crate::command::Delivery) -> crate::delivery::SealedPart {
        let mut rng = self.rng.lock().unwrap_or_else(PoisonError::into_inner);
        Minter::new(self.hasher, &mut *rng).seal_part(delivery)
    }
}

/// Holds the parts `effects` deliver until `until`, so that a worker does not send them
/// while [`PinService::execute`] does.
fn claim_for_inline(next: &mut Subject, effects: &[Effect], until: DateTime<Utc>) {
    let Some(cred) = next.credential.as_mut() else {
        return;
    };
    for e in effects {
        if let Effect::Deliver(d) = e {
            if d.serial != cred.serial {
                continue;
            }
            if let Some(q) = cred
                .parts
                .iter_mut()
                .find(|p| p.index == d.part && p.channel == d.channel)
                .and_then(|p| p.queued.as_mut())
            {
                q.due_at = until;
            }
        }
    }
}

/// A try reported pending that the record turned into failed (the deadline passed) is
/// reported failed.
fn mark_given_up(saved: &Subject, reports: &mut [DeliveryReport]) {
    let Some(cred) = saved.credential.as_ref() else {
        return;
    };
    for r in reports.iter_mut().filter(|r| r.serial == cred.serial) {
        let failed = cred
            .parts
            .iter()
            .find(|p| p.index == r.part && p.channel == r.channel)
            .is_some_and(|p| p.state == DeliveryState::Failed);
        if failed && r.state == DeliveryState::Pending {
            r.state = DeliveryState::Failed;
            if r.error.is_none() {
                r.error = Some("undeliverable past the delivery deadline".to_owned());
            }
        }
    }
}

fn store_err(tax: &TaxCode, e: StoreError) -> Error {
    match e {
        StoreError::EmailTaken => Error::EmailInUse,
        StoreError::Exists => Error::SubjectExists(tax.clone()),
        StoreError::NotFound => Error::UnknownSubject(tax.clone()),
        other => Error::Store(other),
    }
}

/// Refuses input that is no PIN of any kind (not 5 digits, nor 8 or 16 characters of the
/// INPS alphabet); returns it unchanged (each parser trims line endings itself).
fn check_shape(input: &str) -> Result<&str, Error> {
    let formats = [
        PinFormat::NoipaDigits5,
        PinFormat::InpsInUse8,
        PinFormat::InpsIssued16,
    ];
    if formats
        .iter()
        .any(|f| format::parse_input(*f, input).is_ok())
    {
        return Ok(input);
    }
    let all_digits = !input.trim().is_empty() && input.trim().bytes().all(|b| b.is_ascii_digit());
    let err = if all_digits {
        format::parse_input(PinFormat::NoipaDigits5, input).err()
    } else {
        format::parse_any_inps(input).err()
    };
    Err(InputError::Pin(err.unwrap_or(format::PinInputError::Empty)).into())
}

impl<S: Store, N: Notifier, R: CryptoRng> PinService<S, N, R> {
    /// A service over `store` and `notifier`, with `policy`, the pepper `keys`, and a
    /// cryptographic generator (e.g. `ChaCha20Rng` seeded from the OS by the caller).
    ///
    /// Reads the pepper-key fingerprints the store recorded ([`crate::keycheck`]) and writes
    /// nothing: a key file that is not the one the store's hashes were made with is refused
    /// here, before any PIN can be miscounted as wrong.
    ///
    /// # Errors
    /// [`Error::Hash`] when the policy's Argon2 parameters are refused;
    /// [`Error::Config`] ([`ConfigError::WrongKey`](crate::error::ConfigError::WrongKey))
    /// for a key whose fingerprint differs from the store's; storage failures.
    pub fn new(
        store: S,
        notifier: N,
        policy: Policy,
        keys: Keyring,
        rng: R,
    ) -> Result<Self, Error> {
        let hasher = Hasher::new(
            policy.hash_live(),
            policy.hash_floor(),
            policy.hash_cap(),
            keys,
        )?;
        keycheck::check(&store, hasher.keys())?;
        Ok(Self {
            store,
            notifier,
            policy,
            hasher,
            rng: Mutex::new(rng),
            options: DriverOptions::default(),
            key_recorded: std::sync::atomic::AtomicBool::new(false),
            notices_due: Mutex::new(Vec::new()),
            population: None,
            stopwatch: None,
        })
    }

    /// The same service with the population defence ([`crate::population`]): every verify
    /// — [`PinService::verify`], [`PinService::authenticate`] and the commands that
    /// authenticate with a PIN, as an unknown source; [`PinService::verify_from`] with the
    /// caller's source — is checked against the source limit and the population budget
    /// before any attempt is reserved, and every failed guess is recorded in the store's
    /// counters (one row). The store must keep them ([`Store::population_counts`]).
    #[must_use]
    pub fn with_population(mut self, defence: PopulationDefence) -> Self {
        self.population = Some(defence);
        self
    }

    /// The population defence in force, if any.
    pub fn population(&self) -> Option<&PopulationDefence> {
        self.population.as_ref()
    }

    /// The same service with other [`DriverOptions`].
    #[must_use]
    pub fn with_options(mut self, options: DriverOptions) -> Self {
        self.options = options;
        self
    }

    /// The same service measuring latencies with `stopwatch` (normally
    /// `Stopwatch::new(std::time::Instant::now)`): the `duration_ms` fields and the
    /// duration histograms of [`crate::telemetry`]. pin-core reads no clock of its own.
    #[must_use]
    pub fn with_stopwatch(mut self, stopwatch: Stopwatch) -> Self {
        self.stopwatch = Some(stopwatch);
        self
    }

    /// The driver options in force.
    pub fn options(&self) -> &DriverOptions {
        &self.options
    }

    /// Records the current key's fingerprint before the first write that may store a hash
    /// made with it (once per service).
    fn ensure_key_recorded(&self) -> Result<(), Error> {
        use std::sync::atomic::Ordering;
        if !self.key_recorded.load(Ordering::Acquire) {
            keycheck::record_current(&self.store, self.hasher.keys())?;
            self.key_recorded.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The notifier.
    pub fn notifier(&self) -> &N {
        &self.notifier
    }

    /// The hasher (for importing pre-computed hashes with the same keys).
    pub fn hasher(&self) -> &Hasher {
        &self.hasher
    }

    fn mint(&self) -> ServiceMint<'_, R> {
        ServiceMint {
            hasher: &self.hasher,
            rng: &self.rng,
        }
    }

    fn load(&self, tax: &TaxCode) -> Result<Option<Loaded>, Error> {
        self.store.load(tax).map_err(|e| store_err(tax, e))
    }

    /// Performs `command` by `actor` on subject `tax`, at `now`.
    ///
    /// # Errors
    /// Whatever the machine refuses ([`Error::Input`], [`Error::Refused`],
    /// [`Error::UnknownSubject`], [`Error::SubjectExists`], [`Error::EmailInUse`]), storage
    /// failures, and [`Error::Contention`] when the record kept changing. On error nothing
    /// was saved and nothing delivered.
    ///
    /// Once the command is committed — with each message it sends sealed in the delivery
    /// queue ([`crate::delivery`]) — the answer is `Ok`, whatever the channels or the store
    /// do next: an unavailable channel leaves the part due for [`PinService::deliver_due`],
    /// and a failure to record the receipts is [`Executed::receipts_saved`] `false`. Do not
    /// repeat a command that answered `Ok`: a repeat issues another PIN.
    pub fn execute(
        &self,
        tax: &TaxCode,
        actor: &Actor,
        command: &Command,
        now: DateTime<Utc>,
    ) -> Result<Executed, Error> {
        let op = telemetry::Op::execute(tax, actor, command, self.stopwatch);
        let result = self.execute_untraced(tax, actor, command, now);
        op.executed(command.name(), &result);
        result
    }

    /// [`PinService::execute`] without its span and metrics.
    fn execute_untraced(
        &self,
        tax: &TaxCode,
        actor: &Actor,
        command: &Command,
        now: DateTime<Utc>,
    ) -> Result<Executed, Error> {
        let ctx = Context {
            now,
            policy: &self.policy,
        };
        for _ in 0..CAS_RETRIES {
            let loaded = self.load(tax)?;
            let attempts = loaded.as_ref().map(|l| l.attempts).unwrap_or_default();
            let decision = machine::decide(
                tax,
                loaded.as_ref().map(|l| &l.subject),
                &attempts,
                actor,
                command,
                &ctx,
                &mut self.mint(),
            )?;
            let Decision {
                mut next,
                attempts: update,
                audit,
                effects,
            } = decision;
            if self.options.delivery == DeliveryMode::Inline {
                // This call delivers them right after the commit: a worker leaves them alone
                // meanwhile, and takes them only if this process dies first.
                claim_for_inline(&mut next, &effects, now + self.policy.delivery_claim());
            }
            self.ensure_key_recorded()?;
            let saved = match &loaded {
                None => self.store.create(&next, &audit),
                Some(l) => self.store.save(&next, l.version, update, &audit),
            };
            let version = match saved {
                Ok(v) => v,
                Err(StoreError::Conflict) => {
                    telemetry::conflict("execute");
                    continue;
                }
                Err(e) => return Err(store_err(tax, e)),
            };
            return Ok(self.carry_out(next, version, effects, now));
        }
        Err(Error::Contention(tax.clone()))
    }

    /// Hands the messages of a committed decision to the notifier (in
    /// [`DeliveryMode::Inline`]) and records their receipts; sends the security notices.
    /// Never fails: the command is committed, and what could not be delivered or recorded
    /// stays due for [`PinService::deliver_due`].
    fn carry_out(
        &self,
        subject: Subject,
        version: u64,
        effects: Vec<Effect>,
        now: DateTime<Utc>,
    ) -> Executed {
        let mut advice = Vec::new();
        let mut revealed = None;
        let mut deliveries = Vec::new();
        let mut notices = Vec::new();
        for effect in effects {
            match effect {
                Effect::Advise(a) => advice.push(a),
                Effect::Notify(n) => notices.extend(self.send_or_defer(vec![n])),
                Effect::Reveal(pin) => revealed = Some(pin),
                Effect::Deliver(d) => {
                    let (state, error) = match self.options.delivery {
                        DeliveryMode::Deferred => (DeliveryState::Pending, None),
                        DeliveryMode::Inline => self.hand_over(&d),
                    };
                    deliveries.push(DeliveryReport {
                        serial: d.serial,
                        part: d.part,
                        of: d.of,
                        channel: d.channel,
                        state,
                        error,
                    });
                }
            }
        }
        let (subject, receipts_saved) = match self.options.delivery {
            DeliveryMode::Deferred => (subject, true),
            DeliveryMode::Inline if deliveries.is_empty() => (subject, true),
            DeliveryMode::Inline => {
                match self.record_receipts(subject.clone(), version, &deliveries, now) {
                    Ok((saved, failed_notices)) => {
                        mark_given_up(&saved, &mut deliveries);
                        notices.extend(self.send_notices(&failed_notices));
                        (saved, true)
                    }
                    Err(e) => {
                        telemetry::ignored("receipts", &e);
                        (subject, false)
                    }
                }
            }
        };
        Executed {
            subject,
            deliveries,
            advice,
            revealed,
            notices,
            receipts_saved,
        }
    }

    /// Sends security notices (POL-6); they carry no secret, and one that is not sent is
    /// reported, never retried.
    fn send_notices(&self, notices: &[crate::command::Notice]) -> Vec<NoticeReport> {
        notices
            .iter()
            .map(|n| {
                let r = self.notifier.notify(n);
                NoticeReport {
                    kind: n.kind,
                    channel: n.channel,
                    sent: r.is_ok(),
                    error: r.err().map(|e| e.to_string()),
                }
            })
            .collect()
    }

    /// One delivery through the notifier: the state it leaves the part in, and the
    /// channel's error.
    fn hand_over(&self, d: &crate::command::Delivery) -> (DeliveryState, Option<String>) {
        match self.notifier.deliver(d) {
            Ok(Receipt::Sent) => (DeliveryState::Sent, None),
            Ok(Receipt::Confirmed) => (DeliveryState::Confirmed, None),
            Err(e @ DeliveryError::Refused(_)) => (DeliveryState::Failed, Some(e.to_string())),
            Err(e) => (DeliveryState::Pending, Some(e.to_string())),
        }
    }

    /// Records delivery outcomes as `Receipt` commands of the system, in one save: sent,
    /// confirmed and failed erase the sealed copy; pending is a try that found the channel
    /// unavailable (due again after a backoff, or failed past the deadline).
    fn record_receipts(
        &self,
        mut subject: Subject,
        mut version: u64,
        reports: &[DeliveryReport],
        now: DateTime<Utc>,
    ) -> Result<(Subject, Vec<crate::command::Notice>), Error> {
        let ctx = Context {
            now,
            policy: &self.policy,
        };
        let tax = subject.tax_code.clone();
        for _ in 0..CAS_RETRIES {
            let mut next = subject.clone();
            let mut audit = Vec::new();
            let mut notices = Vec::new();
            for r in reports {
                let cmd = Command::Receipt {
                    serial: r.serial,
                    part: r.part,
                    channel: r.channel,
                    state: r.state,
                };
                let d = machine::decide(
                    &tax,
                    Some(&next),
                    &Attempts::default(),
                    &Actor::System,
                    &cmd,
                    &ctx,
                    &mut self.mint(),
                );
                // A receipt the record no longer accepts (e.g. a concurrent receipt got
                // there first) is not worth failing a command that already delivered.
                if let Ok(d) = d {
                    next = d.next;
                    audit.extend(d.audit);
                    notices.extend(d.effects.into_iter().filter_map(|e| match e {
                        Effect::Notify(n) => Some(n),
                        _ => None,
                    }));
                }
            }
            match self
                .store
                .save(&next, version, AttemptsUpdate::Keep, &audit)
            {
                Ok(_) => return Ok((next, notices)),
                Err(StoreError::Conflict) => {
                    telemetry::conflict("receipts");
                    let l = self
                        .load(&tax)?
                        .ok_or_else(|| Error::UnknownSubject(tax.clone()))?;
                    subject = l.subject;
                    version = l.version;
                }
                Err(e) => return Err(store_err(&tax, e)),
            }
        }
        Err(Error::Contention(tax))
    }

    /// One run of a delivery worker: takes at most `limit` subjects with parts due at `now`
    /// ([`Store::due_deliveries`]), claims their due parts for
    /// [`Policy::delivery_claim`] (so another worker leaves them alone), opens each sealed
    /// copy, hands it to the notifier, and records the receipt — which erases the copy —
    /// or, when the channel is unavailable, when to try again (POL-3: past
    /// [`Policy::delivery_deadline`] the part fails and recovery is a fresh issue).
    ///
    /// Delivery is at least once: a worker that dies after the notifier took a message and
    /// before the receipt was recorded leaves the part due after the claim, and the next run
    /// sends it again — the same characters, with the same
    /// [`Delivery::message_id`](crate::command::Delivery::message_id). A part of a PIN
    /// replaced meanwhile is never sent (only the last PIN issued is valid, BOTH-1).
    ///
    /// Call it from a loop or a timer (the CLI's `pin deliver --watch` does); it blocks on the
    /// store and the notifier, never on a clock.
    ///
    /// # Errors
    /// Only when the store cannot list the due parts; a subject whose record fails is
    /// reported in [`DeliveryRun::errors`] and stays due.
    pub fn deliver_due(&self, now: DateTime<Utc>, limit: usize) -> Result<DeliveryRun, Error> {
        let op = telemetry::Op::deliver_due(limit, self.stopwatch);
        let result = self.deliver_due_untraced(now, limit);
        op.delivered(&result, now);
        result
    }

    /// [`PinService::deliver_due`] without its span and metrics.
    fn deliver_due_untraced(&self, now: DateTime<Utc>, limit: usize) -> Result<DeliveryRun, Error> {
        let due = self
            .store
            .due_deliveries(now, limit)
            .map_err(Error::Store)?;
        let mut run = DeliveryRun::default();
        let waiting = std::mem::take(
            &mut *self
                .notices_due
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        run.notices = self.send_notices(&waiting);
        for tax in due {
            match self.deliver_subject(&tax, now) {
                Ok((mut parts, mut notices)) => {
                    run.parts.append(&mut parts);
                    run.notices.append(&mut notices);
                }
                Err(e) => run.errors.push((tax, e.to_string())),
            }
        }
        Ok(run)
    }

    /// Claims, delivers and receipts the due parts of one subject.
    fn deliver_subject(
        &self,
        tax: &TaxCode,
        now: DateTime<Utc>,
    ) -> Result<(Vec<WorkerReport>, Vec<NoticeReport>), Error> {
        let mut claimed = None;
        for _ in 0..CAS_RETRIES {
            let Some(l) = self.load(tax)? else {
                return Ok((Vec::new(), Vec::new()));
            };
            let mut next = l.subject;
            let Some(cred) = next.credential.as_mut() else {
                return Ok((Vec::new(), Vec::new()));
            };
            telemetry::saw_due(cred, now);
            let parts = crate::delivery::claim(cred, now, self.policy.delivery_claim());
            if parts.is_empty() {
                return Ok((Vec::new(), Vec::new()));
            }
            match self.store.save(&next, l.version, AttemptsUpdate::Keep, &[]) {
                Ok(version) => {
                    claimed = Some((next, version, parts));
                    break;
                }
                Err(StoreError::Conflict) => telemetry::conflict("claim"),
                Err(e) => return Err(store_err(tax, e)),
            }
        }
        let Some((subject, version, parts)) = claimed else {
            return Err(Error::Contention(tax.clone()));
        };
        let Some(cred) = subject.credential.as_ref() else {
            return Ok((Vec::new(), Vec::new()));
        };
        let mut reports = Vec::new();
        for (index, channel) in parts {
            let Some(part) = cred
                .parts
                .iter()
                .find(|p| p.index == index && p.channel == channel)
            else {
                continue;
            };
            let Some(queued) = part.queued.as_ref() else {
                continue;
            };
            let (state, error) = match crate::delivery::open(
                self.hasher.keys(),
                tax,
                cred.serial,
                index,
                channel,
                &queued.sealed,
            ) {
                Err(e) => (DeliveryState::Failed, Some(e.to_string())),
                Ok(opened) => self.hand_over(&crate::command::Delivery {
                    subject: tax.clone(),
                    serial: cred.serial,
                    part: index,
                    of: part.of,
                    channel,
                    recipient: opened.recipient,
                    secret: opened.secret,
                    origin: cred.origin,
                }),
            };
            reports.push(DeliveryReport {
                serial: cred.serial,
                part: index,
                of: part.of,
                channel,
                state,
                error,
            });
        }
        let (saved, failed_notices) = self.record_receipts(subject, version, &reports, now)?;
        mark_given_up(&saved, &mut reports);
        let notices = self.send_notices(&failed_notices);
        let parts = reports
            .into_iter()
            .map(|delivery| WorkerReport {
                subject: tax.clone(),
                gave_up: delivery.state == DeliveryState::Failed,
                delivery,
            })
            .collect();
        Ok((parts, notices))
    }

    /// Verifies `input` as the PIN of `tax` for a service requiring `required`.
    ///
    /// Every answer costs one Argon2id evaluation: a subject not on record or with no
    /// usable PIN ([`VerifyOutcome::NoPin`]), a locked PIN ([`VerifyOutcome::Locked`]) and
    /// a PIN never used in time (`Expired`) are answered after a dummy hash of the same
    /// cost, so timing does not tell them apart from a wrong PIN.
    ///
    /// The lockout (INPS-12, POL-1, POL-8): at most the limit of wrong comparisons; a right
    /// PIN never adds to the failures, however many copies of it arrive at once; when
    /// compares in flight fill what is left of the budget the answer is
    /// [`VerifyOutcome::TryLater`] (nothing counted), and [`VerifyOutcome::Locked`] is said
    /// only of a lock made permanent by wrong PINs.
    ///
    /// # Errors
    /// [`Error::Input`] when `input` cannot be a PIN of any kind (nothing is counted);
    /// [`Error::Config`] when the stored hash was made with another key, test-only
    /// parameters or parameters outside the floor/cap (nothing is counted); storage
    /// failures — [`Error::is_retryable`] tells those worth retrying. A reservation whose
    /// settlement keeps failing past the retries expires after
    /// [`DriverOptions::attempt_lease`] and is then counted as a wrong PIN, with an audit
    /// event.
    ///
    /// With the population defence ([`PinService::with_population`]) the caller is an
    /// unknown source ([`Source::unknown`]): see [`PinService::verify_from`].
    pub fn verify(
        &self,
        tax: &TaxCode,
        input: &str,
        required: crate::subject::Level,
        now: DateTime<Utc>,
    ) -> Result<VerifyOutcome, Error> {
        Ok(self
            .authenticate(tax, input, Purpose::Access { required }, now)?
            .outcome)
    }

    /// Verifies `input` for `purpose`, returning the proof a follow-up command needs. With
    /// the population defence, as an unknown source.
    ///
    /// # Errors
    /// As [`PinService::verify`].
    pub fn authenticate(
        &self,
        tax: &TaxCode,
        input: &str,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Result<Verification, Error> {
        let v = self.authenticate_from(tax, input, purpose, &Source::unknown(), now)?;
        Ok(Verification {
            outcome: v.outcome,
            proof: v.proof,
        })
    }

    /// [`PinService::verify`] from `source`: the population defence ([`crate::population`])
    /// decides first, before any attempt is reserved — a trusted device (a valid
    /// [`DeviceToken`] for this subject's current PIN) passes; a network over its limit is
    /// [`VerifyOutcome::TryLater`]; in defended mode an untrusted source without
    /// [`Source::challenge_passed`] is [`VerifyOutcome::ChallengeRequired`]. Neither answer is
    /// counted against the person, nor recorded as a failed guess (POL-8). A right PIN from
    /// an untrusted device comes back with a new [`SourcedVerification::device_token`].
    ///
    /// Without the population defence configured, the source is ignored and no token is
    /// issued: the same as [`PinService::verify`].
    ///
    /// # Errors
    /// As [`PinService::verify`]; also a storage failure reading the counters.
    pub fn verify_from(
        &self,
        tax: &TaxCode,
        input: &str,
        required: crate::subject::Level,
        source: &Source,
        now: DateTime<Utc>,
    ) -> Result<SourcedVerification, Error> {
        self.authenticate_from(tax, input, Purpose::Access { required }, source, now)
    }

    /// [`PinService::authenticate`] from `source`, as [`PinService::verify_from`].
    ///
    /// # Errors
    /// As [`PinService::verify_from`].
    pub fn authenticate_from(
        &self,
        tax: &TaxCode,
        input: &str,
        purpose: Purpose,
        source: &Source,
        now: DateTime<Utc>,
    ) -> Result<SourcedVerification, Error> {
        let op = telemetry::Op::verify(tax, purpose, self.stopwatch);
        let result = self.authenticate_from_untraced(tax, input, purpose, source, now);
        op.verified(result.as_ref().map(|v| &v.outcome));
        result
    }

    /// [`PinService::authenticate_from`] without its span and metrics.
    fn authenticate_from_untraced(
        &self,
        tax: &TaxCode,
        input: &str,
        purpose: Purpose,
        source: &Source,
        now: DateTime<Utc>,
    ) -> Result<SourcedVerification, Error> {
        let Some(defence) = &self.population else {
            let (v, _) = self.authenticate_core(tax, input, purpose, now)?;
            return Ok(SourcedVerification {
                outcome: v.outcome,
                proof: v.proof,
                device_token: None,
            });
        };
        // Input that is no PIN at all is refused before anything, as without the defence.
        let input = check_shape(input)?;
        let loaded = self.load(tax)?;
        let serial = loaded
            .as_ref()
            .and_then(|l| l.subject.credential.as_ref())
            .map(|c| c.serial);
        let profile = loaded
            .as_ref()
            .map_or(crate::subject::Profile::Noipa, |l| l.subject.profile());
        let admission = population::admit(
            &self.store,
            &defence.policy,
            &defence.key,
            source,
            tax,
            serial,
            now,
        )
        .map_err(Error::Store)?;
        let refused = |outcome| SourcedVerification {
            outcome,
            proof: None,
            device_token: None,
        };
        match admission.gate {
            Gate::Pass { .. } => {}
            Gate::TryLater { retry_after } => {
                return Ok(refused(VerifyOutcome::TryLater { retry_after }));
            }
            Gate::Challenge => return Ok(refused(VerifyOutcome::ChallengeRequired)),
        }
        let trusted = admission.trust == Trust::Trusted;
        let (v, compared) = self.authenticate_core(tax, input, purpose, now)?;
        population::learn(&self.store, &defence.policy, &admission, now);
        // A failed guess: a wrong PIN compared (its lock included), or a tax code with no PIN
        // (so that a spray over tax codes not on record counts alike). A locked PIN answered
        // without a compare, and a right PIN, are not.
        let failed = match v.outcome {
            VerifyOutcome::Rejected { .. } | VerifyOutcome::Locked => compared,
            VerifyOutcome::NoPin => true,
            _ => false,
        };
        if failed {
            // The person's counter is already settled; a counter that cannot be written
            // does not change their answer.
            let _ = population::record(&self.store, profile, source, admission.trust, now);
        }
        let device_token = match (&v.proof, serial) {
            (Some(_), Some(serial)) if !trusted => {
                let mut id = [0u8; 16];
                self.rng
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .fill_bytes(&mut id);
                Some(defence.key.issue(tax, serial, DeviceId(id), now))
            }
            _ => None,
        };
        Ok(SourcedVerification {
            outcome: v.outcome,
            proof: v.proof,
            device_token,
        })
    }

    /// The population report at `now` (`pin status --population`): the mode, each
    /// profile's failures against its threshold and the accounts an attacker is expected to
    /// have guessed, the `top` networks with most failed guesses.
    ///
    /// Without the population defence configured, the default
    /// [`PopulationPolicy`](crate::population::PopulationPolicy) sets the windows.
    ///
    /// # Errors
    /// [`Error::Store`] when the counters cannot be read (a store that keeps none refuses).
    pub fn population_report(
        &self,
        top: usize,
        now: DateTime<Utc>,
    ) -> Result<crate::population::PopulationReport, Error> {
        let policy = self
            .population
            .as_ref()
            .map_or_else(crate::population::PopulationPolicy::default, |d| d.policy);
        let counts = self
            .store
            .population_counts(&CountRequest::at(&policy, None, now))
            .map_err(Error::Store)?;
        let sources = self
            .store
            .top_sources(now - policy.source_window, top)
            .map_err(Error::Store)?;
        Ok(population::report(&policy, &counts, sources))
    }

    /// The verify of today, with no population gate, and whether the input was compared.
    fn authenticate_core(
        &self,
        tax: &TaxCode,
        input: &str,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Result<(Verification, bool), Error> {
        // Input that is no PIN of any kind is refused before anything is looked up, so the
        // answer is the same whether or not the subject exists.
        let input = check_shape(input)?;
        // What a compare of this input looks like when it cannot match (a PIN of another
        // shape than the subject's, or no subject at all): same cost, no match.
        let raw = || Pin::from_string(input.chars().take(64).collect());
        let done = |outcome| Verification {
            outcome,
            proof: None,
        };
        for _ in 0..CAS_RETRIES {
            let loaded = self.load(tax)?;
            let attempts = loaded.as_ref().map(|l| l.attempts).unwrap_or_default();
            let subject = loaded.as_ref().map(|l| &l.subject);
            let (serial, limit, format, hash) =
                match verify::plan(subject, &attempts, purpose, now, &self.policy) {
                    Plan::Done {
                        outcome,
                        dummy,
                        audit,
                    } => {
                        if dummy {
                            let _ = self.hasher.verify_dummy(&raw());
                        }
                        if let Some(ev) = audit {
                            self.store
                                .append_audit(&[ev])
                                .map_err(|e| store_err(tax, e))?;
                        }
                        return Ok((done(outcome), false));
                    }
                    Plan::Compare {
                        serial,
                        limit,
                        format,
                        hash,
                    } => (serial, limit, format, hash),
                };
            let Some(loaded) = loaded else {
                return Err(Error::UnknownSubject(tax.clone()));
            };
            // A hash this service cannot check (another key, test-only parameters) would
            // make every right PIN look wrong: refuse before anything is counted (POL-8).
            keycheck::usable(&self.hasher, &hash)?;
            telemetry::serial(serial);
            telemetry::compared_under(hash.key_id);
            let request = ReserveRequest {
                serial,
                limit,
                now,
                lease: self.options.attempt_lease,
            };
            let lease = match self
                .store
                .reserve_attempt(tax, &request)
                .map_err(|e| store_err(tax, e))?
            {
                Reservation::Stale => {
                    telemetry::conflict("verify");
                    continue;
                }
                Reservation::TryLater { retry_after } => {
                    return Ok((done(VerifyOutcome::TryLater { retry_after }), false));
                }
                Reservation::Locked { newly } => {
                    // Same cost as a compare: a locked PIN is not told apart by timing.
                    let _ = self.hasher.verify_dummy(&raw());
                    if newly {
                        self.notify_lock(&loaded.subject, now);
                    }
                    let ev = verify::audit_event(&loaded.subject, now, purpose, "locked");
                    self.store
                        .append_audit(&[ev])
                        .map_err(|e| store_err(tax, e))?;
                    return Ok((done(VerifyOutcome::Locked), false));
                }
                Reservation::Granted { lease, .. } => lease,
            };
            // The attempt is reserved durably; now the compare, outside any lock. A PIN of
            // another shape than this credential's is a wrong PIN like any other, at the
            // same cost.
            let pin = format::parse_input(format, input).unwrap_or_else(|_| raw());
            let compared = match self.hasher.compare(&pin, &hash) {
                Ok(c) => c,
                Err(e) => {
                    // No compare took place: release the reservation uncounted.
                    let ev = verify::audit_event(&loaded.subject, now, purpose, "hash_error");
                    let _ = self.settle(tax, serial, lease, limit, Settlement::Release, &ev);
                    return Err(e.into());
                }
            };
            let finished = verify::finish(&loaded.subject, &compared, purpose, now, &self.policy);
            let settled =
                self.settle(tax, serial, lease, limit, finished.settle, &finished.audit)?;
            let Some(outcome) = finished.outcome(settled) else {
                // A new PIN was issued while this one was compared: its outcome no longer
                // means anything (BOTH-1). Plan again on the current record.
                telemetry::conflict("verify");
                continue;
            };
            if matches!(
                settled,
                Settled::Done {
                    newly_blocked: true,
                    ..
                }
            ) {
                self.notify_lock(&loaded.subject, now);
            }
            if outcome == VerifyOutcome::Locked {
                return Ok((done(outcome), true));
            }
            let rehash = matches!(compared.verified(), Verified::Match { needs_rehash: true })
                && compared.matched(&hash);
            if finished.update.is_some() || rehash {
                self.refresh_after_match(loaded, finished.update, rehash.then_some(&pin));
            }
            return Ok((
                Verification {
                    outcome,
                    proof: finished.proof,
                },
                true,
            ));
        }
        Err(Error::Contention(tax.clone()))
    }

    /// Tells the person, on the contacts on record, that their PIN was just blocked (POL-6):
    /// a notice with no secret, sent once, by the verify that made the lock. A notice that
    /// cannot be sent does not change the answer: the lock is in the audit log either way.
    fn notify_lock(&self, subject: &Subject, now: DateTime<Utc>) {
        let notices = crate::command::Notice::to_contacts(
            &subject.tax_code,
            &subject.contacts,
            crate::command::NoticeKind::Locked,
            now,
        );
        telemetry::locked(subject.credential.as_ref().map(|c| c.serial));
        for r in self.send_or_defer(notices) {
            if let Some(e) = r.error {
                telemetry::ignored("lock_notice", &e);
            }
        }
    }

    /// Sends security notices now ([`DeliveryMode::Inline`]), or leaves them to the next
    /// [`PinService::deliver_due`] of this process ([`DeliveryMode::Deferred`]: no request
    /// waits on a channel). They carry no secret and are best effort either way: a notice
    /// the channel does not take is reported, not retried, and a deferred one is lost if the
    /// process dies first (the audit log records what it told of).
    fn send_or_defer(&self, notices: Vec<crate::command::Notice>) -> Vec<NoticeReport> {
        match self.options.delivery {
            DeliveryMode::Inline => self.send_notices(&notices),
            DeliveryMode::Deferred => {
                self.notices_due
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend(notices);
                Vec::new()
            }
        }
    }

    /// Settles a reservation, retrying a retryable storage failure with backoff for a
    /// bounded time ([`DriverOptions::settle_retries`]): a right PIN whose settlement meets
    /// a busy or briefly unavailable store is still settled as a success once the store
    /// recovers, instead of leaving its reservation to expire and count as a failure
    /// (POL-8).
    fn settle(
        &self,
        tax: &TaxCode,
        serial: u64,
        lease: LeaseId,
        limit: u32,
        settlement: Settlement,
        audit: &crate::audit::AuditEvent,
    ) -> Result<Settled, Error> {
        let mut backoff = self.options.settle_backoff;
        let mut tries = 0u32;
        loop {
            match self
                .store
                .settle_attempt(tax, serial, lease, limit, settlement, audit)
            {
                Ok(settled) => return Ok(settled),
                Err(e) if e.is_retryable() && tries < self.options.settle_retries => {
                    tries += 1;
                    telemetry::settle_retry(tries, &e);
                    std::thread::sleep(backoff);
                    backoff = backoff.saturating_mul(2).min(MAX_SETTLE_BACKOFF);
                }
                Err(e) => return Err(store_err(tax, e)),
            }
        }
    }

    /// After a match: save the first-use confirmation (NOIPA-7; it also ends the window in
    /// which a re-send may replace the PIN) and upgrade the hash to the live parameters and
    /// key. On a conflict the record is reloaded and the same changes applied again, as long
    /// as the credential is still the one that matched; storage errors are not the
    /// verifier's concern and leave the next successful verify to try again.
    fn refresh_after_match(&self, loaded: Loaded, update: Option<Subject>, rehash: Option<&Pin>) {
        let serial = loaded.subject.credential.as_ref().map(|c| c.serial);
        let first_use = update
            .as_ref()
            .and_then(|u| u.credential.as_ref())
            .and_then(|c| c.first_used_at);
        let rehash = rehash.filter(|_| self.ensure_key_recorded().is_ok());
        let new_hash = match rehash.map(|pin| self.mint().seal(pin)) {
            Some(Ok(h)) => Some(h),
            Some(Err(e)) => {
                telemetry::ignored("rehash", &e);
                None
            }
            None => None,
        };
        let (mut subject, mut version) = (loaded.subject, loaded.version);
        for _ in 0..CAS_RETRIES {
            let mut next = subject.clone();
            let Some(cred) = next
                .credential
                .as_mut()
                .filter(|c| Some(c.serial) == serial)
            else {
                return;
            };
            if let (Some(at), None) = (first_use, cred.first_used_at) {
                if cred.stage != crate::subject::Stage::AwaitingActivation {
                    cred.first_used_at = Some(at);
                }
                for p in &mut cred.parts {
                    if p.state != DeliveryState::Confirmed {
                        p.set_state(DeliveryState::Confirmed, at);
                    }
                }
            }
            if let Some(h) = &new_hash {
                cred.hash = h.clone();
            }
            if next == subject {
                return;
            }
            match self.store.save(&next, version, AttemptsUpdate::Keep, &[]) {
                Err(StoreError::Conflict) => match self.store.load(&next.tax_code) {
                    Ok(Some(l)) => (subject, version) = (l.subject, l.version),
                    _ => return,
                },
                Err(e) => return telemetry::ignored("refresh_save", &e),
                Ok(_) => return,
            }
        }
    }

    /// Changes the subject's PIN (INPS-3 first access, INPS-4/INPS-11 rotation): `current`
    /// authenticates; `new` is the chosen 8-character PIN, or `None` for one generated by
    /// the system and returned to the subject alone.
    ///
    /// # Errors
    /// [`Error::Input`] when `new` is not an acceptable PIN (checked before any attempt is
    /// counted), refusals of the machine, storage failures.
    pub fn change_pin(
        &self,
        tax: &TaxCode,
        current: &str,
        new: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<ChangeOutcome, Error> {
        let new = match new {
            Some(text) => NewPin::Chosen(
                format::parse_chosen(PinFormat::InpsInUse8, text).map_err(InputError::from)?,
            ),
            None => NewPin::Generated,
        };
        // The PIN is checked first, for every subject: a NoiPA employee (who has no change
        // of PIN) is refused only after the right PIN, so that the answer to a wrong PIN
        // does not tell a NoiPA employee from an INPS citizen. A wrong PIN given here is a
        // guess like any other and is counted as one.
        let v = self.authenticate(tax, current, Purpose::Change, now)?;
        let Some(authenticated) = v.proof else {
            return Ok(ChangeOutcome::NotAuthenticated(v.outcome));
        };
        let done = self.execute(
            tax,
            &Actor::Subject,
            &Command::ChangePin { authenticated, new },
            now,
        )?;
        Ok(ChangeOutcome::Changed {
            revealed: done.revealed,
        })
    }

    /// Activates a pre-assigned PIN (INPS-8): the person types the letter's half and the
    /// health-card registry's answer is given; the second half is then sent.
    ///
    /// # Errors
    /// [`Refusal::CheckFailed`] when the health card did not match (no attempt counted),
    /// [`Error::Input`] for a malformed half, refusals, storage failures. A wrong half is
    /// an outcome: `Ok(Err(outcome))`.
    pub fn activate(
        &self,
        tax: &TaxCode,
        first_half: &str,
        health_card: Check,
        now: DateTime<Utc>,
    ) -> Result<Result<Executed, VerifyOutcome>, Error> {
        if health_card == Check::Failed {
            return Err(Refusal::CheckFailed("health card").into());
        }
        let half =
            format::parse_input(PinFormat::InpsInUse8, first_half).map_err(InputError::from)?;
        let v = self.authenticate(tax, first_half, Purpose::Activate, now)?;
        let Some(authenticated) = v.proof else {
            return Ok(Err(v.outcome));
        };
        let cmd = Command::Activate {
            authenticated,
            first_half: half,
            health_card,
        };
        Ok(Ok(self.execute(tax, &Actor::Subject, &cmd, now)?))
    }

    /// Changes contacts as the subject, authenticated with the PIN (NOIPA-9).
    ///
    /// # Errors
    /// As [`PinService::execute`]; a PIN that does not authenticate is `Ok(Err(outcome))`.
    pub fn change_contacts_with_pin(
        &self,
        tax: &TaxCode,
        pin: &str,
        contacts: Contacts,
        now: DateTime<Utc>,
    ) -> Result<Result<Executed, VerifyOutcome>, Error> {
        let v = self.authenticate(
            tax,
            pin,
            Purpose::Access {
                required: crate::subject::Level::Online,
            },
            now,
        )?;
        let Some(authenticated) = v.proof else {
            return Ok(Err(v.outcome));
        };
        let cmd = Command::ChangeContacts {
            contacts,
            authenticated: Some(authenticated),
        };
        Ok(Ok(self.execute(tax, &Actor::Subject, &cmd, now)?))
    }

    /// Imports subjects with credentials from an earlier system, whose hashes were made
    /// with this library's hasher and keyring — no Argon2 work per subject. Each record is
    /// checked ([`Hasher::check_stored`]: key, parameters, a 16-byte salt; dates:
    /// `issued_at` and `changed_at` not after `now`, `changed_at` not before `issued_at`)
    /// and decided as [`Command::Import`] by [`Actor::System`]; then stored with
    /// [`Store::create_streamed`] (one transaction on stores that support it: all or
    /// nothing). `batch` is consumed one record at a time: see [`PinService::import_streamed`].
    ///
    /// # Errors
    /// [`Error::Batch`] naming the first record refused (nothing is stored), or a storage
    /// failure such as [`Error::Store`] with [`StoreError::Exists`] / [`Error::EmailInUse`].
    pub fn import<I>(&self, batch: I, now: DateTime<Utc>) -> Result<usize, Error>
    where
        I: IntoIterator<Item = (TaxCode, crate::command::Imported)>,
    {
        self.import_streamed(batch.into_iter().map(Ok), now)
    }

    /// [`PinService::import`] from a source that can fail (e.g. lines read from a file):
    /// records are pulled one at a time, checked, decided and handed to
    /// [`Store::create_streamed`], so that on a store that streams (SQLite) memory does not
    /// grow with the batch. An `Err` from `batch` stops the import: nothing is stored, and
    /// the error comes back as [`Error::Batch`] with its index.
    ///
    /// On a store that streams, a record the store refuses ([`StoreError::Exists`],
    /// [`Error::EmailInUse`]) is the last one pulled from `batch`.
    ///
    /// # Errors
    /// As [`PinService::import`].
    pub fn import_streamed<I>(&self, batch: I, now: DateTime<Utc>) -> Result<usize, Error>
    where
        I: IntoIterator<Item = Result<(TaxCode, crate::command::Imported), Error>>,
    {
        let ctx = Context {
            now,
            policy: &self.policy,
        };
        // The first refusal, kept here: the store sees only that the stream stopped.
        let mut refused: Option<Error> = None;
        let mut decided = batch.into_iter().enumerate().map(|(index, row)| {
            let decide = |(tax, imported): (TaxCode, crate::command::Imported)| {
                // A hash this hasher could not verify (other key, parameters out of bounds,
                // malformed, short salt) would lock its owner out at the first verify, and
                // impossible dates would corrupt rotation and expiry: refuse them now.
                self.hasher.check_stored(&imported.hash)?;
                check_import_dates(&imported, now)?;
                machine::decide(
                    &tax,
                    None,
                    &Attempts::default(),
                    &Actor::System,
                    &Command::Import(imported),
                    &ctx,
                    &mut self.mint(),
                )
            };
            match row.and_then(decide) {
                Ok(d) => Ok((d.next, d.audit)),
                Err(e) => {
                    refused = Some(Error::Batch {
                        index,
                        source: Box::new(e),
                    });
                    Err(StoreError::Backend(
                        format!("import stopped at record {index}").into(),
                    ))
                }
            }
        });
        // The fingerprint of the key the imported hashes were made with is recorded once
        // they are stored, so that a refused import changes nothing (the keyring was already
        // checked against the store when the service was made).
        let stored = self.store.create_streamed(&mut decided);
        drop(decided);
        match (stored, refused) {
            (_, Some(e)) => Err(e),
            (Ok(n), None) => {
                self.ensure_key_recorded()?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            }
            (Err(StoreError::EmailTaken), None) => Err(Error::EmailInUse),
            (Err(other), None) => Err(Error::Store(other)),
        }
    }

    /// The subject's state at `now`, as a view with no PIN hash and masked contacts.
    ///
    /// # Errors
    /// [`Error::UnknownSubject`], storage failures.
    pub fn status(&self, tax: &TaxCode, now: DateTime<Utc>) -> Result<Status, Error> {
        let l = self
            .load(tax)?
            .ok_or_else(|| Error::UnknownSubject(tax.clone()))?;
        let limit = self.policy.lockout(l.subject.profile());
        let cred = l.subject.credential.as_ref();
        let current = cred.map(|c| c.serial);
        let counter = if current == Some(l.attempts.serial) {
            l.attempts
        } else {
            Attempts::default()
        };
        let locked = current.is_some() && counter.is_locked(limit);
        let rotation_due = cred.and_then(|c| c.rotation_due(l.subject.role, &self.policy));
        let unused_deadline = cred.and_then(|c| c.unused_deadline(&self.policy));
        let past = |d: Option<DateTime<Utc>>| d.is_some_and(|d| now >= d);
        let state = match (&l.subject.pending, cred) {
            (crate::subject::Pending::OutboundVerification { .. }, _) => {
                State::AwaitingOutboundVerification
            }
            (_, None) => State::NoPin,
            _ if locked => State::Locked,
            (_, Some(c)) => match c.stage {
                crate::subject::Stage::AwaitingActivation => State::AwaitingActivation,
                _ if past(unused_deadline) => State::Expired,
                crate::subject::Stage::MustChange => State::MustChange,
                crate::subject::Stage::Active if past(rotation_due) => State::Expired,
                crate::subject::Stage::Active => State::Active,
            },
        };
        Ok(Status::new(
            state,
            &l.subject,
            counter,
            locked,
            limit.saturating_sub(counter.failures),
            rotation_due,
            unused_deadline,
        ))
    }
}

/// The dates of an imported credential must be possible: not after `now`, and the change
/// not before the issue.
fn check_import_dates(i: &crate::command::Imported, now: DateTime<Utc>) -> Result<(), Error> {
    if i.issued_at > now {
        return Err(InputError::Import("issued_at is in the future").into());
    }
    match i.changed_at {
        Some(changed) if changed > now => {
            Err(InputError::Import("changed_at is in the future").into())
        }
        Some(changed) if changed < i.issued_at => {
            Err(InputError::Import("changed_at is before issued_at").into())
        }
        _ => Ok(()),
    }
}
