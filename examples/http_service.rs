//! # A small HTTP service embedding the PIN library (axum on tokio)
//!
//! What it shows:
//! - The async driver, [`pin_async::AsyncPinService`], shared by every request: each PIN
//!   check, change and issue runs on the driver's own bounded pool (one thread per core, so
//!   at most that many Argon2id hashes of 19 MiB each are in flight), never on the tokio
//!   executor; a burst of logins queues instead of starving the runtime or the memory.
//! - Requests never wait on a channel: the service runs in
//!   [`DeliveryMode::Deferred`], so a command commits the PIN's parts sealed in the
//!   delivery queue (no PIN in clear at rest, BOTH-2) and returns; a delivery worker task
//!   calls [`PinService::deliver_due`] every second and logs what it did, in counts (never
//!   a PIN). A relay that is down, or a process killed between the commit and the delivery,
//!   loses nothing: the part stays due and the next run — in this process or the next one —
//!   delivers it (at least once, named by [`Delivery::message_id`]).
//! - PINs are read from the JSON request body, never from the URL: URLs end up in access
//!   logs, proxies and browser history.
//! - Answers that do not reveal whether a subject exists: an unknown tax code, a subject
//!   without a PIN, a wrong PIN, a malformed PIN and a locked PIN all get the same
//!   `401 {"ok":false}` (the library already spends one Argon2 hash on unknown subjects,
//!   so the timing matches too). Only after the right PIN does the answer say more.
//!
//! Endpoints (all `POST`, JSON):
//! - `/pin/verify` `{"tax_code", "pin", "level"?: "online"|"dispositivo"}` →
//!   `200 {"ok":true}`, `403 {"ok":false,"change_required":true}` (right PIN, but the
//!   16-character initial one or a rotation is due), `403
//!   {"ok":false,"insufficient_level":true}`, or `401 {"ok":false}`.
//! - `/pin/change` `{"tax_code", "current", "new"?}` → `200 {"ok":true}` (with
//!   `"generated"` when `new` was left out and the system chose the PIN, shown to the
//!   person alone), `400 {"ok":false,"error":"new_pin_not_acceptable"}`, or
//!   `401 {"ok":false}`.
//! - `/pin/resend` `{"tax_code"}` → always `202 {"ok":true}`, answered before any work: the
//!   re-send (a fresh PIN to the contacts on record, POL-3, rate-limited by POL-4) is queued
//!   on the driver's pool after the answer, so neither the answer nor its timing tells
//!   whether the subject exists, and the delivery worker sends it.
//!
//! ## Running it
//!
//! `cargo run --example http_service` listens on `127.0.0.1:8080`, enrols a demo employee
//! (`RSSMRA85T10A562S`) unless the database already has them, and prints the demo PIN once
//! the worker has delivered it to the mailbox. Then for example:
//! `curl -s -X POST localhost:8080/pin/verify -H 'content-type: application/json'
//! -d '{"tax_code":"RSSMRA85T10A562S","pin":"…"}'`.
//!
//! It is configured by environment variables, so that it can be stopped (or killed) and
//! started again on the same database:
//!
//! | variable | default | |
//! |---|---|---|
//! | `PIN_HTTP_ADDR` | `127.0.0.1:8080` | where to listen |
//! | `PIN_HTTP_DB` | `pin.db` in a new temporary directory | the SQLite database |
//! | `PIN_HTTP_PEPPER_HEX` | random (the database then cannot be reopened by another run) | the pepper key, 64 hex digits (32 bytes); a real service keeps it in its secrets manager, apart from the database |
//! | `PIN_HTTP_MAILBOX` | `mailbox` in that temporary directory | the demo notifier's directory (created, mode `0700`) |
//! | `PIN_HTTP_MAILBOX_DOWN` | `0` | `1`: the mailbox answers "unavailable" to every delivery, as a relay in an outage |
//! | `PIN_HTTP_DELIVER_EVERY_MS` | `1000` | how often the delivery worker runs |
//! | `PIN_HTTP_DELIVERY_RETRY_SECS` | the policy's (30) | the first pause before a part whose channel was unavailable is tried again ([`Policy::delivery_retry_first`]) |
//! | `PIN_HTTP_DELIVERY_CLAIM_SECS` | the policy's (120) | how long a worker holds the parts it took ([`Policy::delivery_claim`]); after a kill they wait that long |
//! | `PIN_HTTP_INSECURE_FAST_HASH` | `0` | `1`: test-only Argon2 parameters (tests only, never with real PINs) |
//!
//! The mailbox stands for an e-mail relay: each message becomes one file, written to a
//! temporary name, synced, and renamed (so a kill never leaves a partial message), mode
//! `0600`, named `<message id>.txt` after [`Delivery::message_id`] (a duplicate of an
//! at-least-once delivery lands on the same name). It holds the headers `Message-Id`, `To`,
//! `Tax-Code`, `Serial`, `Part` (`1 of 1`, or `2 of 2` for a half), `Channel`, a blank line,
//! and the line `PIN: <the characters of this part>`.
//!
//! Its tests: `tests/http_example.rs` starts the router in-process on a free port and drives
//! it over HTTP; `tests/http_example_restart.rs` runs this binary, kills it mid-issue and
//! shows the PIN still arrives after the restart.
#![allow(
    clippy::print_stdout,
    clippy::print_stderr,
    reason = "an example talks to whoever runs it"
)]
#![allow(
    missing_docs,
    unreachable_pub,
    reason = "an example, also included by a test"
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use pin_async::{AsyncPinService, PinInput};
use pin_core::VerifyOutcome;
use pin_core::command::{Command, Delivery};
use pin_core::notify::{DeliveryError, Notifier, Receipt};
use pin_core::service::{ChangeOutcome, DeliveryRun};
use pin_core::tax_code::TaxCode;
use pin_core::verify::ExpiryReason;
use pin_core::{Actor, Error, Level};
use pin_sqlite::SqliteStore;
use rand_chacha::ChaCha20Rng;
use serde::Deserialize;
use serde_json::{Value, json};
use zeroize::Zeroizing;

