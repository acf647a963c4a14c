//! Population-level defence: makes spraying PINs across many people pointless without
//! locking anyone out.
//!
//! The per-person lockout (INPS-12, POL-1) protects one person; an attacker who knows many
//! tax codes and tries a few 5-digit PINs on each still expects `guesses ÷ 100,000`
//! accounts. This module holds the pure rules that see the population; the store keeps the
//! counters ([`Store::record_failed_guess`](crate::store::Store::record_failed_guess) and
//! friends), time is a parameter, nothing lives in process memory.
//!
//! The rules, checked before any attempt is reserved (so nothing is counted against the
//! person, POL-8):
//!
//! 1. **Trusted device.** A [`Source`] with a [`DeviceToken`] that is valid for the subject's
//!    current PIN ([`DeviceKey::check`]) passes: no source limit, no challenge. Only the
//!    per-person lockout applies — a person on their own device is never slowed by someone
//!    else's spraying (OWASP device cookies).
//! 2. **Per-source limit.** Failed guesses from the source's [`NetworkKey`] over a sliding
//!    window ([`PopulationPolicy::source_window`]), across all subjects: at
//!    [`PopulationPolicy::source_limit`] the answer is
//!    [`VerifyOutcome::TryLater`](crate::verify::VerifyOutcome::TryLater).
//! 3. **Population budget.** Failed guesses per profile over
//!    [`PopulationPolicy::population_window`], against a slowly learned [`Baseline`]. Above
//!    `factor × max(baseline, floor)` for any profile the service is **defended**: an untrusted
//!    source without a challenge proof ([`Source::challenge_passed`]) is answered
//!    [`VerifyOutcome::ChallengeRequired`](crate::verify::VerifyOutcome::ChallengeRequired).
//!    The mode ends by itself when the windowed count falls back.
//!
//! ```text
//!                 count > factor × max(baseline, floor), any profile
//!   ┌────────┐ ───────────────────────────────────────────────▶ ┌──────────┐
//!   │ normal │                                                    │ defended │
//!   └────────┘ ◀─────────────────────────────────────────────── └──────────┘
//!                 the window slides past the failures (by itself)
//! ```
//!
//! Defended mode is one mode for the whole service (entered when any profile's budget is
//! exceeded), so that a challenge does not tell which profile a tax code belongs to, nor
//! whether it is on record. A failed guess on a tax code not on record is counted under
//! [`Profile::Noipa`], the profile whose 5-digit PINs a spray targets.

use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use zeroize::Zeroizing;

use crate::subject::Profile;
use crate::tax_code::TaxCode;

/// The longest [`NetworkKey`], in bytes.
pub const MAX_NETWORK_KEY: usize = 64;

/// Why a source given by the caller was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A network key must be 1 to 64 printable ASCII characters without spaces.
    #[error("a network key must be 1 to 64 printable ASCII characters without spaces")]
    NetworkKey,
    /// The device token is not of the form this library issues.
    #[error("the device token is malformed")]
    DeviceToken,
    /// A device key must be at least 32 bytes.
    #[error("a device key must be at least 32 bytes")]
    DeviceKey,
}

/// Where a guess comes from, at the granularity the caller chose: an IPv4 /24, an IPv6 /64,
/// a client id (e.g. `198.51.100.0/24`). Not a secret.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NetworkKey(String);

impl NetworkKey {
    /// Checks `key`: 1 to [`MAX_NETWORK_KEY`] printable ASCII characters, no spaces.
    ///
    /// # Errors
    /// [`SourceError::NetworkKey`].
    pub fn new(key: &str) -> Result<Self, SourceError> {
        if key.is_empty()
            || key.len() > MAX_NETWORK_KEY
            || !key.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(SourceError::NetworkKey);
        }
        Ok(Self(key.to_owned()))
    }

    /// The key as given.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for NetworkKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A device's random identifier, chosen by the service when it issues a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DeviceId(pub [u8; 16]);

/// A signed statement "this device signed in as this subject with this PIN": a keyed MAC
/// over subject, PIN serial, device id and issue time ([`DeviceKey::issue`]). It is a
/// bearer credential for the population limits only (never for the PIN itself): `Debug`
/// does not show the MAC.
#[derive(Clone, PartialEq, Eq)]
pub struct DeviceToken {
    device: DeviceId,
    serial: u64,
    issued_at: DateTime<Utc>,
    mac: [u8; 32],
}

