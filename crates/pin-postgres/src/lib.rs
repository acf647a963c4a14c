//! pin-postgres — the [`pin_core::store::Store`] port on PostgreSQL, for services that run
//! many instances (several processes, several hosts) on one source of truth.
//!
//! It keeps pin-sqlite's schema, row format and audit chain, and gives the same guarantees
//! by PostgreSQL's own means.
//!
//! # What it guarantees
//!
//! - **No free guess, across processes and hosts.** [`Store::reserve_attempt`] is one
//!   atomic statement, `UPDATE attempts … SET failures = failures + 1 WHERE … AND NOT
//!   blocked AND failures < limit AND serial = <current credential serial> RETURNING
//!   failures`, committed before the caller compares the PIN. A refusal at the limit sets
//!   `blocked` by a second atomic `UPDATE … WHERE failures >= limit` in the same
//!   transaction. Settling and the counter rules of a save (`Keep`, `Fresh`, `CarryOver`)
//!   are `UPDATE`s in SQL too: the counter is never read into Rust, changed and written
//!   back.
//! - **Only the last PIN is valid (BOTH-1)**, structurally: the current credential is a row
//!   of `credentials` whose primary key is the tax code.
//! - **NoiPA e-mail addresses are unique (NOIPA-8)**, by a unique partial index on the
//!   lower-cased address of NoiPA subjects; breaking it is
//!   [`pin_core::store::StoreError::EmailTaken`], also when two instances race.
//! - **No plaintext secret is stored (BOTH-2).** The hash column must hold an Argon2id PHC
//!   string (`CHECK`). This crate never hashes and never sees a PIN.
//! - **Compare-and-swap saves**: `UPDATE … WHERE version = $2 RETURNING version`; a save,
//!   its counter rule and its audit events commit together or not at all.
//! - **A damaged row is an error**, never a panic and never a usable PIN: rows are read as
//!   versioned row types and converted with `TryFrom`
//!   ([`pin_core::store::StoreError::Corrupt`]).
//! - **One tamper-evident audit chain for all instances**: `hash = HMAC-SHA-256(audit
//!   key, … ‖ prev_hash ‖ event)` when keyed ([`PostgresStore::with_audit_keys`]), else
//!   `SHA-256(prev_hash ‖ event)`; appends are serialised on the single row of `audit_head` (see the
//!   `chain` module docs and [`ChainReport`]); triggers refuse `UPDATE`, `DELETE` and
//!   `TRUNCATE` of the log.
//!
//! # Isolation: `READ COMMITTED`, on purpose
//!
//! Every write runs in a `READ COMMITTED` transaction (set explicitly, whatever the
//! server's default). Each guarantee above rests on a single `UPDATE` (or `INSERT` against
//! a unique index, or `SELECT … FOR UPDATE` of the chain head): PostgreSQL locks the row
//! and re-evaluates the `WHERE` clause on its newest committed version before changing it,
//! so concurrent reservations, settlements and saves serialise on the row they touch and
//! nothing is decided on a stale read. `SERIALIZABLE` would add nothing to these
//! statements but aborts to retry. Reads of many rows (the audit log, the chain check) run
//! `REPEATABLE READ READ ONLY`, one snapshot.
//!
//! Serialization failures and deadlocks reported by the server (`40001`, `40P01`) roll the
//! transaction back; the store runs it again (up to 8 times) and never returns them. A
//! connection found dead before `COMMIT` was sent is replaced and the operation run again;
//! one lost *during* `COMMIT` is reported ([`DbError::is_connection_lost`]) because its
//! outcome is unknown.
//!
//! # Durability
//!
//! A commit is acknowledged when the server says so: with the server's default
//! `synchronous_commit = on`, its WAL is on disk by then, so an acknowledged reservation
//! survives a crash of the server. Do not turn `fsync` or `synchronous_commit` off on a PIN
//! database.
//!
//! # Connections
//!
//! [`PostgresStore::open`] takes a URL (`postgres://USER:PASSWORD@HOST:PORT/DATABASE`, any
//! parameter of libpq's URL syntax that the `postgres` crate knows, e.g.
//! `?connect_timeout=10`; 5 s when not given) and keeps a pool of up to
//! [`DEFAULT_POOL_SIZE`] connections ([`PostgresOptions`] sets the size and the wait).
//! When the server is down or refuses the credentials, the error says so ([`OpenError`]);
//! when it comes back, the next operation reconnects — no restart of the caller.
//!
//! **Bounded, under load.** Each pooled connection is one of the server's
//! `max_connections` (100 by default), so size the pools of all instances below it. A
//! caller that finds the pool in use waits for a connection up to
//! [`PostgresOptions::pool_timeout`] ([`DEFAULT_POOL_TIMEOUT`], 30 s), then gets
//! [`pin_core::store::StoreError::Busy`]; a server that refuses new connections because
//! it is full (`too many clients`) or starting up is asked again within the same timeout,
//! then it is [`pin_core::store::StoreError::Unavailable`] ([`OpenError::Refused`] while
//! opening), as is a server that cannot be reached. All three say so plainly, changed
//! nothing, and are retryable.
//!
//! # TLS (`sslmode`, `sslrootcert`)
//!
//! Connections are secured by rustls as libpq's `sslmode` URL parameter says, e.g.
//! `postgres://pin:secret@db.example.it/pins?sslmode=verify-full&sslrootcert=/etc/pin/db-ca.pem`
//! (or `sslmode=verify-full sslrootcert=/etc/pin/db-ca.pem` in a `key=value` string):
//!
//! | `sslmode` | encrypted | the server's certificate | protects against |
//! |---|---|---|---|
//! | `disable` | never | — | nothing: for a server on this host or a trusted network |
//! | `prefer` | when the server offers TLS, else plain | not checked | passive eavesdropping only, and only if the server has TLS: an attacker in the middle can pose as the server or strip TLS |
//! | `require` | always, or no connection | not checked (with `sslrootcert`: as `verify-ca`, as libpq does) | passive eavesdropping only: **an attacker in the middle can pose as the server** (and read the password and every row) |
//! | `verify-ca` | always | signed by a CA of `sslrootcert` (required: against the public CAs, without the name, any certificate they ever issued would pass) | a server without a certificate from *your* CA |
//! | `verify-full` | always | signed by a trusted CA **and** valid for the host name in the URL | an attacker in the middle: the recommended mode |
//!
//! `sslrootcert=PATH` is a PEM file of the CA certificate(s) to trust; without it
//! `verify-full` trusts the public web CAs (Mozilla's list, compiled in: `webpki-roots`),
//! which suits managed servers with a public certificate. libpq's `allow` is refused (it
//! prefers plain). Over a Unix-domain socket PostgreSQL has no TLS: `disable` and `prefer`
//! only.
//!
//! **Default, when the URL has no `sslmode`:** `disable` when every host is this machine
//! (`localhost`, a loopback address or a Unix-domain socket), `verify-full` otherwise.
//! libpq's default, `prefer`, sends the password and the PIN hashes in clear to a server
//! without TLS and to anyone who poses as one; a PIN database on another host is worth an
//! attacker's effort, so the safe mode is the one you get without asking, and a server
//! that cannot meet it fails loudly ([`OpenError::TlsNotOffered`]) rather than silently in
//! clear. Loopback traffic does not leave the machine, so TLS would add nothing there.
//!
//! Each failure has its own error, naming the server but never the password:
//! [`OpenError::TlsNotOffered`] (the server has no TLS), [`OpenError::CertificateUntrusted`]
//! (not signed by a trusted CA, expired, …), [`OpenError::HostnameMismatch`]
//! (`verify-full`: not issued for that host name), [`OpenError::CaFile`] (the
//! `sslrootcert` file is unreadable or holds no certificate), [`OpenError::Tls`] (any other
//! handshake failure). The CA file is read when the store is opened.
//!
//! # Blocking: not on an async task
//!
//! [`PostgresStore`] is blocking, and the `postgres` client it uses would panic when
//! called on a thread that is driving async tasks ("Cannot start a runtime from within a
//! runtime"). So opening it, and every [`Store`] method, called from a future polled by a
//! tokio runtime returns an error instead: [`OpenError::InsideAsyncRuntime`], or
//! [`pin_core::store::StoreError::Backend`] holding an [`InsideAsyncRuntime`] (not
//! retryable: the same call on the same thread can never succeed). Nothing is done. Run
//! it on a blocking thread — `tokio::task::spawn_blocking`, where it works — or use an
//! async driver. Dropping the store on an async task does not panic either: its idle
//! connections are closed on a thread of their own. (A future wrapped in
//! `tokio::task::unconstrained` is not recognised as async code; see
//! [`InsideAsyncRuntime`].)
//!
//! # Schema (version 1, table `pin_migrations`)
//!
//! Created and upgraded by numbered migrations, all pending ones in one transaction under
//! `pg_advisory_xact_lock`, so that instances starting together apply each exactly once.
//!
//! | table | holds |
//! |---|---|
//! | `subjects` | `tax_code` (primary key), `version` (compare-and-swap), `row_format`, `profile`, `body` (jsonb of the record without credential), `noipa_email_key` (NOIPA-8 index) |
//! | `credentials` | at most one per subject: `serial`, `key_id`, `phc` (Argon2id only), `body` (jsonb of format, level, stage, origin, times, delivery parts) |
//! | `attempts` | one per subject: `serial`, `failures`, `blocked` |
//! | `audit` | `id` (1, 2, 3, … no gap), `tax_code`, `event` (canonical JSON as text), `prev_hash`, `hash` |
//! | `audit_head` | one row: the id and hash of the last audit row |
//! | `pin_migrations` | the migrations applied |
//! | `failed_guesses` (schema 4) | one row per failed guess for the population defence (`pin_core::population`): `at` (ms), `profile`, `network`; indexed by `(network, at)` and `(profile, at)` |
//! | `population_baselines` (schema 4) | one per profile: `per_window_milli`, `folded_at` |
//!
//! # Example
//!
//! ```no_run
//! use pin_core::store::Store;
//! use pin_core::tax_code::TaxCode;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let store = pin_postgres::PostgresStore::open("postgres://pin:secret@127.0.0.1:5432/pins")?;
//! let tax = TaxCode::parse("RSSMRA85T10A562S")?;
//! assert!(store.load(&tax)?.is_none());
//! assert!(store.verify_audit_chain()?.is_intact());
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod attempts;
mod chain;
#[cfg(feature = "throwaway-cluster")]
pub mod cluster;
mod error;
mod options;
mod pool;
mod population;
mod runtime;
mod schema;
mod store;
mod tls;

pub use error::{DbError, OpenError, PoolExhausted};
pub use options::{DEFAULT_POOL_SIZE, DEFAULT_POOL_TIMEOUT, PostgresOptions};
pub use pin_core::audit::chain::{BreakKind, ChainBreak, ChainHead, ChainReport};
pub use runtime::InsideAsyncRuntime;
pub use schema::SCHEMA_VERSION;
pub use store::PostgresStore;

#[cfg(doc)]
use pin_core::store::Store;
