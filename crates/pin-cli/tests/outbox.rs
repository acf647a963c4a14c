//! The outbox and the files and inputs of `pin`: atomic message files, a command whose
//! delivery did not happen ends with exit code 10 and says what was saved, a closed stdout is
//! quiet, a key file that is not a regular file is refused, long arguments are not echoed in
//! full, and an outbox others can reach is warned about.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "not one JSON object ({e}): {:?} / {:?}",
                self.stdout, self.stderr
            )
        })
    }
}

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn initialised() -> Self {
        let env = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        env.expect(&["init"], "", 0);
        env
    }

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
            .env_remove("PIN_NOTIFIER")
            .env("PIN_NOW", T0)
            .env("PIN_INSECURE_FAST_HASH", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str], stdin: &str) -> Out {
        let mut child = self.command(args).spawn().unwrap();
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn expect(&self, args: &[&str], stdin: &str, code: i32) -> Out {
        let out = self.run(args, stdin);
        assert_eq!(out.code, code, "pin {args:?}: {}{}", out.stdout, out.stderr);
        out
    }

    fn enrol(&self, tax: &str, email: &str, extra: &[&str]) -> Out {
        let mut args = vec![
            "enrol",
            tax,
            "--role",
            "employee",
            "--enrolled-on",
            "2020-09-01",
            "--email",
            email,
            "--as",
            "rid:R042",
        ];
        args.extend_from_slice(extra);
        self.run(&args, "")
    }

    /// The secret in an outbox file.
    fn secret(&self, file: &str) -> String {
        let body = std::fs::read_to_string(self.path("outbox").join(file)).unwrap();
        body.lines()
            .find_map(|l| l.strip_prefix("PIN: "))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// An outbox path that cannot be created: it lies under a regular file (this holds for
    /// root too, unlike a read-only directory).
    fn unwritable_outbox(&self) -> String {
        std::fs::write(self.path("blocker"), b"not a directory").unwrap();
        self.path("blocker").join("outbox").display().to_string()
    }
}

/// Every file of a directory (name, length).
fn files(dir: &Path) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().into_string().unwrap(),
                e.metadata().unwrap().len(),
            )
        })
        .collect();
    v.sort();
    v
}

/// `--now` a minute after [`T0`]: past the first backoff of a part whose channel was
/// unavailable.
fn a_minute_later() -> String {
    "2025-01-15T09:01:00Z".to_owned()
}

// rule: POL-3
#[test]
fn an_unwritable_outbox_fails_the_resend_with_exit_10_and_says_what_was_saved() {
    let env = Env::initialised();
    assert_eq!(env.enrol(MARIO, "mario@example.it", &[]).code, 0);
    let old = env.secret(&format!("{MARIO}-s1-p1of1-email.txt"));
    let outbox = env.unwritable_outbox();

    let out = env.expect(
        &[
            "--json", "--outbox", &outbox, "resend", MARIO, "--as", "rid:R042",
        ],
        "",
        10,
    );
    let v = out.json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["command"], "resend");
    assert_eq!(v["saved"], true, "{v}");
    assert_eq!(v["delivered"], false, "{v}");
    assert_eq!(v["exit_code"], 10);
    assert_eq!(v["error"]["kind"], "undelivered");
    assert_eq!(v["error"]["exit_code"], 10);
    assert_eq!(v["error"]["retryable"], false);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("issued and saved"), "{message}");
    assert!(message.contains("no longer works"), "{message}");
    assert!(message.contains("delivery queue"), "{message}");
    assert!(message.contains("pin deliver"), "{message}");
    // What was saved: the credential of the re-send, serial 2.
    assert_eq!(v["credential"]["serial"], 2, "{v}");
    let d = &v["deliveries"][0];
    assert_eq!(d["state"], "pending", "{v}");
    assert!(d["error"].as_str().unwrap().contains("outbox"), "{v}");
    assert_eq!(d["file"], Value::Null, "no file that does not exist: {v}");
    assert!(
        out.stderr.contains("pin: error: the PIN serial 2"),
        "{}",
        out.stderr
    );
    assert!(!Path::new(&outbox).exists());
    assert!(
        files(&env.path("outbox"))
            .iter()
            .all(|(name, _)| !name.contains("-s2-")),
        "no message of serial 2 anywhere"
    );

    // The old PIN no longer works (as the message says).
    let out = env.run(&["verify", MARIO], &format!("{old}\n"));
    assert_ne!(out.code, 0, "{}{}", out.stdout, out.stderr);

    // The advice works: the PIN was not lost. Once the outbox is writable, `pin deliver`
    // sends serial 2 itself — no fresh PIN, no re-send spent — and it verifies.
    let later = a_minute_later();
    let v = env
        .expect(&["--json", "--now", &later, "deliver"], "", 0)
        .json();
    assert_eq!(v["delivered"], 1, "{v}");
    let file = v["parts"][0]["file"].as_str().unwrap();
    assert!(env.path(file).is_file(), "{file}");
    let pin = env.secret(&format!("{MARIO}-s2-p1of1-email.txt"));
    env.expect(&["verify", MARIO], &format!("{pin}\n"), 0);
    // Nothing more is due.
    let v = env
        .expect(&["--json", "--now", &later, "deliver"], "", 0)
        .json();
    assert_eq!(v["delivered"], 0, "{v}");
}

