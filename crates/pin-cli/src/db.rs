//! Which database a command uses: an SQLite file, or a PostgreSQL server selected by the
//! scheme of a URL (`postgres://` or `postgresql://`). Every command works on either.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use pin_core::audit::AuditEvent;
use pin_core::audit::chain::ChainReport;
use pin_core::command::AttemptsUpdate;
use pin_core::keycheck::KeyFingerprint;
use pin_core::secret::KeyId;
use pin_core::store::{Baseline, CountRequest, FailedGuess, NetworkKey, PopulationCounts};
use pin_core::store::{
    LeaseId, Loaded, Reservation, ReserveRequest, Settled, Settlement, Store, StoreError,
};
use pin_core::subject::{Profile, Subject};
use pin_core::tax_code::TaxCode;
use pin_postgres::{PostgresOptions, PostgresStore};
use pin_sqlite::{SqliteOptions, SqliteStore};

use crate::cli::{AuditCmd, Cmd};
use crate::exit::{Failure, Kind, one_line};

/// Where the records are.
#[derive(Clone)]
pub(crate) enum Db {
    /// An SQLite file.
    File(PathBuf),
    /// A PostgreSQL database, by connection URL.
    Postgres(String),
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the URL itself: it may hold a password.
        write!(f, "Db({})", self.display())
    }
}

impl Db {
    /// A PostgreSQL URL by its scheme, anything else a file path.
    pub(crate) fn parse(value: &Path) -> Self {
        match value.to_str() {
            Some(s) if s.starts_with("postgres://") || s.starts_with("postgresql://") => {
                Self::Postgres(s.to_owned())
            }
            _ => Self::File(value.to_owned()),
        }
    }

    /// Whether the database may already hold records: a file that exists, or any server
    /// (opening it tells).
    pub(crate) fn exists(&self) -> bool {
        match self {
            Self::File(p) => p.exists(),
            Self::Postgres(_) => true,
        }
    }

    /// The directory of the default key file and outbox: beside a file, or the current
    /// directory for a server.
    pub(crate) fn beside(&self) -> PathBuf {
        match self {
            Self::File(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
            Self::Postgres(_) => PathBuf::new(),
        }
    }

    /// For messages: the path, or the URL with its password masked.
    pub(crate) fn display(&self) -> String {
        match self {
            Self::File(p) => p.display().to_string(),
            Self::Postgres(url) => mask_password(url),
        }
    }
}

/// How a command uses the database.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Access {
    /// Reads only: an SQLite file is opened read-only, so the command never takes the
    /// write lock and never waits for writers.
    Read,
    /// Reads and writes an existing database (never creates one).
    Write,
    /// May create the database (`pin init`, `pin demo`).
    Create,
}

impl Cmd {
    /// How this command uses the database: the commands that only show something read.
    pub(crate) fn access(&self) -> Access {
        match self {
            Self::Status { .. }
            | Self::Audit(
                AuditCmd::Show { .. }
                | AuditCmd::Verify { .. }
                | AuditCmd::Head
                | AuditCmd::Export { .. },
            ) => Access::Read,
            _ => Access::Write,
        }
    }
}

impl Db {
    /// Opens the store. A busy SQLite file (locked by other writers past the busy deadline)
    /// is a [`Kind::Retry`] failure ("busy: retry …"), and so is a PostgreSQL server that
    /// refuses new connections ("unavailable: retry later; … refuses new connections: too
    /// many clients …"); any other failure to open is a storage failure naming the
    /// database.
    pub(crate) fn open(&self, access: Access) -> Result<AnyStore, Failure> {
        let deadline = busy_timeout()?;
        match self {
            Self::File(path) => {
                let mut options = SqliteOptions::new()
                    .create(access == Access::Create)
                    .read_only(access == Access::Read);
                if let Some(deadline) = deadline {
                    options = options.busy_timeout(deadline);
                }
                SqliteStore::open_with(path, &options)
                    .map(AnyStore::Sqlite)
                    .map_err(|e| {
                        if e.is_busy() {
                            Failure::new(Kind::Retry, format!("busy: retry in a moment; {e}"))
                        } else {
                            Failure::storage(one_line(&e.to_string()))
                        }
                    })
            }
            // One command runs one operation at a time: one connection is all it takes of
            // the server's max_connections.
            Self::Postgres(url) => {
                let mut options = PostgresOptions::new().pool_size(1);
                if let Some(deadline) = deadline {
                    options = options.pool_timeout(deadline);
                }
                options
                    .open(url)
                    .map(|s| AnyStore::Postgres(Box::new(s)))
                    .map_err(|e| {
                        if e.is_retryable() {
                            Failure::new(Kind::Retry, format!("unavailable: retry later; {e}"))
                        } else {
                            Failure::storage(one_line(&e.to_string()))
                        }
                    })
            }
        }
    }
}

/// The environment variable that sets how long a command waits for a busy database
/// (seconds, decimals allowed): for the write lock of an SQLite file that other processes
/// hold ([`pin_sqlite::DEFAULT_BUSY_TIMEOUT`] when unset), or for a PostgreSQL server to
/// accept a connection ([`pin_postgres::DEFAULT_POOL_TIMEOUT`] when unset).
pub(crate) const BUSY_TIMEOUT_ENV: &str = "PIN_BUSY_TIMEOUT";

/// The busy deadline of `PIN_BUSY_TIMEOUT`, if set.
fn busy_timeout() -> Result<Option<Duration>, Failure> {
    let Some(value) = std::env::var_os(BUSY_TIMEOUT_ENV) else {
        return Ok(None);
    };
    value
        .to_str()
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0 && *s <= 3600.0)
        .map(|s| Some(Duration::from_secs_f64(s)))
        .ok_or_else(|| {
            Failure::input(format!(
                "{BUSY_TIMEOUT_ENV} must be a number of seconds from 0 to 3600 (e.g. 30 or 0.5)"
            ))
        })
}

