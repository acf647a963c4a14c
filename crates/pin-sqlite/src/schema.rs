//! Connection setup and the numbered migrations, applied in order under
//! `PRAGMA user_version`.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, ErrorCode, OpenFlags, TransactionBehavior};

use crate::error::{DbError, OpenError};
use crate::options::SqliteOptions;

/// Migration `n` (from 1) is `MIGRATIONS[n - 1]`; after it, `user_version` is `n`.
/// Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    MIGRATION_1,
    MIGRATION_2,
    MIGRATION_3,
    MIGRATION_4,
    MIGRATION_5,
];

/// The newest schema version this crate knows.
pub const SCHEMA_VERSION: i64 = 5;

const _: () = assert!(MIGRATIONS.len() as i64 == SCHEMA_VERSION);

/// Schema 1. `STRICT` tables, so that a value of the wrong type cannot be stored at all.
const MIGRATION_1: &str = r"
CREATE TABLE subjects (
    tax_code        TEXT    NOT NULL PRIMARY KEY CHECK (length(tax_code) = 16),
    version         INTEGER NOT NULL CHECK (version >= 1),
    row_format      INTEGER NOT NULL CHECK (row_format = 1),
    profile         TEXT    NOT NULL CHECK (profile IN ('noipa', 'inps')),
    body            TEXT    NOT NULL CHECK (json_valid(body)),
    -- NOIPA-8: Email::unique_key() of a NoiPA subject's e-mail; NULL for everyone else.
    noipa_email_key TEXT CHECK (
        noipa_email_key IS NULL
        OR (profile = 'noipa' AND noipa_email_key = lower(noipa_email_key))
    ),
    UNIQUE (tax_code, profile)
) STRICT;

CREATE UNIQUE INDEX subjects_noipa_email ON subjects (noipa_email_key)
    WHERE noipa_email_key IS NOT NULL;

