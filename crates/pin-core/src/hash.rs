//! Argon2id hashing keyed with a pepper (BOTH-2: the system keeps only a one-way hash).
//!
//! A stored [`PinHash`] is a PHC string
//! (`$argon2id$v=19$m=<KiB>,t=<iterations>,p=<lanes>$<salt>$<hash>`, salt 16
//! bytes, hash 32 bytes, both unpadded base64) and the [`KeyId`] of the pepper
//! that was mixed in as Argon2's secret input. The pepper itself is never
//! stored, so the PHC string alone cannot be attacked offline.
//!
//! [`Hasher`] holds three sets of [`HashParams`]:
//!
//! - **live**: used for every new hash;
//! - **floor** and **cap**: the range accepted from stored hashes. A stored
//!   hash is a row from a database; one below the floor is too weak to trust,
//!   one above the cap could make us allocate gigabytes or spin for minutes.
//!   Both are refused *before* any hashing.
//!
//! [`Hasher::verify`] answers [`Verified::Match`] with `needs_rehash` when the
//! stored hash used other parameters or an earlier key ([`Keyring`]), so that
//! the caller can store a fresh hash after a successful login; a wrong PIN is
//! [`Verified::Mismatch`], never an error. [`Hasher::verify_dummy`] costs what
//! a real verification costs, for subjects that do not exist.
//!
//! Constructing a [`Hasher`] computes no hash. [`Hasher::evaluations`] counts the Argon2
//! evaluations a hasher has made (one per [`Hasher::hash`], [`Hasher::verify`],
//! [`Hasher::compare`] and [`Hasher::verify_dummy`]; none for a refused stored hash), so
//! that a test can prove what an operation costs, and a service can export it as a metric.
//!
//! ```
//! use pin_core::format::{PinFormat, parse_input};
//! use pin_core::hash::{HashParams, Hasher, Keyring, Verified};
//! use pin_core::secret::{KeyId, Pepper};
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let pepper = Pepper::new(KeyId(1), b"a 32-byte key kept out of the db")?;
//! // In production: live = HashParams::RECOMMENDED.
//! let fast = HashParams::INSECURE_FAST_FOR_TESTS;
//! let hasher = Hasher::new(fast, fast, HashParams::RECOMMENDED, Keyring::new(pepper))?;
//!
//! let pin = parse_input(PinFormat::NoipaDigits5, "48213\n")?;
//! let stored = hasher.hash(&pin, &mut ChaCha20Rng::seed_from_u64(1))?;
//! assert!(stored.phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
//! assert_eq!(hasher.verify(&pin, &stored)?, Verified::Match { needs_rehash: false });
//!
//! let wrong = parse_input(PinFormat::NoipaDigits5, "48214")?;
//! assert_eq!(hasher.verify(&wrong, &stored)?, Verified::Mismatch);
//! # Ok(())
//! # }
//! ```

use crate::secret::{KeyId, Pepper, Pin};
use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{ARGON2ID_IDENT, Algorithm, Argon2, Version};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicU64, Ordering};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Bytes of salt in a new hash.
const SALT_LEN: usize = 16;
/// Bytes of Argon2 output.
const OUTPUT_LEN: usize = 32;
/// Argon2 version 1.3, the only one accepted.
const ARGON2_VERSION: u32 = 0x13;
/// Longest stored PHC string examined at all (ours are about 100 characters).
const MAX_PHC_LEN: usize = 256;
/// Salt under which [`Hasher::verify_dummy`] hashes the PIN it is given.
const DUMMY_SALT: [u8; SALT_LEN] = *b"pin-core:dummy:1";
/// What [`Hasher::verify_dummy`] compares its output with. Whatever it equals, the answer
/// is [`Verified::Mismatch`]: the compare is there only so that the dummy does the same
/// work as a real verify.
const DUMMY_EXPECTED: [u8; OUTPUT_LEN] = [0; OUTPUT_LEN];

/// Argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HashParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl HashParams {
    /// OWASP's Argon2id recommendation: m = 19 MiB, t = 2, p = 1.
    pub const RECOMMENDED: Self = Self {
        m_kib: 19_456,
        t_cost: 2,
        p_cost: 1,
    };

    /// **For tests only**: m = 64 KiB, t = 1, p = 1. Fast, and worthless against
    /// an attacker; never configure it in production.
    pub const INSECURE_FAST_FOR_TESTS: Self = Self {
        m_kib: 64,
        t_cost: 1,
        p_cost: 1,
    };

    /// Checks Argon2's own limits: `t_cost ≥ 1`, `1 ≤ p_cost ≤ 2²⁴ − 1`,
    /// `m_kib ≥ 8 × p_cost`.
    ///
    /// # Errors
    /// [`HashError::InvalidParams`] naming the limit that is not met.
    pub fn validate(&self) -> Result<(), HashError> {
        self.to_argon2().map(|_| ())
    }

    /// The Argon2 parameters, checked.
    fn to_argon2(self) -> Result<argon2::Params, HashError> {
        let Self {
            m_kib,
            t_cost,
            p_cost,
        } = self;
        if !(argon2::Params::MIN_P_COST..=argon2::Params::MAX_P_COST).contains(&p_cost) {
            return Err(HashError::InvalidParams {
                reason: "p_cost (lanes) must be between 1 and 16777215",
            });
        }
        if t_cost < argon2::Params::MIN_T_COST {
            return Err(HashError::InvalidParams {
                reason: "t_cost (iterations) must be at least 1",
            });
        }
        if u64::from(m_kib) < 8 * u64::from(p_cost) {
            return Err(HashError::InvalidParams {
                reason: "m_kib must be at least 8 × p_cost",
            });
        }
        argon2::Params::new(m_kib, t_cost, p_cost, Some(OUTPUT_LEN)).map_err(|_| {
            HashError::InvalidParams {
                reason: "refused by Argon2",
            }
        })
    }
}

/// A stored hash: the PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) and the pepper key id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinHash {
    /// Which pepper key made it.
    pub key_id: KeyId,
    /// The PHC string.
    pub phc: String,
}

impl PinHash {
    /// The Argon2 parameters the hash was made with.
    ///
    /// # Errors
    /// [`HashError`] when the PHC string cannot be parsed or is not Argon2id v19.
    pub fn params(&self) -> Result<HashParams, HashError> {
        parse(&self.phc).map(|p| p.params)
    }
}

/// The peppers: the current one (new hashes) and earlier ones still accepted for verification.
///
/// Key ids must be unique; [`Hasher::new`] checks it.
pub struct Keyring {
    current: Pepper,
    previous: Vec<Pepper>,
}

impl Keyring {
    /// A keyring with only `current`.
    #[must_use]
    pub fn new(current: Pepper) -> Self {
        Self {
            current,
            previous: Vec::new(),
        }
    }

    /// Adds an earlier key still accepted when verifying.
    #[must_use]
    pub fn with_previous(mut self, key: Pepper) -> Self {
        self.previous.push(key);
        self
    }

