//! [`SqliteStore`]: the [`Store`] port on SQLite.

use std::path::Path;
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};

use pin_core::audit::AuditEvent;
use pin_core::audit::chain::{self as audit_chain, ChainReport};
use pin_core::audit::key::{AuditKey, AuditKeyring};
use pin_core::command::AttemptsUpdate;
use pin_core::keycheck::KeyFingerprint;
use pin_core::rows::{AttemptsRowV1, CredentialRowV1, LoadRowV1, SubjectRowV1};
use pin_core::secret::KeyId;
use pin_core::store::{
    LeaseId, Loaded, Reservation, ReserveRequest, Settled, Settlement, Store, StoreError,
};
use pin_core::subject::Subject;
use pin_core::tax_code::TaxCode;
use rusqlite::{
    Connection, ErrorCode, OptionalExtension, Row, Transaction, TransactionBehavior, params,
};

use crate::attempts;
use crate::chain;
use crate::error::{DbError, OpenError};
use crate::options::SqliteOptions;
use crate::population;
use crate::schema::{self, Location};

/// The database, as named in messages.
const ENGINE: &str = "SQLite";

/// A backend failure from SQLite; [`StoreError::Busy`] when the database stayed locked past
/// the busy deadline (the statement, and its transaction, changed nothing).
pub(crate) fn db(e: rusqlite::Error) -> StoreError {
    if matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
    ) {
        // INFO, not WARN: the error goes back to the caller, who reports it (the CLI as
        // exit 9); a warning would say it twice.
        tracing::info!(backend = "sqlite", error = %e, "database busy past the busy timeout");
        metrics::counter!(pin_core::telemetry::STORE_BUSY_TOTAL, "backend" => "sqlite")
            .increment(1);
        return StoreError::Busy(Box::new(DbError::new(e)));
    }
    match e {
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::IntegralValueOutOfRange(..) => {
            StoreError::Corrupt(format!("unexpected value in the database: {e}"))
        }
        e => StoreError::Backend(Box::new(DbError::new(e))),
    }
}

/// A write that broke the NOIPA-8 unique index is [`StoreError::EmailTaken`].
fn db_write(e: rusqlite::Error) -> StoreError {
    let email = e.sqlite_error_code() == Some(ErrorCode::ConstraintViolation)
        && e.to_string().contains("subjects.noipa_email_key");
    if email { StoreError::EmailTaken } else { db(e) }
}

#[derive(Debug)]
struct PoolState {
    idle: Vec<Connection>,
    open: usize,
}

/// A few connections, checked out for one operation each.
#[derive(Debug)]
struct Pool {
    location: Location,
    options: SqliteOptions,
    state: Mutex<PoolState>,
    returned: Condvar,
}

impl Pool {
    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is a list and a count, each changed in one step: never half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn checkout(&self) -> Result<Checkout<'_>, StoreError> {
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                return Ok(Checkout {
                    pool: self,
                    conn: Some(conn),
                });
            }
            if state.open < self.options.pool_size {
                state.open += 1;
                drop(state);
                return match schema::connect(&self.location, &self.options) {
                    Ok(conn) => Ok(Checkout {
                        pool: self,
                        conn: Some(conn),
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(if e.is_busy() {
                            StoreError::Busy(Box::new(e))
                        } else {
                            StoreError::Backend(Box::new(e))
                        })
                    }
                };
            }
            state = self
                .returned
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}

/// A connection on loan from the pool; goes back on drop.
struct Checkout<'a> {
    pool: &'a Pool,
    conn: Option<Connection>,
}

impl Checkout<'_> {
    fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        self.conn
            .as_mut()
            .ok_or_else(|| StoreError::Backend("connection already returned".into()))
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        let mut state = self.pool.lock();
        // A connection left inside a transaction (a failed rollback) is not reused.
        if conn.is_autocommit() {
            state.idle.push(conn);
        } else {
            state.open -= 1;
            drop(conn);
        }
        drop(state);
        self.pool.returned.notify_one();
    }
}

