//! [`AsyncPinService`]: the async driver, a thin shell that runs pin-core's blocking
//! [`PinService`] on a bounded pool.

use std::num::NonZeroUsize;
use std::sync::Arc;

use pin_core::chrono::{DateTime, Utc};
use pin_core::command::{Check, Command};
use pin_core::contact::Contacts;
use pin_core::notify::Notifier;
use pin_core::rand_core::CryptoRng;
use pin_core::service::{ChangeOutcome, Executed, PinService, Status, Verification};
use pin_core::store::Store;
use pin_core::tax_code::TaxCode;
use pin_core::verify::Purpose;
use pin_core::{Actor, Error, Level, Policy, VerifyOutcome};

use crate::error::StartError;
use crate::input::PinInput;
use crate::pool::{Call, Pool};

/// How the pool is sized.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PoolOptions {
    /// How many operations run at once: the pool's threads, one operation (and so at most
    /// one Argon2id evaluation) each. Further calls wait in the queue, first come, first
    /// served; no thread is started for them. Default: the number of cores
    /// ([`std::thread::available_parallelism`]; 1 if it cannot be told).
    pub threads: NonZeroUsize,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            threads: std::thread::available_parallelism().unwrap_or(NonZeroUsize::MIN),
        }
    }
}

impl PoolOptions {
    /// The defaults with another number of threads.
    #[must_use]
    pub fn with_threads(mut self, threads: NonZeroUsize) -> Self {
        self.threads = threads;
        self
    }
}

/// The async driver: pin-core's [`PinService`] behind a bounded pool of threads of its
/// own, callable from any executor. Every method queues one blocking operation of the
/// service and returns a [`Call`], the future of its answer; see the [crate docs](crate)
/// for the bound, the memory it implies, cancellation and panics.
///
/// The bounds are those that let the service be shared between threads: the store and the
/// notifier `Send + Sync` (every adapter of this workspace is), the generator only `Send`
/// (the service keeps it behind a mutex).
///
/// Cloning is cheap and shares the pool and the service. The service lives on the pool's
/// threads only: when the last clone and the last pending [`Call`] are gone, the threads
/// finish what is queued and exit, and the last one drops the service (and so its store).
pub struct AsyncPinService<S, N, R> {
    pool: Pool<PinService<S, N, R>>,
    policy: Arc<Policy>,
}

impl<S, N, R> Clone for AsyncPinService<S, N, R> {
    fn clone(&self) -> Self {
        Self {
            pool: self.pool.clone(),
            policy: Arc::clone(&self.policy),
        }
    }
}

impl<S, N, R> std::fmt::Debug for AsyncPinService<S, N, R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { pool, policy } = self;
        f.debug_struct("AsyncPinService")
            .field("threads", &pool.threads())
            .field("hash_live", &policy.hash_live())
            .finish_non_exhaustive()
    }
}