#[cfg(doc)]
use pin_core::{Policy, service::DeliveryMode, service::PinService};

/// The service as this application embeds it: the async driver over SQLite.
pub type Service<N> = AsyncPinService<SqliteStore, N, ChaCha20Rng>;

/// How many subjects one run of the delivery worker takes at most.
pub const DELIVERY_BATCH: usize = 100;

/// The demo employee enrolled at start.
pub const DEMO_TAX_CODE: &str = "RSSMRA85T10A562S";

/// The router over `service` (whose pool bounds the hashing).
pub fn app<N: Notifier + Send + Sync + 'static>(service: Service<N>) -> Router {
    Router::new()
        .route("/pin/verify", post(verify::<N>))
        .route("/pin/change", post(change::<N>))
        .route("/pin/resend", post(resend::<N>))
        .with_state(service)
}

#[derive(Debug, Deserialize)]
pub struct VerifyRequest {
    tax_code: String,
    pin: PinInput,
    level: Option<Level>,
}

#[derive(Debug, Deserialize)]
pub struct ChangeRequest {
    tax_code: String,
    current: PinInput,
    new: Option<PinInput>,
}

#[derive(Debug, Deserialize)]
pub struct ResendRequest {
    tax_code: String,
}

type Answer = (StatusCode, Json<Value>);

/// The clock: the application reads it and hands it to the library (which never does).
pub fn now() -> DateTime<Utc> {
    DateTime::<Utc>::from(std::time::SystemTime::now())
}

/// The one answer for "no": unknown subject, no PIN, wrong, malformed, locked, unused
/// initial PIN expired, refused. Anything more specific would let a caller probe which tax
/// codes are on record (and the lock and expiry answers come without comparing the PIN).
fn denied() -> Answer {
    (StatusCode::UNAUTHORIZED, Json(json!({ "ok": false })))
}