impl std::fmt::Debug for DeviceToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            device,
            serial,
            issued_at,
            mac: _,
        } = self;
        f.debug_struct("DeviceToken")
            .field("device", device)
            .field("serial", serial)
            .field("issued_at", issued_at)
            .finish_non_exhaustive()
    }
}

use crate::audit::export::hex;

fn unhex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 || !text.is_ascii() {
        return None;
    }
    let mut out = [0u8; N];
    for (i, byte) in out.iter_mut().enumerate() {
        let pair = text.get(i * 2..i * 2 + 2)?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(out)
}

impl DeviceToken {
    /// The text form: `d1.<device hex>.<serial>.<issued unix seconds>.<mac hex>`, to keep in a
    /// cookie or the device's storage.
    #[must_use]
    pub fn encode(&self) -> String {
        format!(
            "d1.{}.{}.{}.{}",
            hex(&self.device.0),
            self.serial,
            self.issued_at.timestamp(),
            hex(&self.mac)
        )
    }

    /// Reads the text form of [`DeviceToken::encode`]. Says nothing about validity: that is
    /// [`DeviceKey::check`].
    ///
    /// # Errors
    /// [`SourceError::DeviceToken`] for anything else.
    pub fn parse(text: &str) -> Result<Self, SourceError> {
        let bad = || SourceError::DeviceToken;
        let mut parts = text.trim().split('.');
        if parts.next() != Some("d1") {
            return Err(bad());
        }
        let device = parts.next().and_then(unhex::<16>).ok_or_else(bad)?;
        let serial = parts
            .next()
            .and_then(|s| s.parse::<u64>().ok())
            .ok_or_else(bad)?;
        let issued = parts
            .next()
            .and_then(|s| s.parse::<i64>().ok())
            .and_then(|s| DateTime::from_timestamp(s, 0))
            .ok_or_else(bad)?;
        let mac = parts.next().and_then(unhex::<32>).ok_or_else(bad)?;
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Self {
            device: DeviceId(device),
            serial,
            issued_at: issued,
            mac,
        })
    }

    /// The device.
    #[must_use]
    pub fn device(&self) -> DeviceId {
        self.device
    }

    /// When it was issued.
    #[must_use]
    pub fn issued_at(&self) -> DateTime<Utc> {
        self.issued_at
    }
}

/// The key that signs device tokens: kept apart from the database (and from the pepper), so
/// that a copy of the database cannot mint trusted devices. `Debug` shows nothing of it.
pub struct DeviceKey(Zeroizing<Vec<u8>>);

impl std::fmt::Debug for DeviceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceKey").finish_non_exhaustive()
    }
}

/// What [`DeviceKey::check`] found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trust {
    /// No token, or one that is not valid for this subject's current PIN: the source is
    /// untrusted.
    Untrusted,
    /// A valid token for this subject's current PIN, within its age.
    Trusted,
}

const TOKEN_LABEL: &[u8] = b"pin-core device token v1";

impl DeviceKey {
    /// A key from at least 32 bytes of secret.
    ///
    /// # Errors
    /// [`SourceError::DeviceKey`] when shorter.
    pub fn new(secret: &[u8]) -> Result<Self, SourceError> {
        if secret.len() < 32 {
            return Err(SourceError::DeviceKey);
        }
        Ok(Self(Zeroizing::new(secret.to_vec())))
    }

    /// A key derived from `pepper` with HKDF-SHA-256 under a label of its own: kept apart
    /// from the database as the pepper is, and independent of every other key derived from
    /// it. Tokens signed under one pepper do not check under another (rotating the pepper
    /// revokes every device token).
    #[must_use]
    pub fn derive(pepper: &crate::secret::Pepper) -> Self {
        let mut key = Zeroizing::new(vec![0u8; 32]);
        let hk = hkdf::Hkdf::<Sha256>::new(None, pepper.expose_secret());
        // 32 bytes is far below HKDF-SHA-256's limit of 255 × 32: this cannot fail.
        let expanded = hk.expand(b"pin-core device token key v1", key.as_mut_slice());
        debug_assert!(expanded.is_ok());
        Self(key)
    }

