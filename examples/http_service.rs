//! # A small HTTP service embedding `PinService` (axum on tokio)
//!
//! What it shows:
//! - `PinService<SqliteStore, N, ChaCha20Rng>` shared by every request (`Arc`), with the
//!   Argon2 work moved off the async executor: each PIN check runs in
//!   `tokio::task::spawn_blocking`, and a semaphore bounds how many run at once (one per
//!   core), so a burst of logins queues instead of starving the runtime or the memory
//!   (each Argon2id hash takes 19 MiB with the default policy).
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
//! - `/pin/resend` `{"tax_code"}` → always `202 {"ok":true}`: the re-send (a fresh PIN to
//!   the contacts on record, POL-3, rate-limited by POL-4) runs after the answer, so neither
//!   the answer nor its timing tells whether the subject exists.
//!
//! Run it: `cargo run --example http_service` (listens on `127.0.0.1:8080`, or on
//! `$PIN_HTTP_ADDR`; it enrols a demo employee and prints the PIN the mailbox received),
//! then for example:
//! `curl -s -X POST localhost:8080/pin/verify -H 'content-type: application/json'
//! -d '{"tax_code":"RSSMRA85T10A562S","pin":"…"}'`.
//! Its test, `tests/http_example.rs`, starts it on a free port and drives it over HTTP.
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

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use pin_core::Level;
use pin_core::VerifyOutcome;
use pin_core::command::Command;
use pin_core::notify::Notifier;
use pin_core::service::{ChangeOutcome, PinService};
use pin_core::tax_code::TaxCode;
use pin_core::verify::ExpiryReason;
use pin_core::{Actor, Error};
use pin_sqlite::SqliteStore;
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Deserializer};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use zeroize::Zeroizing;

/// The service as this application embeds it.
pub type Service<N> = PinService<SqliteStore, N, ChaCha20Rng>;

/// What every handler shares.
pub struct AppState<N> {
    service: Arc<Service<N>>,
    /// Bounds the Argon2 work running at once.
    argon2: Arc<Semaphore>,
}

impl<N> Clone for AppState<N> {
    fn clone(&self) -> Self {
        Self {
            service: Arc::clone(&self.service),
            argon2: Arc::clone(&self.argon2),
        }
    }
}

/// The router: build it with the service and how many PIN checks may run at once.
pub fn app<N: Notifier + Send + Sync + 'static>(
    service: Arc<Service<N>>,
    concurrent_hashes: usize,
) -> Router {
    Router::new()
        .route("/pin/verify", post(verify::<N>))
        .route("/pin/change", post(change::<N>))
        .route("/pin/resend", post(resend::<N>))
        .with_state(AppState {
            service,
            argon2: Arc::new(Semaphore::new(concurrent_hashes.max(1))),
        })
}

/// A PIN from a request body: zeroized when dropped and never shown by `Debug`. (The bytes
/// of the HTTP body itself are the web stack's and are not zeroized.)
pub struct SecretText(Zeroizing<String>);

impl<'de> Deserialize<'de> for SecretText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| Self(Zeroizing::new(s)))
    }
}

impl std::fmt::Debug for SecretText {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretText(..)")
    }
}

#[derive(Debug, Deserialize)]
pub struct VerifyRequest {
    tax_code: String,
    pin: SecretText,
    level: Option<Level>,
}

#[derive(Debug, Deserialize)]
pub struct ChangeRequest {
    tax_code: String,
    current: SecretText,
    new: Option<SecretText>,
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

/// Runs `work` (which hashes) on the blocking pool, at most as many at once as the
/// semaphore allows.
async fn off_executor<T: Send + 'static>(
    permits: &Arc<Semaphore>,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let permit = Arc::clone(permits).acquire_owned().await.ok()?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .ok()
}

async fn verify<N: Notifier + Send + Sync + 'static>(
    State(state): State<AppState<N>>,
    Json(req): Json<VerifyRequest>,
) -> Answer {
    let Ok(tax) = TaxCode::parse(&req.tax_code) else {
        return denied();
    };
    let service = Arc::clone(&state.service);
    let level = req.level.unwrap_or(Level::Online);
    let outcome = off_executor(&state.argon2, move || {
        service.verify(&tax, &req.pin.0, level, now())
    })
    .await;
    match outcome {
        Some(Ok(VerifyOutcome::Accepted { .. })) => (StatusCode::OK, Json(json!({ "ok": true }))),
        // Told only after the right PIN was compared.
        Some(Ok(
            VerifyOutcome::MustChange
            | VerifyOutcome::Expired {
                reason: ExpiryReason::Rotation,
            },
        )) => (
            StatusCode::FORBIDDEN,
            Json(json!({ "ok": false, "change_required": true })),
        ),
        // Defended mode (pin_core::population): run a challenge, then retry with its proof.
        // Said alike of every tax code, on record or not.
        Some(Ok(VerifyOutcome::ChallengeRequired)) => (
            StatusCode::FORBIDDEN,
            Json(json!({ "ok": false, "challenge_required": true })),
        ),
        Some(Ok(VerifyOutcome::InsufficientLevel { .. })) => (
            StatusCode::FORBIDDEN,
            Json(json!({ "ok": false, "insufficient_level": true })),
        ),
        // A malformed PIN is refused before any lookup for a subject on record, but not for
        // an unknown one: answering it differently would reveal who is on record.
        Some(Ok(_) | Err(Error::Input(_))) | None => denied(),
        Some(Err(e)) => internal(&e),
    }
}

