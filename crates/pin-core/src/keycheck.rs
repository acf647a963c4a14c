//! Pepper-key fingerprints: a service opened with the wrong key is refused before it can
//! count a single attempt (POL-8).
//!
//! A verify under the wrong pepper cannot match, so without a check every right PIN would
//! be answered "wrong" and, after `limit` tries, locked for good. The store records, per key
//! id, a [`KeyFingerprint`]: HMAC-SHA-256 keyed with the pepper over a fixed label — a
//! value that identifies the key without revealing it (recovering the key from it is as
//! hard as breaking HMAC). [`PinService::new`](crate::service::PinService::new) compares the
//! keyring with what the store recorded ([`check`]); a write records the current key's
//! fingerprint the first time ([`record_current`]).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::error::{ConfigError, Error};
use crate::hash::{HashError, HashParams, Hasher, Keyring, PinHash};
use crate::secret::{KeyId, Pepper};
use crate::store::Store;

/// What the fingerprint MACs: fixed, so the same key always gives the same fingerprint.
const LABEL: &[u8] = b"pin-core pepper key fingerprint v1";

/// A pepper key's fingerprint. Not a secret: it identifies the key, it does not reveal it.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyFingerprint(pub [u8; 32]);

impl KeyFingerprint {
    /// The fingerprint of `pepper`.
    #[must_use]
    pub fn of(pepper: &Pepper) -> Self {
        #[allow(clippy::expect_used)]
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(pepper.expose_secret())
            .expect("HMAC accepts keys of every length");
        mac.update(LABEL);
        Self(mac.finalize().into_bytes().into())
    }

    /// Lower-case hex.
    #[must_use]
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl std::fmt::Debug for KeyFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KeyFingerprint({})", self.to_hex())
    }
}

impl std::fmt::Display for KeyFingerprint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// Checks every key of `keys` against the fingerprints `store` recorded. Reads only.
///
/// # Errors
/// [`ConfigError::WrongKey`] for the first key whose recorded fingerprint differs; storage
/// failures.
pub fn check<S: Store + ?Sized>(store: &S, keys: &Keyring) -> Result<(), Error> {
    let recorded = store.key_fingerprints()?;
    for pepper in keys.keys() {
        let mine = KeyFingerprint::of(pepper);
        if recorded
            .iter()
            .any(|(id, fp)| *id == pepper.id() && *fp != mine)
        {
            return Err(ConfigError::WrongKey(pepper.id()).into());
        }
    }
    Ok(())
}

/// Records the fingerprint of the current key unless the store has one for its id, and
/// checks the one on record.
///
/// # Errors
/// [`ConfigError::WrongKey`] when another fingerprint is on record; storage failures.
pub fn record_current<S: Store + ?Sized>(store: &S, keys: &Keyring) -> Result<KeyId, Error> {
    let current = keys.current();
    let mine = KeyFingerprint::of(current);
    let on_record = store.record_key_fingerprint(current.id(), &mine)?;
    if on_record != mine {
        return Err(ConfigError::WrongKey(current.id()).into());
    }
    Ok(current.id())
}

/// Checks, before any attempt is counted, that `hasher` can verify `stored`: its key is in
/// the keyring and its parameters are within the floor and cap. Does no Argon2 work.
///
/// # Errors
/// [`ConfigError::TestOnlyHash`] for a hash made with
/// [`HashParams::INSECURE_FAST_FOR_TESTS`] under a floor above them;
/// [`ConfigError::UnusableHash`] otherwise.
pub fn usable(hasher: &Hasher, stored: &PinHash) -> Result<(), ConfigError> {
    match hasher.check_stored(stored) {
        Ok(()) => Ok(()),
        Err(HashError::ParamsBelowFloor { .. })
            if stored.params().ok() == Some(HashParams::INSECURE_FAST_FOR_TESTS) =>
        {
            Err(ConfigError::TestOnlyHash)
        }
        Err(e) => Err(ConfigError::UnusableHash(e)),
    }
}
