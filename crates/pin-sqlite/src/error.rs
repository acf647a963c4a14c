//! The crate's errors: [`OpenError`] for opening a database, and [`DbError`], the opaque
//! SQLite failure carried inside [`pin_core::store::StoreError::Backend`].

use std::fmt;
use std::path::PathBuf;

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

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Why [`crate::SqliteStore::open`] failed. In every case the file was left as it was.
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
    /// The file (or its directory) is read-only. The store writes on every verification
    /// (the attempt counter), so it cannot work on a read-only file.
    #[error(
        "cannot open PIN database {path}: the file is read-only; the store must write to count attempts — make the file and its directory writable"
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
