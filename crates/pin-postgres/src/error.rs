//! The crate's errors: [`OpenError`] for opening a store (and for a connection the pool
//! cannot make later), and [`DbError`], the opaque PostgreSQL failure carried inside
//! [`pin_core::store::StoreError::Backend`].

use std::fmt;

/// A failure of PostgreSQL or of the connection to it.
///
/// Opaque on purpose: the client crate is an implementation detail, so its error type is not
/// part of this crate's API (upgrading it must not break callers). The message is the
/// server's (or the client's), and [`std::error::Error::source`] gives the underlying error
/// for logging.
pub struct DbError(postgres::Error);

impl DbError {
    pub(crate) fn new(e: postgres::Error) -> Self {
        Self(e)
    }

    /// The SQLSTATE code the server reported (for example `"23505"` for a unique
    /// violation), if the server reported one.
    #[must_use]
    pub fn code(&self) -> Option<&str> {
        self.0.code().map(postgres::error::SqlState::code)
    }

    /// Whether the connection was lost (the server stopped, restarted or is unreachable):
    /// the outcome of a write that was being committed is unknown; a later call reconnects.
    #[must_use]
    pub fn is_connection_lost(&self) -> bool {
        connection_lost(&self.0)
    }
}

/// Whether `e` means the connection is gone, rather than the server refusing a statement.
pub(crate) fn connection_lost(e: &postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.as_db_error() {
        // admin_shutdown, crash_shutdown, cannot_connect_now: the server is going away or
        // not yet ready; the session is over either way.
        Some(db) => matches!(db.code().code(), "57P01" | "57P02" | "57P03"),
        // No server error: an I/O error of the socket, or the server closed it.
        None => std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()),
    }
}

impl fmt::Debug for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DbError").field(&self.0).finish()
    }
}

impl fmt::Display for DbError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(
                f,
                "PostgreSQL: {} (SQLSTATE {})",
                db.message(),
                db.code().code()
            ),
            None if connection_lost(&self.0) => write!(
                f,
                "PostgreSQL: the connection to the server was lost ({}); the outcome of the \
                 operation is unknown, and the next one reconnects",
                self.0
            ),
            None => write!(f, "PostgreSQL: {}", self.0),
        }
    }
}

impl OpenError {
    /// Whether the same open (or connection) may succeed later unchanged: the server is
    /// full or starting ([`OpenError::Refused`]). A server that does not answer at all
    /// ([`OpenError::Unreachable`]) is a matter for its operator, not for a retry loop.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Refused { .. })
    }
}

/// Every connection of a store's pool stayed in use for the whole pool timeout; the source
/// of a [`pin_core::store::StoreError::Busy`].
#[derive(Debug, thiserror::Error)]
#[error(
    "all {size} connection(s) of the PostgreSQL pool stayed in use for {} s; nothing was changed",
    waited.as_secs_f64()
)]
pub struct PoolExhausted {
    /// The pool's size.
    pub size: usize,
    /// How long the caller waited.
    pub waited: std::time::Duration,
}