/// The [`Store`] on an SQLite database. `Send + Sync`: share it between threads (for
/// example inside a `PinService`); each operation checks out one of a few pooled
/// connections, so operations from several threads run on separate connections and are
/// serialised by SQLite's own locks.
#[derive(Debug)]
pub struct SqliteStore {
    pool: Pool,
    /// The audit keys: new audit rows are keyed with the newest ([`SqliteStore::with_audit_keys`]).
    audit_keys: Option<AuditKeyring>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date,
    /// with the default [`SqliteOptions`]. When the schema is already up to date, opening
    /// only reads: it takes no write lock and writes nothing.
    ///
    /// # Errors
    /// [`OpenError::MissingDirectory`], [`OpenError::NotADatabase`],
    /// [`OpenError::NotAPinDatabase`] (another program's database),
    /// [`OpenError::NewerSchema`], [`OpenError::ReadOnly`] (decided from the permission bits
    /// before opening, so also when running as root), [`OpenError::DamagedSchema`],
    /// [`OpenError::Busy`], or [`OpenError::Db`]. In each case an existing file is left as
    /// it was.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(path, &SqliteOptions::new())
    }

    /// Opens the database at `path` for reading only ([`SqliteOptions::read_only`]): no
    /// write lock is ever taken and nothing is written, so any number of readers run beside
    /// the writers; the file may be read-only. Every write through the store fails.
    ///
    /// # Errors
    /// As [`SqliteStore::open_with`]; [`OpenError::Missing`] when there is no file.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        Self::open_with(path, &SqliteOptions::new().read_only(true))
    }

    /// Opens the database at `path` as `options` say (create or not, read-only or not, busy
    /// deadline, pool size).
    ///
    /// # Errors
    /// As [`SqliteStore::open`]; also [`OpenError::Missing`] (no file, and no
    /// [`SqliteOptions::create`]) and [`OpenError::NotAPinDatabase`] for an empty file
    /// then.
    pub fn open_with(path: impl AsRef<Path>, options: &SqliteOptions) -> Result<Self, OpenError> {
        let mut options = options.clone();
        if options.read_only {
            options.create = false;
        }
        options.pool_size = options.pool_size.max(1);
        Self::open_at(Location::File(path.as_ref().to_owned()), options)
    }

    /// A private database in memory, for tests: one connection, so operations from several
    /// threads take turns.
    ///
    /// # Errors
    /// [`OpenError::Db`] when SQLite fails.
    pub fn open_in_memory() -> Result<Self, OpenError> {
        Self::open_at(
            Location::Memory,
            SqliteOptions::new().read_only(false).pool_size(1),
        )
    }

    fn open_at(location: Location, options: SqliteOptions) -> Result<Self, OpenError> {
        let mut conn = schema::connect(&location, &options)?;
        schema::prepare(&mut conn, &location, &options)?;
        let state = PoolState {
            idle: vec![conn],
            open: 1,
        };
        Ok(Self {
            pool: Pool {
                location,
                options,
                state: Mutex::new(state),
                returned: Condvar::new(),
            },
            audit_keys: None,
        })
    }

    /// Keys the audit chain with `keys`: every audit row this store appends from now on is
    /// keyed with the newest key (HMAC-SHA-256, [`pin_core::audit::chain::keyed_link`]), and
    /// [`SqliteStore::verify_audit_chain`] checks keyed rows under the key each one names.
    /// The first keyed row is recorded as the chain's keyed boundary; from then on the
    /// database refuses unkeyed rows, so a store without the key can no longer append.
    #[must_use]
    pub fn with_audit_keys(mut self, keys: AuditKeyring) -> Self {
        self.audit_keys = Some(keys);
        self
    }

    /// The key new audit rows are keyed with, if any.
    fn audit_key(&self) -> Option<&AuditKey> {
        self.audit_keys.as_ref().map(AuditKeyring::current)
    }

    /// The keyed boundary of the audit chain: the id of its first keyed row, or `None`
    /// while no row is keyed (a database written before keying, or without an audit key).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database cannot be read.
    pub fn audit_keyed_from(&self) -> Result<Option<u64>, StoreError> {
        self.read(chain::keyed_from)
    }

    /// The options this store was opened with.
    #[must_use]
    pub fn options(&self) -> &SqliteOptions {
        &self.pool.options
    }

    /// Runs `f` in a `BEGIN IMMEDIATE` transaction and commits when it returns `Ok`.
    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lease = self.pool.checkout()?;
        let tx = lease
            .conn()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// Runs `f` in a read transaction (one consistent snapshot).
    fn read<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut lease = self.pool.checkout()?;
        let tx = lease
            .conn()?
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(db)?;
        let out = f(&tx)?;
        tx.commit().map_err(db)?;
        Ok(out)
    }

    /// Moves the write-ahead log into the database file and truncates the log (`PRAGMA
    /// wal_checkpoint(TRUNCATE)`), e.g. before measuring or copying the file.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when SQLite fails.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let mut lease = self.pool.checkout()?;
        lease
            .conn()?
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(db)
    }

    /// Checks the audit chain from its first row to its last, and reports the first broken or
    /// missing link.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database cannot be read. A broken chain is not an
    /// error: it is reported in [`ChainReport::first_break`].
    ///
    /// Rows before the keyed boundary ([`SqliteStore::audit_keyed_from`]) are checked as
    /// unkeyed SHA-256 links, rows from it on as HMACs under the audit keys of
    /// [`SqliteStore::with_audit_keys`] (a keyed row is [`pin_core::audit::chain::BreakKind::UnknownKey`]
    /// to a store without its key).
    pub fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        self.read(|tx| chain::verify(tx, self.audit_keys.as_ref()))
    }

    /// Runs `PRAGMA integrity_check` and returns its lines (`["ok"]` when the file is
    /// sound).
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database cannot be read.
    pub fn integrity_check(&self) -> Result<Vec<String>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx.prepare("PRAGMA integrity_check").map_err(db)?;
            let lines = stmt.query_map([], |r| r.get::<_, String>(0)).map_err(db)?;
            lines.collect::<Result<Vec<_>, _>>().map_err(db)
        })
    }
}

