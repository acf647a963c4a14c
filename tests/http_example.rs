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
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pin_async::{AsyncPinService, PoolOptions};
use pin_core::command::{Check, Command, Delivery, Enrolment};
use pin_core::contact::{Contacts, Email};
use pin_core::notify::{DeliveryError, MemoryOutbox, Notifier, Receipt};
use pin_core::store::Store;
use pin_core::subject::Role;
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Policy};
use pin_sqlite::SqliteOptions;
use serde_json::{Value, json};

const MARIO: &str = "RSSMRA85T10A562S"; // NoiPA employee
const ANNA: &str = "BNCGNN70A41H501V"; // INPS citizen
const UNKNOWN: &str = "XXXYYY99E71L219V"; // well-formed, not on record
const GIULIA: &str = "VRDLCU01M29Z404A"; // NoiPA employee with a CNS: no PIN

/// Every wait of these tests is bounded by this.
const PATIENCE: Duration = Duration::from_secs(30);

type Service<N = MemoryOutbox> = http_service::Service<N>;

/// POSTs `body` as JSON and returns the status and the JSON answer.
fn post(addr: SocketAddr, path: &str, body: &Value) -> (u16, Value) {
    let body = body.to_string();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(PATIENCE)).unwrap();
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    s.read_to_string(&mut answer)
        .unwrap_or_else(|e| panic!("no answer to {path} within {PATIENCE:?}: {e}"));
    let status: u16 = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let (_, json) = answer.split_once("\r\n\r\n").unwrap();
    (status, serde_json::from_str(json).unwrap_or(Value::Null))
}

struct Running<N = MemoryOutbox> {
    addr: SocketAddr,
    service: Service<N>,
    runtime: tokio::runtime::Runtime,
    dir: tempfile::TempDir,
}

/// The service as the example's `main` builds it (`open_service`: deferred delivery), with
/// its test-only fast hashing, on a pool of two threads, over a database in `dir`.
fn service_in<N: Notifier + Send + Sync + 'static>(
    dir: &tempfile::TempDir,
    notifier: N,
) -> Service<N> {
    let db = dir.path().join("pin.db");
    let config = http_service::Config::from_vars(vars(&[
        ("PIN_HTTP_DB", db.to_str().unwrap()),
        ("PIN_HTTP_MAILBOX", dir.path().to_str().unwrap()),
        ("PIN_HTTP_PEPPER_HEX", &"09".repeat(32)),
        ("PIN_HTTP_INSECURE_FAST_HASH", "1"),
    ]))
    .unwrap();
    let service = http_service::open_service(&config, notifier).unwrap();
    let two = std::num::NonZeroUsize::new(2).unwrap();
    AsyncPinService::with_options(service, PoolOptions::default().with_threads(two)).unwrap()
}

/// The router on a free local port, with the example's delivery worker running every
/// 20 ms when `worker`.
fn start_with<N: Notifier + Send + Sync + 'static>(notifier: N, worker: bool) -> Running<N> {
    let dir = tempfile::tempdir().unwrap();
    let service = service_in(&dir, notifier);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let app = http_service::app(service.clone());
    runtime.spawn(async move { axum::serve(listener, app).await });
    if worker {
        runtime.spawn(http_service::delivery_worker(
            service.clone(),
            Duration::from_millis(20),
        ));
    }
    Running {
        addr,
        service,
        runtime,
        dir,
    }
}

fn start() -> Running {
    start_with(MemoryOutbox::new(), true)
}

fn tax(s: &str) -> TaxCode {
    TaxCode::parse(s).unwrap()
}

fn enrol<N: Notifier + Send + Sync + 'static>(
    r: &Running<N>,
    code: &str,
    role: Role,
    email: &str,
    cns: bool,
) {
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
        .runtime
        .block_on(r.service.execute(
            &tax(code),
            &actor,
            Command::Enrol(enrolment),
            http_service::now(),
        ))
        .unwrap();
}

/// Takes what the outbox received so far.
fn take(r: &Running) -> Vec<pin_core::notify::OutboxMessage> {
    r.runtime
        .block_on(r.service.run(|svc| svc.notifier().take()))
}