-- The current PIN: the primary key makes it at most one per subject (and so per profile,
-- which the foreign key ties to the subject's); BOTH-1.
CREATE TABLE credentials (
    tax_code TEXT    NOT NULL PRIMARY KEY,
    profile  TEXT    NOT NULL,
    serial   INTEGER NOT NULL CHECK (serial >= 1),
    key_id   INTEGER NOT NULL CHECK (key_id BETWEEN 0 AND 4294967295),
    -- BOTH-2: only an Argon2id PHC string can be stored, never a PIN in clear.
    phc      TEXT    NOT NULL CHECK (substr(phc, 1, 10) = '$argon2id$' AND length(phc) <= 256),
    body     TEXT    NOT NULL CHECK (json_valid(body)),
    FOREIGN KEY (tax_code, profile) REFERENCES subjects (tax_code, profile)
        ON UPDATE CASCADE ON DELETE CASCADE
) STRICT;

-- The attempt counter, changed only by UPDATEs in SQL (reserve, settle, save rules).
CREATE TABLE attempts (
    tax_code TEXT    NOT NULL PRIMARY KEY REFERENCES subjects (tax_code) ON DELETE CASCADE,
    serial   INTEGER NOT NULL CHECK (serial >= 0),
    failures INTEGER NOT NULL CHECK (failures BETWEEN 0 AND 4294967295),
    blocked  INTEGER NOT NULL CHECK (blocked IN (0, 1))
) STRICT;

-- Append-only, hash-chained audit log: hash = SHA-256(prev_hash || event).
CREATE TABLE audit (
    id        INTEGER NOT NULL PRIMARY KEY CHECK (id >= 1),
    tax_code  TEXT    NOT NULL,
    event     TEXT    NOT NULL CHECK (json_valid(event)),
    prev_hash BLOB    NOT NULL CHECK (length(prev_hash) = 32),
    hash      BLOB    NOT NULL CHECK (length(hash) = 32)
) STRICT;

CREATE INDEX audit_by_subject ON audit (tax_code, id);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;

CREATE TRIGGER audit_extends_chain BEFORE INSERT ON audit
WHEN NEW.id IS NOT (SELECT coalesce(max(id), 0) + 1 FROM audit)
  OR NEW.prev_hash IS NOT coalesce((SELECT hash FROM audit ORDER BY id DESC LIMIT 1), zeroblob(32))
BEGIN SELECT RAISE(ABORT, 'an audit row must extend the chain'); END;
";

/// Schema 2: the attempts in flight (leases, so that a right PIN is never counted as a
/// failure and a killed compare is, POL-8) and the pepper-key fingerprints (a wrong key file
/// is refused before anything is counted).
const MIGRATION_2: &str = r"
CREATE TABLE attempt_leases (
    id         INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT CHECK (id >= 1),
    tax_code   TEXT    NOT NULL REFERENCES subjects (tax_code) ON DELETE CASCADE,
    serial     INTEGER NOT NULL CHECK (serial >= 1),
    -- Unix time in milliseconds.
    expires_at INTEGER NOT NULL
) STRICT;

CREATE INDEX attempt_leases_by_subject ON attempt_leases (tax_code);

-- HMAC-SHA-256 of a fixed label under each pepper key: identifies the key, never reveals it.
CREATE TABLE key_fingerprints (
    key_id      INTEGER NOT NULL PRIMARY KEY CHECK (key_id BETWEEN 0 AND 4294967295),
    fingerprint BLOB    NOT NULL CHECK (length(fingerprint) = 32)
) STRICT;
";

/// Schema 3: the durable delivery queue. A credential whose parts wait for their channel
/// (sealed, never in clear) carries when the earliest is due, indexed for the workers.
const MIGRATION_3: &str = r"
ALTER TABLE credentials ADD COLUMN deliver_due INTEGER;

CREATE INDEX credentials_deliver_due ON credentials (deliver_due)
    WHERE deliver_due IS NOT NULL;
";

/// Schema 4: the population defence's counters (`pin_core::population`): one row per failed
/// guess (the one extra write a wrong PIN costs), indexed for the per-network and per-profile
/// windowed counts, and one learned baseline per profile.
const MIGRATION_4: &str = r"
CREATE TABLE failed_guesses (
    id      INTEGER NOT NULL PRIMARY KEY,
    -- Unix time in milliseconds.
    at      INTEGER NOT NULL,
    profile TEXT    NOT NULL CHECK (profile IN ('noipa', 'inps')),
    network TEXT CHECK (network IS NULL OR length(network) BETWEEN 1 AND 64)
) STRICT;

CREATE INDEX failed_guesses_by_network ON failed_guesses (network, at)
    WHERE network IS NOT NULL;
CREATE INDEX failed_guesses_by_profile ON failed_guesses (profile, at);

CREATE TABLE population_baselines (
    profile          TEXT    NOT NULL PRIMARY KEY CHECK (profile IN ('noipa', 'inps')),
    per_window_milli INTEGER NOT NULL CHECK (per_window_milli >= 0),
    -- Unix time in milliseconds.
    folded_at        INTEGER NOT NULL
) STRICT;
";

/// Schema 5: the keyed audit chain. `key_id` names the audit key a row's HMAC is made with
/// (`NULL`: an unkeyed SHA-256 row, as every row before schema 5); `audit_keying` records the
/// keyed boundary, the id of the first keyed row, set by a trigger when that row is inserted
/// and never changed. From then on unkeyed rows are refused.
const MIGRATION_5: &str = r"
ALTER TABLE audit ADD COLUMN key_id INTEGER CHECK (key_id BETWEEN 0 AND 4294967295);

CREATE TABLE audit_keying (
    singleton  INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    keyed_from INTEGER NOT NULL CHECK (keyed_from >= 1)
) STRICT;

CREATE TRIGGER audit_keying_no_update BEFORE UPDATE ON audit_keying
BEGIN SELECT RAISE(ABORT, 'the keyed boundary of the audit log never changes'); END;

CREATE TRIGGER audit_keying_no_delete BEFORE DELETE ON audit_keying
BEGIN SELECT RAISE(ABORT, 'the keyed boundary of the audit log never changes'); END;

CREATE TRIGGER audit_stays_keyed BEFORE INSERT ON audit
WHEN NEW.key_id IS NULL AND EXISTS (SELECT 1 FROM audit_keying)
BEGIN SELECT RAISE(ABORT, 'the audit log is keyed: a row without an audit key is refused'); END;

CREATE TRIGGER audit_records_keyed_from AFTER INSERT ON audit
WHEN NEW.key_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM audit_keying)
BEGIN INSERT INTO audit_keying (singleton, keyed_from) VALUES (1, NEW.id); END;
";

/// Tables the current schema must have.
const TABLES: [&str; 9] = [
    "subjects",
    "credentials",
    "attempts",
    "audit",
    "attempt_leases",
    "key_fingerprints",
    "audit_keying",
    "failed_guesses",
    "population_baselines",
];