const LOAD: &str = "
SELECT s.tax_code, s.version, s.row_format, s.profile, s.body, s.noipa_email_key,
       c.profile, c.serial, c.key_id, c.phc, c.body,
       a.serial, a.failures, a.blocked, c.deliver_due
  FROM subjects s
  LEFT JOIN credentials c ON c.tax_code = s.tax_code
  LEFT JOIN attempts a ON a.tax_code = s.tax_code
 WHERE s.tax_code = ?1";

/// The columns of [`LOAD`].
fn load_row(r: &Row<'_>) -> rusqlite::Result<LoadRowV1> {
    let credential = match r.get::<_, Option<i64>>(7)? {
        None => None,
        Some(serial) => Some(CredentialRowV1 {
            profile: r.get(6)?,
            serial,
            key_id: r.get(8)?,
            phc: r.get(9)?,
            body: r.get(10)?,
            deliver_due: r.get(14)?,
        }),
    };
    let attempts = match (r.get(11)?, r.get(12)?, r.get(13)?) {
        (Some(serial), Some(failures), Some(blocked)) => Some(AttemptsRowV1 {
            serial,
            failures,
            blocked,
        }),
        _ => None,
    };
    Ok(LoadRowV1 {
        version: r.get(1)?,
        subject: SubjectRowV1 {
            tax_code: r.get(0)?,
            row_format: r.get(2)?,
            profile: r.get(3)?,
            body: r.get(4)?,
            noipa_email_key: r.get(5)?,
            credential,
        },
        attempts,
    })
}

fn load_in(conn: &Connection, tax_code: &TaxCode) -> Result<Option<Loaded>, StoreError> {
    let Some(row) = conn
        .prepare_cached(LOAD)
        .and_then(|mut s| s.query_row([tax_code.as_str()], load_row).optional())
        .map_err(db)?
    else {
        return Ok(None);
    };
    row.into_loaded(tax_code).map(Some)
}

