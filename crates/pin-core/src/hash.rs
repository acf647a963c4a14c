//! Argon2id hashing keyed with a pepper. STUB — being implemented.

use crate::secret::{KeyId, Pepper, Pin};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};

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
    pub const RECOMMENDED: Self = Self { m_kib: 19_456, t_cost: 2, p_cost: 1 };
}

/// A stored hash: the PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`) and the pepper key id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinHash {
    /// Which pepper key made it.
    pub key_id: KeyId,
    /// The PHC string.
    pub phc: String,
}

/// The peppers: the current one (new hashes) and earlier ones still accepted for verification.
#[derive(Debug)]
pub struct Keyring {
    current: Pepper,
    previous: Vec<Pepper>,
}

impl Keyring {
    /// A keyring with only `current`.
    #[must_use]
    pub fn new(current: Pepper) -> Self {
        Self { current, previous: Vec::new() }
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

/// Hashing failures (never a wrong PIN: that is [`Verified::Mismatch`]).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HashError {
    /// The stored hash cannot be parsed.
    #[error("stored hash is malformed: {0}")]
    Malformed(&'static str),
}

/// Hashes and verifies PINs with Argon2id and the keyring's pepper.
#[derive(Debug)]
pub struct Hasher {
    live: HashParams,
    floor: HashParams,
    cap: HashParams,
    keys: Keyring,
}

impl Hasher {
    /// A hasher with live parameters, the floor and cap accepted from stored hashes, and keys.
    ///
    /// # Errors
    /// [`HashError`] when the parameters are not accepted by Argon2 or not floor ≤ live ≤ cap.
    pub fn new(live: HashParams, floor: HashParams, cap: HashParams, keys: Keyring) -> Result<Self, HashError> {
        Ok(Self { live, floor, cap, keys })
    }
    /// Hashes `pin` with a fresh salt from `rng`.
    ///
    /// # Errors
    /// [`HashError`] if Argon2 fails.
    pub fn hash<R: CryptoRng + ?Sized>(&self, pin: &Pin, rng: &mut R) -> Result<PinHash, HashError> {
        let _ = (pin, rng, self.live, self.floor, self.cap);
        Ok(PinHash { key_id: self.keys.current_id(), phc: String::new() })
    }
    /// Compares `pin` with `stored`, in constant time.
    ///
    /// # Errors
    /// [`HashError`] when the stored hash is malformed, its key unknown or its parameters outside floor..=cap.
    pub fn verify(&self, pin: &Pin, stored: &PinHash) -> Result<Verified, HashError> {
        let _ = (pin, stored);
        Ok(Verified::Mismatch)
    }
    /// Costs what a verify costs and always fails: used when there is nothing to compare against.
    pub fn verify_dummy(&self, pin: &Pin) -> Verified {
        let _ = pin;
        Verified::Mismatch
    }
}
