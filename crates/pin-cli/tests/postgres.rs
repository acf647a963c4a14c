//! The same commands on a PostgreSQL database, selected by a `postgres://` URL in `--db` or
//! in `PIN_DATABASE_URL`. Starts a throw-away server on 127.0.0.1 (skips with a loud
//! message when no PostgreSQL server binaries are installed; CI installs them).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    missing_docs,
    reason = "tests"
)]

use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use pin_postgres::cluster::{self, Cluster};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pin");
const MARIO: &str = "RSSMRA85T10A562S";

/// Runs `pin --json ARGS` in `dir` with the database from the environment `db_env`.
fn pin(dir: &Path, db_env: (&str, &str), args: &[&str], stdin: &str) -> (i32, Value, String) {
    let mut child = Command::new(BIN)
        .arg("--json")
        .args(args)
        .current_dir(dir)
        .env_remove("PIN_DB")
        .env_remove("PIN_DATABASE_URL")
        .env_remove("PIN_KEY_FILE")
        .env_remove("PIN_OUTBOX")
        .env(db_env.0, db_env.1)
        .env("PIN_NOW", "2025-01-15T09:00:00Z")
        .env("PIN_INSECURE_FAST_HASH", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let json = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("pin {args:?}: not JSON ({e}): {stdout} {stderr}"));
    (out.status.code().unwrap(), json, stderr)
}

/// The secret in the only outbox file.
fn secret(dir: &Path) -> String {
    let mut files: Vec<_> = std::fs::read_dir(dir.join("outbox"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let text = std::fs::read_to_string(files.last().unwrap()).unwrap();
    let line = text.lines().find(|l| l.starts_with("PIN")).unwrap();
    line.rsplit_once(": ").unwrap().1.to_owned()
}

#[test]
fn commands_work_on_postgres() {
    if cluster::find_binaries().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install PostgreSQL"
        );
        eprintln!("\n*** SKIPPED commands_work_on_postgres: no PostgreSQL server binaries ***\n");
        return;
    }
    let c = Cluster::start().unwrap();
    let url = c.create_database("cli").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // --db with a URL (through PIN_DB), then PIN_DATABASE_URL: the same database.
    let by_db = ("PIN_DB", url.as_str());
    let by_url = ("PIN_DATABASE_URL", url.as_str());

    let (code, init, _) = pin(d, by_db, &["init"], "");
    assert_eq!(code, 0, "{init}");
    assert!(
        !init.to_string().contains("pin-test-"),
        "the password is masked: {init}"
    );
    assert!(
        d.join("pin.key").exists(),
        "the key goes to the current directory"
    );
    let (code, out, err) = pin(
        d,
        by_url,
        &[
            "enrol",
            MARIO,
            "--role",
            "employee",
            "--email",
            "m.rossi@example.it",
            "--enrolled-on",
            "2020-09-01",
            "--as",
            "rid:R042",
        ],
        "",
    );
    assert_eq!(code, 0, "{out} {err}");
    let good = secret(d);
    let wrong: String = good
        .chars()
        .map(|c| char::from(b'0' + (c as u8 - b'0' + 1) % 10))
        .collect();
    let (code, out, _) = pin(d, by_db, &["verify", MARIO], &format!("{wrong}\n"));
    assert_eq!(code, 3, "rejected: {out}");
    let (code, out, _) = pin(d, by_url, &["verify", MARIO], &format!("{good}\n"));
    assert_eq!(code, 0, "accepted: {out}");
    let (code, out, _) = pin(d, by_db, &["status", MARIO], "");
    assert_eq!(code, 0, "{out}");
    let (code, out, _) = pin(d, by_url, &["audit", "verify"], "");
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["intact"], Value::Bool(true), "{out}");

    // The server down: a storage failure (exit 7) that names it, without the password.
    c.stop().unwrap();
    let (code, out, err) = pin(d, by_db, &["status", MARIO], "");
    assert_eq!(code, 7, "{out}");
    assert!(err.contains("cannot reach the PostgreSQL server"), "{err}");
    assert!(!err.contains("pin-test-"), "{err}");
}
