//! pin-sqlite — the [`pin_core::store::Store`] port on SQLite (bundled: no system library
//! needed).
//!
//! # What it guarantees
//!
//! - **No free guess, under races or crashes.** [`Store::reserve_attempt`] is one SQL
//!   statement, `UPDATE attempts SET failures = failures + 1 WHERE … AND blocked = 0 AND
//!   failures < limit AND serial = <current credential serial> RETURNING failures`, in a
//!   `BEGIN IMMEDIATE` transaction that is committed (and, with `synchronous = FULL`, on
//!   disk) before the caller compares the PIN. Settling, and the counter rules of a save
//!   (`Keep`, `Fresh`, `CarryOver`), are `UPDATE`s in SQL too: the counter is never read
//!   into Rust, changed, and written back.
//! - **Only the last PIN is valid (BOTH-1)**, structurally: the current credential is a row
//!   of `credentials` whose primary key is the tax code, so a subject cannot have two.
//! - **NoiPA e-mail addresses are unique (NOIPA-8)**, by a unique partial index on the
//!   lower-cased address ([`pin_core::contact::Email::unique_key`]) of NoiPA subjects;
//!   breaking it is [`pin_core::store::StoreError::EmailTaken`].
//! - **No plaintext secret is stored (BOTH-2).** The record types hold none; the hash
//!   column must hold an Argon2id PHC string (`CHECK`). This crate never hashes and never
//!   sees a PIN: hashing happens in the service, outside any transaction.
//! - **Compare-and-swap saves**: `UPDATE … WHERE version = ?`; a save, its counter rule and
//!   its audit events commit together or not at all.
//! - **A damaged row is an error**, never a panic and never a usable PIN: rows are read as
//!   versioned row types and converted with `TryFrom`, which checks every value
//!   ([`pin_core::store::StoreError::Corrupt`]).
//! - **A tamper-evident, append-only audit log**: each row stores
//!   `hash = HMAC-SHA-256(audit key, … ‖ prev_hash ‖ event)` with the audit key id when the
//!   store is keyed ([`SqliteStore::with_audit_keys`]), else `SHA-256(prev_hash ‖ event)`;
//!   once keyed, unkeyed rows are refused; triggers refuse `UPDATE` and `DELETE`;
//!   [`SqliteStore::verify_audit_chain`] reports the first broken or missing link (see
//!   [`ChainReport`] for what a chain cannot show by itself).
//! - **Opening never damages a file**: a file that is not a database, a database written by
//!   a newer version, a read-only file, a missing directory are each a clear [`OpenError`]
//!   and the file is left byte for byte as it was.
//!
//! # Durability: `synchronous = FULL`
//!
//! Every connection runs in WAL mode with `synchronous = FULL`: each commit waits until the
//! write-ahead log is flushed to the disk. So a reserved attempt that was acknowledged
//! survives an application crash **and a power loss or kernel crash**. With `NORMAL`, WAL
//! commits survive an application crash but the last few may be lost on power loss — which
//! would give back the guesses counted just before it. FULL costs an `fsync` per commit
//! (thousands of commits per second instead of a hundred thousand), small next to the
//! ~14 ms of the Argon2id compare each verification already pays.
//!
//! # Connections and locking
//!
//! [`SqliteStore`] is `Send + Sync` and keeps a few connections (a small pool; one for
//! [`SqliteStore::open_in_memory`]). Every write is a `BEGIN IMMEDIATE` transaction, which
//! takes the database's write lock up front: a deferred transaction upgraded to a write
//! could fail with "database is locked" under WAL contention instead of waiting. Several
//! stores, threads or processes may open the same file.
//!
//! **Under load.** A connection that finds the lock taken waits for it, SQLite retrying
//! with a growing back-off (up to 100 ms apart), up to a busy deadline:
//! [`DEFAULT_BUSY_TIMEOUT`] (30 s), or [`SqliteOptions::busy_timeout`]. A lock held past
//! the deadline is [`pin_core::store::StoreError::Busy`] ([`OpenError::Busy`] while
//! opening): nothing was changed and the call may be repeated
//! ([`pin_core::store::StoreError::is_retryable`]). Readers never wait for writers (WAL),
//! and opening an up-to-date database only reads; [`SqliteStore::open_read_only`] never
//! takes the write lock at all. So 200 processes verifying PINs on one file at once all
//! get their answer (measured by the CLI's load test).
//!
//! **Files.** Only a creating open ([`SqliteOptions::create`], the default of
//! [`SqliteStore::open`]) makes a database, with mode `0600` (and so its `-wal` and
//! `-shm`); an SQLite database of another program is never added to.
//!
//! # Schema (version 1, `PRAGMA user_version`)
//!
//! Created and upgraded by numbered migrations, applied in order, each in one transaction.
//! All tables are `STRICT`.
//!
//! | table | holds |
//! |---|---|
//! | `subjects` | `tax_code` (primary key), `version` (compare-and-swap), `row_format`, `profile`, `body` (JSON of the record without credential), `noipa_email_key` (NOIPA-8 index) |
//! | `credentials` | at most one per subject: `serial`, `key_id`, `phc` (Argon2id only), `body` (JSON of format, level, stage, origin, times, delivery parts) |
//! | `attempts` | one per subject: `serial`, `failures`, `blocked` |
//! | `audit` | `id` (1, 2, 3, … no gap), `tax_code`, `event` (canonical JSON), `prev_hash`, `hash` |
//! | `failed_guesses` (schema 4) | one row per failed guess for the population defence (`pin_core::population`): `at` (ms), `profile`, `network`; indexed by `(network, at)` and `(profile, at)` |
//! | `population_baselines` (schema 4) | one per profile: `per_window_milli`, `folded_at` |
//!
//! # Example
//!
//! ```
//! use pin_core::store::Store;
//! use pin_core::tax_code::TaxCode;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = std::env::temp_dir().join(format!("pin-sqlite-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir)?;
//! let store = pin_sqlite::SqliteStore::open(dir.join("pins.db"))?;
//! let tax = TaxCode::parse("RSSMRA85T10A562S")?;
//! assert!(store.load(&tax)?.is_none());
//! assert!(store.verify_audit_chain()?.is_intact());
//! # drop(store);
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod attempts;
mod chain;
mod error;
mod options;
mod population;
mod schema;
mod store;

pub use error::{DbError, OpenError};
pub use options::{DEFAULT_BUSY_TIMEOUT, DEFAULT_POOL_SIZE, SqliteOptions};
pub use pin_core::audit::chain::{BreakKind, ChainBreak, ChainHead, ChainReport};
pub use schema::SCHEMA_VERSION;
pub use store::SqliteStore;

#[cfg(doc)]
use pin_core::store::Store;
