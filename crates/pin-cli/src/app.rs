//! Where the command runs: paths, time, policy, and the service built on them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pin_core::Policy;
use pin_core::hash::{HashParams, Hasher};
use pin_core::service::PinService;
use pin_core::store::Store;
use pin_sqlite::{OpenError, SqliteStore};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::cli::Global;
use crate::exit::{Failure, one_line};
use crate::key;
use crate::outbox::FileOutbox;

/// The environment variable that selects tiny Argon2 costs, **for tests only**.
pub(crate) const FAST_HASH_ENV: &str = "PIN_INSECURE_FAST_HASH";

/// The service as the CLI runs it.
pub(crate) type Service<S> = PinService<S, FileOutbox, ChaCha20Rng>;

/// Paths, time and output mode of one command.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The database.
    pub(crate) db: PathBuf,
    /// The pepper key file.
    pub(crate) key_file: PathBuf,
    /// The outbox directory.
    pub(crate) outbox: PathBuf,
    /// The time the command acts at.
    pub(crate) now: DateTime<Utc>,
    /// JSON output.
    pub(crate) json: bool,
}

impl Ctx {
    /// Resolves the global options and their defaults.
    pub(crate) fn new(g: &Global) -> Self {
        let db = g.db.clone().unwrap_or_else(|| PathBuf::from("pin.db"));
        let beside = db.parent().map(Path::to_path_buf).unwrap_or_default();
        Self {
            key_file: g.key_file.clone().unwrap_or_else(|| beside.join("pin.key")),
            outbox: g.outbox.clone().unwrap_or_else(|| beside.join("outbox")),
            db,
            now: g.now.unwrap_or_else(clock_now),
            json: g.json,
        }
    }

    /// Paths inside `dir` (for `pin demo`).
    pub(crate) fn in_dir(dir: &Path, now: DateTime<Utc>) -> Self {
        Self {
            db: dir.join("pin.db"),
            key_file: dir.join("pin.key"),
            outbox: dir.join("outbox"),
            now,
            json: false,
        }
    }
}

/// The system clock, to the second (the binary may read the clock; pin-core never does).
fn clock_now() -> DateTime<Utc> {
    let t = DateTime::<Utc>::from(std::time::SystemTime::now());
    DateTime::from_timestamp(t.timestamp(), 0).unwrap_or(t)
}

/// Whether the test-only fast hashing is selected.
pub(crate) fn fast_hash() -> bool {
    std::env::var_os(FAST_HASH_ENV).is_some_and(|v| v == "1")
}

/// The policy in force: RULES.md's defaults, with tiny Argon2 costs under
/// `PIN_INSECURE_FAST_HASH=1` (tests only).
pub(crate) fn policy() -> Result<Policy, Failure> {
    let mut b = Policy::builder();
    if fast_hash() {
        b = b.hash_live(HashParams::INSECURE_FAST_FOR_TESTS);
    }
    b.build().map_err(|e| Failure::internal(e.to_string()))
}

/// A ChaCha20 generator seeded from the operating system.
pub(crate) fn os_rng() -> Result<ChaCha20Rng, Failure> {
    let seed = key::random_key()?;
    Ok(ChaCha20Rng::from_seed(*seed))
}

/// Opens an existing database (never creates one).
pub(crate) fn open_store(ctx: &Ctx) -> Result<SqliteStore, Failure> {
    if !ctx.db.exists() {
        return Err(Failure::storage(format!(
            "no PIN database at {}; run `pin init` to create it, or pass --db (or set PIN_DB)",
            ctx.db.display()
        )));
    }
    SqliteStore::open(&ctx.db).map_err(open_failure)
}

/// Creates (or opens) the database at `ctx.db`.
pub(crate) fn create_store(ctx: &Ctx) -> Result<SqliteStore, Failure> {
    SqliteStore::open(&ctx.db).map_err(open_failure)
}

fn open_failure(e: OpenError) -> Failure {
    Failure::storage(one_line(&e.to_string()))
}

/// The hasher of this database's key and the policy.
pub(crate) fn hasher(ctx: &Ctx, policy: &Policy) -> Result<Hasher, Failure> {
    let keys = key::load(&ctx.key_file)?;
    if let Some(w) = key::permission_warning(&ctx.key_file) {
        eprintln!("pin: warning: {w}");
    }
    Hasher::new(
        policy.hash_live(),
        policy.hash_floor(),
        policy.hash_cap(),
        keys,
    )
    .map_err(|e| Failure::internal(e.to_string()))
}

/// The service over `store`, with the key file, the outbox and an OS-seeded generator.
pub(crate) fn service<S: Store>(ctx: &Ctx, store: S) -> Result<Service<S>, Failure> {
    let keys = key::load(&ctx.key_file)?;
    if let Some(w) = key::permission_warning(&ctx.key_file) {
        eprintln!("pin: warning: {w}");
    }
    PinService::new(
        store,
        FileOutbox::new(ctx.outbox.clone()),
        policy()?,
        keys,
        os_rng()?,
    )
    .map_err(Failure::from)
}