    fn mac(&self, tax: &TaxCode, serial: u64, device: DeviceId, at: i64) -> Hmac<Sha256> {
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.0)
            .expect("HMAC accepts keys of every length");
        mac.update(TOKEN_LABEL);
        mac.update(tax.as_str().as_bytes());
        mac.update(&serial.to_be_bytes());
        mac.update(&device.0);
        mac.update(&at.to_be_bytes());
        mac
    }

    /// Issues a token for `device` signing in as `tax` with the PIN of serial `serial` at
    /// `now` (whole seconds).
    #[must_use]
    pub fn issue(
        &self,
        tax: &TaxCode,
        serial: u64,
        device: DeviceId,
        now: DateTime<Utc>,
    ) -> DeviceToken {
        let at = now.timestamp();
        let mac = self.mac(tax, serial, device, at).finalize().into_bytes();
        DeviceToken {
            device,
            serial,
            issued_at: DateTime::from_timestamp(at, 0).unwrap_or(now),
            mac: mac.into(),
        }
    }

    /// Whether `token` makes the source trusted for `tax` whose current PIN has serial
    /// `serial`, at `now`: the MAC checks (in constant time), the serial is the current one
    /// (a new PIN revokes every token of the old one), and the token is not older than
    /// `max_age` nor issued more than a minute after `now`.
    #[must_use]
    pub fn check(
        &self,
        token: &DeviceToken,
        tax: &TaxCode,
        serial: u64,
        now: DateTime<Utc>,
        max_age: TimeDelta,
    ) -> Trust {
        let mac = self.mac(tax, token.serial, token.device, token.issued_at.timestamp());
        let authentic = mac.verify_slice(&token.mac).is_ok();
        let fresh =
            token.issued_at + max_age > now && token.issued_at <= now + TimeDelta::minutes(1);
        if authentic && token.serial == serial && fresh {
            Trust::Trusted
        } else {
            Trust::Untrusted
        }
    }
}

/// Where a verify comes from, as the caller (a web front, a contact centre) knows it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Source {
    /// The network the request came from, at the granularity the caller chose; `None` when
    /// unknown (then only the population budget applies).
    pub network: Option<NetworkKey>,
    /// The device token the client presented, if any.
    pub device: Option<DeviceToken>,
    /// The caller vouches that the client passed a challenge (a CAPTCHA, a proof of work) for
    /// this request: it lifts [`Gate::Challenge`], never the source limit.
    pub challenge_passed: bool,
}

impl Source {
    /// An unknown source: no network, no device, no challenge (what
    /// [`PinService::verify`](crate::service::PinService::verify) assumes).
    #[must_use]
    pub fn unknown() -> Self {
        Self::default()
    }

    /// A source known by its network.
    #[must_use]
    pub fn network(key: NetworkKey) -> Self {
        Self {
            network: Some(key),
            ..Self::default()
        }
    }
}

/// The limits of the population defence. Policy is a value: see the module docs for the
/// rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PopulationPolicy {
    /// Failed guesses a network may make over [`PopulationPolicy::source_window`], across all
    /// subjects, before it is told to try later. Default: 20.
    pub source_limit: u32,
    /// The sliding window of the source limit. Default: 1 hour.
    pub source_window: TimeDelta,
    /// The sliding window of the population budget. Default: 1 hour.
    pub population_window: TimeDelta,
    /// How far above the baseline the windowed count may go before the service is defended.
    /// Default: 4.
    pub factor: u32,
    /// The least baseline (failed guesses per window) the budget assumes, so that a quiet
    /// night does not make a handful of typos look like an attack. Default: 50.
    pub floor: u32,
    /// How slowly the baseline learns: each window moves it `1/learning` of the way to the
    /// window's count (an exponentially weighted average). Default: 168 (a week of hours).
    pub learning: u32,
    /// How long a device token stays valid. Default: 180 days.
    pub device_max_age: TimeDelta,
}

impl Default for PopulationPolicy {
    fn default() -> Self {
        Self {
            source_limit: 20,
            source_window: TimeDelta::hours(1),
            population_window: TimeDelta::hours(1),
            factor: 4,
            floor: 50,
            learning: 168,
            device_max_age: TimeDelta::days(180),
        }
    }
}

impl PopulationPolicy {
    /// The same policy with another source limit and window.
    #[must_use]
    pub fn with_source_limit(mut self, limit: u32, window: TimeDelta) -> Self {
        self.source_limit = limit;
        self.source_window = window;
        self
    }

    /// The same policy with another population budget.
    #[must_use]
    pub fn with_budget(
        mut self,
        window: TimeDelta,
        factor: u32,
        floor: u32,
        learning: u32,
    ) -> Self {
        self.population_window = window;
        self.factor = factor;
        self.floor = floor;
        self.learning = learning.max(1);
        self
    }

