//! `pin verify` processes killed (SIGKILL) at random moments: the audit log explains the
//! attempt counter after every kill, no lock appears that wrong PINs did not make, and a
//! killed compare is counted at most once, when its lease expires.
//! rule: POL-8, INPS-12, POL-1
#![allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use pin_core::conformance::assert_audit_explains_counter;
use pin_core::store::Store;
use pin_core::tax_code::TaxCode;
use pin_sqlite::SqliteStore;

const BIN: &str = env!("CARGO_BIN_EXE_pin");
const T0: &str = "2026-01-15T09:00:00Z";
const MARIO: &str = "RSSMRA85T10A562S";

fn command(dir: &Path, args: &[&str], now: &str) -> Command {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(dir)
        .env("PIN_DB", dir.join("pin.db"))
        .env_remove("PIN_KEY_FILE")
        .env_remove("PIN_OUTBOX")
        .env("PIN_NOW", now)
        .env("PIN_INSECURE_FAST_HASH", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

fn run(dir: &Path, args: &[&str], stdin: &str) -> std::process::Output {
    let mut child = command(dir, args, T0).spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

/// The keys of the audit key file `pin init` wrote (`key ID HEX` lines).
fn audit_keys(path: &Path) -> pin_core::audit::key::AuditKeyring {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().find(|l| l.starts_with("key 1 ")).unwrap();
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&line[6 + 2 * i..8 + 2 * i], 16).unwrap())
        .collect();
    pin_core::audit::key::AuditKeyring::new(pin_core::audit::key::AuditKey::new(1, &bytes).unwrap())
}

fn the_pin(dir: &Path) -> String {
    let outbox: PathBuf = dir.join("outbox");
    for e in std::fs::read_dir(outbox).unwrap() {
        let text = std::fs::read_to_string(e.unwrap().path()).unwrap();
        if let Some(line) = text.lines().find_map(|l| l.strip_prefix("PIN: ")) {
            return line.trim().to_owned();
        }
    }
    panic!("no PIN in the outbox");
}

#[test]
fn killed_verifies_keep_the_audit_equal_to_the_counter() {
    let dir = tempfile::tempdir().unwrap();
    let dir = dir.path();
    assert!(run(dir, &["init"], "").status.success());
    let enrol = run(
        dir,
        &[
            "enrol",
            MARIO,
            "--role",
            "employee",
            "--email",
            "mario@example.it",
            "--enrolled-on",
            "2020-03-02",
            "--as",
            "rid:R042",
        ],
        "",
    );
    assert!(enrol.status.success(), "{enrol:?}");
    let pin = the_pin(dir);
    let wrong = if pin == "13579" { "24680" } else { "13579" };
    let tax = TaxCode::parse(MARIO).unwrap();
    let kills = std::env::var("PIN_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(60u64);
    let mut seed = 4590u64;
    let mut killed = 0;
    for i in 0..kills {
        // Mostly the right PIN: a kill must never leave it counted as a failure except by
        // the lease rule, which the audit log then explains.
        let input = if i % 4 == 3 { wrong } else { pin.as_str() };
        let mut child = command(dir, &["--json", "verify", MARIO], T0)
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{input}\n").as_bytes())
            .unwrap();
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        std::thread::sleep(Duration::from_micros((seed >> 33) % 30_000));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let store = SqliteStore::open(dir.join("pin.db"))
            .unwrap()
            .with_audit_keys(audit_keys(&dir.join("pin.audit-key")));
        assert!(store.verify_audit_chain().unwrap().is_intact(), "kill {i}");
        assert_audit_explains_counter(&store, &tax);
        let a = store.load(&tax).unwrap().unwrap().attempts;
        assert!(a.failures < 10 && !a.blocked, "kill {i}: {a:?}");
    }
    assert!(killed > 0, "no process was killed mid-way: a weak test");
    // After the leases expire, the compares that never settled count as wrong PINs (the
    // smart-card rule), each with an audit event: the audit log still explains the counter,
    // and the right PIN is accepted unless those counted attempts reached the limit.
    let later = "2026-01-15T09:10:00Z";
    let mut child = command(dir, &["--json", "verify", MARIO], later)
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(format!("{pin}\n").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let store = SqliteStore::open(dir.join("pin.db")).unwrap();
    assert_audit_explains_counter(&store, &tax);
    let a = store.load(&tax).unwrap().unwrap().attempts;
    let unsettled = store
        .audit_log(Some(&tax))
        .unwrap()
        .iter()
        .filter(|e| e.outcome == pin_core::attempts::UNSETTLED_COUNTED)
        .count();
    if a.blocked {
        assert_eq!(out.status.code(), Some(4), "{out:?}");
        assert!(unsettled > 0, "a lock without wrong PINs or dead compares");
    } else {
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        assert_eq!(a.failures, 0);
    }
}
