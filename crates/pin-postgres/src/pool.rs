//! A small connection pool and the transaction runner every operation goes through.
//!
//! # Retries, and what is never retried
//!
//! An operation runs as one transaction on one pooled connection. It is run again, on a
//! fresh connection, when
//! - the server reports a serialization failure (`40001`) or a deadlock (`40P01`): the
//!   server rolled the transaction back, so running it again is safe; callers never see
//!   these;
//! - the connection turns out to be dead (the server restarted) **before `COMMIT` was
//!   sent**: the server rolled back whatever the transaction did.
//!
//! A connection lost **while committing** is not retried: the commit may or may not have
//! happened, and running a reservation or a save twice is not the caller's intent. It is a
//! [`StoreError::Backend`] whose [`DbError::is_connection_lost`] is true. Every idle
//! connection is dropped when one is found dead, so the next operation reconnects.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use pin_core::store::StoreError;
use postgres::types::ToSql;
use postgres::{Client, GenericClient, IsolationLevel, Row, Statement, Transaction};

use crate::error::{DbError, OpenError, PoolExhausted, connection_lost};
use crate::schema::Target;

/// How many times an operation is started at most.
const RUNS: u32 = 8;

/// A connection with the statements prepared on it.
pub(crate) struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

impl Conn {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            statements: HashMap::new(),
        }
    }
}

struct PoolState {
    idle: Vec<Conn>,
    open: usize,
}

/// Up to `max` connections to one server, checked out for one operation each; a caller
/// waits up to `timeout` for one.
pub(crate) struct Pool {
    target: Target,
    max: usize,
    timeout: Duration,
    state: Mutex<PoolState>,
    returned: Condvar,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("max", &self.max)
            .field("open", &state.open)
            .field("idle", &state.idle.len())
            .finish()
    }
}

/// An error inside a transaction: a domain answer, or a PostgreSQL failure to classify.
pub(crate) enum TxError {
    /// An answer for the caller (`Conflict`, `NotFound`, `Corrupt`, …): roll back, return it.
    Store(StoreError),
    /// PostgreSQL failed.
    Db(postgres::Error),
}

impl From<postgres::Error> for TxError {
    fn from(e: postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

/// How a transaction reads.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Mode {
    /// One read-only statement, no explicit transaction (a statement is one snapshot): two
    /// round trips fewer than `BEGIN … COMMIT`.
    Statement,
    /// `READ COMMITTED`, read-write: every write (see the crate docs for why).
    Write,
    /// `REPEATABLE READ`, read-only: one snapshot for a read of many rows.
    Snapshot,
}

/// An open transaction (or, for [`Mode::Statement`], the bare connection) with the
/// connection's statement cache.
pub(crate) struct Tx<'a> {
    tx: Session<'a>,
    statements: &'a mut HashMap<&'static str, Statement>,
}

enum Session<'a> {
    Transaction(Transaction<'a>),
    Bare(&'a mut Client),
}

impl Session<'_> {
    fn client(&mut self) -> &mut dyn Queries {
        match self {
            Self::Transaction(t) => t,
            Self::Bare(c) => *c,
        }
    }
}

/// The calls used here, on a transaction or a bare connection alike.
trait Queries {
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error>;
    fn query(
        &mut self,
        s: &Statement,
        p: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error>;
    fn query_opt(
        &mut self,
        s: &Statement,
        p: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error>;
    fn query_one(
        &mut self,
        s: &Statement,
        p: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error>;
    fn execute(&mut self, s: &Statement, p: &[&(dyn ToSql + Sync)])
    -> Result<u64, postgres::Error>;
}

impl<C: GenericClient> Queries for C {
    fn prepare(&mut self, sql: &str) -> Result<Statement, postgres::Error> {
        GenericClient::prepare(self, sql)
    }
    fn query(
        &mut self,
        s: &Statement,
        p: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        GenericClient::query(self, s, p)
    }
    fn query_opt(
        &mut self,
        s: &Statement,
        p: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        GenericClient::query_opt(self, s, p)
    }
    fn query_one(
        &mut self,
        s: &Statement,
        p: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        GenericClient::query_one(self, s, p)
    }
    fn execute(
        &mut self,
        s: &Statement,
        p: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        GenericClient::execute(self, s, p)
    }
}

impl Tx<'_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.client().prepare(sql)?;
        let _ = self.statements.insert(sql, s.clone());
        Ok(s)
    }

    pub(crate) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.client().query(&s, params)
    }