    /// How long counters must be kept: the longer window.
    #[must_use]
    pub fn retention(&self) -> TimeDelta {
        self.source_window.max(self.population_window)
    }

    /// The windowed count above which a profile with `baseline` is over budget.
    #[must_use]
    pub fn threshold(&self, baseline: Option<&Baseline>) -> u64 {
        let learned = baseline.map_or(0, |b| b.per_window_milli.div_ceil(1000));
        u64::from(self.factor).saturating_mul(learned.max(u64::from(self.floor)))
    }
}

/// The slowly learned rate of failed guesses of one profile: failed guesses per population
/// window (in thousandths), and when it last learned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Baseline {
    /// Failed guesses per window, × 1000.
    pub per_window_milli: u64,
    /// When the last window was folded in.
    pub folded_at: DateTime<Utc>,
}

/// One failed guess (a wrong PIN, a locked PIN, a tax code with no PIN), as the counters
/// keep it. Only answers that settle or refuse a guess are counted; `TryLater` and
/// `ChallengeRequired` never are (POL-8).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FailedGuess {
    /// When.
    pub at: DateTime<Utc>,
    /// The profile of the subject guessed (NoiPA for a tax code not on record).
    pub profile: Profile,
    /// The untrusted source's network; `None` when unknown or when the device was trusted
    /// (its failures count for the population, not for a source).
    pub network: Option<NetworkKey>,
}

/// What [`Store::population_counts`](crate::store::Store::population_counts) counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CountRequest<'a> {
    /// The source's network, if any.
    pub network: Option<&'a NetworkKey>,
    /// Failed guesses of the network at or before this instant are outside its window.
    pub source_since: DateTime<Utc>,
    /// Failed guesses at or before this instant are outside the population window.
    pub population_since: DateTime<Utc>,
}

impl<'a> CountRequest<'a> {
    /// The windows of `policy` ending at `now`.
    #[must_use]
    pub fn at(
        policy: &PopulationPolicy,
        network: Option<&'a NetworkKey>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            network,
            source_since: now - policy.source_window,
            population_since: now - policy.population_window,
        }
    }
}

/// The counters a decision reads. A count includes every failed guess strictly after its
/// `since`, later ones included (a clock that went backwards does not hide them).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PopulationCounts {
    /// Failed guesses of the network in its window (0 without a network).
    pub source: u64,
    /// The oldest of them, to say when to try again.
    pub source_oldest: Option<DateTime<Utc>>,
    /// Failed guesses per profile in the population window (profiles with none may be left
    /// out).
    pub failures: Vec<(Profile, u64)>,
    /// The baselines on record (a profile that never learned is left out).
    pub baselines: Vec<(Profile, Baseline)>,
}

impl PopulationCounts {
    /// The failures of `profile` in the window.
    #[must_use]
    pub fn failures_of(&self, profile: Profile) -> u64 {
        self.failures
            .iter()
            .filter(|(p, _)| *p == profile)
            .map(|(_, n)| *n)
            .sum()
    }

    /// The baseline of `profile`, if learned.
    #[must_use]
    pub fn baseline_of(&self, profile: Profile) -> Option<&Baseline> {
        self.baselines
            .iter()
            .find(|(p, _)| *p == profile)
            .map(|(_, b)| b)
    }
}

/// The service's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    /// Every profile is within its budget.
    Normal,
    /// Some profile is over its budget: untrusted sources must present a challenge proof.
    Defended,
}

const PROFILES: [Profile; 2] = [Profile::Noipa, Profile::Inps];

/// The mode the counters put the service in.
#[must_use]
pub fn mode(policy: &PopulationPolicy, counts: &PopulationCounts) -> Mode {
    let over = PROFILES
        .iter()
        .any(|p| counts.failures_of(*p) > policy.threshold(counts.baseline_of(*p)));
    if over { Mode::Defended } else { Mode::Normal }
}

/// What [`gate`] lets through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Gate {
    /// Go on with the per-person protocol.
    Pass {
        /// The device was trusted (its failures are not counted against its network).
        trusted: bool,
    },
    /// The source is over its limit: not checked, not counted (POL-8).
    TryLater {
        /// When the oldest failure of the window leaves it (at least one second).
        retry_after: std::time::Duration,
    },
    /// Defended mode and no challenge proof: not checked, not counted (POL-8).
    Challenge,
}