/// Writes the credential row of `row` (or removes it when the record has none).
/// Inserts a new subject with a fresh counter and its audit events.
fn insert_subject(
    tx: &Transaction<'_>,
    row: &SubjectRowV1,
    audit: &[AuditEvent],
    key: Option<&AuditKey>,
) -> Result<u64, StoreError> {
    if exists(tx, &row.tax_code)? {
        return Err(StoreError::Exists);
    }
    tx.prepare_cached(
        "INSERT INTO subjects (tax_code, version, row_format, profile, body, noipa_email_key)
         VALUES (?1, 1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            row.tax_code,
            row.row_format,
            row.profile,
            row.body,
            row.noipa_email_key
        ])
    })
    .map_err(db_write)?;
    write_credential(tx, row)?;
    tx.prepare_cached(
        "INSERT INTO attempts (tax_code, serial, failures, blocked)
         VALUES (?1, coalesce((SELECT serial FROM credentials WHERE tax_code = ?1), 0), 0, 0)",
    )
    .and_then(|mut s| s.execute([&row.tax_code]))
    .map_err(db)?;
    chain::append(tx, key, audit)?;
    Ok(1)
}

fn write_credential(tx: &Transaction<'_>, row: &SubjectRowV1) -> Result<(), StoreError> {
    match &row.credential {
        None => {
            tx.execute(
                "DELETE FROM credentials WHERE tax_code = ?1",
                [&row.tax_code],
            )
            .map_err(db_write)?;
        }
        Some(c) => {
            tx.prepare_cached(
                "INSERT INTO credentials (tax_code, profile, serial, key_id, phc, body, deliver_due)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (tax_code) DO UPDATE SET
                   profile = excluded.profile, serial = excluded.serial,
                   key_id = excluded.key_id, phc = excluded.phc, body = excluded.body,
                   deliver_due = excluded.deliver_due",
            )
            .and_then(|mut s| {
                s.execute(params![
                    row.tax_code,
                    c.profile,
                    c.serial,
                    c.key_id,
                    c.phc,
                    c.body,
                    c.deliver_due
                ])
            })
            .map_err(db_write)?;
        }
    }
    Ok(())
}

/// `next_attempts` in SQL: the new serial is read from the credential row just written.
fn apply_attempts(
    tx: &Transaction<'_>,
    tax_code: &str,
    update: AttemptsUpdate,
) -> Result<(), StoreError> {
    const CURRENT: &str = "coalesce((SELECT serial FROM credentials WHERE tax_code = ?1), 0)";
    let sql = match update {
        AttemptsUpdate::Keep => return Ok(()),
        AttemptsUpdate::Fresh => {
            format!(
                "UPDATE attempts SET serial = {CURRENT}, failures = 0, blocked = 0 WHERE tax_code = ?1"
            )
        }
        AttemptsUpdate::CarryOver => {
            format!("UPDATE attempts SET serial = {CURRENT} WHERE tax_code = ?1")
        }
    };
    let changed = tx
        .prepare_cached(&sql)
        .and_then(|mut s| s.execute([tax_code]))
        .map_err(db)?;
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Corrupt(
            "the subject has no attempt counter".into(),
        ))
    }
}

fn exists(tx: &Transaction<'_>, tax_code: &str) -> Result<bool, StoreError> {
    tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM subjects WHERE tax_code = ?1)",
        [tax_code],
        |r| r.get(0),
    )
    .map_err(db)
}

impl Store for SqliteStore {
    fn load(&self, tax_code: &TaxCode) -> Result<Option<Loaded>, StoreError> {
        // One statement: SQLite reads it from one snapshot.
        let mut lease = self.pool.checkout()?;
        load_in(lease.conn()?, tax_code)
    }

    fn create(&self, subject: &Subject, audit: &[AuditEvent]) -> Result<u64, StoreError> {
        let row = SubjectRowV1::from_subject(subject, ENGINE)?;
        self.write(|tx| insert_subject(tx, &row, audit, self.audit_key()))
    }

