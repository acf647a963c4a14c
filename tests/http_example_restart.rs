//! Runs the `http_service` example as a process, kills it (SIGKILL) after a re-send was
//! committed while its mailbox was down, starts it again on the same database, key and
//! mailbox (now up), and shows the PIN of the re-send still arrives and works over HTTP.
//!
//! The example's binary: `cargo test` builds the package's examples before it runs the tests,
//! at `target/<profile>/examples/http_service`; this test's own binary is
//! `target/<profile>/deps/http_example_restart-<hash>`, so the example is found from
//! [`std::env::current_exe`] as `../examples/http_service`. A filtered run
//! (`cargo test --test http_example_restart`) does not build examples: build it first with
//! `cargo build --example http_service` (the test says so if it is missing or older than
//! the example's source).
#![cfg(unix)]
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pin_core::store::Store;
use pin_core::subject::{Credential, DeliveryState};
use pin_core::tax_code::TaxCode;
use pin_sqlite::SqliteOptions;
use serde_json::{Value, json};

/// The demo employee the example enrols at start.
const MARIO: &str = "RSSMRA85T10A562S";

/// Every wait of this test is bounded by this.
const PATIENCE: Duration = Duration::from_secs(30);

/// A fixed pepper, so that every run opens the same database.
const KEY: &str = "5e1f6a0c9b8d7e2f3a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9012";

/// The example's binary, next to this test's (see the module docs).
fn example_binary() -> PathBuf {
    let me = std::env::current_exe().unwrap();
    // target/<profile>/deps/<this test> → target/<profile>/examples/http_service
    let profile_dir = me.parent().and_then(Path::parent).unwrap();
    let bin = profile_dir.join("examples").join("http_service");
    let built = std::fs::metadata(&bin).and_then(|m| m.modified());
    let Ok(built) = built else {
        panic!(
            "the example is not built at {}: run `cargo test` (which builds the examples) or \
             `cargo build --example http_service` first",
            bin.display()
        )
    };
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/http_service.rs");
    let written = std::fs::metadata(&source)
        .and_then(|m| m.modified())
        .unwrap();
    assert!(
        built >= written,
        "{} is older than {}: rebuild it with `cargo build --example http_service`",
        bin.display(),
        source.display()
    );
    bin
}

/// One run of the example; killed (SIGKILL) when dropped, so that a failing test leaves no
/// process behind.
struct Example {
    child: std::process::Child,
    addr: SocketAddr,
    log: PathBuf,
}

impl Example {
    /// Starts the example on the database, key and mailbox of `dir`, and waits until it
    /// listens.
    fn start(dir: &Path, run: &str, mailbox_down: bool) -> Self {
        let mut example = Self::spawn(dir, run, mailbox_down, KEY);
        let line = example.wait_for(&format!("{run}: listening"), |log| {
            log.lines()
                .find_map(|l| l.strip_prefix("listening on http://"))
                .map(str::to_owned)
        });
        example.addr = line.parse().unwrap();
        example
    }