    /// The current key id.
    #[must_use]
    pub fn current_id(&self) -> KeyId {
        self.current.id()
    }

    /// The current key (new hashes).
    #[must_use]
    pub fn current(&self) -> &Pepper {
        &self.current
    }

    /// Every key: the current one, then the previous ones.
    pub fn keys(&self) -> impl Iterator<Item = &Pepper> {
        std::iter::once(&self.current).chain(&self.previous)
    }

    /// The key with `id`, current or previous.
    fn find(&self, id: KeyId) -> Option<&Pepper> {
        std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id() == id)
    }

    /// The first key id that appears more than once, if any.
    fn duplicate_id(&self) -> Option<KeyId> {
        let mut ids: Vec<KeyId> = std::iter::once(&self.current)
            .chain(&self.previous)
            .map(Pepper::id)
            .collect();
        ids.sort_unstable();
        ids.windows(2).find_map(|pair| match pair {
            [a, b] if a == b => Some(*a),
            _ => None,
        })
    }
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { current, previous } = self;
        let previous: Vec<KeyId> = previous.iter().map(Pepper::id).collect();
        f.debug_struct("Keyring")
            .field("current", &current.id())
            .field("previous", &previous)
            .finish_non_exhaustive()
    }
}

/// Outcome of comparing a PIN with a stored hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Verified {
    /// The PIN matches; `needs_rehash` when parameters or key are not the live ones.
    Match {
        /// Rehash with the live parameters and key.
        needs_rehash: bool,
    },
    /// The PIN does not match.
    Mismatch,
}

/// The result of [`Hasher::compare`]: whether a PIN matched a given stored hash. Made only
/// by a [`Hasher`] (it holds the pepper), so a caller cannot claim a match it did not see.
#[derive(Debug)]
#[must_use]
pub struct Compared {
    verified: Verified,
    against: PinHash,
}

impl Compared {
    /// The outcome of the compare.
    pub fn verified(&self) -> Verified {
        self.verified
    }

    /// Whether the PIN matched `stored` — false when this compare was made against another
    /// hash.
    #[must_use]
    pub fn matched(&self, stored: &PinHash) -> bool {
        matches!(self.verified, Verified::Match { .. }) && self.against == *stored
    }
}

/// Hashing failures (never a wrong PIN: that is [`Verified::Mismatch`]).
///
/// Messages name parameters and key ids, never a PIN, a pepper or a hash.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The stored hash cannot be parsed.
    #[error("stored hash is malformed: {0}")]
    Malformed(&'static str),
    /// The stored hash uses another algorithm than Argon2id.
    #[error("stored hash is not Argon2id; only argon2id hashes are accepted")]
    UnsupportedAlgorithm,
    /// The stored hash uses another Argon2 version than 1.3 (19).
    #[error("stored hash uses Argon2 version {found}; only version 19 (0x13) is accepted")]
    UnsupportedVersion {
        /// The version in the stored hash.
        found: u32,
    },
    /// A stored parameter is below the floor: the hash is too weak to trust.
    #[error(
        "stored hash has {param} = {stored}, below the floor of {floor}: it is too weak to \
         trust; issue a new PIN, or lower the floor if that is intended"
    )]
    ParamsBelowFloor {
        /// `m_kib`, `t_cost` or `p_cost`.
        param: &'static str,
        /// Value in the stored hash.
        stored: u32,
        /// Lowest accepted.
        floor: u32,
    },
    /// A stored parameter is above the cap: computing it was refused.
    #[error(
        "stored hash has {param} = {stored}, above the cap of {cap}: refusing to compute it; \
         raise the cap if that is intended"
    )]
    ParamsAboveCap {
        /// `m_kib`, `t_cost` or `p_cost`.
        param: &'static str,
        /// Value in the stored hash.
        stored: u32,
        /// Highest accepted.
        cap: u32,
    },
    /// The stored hash was made with a pepper key that is not in the keyring.
    #[error(
        "stored hash was made with pepper key id {}, which is not in the keyring; add that key \
         as a previous key, or issue a new PIN",
        .0.0
    )]
    UnknownKey(KeyId),
    /// Configuration: the live parameters are not within floor..=cap ([`Hasher::new`]).
    #[error(
        "live {param} = {live} is outside the accepted range {floor}..={cap}; configure \
         floor ≤ live ≤ cap"
    )]
    ParamsOutOfRange {
        /// `m_kib`, `t_cost` or `p_cost`.
        param: &'static str,
        /// Configured floor.
        floor: u32,
        /// Configured live value.
        live: u32,
        /// Configured cap.
        cap: u32,
    },
    /// Configuration: Argon2 does not accept these parameters ([`HashParams::validate`]).
    #[error("Argon2 does not accept these parameters: {reason}")]
    InvalidParams {
        /// The limit that is not met.
        reason: &'static str,
    },
    /// Configuration: two keys of the keyring have the same id ([`Hasher::new`]).
    #[error("pepper key id {} appears more than once in the keyring; key ids must be unique", .0.0)]
    DuplicateKeyId(KeyId),
    /// Argon2 itself failed (not expected with checked parameters).
    #[error("Argon2 failed: {reason}")]
    Argon2 {
        /// Argon2's description of the failure.
        reason: String,
    },
}

impl HashError {
    fn argon2(error: argon2::Error) -> Self {
        Self::Argon2 {
            reason: error.to_string(),
        }
    }
}

/// A stored hash, parsed.
struct Stored {
    params: HashParams,
    salt: Salt,
    hash: Output,
}

/// Argon2 working memory reused from one hash to the next on one thread
/// ([`Hasher::hash_reusing`]), wiped after each hash. Bulk hashing on worker threads
/// allocates it once per worker instead of once per hash (19 MiB each at the recommended
/// cost): fresh allocations of that size on threads other than the main one make the
/// allocator keep hundreds of MiB.
#[derive(Default)]
pub struct HashMemory {
    blocks: Vec<argon2::Block>,
}

impl std::fmt::Debug for HashMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HashMemory")
            .field("kib", &self.blocks.len())
            .finish()
    }
}

/// Hashes and verifies PINs with Argon2id and the keyring's pepper.
pub struct Hasher {
    live: HashParams,
    floor: HashParams,
    cap: HashParams,
    keys: Keyring,
    /// Argon2 evaluations made so far ([`Hasher::evaluations`]).
    evaluations: AtomicU64,
}