impl<S, N, R> AsyncPinService<S, N, R>
where
    S: Store + Send + Sync + 'static,
    N: Notifier + Send + Sync + 'static,
    R: CryptoRng + Send + 'static,
{
    /// Moves `service` onto a new pool sized by [`PoolOptions::default`] (one thread per
    /// core).
    ///
    /// # Errors
    /// [`StartError::Spawn`] when the OS refuses a thread; `service` is then dropped on
    /// the calling thread (build it with [`AsyncPinService::open_with`] if its store must
    /// not be dropped on an async runtime's thread).
    pub fn new(service: PinService<S, N, R>) -> Result<Self, StartError> {
        Self::with_options(service, PoolOptions::default())
    }

    /// Moves `service` onto a new pool sized by `options`.
    ///
    /// # Errors
    /// As [`AsyncPinService::new`].
    pub fn with_options(
        service: PinService<S, N, R>,
        options: PoolOptions,
    ) -> Result<Self, StartError> {
        let policy = Arc::new(service.policy().clone());
        let pool = Pool::start(service, options.threads).map_err(StartError::Spawn)?;
        Ok(Self { pool, policy })
    }

    /// Builds the service with `make` on a thread of its own, off the async executor, and
    /// starts the pool there: for stores that block, or must not be opened or dropped on
    /// an async runtime's thread (`pin_postgres::PostgresStore`, whose blocking client runs
    /// a private runtime). If the returned future is dropped before the service is ready,
    /// the service is dropped off the executor too.
    ///
    /// A panic in `make` is resumed in the awaiting task.
    ///
    /// # Errors
    /// [`StartError::Open`] with `make`'s error; [`StartError::Spawn`] when the OS refuses
    /// a thread.
    pub async fn open_with<E, F>(options: PoolOptions, make: F) -> Result<Self, StartError<E>>
    where
        F: FnOnce() -> Result<PinService<S, N, R>, E> + Send + 'static,
        E: Send + 'static,
    {
        let (tx, rx) = futures_channel::oneshot::channel();
        let opener = move || {
            let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                let service = make().map_err(StartError::Open)?;
                Self::with_options(service, options).map_err(|e| match e {
                    StartError::Spawn(io) => StartError::Spawn(io),
                    StartError::Open(never) => match never {},
                })
            }));
            // If nobody waits any more, the service is dropped here, on this thread.
            let _gone = tx.send(opened);
        };
        let _detached = std::thread::Builder::new()
            .name("pin-async-open".into())
            .spawn(opener)
            .map_err(StartError::Spawn)?;
        match rx.await {
            Ok(Ok(opened)) => opened,
            Ok(Err(panic)) => std::panic::resume_unwind(panic),
            // The opener always sends unless it was killed with its process.
            Err(futures_channel::oneshot::Canceled) => Err(StartError::Spawn(
                std::io::Error::other("the opening thread stopped without an answer"),
            )),
        }
    }

    /// How many operations run at once (the pool's threads).
    #[must_use]
    pub fn threads(&self) -> NonZeroUsize {
        self.pool.threads()
    }

    /// The policy in force (a copy taken when the pool started).
    #[must_use]
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The Argon2id memory the pool holds when every thread hashes at once with the
    /// policy's live parameters, in KiB: [`AsyncPinService::threads`] × the `m_kib` of
    /// [`Policy::hash_live`] (19,456 KiB by default, so about 38 MiB on 2 cores). New hashes
    /// and the dummy hash of an unknown subject use the live parameters; the compare of a
    /// stored hash uses that hash's own, which the service refuses above
    /// [`Policy::hash_cap`] — so `threads × hash_cap().m_kib` bounds it in every case.
    #[must_use]
    pub fn hash_memory_kib(&self) -> u64 {
        let threads = u64::try_from(self.threads().get()).unwrap_or(u64::MAX);
        threads.saturating_mul(u64::from(self.policy.hash_live().m_kib))
    }

    /// Runs `f` with the service on one of the pool's threads: the escape hatch for any
    /// blocking call of [`PinService`] that has no method here (imports, a delivery
    /// worker, the store's own maintenance calls). What `f` captures moves to that thread
    /// and is dropped there.
    pub fn run<A, F>(&self, f: F) -> Call<A>
    where
        F: FnOnce(&PinService<S, N, R>) -> A + Send + 'static,
        A: Send + 'static,
    {
        self.pool.call(f)
    }

    /// [`PinService::execute`] on the pool: `command` by `actor` on subject `tax`, at `now`.
    /// The command (and any secret it holds) moves to the pool's thread.
    ///
    /// # Errors
    /// As [`PinService::execute`], when awaited.
    pub fn execute(
        &self,
        tax: &TaxCode,
        actor: &Actor,
        command: Command,
        now: DateTime<Utc>,
    ) -> Call<Result<Executed, Error>> {
        let (tax, actor) = (tax.clone(), actor.clone());
        self.run(move |svc| svc.execute(&tax, &actor, &command, now))
    }

    /// [`PinService::verify`] on the pool: one attempt, counted by the lockout as the
    /// blocking driver counts it (the same code runs).
    ///
    /// # Errors
    /// As [`PinService::verify`], when awaited.
    pub fn verify(
        &self,
        tax: &TaxCode,
        input: impl Into<PinInput>,
        required: Level,
        now: DateTime<Utc>,
    ) -> Call<Result<VerifyOutcome, Error>> {
        let (tax, input) = (tax.clone(), input.into());
        self.run(move |svc| svc.verify(&tax, input.expose_secret(), required, now))
    }

    /// [`PinService::authenticate`] on the pool: a verify for `purpose` that returns the
    /// proof a follow-up command needs.
    ///
    /// # Errors
    /// As [`PinService::authenticate`], when awaited.
    pub fn authenticate(
        &self,
        tax: &TaxCode,
        input: impl Into<PinInput>,
        purpose: Purpose,
        now: DateTime<Utc>,
    ) -> Call<Result<Verification, Error>> {
        let (tax, input) = (tax.clone(), input.into());
        self.run(move |svc| svc.authenticate(&tax, input.expose_secret(), purpose, now))
    }

    /// [`PinService::change_pin`] on the pool: `current` authenticates; `new` is the chosen
    /// PIN, or `None` for one the system generates.
    ///
    /// # Errors
    /// As [`PinService::change_pin`], when awaited.
    pub fn change_pin(
        &self,
        tax: &TaxCode,
        current: impl Into<PinInput>,
        new: Option<PinInput>,
        now: DateTime<Utc>,
    ) -> Call<Result<ChangeOutcome, Error>> {
        let (tax, current) = (tax.clone(), current.into());
        self.run(move |svc| {
            let new = new.as_ref().map(PinInput::expose_secret);
            svc.change_pin(&tax, current.expose_secret(), new, now)
        })
    }

    /// [`PinService::activate`] on the pool (INPS-8).
    ///
    /// # Errors
    /// As [`PinService::activate`], when awaited.
    pub fn activate(
        &self,
        tax: &TaxCode,
        first_half: impl Into<PinInput>,
        health_card: Check,
        now: DateTime<Utc>,
    ) -> Call<Result<Result<Executed, VerifyOutcome>, Error>> {
        let (tax, half) = (tax.clone(), first_half.into());
        self.run(move |svc| svc.activate(&tax, half.expose_secret(), health_card, now))
    }

    /// [`PinService::change_contacts_with_pin`] on the pool (NOIPA-9).
    ///
    /// # Errors
    /// As [`PinService::change_contacts_with_pin`], when awaited.
    pub fn change_contacts_with_pin(
        &self,
        tax: &TaxCode,
        pin: impl Into<PinInput>,
        contacts: Contacts,
        now: DateTime<Utc>,
    ) -> Call<Result<Result<Executed, VerifyOutcome>, Error>> {
        let (tax, pin) = (tax.clone(), pin.into());
        self.run(move |svc| svc.change_contacts_with_pin(&tax, pin.expose_secret(), contacts, now))
    }

    /// [`PinService::status`] on the pool (no hashing, but the store may block).
    ///
    /// # Errors
    /// As [`PinService::status`], when awaited.
    pub fn status(&self, tax: &TaxCode, now: DateTime<Utc>) -> Call<Result<Status, Error>> {
        let tax = tax.clone();
        self.run(move |svc| svc.status(&tax, now))
    }
}