/// The decision before any reservation: a trusted device passes; a source at its limit waits;
/// in defended mode an untrusted source without a challenge proof is challenged.
pub fn gate(
    policy: &PopulationPolicy,
    counts: &PopulationCounts,
    trust: Trust,
    challenge_passed: bool,
    now: DateTime<Utc>,
) -> Gate {
    if trust == Trust::Trusted {
        return Gate::Pass { trusted: true };
    }
    if counts.source >= u64::from(policy.source_limit) {
        let leaves = counts
            .source_oldest
            .map_or(now + policy.source_window, |o| o + policy.source_window);
        let wait = (leaves - now)
            .to_std()
            .unwrap_or_default()
            .max(std::time::Duration::from_secs(1));
        return Gate::TryLater { retry_after: wait };
    }
    if mode(policy, counts) == Mode::Defended && !challenge_passed {
        return Gate::Challenge;
    }
    Gate::Pass { trusted: false }
}

/// What [`admit`] decided, and what it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub struct Admission {
    /// The decision.
    pub gate: Gate,
    /// Whether the device was trusted.
    pub trust: Trust,
    /// The mode the counters showed (`None` for a trusted device: no counters were read).
    pub mode: Option<Mode>,
    /// Baselines to learn once the verify is done ([`learn`]): per profile, the one read and
    /// the next one, when a window has passed since the last fold.
    pub learn: [Option<(Profile, Option<Baseline>, Baseline)>; 2],
}

/// The population step of a verify, before any reservation: checks the device token
/// against the subject's current PIN `serial`; for an untrusted source reads the counters
/// (one read, nothing written) and applies [`gate`].
///
/// # Errors
/// A storage failure reading the counters (nothing was reserved or counted).
pub fn admit<S: crate::store::Store + ?Sized>(
    store: &S,
    policy: &PopulationPolicy,
    key: &DeviceKey,
    source: &Source,
    tax: &TaxCode,
    serial: Option<u64>,
    now: DateTime<Utc>,
) -> Result<Admission, crate::store::StoreError> {
    let trust = match (&source.device, serial) {
        (Some(token), Some(serial)) => key.check(token, tax, serial, now, policy.device_max_age),
        _ => Trust::Untrusted,
    };
    if trust == Trust::Trusted {
        return Ok(Admission {
            gate: Gate::Pass { trusted: true },
            trust,
            mode: None,
            learn: [None, None],
        });
    }
    let counts =
        store.population_counts(&CountRequest::at(policy, source.network.as_ref(), now))?;
    let learn = PROFILES.map(|profile| {
        let old = counts.baseline_of(profile).copied();
        fold(policy, old.as_ref(), counts.failures_of(profile), now)
            .map(|next| (profile, old, next))
    });
    Ok(Admission {
        gate: gate(policy, &counts, trust, source.challenge_passed, now),
        trust,
        mode: Some(mode(policy, &counts)),
        learn,
    })
}

/// Folds the finished windows [`admit`] saw into the baselines (at most one write per profile
/// and window: the first instance to swap wins); the winner for NoiPA also prunes the rows
/// older than [`PopulationPolicy::retention`]. Call it once the verify is done, so that a
/// verify that fails (a wrong key file, bad settings) writes nothing. Storage failures are
/// ignored: learning changes no answer.
pub fn learn<S: crate::store::Store + ?Sized>(
    store: &S,
    policy: &PopulationPolicy,
    admission: &Admission,
    now: DateTime<Utc>,
) {
    for (profile, old, next) in admission.learn.iter().flatten() {
        if matches!(store.swap_baseline(*profile, old.as_ref(), next), Ok(true))
            && *profile == Profile::Noipa
        {
            let _ = store.prune_failed_guesses(now - policy.retention());
        }
    }
}

/// Records one failed guess on `profile` from `source` at `now` (one row): counted against
/// the source's network unless the device was trusted.
///
/// # Errors
/// A storage failure.
pub fn record<S: crate::store::Store + ?Sized>(
    store: &S,
    profile: Profile,
    source: &Source,
    trust: Trust,
    now: DateTime<Utc>,
) -> Result<(), crate::store::StoreError> {
    store.record_failed_guess(&FailedGuess {
        at: now,
        profile,
        network: source.network.clone().filter(|_| trust == Trust::Untrusted),
    })
}

