//! [`PostgresOptions`]: the size of a store's connection pool and how long a caller waits
//! for a connection.

use std::time::Duration;

use crate::error::OpenError;
use crate::store::PostgresStore;

/// Connections a store keeps open at most by default; callers beyond wait for one.
pub const DEFAULT_POOL_SIZE: usize = 8;

/// How long, by default, an operation (or the open itself) waits for a connection — a
/// free one of the pool, or one the server accepts — before failing (30 s).
///
/// The same deadline as SQLite's busy timeout, for the same reason: a herd of 200 callers
/// at once drains within it, and a wait beyond it is not load but a stuck server, which
/// the caller should hear about.
pub const DEFAULT_POOL_TIMEOUT: Duration = Duration::from_secs(30);

/// How a [`PostgresStore`] connects. Build it with [`PostgresOptions::new`] and the
/// setters, then call [`PostgresOptions::open`] (or [`PostgresStore::open_with`]).
///
/// | option | default | |
/// |---|---|---|
/// | [`pool_size`](Self::pool_size) | [`DEFAULT_POOL_SIZE`] | connections kept open at most (each one is one of the server's `max_connections`) |
/// | [`pool_timeout`](Self::pool_timeout) | [`DEFAULT_POOL_TIMEOUT`] | how long to wait for a free connection, or for the server to accept one |
///
/// A caller that finds every pooled connection in use waits for one up to the timeout,
/// then gets [`pin_core::store::StoreError::Busy`]. A server that refuses new connections
/// because it is full (`too many clients`) or starting up is asked again, with a growing
/// back-off, up to the same timeout; then the error is
/// [`pin_core::store::StoreError::Unavailable`] (or [`OpenError::Refused`] while opening).
/// Both are retryable and nothing was changed.
///
/// TLS is set in the URL (`sslmode`, `sslrootcert`; see the crate docs, "TLS").
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// See [`PostgresOptions::pool_size`] (0 is taken as 1).
    pub pool_size: usize,
    /// See [`PostgresOptions::pool_timeout`].
    pub pool_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl PostgresOptions {
    /// The defaults, what [`PostgresStore::open`] uses.
    #[must_use]
    pub const fn new() -> Self {
        Self {
            pool_size: DEFAULT_POOL_SIZE,
            pool_timeout: DEFAULT_POOL_TIMEOUT,
        }
    }

    /// How many connections the store keeps open at most (at least 1).
    #[must_use]
    pub const fn pool_size(mut self, pool_size: usize) -> Self {
        self.pool_size = if pool_size == 0 { 1 } else { pool_size };
        self
    }

    /// How long an operation waits for a free pooled connection, or for a full server to
    /// accept a new one, before failing.
    #[must_use]
    pub const fn pool_timeout(mut self, pool_timeout: Duration) -> Self {
        self.pool_timeout = pool_timeout;
        self
    }

    /// Connects to the database at `url` with these options.
    ///
    /// # Errors
    /// As [`PostgresStore::open_with`].
    pub fn open(&self, url: &str) -> Result<PostgresStore, OpenError> {
        PostgresStore::open_with(url, self)
    }
}
