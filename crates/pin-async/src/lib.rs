//! An async driver for pin-core: [`AsyncPinService`] runs the blocking
//! [`PinService`](pin_core::service::PinService) on a bounded pool of threads of its own, so
//! that an async service (tokio, async-std, smol, or a plain
//! `futures::executor::block_on`) can verify PINs without blocking its executor.
//!
//! # One protocol, two thin drivers
//!
//! There is no second implementation of anything here: every method runs the blocking
//! driver's own method on a pool thread, so the lockout (INPS-12, POL-1, POL-8), the
//! compare-and-swap retries and the deliveries are exactly those of `PinService`, over the
//! same blocking [`Store`](pin_core::store::Store) and
//! [`Notifier`](pin_core::notify::Notifier). This crate only decides *where* a call runs.
//!
//! # The pool: its bound and its memory
//!
//! Every verify, change or issue costs an Argon2id evaluation: some 15–50 ms of CPU and
//! `m_kib` KiB of memory (19,456 KiB, about 19 MiB, with the default policy). The pool has
//! a fixed number of threads, [`PoolOptions::threads`], by default one per core
//! ([`std::thread::available_parallelism`]); each runs one operation at a time, so at most
//! that many hashes are in flight and they hold about
//! [`AsyncPinService::hash_memory_kib`] = threads × `hash_live().m_kib` KiB (never more
//! than threads × `hash_cap().m_kib`, the largest stored hash the service accepts).
//! Calls beyond the bound wait in one queue and are started first come, first served; no
//! thread is ever started for them, so a burst of 1,000 logins costs the memory of
//! `threads` hashes, not of 1,000.
//!
//! # Cancellation
//!
//! Each method returns a [`Call`], a future that does nothing until it is first polled.
//! Dropping it (a timeout, a client that went away) never leaves an operation half done:
//!
//! - dropped before a pool thread took the operation: the operation never runs (nothing is
//!   counted, nothing saved, nothing sent);
//! - dropped after: the operation runs to completion on its thread and only the answer is
//!   lost — a verify's reserved attempt is settled as usual (the lease does not linger and
//!   a right PIN leaves no failure behind).
//!
//! A panic inside an operation is resumed in the task awaiting its [`Call`]; the pool's
//! thread survives it.
//!
//! # Secrets
//!
//! PINs typed by a person are passed as [`PinInput`] (from a `String`, a `&str` or a
//! JSON string): owned, moved into the operation, wiped when it is done, redacted in
//! `Debug`. Commands carry their secrets ([`pin_core::secret::Pin`]) into the operation
//! the same way; nothing here prints or keeps them.
//!
//! # Stores that block, or must stay off the runtime
//!
//! Every store and notifier call the driver makes happens on a pool thread, never on the
//! executor's. That is what `pin_postgres::PostgresStore` needs: its blocking `postgres`
//! client runs a private runtime, so on a tokio task the store refuses to open or work
//! (`InsideAsyncRuntime`) rather than let the client panic. Open such a store with [`AsyncPinService::open_with`], which opens it and builds
//! the service on a thread of its own (building it yourself on the runtime, then calling
//! [`AsyncPinService::new`], would open it there); the service is dropped by the last pool
//! thread, never by the executor.
//!
//! # Why these dependencies
//!
//! The pool is a handful of `std` threads fed by a `std::sync::mpsc` queue; each answer
//! comes back through a `futures-channel` oneshot (rust-lang's futures-rs, no runtime, no
//! `unsafe` in our code), which any executor can await. There is no tokio in the library.
//! The alternatives were heavier or looser: `blocking` plus a semaphore would grow its own
//! global pool up to 500 threads and drop the service wherever the last handle went;
//! `tokio::task::spawn_blocking` ties the library to one runtime.
//!
//! # Debug builds of the embedding application
//!
//! Argon2 compiled without optimisation is about 100 times slower (some 2 s per verify).
//! Optimise it even in debug builds, in the application's `Cargo.toml`, as this workspace
//! does:
//!
//! ```toml
//! [profile.dev.package.argon2]
//! opt-level = 3
//! [profile.dev.package.blake2]
//! opt-level = 3
//! ```
//!
//! # Example: a tokio service
//!
//! ```
//! use pin_async::{AsyncPinService, PoolOptions};
//! use pin_core::chrono::{NaiveDate, TimeZone, Utc};
//! use pin_core::command::{Command, Enrolment};
//! use pin_core::contact::{Contacts, Email};
//! use pin_core::hash::{HashParams, Keyring};
//! use pin_core::memory::MemoryStore;
//! use pin_core::notify::MemoryOutbox;
//! use pin_core::rand_chacha::ChaCha20Rng;
//! use pin_core::rand_core::SeedableRng;
//! use pin_core::secret::{KeyId, Pepper};
//! use pin_core::service::PinService;
//! use pin_core::subject::Role;
//! use pin_core::tax_code::TaxCode;
//! use pin_core::{Actor, Level, Policy, VerifyOutcome};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The pepper lives outside the store (a key file, a secrets manager).
//! let keys = Keyring::new(Pepper::new(KeyId(1), &[42u8; 32])?);
//! # let policy = Policy::builder().hash_live(HashParams::INSECURE_FAST_FOR_TESTS)
//! #     .hash_floor(HashParams::INSECURE_FAST_FOR_TESTS).build()?;
//! // In production: `Policy::default()` and a generator seeded from the OS.
//! let rng = ChaCha20Rng::seed_from_u64(1);
//!
//! let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
//! runtime.block_on(async {
//!     // The service is built on a thread of the driver's own (a PostgreSQL store must
//!     // not be opened on the runtime); the pool has one thread per core by default.
//!     let service = AsyncPinService::open_with(PoolOptions::default(), move || {
//!         PinService::new(MemoryStore::new(), MemoryOutbox::new(), policy, keys, rng)
//!     })
//!     .await?;
//!     let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 30, 0).unwrap();
//!     let mario = TaxCode::parse("RSSMRA85T10A562S")?;
//!     let enrolment = Enrolment {
//!         role: Role::Employee,
//!         contacts: Contacts {
//!             email: Some(Email::parse("mario.rossi@example.it")?),
//!             ..Contacts::default()
//!         },
//!         cns_holder: false,
//!         enrolled_on: NaiveDate::from_ymd_opt(2020, 9, 1),
//!     };
//!     let rid = Actor::Rid("rid-042".into());
//!     service.execute(&mario, &rid, Command::Enrol(enrolment), now).await?;
//!
//!     // Any other blocking call goes through `run`: here, reading the test outbox.
//!     let pin: String = service
//!         .run(|svc| svc.notifier().take()[0].delivery.secret.expose_secret().to_owned())
//!         .await;
//!
//!     // The future is `Send + 'static`: await it in place, or hand it to `spawn`.
//!     let outcome = tokio::spawn(service.verify(&mario, pin, Level::Online, now)).await??;
//!     assert!(matches!(outcome, VerifyOutcome::Accepted { .. }));
//!     Ok::<(), Box<dyn std::error::Error>>(())
//! })?;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod error;
mod input;
mod pool;
mod service;

pub use error::StartError;
pub use input::PinInput;
pub use pool::Call;
pub use service::{AsyncPinService, PoolOptions};