/// `postgres://user:secret@host/db` → `postgres://user:***@host/db`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The store of either kind.
#[derive(Debug)]
pub(crate) enum AnyStore {
    /// On an SQLite file.
    Sqlite(SqliteStore),
    /// On a PostgreSQL server.
    Postgres(Box<PostgresStore>),
}

impl AnyStore {
    /// Checks the audit chain from its first row to its last.
    pub(crate) fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        match self {
            Self::Sqlite(s) => s.verify_audit_chain(),
            Self::Postgres(s) => s.verify_audit_chain(),
        }
    }

    /// Keys the audit chain with `keys` (new rows keyed with the newest).
    pub(crate) fn with_audit_keys(self, keys: pin_core::audit::key::AuditKeyring) -> Self {
        match self {
            Self::Sqlite(s) => Self::Sqlite(s.with_audit_keys(keys)),
            Self::Postgres(s) => Self::Postgres(Box::new(s.with_audit_keys(keys))),
        }
    }

    /// The id of the first keyed audit row, if any.
    pub(crate) fn audit_keyed_from(&self) -> Result<Option<u64>, StoreError> {
        match self {
            Self::Sqlite(s) => s.audit_keyed_from(),
            Self::Postgres(s) => s.audit_keyed_from(),
        }
    }

    fn get(&self) -> &dyn Store {
        match self {
            Self::Sqlite(s) => s,
            Self::Postgres(s) => &**s,
        }
    }
}

impl Store for AnyStore {
    fn load(&self, t: &TaxCode) -> Result<Option<Loaded>, StoreError> {
        self.get().load(t)
    }
    fn create(&self, s: &Subject, a: &[AuditEvent]) -> Result<u64, StoreError> {
        self.get().create(s, a)
    }
    fn create_many(&self, b: &[(Subject, Vec<AuditEvent>)]) -> Result<(), StoreError> {
        self.get().create_many(b)
    }
    fn create_streamed(
        &self,
        b: &mut dyn Iterator<Item = Result<(Subject, Vec<AuditEvent>), StoreError>>,
    ) -> Result<u64, StoreError> {
        self.get().create_streamed(b)
    }
    fn save(
        &self,
        s: &Subject,
        e: u64,
        u: AttemptsUpdate,
        a: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        self.get().save(s, e, u, a)
    }
    fn reserve_attempt(&self, t: &TaxCode, r: &ReserveRequest) -> Result<Reservation, StoreError> {
        self.get().reserve_attempt(t, r)
    }
    fn settle_attempt(
        &self,
        t: &TaxCode,
        s: u64,
        l: LeaseId,
        limit: u32,
        x: Settlement,
        a: &AuditEvent,
    ) -> Result<Settled, StoreError> {
        self.get().settle_attempt(t, s, l, limit, x, a)
    }
    fn key_fingerprints(&self) -> Result<Vec<(KeyId, KeyFingerprint)>, StoreError> {
        self.get().key_fingerprints()
    }
    fn record_key_fingerprint(
        &self,
        id: KeyId,
        f: &KeyFingerprint,
    ) -> Result<KeyFingerprint, StoreError> {
        self.get().record_key_fingerprint(id, f)
    }
    fn append_audit(&self, e: &[AuditEvent]) -> Result<(), StoreError> {
        self.get().append_audit(e)
    }
    fn audit_log(&self, t: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
        self.get().audit_log(t)
    }
    fn audit_page(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<pin_core::audit::AuditRecord>, StoreError> {
        self.get().audit_page(after, limit)
    }
    fn hashes_per_key(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        self.get().hashes_per_key()
    }
    fn awaiting_outbound(&self) -> Result<Vec<Subject>, StoreError> {
        self.get().awaiting_outbound()
    }
    fn due_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<TaxCode>, StoreError> {
        self.get().due_deliveries(now, limit)
    }
    fn record_failed_guess(&self, g: &FailedGuess) -> Result<(), StoreError> {
        self.get().record_failed_guess(g)
    }
    fn population_counts(&self, r: &CountRequest<'_>) -> Result<PopulationCounts, StoreError> {
        self.get().population_counts(r)
    }
    fn swap_baseline(
        &self,
        p: Profile,
        e: Option<&Baseline>,
        n: &Baseline,
    ) -> Result<bool, StoreError> {
        self.get().swap_baseline(p, e, n)
    }
    fn prune_failed_guesses(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        self.get().prune_failed_guesses(before)
    }
    fn top_sources(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<(NetworkKey, u64)>, StoreError> {
        self.get().top_sources(since, limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheme_selects_the_store_and_passwords_are_masked() {
        let pg = Db::parse(Path::new(
            "postgres://pin:s3cret@127.0.0.1:5432/pins?connect_timeout=3",
        ));
        assert!(matches!(pg, Db::Postgres(_)));
        assert_eq!(
            pg.display(),
            "postgres://pin:***@127.0.0.1:5432/pins?connect_timeout=3"
        );
        assert!(!format!("{pg:?}").contains("s3cret"));
        assert!(matches!(
            Db::parse(Path::new("postgresql://h/db")),
            Db::Postgres(_)
        ));
        assert_eq!(
            Db::parse(Path::new("postgresql://h/db")).display(),
            "postgresql://h/db"
        );
        let file = Db::parse(Path::new("dir/pin.db"));
        assert!(matches!(file, Db::File(_)));
        assert_eq!(file.beside(), PathBuf::from("dir"));
        assert_eq!(pg.beside(), PathBuf::new());
    }
}
