//! `pin key add | list | retire`: a key file of several pepper keys, new hashes under the
//! newest, old PINs rehashed at their next verify, and a key retired only when no PIN hash
//! depends on it (or with `--force`, which says how many PINs that kills).
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pin");
const T0: &str = "2025-01-15T09:00:00Z";
const MARIO: &str = "RSSMRA85T10A562S";
const ANNA: &str = "BNCGNN70A41H501V";

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn initialised() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        let _ = env.code(&["init"], "", 0);
        env
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn run(&self, args: &[&str], stdin: &str) -> Out {
        let mut child = Command::new(BIN)
            .args(args)
            .current_dir(self.dir.path())
            .env("PIN_DB", self.path("pin.db"))
            .env_remove("PIN_KEY_FILE")
            .env_remove("PIN_AUDIT_KEY_FILE")
            .env_remove("PIN_OUTBOX")
            .env("PIN_NOW", T0)
            .env("PIN_INSECURE_FAST_HASH", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let o = child.wait_with_output().unwrap();
        Out {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }

    fn code(&self, args: &[&str], stdin: &str, code: i32) -> Out {
        let out = self.run(args, stdin);
        assert_eq!(out.code, code, "pin {args:?}: {}{}", out.stdout, out.stderr);
        out
    }

    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(self.code(&all, "", code).stdout.trim()).unwrap()
    }

    fn enrol(&self, tax: &str, email: &str) -> String {
        let _ = self.code(
            &[
                "enrol",
                tax,
                "--role",
                "employee",
                "--email",
                email,
                "--enrolled-on",
                "2020-09-01",
                "--as",
                "rid:R042",
            ],
            "",
            0,
        );
        let file = self
            .path("outbox")
            .join(format!("{tax}-s1-p1of1-email.txt"));
        let text = std::fs::read_to_string(file).unwrap();
        text.lines()
            .find_map(|l| l.strip_prefix("PIN: "))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// `(id, hashes)` of every key `pin key list` shows.
    fn hashes(&self) -> Vec<(u64, u64)> {
        self.json(&["key", "list"], 0)["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| (k["id"].as_u64().unwrap(), k["hashes"].as_u64().unwrap()))
            .collect()
    }
}

#[test]
fn a_key_is_retired_only_when_no_pin_hash_depends_on_it() {
    let env = Env::initialised();
    let pin = env.enrol(MARIO, "mario@example.it");
    assert_eq!(env.hashes(), [(1, 1)]);
    let v = env.json(&["key", "list"], 0);
    assert_eq!(v["keys"][0]["current"], true);
    assert_eq!(v["keys"][0]["recorded"], true);

    // Added: key 2, current, recorded in the database; the file turned into a keyring.
    let v = env.json(&["key", "add"], 0);
    assert_eq!(v["id"], 2);
    let file = std::fs::read_to_string(env.path("pin.key")).unwrap();
    assert_eq!(file.lines().filter(|l| l.starts_with("key ")).count(), 2);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("pin.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert_eq!(env.hashes(), [(1, 1), (2, 0)]);
    let v = env.json(&["key", "list"], 0);
    assert_eq!(
        (
            v["keys"][1]["current"].as_bool(),
            v["keys"][1]["recorded"].as_bool()
        ),
        (Some(true), Some(true))
    );

    // Key 1 still protects Mario's PIN: refused, nothing changed.
    let out = env.code(&["key", "retire", "1"], "", 5);
    assert!(
        out.stderr.contains("still protects 1 PIN hash"),
        "{}",
        out.stderr
    );
    assert_eq!(std::fs::read_to_string(env.path("pin.key")).unwrap(), file);
    // The current key, or one that is not there: refused.
    let out = env.code(&["key", "retire", "2"], "", 5);
    assert!(out.stderr.contains("current key"), "{}", out.stderr);
    let out = env.code(&["key", "retire", "7"], "", 2);
    assert!(out.stderr.contains("no key 7"), "{}", out.stderr);

    // A new PIN is hashed under key 2; Mario's verify rehashes his under key 2.
    let _anna = env.enrol(ANNA, "anna@example.it");
    assert_eq!(env.hashes(), [(1, 1), (2, 1)]);
    let out = env.code(&["verify", MARIO], &format!("{pin}\n"), 0);
    assert!(out.stdout.contains("accepted"), "{}", out.stdout);
    assert_eq!(env.hashes(), [(1, 0), (2, 2)]);

    // Now key 1 goes, and Mario's PIN still verifies.
    let v = env.json(&["key", "retire", "1"], 0);
    assert_eq!(
        (v["pins_killed"].as_u64(), v["forced"].as_bool()),
        (Some(0), Some(false))
    );
    assert_eq!(env.hashes(), [(2, 2)]);
    let file = std::fs::read_to_string(env.path("pin.key")).unwrap();
    assert_eq!(file.lines().filter(|l| l.starts_with("key ")).count(), 1);
    assert!(file.contains("\nkey 2 "));
    let out = env.code(&["verify", MARIO], &format!("{pin}\n"), 0);
    assert!(out.stdout.contains("accepted"), "{}", out.stdout);
    // Ids are never reused: the next key is 3.
    assert_eq!(env.json(&["key", "add"], 0)["id"], 3);
}

#[test]
fn retire_force_says_how_many_pins_it_kills() {
    let env = Env::initialised();
    let pin = env.enrol(MARIO, "mario@example.it");
    let _ = env.enrol(ANNA, "anna@example.it");
    let _ = env.json(&["key", "add"], 0);
    let out = env.code(&["key", "retire", "1", "--force"], "", 0);
    assert!(
        out.stdout
            .contains("2 PIN(s) made under it can no longer be verified"),
        "{}",
        out.stdout
    );
    let v = env.json(&["key", "list"], 0);
    assert_eq!(v["missing"][0]["id"], 1);
    assert_eq!(v["missing"][0]["hashes"], 2);
    // Mario's PIN cannot be checked any more: an error, not an acceptance.
    let out = env.run(&["verify", MARIO], &format!("{pin}\n"));
    assert_ne!(out.code, 0, "{}", out.stdout);
    assert!(!out.stdout.contains("accepted"));
}

#[test]
fn a_wrong_key_file_is_refused_and_left_alone() {
    let env = Env::initialised();
    let _ = env.enrol(MARIO, "mario@example.it");
    std::fs::write(env.path("pin.key"), format!("{}\n", "11".repeat(32))).unwrap();
    for args in [
        &["key", "list"][..],
        &["key", "add"],
        &["key", "retire", "1"],
    ] {
        let out = env.code(args, "", 7);
        assert!(out.stderr.contains("wrong key"), "{args:?}: {}", out.stderr);
    }
    assert_eq!(
        std::fs::read_to_string(env.path("pin.key")).unwrap(),
        format!("{}\n", "11".repeat(32))
    );
    // A keyring file with a duplicate id or a bad line is corrupt (exit 7), never echoed.
    let k = "ab".repeat(32);
    std::fs::write(env.path("pin.key"), format!("key 1 {k}\nkey 1 {k}\n")).unwrap();
    let out = env.code(&["key", "list"], "", 7);
    assert!(
        out.stderr.contains("appears twice") && !out.stderr.contains(&k),
        "{}",
        out.stderr
    );
    std::fs::write(env.path("pin.key"), format!("key one {k}\n")).unwrap();
    let out = env.code(&["key", "list"], "", 7);
    assert!(out.stderr.contains("corrupt"), "{}", out.stderr);
}

#[test]
fn retire_says_when_queued_parts_are_sealed_under_the_key() {
    let env = Env::initialised();
    // The outbox cannot be written: the part stays queued, sealed under key 1 (exit 10).
    std::fs::write(env.path("outbox"), "not a directory").unwrap();
    let out = env.run(
        &[
            "enrol",
            MARIO,
            "--role",
            "employee",
            "--email",
            "mario@example.it",
            "--enrolled-on",
            "2020-09-01",
            "--as",
            "rid:R042",
        ],
        "",
    );
    assert_eq!(out.code, 10, "{}{}", out.stdout, out.stderr);
    let _ = env.json(&["key", "add"], 0);
    let out = env.code(&["key", "retire", "1"], "", 5);
    assert!(
        out.stderr.contains("1 delivery part(s) still queued"),
        "{}",
        out.stderr
    );
    let v = env.json(&["key", "retire", "1", "--force"], 0);
    assert_eq!(v["queued_parts_sealed"], 1);
    assert_eq!(v["pins_killed"], 1);
}
