//! [`SqliteOptions`]: how a store opens its file — create or not, read-only or not, how
//! long to wait for a busy database, how many connections.

use std::path::Path;
use std::time::Duration;

use crate::error::OpenError;
use crate::store::SqliteStore;

/// How long an operation waits, by default, for the write lock that other connections
/// hold, before it fails with [`pin_core::store::StoreError::Busy`] (30 s).
///
/// Why 30 s: 200 `pin verify` processes started at once on one file, on two busy cores,
/// drain in about 15 s (each holds the lock for a few milliseconds, but 200 processes share
/// two cores, so the holder is often descheduled). Twice that covers such a herd; a lock
/// held longer is not load but a stuck writer, and the caller should hear about it.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Connections a file store keeps open at most by default; callers beyond wait for one.
pub const DEFAULT_POOL_SIZE: usize = 4;

/// How to open an SQLite PIN database. Build it with [`SqliteOptions::new`] and the
/// setters, then call [`SqliteOptions::open`] (or [`SqliteStore::open_with`]).
///
/// | option | default | |
/// |---|---|---|
/// | [`create`](Self::create) | `true` | make the file (mode `0600`) and the schema when there is none |
/// | [`read_only`](Self::read_only) | `false` | open for reading only: never takes the write lock, never writes |
/// | [`busy_timeout`](Self::busy_timeout) | [`DEFAULT_BUSY_TIMEOUT`] | how long to wait for other writers |
/// | [`pool_size`](Self::pool_size) | [`DEFAULT_POOL_SIZE`] | connections kept open at most |
///
/// ```
/// use std::time::Duration;
/// use pin_sqlite::{OpenError, SqliteOptions};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let dir = std::env::temp_dir().join(format!("pin-sqlite-options-{}", std::process::id()));
/// std::fs::create_dir_all(&dir)?;
/// let path = dir.join("pins.db");
/// // Only a creating open makes a database.
/// let missing = SqliteOptions::new().create(false).open(&path).unwrap_err();
/// assert!(matches!(missing, OpenError::Missing { .. }));
/// let store = SqliteOptions::new().busy_timeout(Duration::from_secs(5)).open(&path)?;
/// drop(store);
/// // A reader never takes the write lock.
/// let reader = SqliteOptions::new().read_only(true).open(&path)?;
/// assert!(reader.verify_audit_chain()?.is_intact());
/// # drop(reader);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteOptions {
    /// See [`SqliteOptions::create`].
    pub create: bool,
    /// See [`SqliteOptions::read_only`].
    pub read_only: bool,
    /// See [`SqliteOptions::busy_timeout`].
    pub busy_timeout: Duration,
    /// See [`SqliteOptions::pool_size`] (0 is taken as 1).
    pub pool_size: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SqliteOptions {
    /// The defaults: create when missing, read-write, [`DEFAULT_BUSY_TIMEOUT`],
    /// [`DEFAULT_POOL_SIZE`] connections — what [`SqliteStore::open`] uses.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            create: true,
            read_only: false,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            pool_size: DEFAULT_POOL_SIZE,
        }
    }

    /// Whether a missing file (or one of zero bytes, or an empty database) is made into a
    /// new PIN database. With `false`, such a file is [`OpenError::Missing`] or
    /// [`OpenError::NotAPinDatabase`] and nothing is created. A file this option creates
    /// gets mode `0600` (owner only), and so do SQLite's `-wal` and `-shm` beside it.
    #[must_use]
    pub const fn create(mut self, create: bool) -> Self {
        self.create = create;
        self
    }

    /// Whether to open for reading only. A read-only store never takes the write lock and
    /// never writes to the database file (it works on a file whose mode is `0444`); it does
    /// not migrate, so the schema must be up to date, and every write through it fails.
    /// Implies no [`create`](Self::create).
    #[must_use]
    pub const fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// How long one operation (or the open itself) waits for the lock other connections
    /// hold before failing with [`pin_core::store::StoreError::Busy`] (or
    /// [`OpenError::Busy`]); SQLite retries within it with a growing back-off, up to 100 ms
    /// apart.
    #[must_use]
    pub const fn busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// How many connections the store keeps open at most (at least 1).
    #[must_use]
    pub const fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = if pool_size == 0 { 1 } else { pool_size };
        self
    }

    /// Opens the database at `path` with these options.
    ///
    /// # Errors
    /// As [`SqliteStore::open_with`].
    pub fn open(&self, path: impl AsRef<Path>) -> Result<SqliteStore, OpenError> {
        SqliteStore::open_with(path, self)
    }
}