/// The baseline after `now`, when a window has passed since the last fold: it moves
/// `1/learning` of the way to `window_count`, which is first capped at twice the current
/// baseline (at least twice the floor), so an attack teaches it little. `None` when no window
/// has passed (or the clock went backwards): nothing to write. A profile that never learned
/// starts at the floor.
#[must_use]
pub fn fold(
    policy: &PopulationPolicy,
    baseline: Option<&Baseline>,
    window_count: u64,
    now: DateTime<Utc>,
) -> Option<Baseline> {
    let Some(b) = baseline else {
        return Some(Baseline {
            per_window_milli: u64::from(policy.floor).saturating_mul(1000),
            folded_at: now,
        });
    };
    if now < b.folded_at + policy.population_window {
        return None;
    }
    let cap = b
        .per_window_milli
        .max(u64::from(policy.floor).saturating_mul(1000))
        .saturating_mul(2);
    let sample = window_count.saturating_mul(1000).min(cap);
    let learning = u64::from(policy.learning.max(1));
    let old = b.per_window_milli;
    let next = if sample >= old {
        old + (sample - old) / learning
    } else {
        old - (old - sample) / learning
    };
    Some(Baseline {
        per_window_milli: next,
        folded_at: now,
    })
}

/// How many values a PIN of `profile` can take when guessed: 10⁵ for NoiPA's 5 digits; for
/// INPS, 8 characters of its alphabet.
#[must_use]
pub fn pin_space(profile: Profile) -> f64 {
    match profile {
        Profile::Noipa => 100_000.0,
        Profile::Inps => (crate::format::INPS_ALPHABET.len() as f64).powi(8),
    }
}

/// The number of accounts an attacker is expected to have guessed with `failures` guesses on
/// `profile`, each on a PIN not yet excluded: `failures ÷ PIN space`.
#[must_use]
pub fn expected_guessed(profile: Profile, failures: u64) -> f64 {
    failures as f64 / pin_space(profile)
}

/// What `pin status --population` shows.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct PopulationReport {
    /// The mode now.
    pub mode: Mode,
    /// Per profile: failed guesses in the window, the threshold, the expected accounts an
    /// attacker guessed with them.
    pub profiles: Vec<ProfileReport>,
    /// The networks with most failed guesses in the source window, most first.
    pub top_sources: Vec<(String, u64)>,
}

/// One profile in a [`PopulationReport`].
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct ProfileReport {
    /// The profile.
    pub profile: Profile,
    /// Failed guesses in the population window.
    pub failures: u64,
    /// The count above which the service is defended.
    pub threshold: u64,
    /// The learned baseline, failed guesses per window.
    pub baseline: f64,
    /// Expected accounts guessed in the window (`failures ÷ PIN space`).
    pub expected_guessed: f64,
}