/// The newest PIN (or part) delivered to `code`, as the person reads it, once the delivery
/// worker has delivered something to them (at most [`PATIENCE`]); what else the outbox
/// holds is dropped.
fn mailbox(r: &Running, code: &str) -> String {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let newest = take(r)
            .into_iter()
            .rev()
            .find(|m| m.delivery.subject.as_str() == code)
            .map(|m| m.delivery.secret.expose_secret().to_owned());
        if let Some(pin) = newest {
            return pin;
        }
        assert!(
            Instant::now() < deadline,
            "no PIN reached {code} within {PATIENCE:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The serial of `code`'s current credential, read from the database by a read-only store.
fn serial_on_record<N>(r: &Running<N>, code: &str) -> Option<u64> {
    let reader = SqliteOptions::new()
        .read_only(true)
        .open(r.dir.path().join("pin.db"))
        .unwrap();
    reader
        .load(&tax(code))
        .unwrap()
        .and_then(|l| l.subject.credential)
        .map(|c| c.serial)
}

fn verify<N>(r: &Running<N>, code: &str, pin: &str) -> (u16, Value) {
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
    let pin = mailbox(&r, MARIO);

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
        .runtime
        .block_on(r.service.execute(
            &tax(ANNA),
            &Actor::BranchOperator("B7".into()),
            Command::BranchRequest {
                identity_document: Check::Passed,
                on_behalf: None,
            },
            http_service::now(),
        ))
        .unwrap();
    let pin16 = mailbox(&r, ANNA);
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
    let first = mailbox(&r, MARIO);
    let accepted = (202, json!({ "ok": true }));
    assert_eq!(
        post(r.addr, "/pin/resend", &json!({ "tax_code": UNKNOWN })),
        accepted
    );
    assert_eq!(
        post(r.addr, "/pin/resend", &json!({ "tax_code": MARIO })),
        accepted
    );
    // The delivery worker brings the fresh PIN (POL-3: a re-send is a fresh issue).
    let fresh = mailbox(&r, MARIO);
    // BOTH-1: only the last PIN issued is valid.
    assert_eq!(verify(&r, MARIO, &fresh), (200, json!({ "ok": true })));
    if first != fresh {
        assert_eq!(verify(&r, MARIO, &first), (401, json!({ "ok": false })));
    }
}

#[test]
fn resend_is_answered_before_the_work() {
    let r = start();
    enrol(&r, MARIO, Role::Employee, "mario.rossi@example.it", false);
    let first = mailbox(&r, MARIO);
    let before = serial_on_record(&r, MARIO).unwrap();

    // Both threads of the driver's pool are held busy: any request that waited for PIN work
    // would get no answer until they are released.
    let (started_tx, started_rx) = mpsc::channel();
    let mut releases = Vec::new();
    for _ in 0..2 {
        let (release_tx, release_rx) = mpsc::channel::<()>();
        releases.push(release_tx);
        let started = started_tx.clone();
        drop(r.runtime.spawn(r.service.run(move |_| {
            started.send(()).unwrap();
            let _released = release_rx.recv_timeout(PATIENCE);
        })));
    }
    for _ in 0..2 {
        started_rx
            .recv_timeout(PATIENCE)
            .expect("the pool never took the calls that hold it");
    }
    assert_eq!(
        post(r.addr, "/pin/resend", &json!({ "tax_code": MARIO })),
        (202, json!({ "ok": true })),
        "answered while no PIN work can run"
    );
    assert_eq!(
        serial_on_record(&r, MARIO),
        Some(before),
        "the answer came before the re-send was issued"
    );
    drop(releases);

    // POL-3: the re-send is a fresh issue, which the delivery worker brings.
    let fresh = mailbox(&r, MARIO);
    assert!(serial_on_record(&r, MARIO).unwrap() > before);
    // BOTH-1: only the last PIN issued is valid.
    assert_eq!(verify(&r, MARIO, &fresh), (200, json!({ "ok": true })));
    if first != fresh {
        assert_eq!(verify(&r, MARIO, &first), (401, json!({ "ok": false })));
    }
}

/// The example's mailbox, with a copy of each delivery kept in memory to compare with.
struct Tee {
    mailbox: http_service::Mailbox,
    copy: MemoryOutbox,
}

impl Notifier for Tee {
    fn deliver(&self, delivery: &Delivery) -> Result<Receipt, DeliveryError> {
        let receipt = self.mailbox.deliver(delivery)?;
        let _copied = self.copy.deliver(delivery)?;
        Ok(receipt)
    }
}

fn files_in(dir: &std::path::Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

#[test]
fn the_mailbox_writes_each_message_whole_named_by_its_message_id() {
    let boxes = tempfile::tempdir().unwrap();
    let tee = Tee {
        mailbox: http_service::Mailbox::open(boxes.path().join("mailbox"), false).unwrap(),
        copy: MemoryOutbox::new(),
    };
    let r = start_with(tee, false);
    enrol(&r, MARIO, Role::Employee, "mario.rossi@example.it", false);
    let dir = boxes.path().join("mailbox");
    assert!(
        files_in(&dir).is_empty(),
        "deferred: nothing sent by the request"
    );

    let run = r
        .runtime
        .block_on(http_service::deliver_once(&r.service, http_service::now()))
        .unwrap();
    assert_eq!((run.delivered(), run.deferred(), run.failed()), (1, 0, 0));
    let sent = r
        .runtime
        .block_on(r.service.run(|svc| svc.notifier().copy.take()));
    let [m] = sent.as_slice() else {
        panic!("one message expected, got {}", sent.len())
    };
    let id = m.delivery.message_id();
    assert_eq!(
        files_in(&dir),
        vec![format!("{id}.txt")],
        "no temporary file left"
    );
    let path = dir.join(format!("{id}.txt"));
    let text = std::fs::read_to_string(&path).unwrap();
    let pin = m.delivery.secret.expose_secret();
    assert!(text.lines().any(|l| l == format!("PIN: {pin}")), "{text}");
    assert!(text.contains(&format!("Message-Id: {id}\n")));
    assert!(text.contains(&format!(
        "Tax-Code: {MARIO}\nSerial: {}\n",
        m.delivery.serial
    )));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "only the owner reads a message");
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700, "only the owner lists the mailbox");
    }
    // The PIN in the file is the one on record.
    assert_eq!(verify(&r, MARIO, pin), (200, json!({ "ok": true })));
}

