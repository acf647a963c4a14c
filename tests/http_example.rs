//! Starts the `http_service` example's router on a free local port and drives it over HTTP
//! (a tiny HTTP/1.1 client on `std::net::TcpStream`).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

#[path = "../examples/http_service.rs"]
#[allow(dead_code, reason = "the example's `main` is not used here")]
mod http_service;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pin_core::command::{Check, Command, Enrolment};
use pin_core::contact::{Contacts, Email};
use pin_core::hash::{HashParams, Keyring};
use pin_core::notify::MemoryOutbox;
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::PinService;
use pin_core::subject::Role;
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Policy};
use pin_sqlite::SqliteStore;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use serde_json::{Value, json};

const MARIO: &str = "RSSMRA85T10A562S"; // NoiPA employee
const ANNA: &str = "BNCGNN70A41H501V"; // INPS citizen
const UNKNOWN: &str = "XXXYYY99E71L219V"; // well-formed, not on record
const GIULIA: &str = "VRDLCU01M29Z404A"; // NoiPA employee with a CNS: no PIN

type Service = http_service::Service<MemoryOutbox>;

/// POSTs `body` as JSON and returns the status and the JSON answer.
fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer).unwrap();
    let status: u16 = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let (_, json) = answer.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

struct Running {
    addr: SocketAddr,
    service: Arc<Service>,
    _runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
}

fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let fast = HashParams::INSECURE_FAST_FOR_TESTS;
    let policy = Policy::builder()
        .hash_live(fast)
        .hash_floor(fast)
        .build()
        .unwrap();
    let service = Arc::new(
        PinService::new(
            SqliteStore::open(dir.path().join("pin.db")).unwrap(),
            MemoryOutbox::new(),
            policy,
            Keyring::new(Pepper::new(KeyId(1), &[9u8; 32]).unwrap()),
            ChaCha20Rng::seed_from_u64(5),
        )
        .unwrap(),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http_service::app(Arc::clone(&service), 2);
    runtime.spawn(async move { axum::serve(listener, app).await });
    Running {
        addr,
        service,
        _runtime: runtime,
        _dir: dir,
    }
}

fn tax(s: &str) -> TaxCode {
    TaxCode::parse(s).unwrap()
}

fn enrol(r: &Running, code: &str, role: Role, email: &str, cns: bool) {
    let enrolment = Enrolment {
        role,
        contacts: Contacts {
            email: Some(Email::parse(email).unwrap()),
            ..Contacts::default()
        },
        cns_holder: cns,
        enrolled_on: (role == Role::Employee)
            .then(|| chrono::NaiveDate::from_ymd_opt(2020, 9, 1))
            .flatten(),
    };
    let actor = if role == Role::Employee {
        Actor::Rid("R042".into())
    } else {
        Actor::Subject
    };
    let _done = r
        .service
        .execute(
            &tax(code),
            &actor,
            &Command::Enrol(enrolment),
            http_service::now(),
        )
        .unwrap();
}

/// The newest PIN (or part) delivered to `code`, as the person reads it.
fn mailbox(r: &Running, code: &str) -> Option<String> {
    r.service
        .notifier()
        .take()
        .into_iter()
        .rev()
        .find(|m| m.delivery.subject.as_str() == code)
        .map(|m| m.delivery.secret.expose_secret().to_owned())
}

fn verify(r: &Running, code: &str, pin: &str) -> (u16, Value) {
    post(
        r.addr,
        "/pin/verify",
        &json!({ "tax_code": code, "pin": pin }),
    )
}