impl std::error::Error for DbError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// Why [`crate::PostgresStore::open`] failed, or why the pool could not make a connection
/// later (then it is the source of a [`pin_core::store::StoreError::Backend`]).
///
/// No message ever contains the password of the URL: servers are named by host, port,
/// database and user only.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The connection URL (or key-value string) cannot be parsed.
    #[error(
        "the PostgreSQL connection URL is not valid: {reason}; write it as postgres://USER:PASSWORD@HOST:PORT/DATABASE"
    )]
    InvalidUrl {
        /// What is wrong with it (never the password).
        reason: String,
    },
    /// No server answered: it is stopped, not listening at that address, or a firewall is in
    /// the way.
    #[error(
        "cannot reach the PostgreSQL server at {server}: {reason}; check that it is running and listening there"
    )]
    Unreachable {
        /// `host:port`, database and user.
        server: String,
        /// The client's reason (connection refused, timed out, …).
        reason: String,
    },
    /// The server is there but refuses new connections for now: it has no free connection
    /// slot (`too many clients`, SQLSTATE 53300) or is starting up or shutting down
    /// (57P03) — still so after asking again up to the pool timeout
    /// ([`crate::PostgresOptions::pool_timeout`]). Nothing was changed; retrying later may
    /// succeed ([`OpenError::is_retryable`]).
    #[error(
        "the PostgreSQL server at {server} refuses new connections: {reason}; nothing was changed — retry shortly, or give the server more connections (max_connections) or the callers fewer (a smaller pool)"
    )]
    Refused {
        /// `host:port`, database and user.
        server: String,
        /// The server's message.
        reason: String,
    },
    /// The server refused the user name or password.
    #[error(
        "the PostgreSQL server at {server} refused the credentials: {reason}; check the user name and password in the URL"
    )]
    Authentication {
        /// `host:port`, database and user.
        server: String,
        /// The server's message.
        reason: String,
    },
    /// The server has no database of that name.
    #[error(
        "the PostgreSQL server at {server} has no such database: {reason}; create it first (createdb)"
    )]
    NoDatabase {
        /// `host:port`, database and user.
        server: String,
        /// The server's message.
        reason: String,
    },
    /// The database was migrated by a newer version of this crate.
    #[error(
        "the PIN database at {server} has schema version {found}, this program supports up to {supported}; upgrade the program"
    )]
    NewerSchema {
        /// `host:port`, database and user.
        server: String,
        /// The schema version found (`pin_migrations`).
        found: i32,
        /// The newest schema version this crate knows.
        supported: i32,
    },
    /// The stored schema is damaged: a migration is missing or a table is not there.
    #[error("the PIN database at {server} has a damaged schema: {reason}")]
    DamagedSchema {
        /// `host:port`, database and user.
        server: String,
        /// What is wrong.
        reason: String,
    },
    /// The connection string asks for TLS (`sslmode=require`, `verify-ca` or
    /// `verify-full`, or no `sslmode` for a server on another host: `verify-full`) and the
    /// server does not offer it.
    #[error(
        "the PostgreSQL server at {server} does not offer TLS, and sslmode={sslmode}{} requires it; turn ssl on in the server's configuration, or — only to a server on this host or a trusted network — connect with sslmode=disable",
        if *defaulted { " (the default for a server on another host)" } else { "" }
    )]
    TlsNotOffered {
        /// `host:port`, database and user.
        server: String,
        /// The `sslmode` in force.
        sslmode: &'static str,
        /// Whether that `sslmode` was the default rather than written in the URL.
        defaulted: bool,
    },
    /// The server's certificate does not lead to a trusted CA (unknown issuer, expired,
    /// not yet valid, revoked, bad signature).
    #[error(
        "the certificate of the PostgreSQL server at {server} is not trusted: {reason}; it was checked against {trusted}"
    )]
    CertificateUntrusted {
        /// `host:port`, database and user.
        server: String,
        /// What is wrong with the certificate.
        reason: String,
        /// What the certificate was checked against (`sslrootcert`, or the public CAs).
        trusted: String,
    },
    /// `sslmode=verify-full`: the server's certificate is trusted but not issued for the
    /// host name (or address) connected to.
    #[error(
        "the certificate of the PostgreSQL server at {server} is not valid for that host name: {reason}; connect by a name the certificate lists"
    )]
    HostnameMismatch {
        /// `host:port`, database and user.
        server: String,
        /// The names the certificate is valid for, as far as known.
        reason: String,
    },
    /// Any other failure of the TLS handshake.
    #[error("TLS with the PostgreSQL server at {server} failed: {reason}")]
    Tls {
        /// `host:port`, database and user.
        server: String,
        /// What failed.
        reason: String,
    },
    /// The CA file of `sslrootcert` cannot be read or holds no usable certificate.
    #[error("cannot use the CA certificates of sslrootcert={}: {reason}", path.display())]
    CaFile {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The store was opened from inside an async runtime, where the blocking client cannot
    /// run (see [`crate::InsideAsyncRuntime`]). Nothing was done.
    #[error(
        "the blocking PostgreSQL store was opened from inside an async runtime: open it on a blocking thread (tokio::task::spawn_blocking) or use the async driver; nothing was done"
    )]
    InsideAsyncRuntime,
    /// Any other failure of PostgreSQL.
    #[error("cannot open the PIN database at {server}: {source}")]
    Db {
        /// `host:port`, database and user.
        server: String,
        /// PostgreSQL's error.
        #[source]
        source: DbError,
    },
}
