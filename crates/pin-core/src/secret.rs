//! Secrets: PINs in clear and the pepper.
//!
//! Both types follow the same rules (see `STYLE.md`, "Secrets are loud"):
//!
//! - the bytes live in a [`Zeroizing`] buffer, wiped when the value is dropped;
//! - `Debug` is written by hand and never prints the secret;
//! - there is no `Display`, no `Serialize` and no `Clone`: a secret is never
//!   written out or copied by accident;
//! - there is exactly one way to read it, `expose_secret()`, easy to grep for.
//!
//! A [`Pin`] is never compared directly: PINs are compared through their hashes
//! (see [`crate::hash`]), so `Pin` has no `PartialEq` either.

use zeroize::Zeroizing;

/// A PIN, or one part of a PIN, in clear. Zeroized on drop; `Debug` is redacted; no `Serialize`.
///
/// Values are built by [`crate::format`] (generation or parsing), so a `Pin`
/// always holds ASCII text of a known format.
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wraps text that is already known to be a well-formed PIN (crate-internal).
    pub(crate) fn from_string(s: String) -> Self {
        Self(Zeroizing::new(s))
    }

    /// A second, independent copy of this PIN (crate-internal; `Pin` is deliberately not `Clone`).
    #[allow(dead_code)] // available to the modules of this crate that need a copy
    pub(crate) fn duplicate(&self) -> Self {
        Self::from_string(self.expose_secret().to_owned())
    }

    /// The one way to read the secret.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }

    /// Number of characters.
    #[must_use]
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether the PIN is empty (never true for a parsed PIN).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self(_secret) = self;
        f.debug_struct("Pin").finish_non_exhaustive()
    }
}

/// Identifier of a pepper key, stored beside each hash so keys can rotate.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct KeyId(pub u32);

/// The pepper: a secret key kept outside the store, mixed into every hash.
///
/// It is given to Argon2 as its "secret" input, so a stolen database of hashes
/// cannot be attacked offline without the key as well. Its [`KeyId`] is stored
/// beside every hash, so that keys can be rotated (see [`crate::hash::Keyring`]).
pub struct Pepper {
    id: KeyId,
    key: Zeroizing<Vec<u8>>,
}

impl Pepper {
    /// The shortest key accepted, in bytes.
    pub const MIN_LEN: usize = 16;
    /// The longest key accepted, in bytes (Argon2 accepts far more; 64 is plenty).
    pub const MAX_LEN: usize = 64;

    /// A pepper with its key id; the key must be 16 to 64 bytes.
    ///
    /// The bytes are copied into a buffer wiped on drop; the caller should wipe
    /// its own copy.
    ///
    /// # Errors
    /// [`PepperError`] when the key is too short or too long.
    pub fn new(id: KeyId, key: &[u8]) -> Result<Self, PepperError> {
        if key.len() < Self::MIN_LEN {
            return Err(PepperError::TooShort { found: key.len() });
        }
        if key.len() > Self::MAX_LEN {
            return Err(PepperError::TooLong { found: key.len() });
        }
        Ok(Self {
            id,
            key: Zeroizing::new(key.to_vec()),
        })
    }

    /// The key id.
    #[must_use]
    pub fn id(&self) -> KeyId {
        self.id
    }

    /// The one way to read the key.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        &self.key
    }
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { id, key: _ } = self;
        f.debug_struct("Pepper")
            .field("id", id)
            .finish_non_exhaustive()
    }
}

/// A pepper key of the wrong size.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PepperError {
    /// The key has fewer than [`Pepper::MIN_LEN`] bytes.
    #[error("the pepper key has {found} bytes; it needs at least 16 (32 recommended)")]
    TooShort {
        /// Bytes given.
        found: usize,
    },
    /// The key has more than [`Pepper::MAX_LEN`] bytes.
    #[error("the pepper key has {found} bytes; at most 64 are accepted (32 recommended)")]
    TooLong {
        /// Bytes given.
        found: usize,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"correct-horse-battery-staple-42!";

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn pin_debug_is_redacted() {
        let pin = Pin::from_string("7K4MZQ9X".to_owned());
        let debug = format!("{pin:?}");
        assert!(!debug.contains("7K4MZQ9X"), "{debug}");
        assert!(!debug.contains("7K4M"), "{debug}");
        assert_eq!(debug, "Pin { .. }");
        let pretty = format!("{pin:#?}");
        assert!(!pretty.contains("7K4MZQ9X"), "{pretty}");
    }

    #[test]
    fn pin_reads_and_duplicates() {
        let pin = Pin::from_string("48213".to_owned());
        assert_eq!(pin.expose_secret(), "48213");
        assert_eq!(pin.len(), 5);
        assert!(!pin.is_empty());
        let copy = pin.duplicate();
        drop(pin);
        assert_eq!(copy.expose_secret(), "48213");
        assert!(Pin::from_string(String::new()).is_empty());
    }

    #[test]
    fn secrets_are_held_in_zeroizing_buffers() {
        // Wiping on drop cannot be observed safely; the types prove the buffers are `Zeroizing`.
        fn zeroizing<T: zeroize::Zeroize>(_: &Zeroizing<T>) {}
        let pin = Pin::from_string("48213".to_owned());
        zeroizing::<String>(&pin.0);
        let pepper = Pepper::new(KeyId(1), KEY).unwrap();
        zeroizing::<Vec<u8>>(&pepper.key);
    }

    #[test]
    fn pepper_debug_shows_id_only() {
        let pepper = Pepper::new(KeyId(7), KEY).unwrap();
        for debug in [format!("{pepper:?}"), format!("{pepper:#?}")] {
            assert!(debug.contains('7'), "{debug}");
            assert!(!debug.contains("correct-horse"), "{debug}");
            assert!(!debug.contains(&hex(KEY)), "{debug}");
            assert!(!debug.contains(&format!("{:?}", &KEY[..4])), "{debug}");
        }
        assert_eq!(pepper.id(), KeyId(7));
        assert_eq!(pepper.expose_secret(), KEY);
    }

    #[test]
    fn pepper_length_limits() {
        assert_eq!(
            Pepper::new(KeyId(1), &[]).unwrap_err(),
            PepperError::TooShort { found: 0 }
        );
        assert_eq!(
            Pepper::new(KeyId(1), &[7; 15]).unwrap_err(),
            PepperError::TooShort { found: 15 }
        );
        assert!(Pepper::new(KeyId(1), &[7; 16]).is_ok());
        assert!(Pepper::new(KeyId(1), &[7; 64]).is_ok());
        assert_eq!(
            Pepper::new(KeyId(1), &[7; 65]).unwrap_err(),
            PepperError::TooLong { found: 65 }
        );
    }

    #[test]
    fn pepper_errors_do_not_echo_the_key() {
        let key = b"short-secret";
        let err = Pepper::new(KeyId(1), key).unwrap_err();
        let msg = err.to_string();
        assert!(!msg.contains("short-secret"), "{msg}");
        assert!(msg.contains("12 bytes"), "{msg}");
        let long = [b'z'; 80];
        let msg = Pepper::new(KeyId(1), &long).unwrap_err().to_string();
        assert!(!msg.contains("zzzz"), "{msg}");
    }

    #[test]
    fn key_id_serializes_as_a_number() {
        assert_eq!(serde_json::to_string(&KeyId(3)).unwrap(), "3");
        assert_eq!(serde_json::from_str::<KeyId>("3").unwrap(), KeyId(3));
    }
}