#[test]
fn a_mailbox_that_is_down_defers_and_writes_nothing() {
    let boxes = tempfile::tempdir().unwrap();
    let down = http_service::Mailbox::open(boxes.path().join("mailbox"), true).unwrap();
    let r = start_with(down, false);
    enrol(&r, MARIO, Role::Employee, "mario.rossi@example.it", false);
    let run = r
        .runtime
        .block_on(http_service::deliver_once(&r.service, http_service::now()))
        .unwrap();
    assert_eq!(
        (run.delivered(), run.deferred(), run.failed()),
        (0, 1, 0),
        "unavailable: due again later, not failed"
    );
    assert!(files_in(&boxes.path().join("mailbox")).is_empty());
    // The part waits, sealed, for the next run (which the restart test shows delivering).
    let reader = SqliteOptions::new()
        .read_only(true)
        .open(r.dir.path().join("pin.db"))
        .unwrap();
    let cred = reader
        .load(&tax(MARIO))
        .unwrap()
        .unwrap()
        .subject
        .credential
        .unwrap();
    let queued = cred.parts[0].queued.as_ref().expect("still queued");
    assert_eq!(queued.tries, 1);
}

fn vars(pairs: &[(&'static str, &str)]) -> impl Fn(&'static str) -> Option<String> {
    let pairs: Vec<(&'static str, String)> =
        pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect();
    move |name| {
        pairs
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    }
}

#[test]
fn the_configuration_refuses_bad_values_by_name_and_never_echoes_a_key() {
    let bad_keys = [
        "zz".repeat(32),
        "ab".repeat(31) + "a",
        "ab".repeat(33),
        "é".repeat(32),
    ];
    for key in &bad_keys {
        let Err(e) = http_service::Config::from_vars(vars(&[("PIN_HTTP_PEPPER_HEX", key)])) else {
            panic!("a pepper of {} characters was taken", key.len())
        };
        let message = e.to_string();
        assert_eq!(
            message,
            "PIN_HTTP_PEPPER_HEX must be 64 hex digits (a 32-byte key)"
        );
        assert!(!message.contains(key.as_str()));
    }
    for (name, value) in [
        ("PIN_HTTP_MAILBOX_DOWN", "yes"),
        ("PIN_HTTP_INSECURE_FAST_HASH", "2"),
        ("PIN_HTTP_DELIVER_EVERY_MS", "0"),
        ("PIN_HTTP_DELIVER_EVERY_MS", "soon"),
        ("PIN_HTTP_DELIVERY_RETRY_SECS", "0"),
        ("PIN_HTTP_DELIVERY_CLAIM_SECS", "86401"),
    ] {
        let Err(e) = http_service::Config::from_vars(vars(&[(name, value)])) else {
            panic!("{name}={value} was taken")
        };
        assert!(e.to_string().starts_with(name), "{e}");
    }

    let key = "00112233445566778899aabbccddeeff00112233445566778899AABBCCDDEEFF";
    let c = http_service::Config::from_vars(vars(&[
        ("PIN_HTTP_PEPPER_HEX", key),
        ("PIN_HTTP_MAILBOX_DOWN", "1"),
        ("PIN_HTTP_DELIVER_EVERY_MS", "250"),
        ("PIN_HTTP_DELIVERY_RETRY_SECS", "2"),
        ("PIN_HTTP_DELIVERY_CLAIM_SECS", "3"),
    ]))
    .unwrap();
    assert_eq!(c.pepper[..4], [0x00, 0x11, 0x22, 0x33]);
    assert_eq!(c.pepper[31], 0xff);
    assert!(c.mailbox_down);
    assert_eq!(c.deliver_every, Duration::from_millis(250));
    let policy = c.policy().unwrap();
    assert_eq!(policy.delivery_retry_first(), chrono::TimeDelta::seconds(2));
    assert_eq!(policy.delivery_claim(), chrono::TimeDelta::seconds(3));
    assert_eq!(policy.hash_live(), Policy::default().hash_live());

    // The defaults: a temporary directory for the database and the mailbox, a random key.
    let a = http_service::Config::from_vars(vars(&[])).unwrap();
    let b = http_service::Config::from_vars(vars(&[])).unwrap();
    let temp = a.temp.as_ref().unwrap().path();
    assert_eq!(a.database, temp.join("pin.db"));
    assert_eq!(a.mailbox, temp.join("mailbox"));
    assert_ne!(*a.pepper, *b.pepper);
    assert!(!a.mailbox_down && !a.insecure_fast_hash);
    assert_eq!(a.deliver_every, Duration::from_secs(1));
    assert_eq!(a.policy().unwrap(), Policy::default());
}
