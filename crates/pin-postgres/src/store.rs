//! [`PostgresStore`]: the [`Store`] port on PostgreSQL.

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
use postgres::Row;

use crate::attempts;
use crate::chain;
use crate::error::OpenError;
use crate::options::{DEFAULT_POOL_SIZE, PostgresOptions};
use crate::pool::{Conn, Mode, Pool, Tx, TxError, get};
use crate::population;
use crate::schema::{self, Target};

/// The database, as named in messages.
const ENGINE: &str = "PostgreSQL";

/// `subjects.row_format` of `row` as the `smallint` of the column.
fn row_format(row: &SubjectRowV1) -> Result<i16, StoreError> {
    i16::try_from(row.row_format).map_err(|_| {
        StoreError::Backend(
            format!(
                "row format {} is beyond what {ENGINE} can store",
                row.row_format
            )
            .into(),
        )
    })
}

/// The [`Store`] on a PostgreSQL database. `Send + Sync`: share it between threads (for
/// example inside a `PinService`); each operation checks out one of a few pooled
/// connections. Any number of stores, in any number of processes and hosts, may use the
/// same database at once.
///
/// **Blocking.** Called from an async task it returns an error instead of running (see the
/// crate docs, "Blocking: not on an async task"): use `tokio::task::spawn_blocking`.
#[derive(Debug)]
pub struct PostgresStore {
    pool: Pool,
    /// The audit keys: new audit rows are keyed with the newest ([`PostgresStore::with_audit_keys`]).
    audit_keys: Option<AuditKeyring>,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`, or
    /// a `key=value` string) and brings its schema up to date, with a pool of
    /// [`DEFAULT_POOL_SIZE`] connections.
    ///
    /// # Errors
    /// [`OpenError::InvalidUrl`], [`OpenError::Unreachable`] (the server is down or not
    /// there), [`OpenError::Authentication`] (wrong user or password),
    /// [`OpenError::NoDatabase`], [`OpenError::NewerSchema`], [`OpenError::DamagedSchema`],
    /// or [`OpenError::Db`]. A failed open changes nothing in the database.
    pub fn open(url: &str) -> Result<Self, OpenError> {
        Self::open_with_pool_size(url, DEFAULT_POOL_SIZE)
    }

    /// As [`PostgresStore::open`], keeping at most `pool_size` connections (at least 1).
    ///
    /// # Errors
    /// As [`PostgresStore::open`].
    pub fn open_with_pool_size(url: &str, pool_size: usize) -> Result<Self, OpenError> {
        Self::open_with(url, &PostgresOptions::new().pool_size(pool_size))
    }

    /// As [`PostgresStore::open`], with the pool's size and timeout of `options`. A server
    /// that is full (`too many clients`) or starting up is asked again up to
    /// [`PostgresOptions::pool_timeout`].
    ///
    /// # Errors
    /// As [`PostgresStore::open`]; [`OpenError::Refused`] when the server still refuses
    /// new connections at the timeout.
    pub fn open_with(url: &str, options: &PostgresOptions) -> Result<Self, OpenError> {
        let target = Target::parse(url)?;
        let mut client = target.connect_within(options.pool_timeout)?;
        schema::migrate(&mut client, &target)?;
        Ok(Self {
            pool: Pool::new(
                target,
                options.pool_size,
                options.pool_timeout,
                Conn::new(client),
            ),
            audit_keys: None,
        })
    }

    /// Keys the audit chain with `keys`: every audit row this store appends from now on is
    /// keyed with the newest key (HMAC-SHA-256, [`pin_core::audit::chain::keyed_link`]), and
    /// [`PostgresStore::verify_audit_chain`] checks keyed rows under the key each one names.
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
        self.pool.run(Mode::Statement, chain::keyed_from)
    }

    /// The server this store talks to — host and port, database and user, never the
    /// password — for messages and logs.
    #[must_use]
    pub fn server(&self) -> &str {
        self.pool.target().server()
    }

    /// Checks the audit chain from its first row to its last in one snapshot, and reports
    /// the first broken or missing link.
    ///
    /// # Errors
    /// [`StoreError::Backend`] when the database cannot be read. A broken chain is not an
    /// error: it is reported in [`ChainReport::first_break`].
    ///
    /// Rows before the keyed boundary ([`PostgresStore::audit_keyed_from`]) are checked as
    /// unkeyed SHA-256 links, rows from it on as HMACs under the audit keys of
    /// [`PostgresStore::with_audit_keys`] (a keyed row is
    /// [`pin_core::audit::chain::BreakKind::UnknownKey`] to a store without its key).
    pub fn verify_audit_chain(&self) -> Result<ChainReport, StoreError> {
        self.pool.run(Mode::Snapshot, |tx| {
            chain::verify(tx, self.audit_keys.as_ref())
        })
    }
}

const LOAD: &str = "
SELECT s.tax_code, s.version, s.row_format, s.profile, s.body::text, s.noipa_email_key,
       c.profile, c.serial, c.key_id, c.phc, c.body::text,
       a.serial, a.failures, a.blocked, c.deliver_due
  FROM subjects s
  LEFT JOIN credentials c ON c.tax_code = s.tax_code
  LEFT JOIN attempts a ON a.tax_code = s.tax_code
 WHERE s.tax_code = $1";

/// The records waiting for the outbound call: the columns of [`LOAD`].
const AWAITING_OUTBOUND: &str = "
SELECT s.tax_code, s.version, s.row_format, s.profile, s.body::text, s.noipa_email_key,
       c.profile, c.serial, c.key_id, c.phc, c.body::text,
       a.serial, a.failures, a.blocked, c.deliver_due
  FROM subjects s
  LEFT JOIN credentials c ON c.tax_code = s.tax_code
  LEFT JOIN attempts a ON a.tax_code = s.tax_code
 WHERE s.body->'pending'->>'state' = 'outbound_verification'";

/// The columns of [`LOAD`], with PostgreSQL's `smallint` and `boolean` widened to the
/// integers of the shared row types.
fn load_row(r: &Row) -> Result<LoadRowV1, TxError> {
    let credential = match get::<Option<i64>>(r, 7)? {
        None => None,
        Some(serial) => Some(CredentialRowV1 {
            profile: get(r, 6)?,
            serial,
            key_id: get(r, 8)?,
            phc: get(r, 9)?,
            body: get(r, 10)?,
            deliver_due: get(r, 14)?,
        }),
    };
    let attempts = match (get(r, 11)?, get(r, 12)?, get::<Option<bool>>(r, 13)?) {
        (Some(serial), Some(failures), Some(blocked)) => Some(AttemptsRowV1 {
            serial,
            failures,
            blocked: i64::from(blocked),
        }),
        _ => None,
    };
    Ok(LoadRowV1 {
        version: get(r, 1)?,
        subject: SubjectRowV1 {
            tax_code: get(r, 0)?,
            row_format: i64::from(get::<i16>(r, 2)?),
            profile: get(r, 3)?,
            body: get(r, 4)?,
            noipa_email_key: get(r, 5)?,
            credential,
        },
        attempts,
    })
}

fn load_in(tx: &mut Tx<'_>, tax_code: &TaxCode) -> Result<Option<Loaded>, TxError> {
    let Some(row) = tx.query_opt(LOAD, &[&tax_code.as_str()])? else {
        return Ok(None);
    };
    Ok(Some(load_row(&row)?.into_loaded(tax_code)?))
}

fn exists(tx: &mut Tx<'_>, tax_code: &str) -> Result<bool, TxError> {
    let row = tx.query_one(
        "SELECT EXISTS (SELECT 1 FROM subjects WHERE tax_code = $1)",
        &[&tax_code],
    )?;
    get(&row, 0)
}

/// Inserts a new subject with a fresh counter (its audit events are appended by the
/// caller, last).
fn insert_subject(tx: &mut Tx<'_>, row: &SubjectRowV1) -> Result<(), TxError> {
    // Checked first so that an existing subject is `Exists` even when its e-mail would
    // also collide; a concurrent insert of the same tax code is caught by the primary key.
    if exists(tx, &row.tax_code)? {
        return Err(StoreError::Exists.into());
    }
    let _ = tx.execute(
        "INSERT INTO subjects (tax_code, version, row_format, profile, body, noipa_email_key)
         VALUES ($1, 1, $2, $3, $4::text::jsonb, $5)",
        &[
            &row.tax_code,
            &row_format(row)?,
            &row.profile,
            &row.body,
            &row.noipa_email_key,
        ],
    )?;
    write_credential(tx, row)?;
    let _ = tx.execute(
        "INSERT INTO attempts (tax_code, serial, failures, blocked)
         VALUES ($1, coalesce((SELECT serial FROM credentials WHERE tax_code = $1), 0), 0, false)",
        &[&row.tax_code],
    )?;
    Ok(())
}

/// Writes the credential row of `row` (or removes it when the record has none).
fn write_credential(tx: &mut Tx<'_>, row: &SubjectRowV1) -> Result<(), TxError> {
    match &row.credential {
        None => {
            let _ = tx.execute(
                "DELETE FROM credentials WHERE tax_code = $1",
                &[&row.tax_code],
            )?;
        }
        Some(c) => {
            let _ = tx.execute(
                "INSERT INTO credentials (tax_code, profile, serial, key_id, phc, body, deliver_due)
                 VALUES ($1, $2, $3, $4, $5, $6::text::jsonb, $7)
                 ON CONFLICT (tax_code) DO UPDATE SET
                   profile = excluded.profile, serial = excluded.serial,
                   key_id = excluded.key_id, phc = excluded.phc, body = excluded.body,
                   deliver_due = excluded.deliver_due",
                &[
                    &row.tax_code,
                    &c.profile,
                    &c.serial,
                    &c.key_id,
                    &c.phc,
                    &c.body,
                    &c.deliver_due,
                ],
            )?;
        }
    }
    Ok(())
}

/// `next_attempts` in SQL: the new serial is read from the credential row just written.
fn apply_attempts(tx: &mut Tx<'_>, tax_code: &str, update: AttemptsUpdate) -> Result<(), TxError> {
    let changed = match update {
        AttemptsUpdate::Keep => return Ok(()),
        AttemptsUpdate::Fresh => tx.execute(
            "UPDATE attempts
                SET serial = coalesce((SELECT serial FROM credentials WHERE tax_code = $1), 0),
                    failures = 0, blocked = false
              WHERE tax_code = $1",
            &[&tax_code],
        )?,
        AttemptsUpdate::CarryOver => tx.execute(
            "UPDATE attempts
                SET serial = coalesce((SELECT serial FROM credentials WHERE tax_code = $1), 0)
              WHERE tax_code = $1",
            &[&tax_code],
        )?,
    };
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Corrupt("the subject has no attempt counter".into()).into())
    }
}

impl Store for PostgresStore {
    fn load(&self, tax_code: &TaxCode) -> Result<Option<Loaded>, StoreError> {
        // One statement: one snapshot, no transaction needed.
        self.pool.run(Mode::Statement, |tx| load_in(tx, tax_code))
    }

    fn create(&self, subject: &Subject, audit: &[AuditEvent]) -> Result<u64, StoreError> {
        let row = SubjectRowV1::from_subject(subject, ENGINE)?;
        self.pool.run(Mode::Write, |tx| {
            insert_subject(tx, &row)?;
            chain::append(tx, self.audit_key(), audit)?;
            Ok(1)
        })
    }

    fn create_many(&self, batch: &[(Subject, Vec<AuditEvent>)]) -> Result<(), StoreError> {
        // Convert everything first, then one transaction: all or nothing.
        let rows = batch
            .iter()
            .map(|(s, a)| Ok((SubjectRowV1::from_subject(s, ENGINE)?, a)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        let events: Vec<AuditEvent> = rows.iter().flat_map(|(_, a)| a.iter().cloned()).collect();
        self.pool.run(Mode::Write, |tx| {
            for (row, _) in &rows {
                insert_subject(tx, row)?;
            }
            chain::append(tx, self.audit_key(), &events)
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
        let format = row_format(&row)?;
        // A version PostgreSQL cannot hold was never handed out: it matches no row.
        let expected = i64::try_from(expected).unwrap_or(-1);
        self.pool.run(Mode::Write, |tx| {
            // Compare-and-swap: the UPDATE locks the row and re-checks the version on its
            // newest committed state, so of two saves from the same version one conflicts.
            let version = tx.query_opt(
                "UPDATE subjects
                    SET version = version + 1, row_format = $3, profile = $4,
                        body = $5::text::jsonb, noipa_email_key = $6
                  WHERE tax_code = $1 AND version = $2 AND version < 9223372036854775807
              RETURNING version",
                &[
                    &row.tax_code,
                    &expected,
                    &format,
                    &row.profile,
                    &row.body,
                    &row.noipa_email_key,
                ],
            )?;
            let Some(version) = version else {
                return Err(if exists(tx, &row.tax_code)? {
                    StoreError::Conflict
                } else {
                    StoreError::NotFound
                }
                .into());
            };
            let version: i64 = get(&version, 0)?;
            write_credential(tx, &row)?;
            apply_attempts(tx, &row.tax_code, attempts)?;
            chain::append(tx, self.audit_key(), audit)?;
            Ok(u64::try_from(version)
                .map_err(|_| StoreError::Corrupt(format!("record version {version}")))?)
        })
    }

    fn reserve_attempt(
        &self,
        tax_code: &TaxCode,
        request: &ReserveRequest,
    ) -> Result<Reservation, StoreError> {
        self.pool.run(Mode::Write, |tx| {
            attempts::reserve_in(tx, tax_code, request, self.audit_key())
        })
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
        self.pool.run(Mode::Write, |tx| {
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
        self.pool.run(Mode::Statement, attempts::fingerprints)
    }

    fn record_key_fingerprint(
        &self,
        id: KeyId,
        fingerprint: &KeyFingerprint,
    ) -> Result<KeyFingerprint, StoreError> {
        self.pool.run(Mode::Write, |tx| {
            attempts::record_fingerprint(tx, id, fingerprint)
        })
    }

    fn append_audit(&self, events: &[AuditEvent]) -> Result<(), StoreError> {
        if events.is_empty() {
            return Ok(());
        }
        self.pool.run(Mode::Write, |tx| {
            chain::append(tx, self.audit_key(), events)
        })
    }

    fn audit_log(&self, tax_code: Option<&TaxCode>) -> Result<Vec<AuditEvent>, StoreError> {
        self.pool.run(Mode::Snapshot, |tx| {
            let rows = match tax_code {
                Some(t) => tx.query(
                    "SELECT tax_code, event FROM audit WHERE tax_code = $1 ORDER BY id",
                    &[&t.as_str()],
                )?,
                None => tx.query("SELECT tax_code, event FROM audit ORDER BY id", &[])?,
            };
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let tax: &str = get(row, 0)?;
                let text: &str = get(row, 1)?;
                out.push(audit_chain::read_event(tax, text)?);
            }
            Ok(out)
        })
    }

    fn hashes_per_key(&self) -> Result<Vec<(KeyId, u64)>, StoreError> {
        self.pool.run(Mode::Statement, |tx| {
            let rows = tx.query(
                "SELECT key_id, count(*) FROM credentials GROUP BY key_id ORDER BY key_id",
                &[],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let id: i64 = get(row, 0)?;
                let n: i64 = get(row, 1)?;
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
        self.pool.run(Mode::Statement, |tx| {
            let rows = tx.query(
                "SELECT id, tax_code, event, prev_hash, hash, key_id FROM audit
                  WHERE id > $1 ORDER BY id LIMIT $2",
                &[&after, &limit],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(audit_chain::record(
                    get(row, 0)?,
                    get(row, 1)?,
                    get(row, 2)?,
                    get(row, 3)?,
                    get(row, 4)?,
                    get(row, 5)?,
                )?);
            }
            Ok(out)
        })
    }

    fn record_failed_guess(&self, guess: &pin_core::store::FailedGuess) -> Result<(), StoreError> {
        self.pool
            .run(Mode::Write, |tx| population::record(tx, guess))
    }

    fn population_counts(
        &self,
        request: &pin_core::store::CountRequest<'_>,
    ) -> Result<pin_core::store::PopulationCounts, StoreError> {
        self.pool
            .run(Mode::Snapshot, |tx| population::counts(tx, request))
    }

    fn swap_baseline(
        &self,
        profile: pin_core::subject::Profile,
        expected: Option<&pin_core::store::Baseline>,
        next: &pin_core::store::Baseline,
    ) -> Result<bool, StoreError> {
        self.pool.run(Mode::Write, |tx| {
            population::swap_baseline(tx, profile, expected, next)
        })
    }

    fn prune_failed_guesses(
        &self,
        before: chrono::DateTime<chrono::Utc>,
    ) -> Result<u64, StoreError> {
        self.pool
            .run(Mode::Write, |tx| population::prune(tx, before))
    }

    fn top_sources(
        &self,
        since: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<(pin_core::store::NetworkKey, u64)>, StoreError> {
        self.pool.run(Mode::Snapshot, |tx| {
            population::top_sources(tx, since, limit)
        })
    }

    fn due_deliveries(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        limit: usize,
    ) -> Result<Vec<TaxCode>, StoreError> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.pool.run(Mode::Snapshot, |tx| {
            let rows = tx.query(
                "SELECT tax_code FROM credentials
                  WHERE deliver_due IS NOT NULL AND deliver_due <= $1
                  ORDER BY deliver_due, tax_code LIMIT $2",
                &[&now.timestamp(), &limit],
            )?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                let text: String = get(row, 0)?;
                out.push(TaxCode::parse(&text).map_err(|e| {
                    StoreError::Corrupt(format!("tax code in the delivery queue: {e}"))
                })?);
            }
            Ok(out)
        })
    }

    fn awaiting_outbound(&self) -> Result<Vec<Subject>, StoreError> {
        self.pool.run(Mode::Snapshot, |tx| {
            let rows = tx.query(AWAITING_OUTBOUND, &[])?;
            let mut out = Vec::with_capacity(rows.len());
            for row in &rows {
                out.push(Subject::try_from(load_row(row)?.subject)?);
            }
            Ok(pin_core::store::outbound_queue(out))
        })
    }
}
