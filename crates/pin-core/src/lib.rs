//! The life of a PIN credential as Italian public administrations issue them — NoiPA (the
//! payroll portal of public employees) and INPS (the social-security institute) — as a pure
//! state machine behind storage and delivery traits.
//!
//! # What this crate does not do
//!
//! - **No I/O.** It reads no file, opens no socket, touches no database. Storage is the
//!   [`store::Store`] trait (adapters: [`memory::MemoryStore`] here, `pin-sqlite` and
//!   `pin-postgres` beside, which share the row formats of [`rows`] and the audit hash
//!   chain of [`audit::chain`]); delivery is the [`notify::Notifier`] trait.
//! - **No clock.** Every decision takes `now` as a parameter. `clippy.toml` forbids
//!   `SystemTime::now`, `Utc::now` and friends in this crate.
//! - **No OS randomness.** PINs and salts are drawn from an injected `CryptoRng`
//!   (`ChaCha20Rng` in tests); `OsRng`/`thread_rng` are forbidden by the same lints.
//! - **No outside registries.** Residence-address validation, the contact centre's archive
//!   match, health-card data and identity documents are checked elsewhere; commands carry
//!   their result ([`command::Check`]) and the machine waits in a named state meanwhile.
//!
//! # How it decides
//!
//! [`machine::decide`] takes a subject's record, a [`command::Command`], the
//! [`Actor`], `now` and the [`Policy`], and returns a [`command::Decision`]: the next
//! record, the audit events, and the effects (deliver part *k* of *n* on channel *c*; show a
//! generated PIN to the subject). Verifying is a three-step protocol in [`verify`], so that
//! the store counts an attempt durably *before* the compare. [`service::PinService`] is the
//! blocking driver: load → decide (hashing here, outside any storage lock) →
//! compare-and-swap save → deliver.
//!
//! ```text
//!   (none) ──Enrol──► subject ──issue: Identify · Branch · Web · ContactCentre · Reset · Resend──┐
//!                       │  Web/ContactCentre with a failed check ─► awaiting outbound call ─┘  │
//!                       └─PreAssign─► AwaitingActivation ──Activate──┐                        │
//!                                                                   ▼                        ▼
//!   NoiPA: Active (5 digits) ◄──────────────────────── issue ── INPS: MustChange (16 chars)
//!                                                                   │ ChangePin
//!                                                                   ▼
//!                                     INPS: Active (8 chars) ── rotation due ──► Expired
//!                                                   ▲                               │
//!                                                   └────────── ChangePin ──────────┘
//!   Any credential: `limit` consecutive wrong attempts ──► blocked for good (POL-5).
//!   Any issue replaces every earlier PIN at once (BOTH-1).
//! ```
//!
//! # Example: enrol, issue, verify
//!
//! ```
//! use pin_core::chrono::{TimeZone, Utc, NaiveDate};
//! use pin_core::command::{Command, Enrolment};
//! use pin_core::contact::{Contacts, Email};
//! use pin_core::hash::{HashParams, Keyring};
//! use pin_core::memory::MemoryStore;
//! use pin_core::notify::MemoryOutbox;
//! use pin_core::secret::{KeyId, Pepper};
//! use pin_core::service::PinService;
//! use pin_core::subject::Role;
//! use pin_core::tax_code::TaxCode;
//! use pin_core::{Actor, Level, Policy, VerifyOutcome};
//! use pin_core::rand_chacha::ChaCha20Rng;
//! use pin_core::rand_core::SeedableRng;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The pepper lives outside the store (a key file, a secrets manager).
//! let keys = Keyring::new(Pepper::new(KeyId(1), &[42u8; 32])?);
//! # let policy = Policy::builder().hash_live(HashParams::INSECURE_FAST_FOR_TESTS)
//! #     .hash_floor(HashParams::INSECURE_FAST_FOR_TESTS).build()?;
//! // In production: `Policy::default()` and a generator seeded from the OS.
//! let service = PinService::new(
//!     MemoryStore::new(), MemoryOutbox::new(), policy, keys, ChaCha20Rng::seed_from_u64(1),
//! )?;
//! let now = Utc.with_ymd_and_hms(2026, 3, 2, 9, 30, 0).unwrap();
//! let mario = TaxCode::parse("RSSMRA85T10A562S")?;
//!
//! // NOIPA-2: an employee enrolled after 31 March 2014 gets a PIN at enrolment, by e-mail.
//! let enrolment = Enrolment {
//!     role: Role::Employee,
//!     contacts: Contacts { email: Some(Email::parse("mario.rossi@example.it")?), ..Contacts::default() },
//!     cns_holder: false,
//!     enrolled_on: NaiveDate::from_ymd_opt(2020, 9, 1),
//! };
//! service.execute(&mario, &Actor::Rid("rid-042".into()), &Command::Enrol(enrolment), now)?;
//!
//! // The person reads the PIN in their mailbox...
//! let mail = service.notifier().take();
//! let pin = mail[0].delivery.secret.expose_secret();
//!
//! // ...and uses it.
//! let outcome = service.verify(&mario, pin, Level::Online, now)?;
//! assert!(matches!(outcome, VerifyOutcome::Accepted { first_use: true, .. }));
//! let wrong = service.verify(&mario, "00000", Level::Online, now)?;
//! assert_eq!(wrong, VerifyOutcome::Rejected { remaining_attempts: 9, final_try: false });
//! # Ok(())
//! # }
//! ```
//!
//! # Seeding the generator from the OS
//!
//! This crate never reads OS randomness (its lints forbid it), so the caller seeds the
//! generator, for instance with the `getrandom` crate in the caller's own dependencies, as
//! `examples/http_service.rs` does:
//!
//! ```text
//! use pin_core::rand_chacha::ChaCha20Rng;
//! use pin_core::rand_core::SeedableRng;
//!
//! let mut seed = [0u8; 32];
//! getrandom::fill(&mut seed)?;
//! let rng = ChaCha20Rng::from_seed(seed);
//! ```
//!
//! The crates whose types appear in this API are re-exported ([`chrono`], [`rand_core`],
//! [`rand_chacha`]), so that a caller names the same versions.
#![forbid(unsafe_code)]

pub mod actor;
pub mod attempts;
pub mod audit;
pub mod command;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod contact;
pub mod delivery;
pub mod error;
pub mod format;
pub mod hash;
pub mod keycheck;
pub mod machine;
pub mod memory;
pub mod notify;
pub mod policy;
pub mod population;
pub mod rows;
pub mod secret;
pub mod self_service;
pub mod service;
pub mod status;
pub mod store;
pub mod subject;
pub mod tax_code;
pub mod telemetry;
pub mod verify;

pub use actor::Actor;
/// Times in this API are `chrono::DateTime<chrono::Utc>`.
pub use chrono;
pub use error::{Error, ErrorKind, InputError, Refusal};
pub use policy::Policy;
/// The generator of this API (`ChaCha20Rng` in the examples and the CLI).
pub use rand_chacha;
/// The generator traits of this API (`CryptoRng`, `SeedableRng`).
pub use rand_core;
pub use subject::{Level, Profile, Role};
pub use verify::VerifyOutcome;
