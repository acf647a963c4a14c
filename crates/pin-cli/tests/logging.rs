//! Logs on stderr (issue #13): `-v` shows the command's span and outcome with the masked
//! tax code and never the PIN; `--log-format json` lines parse as JSON while stdout stays
//! one object; `-q` silences warnings; `RUST_LOG` is honoured.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pin");
const T0: &str = "2025-01-15T09:00:00Z";
const MARIO: &str = "RSSMRA85T10A562S";
const MASKED: &str = "RSS************S";
const EMAIL: &str = "mario.rossi@example.it";

struct Env {
    dir: tempfile::TempDir,
}

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Env {
    /// An initialised database with MARIO enrolled (his PIN in the outbox).
    fn with_mario() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        assert_eq!(env.run(&["init"], &[], "").code, 0);
        let out = env.run(
            &[
                "enrol",
                MARIO,
                "--role",
                "employee",
                "--enrolled-on",
                "2020-09-01",
                "--email",
                EMAIL,
                "--mobile",
                "3471234567",
                "--as",
                "rid:R042",
            ],
            &[],
            "",
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
        env
    }

    fn run(&self, args: &[&str], vars: &[(&str, &str)], stdin: &str) -> Out {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env("PIN_DB", self.dir.path().join("pin.db"))
            .env_remove("PIN_KEY_FILE")
            .env_remove("PIN_OUTBOX")
            .env_remove("RUST_LOG")
            .env("PIN_NOW", T0)
            .env("PIN_INSECURE_FAST_HASH", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in vars {
            c.env(k, v);
        }
        let mut child = c.spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let o = child.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    /// MARIO's PIN, from his SMS in the outbox.
    fn pin(&self) -> String {
        let body = std::fs::read_to_string(
            self.dir
                .path()
                .join("outbox")
                .join(format!("{MARIO}-s1-p1of1-sms.txt")),
        )
        .unwrap();
        let line = body.lines().find(|l| l.starts_with("PIN")).unwrap();
        line.rsplit_once(": ").unwrap().1.to_owned()
    }
}

/// Nothing personal or secret on stderr.
fn assert_clean(stderr: &str, pin: &str) {
    for secret in [pin, MARIO, EMAIL, "3471234567", "+393471234567"] {
        assert!(!stderr.contains(secret), "{secret:?} on stderr:\n{stderr}");
    }
}

#[test]
fn verbose_shows_the_verify_span_with_the_masked_tax_code_and_never_the_pin() {
    let env = Env::with_mario();
    let pin = env.pin();
    let wrong = if pin == "13579" { "24680" } else { "13579" };
    let out = env.run(&["-v", "verify", MARIO], &[], &format!("{wrong}\n"));
    assert_eq!(out.code, 3, "{}{}", out.stdout, out.stderr);
    let line = out
        .stderr
        .lines()
        .find(|l| l.starts_with("pin: info: verify done"))
        .unwrap_or_else(|| panic!("no verify line:\n{}", out.stderr));
    assert!(line.contains("outcome=\"rejected\""), "{line}");
    assert!(
        line.contains(&format!(
            "[pin.verify purpose=\"access\" subject={MASKED} serial=1]"
        )),
        "{line}"
    );
    assert!(line.contains("duration_ms="), "{line}");
    assert_clean(&out.stderr, &pin);
    assert_clean(&out.stderr, wrong);
    let out = env.run(&["-vv", "verify", MARIO], &[], &format!("{pin}\n"));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("outcome=\"accepted\""),
        "{}",
        out.stderr
    );
    assert_clean(&out.stderr, &pin);
    // Without -v: the warnings only, no info line.
    let out = env.run(&["verify", MARIO], &[], &format!("{wrong}\n"));
    assert!(
        out.stderr.lines().all(|l| l.starts_with("pin: warning:")),
        "{}",
        out.stderr
    );
}

#[test]
fn json_log_lines_parse_and_stdout_stays_one_object() {
    let env = Env::with_mario();
    let pin = env.pin();
    let out = env.run(
        &["--json", "--log-format", "json", "-vvv", "verify", MARIO],
        &[],
        &format!("{pin}\n"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let answer: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(answer["outcome"], "accepted");
    assert_eq!(out.stdout.trim().lines().count(), 1, "{}", out.stdout);
    let lines: Vec<Value> = out
        .stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let done = lines
        .iter()
        .find(|v| v["fields"]["message"] == "verify done")
        .unwrap_or_else(|| panic!("no verify event:\n{}", out.stderr));
    assert_eq!(done["fields"]["outcome"], "accepted");
    assert_eq!(done["spans"][0]["subject"], MASKED);
    assert_clean(&out.stderr, &pin);
}

#[test]
fn quiet_silences_warnings_but_not_errors() {
    let env = Env::with_mario();
    // The fast-hash warning is there by default, gone with -q.
    let out = env.run(&["status", MARIO], &[], "");
    assert!(out.stderr.contains("pin: warning:"), "{}", out.stderr);
    let out = env.run(&["-q", "status", MARIO], &[], "");
    assert_eq!(out.code, 0);
    assert_eq!(out.stderr, "");
    // An error is still said.
    let out = env.run(&["-q", "status", "RSSMRA85T10A562X"], &[], "");
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.starts_with("pin: error:"), "{}", out.stderr);
    // -q and -v together are a usage error.
    assert_eq!(env.run(&["-q", "-v", "status", MARIO], &[], "").code, 2);
}

#[test]
fn rust_log_is_honoured() {
    let env = Env::with_mario();
    let pin = env.pin();
    let out = env.run(
        &["verify", MARIO],
        &[("RUST_LOG", "pin_core=info")],
        &format!("{pin}\n"),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("pin: info: verify done"),
        "{}",
        out.stderr
    );
    // Only pin_core: the CLI's own warning is filtered out.
    assert!(!out.stderr.contains("pin: warning:"), "{}", out.stderr);
}