// rule: POL-3
#[test]
fn an_unwritable_outbox_fails_identify_in_text_output_too() {
    let env = Env::initialised();
    assert_eq!(env.enrol(MARIO, "mario@example.it", &[]).code, 0);
    let outbox = env.unwritable_outbox();
    let out = env.expect(
        &[
            "--outbox",
            &outbox,
            "identify",
            MARIO,
            "--email",
            "mario.new@example.it",
            "--as",
            "rid:R042",
        ],
        "",
        10,
    );
    assert!(out.stdout.contains("NOT DELIVERED"), "{}", out.stdout);
    assert!(out.stdout.contains("not delivered"), "{}", out.stdout);
    assert!(
        !out.stdout.contains(&format!("{MARIO}-s2-p1of1")),
        "no outbox file named for the lost message: {}",
        out.stdout
    );
    assert!(out.stderr.contains("pin: error:"), "{}", out.stderr);
    assert!(out.stderr.contains("pin deliver"), "{}", out.stderr);
}

#[test]
fn a_taken_file_name_is_never_overwritten_and_the_part_fails() {
    let env = Env::initialised();
    assert_eq!(env.enrol(MARIO, "mario@example.it", &[]).code, 0);
    let taken = env
        .path("outbox")
        .join(format!("{MARIO}-s2-p1of1-email.txt"));
    std::fs::write(&taken, b"someone else's file").unwrap();
    let v = env
        .expect(&["--json", "resend", MARIO, "--as", "rid:R042"], "", 10)
        .json();
    assert_eq!(v["deliveries"][0]["state"], "failed", "{v}");
    assert_eq!(v["deliveries"][0]["file"], Value::Null, "{v}");
    assert_eq!(std::fs::read(&taken).unwrap(), b"someone else's file");
    assert!(
        files(&env.path("outbox"))
            .iter()
            .all(|(name, _)| !name.ends_with(".tmp")),
        "the staged copy is removed"
    );
}

#[test]
fn normal_runs_leave_no_temporary_or_empty_files_and_each_message_is_0600() {
    let env = Env::initialised();
    assert_eq!(env.enrol(MARIO, "mario@example.it", &[]).code, 0);
    assert_eq!(env.enrol(ANNA, "anna@example.it", &[]).code, 0);
    for _ in 0..2 {
        env.expect(&["resend", MARIO, "--as", "rid:R042"], "", 0);
    }
    // Identification with new contacts writes notices to the old ones (POL-6) too.
    env.expect(
        &[
            "identify",
            ANNA,
            "--email",
            "anna.new@example.it",
            "--as",
            "rid:R042",
        ],
        "",
        0,
    );
    let all = files(&env.path("outbox"));
    assert!(all.len() >= 5, "{all:?}");
    assert!(all.iter().any(|(n, _)| n.contains("-notice-")), "{all:?}");
    for (name, len) in &all {
        assert!(name.ends_with(".txt") && !name.starts_with('.'), "{name}");
        assert!(*len > 0, "zero-byte file {name}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(env.path("outbox").join(name))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{name}");
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("outbox"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "a created outbox is its owner's alone");
    }
}

