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
use crate::outbox::{self, FileOutbox, file_name};
use crate::{audit_key, key};

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
    /// The audit key file.
    pub(crate) audit_key_file: PathBuf,
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
    /// The SMS gateway of `--sms-webhook` (SMS go there, not the outbox).
    pub(crate) sms_webhook: Option<String>,
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
        let key_file = g.key_file.clone().unwrap_or_else(|| beside.join("pin.key"));
        Self {
            audit_key_file: g.audit_key_file.clone().unwrap_or_else(|| {
                key_file
                    .parent()
                    .unwrap_or_else(|| Path::new(""))
                    .join(audit_key::FILE_NAME)
            }),
            key_file,
            outbox: g.outbox.clone().unwrap_or_else(|| beside.join("outbox")),
            db,
            now: g.now.unwrap_or_else(clock_now),
            pinned_now: g.now.is_some(),
            json: g.json,
            smtp: (g.delivery.notifier == NotifierArg::Smtp).then(|| g.delivery.clone()),
            sms_webhook: g.delivery.sms_webhook.clone(),
        }
    }

    /// Paths inside `dir` (for `pin demo`).
    pub(crate) fn in_dir(dir: &Path, now: DateTime<Utc>) -> Self {
        Self {
            db: Db::File(dir.join("pin.db")),
            key_file: dir.join("pin.key"),
            audit_key_file: dir.join(audit_key::FILE_NAME),
            outbox: dir.join("outbox"),
            now,
            pinned_now: true,
            json: false,
            smtp: None,
            sms_webhook: None,
        }
    }

    /// Whether messages on `channel` go over SMTP rather than into the outbox.
    pub(crate) fn by_smtp(&self, channel: Channel) -> bool {
        self.smtp.is_some() && matches!(channel, Channel::Email | Channel::Pec)
    }

    /// Whether messages on `channel` go to the SMS gateway rather than into the outbox.
    pub(crate) fn by_webhook(&self, channel: Channel) -> bool {
        self.sms_webhook.is_some() && channel == Channel::Sms
    }

    /// The outbox file of a message, or `None` when it went over SMTP or to the SMS gateway.
    pub(crate) fn outbox_file(
        &self,
        tax: &TaxCode,
        serial: u64,
        part: u8,
        of: u8,
        channel: Channel,
    ) -> Option<PathBuf> {
        (!self.by_smtp(channel) && !self.by_webhook(channel))
            .then(|| self.outbox.join(file_name(tax, serial, part, of, channel)))
    }
}

/// The time a run of a long-running command acts at: `--now` when given, else the clock.
pub(crate) fn now(ctx: &Ctx) -> DateTime<Utc> {
    if ctx.pinned_now { ctx.now } else { clock_now() }
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
#[allow(dead_code)] // no caller here since `pin init` opens without the audit key
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
    with_audit_key(ctx, ctx.db.open(access)?, access)
}

/// Creates (or opens) the database of `ctx.db`, keyed with the audit key file (which must
/// exist: `pin init` writes it first).
pub(crate) fn create_store(ctx: &Ctx) -> Result<AnyStore, Failure> {
    with_audit_key(ctx, ctx.db.open(Access::Create)?, Access::Create)
}

/// Keys `store`'s audit chain with the audit key file. Without the file a command that
/// only reads goes on unkeyed (a keyed row then does not verify: the key is needed);
/// one that writes is refused, since every new audit row must be keyed.
fn with_audit_key(ctx: &Ctx, store: AnyStore, access: Access) -> Result<AnyStore, Failure> {
    match audit_key::load(&ctx.audit_key_file)? {
        Some(file) => {
            if let Some(w) = key::permission_warning(&ctx.audit_key_file) {
                eprintln!("pin: warning: {w}");
            }
            Ok(store.with_audit_keys(file.keys))
        }
        None if access == Access::Read => Ok(store),
        None => Err(Failure::storage(format!(
            "no audit key file at {}; every new audit row is keyed, so a command that writes needs it: pass --audit-key-file (or set PIN_AUDIT_KEY_FILE), or, for a database created before the audit chain was keyed, run `pin audit init-key` once",
            ctx.audit_key_file.display()
        ))),
    }
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
    // The population defence (pin_core::population), with device tokens signed under a key
    // derived from the pepper: apart from the database, as the pepper is.
    let defence = pin_core::service::PopulationDefence::new(
        pin_core::population::PopulationPolicy::default(),
        pin_core::population::DeviceKey::derive(keys.current()),
    );
    PinService::new(store, notifier(ctx)?, policy()?, keys, os_rng()?)
        .map(|s| {
            s.with_population(defence)
                .with_stopwatch(pin_core::telemetry::Stopwatch::new(std::time::Instant::now))
        })
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
    let mut router = ChannelRouter::new().otherwise(FileOutbox::new(ctx.outbox.clone()));
    if let Some(url) = &ctx.sms_webhook {
        router = router.route(&[Channel::Sms], sms_webhook(url)?);
    }
    let Some(args) = &ctx.smtp else {
        return Ok(router);
    };
    let smtp = SmtpNotifier::new(smtp_config(args)?).map_err(|e| Failure::input(e.to_string()))?;
    Ok(router.route(&[Channel::Email, Channel::Pec], smtp))
}

/// The environment variable holding the SMS gateway's signing key (hex).
const SMS_WEBHOOK_KEY_ENV: &str = "PIN_SMS_WEBHOOK_KEY";

/// The SMS gateway notifier of `--sms-webhook URL`, signing with `PIN_SMS_WEBHOOK_KEY`.
fn sms_webhook(url: &str) -> Result<pin_webhook::WebhookNotifier, Failure> {
    let hex = std::env::var(SMS_WEBHOOK_KEY_ENV).map(zeroize::Zeroizing::new).map_err(|_| {
        Failure::input(format!(
            "--sms-webhook needs the signing key shared with the gateway in {SMS_WEBHOOK_KEY_ENV} (hex, at least 16 bytes; never a flag)"
        ))
    })?;
    let bad = || {
        Failure::input(format!(
            "{SMS_WEBHOOK_KEY_ENV} must be hexadecimal digits (an even number of them)"
        ))
    };
    let bytes =
        zeroize::Zeroizing::new(pin_core::audit::export::unhex(hex.trim()).ok_or_else(bad)?);
    let key = pin_webhook::SigningKey::new(&bytes)
        .map_err(|e| Failure::input(format!("{SMS_WEBHOOK_KEY_ENV}: {e}")))?;
    pin_webhook::WebhookNotifier::new(pin_webhook::WebhookConfig::new(url, key))
        .map_err(|e| Failure::input(format!("--sms-webhook: {e}")))
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