impl Hasher {
    /// A hasher with live parameters, the floor and cap accepted from stored hashes, and keys.
    ///
    /// Computes no hash: [`Hasher::evaluations`] is 0 afterwards.
    ///
    /// # Errors
    /// [`HashError`] when the parameters are not accepted by Argon2 or not floor ≤ live ≤ cap:
    /// [`InvalidParams`](HashError::InvalidParams) for `live`,
    /// [`ParamsOutOfRange`](HashError::ParamsOutOfRange) naming the first parameter out of
    /// range, [`DuplicateKeyId`](HashError::DuplicateKeyId) when two keys share an id.
    pub fn new(
        live: HashParams,
        floor: HashParams,
        cap: HashParams,
        keys: Keyring,
    ) -> Result<Self, HashError> {
        live.validate()?;
        for (param, floor, live, cap) in [
            ("m_kib", floor.m_kib, live.m_kib, cap.m_kib),
            ("t_cost", floor.t_cost, live.t_cost, cap.t_cost),
            ("p_cost", floor.p_cost, live.p_cost, cap.p_cost),
        ] {
            if !(floor <= live && live <= cap) {
                return Err(HashError::ParamsOutOfRange {
                    param,
                    floor,
                    live,
                    cap,
                });
            }
        }
        if let Some(id) = keys.duplicate_id() {
            return Err(HashError::DuplicateKeyId(id));
        }
        Ok(Self {
            live,
            floor,
            cap,
            keys,
            evaluations: AtomicU64::new(0),
        })
    }

    /// How many Argon2 evaluations this hasher has made since it was constructed: one
    /// for each [`Hasher::hash`], each [`Hasher::verify`] or [`Hasher::compare`] that
    /// reached Argon2 (a stored hash refused before hashing — malformed, out of
    /// floor..=cap, unknown key — costs none), and each [`Hasher::verify_dummy`].
    /// Construction and [`Hasher::check_stored`] cost none.
    ///
    /// A relaxed atomic counter: cheap enough to stay on, exact once the calls it counts
    /// have returned; suitable as a metric.
    #[must_use]
    pub fn evaluations(&self) -> u64 {
        self.evaluations.load(Ordering::Relaxed)
    }

    /// Argon2id of `password` under `pepper`, counted in [`Hasher::evaluations`].
    fn compute(
        &self,
        pepper: &Pepper,
        params: HashParams,
        password: &[u8],
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; OUTPUT_LEN]>, HashError> {
        let _ = self.evaluations.fetch_add(1, Ordering::Relaxed);
        compute(pepper, params, password, salt)
    }

    /// The keyring.
    #[must_use]
    pub fn keys(&self) -> &Keyring {
        &self.keys
    }

    /// The parameters of new hashes.
    #[must_use]
    pub fn live(&self) -> HashParams {
        self.live
    }

    /// The lowest parameters accepted from a stored hash.
    #[must_use]
    pub fn floor(&self) -> HashParams {
        self.floor
    }

    /// The highest parameters accepted from a stored hash.
    #[must_use]
    pub fn cap(&self) -> HashParams {
        self.cap
    }

    /// The id of the key used for new hashes.
    #[must_use]
    pub fn current_key_id(&self) -> KeyId {
        self.keys.current_id()
    }

    /// Hashes `pin` with a fresh salt from `rng`.
    ///
    /// Argon2id v1.3 with the live parameters, the current pepper as secret
    /// input, a 16-byte salt and a 32-byte output.
    ///
    /// # Errors
    /// [`HashError`] if Argon2 fails (not expected: the parameters were checked in [`Hasher::new`]).
    pub fn hash<R: CryptoRng + ?Sized>(
        &self,
        pin: &Pin,
        rng: &mut R,
    ) -> Result<PinHash, HashError> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        self.hash_with_salt(pin.expose_secret().as_bytes(), &salt)
    }

    /// As [`Hasher::hash`], with Argon2's working memory taken from `memory` (allocated on
    /// first use, reused after, wiped after each hash) instead of allocated for this hash.
    /// Counted in [`Hasher::evaluations`] like [`Hasher::hash`].
    ///
    /// # Errors
    /// As [`Hasher::hash`]; [`HashError::Argon2`] when the memory cannot be allocated.
    pub fn hash_reusing<R: CryptoRng + ?Sized>(
        &self,
        pin: &Pin,
        rng: &mut R,
        memory: &mut HashMemory,
    ) -> Result<PinHash, HashError> {
        let mut salt = [0u8; SALT_LEN];
        rng.fill_bytes(&mut salt);
        let _ = self.evaluations.fetch_add(1, Ordering::Relaxed);
        let out = compute_in(
            &self.keys.current,
            self.live,
            pin.expose_secret().as_bytes(),
            &salt,
            memory,
        )?;
        self.encode(&salt, &out)
    }

    /// The deterministic primitive behind [`Hasher::hash`]: live parameters, current key.
    fn hash_with_salt(&self, password: &[u8], salt: &[u8]) -> Result<PinHash, HashError> {
        let out = self.compute(&self.keys.current, self.live, password, salt)?;
        self.encode(salt, &out)
    }

    /// The PHC string of an output made with the live parameters and the current key.
    fn encode(&self, salt: &[u8], out: &[u8; OUTPUT_LEN]) -> Result<PinHash, HashError> {
        let mut params = ParamsString::new();
        for (name, value) in [
            ("m", self.live.m_kib),
            ("t", self.live.t_cost),
            ("p", self.live.p_cost),
        ] {
            params
                .add_decimal(name, value)
                .map_err(|_| HashError::Argon2 {
                    reason: "cannot encode parameters".to_owned(),
                })?;
        }
        let salt = Salt::new(salt).map_err(|_| HashError::Argon2 {
            reason: "cannot encode the salt".to_owned(),
        })?;
        let hash = Output::new(out.as_slice()).map_err(|_| HashError::Argon2 {
            reason: "cannot encode the output".to_owned(),
        })?;
        let phc = PasswordHash {
            algorithm: ARGON2ID_IDENT,
            version: Some(ARGON2_VERSION),
            params,
            salt: Some(salt),
            hash: Some(hash),
        };
        Ok(PinHash {
            key_id: self.keys.current_id(),
            phc: phc.to_string(),
        })
    }

    /// Compares `pin` with `stored`, in constant time.
    ///
    /// The stored string is parsed and its parameters checked against floor
    /// and cap before any hashing, so a hostile row cannot make us allocate or
    /// compute more than the cap allows.
    ///
    /// # Errors
    /// [`HashError`] when the stored hash is malformed, its key unknown or its parameters outside floor..=cap:
    /// [`Malformed`](HashError::Malformed),
    /// [`UnsupportedAlgorithm`](HashError::UnsupportedAlgorithm),
    /// [`UnsupportedVersion`](HashError::UnsupportedVersion),
    /// [`ParamsBelowFloor`](HashError::ParamsBelowFloor),
    /// [`ParamsAboveCap`](HashError::ParamsAboveCap),
    /// [`UnknownKey`](HashError::UnknownKey), or [`Argon2`](HashError::Argon2).
    pub fn verify(&self, pin: &Pin, stored: &PinHash) -> Result<Verified, HashError> {
        let parsed = parse(&stored.phc)?;
        self.check_range(parsed.params)?;
        let pepper = self
            .keys
            .find(stored.key_id)
            .ok_or(HashError::UnknownKey(stored.key_id))?;
        let out = self.compute(
            pepper,
            parsed.params,
            pin.expose_secret().as_bytes(),
            &parsed.salt,
        )?;
        let equal: bool = out.as_slice().ct_eq(parsed.hash.as_bytes()).into();
        if equal {
            Ok(Verified::Match {
                needs_rehash: self.is_outdated(&parsed, stored.key_id),
            })
        } else {
            Ok(Verified::Mismatch)
        }
    }

    /// Compares `pin` with `stored` like [`Hasher::verify`], and returns the evidence
    /// [`crate::verify::finish`] needs to grant a proof of authentication. Only a hasher
    /// holding the pepper can make a [`Compared`], and it names the stored hash it was made
    /// against, so it cannot be forged nor used for another credential.
    ///
    /// # Errors
    /// As [`Hasher::verify`].
    pub fn compare(&self, pin: &Pin, stored: &PinHash) -> Result<Compared, HashError> {
        let verified = self.verify(pin, stored)?;
        Ok(Compared {
            verified,
            against: stored.clone(),
        })
    }

    /// Checks that a stored hash could be verified — well formed, Argon2id v19, parameters
    /// within floor..=cap, key in the keyring — without hashing anything (e.g. before an
    /// import).
    ///
    /// Stricter than [`Hasher::verify`] in one point: the salt must be 16 bytes, as in
    /// every hash [`Hasher::hash`] writes (Argon2 itself accepts 8), so that an import
    /// cannot bring in hashes with shorter salts.
    ///
    /// # Errors
    /// As [`Hasher::verify`], except that no Argon2 work is done, and
    /// [`Malformed`](HashError::Malformed) for a salt that is not 16 bytes.
    pub fn check_stored(&self, stored: &PinHash) -> Result<(), HashError> {
        let parsed = parse(&stored.phc)?;
        if parsed.salt.len() != SALT_LEN {
            return Err(HashError::Malformed(
                "the salt is not 16 bytes long (hashes made by `pin hash` have 16)",
            ));
        }
        self.check_range(parsed.params)?;
        self.keys
            .find(stored.key_id)
            .ok_or(HashError::UnknownKey(stored.key_id))?;
        Ok(())
    }

    /// Costs what a verify costs and always fails: used when there is nothing to compare against.
    ///
    /// It hashes `pin` once, with the live parameters and the current key, under a fixed
    /// salt, compares the output in constant time with a constant, then answers
    /// [`Verified::Mismatch`] whatever the outcome, so that "no such person" and "wrong
    /// PIN" take the same time. No hash is stored for it: it costs exactly one Argon2
    /// evaluation ([`Hasher::evaluations`]), and nothing at construction.
    pub fn verify_dummy(&self, pin: &Pin) -> Verified {
        // The live parameters were checked in `Hasher::new`: Argon2 cannot refuse them.
        if let Ok(out) = self.dummy_output(pin) {
            let _same_work: bool = out.as_slice().ct_eq(&DUMMY_EXPECTED).into();
        }
        Verified::Mismatch
    }

    /// The work of [`Hasher::verify_dummy`]: the live Argon2id of `pin` under the current
    /// key and the dummy salt.
    fn dummy_output(&self, pin: &Pin) -> Result<Zeroizing<[u8; OUTPUT_LEN]>, HashError> {
        self.compute(
            &self.keys.current,
            self.live,
            pin.expose_secret().as_bytes(),
            &DUMMY_SALT,
        )
    }

    /// Whether `stored` should be replaced by a fresh hash: it was made with
    /// other parameters than the live ones or another key than the current
    /// one. An unparseable hash needs rehashing too (though it cannot be
    /// verified; see [`Hasher::verify`]).
    #[must_use]
    pub fn needs_rehash(&self, stored: &PinHash) -> bool {
        parse(&stored.phc).map_or(true, |parsed| self.is_outdated(&parsed, stored.key_id))
    }

    fn is_outdated(&self, parsed: &Stored, key_id: KeyId) -> bool {
        parsed.params != self.live || key_id != self.keys.current_id()
    }

    /// Refuses stored parameters outside floor..=cap.
    fn check_range(&self, stored: HashParams) -> Result<(), HashError> {
        for (param, stored, floor, cap) in [
            ("m_kib", stored.m_kib, self.floor.m_kib, self.cap.m_kib),
            ("t_cost", stored.t_cost, self.floor.t_cost, self.cap.t_cost),
            ("p_cost", stored.p_cost, self.floor.p_cost, self.cap.p_cost),
        ] {
            if stored > cap {
                return Err(HashError::ParamsAboveCap { param, stored, cap });
            }
            if stored < floor {
                return Err(HashError::ParamsBelowFloor {
                    param,
                    stored,
                    floor,
                });
            }
        }
        Ok(())
    }
}

