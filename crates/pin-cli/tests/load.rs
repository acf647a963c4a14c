//! Storage under load: 200 concurrent `pin` processes on one SQLite file never fail with a
//! storage error (issue 10, item 5). Read-only commands run alongside them.
//!
//! Every process's answer is classified; a storage error (exit 7) or a "busy: retry" error
//! (exit 9 with `"retryable": true` in its error object) fails the test, whatever the PIN.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pin");
const T0: &str = "2025-01-15T09:00:00Z";
/// The PIN every imported subject holds (INPS, in use, 8 characters).
const PIN: &str = "K7QM2ZXA";
const WRONG: &str = "P4TR8WNE";
/// Processes started at once.
const N: usize = 200;

/// The i-th valid tax code of a synthetic population (check character computed).
fn tax_code(i: usize) -> String {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let mut letters = [b'A'; 6];
    let mut n = i;
    for l in letters.iter_mut().rev() {
        *l = b'A' + u8::try_from(n % 26).unwrap();
        n /= 26;
    }
    let mut s = String::from_utf8(letters.to_vec()).unwrap();
    s.push_str("80A01H501");
    let mut sum = 0;
    for (pos, c) in s.chars().enumerate() {
        let v = if c.is_ascii_digit() {
            c as u32 - '0' as u32
        } else {
            c as u32 - 'A' as u32
        };
        sum += if pos % 2 == 0 { ODD[v as usize] } else { v };
    }
    s.push(char::from(b'A' + u8::try_from(sum % 26).unwrap()));
    s
}

/// One herd at a time: two tests of 200 processes each would measure each other.
static HERD: std::sync::Mutex<()> = std::sync::Mutex::new(());

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(self.dir.path())
            .env("PIN_DB", self.path("pin.db"))
            .env_remove("PIN_KEY_FILE")
            .env_remove("PIN_OUTBOX")
            .env("PIN_NOW", T0)
            // Real Argon2id costs: 200 processes comparing at once keep both cores busy,
            // so that a process holding the write lock is often descheduled — the load
            // of a real front end, which the test-only fast hashing would not make.
            .env_remove("PIN_INSECURE_FAST_HASH")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn spawn(&self, args: &[&str], stdin: &str) -> Child {
        let mut child = self.command(args).spawn().unwrap();
        // A command that fails before reading its input closes the pipe: that is fine.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        child
    }

    fn ok(&self, args: &[&str], stdin: &str) -> Value {
        let out = wait(self.spawn(args, stdin));
        assert_eq!(out.code, 0, "pin {args:?}: {} {}", out.stdout, out.stderr);
        serde_json::from_str(out.stdout.trim()).unwrap()
    }

    /// An initialised database holding `n` INPS citizens, all with the PIN [`PIN`].
    fn with_subjects(n: usize) -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        env.ok(&["--json", "init"], "");
        let v = env.ok(
            &["--json", "hash", "--format", "inps-in-use8"],
            &format!("{PIN}\n"),
        );
        let phc = v["hashes"][0]["phc"].as_str().unwrap().to_owned();
        let lines: String = (0..n).map(|i| import_line(&tax_code(i), &phc)).collect();
        std::fs::write(env.path("import.jsonl"), lines).unwrap();
        let v = env.ok(&["--json", "import", "import.jsonl"], "");
        assert_eq!(v["imported"].as_u64(), Some(n as u64));
        env
    }
}

fn import_line(tax: &str, phc: &str) -> String {
    format!(
        "{{\"tax_code\":\"{tax}\",\"role\":\"citizen\",\"contacts\":{{\"email\":\"{}@example.it\",\"mobile\":\"+393351234567\"}},\"hash\":{{\"key_id\":1,\"phc\":\"{phc}\"}},\"format\":\"inps_in_use8\",\"level\":\"online\",\"stage\":\"active\",\"issued_at\":\"2024-06-01T00:00:00Z\",\"changed_at\":\"2024-12-01T00:00:00Z\"}}\n",
        tax.to_lowercase()
    )
}

struct Out {
    args: String,
    code: i32,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "{}: not one JSON object ({e}): {:?} / {:?}",
                self.args, self.stdout, self.stderr
            )
        })
    }

    /// Whether storage gave up: exit 7, or a retryable error (a busy database), or
    /// SQLite's "locked"/"busy" anywhere in the answer.
    fn storage_failure(&self) -> bool {
        let v = self.json();
        let error = &v["error"];
        self.code == 7
            || error["kind"] == "storage"
            || error["retryable"] == true
            || self.stderr.contains("database is locked")
            || self.stderr.contains("busy")
    }
}