async fn change<N: Notifier + Send + Sync + 'static>(
    State(state): State<AppState<N>>,
    Json(req): Json<ChangeRequest>,
) -> Answer {
    let Ok(tax) = TaxCode::parse(&req.tax_code) else {
        return denied();
    };
    // The new PIN is checked first, before anything is looked up: this answer says
    // nothing about the subject.
    let acceptable = |new: &SecretText| {
        pin_core::format::parse_chosen(pin_core::format::PinFormat::InpsInUse8, &new.0).is_ok()
    };
    if req.new.as_ref().is_some_and(|new| !acceptable(new)) {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "ok": false, "error": "new_pin_not_acceptable" })),
        );
    }
    let service = Arc::clone(&state.service);
    let result = off_executor(&state.argon2, move || {
        let new = req.new.as_ref().map(|n| n.0.as_str());
        service.change_pin(&tax, &req.current.0, new, now())
    })
    .await;
    match result {
        Some(Ok(ChangeOutcome::Changed { revealed: None })) => {
            (StatusCode::OK, Json(json!({ "ok": true })))
        }
        // The system chose the new PIN: shown to the person who proved the old one.
        Some(Ok(ChangeOutcome::Changed {
            revealed: Some(pin),
        })) => (
            StatusCode::OK,
            Json(json!({ "ok": true, "generated": pin.expose_secret() })),
        ),
        // Not authenticated, unknown subject, malformed current PIN, and refusals (a NoiPA
        // PIN cannot be changed: saying so would reveal the subject is on record).
        Some(Ok(ChangeOutcome::NotAuthenticated(_)))
        | Some(Err(Error::Input(_) | Error::Refused(_) | Error::UnknownSubject(_)))
        | None => denied(),
        Some(Err(e)) => internal(&e),
    }
}

async fn resend<N: Notifier + Send + Sync + 'static>(
    State(state): State<AppState<N>>,
    Json(req): Json<ResendRequest>,
) -> Answer {
    if let Ok(tax) = TaxCode::parse(&req.tax_code) {
        let service = Arc::clone(&state.service);
        let permits = Arc::clone(&state.argon2);
        // Answer first, work after: the answer and its timing are the same for everyone.
        tokio::spawn(async move {
            let done = off_executor(&permits, move || {
                service.execute(&tax, &Actor::Subject, &Command::Resend, now())
            })
            .await;
            match done {
                Some(Ok(_)) | Some(Err(Error::Refused(_) | Error::UnknownSubject(_))) | None => {}
                Some(Err(e)) => eprintln!("pin service error on resend: {e}"),
            }
        });
    }
    (StatusCode::ACCEPTED, Json(json!({ "ok": true })))
}

/// Runs the service with a demo employee on a throw-away database.
#[allow(
    dead_code,
    reason = "the test includes this file as a module and starts `app`"
)]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use pin_core::command::Enrolment;
    use pin_core::contact::{Contacts, Email};
    use pin_core::hash::Keyring;
    use pin_core::notify::MemoryOutbox;
    use pin_core::secret::{KeyId, Pepper};
    use pin_core::subject::Role;
    use rand_core::SeedableRng;

    let dir = tempfile::tempdir()?;
    let store = SqliteStore::open(dir.path().join("pin.db"))?;
    // A real service keeps the pepper in its secrets manager and seeds from the OS.
    let mut pepper = Zeroizing::new([0u8; 32]);
    getrandom::fill(pepper.as_mut_slice())?;
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed)?;
    let keys = Keyring::new(Pepper::new(KeyId(1), pepper.as_slice())?);
    let service = Arc::new(PinService::new(
        store,
        MemoryOutbox::new(),
        pin_core::Policy::default(),
        keys,
        ChaCha20Rng::from_seed(seed),
    )?);

    let mario = TaxCode::parse("RSSMRA85T10A562S")?;
    let enrolment = Enrolment {
        role: Role::Employee,
        contacts: Contacts {
            email: Some(Email::parse("mario.rossi@example.it")?),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: chrono::NaiveDate::from_ymd_opt(2020, 9, 1),
    };
    let _enrolled = service.execute(
        &mario,
        &Actor::Rid("R042".into()),
        &Command::Enrol(enrolment),
        now(),
    )?;
    for m in service.notifier().take() {
        println!(
            "demo: {} received by e-mail the PIN {} (this example plays the mailbox)",
            m.delivery.subject,
            m.delivery.secret.expose_secret()
        );
    }

    let addr = std::env::var("PIN_HTTP_ADDR").unwrap_or_else(|_| "127.0.0.1:8080".into());
    let hashes = std::thread::available_parallelism().map_or(2, usize::from);
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!("listening on http://{}", listener.local_addr()?);
        axum::serve(listener, app(service, hashes)).await
    })?;
    Ok(())
}