impl std::fmt::Debug for Hasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            live,
            floor,
            cap,
            keys,
            evaluations,
        } = self;
        f.debug_struct("Hasher")
            .field("live", live)
            .field("floor", floor)
            .field("cap", cap)
            .field("keys", keys)
            .field("evaluations", &evaluations.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Argon2id v1.3 of `password` with `pepper` as secret input; 32 bytes, wiped on drop.
fn compute(
    pepper: &Pepper,
    params: HashParams,
    password: &[u8],
    salt: &[u8],
) -> Result<Zeroizing<[u8; OUTPUT_LEN]>, HashError> {
    let params = params.to_argon2()?;
    let argon2 = Argon2::new_with_secret(
        pepper.expose_secret(),
        Algorithm::Argon2id,
        Version::V0x13,
        params,
    )
    .map_err(HashError::argon2)?;
    let mut out = Zeroizing::new([0u8; OUTPUT_LEN]);
    argon2
        .hash_password_into(password, salt, out.as_mut_slice())
        .map_err(HashError::argon2)?;
    Ok(out)
}

/// [`compute`] in `memory`, which is sized on first use and wiped afterwards.
fn compute_in(
    pepper: &Pepper,
    params: HashParams,
    password: &[u8],
    salt: &[u8],
    memory: &mut HashMemory,
) -> Result<Zeroizing<[u8; OUTPUT_LEN]>, HashError> {
    use zeroize::Zeroize as _;
    let params = params.to_argon2()?;
    let blocks = params.block_count();
    if memory.blocks.len() != blocks {
        memory.blocks = Vec::new();
        memory
            .blocks
            .try_reserve_exact(blocks)
            .map_err(|_| HashError::argon2(argon2::Error::OutOfMemory))?;
        memory.blocks.resize(blocks, argon2::Block::default());
    }
    let argon2 = Argon2::new_with_secret(
        pepper.expose_secret(),
        Algorithm::Argon2id,
        Version::V0x13,
        params,
    )
    .map_err(HashError::argon2)?;
    let mut out = Zeroizing::new([0u8; OUTPUT_LEN]);
    let done = argon2.hash_password_into_with_memory(
        password,
        salt,
        out.as_mut_slice(),
        memory.blocks.as_mut_slice(),
    );
    for block in &mut memory.blocks {
        block.zeroize();
    }
    done.map_err(HashError::argon2)?;
    Ok(out)
}

/// Parses a stored PHC string: Argon2id, version 19, exactly `m`, `t` and `p`,
/// a salt and a 32-byte hash. Does no hashing and allocates nothing large.
fn parse(phc: &str) -> Result<Stored, HashError> {
    if phc.len() > MAX_PHC_LEN {
        return Err(HashError::Malformed(
            "longer than any Argon2id PHC string we write",
        ));
    }
    let parsed = PasswordHash::new(phc).map_err(|_| {
        HashError::Malformed("not a PHC string like $argon2id$v=19$m=…,t=…,p=…$salt$hash")
    })?;
    if parsed.algorithm != ARGON2ID_IDENT {
        return Err(HashError::UnsupportedAlgorithm);
    }
    match parsed.version {
        Some(ARGON2_VERSION) => {}
        Some(found) => return Err(HashError::UnsupportedVersion { found }),
        None => return Err(HashError::Malformed("the version (v=19) is missing")),
    }
    let (mut m, mut t, mut p) = (None, None, None);
    for (name, value) in parsed.params.iter() {
        let slot = match name.as_str() {
            "m" => &mut m,
            "t" => &mut t,
            "p" => &mut p,
            _ => {
                return Err(HashError::Malformed(
                    "unexpected parameter: only m, t and p are used",
                ));
            }
        };
        if slot.is_some() {
            return Err(HashError::Malformed("a parameter appears twice"));
        }
        let value = value
            .decimal()
            .map_err(|_| HashError::Malformed("a parameter is not a number"))?;
        *slot = Some(value);
    }
    let (Some(m_kib), Some(t_cost), Some(p_cost)) = (m, t, p) else {
        return Err(HashError::Malformed(
            "one of the parameters m, t and p is missing",
        ));
    };
    let salt = parsed
        .salt
        .ok_or(HashError::Malformed("the salt is missing"))?;
    let hash = parsed
        .hash
        .ok_or(HashError::Malformed("the hash is missing"))?;
    if hash.len() != OUTPUT_LEN {
        return Err(HashError::Malformed("the hash is not 32 bytes long"));
    }
    let params = HashParams {
        m_kib,
        t_cost,
        p_cost,
    };
    if params.validate().is_err() {
        return Err(HashError::Malformed(
            "the parameters are not accepted by Argon2",
        ));
    }
    Ok(Stored { params, salt, hash })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::format::{PinFormat, parse_input};
    use argon2::PasswordHasher;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const FAST: HashParams = HashParams::INSECURE_FAST_FOR_TESTS;
    const FLOOR: HashParams = HashParams {
        m_kib: 32,
        t_cost: 1,
        p_cost: 1,
    };
    const CAP: HashParams = HashParams {
        m_kib: 65_536,
        t_cost: 4,
        p_cost: 4,
    };
    const KEY_1: &[u8] = b"pepper-one-0123456789abcdefghij!";
    const KEY_2: &[u8] = b"pepper-two-ZYXWVUTSRQPONMLKJIHG?";
    const PIN: &str = "7K4MZQ9X";

    fn pepper(id: u32, key: &[u8]) -> Pepper {
        Pepper::new(KeyId(id), key).unwrap()
    }

    fn hasher_with(live: HashParams, keys: Keyring) -> Hasher {
        Hasher::new(live, FLOOR, CAP, keys).unwrap()
    }

    fn hasher() -> Hasher {
        hasher_with(FAST, Keyring::new(pepper(1, KEY_1)))
    }

    fn pin(s: &str) -> Pin {
        Pin::from_string(s.to_owned())
    }

    fn rng() -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(9)
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// `stored` with its parameter field replaced by `params`.
    fn with_params(stored: &PinHash, params: &str) -> PinHash {
        let fields: Vec<&str> = stored.phc.split('$').collect();
        let phc = format!(
            "${}${}${params}${}${}",
            fields[1], fields[2], fields[4], fields[5]
        );
        PinHash {
            key_id: stored.key_id,
            phc,
        }
    }

    // ---- parameters ----

    #[test]
    fn params_validate_argon2_limits() {
        assert_eq!(
            HashParams::RECOMMENDED,
            HashParams {
                m_kib: 19_456,
                t_cost: 2,
                p_cost: 1
            }
        );
        HashParams::RECOMMENDED.validate().unwrap();
        FAST.validate().unwrap();
        HashParams {
            m_kib: 8,
            t_cost: 1,
            p_cost: 1,
        }
        .validate()
        .unwrap();
        HashParams {
            m_kib: 16,
            t_cost: 1,
            p_cost: 2,
        }
        .validate()
        .unwrap();
        for bad in [
            HashParams {
                m_kib: 7,
                t_cost: 1,
                p_cost: 1,
            },
            HashParams {
                m_kib: 16,
                t_cost: 1,
                p_cost: 3,
            },
            HashParams {
                m_kib: 64,
                t_cost: 0,
                p_cost: 1,
            },
            HashParams {
                m_kib: 64,
                t_cost: 1,
                p_cost: 0,
            },
            HashParams {
                m_kib: u32::MAX,
                t_cost: 1,
                p_cost: 1 << 24,
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(HashError::InvalidParams { .. })),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn constructor_checks_floor_live_cap() {
        let keys = || Keyring::new(pepper(1, KEY_1));
        assert_eq!(
            Hasher::new(HashParams { m_kib: 16, ..FAST }, FLOOR, CAP, keys()).unwrap_err(),
            HashError::ParamsOutOfRange {
                param: "m_kib",
                floor: 32,
                live: 16,
                cap: 65_536
            }
        );
        assert_eq!(
            Hasher::new(HashParams { t_cost: 5, ..FAST }, FLOOR, CAP, keys()).unwrap_err(),
            HashError::ParamsOutOfRange {
                param: "t_cost",
                floor: 1,
                live: 5,
                cap: 4
            }
        );
        // floor > cap can never hold a live value.
        let inverted = HashParams { p_cost: 2, ..FLOOR };
        assert_eq!(
            Hasher::new(FAST, inverted, FAST, keys()).unwrap_err(),
            HashError::ParamsOutOfRange {
                param: "p_cost",
                floor: 2,
                live: 1,
                cap: 1
            }
        );
        let zero = HashParams {
            m_kib: 0,
            t_cost: 0,
            p_cost: 0,
        };
        assert!(matches!(
            Hasher::new(HashParams { t_cost: 0, ..FAST }, zero, CAP, keys()).unwrap_err(),
            HashError::InvalidParams { .. }
        ));
        let h = Hasher::new(FAST, FLOOR, CAP, keys()).unwrap();
        assert_eq!(
            (h.live(), h.floor(), h.cap(), h.current_key_id()),
            (FAST, FLOOR, CAP, KeyId(1))
        );
    }

    #[test]
    fn constructor_refuses_duplicate_key_ids() {
        let keys = Keyring::new(pepper(1, KEY_1))
            .with_previous(pepper(2, KEY_2))
            .with_previous(pepper(1, KEY_2));
        assert_eq!(
            Hasher::new(FAST, FLOOR, CAP, keys).unwrap_err(),
            HashError::DuplicateKeyId(KeyId(1))
        );
        let keys = Keyring::new(pepper(1, KEY_1))
            .with_previous(pepper(3, KEY_2))
            .with_previous(pepper(3, KEY_1));
        assert_eq!(
            Hasher::new(FAST, FLOOR, CAP, keys).unwrap_err(),
            HashError::DuplicateKeyId(KeyId(3))
        );
    }

    // ---- hash and verify ----

    #[test]
    fn hash_then_verify_matches() {
        // rule: BOTH-2 (only a one-way hash is kept)
        let h = hasher();
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        assert_eq!(stored.key_id, KeyId(1));
        assert_eq!(
            h.verify(&pin(PIN), &stored).unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert!(!h.needs_rehash(&stored));
        // What a person types, parsed, matches too.
        let typed = parse_input(PinFormat::InpsInUse8, "7k4mzq9x\n").unwrap();
        assert_eq!(
            h.verify(&typed, &stored).unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
    }

    #[test]
    fn wrong_pin_mismatches() {
        let h = hasher();
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        for wrong in ["7K4MZQ9Y", "7K4MZQ9", "7K4MZQ9XX", "", "7k4mzq9x"] {
            assert_eq!(
                h.verify(&pin(wrong), &stored).unwrap(),
                Verified::Mismatch,
                "{wrong}"
            );
        }
    }

    #[test]
    fn phc_string_has_the_documented_shape() {
        let h = hasher();
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        assert!(
            stored.phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"),
            "{}",
            stored.phc
        );
        let fields: Vec<&str> = stored.phc.split('$').collect();
        assert_eq!(fields.len(), 6);
        assert_eq!(fields[4].len(), 22, "16-byte salt, unpadded base64");
        assert_eq!(fields[5].len(), 43, "32-byte hash, unpadded base64");
        // Same PIN, fresh salt: another string; same seed: the same string.
        let again = h
            .hash(&pin(PIN), &mut ChaCha20Rng::seed_from_u64(10))
            .unwrap();
        assert_ne!(stored.phc, again.phc);
        assert_eq!(stored, h.hash(&pin(PIN), &mut rng()).unwrap());
    }

    #[test]
    fn phc_string_agrees_with_argon2s_own_encoder() {
        let h = hasher();
        let salt = [7u8; SALT_LEN];
        let ours = h.hash_with_salt(PIN.as_bytes(), &salt).unwrap();
        let params = argon2::Params::new(64, 1, 1, Some(32)).unwrap();
        let theirs = Argon2::new_with_secret(KEY_1, Algorithm::Argon2id, Version::V0x13, params)
            .unwrap()
            .hash_password_with_salt(PIN.as_bytes(), &salt)
            .unwrap()
            .to_string();
        assert_eq!(ours.phc, theirs);
    }

    #[test]
    fn wrong_pepper_with_the_same_id_mismatches() {
        let stored = hasher().hash(&pin(PIN), &mut rng()).unwrap();
        let other = hasher_with(FAST, Keyring::new(pepper(1, KEY_2)));
        assert_eq!(
            other.verify(&pin(PIN), &stored).unwrap(),
            Verified::Mismatch
        );
    }

    #[test]
    fn the_pepper_changes_the_hash() {
        let a = hasher().hash(&pin(PIN), &mut rng()).unwrap();
        let other = hasher_with(FAST, Keyring::new(pepper(1, KEY_2)));
        let b = other.hash(&pin(PIN), &mut rng()).unwrap();
        assert_ne!(a.phc, b.phc);
    }

    #[test]
    fn key_rotation_keeps_old_hashes_verifiable_and_asks_for_rehash() {
        let old = hasher();
        let stored = old.hash(&pin(PIN), &mut rng()).unwrap();
        let keys = Keyring::new(pepper(2, KEY_2)).with_previous(pepper(1, KEY_1));
        let rotated = hasher_with(FAST, keys);
        assert!(rotated.needs_rehash(&stored));
        assert_eq!(
            rotated.verify(&pin(PIN), &stored).unwrap(),
            Verified::Match { needs_rehash: true }
        );
        assert_eq!(
            rotated.verify(&pin("7K4MZQ9Y"), &stored).unwrap(),
            Verified::Mismatch
        );
        let fresh = rotated.hash(&pin(PIN), &mut rng()).unwrap();
        assert_eq!(fresh.key_id, KeyId(2));
        assert!(!rotated.needs_rehash(&fresh));
        assert_eq!(
            rotated.verify(&pin(PIN), &fresh).unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
        // The old hasher does not know key 2.
        assert_eq!(
            old.verify(&pin(PIN), &fresh).unwrap_err(),
            HashError::UnknownKey(KeyId(2))
        );
    }

    #[test]
    fn changed_live_params_ask_for_rehash() {
        let stored = hasher().hash(&pin(PIN), &mut rng()).unwrap();
        let live = HashParams {
            m_kib: 128,
            t_cost: 2,
            p_cost: 1,
        };
        let stronger = hasher_with(live, Keyring::new(pepper(1, KEY_1)));
        assert!(stronger.needs_rehash(&stored));
        assert_eq!(
            stronger.verify(&pin(PIN), &stored).unwrap(),
            Verified::Match { needs_rehash: true }
        );
        let fresh = stronger.hash(&pin(PIN), &mut rng()).unwrap();
        assert!(fresh.phc.starts_with("$argon2id$v=19$m=128,t=2,p=1$"));
        assert_eq!(
            stronger.verify(&pin(PIN), &fresh).unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
    }

    #[test]
    fn unknown_key_id_is_an_error() {
        let h = hasher();
        let mut stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        stored.key_id = KeyId(99);
        let err = h.verify(&pin(PIN), &stored).unwrap_err();
        assert_eq!(err, HashError::UnknownKey(KeyId(99)));
        assert!(err.to_string().contains("key id 99"), "{err}");
    }

    #[test]
    fn params_above_cap_are_refused_before_hashing() {
        let h = hasher();
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        // 4 GiB: computing it would allocate 4 GiB; this passes quickly only because we don't.
        let hostile = with_params(&stored, "m=4194304,t=1,p=1");
        assert_eq!(
            h.verify(&pin(PIN), &hostile).unwrap_err(),
            HashError::ParamsAboveCap {
                param: "m_kib",
                stored: 4_194_304,
                cap: 65_536
            }
        );
        let hostile = with_params(&stored, "m=64,t=4294967295,p=1");
        assert_eq!(
            h.verify(&pin(PIN), &hostile).unwrap_err(),
            HashError::ParamsAboveCap {
                param: "t_cost",
                stored: u32::MAX,
                cap: 4
            }
        );
        let hostile = with_params(&stored, "m=64,t=1,p=8");
        assert_eq!(
            h.verify(&pin(PIN), &hostile).unwrap_err(),
            HashError::ParamsAboveCap {
                param: "p_cost",
                stored: 8,
                cap: 4
            }
        );
        // Unknown key and hostile parameters: the parameters are refused first.
        let hostile = PinHash {
            key_id: KeyId(99),
            ..with_params(&stored, "m=4194304,t=1,p=1")
        };
        assert!(matches!(
            h.verify(&pin(PIN), &hostile),
            Err(HashError::ParamsAboveCap { .. })
        ));
    }

    #[test]
    fn params_below_floor_are_refused() {
        let h = hasher();
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        assert_eq!(
            h.verify(&pin(PIN), &with_params(&stored, "m=16,t=1,p=1"))
                .unwrap_err(),
            HashError::ParamsBelowFloor {
                param: "m_kib",
                stored: 16,
                floor: 32
            }
        );
        let floor_0 = HashParams {
            m_kib: 0,
            t_cost: 0,
            p_cost: 0,
        };
        let lax = Hasher::new(FAST, floor_0, CAP, Keyring::new(pepper(1, KEY_1))).unwrap();
        // Within floor..=cap but refused by Argon2 itself: malformed, never hashed.
        for params in ["m=64,t=0,p=1", "m=16,t=1,p=4", "m=4,t=1,p=1"] {
            assert!(
                matches!(
                    lax.verify(&pin(PIN), &with_params(&stored, params)),
                    Err(HashError::Malformed(_))
                ),
                "{params}"
            );
        }
        let floor_t2 = HashParams { t_cost: 2, ..FLOOR };
        let strict = Hasher::new(
            HashParams { t_cost: 2, ..FAST },
            floor_t2,
            CAP,
            Keyring::new(pepper(1, KEY_1)),
        )
        .unwrap();
        assert_eq!(
            strict.verify(&pin(PIN), &stored).unwrap_err(),
            HashError::ParamsBelowFloor {
                param: "t_cost",
                stored: 1,
                floor: 2
            }
        );
    }

    #[test]
    fn garbage_is_malformed() {
        let h = hasher();
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        let fields: Vec<&str> = stored.phc.split('$').collect();
        let (salt, hash) = (fields[4], fields[5]);
        let long = "$".repeat(10_000);
        let cases = [
            String::new(),
            "garbage".to_owned(),
            "$".to_owned(),
            "$argon2id".to_owned(),
            "$argon2id$v=19".to_owned(),
            "$argon2id$v=19$m=64,t=1,p=1".to_owned(),
            format!("$argon2id$v=19$m=64,t=1,p=1${salt}"),
            format!("$argon2id$m=64,t=1,p=1${salt}${hash}"),
            format!("$argon2id$v=19$m=64,t=1${salt}${hash}"),
            format!("$argon2id$v=19$m=64,t=1,p=1,m=64${salt}${hash}"),
            format!("$argon2id$v=19$m=64,t=1,p=1,keyid=AAAA${salt}${hash}"),
            format!("$argon2id$v=19$m=64,t=1,p=1,data=AAAA${salt}${hash}"),
            format!("$argon2id$v=19$m=x,t=1,p=1${salt}${hash}"),
            format!("$argon2id$v=19$m=99999999999,t=1,p=1${salt}${hash}"),
            format!("$argon2id$v=19$m=64,t=1,p=1${salt}${}", &hash[..22]),
            format!("$argon2id$v=19$m=64,t=1,p=1${salt}${hash}$extra"),
            format!("$argon2id$v=19$m=64,t=1,p=1$!!!!${hash}"),
            format!("$argon2id$v=19$m=64,t=1,p=1$é${hash}"),
            format!("{}{long}", stored.phc),
        ];
        for phc in cases {
            let bad = PinHash {
                key_id: KeyId(1),
                phc: phc.clone(),
            };
            let result = h.verify(&pin(PIN), &bad);
            assert!(
                matches!(result, Err(HashError::Malformed(_))),
                "{phc:?}: {result:?}"
            );
            assert!(h.needs_rehash(&bad));
        }
    }

    #[test]
    fn other_algorithms_and_versions_are_refused() {
        let h = hasher();
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        for alg in ["argon2i", "argon2d", "scrypt"] {
            let bad = PinHash {
                key_id: KeyId(1),
                phc: stored.phc.replacen("argon2id", alg, 1),
            };
            assert_eq!(
                h.verify(&pin(PIN), &bad).unwrap_err(),
                HashError::UnsupportedAlgorithm
            );
        }
        let bad = PinHash {
            key_id: KeyId(1),
            phc: stored.phc.replacen("v=19", "v=16", 1),
        };
        assert_eq!(
            h.verify(&pin(PIN), &bad).unwrap_err(),
            HashError::UnsupportedVersion { found: 16 }
        );
    }

    #[test]
    fn verify_dummy_always_mismatches() {
        let h = hasher();
        assert_eq!(h.verify_dummy(&pin(PIN)), Verified::Mismatch);
        assert_eq!(h.verify_dummy(&pin("")), Verified::Mismatch);
        // Even a PIN whose hash under the dummy salt is stored somewhere: the dummy
        // compares with nothing stored, and answers Mismatch whatever the compare says.
        let stored = h.hash_with_salt(PIN.as_bytes(), &DUMMY_SALT).unwrap();
        assert_eq!(
            h.verify(&pin(PIN), &stored).unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(h.verify_dummy(&pin(PIN)), Verified::Mismatch);
    }

    #[test]
    fn verify_dummy_hashes_with_the_live_params_and_current_key() {
        // The dummy's work is what a verify against a hash with the live parameters and
        // the current key does: one Argon2id with those, here checked output for output.
        let dummy_is_live = |h: &Hasher| {
            let out = h.dummy_output(&pin(PIN)).unwrap();
            let expected = h.hash_with_salt(PIN.as_bytes(), &DUMMY_SALT).unwrap();
            let live = format!(
                "$argon2id$v=19$m={},t={},p={}$",
                h.live.m_kib, h.live.t_cost, h.live.p_cost
            );
            assert!(expected.phc.starts_with(&live), "{}", expected.phc);
            assert_eq!(expected.key_id, h.current_key_id());
            assert_eq!(
                out.as_slice(),
                parse(&expected.phc).unwrap().hash.as_bytes()
            );
        };
        dummy_is_live(&hasher());
        let live = HashParams {
            m_kib: 256,
            t_cost: 2,
            p_cost: 2,
        };
        let keys = Keyring::new(pepper(4, KEY_2)).with_previous(pepper(1, KEY_1));
        let stronger = hasher_with(live, keys);
        dummy_is_live(&stronger);
        let before = stronger.evaluations();
        assert_eq!(stronger.verify_dummy(&pin(PIN)), Verified::Mismatch);
        assert_eq!(stronger.evaluations(), before + 1);
    }

    #[test]
    fn construction_costs_no_hash() {
        let h = hasher();
        assert_eq!(h.evaluations(), 0);
        // Expensive live parameters: constructing is still free (the first hash would take
        // 4 GiB; we never compute one here).
        let huge = HashParams {
            m_kib: 4_194_304,
            t_cost: 4,
            p_cost: 4,
        };
        let h = Hasher::new(huge, FLOOR, huge, Keyring::new(pepper(1, KEY_1))).unwrap();
        assert_eq!(h.evaluations(), 0);
        let stored = hasher().hash(&pin(PIN), &mut rng()).unwrap();
        h.check_stored(&stored).unwrap();
        assert!(h.needs_rehash(&stored));
        assert_eq!(
            h.evaluations(),
            0,
            "check_stored and needs_rehash do not hash"
        );
    }

    #[test]
    fn evaluations_count_each_argon2_run() {
        let h = hasher();
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        assert_eq!(h.evaluations(), 1, "hash");
        assert_eq!(
            h.verify(&pin(PIN), &stored).unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(h.evaluations(), 2, "a matching verify");
        assert_eq!(
            h.verify(&pin("7K4MZQ9Y"), &stored).unwrap(),
            Verified::Mismatch
        );
        assert_eq!(h.evaluations(), 3, "a mismatching verify");
        let _ = h.compare(&pin(PIN), &stored).unwrap();
        assert_eq!(h.evaluations(), 4, "compare");
        let _ = h.verify_dummy(&pin(PIN));
        assert_eq!(h.evaluations(), 5, "verify_dummy: exactly one");
        // Refused before hashing: no evaluation.
        let hostile = with_params(&stored, "m=4194304,t=1,p=1");
        assert!(h.verify(&pin(PIN), &hostile).is_err());
        let unknown = PinHash {
            key_id: KeyId(99),
            ..stored.clone()
        };
        assert!(h.verify(&pin(PIN), &unknown).is_err());
        let garbage = PinHash {
            key_id: KeyId(1),
            phc: "garbage".to_owned(),
        };
        assert!(h.verify(&pin(PIN), &garbage).is_err());
        assert_eq!(h.evaluations(), 5, "refused stored hashes cost nothing");
        assert!(format!("{h:?}").contains("evaluations: 5"), "{h:?}");
    }

    #[test]
    fn hash_reusing_makes_the_same_hash_and_wipes_its_memory() {
        let h = hasher();
        let mut memory = HashMemory::default();
        for seed in 0..3 {
            let reused = h
                .hash_reusing(
                    &pin(PIN),
                    &mut ChaCha20Rng::seed_from_u64(seed),
                    &mut memory,
                )
                .unwrap();
            let fresh = h
                .hash(&pin(PIN), &mut ChaCha20Rng::seed_from_u64(seed))
                .unwrap();
            assert_eq!(reused, fresh);
            assert_eq!(memory.blocks.len(), 64, "m = 64 KiB: 64 blocks, kept");
            let zero = format!("{:?}", argon2::Block::default());
            assert!(
                memory.blocks.iter().all(|b| format!("{b:?}") == zero),
                "wiped after the hash"
            );
        }
        assert_eq!(h.evaluations(), 6);
        // Other parameters: the memory is resized, the hash still right.
        let live = HashParams {
            m_kib: 256,
            t_cost: 2,
            p_cost: 2,
        };
        let stronger = hasher_with(live, Keyring::new(pepper(1, KEY_1)));
        let reused = stronger
            .hash_reusing(&pin(PIN), &mut rng(), &mut memory)
            .unwrap();
        assert_eq!(memory.blocks.len(), 256);
        assert_eq!(reused, stronger.hash(&pin(PIN), &mut rng()).unwrap());
        assert_eq!(
            stronger.verify(&pin(PIN), &reused).unwrap(),
            Verified::Match {
                needs_rehash: false
            }
        );
        assert_eq!(format!("{memory:?}"), "HashMemory { kib: 256 }");
    }

    #[test]
    fn check_stored_wants_a_16_byte_salt() {
        let h = hasher();
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        h.check_stored(&stored).unwrap();
        for len in [8usize, 12, 15, 17, 32] {
            let short = h.hash_with_salt(PIN.as_bytes(), &vec![7u8; len]).unwrap();
            let before = h.evaluations();
            assert_eq!(
                h.check_stored(&short).unwrap_err(),
                HashError::Malformed(
                    "the salt is not 16 bytes long (hashes made by `pin hash` have 16)"
                ),
                "{len}"
            );
            assert_eq!(h.evaluations(), before, "check_stored hashes nothing");
            // Still verifiable: stored rows made earlier keep working.
            assert_eq!(
                h.verify(&pin(PIN), &short).unwrap(),
                Verified::Match {
                    needs_rehash: false
                }
            );
        }
    }

    #[test]
    fn secrets_never_appear_in_output() {
        // rule: BOTH-2
        let keys = Keyring::new(pepper(2, KEY_2)).with_previous(pepper(1, KEY_1));
        let h = hasher_with(FAST, keys);
        let stored = h.hash(&pin(PIN), &mut rng()).unwrap();
        let hostile = with_params(&stored, "m=4194304,t=1,p=1");
        let texts = [
            stored.phc.clone(),
            format!("{stored:?}"),
            format!("{h:?}"),
            format!("{h:#?}"),
            serde_json::to_string(&stored).unwrap(),
            h.verify(&pin(PIN), &hostile).unwrap_err().to_string(),
        ];
        for text in &texts {
            for key in [KEY_1, KEY_2] {
                let raw = std::str::from_utf8(key).unwrap();
                assert!(!text.contains(raw), "{text}");
                assert!(!text.contains(&raw[..10]), "{text}");
                assert!(!text.to_lowercase().contains(&hex(key)), "{text}");
                assert!(!text.to_lowercase().contains(&hex(&key[..8])), "{text}");
            }
            assert!(!text.contains(PIN), "{text}");
        }
        let debug = format!("{h:?}");
        assert!(debug.contains("m_kib: 64"), "{debug}");
        assert_eq!(
            format!("{:?}", h.keys),
            "Keyring { current: KeyId(2), previous: [KeyId(1)], .. }"
        );
    }

    #[test]
    fn pin_hash_round_trips_through_serde() {
        let stored = hasher().hash(&pin(PIN), &mut rng()).unwrap();
        let json = serde_json::to_string(&stored).unwrap();
        assert_eq!(serde_json::from_str::<PinHash>(&json).unwrap(), stored);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn verify_never_panics_on_arbitrary_strings(phc in any::<String>(), id in 0u32..4) {
            let h = hasher();
            let stored = PinHash { key_id: KeyId(id), phc };
            let _ = h.verify(&pin(PIN), &stored);
            let _ = h.needs_rehash(&stored);
        }

        #[test]
        fn verify_never_panics_on_phc_like_strings(
            phc in "\\$argon2id\\$v=19\\$m=[0-9]{1,4},t=[0-9]{1,2},p=[0-9]{1,2}\\$[A-Za-z0-9+/]{0,30}\\$[A-Za-z0-9+/]{0,50}"
        ) {
            let cap = HashParams { m_kib: 256, t_cost: 2, p_cost: 2 };
            let floor = HashParams { m_kib: 0, t_cost: 0, p_cost: 0 };
            let h = Hasher::new(FAST, floor, cap, Keyring::new(pepper(1, KEY_1))).unwrap();
            let result = h.verify(&pin(PIN), &PinHash { key_id: KeyId(1), phc });
            let matched = matches!(result, Ok(Verified::Match { .. }));
            prop_assert!(!matched);
        }
    }
}
