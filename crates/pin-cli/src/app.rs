//! Where the command runs: paths, time, policy, and the service built on them.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use pin_core::Policy;
use pin_core::hash::{HashParams, Hasher};
use pin_core::service::PinService;
use pin_core::store::Store;
use pin_core::subject::Channel;
use pin_core::tax_code::TaxCode;
use pin_smtp::{ChannelRouter, Credentials, SmtpConfig, SmtpNotifier};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::cli::{DeliveryArgs, Global, NotifierArg};
use crate::db::{Access, AnyStore, Db};
use crate::exit::Failure;
use crate::key;
use crate::outbox::{self, FileOutbox, file_name};

/// The environment variable that selects tiny Argon2 costs, **for tests only**.
pub(crate) const FAST_HASH_ENV: &str = "PIN_INSECURE_FAST_HASH";

/// The environment variable holding the SMTP password (never a flag: flags show in `ps`).
pub(crate) const SMTP_PASSWORD_ENV: &str = "PIN_SMTP_PASSWORD";

/// The service as the CLI runs it: messages go to the outbox, or e-mail and PEC over SMTP
/// (`--notifier smtp`).
pub(crate) type Service<S> = PinService<S, ChannelRouter, ChaCha20Rng>;

/// Paths, time and output mode of one command.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    /// The database: an SQLite file or a PostgreSQL URL.
    pub(crate) db: Db,
    /// The pepper key file.
    pub(crate) key_file: PathBuf,
    /// The outbox directory.
    pub(crate) outbox: PathBuf,
    /// The time the command acts at.
    pub(crate) now: DateTime<Utc>,
    /// Whether `--now` (or `PIN_NOW`) fixed it.
    pub(crate) pinned_now: bool,
    /// JSON output.
    pub(crate) json: bool,
    /// The SMTP settings under `--notifier smtp` (e-mail and PEC go there, not the outbox).
    pub(crate) smtp: Option<DeliveryArgs>,
}

impl Ctx {
    /// Resolves the global options and their defaults.
    pub(crate) fn new(g: &Global) -> Self {
        // --db (or PIN_DB) first, then --database-url (or PIN_DATABASE_URL), then ./pin.db.
        let db =
            g.db.clone()
                .or_else(|| g.database_url.clone().map(PathBuf::from))
                .map_or_else(|| Db::File(PathBuf::from("pin.db")), |v| Db::parse(&v));
        let beside = db.beside();
        Self {
            key_file: g.key_file.clone().unwrap_or_else(|| beside.join("pin.key")),
            outbox: g.outbox.clone().unwrap_or_else(|| beside.join("outbox")),
            db,
            now: g.now.unwrap_or_else(clock_now),
            pinned_now: g.now.is_some(),
            json: g.json,
            smtp: (g.delivery.notifier == NotifierArg::Smtp).then(|| g.delivery.clone()),
        }
    }

    /// Paths inside `dir` (for `pin demo`).
    pub(crate) fn in_dir(dir: &Path, now: DateTime<Utc>) -> Self {
        Self {
            db: Db::File(dir.join("pin.db")),
            key_file: dir.join("pin.key"),
            outbox: dir.join("outbox"),
            now,
            pinned_now: true,
            json: false,
            smtp: None,
        }
    }

    /// Whether messages on `channel` go over SMTP rather than into the outbox.
    pub(crate) fn by_smtp(&self, channel: Channel) -> bool {
        self.smtp.is_some() && matches!(channel, Channel::Email | Channel::Pec)
    }

    /// The outbox file of a message, or `None` when it went over SMTP.
    pub(crate) fn outbox_file(
        &self,
        tax: &TaxCode,
        serial: u64,
        part: u8,
        of: u8,
        channel: Channel,
    ) -> Option<PathBuf> {
        (!self.by_smtp(channel))
            .then(|| self.outbox.join(file_name(tax, serial, part, of, channel)))
    }
}

/// The system clock, to the second (the binary may read the clock; pin-core never does).
/// The time a run of a long-running command acts at: `--now` when given, else the clock.
pub(crate) fn now(ctx: &Ctx) -> DateTime<Utc> {
    if ctx.pinned_now { ctx.now } else { clock_now() }
}

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
        b = b
            .hash_live(HashParams::INSECURE_FAST_FOR_TESTS)
            .hash_floor(HashParams::INSECURE_FAST_FOR_TESTS);
    }
    b.build().map_err(|e| Failure::internal(e.to_string()))
}