    pub(crate) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.client().query_opt(&s, params)
    }

    pub(crate) fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.client().query_one(&s, params)
    }

    pub(crate) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let s = self.statement(sql)?;
        self.tx.client().execute(&s, params)
    }
}

/// A column that must convert, or the row is corrupt.
pub(crate) fn get<'r, T: postgres::types::FromSql<'r>>(
    row: &'r Row,
    index: usize,
) -> Result<T, TxError> {
    row.try_get(index).map_err(|e| {
        TxError::Store(StoreError::Corrupt(format!(
            "unexpected value in the database: {e}"
        )))
    })
}

/// A PostgreSQL failure as the port's error: the NOIPA-8 index is `EmailTaken`, the primary
/// key of `subjects` is `Exists`, anything else is a backend failure.
pub(crate) fn store_error(e: postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error()
        && db.code().code() == "23505"
    {
        match db.constraint() {
            Some("subjects_noipa_email") => return StoreError::EmailTaken,
            Some("subjects_pkey") => return StoreError::Exists,
            _ => {}
        }
    }
    StoreError::Backend(Box::new(DbError::new(e)))
}

/// Whether the server rolled the transaction back and asks for it to be run again.
fn must_rerun(e: &postgres::Error) -> bool {
    e.code()
        .is_some_and(|c| matches!(c.code(), "40001" | "40P01"))
}

/// Where a transaction failed.
enum Failed {
    /// Before or while running the statements: the server rolled back (or never began).
    Before(postgres::Error),
    /// An answer for the caller.
    Answer(StoreError),
    /// At `COMMIT`.
    Commit(postgres::Error),
}