fn internal(e: &Error) -> Answer {
    // Errors of the library never contain a PIN; log them for the operator.
    eprintln!("pin service error: {e}");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({ "ok": false })),
    )
}

async fn verify<N: Notifier + Send + Sync + 'static>(
    State(service): State<Service<N>>,
    Json(req): Json<VerifyRequest>,
) -> Answer {
    let Ok(tax) = TaxCode::parse(&req.tax_code) else {
        return denied();
    };
    let level = req.level.unwrap_or(Level::Online);
    // The PIN moves to the pool's thread and is wiped there when the check is done.
    match service.verify(&tax, req.pin, level, now()).await {
        Ok(VerifyOutcome::Accepted { .. }) => (StatusCode::OK, Json(json!({ "ok": true }))),
        // Told only after the right PIN was compared.
        Ok(
            VerifyOutcome::MustChange
            | VerifyOutcome::Expired {
                reason: ExpiryReason::Rotation,
            },
        ) => (
            StatusCode::FORBIDDEN,
            Json(json!({ "ok": false, "change_required": true })),
        ),
        // Defended mode (pin_core::population): run a challenge, then retry with its proof.
        // Said alike of every tax code, on record or not.
        Ok(VerifyOutcome::ChallengeRequired) => (
            StatusCode::FORBIDDEN,
            Json(json!({ "ok": false, "challenge_required": true })),
        ),
        Ok(VerifyOutcome::InsufficientLevel { .. }) => (
            StatusCode::FORBIDDEN,
            Json(json!({ "ok": false, "insufficient_level": true })),
        ),
        // A malformed PIN is refused before any lookup for a subject on record, but not for
        // an unknown one: answering it differently would reveal who is on record.
        Ok(_) | Err(Error::Input(_)) => denied(),
        Err(e) => internal(&e),
    }
}

async fn change<N: Notifier + Send + Sync + 'static>(
    State(service): State<Service<N>>,
    Json(req): Json<ChangeRequest>,
) -> Answer {
    let Ok(tax) = TaxCode::parse(&req.tax_code) else {
        return denied();
    };
    // The new PIN is checked first, before anything is looked up: this answer says
    // nothing about the subject.
    let acceptable = |new: &PinInput| {
        pin_core::format::parse_chosen(pin_core::format::PinFormat::InpsInUse8, new.expose_secret())
            .is_ok()
    };
    if req.new.as_ref().is_some_and(|new| !acceptable(new)) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "ok": false, "error": "new_pin_not_acceptable" })),
        );
    }
    match service.change_pin(&tax, req.current, req.new, now()).await {
        Ok(ChangeOutcome::Changed { revealed: None }) => {
            (StatusCode::OK, Json(json!({ "ok": true })))
        }
        // The system chose the new PIN: shown to the person who proved the old one.
        Ok(ChangeOutcome::Changed {
            revealed: Some(pin),
        }) => (
            StatusCode::OK,
            Json(json!({ "ok": true, "generated": pin.expose_secret() })),
        ),
        // Not authenticated, unknown subject, malformed current PIN, and refusals (a NoiPA
        // PIN cannot be changed: saying so would reveal the subject is on record).
        Ok(ChangeOutcome::NotAuthenticated(_))
        | Err(Error::Input(_) | Error::Refused(_) | Error::UnknownSubject(_)) => denied(),
        Err(e) => internal(&e),
    }
}