#[cfg(unix)]
#[test]
fn an_outbox_others_can_reach_is_used_with_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let env = Env::initialised();
    std::fs::create_dir(env.path("outbox")).unwrap();
    std::fs::set_permissions(env.path("outbox"), std::fs::Permissions::from_mode(0o750)).unwrap();
    let out = env.enrol(MARIO, "mario@example.it", &[]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr.contains("pin: warning: the outbox"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("mode 750"), "{}", out.stderr);
    assert!(out.stderr.contains("chmod 700"), "{}", out.stderr);
    assert!(
        env.path("outbox")
            .join(format!("{MARIO}-s1-p1of1-email.txt"))
            .is_file()
    );
    // The operator's directory is left as it is; once private, no warning.
    std::fs::set_permissions(env.path("outbox"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = env.expect(&["resend", MARIO, "--as", "rid:R042"], "", 0);
    assert!(!out.stderr.contains("the outbox"), "{}", out.stderr);
}

/// Runs `pin args` with its standard output a pipe whose reading end is already closed.
#[cfg(unix)]
fn into_closed_pipe(env: &Env, args: &[&str]) -> Out {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = env
        .command(args)
        .stdout(Stdio::from(writer))
        .output()
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[cfg(unix)]
#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    let env = Env::initialised();
    // `pin completions bash | head -1`: no "internal error … Broken pipe", exit 0.
    let out = into_closed_pipe(&env, &["completions", "bash"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    // A command's report: its own exit code, no internal error.
    assert_eq!(env.enrol(MARIO, "mario@example.it", &[]).code, 0);
    let out = into_closed_pipe(&env, &["--json", "status", MARIO]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(!out.stderr.contains("internal error"), "{}", out.stderr);
    // A failure with --json: the failure's exit code, its one line on stderr only.
    let out = into_closed_pipe(&env, &["--json", "status", "RSSMRA85T10A562X"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(!out.stderr.contains("internal error"), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
}

/// Waits for a child, killing it (and failing) if it has not ended within a generous
/// bound: the command must not wait for a writer that never comes.
fn wait_or_kill(mut child: std::process::Child) -> Out {
    let start = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            let out = child.wait_with_output().unwrap();
            return Out {
                code: out.status.code().unwrap_or(-1),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            };
        }
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("pin hangs on a FIFO key file");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(unix)]
#[test]
fn a_fifo_or_directory_as_key_file_is_refused_without_waiting() {
    let env = Env::initialised();
    let fifo = env.path("fifo.key");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo = fifo.display().to_string();
    let child = env
        .command(&["--json", "--key-file", &fifo, "status", MARIO])
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    let out = wait_or_kill(child);
    assert_eq!(out.code, 7, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("not a regular file"), "{}", out.stderr);
    assert_eq!(out.json()["error"]["kind"], "storage");

    std::fs::create_dir(env.path("dir.key")).unwrap();
    let dir = env.path("dir.key").display().to_string();
    let out = env.expect(&["--key-file", &dir, "status", MARIO], "", 7);
    assert!(out.stderr.contains("is a directory"), "{}", out.stderr);
}

#[test]
fn a_huge_argument_is_not_echoed_in_full() {
    let env = Env::initialised();
    let huge = "A".repeat(100_000);
    let out = env.expect(&["--json", "status", &huge], "", 2);
    assert!(out.stderr.len() < 1_000, "{} bytes", out.stderr.len());
    assert!(out.stdout.len() < 1_000, "{} bytes", out.stdout.len());
    let cut = format!("'{}…'", "A".repeat(32));
    assert!(out.stderr.contains(&cut), "{}", out.stderr);
    assert!(!out.stderr.contains(&"A".repeat(33)), "{}", out.stderr);
    assert!(out.stderr.contains("100000 were given"), "{}", out.stderr);
    assert_eq!(out.json()["error"]["kind"], "input");
    // Multi-byte characters are cut on a character boundary.
    let out = env.expect(&["status", &"é".repeat(5_000)], "", 2);
    assert!(
        out.stderr.contains(&format!("'{}…'", "é".repeat(32))),
        "{}",
        out.stderr
    );
    // A short wrong value is still shown whole.
    let out = env.expect(&["status", "RSSMRA85T10A562X"], "", 2);
    assert!(out.stderr.contains("'RSSMRA85T10A562X'"), "{}", out.stderr);
}