#[test]
fn verify_answers_the_same_for_every_kind_of_no() {
    let r = start();
    enrol(&r, MARIO, Role::Employee, "mario.rossi@example.it", false);
    enrol(&r, GIULIA, Role::Employee, "giulia.verdi@example.it", true);
    let pin = mailbox(&r, MARIO).unwrap();

    assert_eq!(verify(&r, MARIO, &pin), (200, json!({ "ok": true })));

    let denied = (401, json!({ "ok": false }));
    let wrong = if pin == "13579" { "24680" } else { "13579" };
    assert_eq!(verify(&r, MARIO, wrong), denied, "wrong PIN");
    assert_eq!(verify(&r, UNKNOWN, "13579"), denied, "unknown subject");
    assert_eq!(verify(&r, GIULIA, "13579"), denied, "subject without a PIN");
    assert_eq!(
        verify(&r, MARIO, "12ab"),
        denied,
        "malformed PIN, subject on record"
    );
    assert_eq!(
        verify(&r, UNKNOWN, "12ab"),
        denied,
        "malformed PIN, unknown subject"
    );
    assert_eq!(verify(&r, "not-a-tax-code", "13579"), denied);
    // INPS-12 / POL-1: locked after 10 wrong attempts — and still the same answer, even
    // with the right PIN.
    for _ in 0..10 {
        assert_eq!(verify(&r, MARIO, wrong), denied);
    }
    assert_eq!(verify(&r, MARIO, &pin), denied, "locked");

    // The PIN is never taken from the URL.
    let (status, _) = post(
        r.addr,
        &format!("/pin/verify?tax_code={MARIO}&pin={pin}"),
        &json!({}),
    );
    assert_eq!(status, 422, "the body is required");
}

#[test]
fn change_and_resend_over_http() {
    let r = start();
    enrol(&r, ANNA, Role::Citizen, "anna.bianchi@example.it", false);
    // INPS-5: a branch counter hands over a sealed envelope with 16 characters.
    let _issued = r
        .service
        .execute(
            &tax(ANNA),
            &Actor::BranchOperator("B7".into()),
            &Command::BranchRequest {
                identity_document: Check::Passed,
                on_behalf: None,
            },
            http_service::now(),
        )
        .unwrap();
    let pin16 = mailbox(&r, ANNA).unwrap();
    assert_eq!(pin16.len(), 16);

    // INPS-3: the right 16 characters must be changed first.
    assert_eq!(
        verify(&r, ANNA, &pin16),
        (403, json!({ "ok": false, "change_required": true }))
    );
    let change = |current: &str, new: Option<&str>| {
        post(
            r.addr,
            "/pin/change",
            &json!({ "tax_code": ANNA, "current": current, "new": new }),
        )
    };
    assert_eq!(
        change(&pin16, Some("AAAAAAAA")),
        (
            400,
            json!({ "ok": false, "error": "new_pin_not_acceptable" })
        )
    );
    let wrong16 = "ABCDEFGHJKLMNPQR";
    assert_eq!(
        change(wrong16, Some("K7QM2ZXA")),
        (401, json!({ "ok": false }))
    );
    assert_eq!(
        post(
            r.addr,
            "/pin/change",
            &json!({ "tax_code": UNKNOWN, "current": wrong16, "new": "K7QM2ZXA" })
        ),
        (401, json!({ "ok": false })),
        "unknown subject: the same answer"
    );
    assert_eq!(
        change(&pin16, Some("K7QM2ZXA")),
        (200, json!({ "ok": true }))
    );
    assert_eq!(verify(&r, ANNA, "K7QM2ZXA"), (200, json!({ "ok": true })));

    // Re-send: the same answer for a subject on record and for one that is not; the work
    // happens after the answer.
    enrol(&r, MARIO, Role::Employee, "mario.rossi@example.it", false);
    let first = mailbox(&r, MARIO).unwrap();
    let accepted = (202, json!({ "ok": true }));
    assert_eq!(
        post(r.addr, "/pin/resend", &json!({ "tax_code": UNKNOWN })),
        accepted
    );
    assert_eq!(
        post(r.addr, "/pin/resend", &json!({ "tax_code": MARIO })),
        accepted
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let fresh = loop {
        if let Some(p) = mailbox(&r, MARIO) {
            break p;
        }
        assert!(Instant::now() < deadline, "the re-sent PIN never arrived");
        std::thread::sleep(Duration::from_millis(20));
    };
    // BOTH-1: only the last PIN issued is valid.
    assert_eq!(verify(&r, MARIO, &fresh), (200, json!({ "ok": true })));
    if first != fresh {
        assert_eq!(verify(&r, MARIO, &first), (401, json!({ "ok": false })));
    }
}