async fn resend<N: Notifier + Send + Sync + 'static>(
    State(service): State<Service<N>>,
    Json(req): Json<ResendRequest>,
) -> Answer {
    if let Ok(tax) = TaxCode::parse(&req.tax_code) {
        // Answer first, work after: the call is only queued on the pool by the spawned
        // task, so the answer and its timing are the same for everyone, and the delivery
        // is the worker's (DeliveryMode::Deferred), never this request's.
        let issue = service.execute(&tax, &Actor::Subject, Command::Resend, now());
        tokio::spawn(async move {
            match issue.await {
                Ok(_) | Err(Error::Refused(_) | Error::UnknownSubject(_)) => {}
                Err(e) => eprintln!("pin service error on resend: {e}"),
            }
        });
    }
    (StatusCode::ACCEPTED, Json(json!({ "ok": true })))
}

/// One run of the delivery worker on the driver's pool, at `at`: the counts, or why the
/// due parts could not be listed.
pub async fn deliver_once<N: Notifier + Send + Sync + 'static>(
    service: &Service<N>,
    at: DateTime<Utc>,
) -> Result<DeliveryRun, Error> {
    service
        .run(move |svc| svc.deliver_due(at, DELIVERY_BATCH))
        .await
}

/// The delivery worker: every `every`, one [`deliver_once`] at the current time; it logs
/// what it did in counts (never a PIN, never a recipient) and runs until its task is
/// dropped. A run that overruns `every` delays the next instead of piling up.
pub async fn delivery_worker<N: Notifier + Send + Sync + 'static>(
    service: Service<N>,
    every: Duration,
) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let _ = tick.tick().await;
        match deliver_once(&service, now()).await {
            Ok(run) if run.parts.is_empty() && run.errors.is_empty() => {}
            Ok(run) => {
                let gave_up = run.parts.iter().filter(|p| p.gave_up).count();
                println!(
                    "delivery: {} delivered, {} deferred (channel unavailable), {} failed for good \
                     ({gave_up} need a fresh issue, POL-3), {} records left due after an error",
                    run.delivered(),
                    run.deferred(),
                    run.failed(),
                    run.errors.len()
                );
            }
            Err(e) => eprintln!("delivery: cannot list the due parts: {e}"),
        }
    }
}

/// The demo notifier: a directory standing for an e-mail relay, one file per message (see
/// the header of this file for the format). When `down`, every delivery answers
/// [`DeliveryError::Unavailable`], as a relay in an outage, and nothing is written.
#[derive(Debug, Clone)]
pub struct Mailbox {
    dir: PathBuf,
    down: bool,
}

impl Mailbox {
    /// A mailbox in `dir`, created (mode `0700`) if missing.
    ///
    /// # Errors
    /// When the directory cannot be created.
    pub fn open(dir: impl Into<PathBuf>, down: bool) -> std::io::Result<Self> {
        let dir = dir.into();
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::DirBuilderExt as _;
            let _ = builder.mode(0o700);
        }
        builder.create(&dir)?;
        Ok(Self { dir, down })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The final name of the message `delivery`.
    pub fn path_of(&self, delivery: &Delivery) -> PathBuf {
        self.dir.join(format!("{}.txt", delivery.message_id()))
    }

    /// Writes `text` as `path` atomically: a temporary file in the same directory (mode
    /// `0600`), synced, renamed over `path`, and the directory synced, so that the message
    /// is either whole under its name or not there at all.
    fn write_atomically(&self, path: &Path, text: &[u8]) -> std::io::Result<()> {
        use std::io::Write as _;
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| std::io::Error::other("a message needs a file name"))?;
        let temp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        // A leftover of a process killed mid-write (with a reused id) is ours to replace.
        let _ = std::fs::remove_file(&temp);
        let mut options = std::fs::OpenOptions::new();
        let _ = options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            let _ = options.mode(0o600);
        }
        let written = options.open(&temp).and_then(|mut file| {
            file.write_all(text)?;
            file.sync_all()
        });
        if let Err(e) = written.and_then(|()| std::fs::rename(&temp, path)) {
            let _ = std::fs::remove_file(&temp);
            return Err(e);
        }
        std::fs::File::open(&self.dir)?.sync_all()
    }
}