impl Pool {
    pub(crate) fn new(target: Target, max: usize, timeout: Duration, first: Conn) -> Self {
        Self {
            target,
            max: max.max(1),
            timeout,
            state: Mutex::new(PoolState {
                idle: vec![first],
                open: 1,
            }),
            returned: Condvar::new(),
        }
    }

    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    fn lock(&self) -> MutexGuard<'_, PoolState> {
        // The state is a list and a count, each changed in one step: never half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A connection: an idle one, a new one (the server asked again while it is full, up
    /// to the timeout), or one returned within the timeout. A server that refuses or does
    /// not answer is [`StoreError::Unavailable`]; a pool whose connections all stay in use
    /// is [`StoreError::Busy`].
    fn checkout(&self) -> Result<Lease<'_>, StoreError> {
        let start = Instant::now();
        let mut state = self.lock();
        loop {
            if let Some(conn) = state.idle.pop() {
                if conn.client.is_closed() {
                    state.open -= 1;
                    continue;
                }
                return Ok(Lease {
                    pool: self,
                    conn: Some(conn),
                    broken: false,
                });
            }
            if state.open < self.max {
                state.open += 1;
                drop(state);
                let left = self.timeout.saturating_sub(start.elapsed());
                return match self.target.connect_within(left) {
                    Ok(client) => Ok(Lease {
                        pool: self,
                        conn: Some(Conn::new(client)),
                        broken: false,
                    }),
                    Err(e) => {
                        self.lock().open -= 1;
                        self.returned.notify_one();
                        Err(match e {
                            OpenError::Refused { .. } | OpenError::Unreachable { .. } => {
                                StoreError::Unavailable(Box::new(e))
                            }
                            e => StoreError::Backend(Box::new(e)),
                        })
                    }
                };
            }
            let Some(left) = self.timeout.checked_sub(start.elapsed()) else {
                // INFO: the busy error goes back to the caller, who reports it.
                tracing::info!(
                    backend = "postgres",
                    size = self.max,
                    "connection pool exhausted past the timeout"
                );
                metrics::counter!(pin_core::telemetry::STORE_BUSY_TOTAL, "backend" => "postgres")
                    .increment(1);
                return Err(StoreError::Busy(Box::new(PoolExhausted {
                    size: self.max,
                    waited: self.timeout,
                })));
            };
            state = self
                .returned
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Drops every idle connection: one was found dead, so the others, made to the same
    /// server, most likely are too.
    fn discard_idle(&self) {
        let mut state = self.lock();
        let n = state.idle.len();
        state.idle.clear();
        state.open -= n;
        drop(state);
        self.returned.notify_all();
    }

    /// Runs `f` in a transaction of `mode` and commits when it returns `Ok`, re-running it as
    /// the module docs say.
    pub(crate) fn run<T>(
        &self,
        mode: Mode,
        mut f: impl FnMut(&mut Tx<'_>) -> Result<T, TxError>,
    ) -> Result<T, StoreError> {
        crate::runtime::check().map_err(|e| StoreError::Backend(Box::new(e)))?;
        let mut run = 0;
        loop {
            run += 1;
            let last = run >= RUNS;
            let waiting = Instant::now();
            let mut lease = self.checkout()?;
            metrics::histogram!(pin_core::telemetry::STORE_POOL_WAIT, "backend" => "postgres")
                .record(waiting.elapsed().as_secs_f64());
            let outcome = lease.attempt(mode, &mut f);
            match outcome {
                Ok(v) => return Ok(v),
                Err(Failed::Answer(e)) => return Err(e),
                Err(Failed::Before(e)) if connection_lost(&e) => {
                    lease.broken = true;
                    drop(lease);
                    self.discard_idle();
                    if last {
                        return Err(store_error(e));
                    }
                    retried("connection_lost", run, &e);
                }
                Err(Failed::Before(e) | Failed::Commit(e)) if must_rerun(&e) && !last => {
                    retried("serialization", run, &e);
                    drop(lease);
                    std::thread::sleep(Duration::from_millis(u64::from(run)));
                }
                Err(Failed::Commit(e)) if connection_lost(&e) => {
                    lease.broken = true;
                    drop(lease);
                    self.discard_idle();
                    return Err(store_error(e));
                }
                Err(Failed::Before(e) | Failed::Commit(e)) => return Err(store_error(e)),
            }
        }
    }
}

/// A transaction re-run (`reason`: `serialization` or `connection_lost`): an event and
/// `pin_store_retries_total`.
fn retried(reason: &'static str, run: u32, error: &postgres::Error) {
    tracing::debug!(backend = "postgres", reason, run, error = %error, "transaction re-run");
    metrics::counter!(
        pin_core::telemetry::STORE_RETRIES_TOTAL,
        "backend" => "postgres",
        "reason" => reason
    )
    .increment(1);
}

impl Drop for Pool {
    /// Closing a connection runs the blocking client, which panics on a thread that drives
    /// async tasks: there, the idle connections are closed on a thread of their own.
    fn drop(&mut self) {
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let idle = std::mem::take(&mut self.lock().idle);
        if idle.is_empty() {
            return;
        }
        let slot = Arc::new(Mutex::new(Some(idle)));
        let theirs = Arc::clone(&slot);
        let spawned = std::thread::Builder::new()
            .name("pin-postgres-close".into())
            .spawn(move || {
                drop(theirs.lock().unwrap_or_else(PoisonError::into_inner).take());
            });
        if spawned.is_err() {
            // No thread to close them on: leave the sockets to the end of the process
            // rather than panic here.
            std::mem::forget(slot.lock().unwrap_or_else(PoisonError::into_inner).take());
        }
    }
}

/// A connection on loan from the pool; goes back on drop unless broken.
struct Lease<'a> {
    pool: &'a Pool,
    conn: Option<Conn>,
    broken: bool,
}

impl Lease<'_> {
    fn attempt<T>(
        &mut self,
        mode: Mode,
        f: &mut impl FnMut(&mut Tx<'_>) -> Result<T, TxError>,
    ) -> Result<T, Failed> {
        let Some(Conn { client, statements }) = self.conn.as_mut() else {
            return Err(Failed::Answer(StoreError::Backend(
                "connection already returned".into(),
            )));
        };
        let builder = match mode {
            Mode::Statement => {
                let mut tx = Tx {
                    tx: Session::Bare(client),
                    statements,
                };
                return f(&mut tx).map_err(|e| match e {
                    TxError::Store(e) => Failed::Answer(e),
                    TxError::Db(e) => Failed::Before(e),
                });
            }
            Mode::Write => client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted),
            Mode::Snapshot => client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true),
        };
        let tx = builder.start().map_err(Failed::Before)?;
        let mut tx = Tx {
            tx: Session::Transaction(tx),
            statements,
        };
        match f(&mut tx) {
            Ok(v) => {
                let Session::Transaction(t) = tx.tx else {
                    return Ok(v);
                };
                t.commit().map_err(Failed::Commit)?;
                Ok(v)
            }
            // Dropping the transaction rolls it back.
            Err(TxError::Store(e)) => Err(Failed::Answer(e)),
            Err(TxError::Db(e)) => Err(Failed::Before(e)),
        }
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if self.broken || conn.client.is_closed() {
            // Closed outside the lock: closing talks to the server.
            drop(conn);
            self.pool.lock().open -= 1;
        } else {
            self.pool.lock().idle.push(conn);
        }
        self.pool.returned.notify_one();
    }
}