    fn create_many(&self, batch: &[(Subject, Vec<AuditEvent>)]) -> Result<(), StoreError> {
        // Convert everything first, then one IMMEDIATE transaction: all or nothing.
        let rows = batch
            .iter()
            .map(|(s, a)| Ok((SubjectRowV1::from_subject(s, ENGINE)?, a)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.write(|tx| {
            for (row, audit) in &rows {
                insert_subject(tx, row, audit, self.audit_key())?;
            }
            Ok(())
        })
    }

    fn create_streamed(
        &self,
        batch: &mut dyn Iterator<Item = Result<(Subject, Vec<AuditEvent>), StoreError>>,
    ) -> Result<u64, StoreError> {
        // One IMMEDIATE transaction, one subject at a time: SQLite spills the pages of
        // a large transaction to the WAL, so memory stays that of one row, the page cache
        // and up to AUDIT_RUN audit events. The events are chained in runs (one read of
        // the chain head per run instead of per subject), in the same order. Any error
        // returns before the commit: the transaction rolls back.
        const AUDIT_RUN: usize = 1024;
        self.write(|tx| {
            let mut n = 0u64;
            let mut audit = Vec::with_capacity(AUDIT_RUN);
            for item in batch {
                let (subject, events) = item?;
                let row = SubjectRowV1::from_subject(&subject, ENGINE)?;
                insert_subject(tx, &row, &[], None)?;
                audit.extend(events);
                if audit.len() >= AUDIT_RUN {
                    chain::append(tx, self.audit_key(), &audit)?;
                    audit.clear();
                }
                n += 1;
            }
            chain::append(tx, self.audit_key(), &audit)?;
            Ok(n)
        })
    }

    fn save(
        &self,
        subject: &Subject,
        expected: u64,
        attempts: AttemptsUpdate,
        audit: &[AuditEvent],
    ) -> Result<u64, StoreError> {
        let row = SubjectRowV1::from_subject(subject, ENGINE)?;
        self.write(|tx| {
            // A version SQLite cannot hold was never handed out: it matches no row.
            let expected = i64::try_from(expected).unwrap_or(-1);
            let version: Option<i64> = tx
                .prepare_cached(
                    "UPDATE subjects
                        SET version = version + 1, row_format = ?3, profile = ?4, body = ?5,
                            noipa_email_key = ?6
                      WHERE tax_code = ?1 AND version = ?2 AND version < 9223372036854775807
                  RETURNING version",
                )
                .and_then(|mut s| {
                    s.query_row(
                        params![
                            row.tax_code,
                            expected,
                            row.row_format,
                            row.profile,
                            row.body,
                            row.noipa_email_key
                        ],
                        |r| r.get(0),
                    )
                    .optional()
                })
                .map_err(db_write)?;
            let Some(version) = version else {
                return Err(if exists(tx, &row.tax_code)? {
                    StoreError::Conflict
                } else {
                    StoreError::NotFound
                });
            };
            write_credential(tx, &row)?;
            apply_attempts(tx, &row.tax_code, attempts)?;
            chain::append(tx, self.audit_key(), audit)?;
            u64::try_from(version)
                .map_err(|_| StoreError::Corrupt(format!("record version {version}")))
        })
    }

    fn reserve_attempt(
        &self,
        tax_code: &TaxCode,
        request: &ReserveRequest,
    ) -> Result<Reservation, StoreError> {
        self.write(|tx| attempts::reserve_in(tx, tax_code, request, self.audit_key()))
    }

    fn settle_attempt(
        &self,
        tax_code: &TaxCode,
        serial: u64,
        lease: LeaseId,
        limit: u32,
        settlement: Settlement,
        audit: &AuditEvent,
    ) -> Result<Settled, StoreError> {
        self.write(|tx| {
            attempts::settle_in(
                tx,
                tax_code,
                serial,
                lease,
                limit,
                settlement,
                audit,
                self.audit_key(),
            )
        })
    }

    fn key_fingerprints(&self) -> Result<Vec<(KeyId, KeyFingerprint)>, StoreError> {
        self.read(attempts::fingerprints)
    }

    fn record_key_fingerprint(
        &self,
        id: KeyId,
        fingerprint: &KeyFingerprint,
    ) -> Result<KeyFingerprint, StoreError> {
        // Read first: a key already on record costs no write lock.
        if let Some((_, fp)) = self
            .read(attempts::fingerprints)?
            .into_iter()
            .find(|(k, _)| *k == id)
        {
            return Ok(fp);
        }
        self.write(|tx| attempts::record_fingerprint(tx, id, fingerprint))
    }

    fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.write(|tx| chain::append(tx, self.audit_key(), events))
    }

    fn audit_log(&self, tax_code: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
        self.read(|tx| {
            // Two statements, so that the one of a subject uses the (tax_code, id) index.
            let sql = if tax_code.is_some() {
                "SELECT tax_code, event FROM audit WHERE tax_code = ?1 ORDER BY id"
            } else {
                "SELECT tax_code, event FROM audit WHERE ?1 IS NULL ORDER BY id"
            };
            let mut stmt = tx.prepare_cached(sql).map_err(db)?;
            let rows = stmt
                .query_map([tax_code.map(TaxCode::as_str)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (tax, text) = row.map_err(db)?;
                out.push(audit_chain::read_event(&tax, &text)?);
            }
            Ok(out)
        })
    }

    fn hashes_per_key(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT key_id, count(*) FROM credentials GROUP BY key_id ORDER BY key_id",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)))
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, n) = row.map_err(db)?;
                let id = u32::try_from(id)
                    .map_err(|_| StoreError::Corrupt(format!("credential key id {id}")))?;
                out.push((KeyId(id), u64::try_from(n).unwrap_or(0)));
            }
            Ok(out)
        })
    }

    fn audit_page(
        &self,
        after: u64,
        limit: usize,
    ) -> Result<Vec<pin_core::audit::AuditRecord>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT id, tax_code, event, prev_hash, hash, key_id FROM audit
                      WHERE id > ?1 ORDER BY id LIMIT ?2",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![after, limit], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                        r.get::<_, Option<i64>>(5)?,
                    ))
                })
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let (id, tax, event, prev, hash, key_id) = row.map_err(db)?;
                out.push(audit_chain::record(id, &tax, &event, &prev, &hash, key_id)?);
            }
            Ok(out)
        })
    }

    fn due_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<TaxCode>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|tx| {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT tax_code FROM credentials
                      WHERE deliver_due IS NOT NULL AND deliver_due <= ?1
                      ORDER BY deliver_due, tax_code LIMIT ?2",
                )
                .map_err(db)?;
            let rows = stmt
                .query_map(params![now.timestamp(), limit], |r| r.get::<_, String>(0))
                .map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                let text = row.map_err(db)?;
                out.push(TaxCode::parse(&text).map_err(|e| {
                    StoreError::Corrupt(format!("tax code in the delivery queue: {e}"))
                })?);
            }
            Ok(out)
        })
    }

    fn record_failed_guess(&self, guess: &pin_core::store::FailedGuess) -> Result<(), StoreError> {
        self.write(|tx| population::record(tx, guess))
    }

    fn population_counts(
        &self,
        request: &pin_core::store::CountRequest<'_>,
    ) -> Result<pin_core::store::PopulationCounts, StoreError> {
        self.read(|tx| population::counts(tx, request))
    }

    fn swap_baseline(
        &self,
        profile: pin_core::subject::Profile,
        expected: Option<&pin_core::store::Baseline>,
        next: &pin_core::store::Baseline,
    ) -> Result<bool, StoreError> {
        self.write(|tx| population::swap_baseline(tx, profile, expected, next))
    }

    fn prune_failed_guesses(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        self.write(|tx| population::prune(tx, before))
    }

    fn top_sources(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<(pin_core::store::NetworkKey, u64)>, StoreError> {
        self.read(|tx| population::top_sources(tx, since, limit))
    }

    fn awaiting_outbound(&self) -> Result<Vec<Subject>, StoreError> {
        self.read(|tx| {
            // The pending state lives in the JSON body; the LIKE narrows the scan, the shared
            // rule decides on the converted records.
            let sql = LOAD.replace(
                "WHERE s.tax_code = ?1",
                "WHERE s.body LIKE '%\"state\":\"outbound_verification\"%'",
            );
            let mut stmt = tx.prepare(&sql).map_err(db)?;
            let rows = stmt.query_map([], load_row).map_err(db)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(Subject::try_from(row.map_err(db)?.subject)?);
            }
            Ok(pin_core::store::outbound_queue(out))
        })
    }
}