impl Notifier for Mailbox {
    fn deliver(&self, delivery: &Delivery) -> Result<Receipt, DeliveryError> {
        if self.down {
            return Err(DeliveryError::Unavailable(
                "the mailbox is down (PIN_HTTP_MAILBOX_DOWN)".into(),
            ));
        }
        let text = Zeroizing::new(format!(
            "Message-Id: {}\nTo: {}\nTax-Code: {}\nSerial: {}\nPart: {} of {}\nChannel: {:?}\n\nPIN: {}\n",
            delivery.message_id(),
            delivery.recipient,
            delivery.subject.as_str(),
            delivery.serial,
            delivery.part,
            delivery.of,
            delivery.channel,
            delivery.secret.expose_secret(),
        ));
        // The I/O error names the file (a message id), never the PIN.
        self.write_atomically(&self.path_of(delivery), text.as_bytes())
            .map(|()| Receipt::Sent)
            .map_err(|e| DeliveryError::Unavailable(format!("cannot write to the mailbox: {e}")))
    }
}

/// The configuration of `main`, from the environment (see the header of this file).
pub struct Config {
    pub addr: String,
    pub database: PathBuf,
    /// 32 bytes, wiped on drop; never printed.
    pub pepper: Zeroizing<[u8; 32]>,
    pub mailbox: PathBuf,
    pub mailbox_down: bool,
    pub deliver_every: Duration,
    pub retry_first: Option<chrono::TimeDelta>,
    pub claim: Option<chrono::TimeDelta>,
    pub insecure_fast_hash: bool,
    /// The temporary directory of the defaults, deleted when the configuration is dropped.
    pub temp: Option<tempfile::TempDir>,
}

/// A variable of the environment that cannot be used: its name and what it must be (never
/// its value, which may be a key).
#[derive(Debug)]
pub struct ConfigError {
    pub variable: &'static str,
    pub expected: &'static str,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} must be {}", self.variable, self.expected)
    }
}

impl std::error::Error for ConfigError {}

/// Parses 64 hex digits into 32 bytes.
pub fn parse_pepper_hex(text: &str) -> Option<Zeroizing<[u8; 32]>> {
    let text = text.trim();
    if text.len() != 64 || !text.is_ascii() {
        return None;
    }
    let mut key = Zeroizing::new([0u8; 32]);
    for (i, byte) in key.iter_mut().enumerate() {
        let pair = text.get(2 * i..2 * i + 2)?;
        *byte = u8::from_str_radix(pair, 16).ok()?;
    }
    Some(key)
}