/// Where a store's connections come from.
#[derive(Clone, Debug)]
pub(crate) enum Location {
    /// A database file.
    File(PathBuf),
    /// A private in-memory database (one connection only).
    Memory,
}

impl Location {
    fn path(&self) -> PathBuf {
        match self {
            Self::File(p) => p.clone(),
            Self::Memory => PathBuf::from(":memory:"),
        }
    }
}

fn open_err(location: &Location, options: &SqliteOptions, e: rusqlite::Error) -> OpenError {
    let path = location.path();
    match e.sqlite_error_code() {
        Some(ErrorCode::NotADatabase) => OpenError::NotADatabase { path },
        Some(ErrorCode::ReadOnly) => OpenError::ReadOnly { path },
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => OpenError::Busy {
            path,
            waited: options.busy_timeout,
        },
        _ => OpenError::Db {
            path,
            source: DbError::new(e),
        },
    }
}

/// Checks the path before SQLite sees it, so that nothing is created or changed when it
/// cannot work.
///
/// Read-only is decided from the file's permission bits, not by trying to write: a process
/// running as root may write to a file whose mode is `0444`, but the owner marked it
/// read-only and we respect that.
fn check_path(path: &Path, options: &SqliteOptions) -> Result<(), OpenError> {
    let directory = match path.parent() {
        Some(d) if d.as_os_str().is_empty() => Path::new("."),
        Some(d) => d,
        None => Path::new("/"),
    };
    if !directory.is_dir() {
        return Err(OpenError::MissingDirectory {
            path: path.to_owned(),
            directory: directory.to_owned(),
        });
    }
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(OpenError::NotADatabase {
            path: path.to_owned(),
        }),
        Ok(m) if m.permissions().readonly() && !options.read_only => Err(OpenError::ReadOnly {
            path: path.to_owned(),
        }),
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            if options.read_only || !options.create {
                Err(OpenError::Missing {
                    path: path.to_owned(),
                })
            } else if std::fs::metadata(directory).is_ok_and(|m| m.permissions().readonly()) {
                Err(OpenError::ReadOnly {
                    path: path.to_owned(),
                })
            } else {
                Ok(())
            }
        }
        Err(e) => Err(OpenError::Db {
            path: path.to_owned(),
            source: DbError::new(rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
        }),
    }
}

/// Makes an empty file of mode `0600` for SQLite to fill, so that neither the database
/// nor its `-wal` and `-shm` (which SQLite creates with the database's mode) are ever
/// readable by others. A file that appeared meanwhile (another process creating the same
/// database) is left alone.
fn create_private(path: &Path) -> Result<(), OpenError> {
    let mut file = std::fs::OpenOptions::new();
    file.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
    match file.open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(OpenError::Db {
            path: path.to_owned(),
            source: DbError::new(rusqlite::Error::ToSqlConversionFailure(Box::new(e))),
        }),
    }
}