    /// Starts the example with `key`, not waiting for anything.
    fn spawn(dir: &Path, run: &str, mailbox_down: bool, key: &str) -> Self {
        let log = dir.join(format!("{run}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(example_binary())
            .env("PIN_HTTP_ADDR", "127.0.0.1:0")
            .env("PIN_HTTP_DB", dir.join("pin.db"))
            .env("PIN_HTTP_PEPPER_HEX", key)
            .env("PIN_HTTP_MAILBOX", dir.join("mailbox"))
            .env(
                "PIN_HTTP_MAILBOX_DOWN",
                if mailbox_down { "1" } else { "0" },
            )
            .env("PIN_HTTP_INSECURE_FAST_HASH", "1")
            .env("PIN_HTTP_DELIVER_EVERY_MS", "100")
            // A part the outage deferred is due again 1 s later (then 2 s, …), and parts a
            // killed worker had claimed are free again after 2 s: the waits below stay short.
            .env("PIN_HTTP_DELIVERY_RETRY_SECS", "1")
            .env("PIN_HTTP_DELIVERY_CLAIM_SECS", "2")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap();
        Self {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            log,
        }
    }

    /// Waits (at most [`PATIENCE`]) for the process to exit by itself.
    fn wait_for_exit(&mut self, what: &str) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: still running after {PATIENCE:?}; its output:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `probe` with the log until it answers, the process exits, or [`PATIENCE`]
    /// passes; the last two fail with `what` and the log.
    fn wait_for<T>(&mut self, what: &str, mut probe: impl FnMut(&str) -> Option<T>) -> T {
        let deadline = Instant::now() + PATIENCE;
        loop {
            let log = self.log();
            if let Some(found) = probe(&log) {
                return found;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("the example exited ({status}) before {what}; its output:\n{log}");
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not within {PATIENCE:?}; the example's output:\n{log}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no chance to finish anything.
    fn kill(mut self) {
        self.child.kill().unwrap();
        let _status = self.child.wait().unwrap();
    }
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

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

fn verify(addr: SocketAddr, pin: &str) -> (u16, Value) {
    post(
        addr,
        "/pin/verify",
        &json!({ "tax_code": MARIO, "pin": pin }),
    )
}

/// Mario's current credential, read from the database by a read-only store (it never takes
/// the write lock of the running example).
fn credential_on_record(dir: &Path) -> Option<Credential> {
    let reader = SqliteOptions::new()
        .read_only(true)
        .open(dir.join("pin.db"))
        .ok()?;
    reader
        .load(&TaxCode::parse(MARIO).unwrap())
        .ok()??
        .subject
        .credential
}

/// A message of the mailbox: its file name and headers, and its PIN line.
struct Message {
    file: String,
    id: String,
    serial: u64,
    pin: String,
}

/// The messages to Mario in the mailbox, read as the person would (temporary files, whose
/// names start with a dot, are not messages).
fn messages(dir: &Path) -> Vec<Message> {
    let Ok(entries) = std::fs::read_dir(dir.join("mailbox")) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for entry in entries {
        let file = entry.unwrap().file_name().into_string().unwrap();
        if file.starts_with('.') {
            continue;
        }
        let text = std::fs::read_to_string(dir.join("mailbox").join(&file)).unwrap();
        let header = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name))
                .unwrap_or_else(|| panic!("{file} has no `{name}` line:\n{text}"))
                .to_owned()
        };
        if header("Tax-Code: ") != MARIO {
            continue;
        }
        found.push(Message {
            id: header("Message-Id: "),
            serial: header("Serial: ").parse().unwrap(),
            pin: header("PIN: "),
            file,
        });
    }
    found
}

#[test]
fn a_pin_issued_before_a_kill_arrives_after_the_restart() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();

    // Run 1, mailbox up: the demo employee is enrolled and the PIN delivered.
    let mut run1 = Example::start(dir, "run1", false);
    let first = run1.wait_for("run1: the enrolment's PIN in the mailbox", |_| {
        messages(dir).into_iter().next()
    });
    let first_serial = credential_on_record(dir).unwrap().serial;
    assert_eq!(first.serial, first_serial);
    let shown = run1.wait_for("run1: the demo PIN printed", |log| {
        log.lines()
            .find(|l| l.starts_with("demo:") && l.contains("found the PIN"))
            .map(str::to_owned)
    });
    assert!(
        shown.contains(&format!("the PIN {} ", first.pin)),
        "{shown}"
    );
    run1.kill();

    // Run 2, mailbox down (a relay outage): the re-send is answered, committed, tried and
    // deferred — then the process is killed before any delivery could happen.
    let mut run2 = Example::start(dir, "run2", true);
    assert!(
        run2.log().contains("is already on record"),
        "enrolled only once:\n{}",
        run2.log()
    );
    assert_eq!(
        post(run2.addr, "/pin/resend", &json!({ "tax_code": MARIO })),
        (202, json!({ "ok": true }))
    );
    let deferred = run2.wait_for(
        "run2: the re-send on record, its delivery tried against the down mailbox",
        |_| {
            credential_on_record(dir).filter(|c| {
                c.serial > first_serial
                    && c.parts.iter().all(|p| {
                        p.state == DeliveryState::Pending
                            && p.queued.as_ref().is_some_and(|q| q.tries >= 1)
                    })
            })
        },
    );
    // rule: POL-3 — the re-send is a fresh PIN, and its failed delivery waits sealed in the
    // queue (never stored in clear), to be tried again.
    let fresh_serial = deferred.serial;
    run2.kill();
    assert!(
        messages(dir).iter().all(|m| m.serial != fresh_serial),
        "nothing was delivered while the mailbox was down"
    );

    // Run 3, the same database, key and mailbox, now up: the worker delivers the part the
    // killed process left due.
    let mut run3 = Example::start(dir, "run3", false);
    let fresh = run3.wait_for("run3: the re-sent PIN in the mailbox", |_| {
        messages(dir).into_iter().find(|m| m.serial == fresh_serial)
    });
    assert_eq!(
        fresh.file,
        format!("{}.txt", fresh.id),
        "named by its message id"
    );
    assert!(
        fresh.id.len() == 32 && fresh.id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{}",
        fresh.id
    );
    let delivered = run3.wait_for("run3: the receipt on record", |_| {
        credential_on_record(dir).filter(|c| c.parts.iter().all(|p| p.queued.is_none()))
    });
    assert_eq!(delivered.serial, fresh_serial);
    assert!(
        delivered
            .parts
            .iter()
            .all(|p| p.state == DeliveryState::Sent),
        "the receipt erased the sealed copy"
    );

    // rule: BOTH-1 — the PIN that arrived after the restart is the valid one; the previous
    // one no longer is.
    assert_eq!(verify(run3.addr, &fresh.pin), (200, json!({ "ok": true })));
    if first.pin != fresh.pin {
        assert_eq!(verify(run3.addr, &first.pin), (401, json!({ "ok": false })));
    }
    let log = run3.log();
    assert!(
        log.contains("1 delivered"),
        "the worker logs its counts:\n{log}"
    );
    for pin in [&first.pin, &fresh.pin] {
        assert!(
            !log.lines()
                .any(|l| l.starts_with("delivery:") && l.contains(pin.as_str())),
            "the worker never logs a PIN"
        );
    }
    run3.kill();

    // Another key does not open this database: refused at start, before serving anything,
    // and neither key is echoed.
    let other = "ab".repeat(32);
    let mut wrong = Example::spawn(dir, "wrong-key", false, &other);
    let status = wrong.wait_for_exit("a run with another key");
    let log = wrong.log();
    assert!(!status.success(), "{log}");
    assert!(log.contains("wrong key"), "{log}");
    assert!(!log.contains("listening"), "{log}");
    assert!(!log.contains(&other) && !log.contains(KEY), "{log}");
}
