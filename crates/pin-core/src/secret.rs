//! Secrets: PINs and the pepper. STUB — being implemented.

use zeroize::Zeroizing;

/// A PIN, or one part of a PIN, in clear. Zeroized on drop; `Debug` is redacted; no `Serialize`.
pub struct Pin(Zeroizing<String>);

impl Pin {
    /// Wraps text that is already known to be a well-formed PIN (crate-internal).
    pub(crate) fn from_string(s: String) -> Self {
        Self(Zeroizing::new(s))
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
        f.debug_struct("Pin").finish_non_exhaustive()
    }
}

/// Identifier of a pepper key, stored beside each hash so keys can rotate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct KeyId(pub u32);

/// The pepper: a secret key kept outside the store, mixed into every hash.
pub struct Pepper {
    id: KeyId,
    key: Zeroizing<Vec<u8>>,
}

impl Pepper {
    /// A pepper with its key id; the key must be 16 to 64 bytes.
    ///
    /// # Errors
    /// [`PepperError`] when the key is too short or too long.
    pub fn new(id: KeyId, key: &[u8]) -> Result<Self, PepperError> {
        Ok(Self { id, key: Zeroizing::new(key.to_vec()) })
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
        f.debug_struct("Pepper").field("id", id).finish_non_exhaustive()
    }
}

/// A pepper key of the wrong size.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PepperError {
    /// Too short.
    #[error("the pepper key has {found} bytes; it needs at least 16 (32 recommended)")]
    TooShort {
        /// Bytes given.
        found: usize,
    },
}
