//! The audit key: the secret that keys the audit chain (HMAC-SHA-256), kept apart from the
//! database and from the pepper.
//!
//! Whoever can write to the database but does not hold the audit key cannot rewrite an
//! event and recompute the chain: every keyed row's hash is an HMAC under the key, and the
//! key id stored beside it says which one (keys rotate: [`AuditKeyring`] holds several; new
//! rows use the newest, older rows verify under the key they name).

use zeroize::Zeroizing;

/// Bytes of an audit key.
pub const AUDIT_KEY_LEN: usize = 32;

/// One audit key with its id. `Debug` shows the id only, never the key.
#[derive(Clone)]
pub struct AuditKey {
    id: u32,
    key: Zeroizing<[u8; AUDIT_KEY_LEN]>,
}

/// An audit key of the wrong size, or a keyring that names one id twice.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuditKeyError {
    /// The key is not 32 bytes.
    #[error("the audit key has {found} bytes; it must have exactly 32")]
    Length {
        /// The length found.
        found: usize,
    },
    /// Two keys of a keyring have the same id.
    #[error("the audit key id {id} appears twice")]
    DuplicateId {
        /// The id.
        id: u32,
    },
}

impl AuditKey {
    /// A key with its id; `key` must be exactly [`AUDIT_KEY_LEN`] bytes. The bytes are
    /// copied into a buffer wiped on drop.
    ///
    /// # Errors
    /// [`AuditKeyError::Length`] when `key` has another length.
    pub fn new(id: u32, key: &[u8]) -> Result<Self, AuditKeyError> {
        let bytes = <[u8; AUDIT_KEY_LEN]>::try_from(key)
            .map_err(|_| AuditKeyError::Length { found: key.len() })?;
        Ok(Self {
            id,
            key: Zeroizing::new(bytes),
        })
    }

    /// The key id, stored beside every row keyed with it.
    #[must_use]
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The one way to read the key.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8; AUDIT_KEY_LEN] {
        &self.key
    }
}

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// The audit keys: new rows are keyed with the newest (the highest id); a row verifies under
/// the key whose id it stores.
#[derive(Clone, Debug)]
pub struct AuditKeyring {
    /// Sorted by id, ids unique; never empty.
    keys: Vec<AuditKey>,
}

impl AuditKeyring {
    /// A keyring of one key.
    #[must_use]
    pub fn new(key: AuditKey) -> Self {
        Self { keys: vec![key] }
    }

    /// Adds `key`.
    ///
    /// # Errors
    /// [`AuditKeyError::DuplicateId`] when a key of that id is already there.
    pub fn with(mut self, key: AuditKey) -> Result<Self, AuditKeyError> {
        if self.get(key.id).is_some() {
            return Err(AuditKeyError::DuplicateId { id: key.id });
        }
        self.keys.push(key);
        self.keys.sort_by_key(AuditKey::id);
        Ok(self)
    }

    /// The key new rows are keyed with: the one of the highest id.
    #[must_use]
    pub fn current(&self) -> &AuditKey {
        // Never empty: built from one key and only grown.
        #[allow(clippy::expect_used)]
        self.keys.last().expect("a keyring holds at least one key")
    }

    /// The key of id `id`, if held.
    #[must_use]
    pub fn get(&self, id: u32) -> Option<&AuditKey> {
        self.keys.iter().find(|k| k.id == id)
    }

    /// The ids held, ascending.
    pub fn ids(&self) -> impl Iterator<Item = u32> + '_ {
        self.keys.iter().map(AuditKey::id)
    }
}