impl Config {
    /// Reads the configuration through `var` (`std::env::var` in `main`; a map in tests).
    ///
    /// # Errors
    /// [`ConfigError`] naming the first variable that cannot be used; an I/O error when the
    /// temporary directory of the defaults cannot be made.
    pub fn from_vars(
        var: impl Fn(&'static str) -> Option<String>,
    ) -> Result<Self, Box<dyn std::error::Error>> {
        let flag = |name: &'static str| match var(name).as_deref().map(str::trim) {
            None | Some("" | "0" | "false") => Ok(false),
            Some("1" | "true") => Ok(true),
            Some(_) => Err(ConfigError {
                variable: name,
                expected: "1 or 0",
            }),
        };
        let number = |name: &'static str, expected: &'static str| {
            var(name)
                .map(|v| match v.trim().parse::<u64>() {
                    Ok(n) if n > 0 => Ok(n),
                    _ => Err(ConfigError {
                        variable: name,
                        expected,
                    }),
                })
                .transpose()
        };
        let seconds = |name: &'static str| -> Result<Option<chrono::TimeDelta>, ConfigError> {
            let bad = ConfigError {
                variable: name,
                expected: "a whole number of seconds from 1 to 86400",
            };
            match number(name, bad.expected)? {
                Some(n) if n <= 86_400 => Ok(Some(chrono::TimeDelta::seconds(
                    i64::try_from(n).unwrap_or(1),
                ))),
                Some(_) => Err(bad),
                None => Ok(None),
            }
        };
        let pepper = match var("PIN_HTTP_PEPPER_HEX") {
            Some(hex) => parse_pepper_hex(&hex).ok_or(ConfigError {
                variable: "PIN_HTTP_PEPPER_HEX",
                expected: "64 hex digits (a 32-byte key)",
            })?,
            None => {
                let mut key = Zeroizing::new([0u8; 32]);
                getrandom::fill(key.as_mut_slice())?;
                key
            }
        };
        let database = var("PIN_HTTP_DB").map(PathBuf::from);
        let mailbox = var("PIN_HTTP_MAILBOX").map(PathBuf::from);
        let temp = if database.is_none() || mailbox.is_none() {
            Some(tempfile::tempdir()?)
        } else {
            None
        };
        let in_temp = |name: &str| temp.as_ref().map(|t| t.path().join(name));
        Ok(Self {
            addr: var("PIN_HTTP_ADDR").unwrap_or_else(|| "127.0.0.1:8080".into()),
            database: database.or_else(|| in_temp("pin.db")).unwrap_or_default(),
            mailbox: mailbox.or_else(|| in_temp("mailbox")).unwrap_or_default(),
            pepper,
            mailbox_down: flag("PIN_HTTP_MAILBOX_DOWN")?,
            deliver_every: Duration::from_millis(
                number(
                    "PIN_HTTP_DELIVER_EVERY_MS",
                    "a whole number of milliseconds above 0",
                )?
                .unwrap_or(1000),
            ),
            retry_first: seconds("PIN_HTTP_DELIVERY_RETRY_SECS")?,
            claim: seconds("PIN_HTTP_DELIVERY_CLAIM_SECS")?,
            insecure_fast_hash: flag("PIN_HTTP_INSECURE_FAST_HASH")?,
            temp,
        })
    }

    /// The policy: the library's defaults, with the delivery timing and (test-only) hashing
    /// asked for.
    ///
    /// # Errors
    /// When the policy refuses a value.
    pub fn policy(&self) -> Result<pin_core::Policy, pin_core::policy::PolicyError> {
        let mut builder = pin_core::Policy::builder();
        if self.insecure_fast_hash {
            let fast = pin_core::hash::HashParams::INSECURE_FAST_FOR_TESTS;
            builder = builder.hash_live(fast).hash_floor(fast);
        }
        if let Some(first) = self.retry_first {
            builder = builder.delivery_retry_first(first);
        }
        if let Some(claim) = self.claim {
            builder = builder.delivery_claim(claim);
        }
        builder.build()
    }
}

/// Opens the database and builds the service over `notifier` in [`DeliveryMode::Deferred`]
/// (`main` runs it on a thread of the driver's own, off the runtime).
///
/// # Errors
/// When the database cannot be opened, the policy is refused, or the key is not the one
/// the database's hashes were made with.
pub fn open_service<N: Notifier>(
    config: &Config,
    notifier: N,
) -> Result<
    pin_core::service::PinService<SqliteStore, N, ChaCha20Rng>,
    Box<dyn std::error::Error + Send + Sync>,
> {
    use pin_core::hash::Keyring;
    use pin_core::secret::{KeyId, Pepper};
    use pin_core::service::{DeliveryMode, DriverOptions, PinService};
    use rand_core::SeedableRng;

    let store = SqliteStore::open(&config.database)?;
    let keys = Keyring::new(Pepper::new(KeyId(1), config.pepper.as_slice())?);
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(seed.as_mut_slice()).map_err(|e| e.to_string())?;
    let service = PinService::new(
        store,
        notifier,
        config.policy()?,
        keys,
        ChaCha20Rng::from_seed(*seed),
    )?;
    Ok(service.with_options(DriverOptions::default().with_delivery(DeliveryMode::Deferred)))
}

