//! The crate's errors: [`OpenError`] for opening a database, and [`DbError`], the opaque
//! SQLite failure carried inside [`pin_core::store::StoreError::Backend`] (or
//! [`pin_core::store::StoreError::Busy`] when the database stayed locked past the busy
//! deadline).

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

/// A failure of SQLite itself.
///
/// Opaque on purpose: the SQLite binding is an implementation detail, so its error type is
/// not part of this crate's API (upgrading the binding must not break callers). The message
/// is SQLite's, and [`std::error::Error::source`] gives the underlying error for logging.
pub struct DbError(rusqlite::Error);

impl DbError {
    pub(crate) fn new(e: rusqlite::Error) -> Self {
        Self(e)
    }

    /// Whether SQLite reported the database busy or locked (another process held the write
    /// lock past the busy timeout): retrying later may succeed.
    #[must_use]
    pub fn is_busy(&self) -> bool {
        matches!(
            self.0.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
        )
    }
}

impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DbError").field(&self.0).finish()
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SQLite: {}", self.0)
    }
}

impl OpenError {
    /// Whether the database was only busy: opening it again later may succeed.
    #[must_use]
    pub fn is_busy(&self) -> bool {
        matches!(self, Self::Busy { .. })
    }
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Why [`crate::SqliteStore::open`] (or [`crate::SqliteOptions::open`]) failed. In every
/// case the file was left as it was.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The directory that should hold the database does not exist.
    #[error(
        "cannot open PIN database {path}: the directory {directory} does not exist; create it first"
    )]
    MissingDirectory {
        /// The database path.
        path: PathBuf,
        /// The missing directory.
        directory: PathBuf,
    },
    /// The file exists but is not an SQLite database (or is encrypted, or damaged in its
    /// header).
    #[error(
        "cannot open PIN database {path}: the file is not an SQLite database; check the path, or restore the file from a backup"
    )]
    NotADatabase {
        /// The database path.
        path: PathBuf,
    },
    /// The database was written by a newer version of this crate, with a schema this
    /// version does not know.
    #[error(
        "cannot open PIN database {path}: its schema version is {found}, this program supports up to {supported}; upgrade the program"
    )]
    NewerSchema {
        /// The database path.
        path: PathBuf,
        /// The schema version found (`PRAGMA user_version`).
        found: i64,
        /// The newest schema version this crate knows.
        supported: i64,
    },
    /// There is no database at the path, and the store was opened without
    /// [`crate::SqliteOptions::create`] (or read-only): only a creating open makes one.
    #[error(
        "cannot open PIN database {path}: there is no such file; create the database first (`pin init`)"
    )]
    Missing {
        /// The database path.
        path: PathBuf,
    },
    /// The file is an SQLite database (or an empty file) without the PIN schema: zero
    /// bytes long, or an empty database, when the store may not create one; or a database
    /// of some other program, whatever the options (its tables are never added to).
    #[error("cannot open PIN database {path}: {reason}")]
    NotAPinDatabase {
        /// The database path.
        path: PathBuf,
        /// What was found.
        reason: String,
    },
    /// Other connections held the database's lock for longer than the busy deadline
    /// ([`crate::SqliteOptions::busy_timeout`]) while it was being opened. Nothing was
    /// changed; opening again later may succeed.
    #[error(
        "cannot open PIN database {path} now: it stayed locked by other writers for more than {} s; nothing was changed — retry shortly",
        waited.as_secs_f64()
    )]
    Busy {
        /// The database path.
        path: PathBuf,
        /// The busy deadline that passed.
        waited: Duration,
    },
    /// The file (or its directory) is read-only. The store writes on every verification
    /// (the attempt counter), so it cannot work on a read-only file; open it with
    /// [`crate::SqliteOptions::read_only`] to read it.
    #[error(
        "cannot open PIN database {path}: the file is read-only; the store must write to count attempts — make the file and its directory writable (reading only needs a read-only open)"
    )]
    ReadOnly {
        /// The database path.
        path: PathBuf,
    },
    /// The stored schema is damaged: a migration is missing or the tables do not match.
    #[error("cannot open PIN database {path}: the schema is damaged: {reason}")]
    DamagedSchema {
        /// The database path.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Any other failure of SQLite or of the file system.
    #[error("cannot open PIN database {path}: {source}")]
    Db {
        /// The database path.
        path: PathBuf,
        /// SQLite's error.
        #[source]
        source: DbError,
    },
}