/// A ChaCha20 generator seeded from the operating system.
pub(crate) fn os_rng() -> Result<ChaCha20Rng, Failure> {
    let seed = key::random_key()?;
    Ok(ChaCha20Rng::from_seed(*seed))
}

/// Opens an existing database (never creates one) to read and write: an SQLite file, or a
/// PostgreSQL database (whose schema is brought up to date).
pub(crate) fn open_store(ctx: &Ctx) -> Result<AnyStore, Failure> {
    open_store_for(ctx, Access::Write)
}

/// Opens an existing database (never creates one) for `access`.
pub(crate) fn open_store_for(ctx: &Ctx, access: Access) -> Result<AnyStore, Failure> {
    if !ctx.db.exists() {
        return Err(Failure::storage(format!(
            "no PIN database at {}; run `pin init` to create it, or pass --db (or set PIN_DB or PIN_DATABASE_URL)",
            ctx.db.display()
        )));
    }
    ctx.db.open(access)
}

/// Creates (or opens) the database of `ctx.db`.
pub(crate) fn create_store(ctx: &Ctx) -> Result<AnyStore, Failure> {
    ctx.db.open(Access::Create)
}

/// The hasher of this database's key and the policy.
pub(crate) fn hasher(ctx: &Ctx, policy: &Policy) -> Result<Hasher, Failure> {
    let keys = key::load(&ctx.key_file)?;
    if let Some(w) = key::permission_warning(&ctx.key_file) {
        tracing::warn!("{w}");
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
        tracing::warn!("{w}");
    }
    PinService::new(store, notifier(ctx)?, policy()?, keys, os_rng()?)
        .map(|s| s.with_stopwatch(pin_core::telemetry::Stopwatch::new(std::time::Instant::now)))
        .map_err(Failure::from)
}

/// The notifier: everything into the outbox, except e-mail and PEC over SMTP under
/// `--notifier smtp`.
///
/// An existing outbox directory that others can reach gets a warning on stderr (it is not
/// refused: the operator chose it, as for the key file).
fn notifier(ctx: &Ctx) -> Result<ChannelRouter, Failure> {
    if let Some(w) = outbox::permission_warning(&ctx.outbox) {
        tracing::warn!("{w}");
    }
    let router = ChannelRouter::new().otherwise(FileOutbox::new(ctx.outbox.clone()));
    let Some(args) = &ctx.smtp else {
        return Ok(router);
    };
    let smtp = SmtpNotifier::new(smtp_config(args)?).map_err(|e| Failure::input(e.to_string()))?;
    Ok(router.route(&[Channel::Email, Channel::Pec], smtp))
}

/// The SMTP settings from the flags (or their variables) and `PIN_SMTP_PASSWORD`.
fn smtp_config(args: &DeliveryArgs) -> Result<SmtpConfig, Failure> {
    let host = args.smtp_host.clone().ok_or_else(|| {
        Failure::input("--notifier smtp needs the relay: --smtp-host HOST (or PIN_SMTP_HOST)")
    })?;
    let from = args.smtp_from.clone().ok_or_else(|| {
        Failure::input("--notifier smtp needs the sender: --smtp-from ADDRESS (or PIN_SMTP_FROM)")
    })?;
    let password = std::env::var(SMTP_PASSWORD_ENV)
        .ok()
        .map(zeroize::Zeroizing::new);
    let credentials = match (&args.smtp_user, password) {
        (Some(user), Some(password)) => Some(Credentials::new(user, password.as_str())),
        (None, None) => None,
        (Some(_), None) => {
            return Err(Failure::input(format!(
                "--smtp-user is set but {SMTP_PASSWORD_ENV} is not: put the relay password \
                 in the environment"
            )));
        }
        (None, Some(_)) => {
            return Err(Failure::input(format!(
                "{SMTP_PASSWORD_ENV} is set but no user: give --smtp-user (or PIN_SMTP_USER)"
            )));
        }
    };
    let mut config = SmtpConfig::new(host, from);
    config.port = args.smtp_port;
    config.tls = args.smtp_tls;
    config.credentials = credentials;
    config.language = args.smtp_lang;
    Ok(config)
}