/// Enrols the demo employee unless already on record; the serial of the PIN issued, if one
/// was.
async fn enrol_demo(service: &Service<Mailbox>) -> Result<Option<u64>, Box<dyn std::error::Error>> {
    use pin_core::command::Enrolment;
    use pin_core::contact::{Contacts, Email};
    use pin_core::subject::Role;

    let mario = TaxCode::parse(DEMO_TAX_CODE)?;
    match service.status(&mario, now()).await {
        Ok(_) => return Ok(None),
        Err(Error::UnknownSubject(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let enrolment = Enrolment {
        role: Role::Employee,
        contacts: Contacts {
            email: Some(Email::parse("mario.rossi@example.it")?),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: chrono::NaiveDate::from_ymd_opt(2020, 9, 1),
    };
    let done = service
        .execute(
            &mario,
            &Actor::Rid("R042".into()),
            Command::Enrol(enrolment),
            now(),
        )
        .await?;
    Ok(done.subject.credential.map(|c| c.serial))
}

/// The demo's person reading the mailbox: waits for the message of `serial` to the demo
/// employee and prints its PIN line (this example plays the person; a service never
/// prints a PIN).
async fn show_demo_pin(mailbox: PathBuf, serial: u64) {
    let wanted = [
        format!("Tax-Code: {DEMO_TAX_CODE}\n"),
        format!("Serial: {serial}\n"),
    ];
    loop {
        let found = std::fs::read_dir(&mailbox).ok().and_then(|entries| {
            entries.flatten().find_map(|entry| {
                let name = entry.file_name();
                let name = name.to_str()?;
                if name.starts_with('.') || !name.ends_with(".txt") {
                    return None;
                }
                let text = Zeroizing::new(std::fs::read_to_string(entry.path()).ok()?);
                if !wanted.iter().all(|w| text.contains(w.as_str())) {
                    return None;
                }
                let pin = text.lines().find_map(|l| l.strip_prefix("PIN: "))?;
                Some((entry.path(), Zeroizing::new(pin.to_owned())))
            })
        });
        if let Some((path, pin)) = found {
            println!(
                "demo: {DEMO_TAX_CODE} found the PIN {} in the mailbox ({})",
                pin.as_str(),
                path.display()
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the service as configured by the environment; see the header of this file.
#[allow(
    dead_code,
    reason = "the test includes this file as a module and starts `app`"
)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_vars(|name| std::env::var(name).ok())?;
    if config.insecure_fast_hash {
        eprintln!("warning: PIN_HTTP_INSECURE_FAST_HASH: test-only hashing, never for real PINs");
    }
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(serve(config))
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let mailbox = Mailbox::open(&config.mailbox, config.mailbox_down)?;
    println!("database: {}", config.database.display());
    println!(
        "mailbox: {}{}",
        mailbox.dir().display(),
        if config.mailbox_down { " (down)" } else { "" }
    );
    let config = std::sync::Arc::new(config);
    let opening = std::sync::Arc::clone(&config);
    let service: Service<Mailbox> =
        AsyncPinService::open_with(pin_async::PoolOptions::default(), move || {
            open_service(&opening, mailbox)
        })
        .await
        // `Box<dyn Error>` is no `Error` itself, so the start error is passed on as text.
        .map_err(|e| e.to_string())?;

    match enrol_demo(&service).await? {
        Some(serial) => {
            println!("demo: enrolled {DEMO_TAX_CODE}; the delivery worker sends the PIN");
            drop(tokio::spawn(show_demo_pin(config.mailbox.clone(), serial)));
        }
        None => println!("demo: {DEMO_TAX_CODE} is already on record"),
    }
    drop(tokio::spawn(delivery_worker(
        service.clone(),
        config.deliver_every,
    )));

    let listener = tokio::net::TcpListener::bind(&config.addr).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app(service)).await?;
    Ok(())
}