fn wait(child: Child) -> Out {
    let o = child.wait_with_output().unwrap();
    Out {
        args: String::new(),
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

/// Starts every command, and only then gives each its input: the processes open the
/// database and wait on their standard input, then all go at once (a thundering herd).
fn all_at_once(env: &Env, commands: &[(Vec<String>, String)]) -> Vec<Out> {
    let mut children: Vec<(String, Child)> = commands
        .iter()
        .map(|(args, _)| {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            (args.join(" "), env.command(&args).spawn().unwrap())
        })
        .collect();
    for ((_, child), (_, stdin)) in children.iter_mut().zip(commands) {
        // A command that fails before reading its input closes the pipe: that is fine.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    }
    children
        .into_iter()
        .map(|(args, c)| Out { args, ..wait(c) })
        .collect()
}

fn verify(tax: &str) -> Vec<String> {
    ["--json", "verify", tax].map(str::to_owned).to_vec()
}

fn report(outs: &[Out]) -> String {
    outs.iter()
        .filter(|o| o.storage_failure())
        .take(3)
        .map(|o| {
            format!(
                "{} → {} {} {}",
                o.args,
                o.code,
                o.stdout.trim(),
                o.stderr.trim()
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn assert_file_intact(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    let ok: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
}

// rule: POL-8 — concurrent verifications are answered from the store, never a storage error.
// rule: INPS-12
#[test]
fn pol8_inps12_two_hundred_verifies_of_one_subject_get_no_storage_error() {
    let _one = HERD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let env = Env::with_subjects(1);
    let tax = tax_code(0);
    // Right PINs, with a wrong one every tenth; read-only commands alongside.
    let mut commands: Vec<(Vec<String>, String)> = (0..N)
        .map(|i| {
            let pin = if i % 10 == 9 { WRONG } else { PIN };
            (verify(&tax), format!("{pin}\n"))
        })
        .collect();
    for _ in 0..10 {
        commands.push((
            ["--json", "status", tax.as_str()]
                .map(str::to_owned)
                .to_vec(),
            String::new(),
        ));
        commands.push((
            ["--json", "audit", "verify"].map(str::to_owned).to_vec(),
            String::new(),
        ));
    }
    let outs = all_at_once(&env, &commands);
    let failures = outs.iter().filter(|o| o.storage_failure()).count();
    assert_eq!(
        failures,
        0,
        "{failures} of {} processes failed in storage:\n{}",
        outs.len(),
        report(&outs)
    );
    for o in &outs {
        if o.args.contains("verify ") {
            // Any answer about the PIN is allowed here (the lockout rules are tested
            // elsewhere); only storage must not fail.
            assert!(
                matches!(o.code, 0 | 3 | 4 | 9),
                "{}: {} {} {}",
                o.args,
                o.code,
                o.stdout,
                o.stderr
            );
        } else {
            assert_eq!(o.code, 0, "{}: {} {}", o.args, o.stdout, o.stderr);
        }
    }
    assert_file_intact(&env.path("pin.db"));
}

// rule: POL-8
// rule: INPS-12 — each subject's right PIN is accepted, with 199 other processes verifying.
#[test]
fn pol8_inps12_two_hundred_verifies_of_two_hundred_subjects_all_accepted() {
    let _one = HERD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let env = Env::with_subjects(N);
    let mut commands: Vec<(Vec<String>, String)> = (0..N)
        .map(|i| (verify(&tax_code(i)), format!("{PIN}\n")))
        .collect();
    for i in 0..20 {
        commands.push((
            ["--json", "status", tax_code(i * 10).as_str()]
                .map(str::to_owned)
                .to_vec(),
            String::new(),
        ));
    }
    let outs = all_at_once(&env, &commands);
    let failures = outs.iter().filter(|o| o.storage_failure()).count();
    assert_eq!(
        failures,
        0,
        "{failures} of {} processes failed in storage:\n{}",
        outs.len(),
        report(&outs)
    );
    for o in &outs {
        assert_eq!(o.code, 0, "{}: {} {}", o.args, o.stdout, o.stderr);
    }
    let accepted = outs
        .iter()
        .filter(|o| o.json()["outcome"] == "accepted")
        .count();
    assert_eq!(accepted, N);
    assert_file_intact(&env.path("pin.db"));
}

/// Runs one command and waits for it.
fn run(env: &Env, args: &[&str], stdin: &str, busy_timeout: Option<&str>) -> Out {
    let mut c = env.command(args);
    if let Some(t) = busy_timeout {
        c.env("PIN_BUSY_TIMEOUT", t);
    }
    let mut child = c.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    Out {
        args: args.join(" "),
        ..wait(child)
    }
}

// rule: POL-8 — a verify that cannot reserve its attempt counts nothing and says "retry".
// rule: INPS-12
#[test]
fn pol8_inps12_a_lock_held_past_the_deadline_says_busy_retry_and_counts_nothing() {
    let _one = HERD
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let env = Env::with_subjects(1);
    let tax = tax_code(0);
    // Another process holds the write lock.
    let writer = rusqlite::Connection::open(env.path("pin.db")).unwrap();
    writer.execute_batch("BEGIN IMMEDIATE").unwrap();
    // `pin init` made the database private, and SQLite's files beside it too.
    for name in ["pin.db", "pin.db-wal", "pin.db-shm"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }

    let out = run(
        &env,
        &["--json", "verify", &tax],
        &format!("{WRONG}\n"),
        Some("0.2"),
    );
    assert_eq!(out.code, 9, "{} {}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["error"]["kind"], "retry");
    assert_eq!(v["error"]["retryable"], true);
    assert_eq!(v["error"]["exit_code"], 9);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("busy: retry"), "{msg}");
    assert!(
        out.stderr.starts_with("pin: error: busy: retry"),
        "{}",
        out.stderr
    );
    for never in ["permission", "readable and writable"] {
        assert!(!out.stderr.contains(never), "{}", out.stderr);
    }
    // Read-only commands do not wait for the writer at all.
    let out = run(&env, &["--json", "status", &tax], "", Some("0"));
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert_eq!(out.json()["consecutive_failures"], 0);
    let out = run(&env, &["--json", "audit", "verify"], "", Some("0"));
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);

    // Released: nothing had been counted, and the retry is answered.
    writer.execute_batch("COMMIT").unwrap();
    drop(writer);
    let out = run(&env, &["--json", "verify", &tax], &format!("{PIN}\n"), None);
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    assert_eq!(out.json()["remaining_attempts"], 10);
}

#[test]
fn storage_errors_are_not_retryable_and_a_bad_busy_timeout_is_bad_input() {
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let out = run(&env, &["--json", "status", &tax_code(0)], "", None);
    assert_eq!(out.code, 7, "{} {}", out.stdout, out.stderr);
    assert_eq!(out.json()["error"]["retryable"], false);
    // An empty file is not a database, and is left as it was (only `pin init` creates).
    std::fs::write(env.path("pin.db"), b"").unwrap();
    let out = run(&env, &["--json", "status", &tax_code(0)], "", None);
    assert_eq!(out.code, 7, "{} {}", out.stdout, out.stderr);
    assert!(out.stderr.contains("empty"), "{}", out.stderr);
    assert!(std::fs::read(env.path("pin.db")).unwrap().is_empty());
    for bad in ["soon", "-1", "NaN", "1e9"] {
        let out = run(&env, &["--json", "status", &tax_code(0)], "", Some(bad));
        assert_eq!(out.code, 2, "{bad}: {} {}", out.stdout, out.stderr);
        assert!(out.stderr.contains("PIN_BUSY_TIMEOUT"), "{}", out.stderr);
        assert_eq!(out.json()["error"]["retryable"], false);
    }
}

#[test]
fn a_full_postgres_server_says_unavailable_retry_later() {
    use pin_postgres::cluster::{self, Cluster};
    if cluster::find_binaries().is_none() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install PostgreSQL"
        );
        return;
    }
    let c = Cluster::start_with_max_connections(6).unwrap();
    let url = c.create_database("crowded").unwrap();
    let env = Env {
        dir: tempfile::tempdir().unwrap(),
    };
    let on_pg = |args: &[&str], timeout: &str| {
        let mut cmd = env.command(args);
        cmd.env("PIN_DB", &url).env("PIN_BUSY_TIMEOUT", timeout);
        Out {
            args: args.join(" "),
            ..wait(cmd.spawn().unwrap())
        }
    };
    let out = on_pg(&["--json", "init"], "5");
    assert_eq!(out.code, 0, "{} {}", out.stdout, out.stderr);
    // Fill every connection slot.
    let mut held = Vec::new();
    while let Ok(conn) = postgres_connect(&url) {
        held.push(conn);
        assert!(held.len() < 100, "the server never got full");
    }
    let out = on_pg(&["--json", "status", &tax_code(0)], "0.3");
    assert_eq!(out.code, 9, "{} {}", out.stdout, out.stderr);
    let v = out.json();
    assert_eq!(v["error"]["retryable"], true);
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.starts_with("unavailable: retry later"), "{msg}");
    assert!(msg.contains("too many clients"), "{msg}");
    assert!(
        !msg.contains("pin-test-"),
        "the password is never shown: {msg}"
    );
    // Slots free again: the same command is answered (an unknown subject is refused).
    held.clear();
    let out = on_pg(&["--json", "status", &tax_code(0)], "5");
    assert_eq!(out.code, 5, "{} {}", out.stdout, out.stderr);
}

fn postgres_connect(url: &str) -> Result<pin_postgres::PostgresStore, pin_postgres::OpenError> {
    // A store holds one connection from its open on: a slot taken.
    pin_postgres::PostgresOptions::new()
        .pool_size(1)
        .pool_timeout(std::time::Duration::ZERO)
        .open(url)
}