/// Opens one connection and sets it up: busy timeout, schema version check, WAL, foreign
/// keys, `synchronous = FULL`. Does not migrate.
///
/// Nothing is written when the database is already set up: the schema version and the
/// journal mode are read, and WAL is switched on only when the file is not in WAL mode
/// yet (a new file). `foreign_keys` and `synchronous` are settings of the connection, not
/// of the file. So a newer database, a file that is not a database, or an up-to-date
/// database opened by many processes at once is left byte for byte as it was, and opening
/// never takes the write lock. A read-only connection is opened with SQLite's read-only
/// flag and never writes at all.
pub(crate) fn connect(
    location: &Location,
    options: &SqliteOptions,
) -> Result<Connection, OpenError> {
    let conn = match location {
        Location::File(path) => {
            check_path(path, options)?;
            let flags = if options.read_only {
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
            } else {
                if options.create {
                    create_private(path)?;
                }
                OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
            };
            Connection::open_with_flags(path, flags)
        }
        Location::Memory => Connection::open_in_memory(),
    }
    .map_err(|e| open_err(location, options, e))?;
    let err = |e| open_err(location, options, e);
    conn.busy_timeout(options.busy_timeout).map_err(err)?;
    let found = user_version(&conn).map_err(err)?;
    if found > SCHEMA_VERSION {
        return Err(OpenError::NewerSchema {
            path: location.path(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if let Location::File(_) = location
        && found == 0
    {
        // Decided before anything is written (switching to WAL writes the header).
        if objects(&conn).map_err(err)? > 0 {
            return Err(foreign(location));
        }
        if !options.create {
            return Err(not_initialised(location));
        }
    }
    if let Location::File(_) = location {
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .map_err(err)?;
        if !mode.eq_ignore_ascii_case("wal") && !options.read_only {
            let mode: String = conn
                .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
                .map_err(err)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(OpenError::DamagedSchema {
                    path: location.path(),
                    reason: format!("SQLite refused WAL mode (journal_mode is {mode})"),
                });
            }
        }
    }
    conn.pragma_update(None, "foreign_keys", "ON")
        .map_err(err)?;
    conn.pragma_update(None, "synchronous", "FULL")
        .map_err(err)?;
    Ok(conn)
}

fn user_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

/// How many objects (tables, indexes, triggers, views) the database holds.
fn objects(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM sqlite_schema", [], |r| r.get(0))
}

/// Brings the schema of a freshly opened connection up to date, or checks that it is.
///
/// An up-to-date database is only read (no write lock, no write). A read-only open, or
/// one without [`SqliteOptions::create`], never migrates from nothing: an empty file or
/// database is [`OpenError::NotAPinDatabase`]. A database of version 0 that holds tables
/// belongs to another program and is refused whatever the options.
pub(crate) fn prepare(
    conn: &mut Connection,
    location: &Location,
    options: &SqliteOptions,
) -> Result<(), OpenError> {
    let err = |e| open_err(location, options, e);
    let found = user_version(conn).map_err(err)?;
    if found == SCHEMA_VERSION {
        return check_tables(conn, location, options);
    }
    let in_memory = matches!(location, Location::Memory);
    if found == 0 && objects(conn).map_err(err)? > 0 {
        return Err(foreign(location));
    }
    if options.read_only {
        return Err(if found == 0 {
            not_initialised(location)
        } else {
            OpenError::DamagedSchema {
                path: location.path(),
                reason: format!(
                    "schema version {found} needs upgrading to {SCHEMA_VERSION}, which a read-only open does not do; open it once for writing"
                ),
            }
        });
    }
    if found == 0 && !options.create && !in_memory {
        return Err(not_initialised(location));
    }
    migrate(conn, location, options)
}

fn not_initialised(location: &Location) -> OpenError {
    OpenError::NotAPinDatabase {
        path: location.path(),
        reason:
            "the file is empty, not a PIN database; remove it and create the database (`pin init`)"
                .into(),
    }
}

fn foreign(location: &Location) -> OpenError {
    OpenError::NotAPinDatabase {
        path: location.path(),
        reason: "it is an SQLite database of another program (it has tables but no PIN schema); check the path".into(),
    }
}

/// Applies the missing migrations, each in its own `BEGIN IMMEDIATE` transaction that also
/// sets `user_version`, then checks that the tables are there.
fn migrate(
    conn: &mut Connection,
    location: &Location,
    options: &SqliteOptions,
) -> Result<(), OpenError> {
    let err = |e| open_err(location, options, e);
    for (n, sql) in (1..).zip(MIGRATIONS) {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(err)?;
        // Read again under the write lock: another process may have migrated meanwhile.
        let found: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        if found > SCHEMA_VERSION {
            return Err(OpenError::NewerSchema {
                path: location.path(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == 0 && n == 1 && objects(&tx).map_err(err)? > 0 {
            // Checked again under the write lock: never add tables to another program's
            // database.
            return Err(foreign(location));
        }
        if found < n {
            if found != n - 1 {
                return Err(OpenError::DamagedSchema {
                    path: location.path(),
                    reason: format!("user_version {found} before migration {n}"),
                });
            }
            tracing::info!(
                backend = "sqlite",
                migration = n,
                "applying schema migration"
            );
            tx.execute_batch(sql).map_err(err)?;
            tx.pragma_update(None, "user_version", n).map_err(err)?;
            metrics::counter!(pin_core::telemetry::STORE_MIGRATIONS_TOTAL, "backend" => "sqlite")
                .increment(1);
        }
        tx.commit().map_err(err)?;
    }
    check_tables(conn, location, options)
}

/// Checks that the tables of the current schema are there (a read).
fn check_tables(
    conn: &Connection,
    location: &Location,
    options: &SqliteOptions,
) -> Result<(), OpenError> {
    let err = |e| open_err(location, options, e);
    for table in TABLES {
        let present: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = ?1)",
                [table],
                |r| r.get(0),
            )
            .map_err(err)?;
        if !present {
            return Err(OpenError::DamagedSchema {
                path: location.path(),
                reason: format!("table {table} is missing"),
            });
        }
    }
    Ok(())
}