/// The report of `counts` and `top_sources` under `policy`.
#[must_use]
pub fn report(
    policy: &PopulationPolicy,
    counts: &PopulationCounts,
    top_sources: Vec<(NetworkKey, u64)>,
) -> PopulationReport {
    PopulationReport {
        mode: mode(policy, counts),
        profiles: PROFILES
            .iter()
            .map(|p| {
                let failures = counts.failures_of(*p);
                ProfileReport {
                    profile: *p,
                    failures,
                    threshold: policy.threshold(counts.baseline_of(*p)),
                    baseline: counts.baseline_of(*p).map_or(f64::from(policy.floor), |b| {
                        b.per_window_milli as f64 / 1000.0
                    }),
                    expected_guessed: expected_guessed(*p, failures),
                }
            })
            .collect(),
        top_sources: top_sources.into_iter().map(|(k, n)| (k.0, n)).collect(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, 1, 12, 0, 0).single().unwrap()
    }

    fn tax() -> TaxCode {
        TaxCode::parse("RSSMRA85T10A562S").unwrap()
    }

    fn key() -> DeviceKey {
        DeviceKey::new(&[7u8; 32]).unwrap()
    }

    fn counts(source: u64, noipa: u64) -> PopulationCounts {
        PopulationCounts {
            source,
            source_oldest: Some(t0() - TimeDelta::minutes(50)),
            failures: vec![(Profile::Noipa, noipa)],
            baselines: Vec::new(),
        }
    }

    #[test]
    fn network_key_is_checked() {
        assert!(NetworkKey::new("198.51.100.0/24").is_ok());
        assert!(NetworkKey::new("2001:db8:1:2::/64").is_ok());
        assert_eq!(NetworkKey::new(""), Err(SourceError::NetworkKey));
        assert_eq!(NetworkKey::new("a b"), Err(SourceError::NetworkKey));
        assert_eq!(
            NetworkKey::new(&"x".repeat(65)),
            Err(SourceError::NetworkKey)
        );
        assert_eq!(NetworkKey::new("città"), Err(SourceError::NetworkKey));
    }

    #[test]
    fn device_token_round_trips_and_checks() {
        let token = key().issue(&tax(), 3, DeviceId([1; 16]), t0());
        let parsed = DeviceToken::parse(&token.encode()).unwrap();
        assert_eq!(parsed, token);
        let age = TimeDelta::days(180);
        assert_eq!(key().check(&parsed, &tax(), 3, t0(), age), Trust::Trusted);
        // Another subject, another PIN (a re-issue revokes), another key, too old.
        let other = TaxCode::parse("VRDGPP80A01H501U").unwrap();
        assert_eq!(key().check(&parsed, &other, 3, t0(), age), Trust::Untrusted);
        assert_eq!(key().check(&parsed, &tax(), 4, t0(), age), Trust::Untrusted);
        let k2 = DeviceKey::new(&[8u8; 32]).unwrap();
        assert_eq!(k2.check(&parsed, &tax(), 3, t0(), age), Trust::Untrusted);
        assert_eq!(
            key().check(&parsed, &tax(), 3, t0() + age, age),
            Trust::Untrusted
        );
        // Issued far in the future of `now`: not trusted.
        assert_eq!(
            key().check(&parsed, &tax(), 3, t0() - TimeDelta::hours(1), age),
            Trust::Untrusted
        );
    }

    #[test]
    fn device_token_tampering_is_refused() {
        let token = key().issue(&tax(), 3, DeviceId([1; 16]), t0());
        let text = token.encode();
        // Another issue time under the same MAC.
        let forged = text.replace(
            &format!(".{}.", t0().timestamp()),
            &format!(".{}.", t0().timestamp() + 1),
        );
        let forged = DeviceToken::parse(&forged).unwrap();
        assert_eq!(
            key().check(
                &forged,
                &tax(),
                3,
                t0() + TimeDelta::hours(1),
                TimeDelta::days(1)
            ),
            Trust::Untrusted
        );
        for bad in [
            "",
            "d1",
            "d2.00.1.1.00",
            &format!("{text}.x"),
            "d1.zz.1.1.00",
        ] {
            assert_eq!(
                DeviceToken::parse(bad),
                Err(SourceError::DeviceToken),
                "{bad}"
            );
        }
        assert!(!format!("{token:?}").contains(&text[text.len() - 64..]));
    }

    #[test]
    fn derived_device_keys_differ_by_pepper() {
        use crate::secret::{KeyId, Pepper};
        let p1 = Pepper::new(KeyId(1), &[1u8; 32]).unwrap();
        let p2 = Pepper::new(KeyId(2), &[2u8; 32]).unwrap();
        let token = DeviceKey::derive(&p1).issue(&tax(), 1, DeviceId([3; 16]), t0());
        let age = TimeDelta::days(1);
        assert_eq!(
            DeviceKey::derive(&p1).check(&token, &tax(), 1, t0(), age),
            Trust::Trusted
        );
        assert_eq!(
            DeviceKey::derive(&p2).check(&token, &tax(), 1, t0(), age),
            Trust::Untrusted
        );
        // Not the pepper itself.
        assert_eq!(
            DeviceKey::new(&[1u8; 32])
                .unwrap()
                .check(&token, &tax(), 1, t0(), age),
            Trust::Untrusted
        );
    }

    #[test]
    fn device_key_needs_32_bytes_and_hides_itself() {
        assert_eq!(DeviceKey::new(&[1; 31]).err(), Some(SourceError::DeviceKey));
        let k = DeviceKey::new(&[0x41; 32]).unwrap();
        assert_eq!(format!("{k:?}"), "DeviceKey { .. }");
    }

    #[test]
    fn source_limit_is_try_later_with_the_oldest_leaving() {
        let p = PopulationPolicy::default();
        assert_eq!(
            gate(&p, &counts(19, 0), Trust::Untrusted, false, t0()),
            Gate::Pass { trusted: false }
        );
        assert_eq!(
            gate(&p, &counts(20, 0), Trust::Untrusted, false, t0()),
            Gate::TryLater {
                retry_after: std::time::Duration::from_secs(600)
            }
        );
        // A challenge proof does not lift the source limit.
        assert!(matches!(
            gate(&p, &counts(20, 0), Trust::Untrusted, true, t0()),
            Gate::TryLater { .. }
        ));
        // The oldest already out of the window (a clock that moved): at least one second.
        let mut c = counts(25, 0);
        c.source_oldest = Some(t0() - TimeDelta::hours(2));
        assert_eq!(
            gate(&p, &c, Trust::Untrusted, false, t0()),
            Gate::TryLater {
                retry_after: std::time::Duration::from_secs(1)
            }
        );
    }

    #[test]
    fn population_budget_defends_untrusted_sources_only() {
        let p = PopulationPolicy::default();
        // Threshold with no baseline: factor × floor = 200.
        assert_eq!(p.threshold(None), 200);
        assert_eq!(mode(&p, &counts(0, 200)), Mode::Normal);
        assert_eq!(mode(&p, &counts(0, 201)), Mode::Defended);
        assert_eq!(
            gate(&p, &counts(0, 201), Trust::Untrusted, false, t0()),
            Gate::Challenge
        );
        assert_eq!(
            gate(&p, &counts(0, 201), Trust::Untrusted, true, t0()),
            Gate::Pass { trusted: false }
        );
        // A trusted device passes even over the source limit and in defended mode.
        assert_eq!(
            gate(&p, &counts(1000, 100_000), Trust::Trusted, false, t0()),
            Gate::Pass { trusted: true }
        );
        // Any profile over budget defends the whole service.
        let mut c = counts(0, 0);
        c.failures = vec![(Profile::Inps, 201)];
        assert_eq!(mode(&p, &c), Mode::Defended);
        // A learned baseline above the floor raises the threshold.
        let mut c = counts(0, 1000);
        c.baselines = vec![(
            Profile::Noipa,
            Baseline {
                per_window_milli: 300_000,
                folded_at: t0(),
            },
        )];
        assert_eq!(p.threshold(c.baseline_of(Profile::Noipa)), 1200);
        assert_eq!(mode(&p, &c), Mode::Normal);
    }

    #[test]
    fn baseline_learns_slowly_and_resists_attacks() {
        let p = PopulationPolicy::default().with_budget(TimeDelta::hours(1), 4, 50, 10);
        let first = fold(&p, None, 999, t0()).unwrap();
        assert_eq!(first.per_window_milli, 50_000);
        // Within the window, or with the clock gone back: nothing.
        assert_eq!(
            fold(&p, Some(&first), 10, t0() + TimeDelta::minutes(59)),
            None
        );
        assert_eq!(fold(&p, Some(&first), 10, t0() - TimeDelta::hours(3)), None);
        // A window of 90 moves it a tenth of the way.
        let b = fold(&p, Some(&first), 90, t0() + TimeDelta::hours(1)).unwrap();
        assert_eq!(b.per_window_milli, 54_000);
        // An attack of a million is capped at twice the baseline.
        let c = fold(&p, Some(&b), 1_000_000, b.folded_at + TimeDelta::hours(1)).unwrap();
        assert_eq!(c.per_window_milli, 54_000 + 54_000 / 10);
        // A quiet window lowers it.
        let d = fold(&p, Some(&c), 0, c.folded_at + TimeDelta::hours(1)).unwrap();
        assert!(d.per_window_milli < c.per_window_milli);
    }

    #[test]
    fn expected_guessed_is_failures_over_the_pin_space() {
        assert!((expected_guessed(Profile::Noipa, 1_000_000) - 10.0).abs() < 1e-9);
        assert!(expected_guessed(Profile::Inps, 1_000_000) < 1e-6);
    }

    #[test]
    fn report_shows_mode_profiles_and_sources() {
        let p = PopulationPolicy::default();
        let r = report(
            &p,
            &counts(0, 500),
            vec![(NetworkKey::new("203.0.113.0/24").unwrap(), 20)],
        );
        assert_eq!(r.mode, Mode::Defended);
        assert_eq!(r.profiles[0].failures, 500);
        assert_eq!(r.profiles[0].threshold, 200);
        assert_eq!(r.top_sources, vec![("203.0.113.0/24".to_owned(), 20)]);
    }
}
