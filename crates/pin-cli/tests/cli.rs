//! Runs the built `pin` binary through every flow, bad input for each command, the
//! no-leak property and concurrent verification.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pin");
const T0: &str = "2025-01-15T09:00:00Z";

// Valid tax codes (check characters computed).
const MARIO: &str = "RSSMRA85T10A562S";
const ANNA: &str = "BNCGNN70A41H501V";
const LUCA: &str = "FRRLCU80A01F205N";
const GIULIA: &str = "VRDLCU01M29Z404A";
const PAOLO: &str = "PLLMRC90D10G273R";
const STEFANO: &str = "GLLSFN75B12L219K";
const MINOR: &str = "NREPLA15C55H501J";
const TESTER: &str = "TSTTST80A01H501G";
const GIORGIO: &str = "MRNGRG82H14F839P";
const UNKNOWN: &str = "XXXYYY99E71L219V";
/// A well-formed Argon2id PHC string (of no PIN).
const FAKE_PHC: &str = "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g";

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
    /// Everything printed by every command, for the no-leak check.
    printed: std::cell::RefCell<String>,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
            printed: std::cell::RefCell::new(String::new()),
        }
    }

    fn initialised() -> Self {
        let env = Self::new();
        env.ok(&["init"], "");
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
            .env("PIN_NOW", T0)
            .env("PIN_INSECURE_FAST_HASH", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run(&self, args: &[&str], stdin: &str) -> Out {
        let mut child = self.command(args).spawn().unwrap();
        // A command that fails before reading its input closes the pipe: that is fine.
        let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
        let out = child.wait_with_output().unwrap();
        let out = to_out(&out);
        let mut p = self.printed.borrow_mut();
        p.push_str(&out.stdout);
        p.push_str(&out.stderr);
        out
    }

    fn ok(&self, args: &[&str], stdin: &str) -> Out {
        let out = self.run(args, stdin);
        assert_eq!(
            out.code, 0,
            "pin {args:?} failed: {}{}",
            out.stdout, out.stderr
        );
        out
    }

    /// `--json` run expecting `code`.
    fn json(&self, args: &[&str], stdin: &str, code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all, stdin);
        assert_eq!(out.code, code, "pin {args:?}: {}{}", out.stdout, out.stderr);
        out.json()
    }

    /// The secret of the newest message for `tax` on `channel` and part.
    fn secret(&self, tax: &str, part: u8, channel: &str) -> String {
        let mut best: Option<(u64, String)> = None;
        for e in std::fs::read_dir(self.path("outbox")).unwrap() {
            let name = e.unwrap().file_name().into_string().unwrap();
            let Some(rest) = name.strip_prefix(&format!("{tax}-s")) else {
                continue;
            };
            let (serial, tail) = rest.split_once('-').unwrap();
            if !tail.starts_with(&format!("p{part}of"))
                || !tail.ends_with(&format!("-{channel}.txt"))
            {
                continue;
            }
            let serial: u64 = serial.parse().unwrap();
            if best.as_ref().is_none_or(|(s, _)| serial > *s) {
                best = Some((serial, name));
            }
        }
        let (_, name) =
            best.unwrap_or_else(|| panic!("no {channel} part {part} message for {tax}"));
        let body = std::fs::read_to_string(self.path("outbox").join(name)).unwrap();
        let line = body.lines().find(|l| l.starts_with("PIN")).unwrap();
        line.rsplit_once(": ").unwrap().1.to_owned()
    }

    /// Every secret in the outbox.
    fn all_secrets(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.path("outbox")) else {
            return Vec::new();
        };
        // Security notices (POL-6) have no PIN line.
        rd.filter_map(|e| {
            let body = std::fs::read_to_string(e.unwrap().path()).unwrap();
            let line = body.lines().find(|l| l.starts_with("PIN"))?.to_owned();
            Some(line.rsplit_once(": ").unwrap().1.to_owned())
        })
        .collect()
    }

    fn outbox_names(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.path("outbox")) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    /// A logical dump of the database and the outbox.
    fn dump(&self) -> String {
        let conn = rusqlite::Connection::open(self.path("pin.db")).unwrap();
        let mut tables: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        tables.retain(|t| !t.starts_with("sqlite_"));
        let mut out = String::new();
        for t in tables {
            let mut stmt = conn
                .prepare(&format!("SELECT * FROM \"{t}\" ORDER BY 1"))
                .unwrap();
            let n = stmt.column_count();
            let rows = stmt
                .query_map([], |r| {
                    let mut s = String::new();
                    for i in 0..n {
                        s.push_str(&format!("{:?}|", r.get_ref(i).unwrap()));
                    }
                    Ok(s)
                })
                .unwrap();
            out.push_str(&format!("[{t}]\n"));
            for row in rows {
                out.push_str(&row.unwrap());
                out.push('\n');
            }
        }
        out.push_str(&format!("outbox: {:?}\n", self.outbox_names()));
        out
    }

    /// Runs a command that must fail with `code`, print one error line, and change nothing.
    fn fails_unchanged(&self, args: &[&str], stdin: &str, code: i32, needle: &str) {
        let before = self.dump();
        let out = self.run(args, stdin);
        assert_eq!(out.code, code, "pin {args:?}: {}{}", out.stdout, out.stderr);
        let errors: Vec<&str> = out
            .stderr
            .lines()
            .filter(|l| !l.starts_with("pin: warning:"))
            .collect();
        assert_eq!(
            errors.len(),
            1,
            "one error line for {args:?}: {:?}",
            out.stderr
        );
        assert!(errors[0].starts_with("pin: error: "), "{:?}", errors[0]);
        assert!(
            errors[0].to_lowercase().contains(&needle.to_lowercase()),
            "{args:?}: {:?} should mention {needle:?}",
            errors[0]
        );
        assert!(!out.stderr.contains("panicked") && !out.stderr.contains("backtrace"));
        assert_eq!(
            before,
            self.dump(),
            "pin {args:?} changed the database or the outbox"
        );
    }
}

fn to_out(o: &Output) -> Out {
    Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

fn enrol_noipa(env: &Env, tax: &str, email: &str, extra: &[&str]) {
    let mut args = vec![
        "enrol", tax, "--role", "employee", "--email", email, "--as", "rid:R042",
    ];
    if !extra.contains(&"--enrolled-on") {
        args.extend(["--enrolled-on", "2020-09-01"]);
    }
    args.extend_from_slice(extra);
    env.ok(&args, "");
}

fn enrol_inps(env: &Env, tax: &str, actor: &str) {
    env.ok(
        &[
            "enrol",
            tax,
            "--role",
            "citizen",
            "--email",
            &format!("{}@example.it", tax.to_lowercase()),
            "--mobile",
            "3351234567",
            "--pec",
            &format!("{}@pec.example.it", tax.to_lowercase()),
            "--address",
            "Via Roma 1, 00100 Roma RM",
            "--as",
            actor,
        ],
        "",
    );
}

// ---------------------------------------------------------------------------------------------

#[test]
fn help_completions_policy_and_version() {
    let env = Env::new();
    let help = env.ok(&["--help"], "").stdout;
    for needle in [
        "Examples:",
        "Exit codes:",
        "pin demo",
        "--as",
        "PIN_DB",
        "completions",
    ] {
        assert!(help.contains(needle), "help lacks {needle:?}");
    }
    assert!(
        env.ok(&["verify", "--help"], "")
            .stdout
            .contains("Exit code 0 accepted")
    );
    assert!(env.ok(&["completions", "bash"], "").stdout.contains("_pin"));
    assert!(env.ok(&["--version"], "").stdout.starts_with("pin "));
    let p = env.json(&["policy"], "", 0);
    assert_eq!(p["inps_lockout"], 10);
    assert_eq!(p["rotation_citizen_months"], 6);
    assert_eq!(p["insecure_fast_hash"], true);
    let out = env.run(&["policy"], "");
    assert!(
        out.stderr.contains("for tests only"),
        "the fast-hash warning is printed"
    );
    // Usage errors are one line and exit 2.
    let out = env.run(&["frobnicate"], "");
    assert_eq!(out.code, 2);
    assert_eq!(
        out.stderr
            .lines()
            .filter(|l| l.starts_with("pin: error:"))
            .count(),
        1
    );
    let v = env.json(&["verify"], "", 2);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "input");
}

#[test]
fn init_creates_a_private_key_and_never_overwrites_it() {
    let env = Env::new();
    let v = env.json(&["init"], "", 0);
    assert!(v["key_file"].as_str().unwrap().ends_with("pin.key"));
    let key = std::fs::read(env.path("pin.key")).unwrap();
    assert_eq!(key.len(), 65);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("pin.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let out = env.run(&["init"], "");
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("already exists"));
    assert_eq!(std::fs::read(env.path("pin.key")).unwrap(), key);
    // A database with records whose key is gone: init refuses to make a new key.
    enrol_noipa(&env, MARIO, "mario@example.it", &[]);
    std::fs::rename(env.path("pin.key"), env.path("pin.key.bak")).unwrap();
    let out = env.run(&["init"], "");
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("restore the key"));
    assert!(!env.path("pin.key").exists());
}

#[test]
fn noipa_lifecycle() {
    let env = Env::initialised();
    // NOIPA-2/NOIPA-4: enrolled after March 2014 with only an e-mail → PIN by e-mail.
    let v = env.json(
        &[
            "enrol",
            MARIO,
            "--role",
            "employee",
            "--enrolled-on",
            "2020-09-01",
            "--email",
            "mario@example.it",
            "--as",
            "rid:R042",
        ],
        "",
        0,
    );
    assert_eq!(v["deliveries"][0]["channel"], "email");
    assert_eq!(v["deliveries"][0]["state"], "sent");
    let file = v["deliveries"][0]["file"].as_str().unwrap();
    assert!(
        file.ends_with("RSSMRA85T10A562S-s1-p1of1-email.txt"),
        "{file}"
    );
    let body = std::fs::read_to_string(env.dir.path().join(file)).unwrap();
    assert!(body.contains("To: mario@example.it") && body.contains("\nPIN: "));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.dir.path().join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let pin1 = env.secret(MARIO, 1, "email");
    assert_eq!(pin1.len(), 5);
    let v = env.json(&["verify", MARIO], &format!("{pin1}\n"), 0);
    assert_eq!(v["outcome"], "accepted");
    assert_eq!(v["first_use"], true);
    assert_eq!(v["remaining_attempts"], 10);

    // NOIPA-7 / NOIPA-4: identified again with a mobile → SMS only; BOTH-1: the old PIN dies.
    let v = env.json(
        &[
            "identify",
            MARIO,
            "--email",
            "m.rossi@new.example.it",
            "--mobile",
            "347 123 4567",
            "--as",
            "rid:R042",
        ],
        "",
        0,
    );
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 1);
    assert_eq!(v["deliveries"][0]["channel"], "sms");
    let pin2 = env.secret(MARIO, 1, "sms");
    let v = env.json(&["verify", MARIO], &format!("{pin1}\n"), 3);
    assert_eq!(v["outcome"], "rejected");
    assert_eq!(v["remaining_attempts"], 9);
    env.json(&["verify", MARIO], &format!("{pin2}\n"), 0);

    // NOIPA-9: contacts by the RID, by the subject with the PIN, never by support.
    env.json(
        &[
            "contacts",
            MARIO,
            "--email",
            "mario.r@example.it",
            "--as",
            "rid:R042",
        ],
        "",
        0,
    );
    let v = env.json(
        &["contacts", MARIO, "--remove", "mobile", "--as", "subject"],
        &format!("{pin2}\n"),
        0,
    );
    assert_eq!(v["command"], "contacts");
    let st = env.json(&["status", MARIO], "", 0);
    assert_eq!(st["contacts"]["mobile"], Value::Null);
    assert_eq!(st["contacts"]["email"], "m***@example.it");
    env.fails_unchanged(
        &[
            "contacts",
            MARIO,
            "--email",
            "x@example.it",
            "--as",
            "support:S1",
        ],
        "",
        5,
        "may not",
    );
    env.json(
        &[
            "contacts",
            MARIO,
            "--email",
            "x@example.it",
            "--as",
            "subject",
        ],
        "00000\n",
        3,
    );

    // NOIPA-5: support re-sends only 12 h after identification, to the contacts on record.
    enrol_noipa(
        &env,
        ANNA,
        "anna@example.it",
        &["--enrolled-on", "2012-01-01"],
    );
    let st = env.json(&["status", ANNA], "", 0);
    assert_eq!(
        st["state"], "no_pin",
        "enrolled before April 2014: no automatic PIN"
    );
    env.json(
        &[
            "identify",
            ANNA,
            "--email",
            "anna@example.it",
            "--as",
            "rid:R042",
        ],
        "",
        0,
    );
    let lost = env.secret(ANNA, 1, "email");
    env.fails_unchanged(
        &[
            "--now",
            "2025-01-15T10:00:00Z",
            "resend",
            ANNA,
            "--as",
            "support:S7",
        ],
        "",
        5,
        "12 hours",
    );
    let v = env.json(
        &[
            "--now",
            "2025-01-15T21:30:00Z",
            "resend",
            ANNA,
            "--as",
            "support:S7",
        ],
        "",
        0,
    );
    assert_eq!(v["credential"]["serial"], 2);
    let fresh = env.secret(ANNA, 1, "email");
    env.json(
        &["--now", "2025-01-15T22:00:00Z", "verify", ANNA],
        &format!("{lost}\n"),
        3,
    );
    env.json(
        &["--now", "2025-01-15T22:00:00Z", "verify", ANNA],
        &format!("{fresh}\n"),
        0,
    );
    // A used PIN is not re-sent.
    env.fails_unchanged(
        &[
            "--now",
            "2025-01-16T22:00:00Z",
            "resend",
            ANNA,
            "--as",
            "support:S7",
        ],
        "",
        5,
        // Defect 10: NoiPA has no reset; the RID identifies again (NOIPA-6).
        "RID",
    );

    // NOIPA-8: a NoiPA e-mail belongs to one person.
    env.fails_unchanged(
        &[
            "enrol",
            PAOLO,
            "--role",
            "employee",
            "--enrolled-on",
            "2020-01-01",
            "--email",
            "ANNA@example.it",
            "--as",
            "rid:R1",
        ],
        "",
        5,
        "already registered",
    );

    // NOIPA-10: a CNS holder gets no PIN.
    enrol_noipa(&env, STEFANO, "stefano@example.it", &["--cns"]);
    let st = env.json(&["status", STEFANO], "", 0);
    assert_eq!(
        (st["state"].as_str(), st["cns_holder"].as_bool()),
        (Some("no_pin"), Some(true))
    );
    env.json(&["verify", STEFANO], "12345\n", 6);

    // Receipts: the channel confirms delivery.
    enrol_noipa(&env, PAOLO, "paolo@example.it", &[]);
    let v = env.json(
        &[
            "receipt",
            PAOLO,
            "--serial",
            "1",
            "--part",
            "1",
            "--channel",
            "email",
            "--state",
            "confirmed",
        ],
        "",
        0,
    );
    assert_eq!(v["credential"]["serial"], 1);
    let st = env.json(&["status", PAOLO], "", 0);
    assert_eq!(st["deliveries"][0]["state"], "confirmed");
    env.fails_unchanged(
        &[
            "receipt",
            PAOLO,
            "--serial",
            "1",
            "--part",
            "2",
            "--channel",
            "email",
            "--state",
            "confirmed",
        ],
        "",
        2,
        "no part 2",
    );
    env.fails_unchanged(
        &[
            "receipt",
            PAOLO,
            "--serial",
            "1",
            "--part",
            "1",
            "--channel",
            "email",
            "--state",
            "sent",
            "--as",
            "rid:R1",
        ],
        "",
        5,
        "may not",
    );

    // NoiPA PINs are not changed by their holder. The PIN is checked first, as for
    // everyone, so that the answer does not tell a NoiPA employee apart: a wrong PIN is
    // rejected (and counted, like any guess), the right one is then refused with the RID.
    let v = env.json(&["change", MARIO], "00000\nK7QM2ZXA\n", 3);
    assert_eq!(v["outcome"], "rejected");
    let out = env.run(&["change", MARIO], &format!("{pin2}\nK7QM2ZXA\n"));
    assert_eq!(out.code, 5, "{}", out.stderr);
    assert!(out.stderr.contains("cannot be changed"), "{}", out.stderr);

    // The outbox lists names only.
    let v = env.json(&["outbox", MARIO], "", 0);
    let names: Vec<&str> = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["file"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "RSSMRA85T10A562S-s1-p1of1-email.txt",
            "RSSMRA85T10A562S-s2-p1of1-sms.txt"
        ]
    );
}

/// `pin status --json` carries every field the README lists, and neither the PIN hash nor
/// a full contact (the core's status is a masked view).
#[test]
fn status_json_has_the_documented_fields_and_no_hash_or_full_contact() {
    let env = Env::initialised();
    enrol_noipa(
        &env,
        MARIO,
        "mario.rossi@example.it",
        &["--mobile", "347 123 4567"],
    );
    let st = env.json(&["status", MARIO], "", 0);
    for key in [
        "ok",
        "command",
        "subject",
        "state",
        "level",
        "stage",
        "pin_length",
        "serial",
        "origin",
        "consecutive_failures",
        "remaining_attempts",
        "locked",
        "deliveries",
        "rotation_due",
        "unused_deadline",
        "issued_at",
        "changed_at",
        "first_used_at",
        "pending",
        "cns_holder",
        "represented_by",
        "profile",
        "role",
        "contacts",
    ] {
        assert!(st.get(key).is_some(), "no {key:?}: {st}");
    }
    for key in ["part", "of", "channel", "state", "updated_at"] {
        assert!(st["deliveries"][0].get(key).is_some(), "no {key:?}: {st}");
    }
    assert_eq!(st["state"], "active");
    assert_eq!(st["pin_length"], 5);
    assert_eq!(st["contacts"]["email"], "m***@example.it");
    assert_eq!(st["contacts"]["mobile"], "+39*******567");
    assert_eq!(st["contacts"]["pec"], Value::Null);
    assert_eq!(st["contacts"]["address"], false);
    let text = st.to_string();
    for leak in ["$argon2", "mario.rossi", "3471234567"] {
        assert!(!text.contains(leak), "{leak}: {text}");
    }
}

#[test]
fn lockout_after_ten_wrong_pins_and_recovery_by_identification() {
    let env = Env::initialised();
    enrol_noipa(&env, MARIO, "mario@example.it", &["--mobile", "3471234567"]);
    let pin = env.secret(MARIO, 1, "sms");
    let wrong = if pin == "13579" { "24680" } else { "13579" };
    for i in 1..=9 {
        let v = env.json(&["verify", MARIO], &format!("{wrong}\n"), 3);
        assert_eq!(v["remaining_attempts"], 10 - i);
    }
    let v = env.json(&["verify", MARIO], &format!("{wrong}\n"), 4);
    assert_eq!(v["outcome"], "locked");
    let v = env.json(&["verify", MARIO], &format!("{pin}\n"), 4);
    assert_eq!(
        v["outcome"], "locked",
        "POL-5: the right PIN does not unlock"
    );
    let st = env.json(&["status", MARIO], "", 0);
    assert_eq!(
        (st["state"].as_str(), st["consecutive_failures"].as_u64()),
        (Some("locked"), Some(10))
    );
    // A re-send does not restore the budget (POL-3: the failures carry over), so it is refused.
    env.fails_unchanged(&["resend", MARIO, "--as", "rid:R042"], "", 4, "blocked");
    env.json(
        &[
            "identify",
            MARIO,
            "--email",
            "mario@example.it",
            "--mobile",
            "3471234567",
            "--as",
            "rid:R042",
        ],
        "",
        0,
    );
    let fresh = env.secret(MARIO, 1, "sms");
    env.json(&["verify", MARIO], &format!("{fresh}\n"), 0);
}

#[test]
fn inps_web_request_first_access_rotation_and_conversion() {
    let env = Env::initialised();
    enrol_inps(&env, LUCA, "subject");
    let v = env.json(
        &[
            "request",
            "web",
            LUCA,
            "--address-check",
            "passed",
            "--as",
            "subject",
        ],
        "",
        0,
    );
    let channels: Vec<(&str, u64)> = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["channel"].as_str().unwrap(), d["part"].as_u64().unwrap()))
        .collect();
    assert_eq!(
        channels,
        [("sms", 1), ("post", 2)],
        "INPS-6: 8 by SMS, 8 by post"
    );
    let (a, b) = (env.secret(LUCA, 1, "sms"), env.secret(LUCA, 2, "post"));
    assert_eq!((a.len(), b.len()), (8, 8));
    let whole = format!("{a}{b}");
    let st = env.json(&["status", LUCA], "", 0);
    assert_eq!(
        (st["state"].as_str(), st["pin_length"].as_u64()),
        (Some("must_change"), Some(16))
    );
    assert_eq!(st["deliveries"].as_array().unwrap().len(), 2);
    let v = env.json(&["verify", LUCA], &format!("{whole}\n"), 6);
    assert_eq!(v["outcome"], "must_change");

    // INPS-3: first access 16 → 8 chosen by the person; a trivial PIN is refused first.
    env.fails_unchanged(
        &["change", LUCA],
        &format!("{whole}\nAAAAAAAA\n"),
        2,
        "too easy",
    );
    let v = env.json(&["change", LUCA], &format!("{whole}\nK7QM2ZXA\n"), 0);
    assert_eq!(v["changed"], true);
    assert!(v.get("generated_pin").is_none());
    let v = env.json(&["verify", LUCA], "k7qm2zxa\n", 0);
    assert_eq!(v["outcome"], "accepted");
    assert_eq!(v["rotation_due"], "2025-07-15T09:00:00Z");
    let st = env.json(&["status", LUCA], "", 0);
    assert_eq!(
        (st["state"].as_str(), st["pin_length"].as_u64()),
        (Some("active"), Some(8))
    );
    assert_eq!(st["rotation_due"], "2025-07-15T09:00:00Z");
    assert_eq!(st["level"], "online");

    // INPS-1 / INPS-9: dispositivo services; conversion keeps the value.
    let v = env.json(&["verify", LUCA, "--level", "dispositivo"], "K7QM2ZXA\n", 6);
    assert_eq!(v["outcome"], "insufficient_level");
    env.fails_unchanged(
        &["convert", LUCA, "--document", "failed", "--as", "branch:B1"],
        "",
        5,
        "did not pass",
    );
    env.fails_unchanged(
        &["convert", LUCA, "--document", "passed", "--as", "rid:R1"],
        "",
        5,
        "may not",
    );
    // rule: INPS-9 — the person sends the request; whoever checks it records the conversion.
    env.fails_unchanged(
        &["convert", LUCA, "--document", "passed", "--as", "subject"],
        "",
        5,
        "may not",
    );
    env.json(
        &["convert", LUCA, "--document", "passed", "--as", "branch:B1"],
        "",
        0,
    );
    env.json(&["verify", LUCA, "--level", "dispositivo"], "K7QM2ZXA\n", 0);
    env.fails_unchanged(
        &["convert", LUCA, "--document", "passed", "--as", "system"],
        "",
        5,
        "already",
    );

    // INPS-11: six months later the change is due; the system generates the new PIN.
    let later = "2025-08-01T09:00:00Z";
    let v = env.json(&["--now", later, "verify", LUCA], "K7QM2ZXA\n", 6);
    assert_eq!(
        (v["outcome"].as_str(), v["reason"].as_str()),
        (Some("expired"), Some("rotation"))
    );
    assert_eq!(
        env.json(&["--now", later, "status", LUCA], "", 0)["state"],
        "expired"
    );
    let out = env.run(
        &["--now", later, "change", LUCA, "--generate"],
        "K7QM2ZXA\n",
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let generated = out
        .stdout
        .lines()
        .find_map(|l| l.split_once("alone): "))
        .unwrap()
        .1
        .trim()
        .to_owned();
    assert_eq!(generated.len(), 8);
    assert!(
        !env.all_secrets().contains(&generated),
        "a generated PIN goes to the subject alone"
    );
    env.json(
        &["--now", later, "verify", LUCA, "--level", "dispositivo"],
        &format!("{generated}\n"),
        0,
    );
    let v = env.json(
        &["--now", later, "change", LUCA, "--generate"],
        &format!("{generated}\n"),
        0,
    );
    assert_eq!(v["generated_pin"].as_str().unwrap().len(), 8);
}

#[test]
fn inps_request_channels_outbound_branch_pre_assigned_and_reset() {
    let env = Env::initialised();
    // INPS-6: web request whose address is not validated → outbound call.
    enrol_inps(&env, LUCA, "subject");
    let v = env.json(
        &[
            "request",
            "web",
            LUCA,
            "--address-check",
            "failed",
            "--as",
            "subject",
        ],
        "",
        0,
    );
    assert_eq!(v["pending"], "outbound_verification");
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 0);
    assert_eq!(
        env.json(&["status", LUCA], "", 0)["state"],
        "awaiting_outbound_verification"
    );
    env.fails_unchanged(
        &["outbound", LUCA, "passed", "--as", "branch:B1"],
        "",
        5,
        "may not",
    );
    let v = env.json(
        &["outbound", LUCA, "passed", "--as", "contact-centre:C1"],
        "",
        0,
    );
    assert_eq!(v["deliveries"].as_array().unwrap().len(), 2);
    env.fails_unchanged(
        &["outbound", LUCA, "passed", "--as", "contact-centre:C1"],
        "",
        5,
        "no request",
    );

    // INPS-7: contact centre; archives fail → outbound; the call fails → request dropped.
    enrol_inps(&env, GIULIA, "contact-centre:C1");
    env.json(
        &[
            "request",
            "contact-centre",
            GIULIA,
            "--archives",
            "failed",
            "--as",
            "contact-centre:C1",
        ],
        "",
        0,
    );
    env.json(
        &["outbound", GIULIA, "failed", "--as", "contact-centre:C1"],
        "",
        0,
    );
    assert_eq!(env.json(&["status", GIULIA], "", 0)["state"], "no_pin");
    let v = env.json(
        &[
            "request",
            "contact-centre",
            GIULIA,
            "--archives",
            "passed",
            "--as",
            "contact-centre:C1",
        ],
        "",
        0,
    );
    let channels: Vec<&str> = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["phone", "sms", "post"]);
    assert_eq!(env.secret(GIULIA, 1, "phone"), env.secret(GIULIA, 1, "sms"));

    // INPS-14: reset with two registered contacts; one is not enough; wrong ones refused.
    env.fails_unchanged(
        &[
            "reset",
            GIULIA,
            "--email",
            "verdi@example.it",
            "--as",
            "subject",
        ],
        "",
        2,
        "two",
    );
    env.fails_unchanged(
        &[
            "reset",
            GIULIA,
            "--email",
            "no@example.it",
            "--mobile",
            "3000000000",
            "--as",
            "subject",
        ],
        "",
        5,
        "reset is not possible",
    );
    let email = format!("{}@example.it", GIULIA.to_lowercase());
    let pec = format!("{}@pec.example.it", GIULIA.to_lowercase());
    env.fails_unchanged(
        &[
            "reset",
            GIULIA,
            "--email",
            &email,
            "--pec",
            &pec,
            "--as",
            "support:S1",
        ],
        "",
        5,
        "may not",
    );
    let v = env.json(
        &[
            "reset", GIULIA, "--email", &email, "--pec", &pec, "--as", "subject",
        ],
        "",
        0,
    );
    let channels: Vec<&str> = v["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["channel"].as_str().unwrap())
        .collect();
    assert_eq!(channels, ["email", "pec"]);
    let whole = format!(
        "{}{}",
        env.secret(GIULIA, 1, "email"),
        env.secret(GIULIA, 2, "pec")
    );
    env.json(&["verify", GIULIA], &format!("{whole}\n"), 6);

    // INPS-5: branch counter → sealed envelope, dispositivo, confirmed on hand-over.
    enrol_inps(&env, PAOLO, "branch:B9");
    env.fails_unchanged(
        &[
            "request",
            "branch",
            PAOLO,
            "--document",
            "failed",
            "--as",
            "branch:B9",
        ],
        "",
        5,
        "identity document",
    );
    let v = env.json(
        &[
            "request",
            "branch",
            PAOLO,
            "--document",
            "passed",
            "--as",
            "branch:B9",
        ],
        "",
        0,
    );
    assert_eq!(v["deliveries"][0]["channel"], "envelope");
    assert_eq!(v["deliveries"][0]["state"], "confirmed");
    assert_eq!(v["credential"]["level"], "dispositivo");
    assert_eq!(v["credential"]["pin_length"], 16);
    assert!(env.secret(PAOLO, 1, "envelope").len() == 16);
    // INPS-10: a parent only for a minor; a delegate never.
    enrol_inps(&env, MINOR, "parent");
    env.json(
        &[
            "request",
            "branch",
            MINOR,
            "--document",
            "passed",
            "--on-behalf",
            "parent",
            "--as",
            "branch:B9",
        ],
        "",
        0,
    );
    assert_eq!(
        env.json(&["status", MINOR], "", 0)["represented_by"],
        "parent"
    );
    env.fails_unchanged(
        &[
            "request",
            "branch",
            PAOLO,
            "--document",
            "passed",
            "--on-behalf",
            "parent",
            "--as",
            "branch:B9",
        ],
        "",
        5,
        "minor",
    );
    env.fails_unchanged(
        &[
            "request",
            "web",
            PAOLO,
            "--address-check",
            "passed",
            "--as",
            "delegate:D1",
        ],
        "",
        5,
        "delegates",
    );
    env.fails_unchanged(
        &[
            "enrol",
            TESTER,
            "--role",
            "citizen",
            "--email",
            "t@example.it",
            "--as",
            "delegate:D1",
        ],
        "",
        5,
        "delegates",
    );

    // INPS-8: pre-assigned letter, activation with the health card, second half by SMS.
    enrol_inps(&env, STEFANO, "subject");
    env.fails_unchanged(
        &["pre-assign", STEFANO, "--as", "subject"],
        "",
        5,
        "may not",
    );
    let v = env.json(&["pre-assign", STEFANO], "", 0);
    assert_eq!(v["deliveries"][0]["channel"], "post");
    assert_eq!(
        (
            v["deliveries"][0]["part"].as_u64(),
            v["deliveries"][0]["of"].as_u64()
        ),
        (Some(1), Some(2))
    );
    let half = env.secret(STEFANO, 1, "post");
    assert_eq!(
        env.json(&["status", STEFANO], "", 0)["state"],
        "awaiting_activation"
    );
    env.fails_unchanged(
        &["activate", STEFANO, "--health-card", "failed"],
        &format!("{half}\n"),
        5,
        "health card",
    );
    env.fails_unchanged(
        &["activate", STEFANO, "--health-card", "passed"],
        "12\n",
        2,
        "PIN",
    );
    let v = env.json(
        &["activate", STEFANO, "--health-card", "passed"],
        &format!("{half}\n"),
        0,
    );
    assert_eq!(v["deliveries"][0]["channel"], "sms");
    let second = env.secret(STEFANO, 2, "sms");
    env.json(&["verify", STEFANO], &format!("{half}{second}\n"), 6);
    env.json(
        &["change", STEFANO],
        &format!("{half}{second}\nK7QM2ZXA\n"),
        0,
    );
    env.json(&["verify", STEFANO], "K7QM2ZXA\n", 0);

    // INPS re-send by the contact centre: a fresh PIN on the same channels.
    enrol_inps(&env, GIORGIO, "subject");
    env.json(
        &[
            "request",
            "web",
            GIORGIO,
            "--address-check",
            "passed",
            "--as",
            "subject",
        ],
        "",
        0,
    );
    let old = format!(
        "{}{}",
        env.secret(GIORGIO, 1, "sms"),
        env.secret(GIORGIO, 2, "post")
    );
    let v = env.json(&["resend", GIORGIO, "--as", "contact-centre:C1"], "", 0);
    assert_eq!(v["credential"]["serial"], 2);
    let new = format!(
        "{}{}",
        env.secret(GIORGIO, 1, "sms"),
        env.secret(GIORGIO, 2, "post")
    );
    assert_ne!(old, new);
    env.json(&["verify", GIORGIO], &format!("{old}\n"), 3);
    env.json(&["verify", GIORGIO], &format!("{new}\n"), 6);
}

#[test]
fn bad_input_is_one_clear_error_and_changes_nothing() {
    let env = Env::initialised();
    enrol_noipa(&env, MARIO, "mario@example.it", &[]);
    enrol_inps(&env, LUCA, "subject");
    env.ok(
        &[
            "request",
            "web",
            LUCA,
            "--address-check",
            "passed",
            "--as",
            "subject",
        ],
        "",
    );
    let pin = env.secret(MARIO, 1, "email");
    let enrol = |tax: &'static str, email: &'static str, mobile: &'static str| {
        vec![
            "enrol", tax, "--role", "citizen", "--email", email, "--mobile", mobile, "--as",
            "subject",
        ]
    };
    // Malformed tax code, e-mail, phone, address, date, time.
    env.fails_unchanged(
        &enrol("RSSMRA85T10A562X", "a@example.it", "3471234567"),
        "",
        2,
        "check character",
    );
    env.fails_unchanged(
        &enrol("RSSMRA85", "a@example.it", "3471234567"),
        "",
        2,
        "16 characters",
    );
    env.fails_unchanged(
        &enrol(GIULIA, "a@@example.it", "3471234567"),
        "",
        2,
        "e-mail",
    );
    env.fails_unchanged(
        &enrol(GIULIA, "a@example.it", "0612345678"),
        "",
        2,
        "mobile",
    );
    env.fails_unchanged(
        &enrol(GIULIA, "a@example.it", "34x1234567"),
        "",
        2,
        "mobile",
    );
    env.fails_unchanged(
        &[
            "enrol",
            GIULIA,
            "--role",
            "citizen",
            "--address",
            "nowhere",
            "--as",
            "subject",
        ],
        "",
        2,
        "address",
    );
    env.fails_unchanged(
        &[
            "enrol",
            PAOLO,
            "--role",
            "employee",
            "--email",
            "p@example.it",
            "--enrolled-on",
            "2020-13-01",
            "--as",
            "rid:R1",
        ],
        "",
        2,
        "invalid value",
    );
    env.fails_unchanged(&["--now", "yesterday", "status", MARIO], "", 2, "RFC 3339");
    env.fails_unchanged(
        &[
            "enrol",
            PAOLO,
            "--role",
            "employee",
            "--email",
            "p@example.it",
            "--as",
            "rid:R1",
        ],
        "",
        2,
        "date of enrolment",
    );
    env.fails_unchanged(
        &["enrol", PAOLO, "--role", "boss", "--as", "rid:R1"],
        "",
        2,
        "invalid value",
    );
    env.fails_unchanged(
        &["enrol", PAOLO, "--role", "employee", "--as", "king:1"],
        "",
        2,
        "unknown actor",
    );
    env.fails_unchanged(&["identify", MARIO, "--as", "rid:R1"], "", 2, "e-mail");
    // Malformed PINs: refused before any attempt is counted.
    env.fails_unchanged(&["verify", MARIO], "12a45\n", 2, "PIN");
    env.fails_unchanged(&["verify", MARIO], "123456\n", 2, "PIN");
    env.fails_unchanged(&["verify", MARIO], "", 2, "standard input");
    env.fails_unchanged(&["verify", LUCA], "O0O0O0O0I1I1I1I1\n", 2, "alphabet");
    env.fails_unchanged(&["change", LUCA], "", 2, "standard input");
    // Unknown subject.
    env.fails_unchanged(&["status", UNKNOWN], "", 5, "no subject");
    env.fails_unchanged(
        &["resend", UNKNOWN, "--as", "support:S1"],
        "",
        5,
        "no subject",
    );
    env.fails_unchanged(
        &[
            "identify",
            UNKNOWN,
            "--email",
            "u@example.it",
            "--as",
            "rid:R1",
        ],
        "",
        5,
        "enrol them first",
    );
    env.fails_unchanged(
        &[
            "request",
            "web",
            UNKNOWN,
            "--address-check",
            "passed",
            "--as",
            "subject",
        ],
        "",
        5,
        // Defect 9: the answer of a registered person who cannot ask on the web.
        "no PIN can be issued",
    );
    // Defect 9: the PIN of a tax code not on record does not authenticate, as a person's
    // without a PIN does not.
    let v = env.json(&["change", UNKNOWN, "--generate"], "AAAAAAAA\n", 6);
    assert_eq!(v["outcome"], "no_pin");
    env.fails_unchanged(
        &[
            "contacts",
            UNKNOWN,
            "--email",
            "u@example.it",
            "--as",
            "rid:R1",
        ],
        "",
        5,
        "no subject",
    );
    let v = env.json(&["verify", UNKNOWN], "12345\n", 6);
    assert_eq!(
        (v["outcome"].as_str(), v["remaining_attempts"].as_u64()),
        (Some("no_pin"), None)
    );
    // Wrong actor for each kind of command.
    env.fails_unchanged(
        &[
            "identify",
            MARIO,
            "--email",
            "m@example.it",
            "--as",
            "support:S1",
        ],
        "",
        5,
        "may not",
    );
    env.fails_unchanged(
        &[
            "enrol",
            PAOLO,
            "--role",
            "employee",
            "--enrolled-on",
            "2020-01-01",
            "--email",
            "p@example.it",
            "--as",
            "subject",
        ],
        "",
        5,
        "may not",
    );
    env.fails_unchanged(
        &["verify", MARIO, "--as", "rid:R1"],
        &format!("{pin}\n"),
        5,
        "only the person",
    );
    env.fails_unchanged(
        &["change", LUCA, "--as", "branch:B1"],
        "",
        5,
        "only the person",
    );
    env.fails_unchanged(
        &[
            "activate",
            LUCA,
            "--health-card",
            "passed",
            "--as",
            "system",
        ],
        "",
        5,
        "only the person",
    );
    env.fails_unchanged(
        &[
            "request",
            "contact-centre",
            LUCA,
            "--archives",
            "passed",
            "--as",
            "subject",
        ],
        "",
        5,
        "may not",
    );
    env.fails_unchanged(
        &[
            "request",
            "web",
            MARIO,
            "--address-check",
            "passed",
            "--as",
            "subject",
        ],
        "",
        5,
        // Unauthenticated: a NoiPA record answers as a tax code not on record (defect 9).
        "no PIN can be issued",
    );
    env.fails_unchanged(&["resend", LUCA, "--as", "support:S1"], "", 5, "may not");
    env.fails_unchanged(
        &["import", "-", "--as", "rid:R1"],
        &import_line(TESTER, FAKE_PHC),
        5,
        "may not",
    );
    // Existing subject; nothing to change; wrong profile.
    env.fails_unchanged(
        &enrol(LUCA, "l@example.it", "3471234567"),
        "",
        5,
        "already on record",
    );
    env.fails_unchanged(
        &["contacts", MARIO, "--as", "rid:R1"],
        "",
        2,
        "nothing to change",
    );
    env.fails_unchanged(
        &["contacts", MARIO, "--email", "bad@", "--as", "rid:R1"],
        "",
        2,
        "e-mail",
    );
    // Import: a bad line imports nothing.
    let file = env.path("import.jsonl");
    std::fs::write(
        &file,
        format!(
            "{}{{\"tax_code\":\"NOPE\"}}\n",
            import_line(GIULIA, FAKE_PHC)
        ),
    )
    .unwrap();
    env.fails_unchanged(&["import", file.to_str().unwrap()], "", 2, "line 2");
    env.fails_unchanged(&["import", "missing.jsonl"], "", 2, "cannot read");
    // The audit log and the outbox were not touched by any of it; the dump does see changes.
    assert_eq!(env.outbox_names().len(), 3);
    let before = env.dump();
    env.json(&["verify", MARIO], &format!("{pin}\n"), 0);
    assert_ne!(before, env.dump(), "a verify is audited");
}

#[test]
fn missing_database_and_corrupt_key_file_are_storage_errors() {
    let env = Env::new();
    let out = env.run(&["status", MARIO], "");
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert!(out.stderr.contains("pin init"), "{}", out.stderr);
    assert!(
        !env.path("pin.db").exists(),
        "a missing database is not created"
    );
    let v = env.json(&["audit", "show"], "", 7);
    assert_eq!(v["error"]["kind"], "storage");

    let env = Env::initialised();
    enrol_noipa(&env, MARIO, "mario@example.it", &[]);
    let pin = env.secret(MARIO, 1, "email");
    let key = std::fs::read(env.path("pin.key")).unwrap();
    for corrupt in [
        &b"not hex at all"[..],
        &b""[..],
        &[b'g'; 64][..],
        &key[..40],
    ] {
        std::fs::write(env.path("pin.key"), corrupt).unwrap();
        env.fails_unchanged(&["verify", MARIO], &format!("{pin}\n"), 7, "key file");
        env.fails_unchanged(&["resend", MARIO, "--as", "rid:R1"], "", 7, "corrupt");
    }
    std::fs::remove_file(env.path("pin.key")).unwrap();
    env.fails_unchanged(&["verify", MARIO], &format!("{pin}\n"), 7, "no key file");
    // rule: POL-8, INPS-12 — another valid key: refused as the wrong key file before
    // anything is counted, however often it is tried (it used to lock the person out).
    std::fs::write(env.path("pin.key"), "00".repeat(32)).unwrap();
    for _ in 0..11 {
        env.fails_unchanged(&["verify", MARIO], &format!("{pin}\n"), 7, "wrong key file");
    }
    std::fs::write(env.path("pin.key"), &key).unwrap();
    env.json(&["verify", MARIO], &format!("{pin}\n"), 0);
    // A database file that is not a database.
    std::fs::write(env.path("pin.db"), b"this is not sqlite").unwrap();
    let out = env.run(&["status", MARIO], "");
    assert_eq!(out.code, 7, "{}", out.stderr);
    assert_eq!(
        std::fs::read(env.path("pin.db")).unwrap(),
        b"this is not sqlite"
    );
}

fn import_line(tax: &str, phc: &str) -> String {
    format!(
        "{{\"tax_code\":\"{tax}\",\"role\":\"citizen\",\"contacts\":{{\"email\":\"{}@example.it\",\"mobile\":\"+393351234567\"}},\"hash\":{{\"key_id\":1,\"phc\":\"{phc}\"}},\"format\":\"inps_in_use8\",\"level\":\"online\",\"stage\":\"active\",\"issued_at\":\"2024-06-01T00:00:00Z\",\"changed_at\":\"2024-12-01T00:00:00Z\"}}\n",
        tax.to_lowercase()
    )
}

#[test]
fn import_hash_and_audit() {
    let env = Env::initialised();
    let v = env.json(
        &["hash", "--format", "inps-in-use8"],
        "K7QM2ZXA\nP4TR8WNE\n",
        0,
    );
    let hashes = v["hashes"].as_array().unwrap();
    assert_eq!(hashes.len(), 2);
    let phc = |i: usize| hashes[i]["phc"].as_str().unwrap().to_owned();
    let file = format!(
        "{}{}",
        import_line(LUCA, &phc(0)),
        import_line(GIULIA, &phc(1))
    );
    std::fs::write(env.path("import.jsonl"), &file).unwrap();
    let v = env.json(&["import", "import.jsonl"], "", 0);
    assert_eq!(v["imported"], 2);
    env.json(&["verify", LUCA], "K7QM2ZXA\n", 0);
    env.json(&["verify", GIULIA], "P4TR8WNE\n", 0);
    let st = env.json(&["status", GIULIA], "", 0);
    assert_eq!(
        (st["origin"].as_str(), st["rotation_due"].as_str()),
        (Some("import"), Some("2025-06-01T00:00:00Z"))
    );
    // Importing again: refused, nothing imported.
    env.fails_unchanged(&["import", "import.jsonl"], "", 5, "already on record");
    // A record the rules refuse (an employee with an INPS PIN) imports nothing of the batch.
    let bad = import_line(STEFANO, &phc(0)).replace("\"citizen\"", "\"employee\"");
    let batch = format!("{}{bad}", import_line(PAOLO, &phc(1)));
    env.fails_unchanged(&["import", "-"], &batch, 2, "line 2");
    env.fails_unchanged(
        &["import", "-", "--as", "rid:R1"],
        &import_line(PAOLO, &phc(1)),
        5,
        "may not",
    );
    // A hash of another key id is refused.
    let other = import_line(PAOLO, &phc(0)).replace("\"key_id\":1", "\"key_id\":2");
    env.fails_unchanged(&["import", "-"], &other, 2, "key id");
    env.fails_unchanged(&["hash", "--format", "noipa-digits5"], "12a45\n", 2, "PIN");

    // The audit log: shown per subject, chain verified, tampering detected.
    let v = env.json(&["audit", "show", LUCA], "", 0);
    let actions: Vec<&str> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["import", "verify"]);
    assert!(env.ok(&["audit", "show"], "").stdout.contains(GIULIA));
    let v = env.json(&["audit", "verify"], "", 0);
    assert_eq!(
        (v["intact"].as_bool(), v["intact_rows"].as_u64()),
        (Some(true), Some(4))
    );
    let conn = rusqlite::Connection::open(env.path("pin.db")).unwrap();
    let triggers: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    for t in triggers {
        conn.execute(&format!("DROP TRIGGER \"{t}\""), []).unwrap();
    }
    conn.execute(
        "UPDATE audit SET event = replace(event, 'verify', 'vErify') WHERE id = 3",
        [],
    )
    .unwrap();
    drop(conn);
    let out = env.run(&["audit", "verify"], "");
    assert_eq!(out.code, 8, "{}{}", out.stdout, out.stderr);
    assert!(out.stderr.contains("broken at row 3"), "{}", out.stderr);
}

#[test]
fn an_issued_pin_appears_only_in_its_outbox_file() {
    let env = Env::initialised();
    enrol_noipa(&env, MARIO, "mario@example.it", &["--mobile", "3471234567"]);
    enrol_inps(&env, LUCA, "subject");
    env.ok(
        &[
            "request",
            "web",
            LUCA,
            "--address-check",
            "passed",
            "--as",
            "subject",
        ],
        "",
    );
    enrol_inps(&env, GIULIA, "contact-centre:C1");
    env.ok(
        &[
            "request",
            "contact-centre",
            GIULIA,
            "--archives",
            "passed",
            "--as",
            "contact-centre:C1",
        ],
        "",
    );
    enrol_inps(&env, PAOLO, "branch:B1");
    env.ok(
        &[
            "request",
            "branch",
            PAOLO,
            "--document",
            "passed",
            "--as",
            "branch:B1",
        ],
        "",
    );
    enrol_inps(&env, STEFANO, "subject");
    env.ok(&["pre-assign", STEFANO], "");
    let half = env.secret(STEFANO, 1, "post");
    env.ok(
        &["activate", STEFANO, "--health-card", "passed"],
        &format!("{half}\n"),
    );
    let whole = format!(
        "{}{}",
        env.secret(LUCA, 1, "sms"),
        env.secret(LUCA, 2, "post")
    );
    let mario = env.secret(MARIO, 1, "sms");
    // Every command that handles these subjects, with every output form.
    for json in [false, true] {
        let j: &[&str] = if json { &["--json"] } else { &[] };
        let run = |args: &[&str], stdin: &str| {
            let mut all = j.to_vec();
            all.extend_from_slice(args);
            env.run(&all, stdin)
        };
        for tax in [MARIO, LUCA, GIULIA, PAOLO, STEFANO] {
            run(&["status", tax], "");
            run(&["audit", "show", tax], "");
            run(&["outbox", tax], "");
        }
        run(&["verify", MARIO], &format!("{mario}\n"));
        run(&["verify", LUCA], &format!("{whole}\n"));
        run(&["audit", "verify"], "");
        run(&["policy"], "");
    }
    env.ok(&["change", LUCA], &format!("{whole}\nK7QM2ZXA\n"));
    env.ok(&["resend", PAOLO, "--as", "branch:B1"], "");
    let secrets = env.all_secrets();
    assert!(secrets.len() >= 10, "{secrets:?}");
    let printed = env.printed.borrow().clone();
    for s in &secrets {
        assert!(!printed.contains(s.as_str()), "the secret {s} was printed");
    }
    assert!(!printed.contains(&whole));
    assert!(
        !printed.contains("K7QM2ZXA"),
        "a chosen PIN is never echoed"
    );
    // The database (and its write-ahead log) holds only hashes: look for the INPS secrets,
    // whose 8 characters from a 32-symbol alphabet cannot appear by chance.
    let mut db = Vec::new();
    for f in ["pin.db", "pin.db-wal"] {
        if let Ok(b) = std::fs::read(env.path(f)) {
            db.extend(b);
        }
    }
    let db = String::from_utf8_lossy(&db);
    for s in secrets
        .iter()
        .filter(|s| s.len() >= 8)
        .chain([&whole, &"K7QM2ZXA".to_owned()])
    {
        assert!(
            !db.contains(s.as_str()),
            "the secret {s} is in the database"
        );
    }
}

#[test]
fn concurrent_wrong_pins_lock_after_exactly_the_limit() {
    let env = Env::initialised();
    enrol_noipa(&env, MARIO, "mario@example.it", &[]);
    let pin = env.secret(MARIO, 1, "email");
    let wrong = if pin == "13579" { "24680" } else { "13579" };
    let children: Vec<_> = (0..24)
        .map(|_| {
            let mut c = env.command(&["--json", "verify", MARIO]).spawn().unwrap();
            c.stdin
                .take()
                .unwrap()
                .write_all(format!("{wrong}\n").as_bytes())
                .unwrap();
            c
        })
        .collect();
    let outs: Vec<Out> = children
        .into_iter()
        .map(|c| to_out(&c.wait_with_output().unwrap()))
        .collect();
    let mut rejected = 0;
    let mut locked = 0;
    let mut later = 0;
    for o in &outs {
        match (o.code, o.json()["outcome"].as_str()) {
            (3, Some("rejected")) => rejected += 1,
            (4, Some("locked")) => locked += 1,
            // rule: POL-8 — compares in flight filled the budget: not counted, exit 9.
            (9, Some("try_later")) => later += 1,
            other => panic!("unexpected {other:?}: {} {}", o.stdout, o.stderr),
        }
    }
    assert_eq!(rejected, 9, "nine answers with attempts left");
    assert_eq!(locked + later, 15);
    let st = env.json(&["status", MARIO], "", 0);
    assert_eq!(
        (st["consecutive_failures"].as_u64(), st["locked"].as_bool()),
        (Some(10), Some(true))
    );
    env.json(&["verify", MARIO], &format!("{pin}\n"), 4);
}

#[test]
fn demo_walks_the_lifecycles() {
    let env = Env::new();
    let out = env.ok(&["demo"], "");
    for needle in [
        "NOTE",
        "PIN: ",
        "PIN (part 2 of 2): ",
        "must_change",
        "locked",
        "insufficient_level",
        "expired",
    ] {
        assert!(out.stdout.contains(needle), "demo output lacks {needle:?}");
    }
    assert!(
        !env.path("pin.db").exists(),
        "the demo works in a temporary directory"
    );
    let v = env.json(&["demo"], "", 0);
    assert!(v["steps"].as_u64().unwrap() >= 10);
}

#[test]
fn key_file_option_and_outbox_option() {
    let env = Env::new();
    std::fs::create_dir(env.path("keys")).unwrap();
    let key = env.path("keys/k.hex");
    let out = env.path("mail");
    let (k, o) = (key.to_str().unwrap(), out.to_str().unwrap());
    env.ok(&["--key-file", k, "--outbox", o, "init"], "");
    assert!(key.exists() && !env.path("pin.key").exists());
    env.ok(
        &[
            "--key-file",
            k,
            "--outbox",
            o,
            "enrol",
            MARIO,
            "--role",
            "employee",
            "--enrolled-on",
            "2020-01-01",
            "--email",
            "m@example.it",
            "--as",
            "rid:R1",
        ],
        "",
    );
    assert!(
        Path::new(&out)
            .join("RSSMRA85T10A562S-s1-p1of1-email.txt")
            .exists()
    );
    let out = env.run(&["status", MARIO], "");
    assert_eq!(
        out.code, 7,
        "the default key file is beside the database: {}",
        out.stderr
    );
}

// rule: POL-8, INPS-12 — a database whose PINs were hashed with the test-only parameters,
// used without them: every verify is refused with a configuration error that names the
// cause, before anything is counted; the right PIN works again under the right settings.
#[test]
fn test_only_hashes_under_real_settings_count_nothing() {
    let env = Env::initialised();
    enrol_noipa(&env, MARIO, "mario@example.it", &[]);
    let pin = env.secret(MARIO, 1, "email");
    for _ in 0..11 {
        let before = env.dump();
        let mut child = env
            .command(&["--json", "verify", MARIO])
            .env_remove("PIN_INSECURE_FAST_HASH")
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{pin}\n").as_bytes())
            .unwrap();
        let out = to_out(&child.wait_with_output().unwrap());
        assert_eq!(out.code, 7, "{}{}", out.stdout, out.stderr);
        let v = out.json();
        assert_eq!(v["error"]["kind"], "storage");
        let msg = v["error"]["message"].as_str().unwrap();
        assert!(msg.contains("test-only parameters"), "{msg}");
        assert!(!msg.contains(&pin), "no PIN in the message");
        assert_eq!(
            before,
            env.dump(),
            "a misconfigured verify changed the database"
        );
    }
    let st = env.json(&["status", MARIO], "", 0);
    assert_eq!(st["consecutive_failures"].as_u64(), Some(0));
    env.json(&["verify", MARIO], &format!("{pin}\n"), 0);
}

// ---------------------------------------------------------------------------------------------
// Issue 11: issuance integrity.

/// One `--json` run: exit code and the JSON printed, with the tax code of the subject
/// replaced, so that the answers for two subjects compare.
fn answer(env: &Env, args: &[&str], stdin: &str, tax: &str) -> (i32, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = env.run(&all, stdin);
    let text = if out.stdout.trim().is_empty() {
        out.stderr.clone()
    } else {
        out.stdout.clone()
    };
    let line = text
        .lines()
        .find(|l| l.trim_start().starts_with('{'))
        .unwrap_or_else(|| panic!("no JSON for {args:?}: {text:?}"));
    let json: Value = serde_json::from_str(&line.replace(tax, "TAX")).unwrap();
    (out.code, json)
}

// rule: INPS-14, INPS-16, INPS-6, NOIPA-9 — defect 9: every command a person can start
// without authenticating answers a tax code not on record exactly as it answers a person on
// record whose proof fails: same exit code, same JSON.
#[test]
fn issue_11_unknown_subjects_answer_as_failing_proofs() {
    let env = Env::initialised();
    // LUCA: a PIN from a branch, so a reset with wrong contacts is a failing proof.
    enrol_inps(&env, LUCA, "subject");
    env.ok(
        &[
            "request",
            "branch",
            LUCA,
            "--document",
            "passed",
            "--as",
            "branch:B1",
        ],
        "",
    );
    // PAOLO: registered, no PIN, a web request waiting for the outbound call.
    enrol_inps(&env, PAOLO, "subject");
    env.ok(
        &[
            "request",
            "web",
            PAOLO,
            "--address-check",
            "failed",
            "--as",
            "subject",
        ],
        "",
    );
    let reset = |tax: &'static str| {
        vec![
            "reset",
            tax,
            "--email",
            "nobody@example.it",
            "--mobile",
            "3000000000",
            "--as",
            "subject",
        ]
    };
    let unknown = answer(&env, &reset(UNKNOWN), "", UNKNOWN);
    assert_eq!(unknown.0, 5, "{unknown:?}");
    assert_eq!(unknown, answer(&env, &reset(LUCA), "", LUCA));
    assert_eq!(unknown, answer(&env, &reset(PAOLO), "", PAOLO));

    let web = |tax: &'static str| {
        vec![
            "request",
            "web",
            tax,
            "--address-check",
            "passed",
            "--as",
            "subject",
        ]
    };
    let unknown = answer(&env, &web(UNKNOWN), "", UNKNOWN);
    assert_eq!(unknown.0, 5, "{unknown:?}");
    assert_eq!(unknown, answer(&env, &web(PAOLO), "", PAOLO));

    let resend = |tax: &'static str| vec!["resend", tax, "--as", "subject"];
    let unknown = answer(&env, &resend(UNKNOWN), "", UNKNOWN);
    assert_eq!(unknown, answer(&env, &resend(PAOLO), "", PAOLO));

    let contacts = |tax: &'static str| {
        vec![
            "contacts",
            tax,
            "--email",
            "new@example.it",
            "--as",
            "subject",
        ]
    };
    let unknown = answer(&env, &contacts(UNKNOWN), "AAAAAAAA\n", UNKNOWN);
    assert_eq!(unknown.0, 6, "{unknown:?}");
    assert_eq!(unknown, answer(&env, &contacts(PAOLO), "AAAAAAAA\n", PAOLO));

    let change = |tax: &'static str| vec!["change", tax, "--generate"];
    let unknown = answer(&env, &change(UNKNOWN), "AAAAAAAA\n", UNKNOWN);
    assert_eq!(unknown.0, 6, "{unknown:?}");
    assert_eq!(unknown, answer(&env, &change(PAOLO), "AAAAAAAA\n", PAOLO));
}

// rule: INPS-16 — defect 1 with the binary: a request waiting for (or failed at) the
// outbound call gives no PIN by reset, and nothing reaches the outbox.
#[test]
fn issue_11_inps_16_no_first_pin_by_reset() {
    let env = Env::initialised();
    enrol_inps(&env, PAOLO, "subject");
    let email = format!("{}@example.it", PAOLO.to_lowercase());
    let reset = [
        "reset",
        PAOLO,
        "--email",
        email.as_str(),
        "--mobile",
        "3351234567",
        "--as",
        "subject",
    ];
    env.fails_unchanged(&reset, "", 5, "reset is not possible");
    env.ok(
        &[
            "request",
            "web",
            PAOLO,
            "--address-check",
            "failed",
            "--as",
            "subject",
        ],
        "",
    );
    env.fails_unchanged(&reset, "", 5, "reset is not possible");
    env.ok(
        &["outbound", PAOLO, "failed", "--as", "contact-centre:C1"],
        "",
    );
    env.fails_unchanged(&reset, "", 5, "reset is not possible");
    assert!(env.all_secrets().is_empty(), "no PIN was ever sent");
    // After a branch issue, reset is the recovery.
    env.ok(
        &[
            "request",
            "branch",
            PAOLO,
            "--document",
            "passed",
            "--as",
            "branch:B1",
        ],
        "",
    );
    let v = env.json(&reset, "", 0);
    assert_eq!(v["credential"]["pin_length"], 16);
}

// rule: POL-7, INPS-8, INPS-2 — defects 2 and 3 with the binary: neither a pre-assigned
// letter nor a contact-centre request replaces a dispositivo PIN in use.
#[test]
fn issue_11_pol_7_no_request_takes_a_pin_in_use() {
    let env = Env::initialised();
    enrol_inps(&env, LUCA, "subject");
    env.ok(
        &[
            "request",
            "branch",
            LUCA,
            "--document",
            "passed",
            "--as",
            "branch:B1",
        ],
        "",
    );
    let pin16 = env.secret(LUCA, 1, "envelope");
    env.ok(&["change", LUCA], &format!("{pin16}\nK7QM2ZXA\nK7QM2ZXA\n"));
    env.fails_unchanged(&["pre-assign", LUCA], "", 5, "no PIN can be issued");
    env.fails_unchanged(
        &[
            "request",
            "contact-centre",
            LUCA,
            "--archives",
            "passed",
            "--as",
            "contact-centre:C1",
        ],
        "",
        5,
        "POL-7",
    );
    let v = env.json(&["verify", LUCA, "--level", "dispositivo"], "K7QM2ZXA\n", 0);
    assert_eq!(v["outcome"], "accepted");
}

// rule: POL-6 — a branch issue and a change of contacts write a notice without any PIN to
// the contacts on record before the change; `pin outbox` still lists only the PIN messages.
#[test]
fn issue_11_pol_6_notices_in_the_outbox() {
    let env = Env::initialised();
    enrol_inps(&env, LUCA, "subject");
    env.ok(
        &[
            "request",
            "branch",
            LUCA,
            "--document",
            "passed",
            "--as",
            "branch:B1",
        ],
        "",
    );
    let old = format!("{}@example.it", LUCA.to_lowercase());
    env.ok(
        &[
            "contacts",
            LUCA,
            "--email",
            "luca.new@example.it",
            "--as",
            "branch:B1",
        ],
        "",
    );
    let pin = env.secret(LUCA, 1, "envelope");
    let notices: Vec<String> = env
        .outbox_names()
        .into_iter()
        .filter(|n| n.contains("-notice-"))
        .collect();
    assert!(
        notices.iter().any(|n| n.contains("contacts_changed-email")),
        "{notices:?}"
    );
    assert!(
        notices.iter().any(|n| n.contains("pin_issued-sms")),
        "{notices:?}"
    );
    for name in &notices {
        let body = std::fs::read_to_string(env.path("outbox").join(name)).unwrap();
        assert!(!body.lines().any(|l| l.starts_with("PIN")), "{body}");
        assert!(!body.contains(&pin));
        assert!(!body.contains("luca.new@example.it"), "{body}");
        if name.ends_with("-email.txt") {
            assert!(body.starts_with(&format!("To: {old}\n")), "{body}");
        }
    }
    let listed = env.json(&["outbox", LUCA], "", 0);
    assert!(!listed.to_string().contains("notice"), "{listed}");
}

// rule: INPS-6, INPS-7 — the outbound queue: oldest first, contacts masked, for the contact
// centre only.
#[test]
fn issue_11_outbound_queue_oldest_first_masked() {
    let env = Env::initialised();
    for (tax, at) in [
        (LUCA, "2025-01-15T10:00:00Z"),
        (PAOLO, "2025-01-15T09:30:00Z"),
    ] {
        enrol_inps(&env, tax, "subject");
        env.ok(
            &[
                "--now",
                at,
                "request",
                "web",
                tax,
                "--address-check",
                "failed",
                "--as",
                "subject",
            ],
            "",
        );
    }
    env.fails_unchanged(&["queue", "--as", "subject"], "", 5, "contact-centre");
    let v = env.json(&["queue", "--as", "contact-centre:C1"], "", 0);
    assert_eq!(v["count"], 2);
    assert_eq!(v["waiting"][0]["subject"], PAOLO);
    assert_eq!(v["waiting"][1]["subject"], LUCA);
    assert_eq!(v["waiting"][0]["origin"], "web");
    let mobile = v["waiting"][0]["mobile"].as_str().unwrap();
    assert!(
        mobile.contains('*') && !mobile.contains("3351234567"),
        "{mobile}"
    );
    assert!(
        !v.to_string()
            .contains(&format!("{}@", PAOLO.to_lowercase()))
    );
    env.ok(
        &["outbound", PAOLO, "failed", "--as", "contact-centre:C1"],
        "",
    );
    let v = env.json(&["queue", "--as", "contact-centre:C1"], "", 0);
    assert_eq!(v["count"], 1);
    assert_eq!(v["waiting"][0]["subject"], LUCA);
}

// rule: INPS-15 — with the binary: a representative is refused on the web and for reset; at
// the branch the role and the self-declaration are recorded in the audit event.
#[test]
fn issue_11_inps_15_on_behalf_only_at_a_branch() {
    let env = Env::initialised();
    enrol_inps(&env, MINOR, "parent");
    env.fails_unchanged(
        &[
            "request",
            "web",
            MINOR,
            "--address-check",
            "passed",
            "--as",
            "parent",
        ],
        "",
        5,
        "INPS-15",
    );
    let email = format!("{}@example.it", MINOR.to_lowercase());
    env.fails_unchanged(
        &[
            "reset",
            MINOR,
            "--email",
            email.as_str(),
            "--mobile",
            "3351234567",
            "--as",
            "guardian",
        ],
        "",
        5,
        "INPS-15",
    );
    env.ok(
        &[
            "request",
            "branch",
            MINOR,
            "--document",
            "passed",
            "--on-behalf",
            "parent",
            "--as",
            "branch:B9",
        ],
        "",
    );
    let audit = env.json(&["audit", "show", MINOR], "", 0).to_string();
    assert!(
        audit.contains(
            "on_behalf=parent;self_declaration=art46_dpr445_2000;received_by=branch_operator:B9"
        ),
        "{audit}"
    );
}

// rule: NOIPA-12 — with the binary: an enrolment operator may not replace the e-mail after
// enrolment; the RID may.
#[test]
fn issue_11_noipa_12_enrolment_operator_cannot_identify() {
    let env = Env::initialised();
    env.ok(
        &[
            "enrol",
            MARIO,
            "--role",
            "employee",
            "--enrolled-on",
            "2020-09-01",
            "--email",
            "mario@example.it",
            "--as",
            "enrolment-operator:E1",
        ],
        "",
    );
    env.fails_unchanged(
        &[
            "identify",
            MARIO,
            "--email",
            "new@example.it",
            "--as",
            "enrolment-operator:E1",
        ],
        "",
        5,
        "NOIPA-12",
    );
    env.ok(
        &[
            "identify",
            MARIO,
            "--email",
            "new@example.it",
            "--as",
            "rid:R1",
        ],
        "",
    );
}

/// Runs `pin args` with the live policy's real Argon2id cost (m = 19 MiB) and the address
/// space limited to `kib` KiB (`ulimit -v`).
#[cfg(target_os = "linux")]
fn run_limited(env: &Env, kib: u32, args: &[&str], stdin: &str) -> Out {
    let base = env.command(&[]);
    let mut c = Command::new("sh");
    c.args(["-c", "ulimit -v \"$0\" && exec \"$@\""])
        .arg(kib.to_string())
        .arg(BIN)
        .args(args)
        .current_dir(env.dir.path());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c.env_remove("PIN_INSECURE_FAST_HASH")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    to_out(&child.wait_with_output().unwrap())
}

// `pin status` and the other commands that verify no PIN compute no Argon2id. Shown without
// a clock: under an address-space limit too small for one Argon2id at the live cost
// (19 MiB), a verify fails with Argon2's "out of memory" while status, audit and policy
// still work. Before the fix every command hashed once at start, so no such limit existed.
#[cfg(target_os = "linux")]
#[test]
fn status_and_other_non_verify_commands_compute_no_hash() {
    let env = Env::initialised();
    // A real-cost hash (no PIN_INSECURE_FAST_HASH), imported.
    let mut hash = env.command(&["hash", "--format", "inps-in-use8"]);
    hash.env_remove("PIN_INSECURE_FAST_HASH");
    let mut child = hash.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"K7QM2ZXA\n")
        .unwrap();
    let out = to_out(&child.wait_with_output().unwrap());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let phc: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    let phc = phc["phc"].as_str().unwrap().to_owned();
    assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
    env.ok(&["import", "-"], &import_line(LUCA, &phc));
    // The lowest limit (in 4 MiB steps) at which a verify fails for want of memory and
    // status does not: there must be one.
    let window = (12..=40).step_by(4).map(|mib| mib * 1024).find(|&kib| {
        let verify = run_limited(&env, kib, &["verify", LUCA], "K7QM2ZXA\n");
        let hash_oom = verify.code != 0 && verify.stderr.contains("out of memory");
        hash_oom && run_limited(&env, kib, &["status", LUCA], "").code == 0
    });
    let Some(kib) = window else {
        panic!("no address-space limit lets status run but not one Argon2id");
    };
    for args in [
        &["status", LUCA][..],
        &["audit", "show"],
        &["audit", "verify"],
        &["policy"],
        &["outbox"],
    ] {
        let out = run_limited(&env, kib, args, "");
        assert_eq!(out.code, 0, "{args:?} under {kib} KiB: {}", out.stderr);
    }
    // Without the limit the same verify succeeds: the limit, not the PIN, failed it.
    let out = run_limited(&env, 1 << 20, &["verify", LUCA], "K7QM2ZXA\n");
    assert_eq!(out.code, 0, "{}", out.stderr);
}

/// `pin import` of `text` from a file, expecting failure `code` naming `needle`, with the
/// database unchanged.
fn import_fails(env: &Env, text: &[u8], code: i32, needle: &str) {
    std::fs::write(env.path("bad.jsonl"), text).unwrap();
    env.fails_unchanged(&["import", "bad.jsonl"], "", code, needle);
}

// rule: INPS-4, INPS-11 — an import checks every line (dates, salts, duplicates, line
// length) and imports nothing when one fails, naming the line.
#[test]
fn import_streams_and_refuses_bad_lines_naming_them() {
    let env = Env::initialised();
    let good = |tax: &str| import_line(tax, FAKE_PHC);
    // An endless line: refused after 64 KiB, not read to the end.
    #[cfg(target_os = "linux")]
    env.fails_unchanged(
        &["import", "/dev/zero"],
        "",
        2,
        "import line 1: longer than 65536 bytes",
    );
    let long = format!("{}{}", good(LUCA), "x".repeat(70_000));
    import_fails(
        &env,
        long.as_bytes(),
        2,
        "import line 2: longer than 65536 bytes",
    );
    // Dates: in year 9999, issued in the future, changed before issued.
    let far = good(LUCA).replace("2024-12-01T00:00:00Z", "9999-12-31T00:00:00Z");
    let future = good(LUCA)
        .replace("2024-06-01T00:00:00Z", "2025-01-16T00:00:00Z")
        .replace(",\"changed_at\":\"2024-12-01T00:00:00Z\"", "");
    let before = good(LUCA).replace("2024-12-01T00:00:00Z", "2024-05-31T23:59:59Z");
    for (line, needle) in [
        (far, "changed_at is in the future"),
        (future, "issued_at is in the future"),
        (before, "changed_at is before issued_at"),
    ] {
        let text = format!("{}\n{line}", good(GIULIA));
        import_fails(&env, text.as_bytes(), 2, "import line 3: ");
        import_fails(&env, text.as_bytes(), 2, needle);
    }
    // An 8-byte salt (Argon2 accepts it; our hashes have 16).
    let short_salt = good(LUCA).replace("c2FsdHNhbHRzYWx0c2FsdA", "c2FsdHNhbHQ");
    let text = format!("{}{short_salt}", good(GIULIA));
    import_fails(&env, text.as_bytes(), 2, "import line 2: ");
    import_fails(&env, text.as_bytes(), 2, "salt is not 16 bytes");
    // Twice in the file (the store sees the second inside the transaction).
    let text = format!("{}{}{}", good(LUCA), good(GIULIA), good(LUCA));
    import_fails(
        &env,
        text.as_bytes(),
        5,
        &format!("import line 3: {LUCA} appears twice"),
    );
    // Not JSON on line 3 after two good lines: nothing of the first two is kept.
    let text = format!("{}{}{{not json\n", good(LUCA), good(GIULIA));
    import_fails(&env, text.as_bytes(), 2, "import line 3");
    // CRLF line ends and blank lines are fine; the count and the lines read are reported.
    let text = format!("{}\r\n\n{}", good(LUCA).trim_end(), good(GIULIA));
    std::fs::write(env.path("ok.jsonl"), text).unwrap();
    let v = env.json(&["import", "ok.jsonl"], "", 0);
    assert_eq!(
        (v["imported"].as_u64(), v["lines"].as_u64()),
        (Some(2), Some(3))
    );
    // Already on record, named by line.
    import_fails(
        &env,
        good(GIULIA).as_bytes(),
        5,
        &format!("import line 1: {GIULIA} is already on record"),
    );
    // Only the system imports, and it is checked before the file is read.
    env.fails_unchanged(&["import", "/dev/zero", "--as", "rid:R1"], "", 5, "may not");
    // An empty file holds no subject.
    import_fails(&env, b"\n\n", 2, "holds no subject");
}

// `pin hash` hashes on all cores but prints the hashes in input order: each one verifies
// its own PIN once imported, and no other.
#[test]
fn hash_in_parallel_keeps_the_input_order() {
    let env = Env::initialised();
    let subjects = [MARIO, ANNA, LUCA, GIULIA, PAOLO, STEFANO, GIORGIO];
    let pins = [
        "K7QM2ZXA", "P4TR8WNE", "B2CD3FGH", "Z9YX8WVU", "M3NB4VCX", "Q7WE2RTY", "L5KJ6HGF",
    ];
    let input: String = pins.iter().map(|p| format!("{p}\n\n")).collect();
    let v = env.json(&["hash", "--format", "inps-in-use8"], &input, 0);
    let hashes = v["hashes"].as_array().unwrap();
    assert_eq!(hashes.len(), pins.len());
    let file: String = subjects
        .iter()
        .zip(hashes)
        .map(|(t, h)| import_line(t, h["phc"].as_str().unwrap()))
        .collect();
    let v = env.json(&["import", "-"], &file, 0);
    assert_eq!(v["imported"].as_u64(), Some(7));
    for (i, (tax, pin)) in subjects.iter().zip(pins).enumerate() {
        env.json(&["verify", tax], &format!("{pin}\n"), 0);
        let other = pins[(i + 1) % pins.len()];
        env.json(&["verify", tax], &format!("{other}\n"), 3);
    }
    // A bad PIN anywhere hashes nothing and names its line.
    env.fails_unchanged(
        &["hash", "--format", "inps-in-use8"],
        "K7QM2ZXA\nP4TR8WN\n",
        2,
        "line 2",
    );
}

/// A valid synthetic tax code for `i` (the check character computed), for big files.
fn synthetic_tax_code(i: usize) -> String {
    const ODD: [u32; 26] = [
        1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24,
        23,
    ];
    let mut letters = [b'A'; 6];
    let mut n = i;
    for l in letters.iter_mut().rev() {
        *l = b'A' + (n % 26) as u8;
        n /= 26;
    }
    let mut s = String::from_utf8(letters.to_vec()).unwrap();
    s.push_str("80A01H501");
    let sum: u32 = s
        .chars()
        .enumerate()
        .map(|(pos, c)| {
            let v = c.to_digit(10).unwrap_or_else(|| c as u32 - 'A' as u32);
            if pos % 2 == 0 { ODD[v as usize] } else { v }
        })
        .sum();
    s.push(char::from(b'A' + (sum % 26) as u8));
    s
}

// The progress bar of `pin import` is drawn on a terminal (here the pseudo-terminal of
// `script`), with the share done and the time left; without a terminal nothing but the
// result is printed.
#[cfg(target_os = "linux")]
#[test]
#[allow(clippy::print_stderr, reason = "says why the terminal half is skipped")]
fn import_shows_progress_on_a_terminal_only() {
    let env = Env::initialised();
    let file: String = (0..3000)
        .map(|i| import_line(&synthetic_tax_code(i), FAKE_PHC))
        .collect();
    std::fs::write(env.path("many.jsonl"), &file).unwrap();
    std::fs::write(env.path("few.jsonl"), import_line(MARIO, FAKE_PHC)).unwrap();
    // No terminal: one result line, no progress.
    let out = env.ok(&["import", "few.jsonl"], "");
    assert_eq!(out.stdout, "Imported 1 subject(s).\n");
    assert!(
        out.stderr.lines().all(|l| l.starts_with("pin: warning:")),
        "{:?}",
        out.stderr
    );
    // A terminal: the bar.
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let base = env.command(&[]);
    let line = format!("{BIN} import {}", env.path("many.jsonl").display());
    let mut script = Command::new("script");
    script
        .args(["-qec", &line, "/dev/null"])
        .current_dir(env.dir.path());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => script.env(k, v),
            None => script.env_remove(k),
        };
    }
    let out = script.stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("Imported 3000 subject(s)."), "{text}");
    for part in ["importing", "%", "ETA"] {
        assert!(text.contains(part), "{part:?} not in {text:?}");
    }
}

// rule: POL-8 — `pin verify --source`: a network at its limit of failed guesses (20 an
// hour, across people) gets exit 9 before anything is counted against the next person; a
// right PIN prints a device token, and that trusted device passes the limit;
// `pin status --population` shows the network and the expected accounts guessed.
#[test]
fn population_source_limit_device_token_and_status() {
    let env = Env::initialised();
    let people = [MARIO, ANNA, LUCA];
    for (i, t) in people.iter().enumerate() {
        enrol_noipa(&env, t, &format!("p{i}@example.it"), &[]);
    }
    let pins: Vec<String> = people.iter().map(|t| env.secret(t, 1, "email")).collect();
    let wrong = |pin: &str| if pin == "13579" { "24680" } else { "13579" }.to_owned();
    let net = "203.0.113.0/24";
    // A right PIN from the network before the spray: a device token for ANNA.
    let v = env.json(
        &["verify", ANNA, "--source", net],
        &format!("{}\n", pins[1]),
        0,
    );
    let token = v["device_token"]
        .as_str()
        .expect("a device token")
        .to_owned();
    assert!(token.starts_with("d1."), "{token}");
    // 20 failed guesses from the network: 7 on MARIO, 7 on ANNA, 6 on LUCA.
    for (k, n) in [(0usize, 7), (1, 7), (2, 6)] {
        for _ in 0..n {
            let v = env.json(
                &["verify", people[k], "--source", net],
                &format!("{}\n", wrong(&pins[k])),
                3,
            );
            assert_eq!(v["outcome"], "rejected");
        }
    }
    // The 21st, even with LUCA's right PIN: try later, nothing counted.
    let v = env.json(
        &["verify", LUCA, "--source", net],
        &format!("{}\n", pins[2]),
        9,
    );
    assert_eq!(v["outcome"], "try_later");
    assert_eq!(v["remaining_attempts"], 4, "LUCA's 6 failures, no more");
    // ANNA on her own device passes the network's limit.
    let v = env.json(
        &["verify", ANNA, "--source", net, "--device-token", &token],
        &format!("{}\n", pins[1]),
        0,
    );
    assert_eq!(v["outcome"], "accepted");
    assert!(
        v.get("device_token").is_none(),
        "a trusted device keeps its token"
    );
    // Another network is served.
    env.json(
        &["verify", LUCA, "--source", "198.51.100.0/24"],
        &format!("{}\n", pins[2]),
        0,
    );
    let st = env.json(&["status", "--population"], "", 0);
    assert_eq!(st["mode"], "normal");
    assert_eq!(st["top_sources"][0][0], net);
    assert_eq!(st["top_sources"][0][1], 20);
    assert_eq!(st["profiles"][0]["profile"], "noipa");
    assert_eq!(st["profiles"][0]["failures"], 20);
    assert!((st["profiles"][0]["expected_guessed"].as_f64().unwrap() - 0.0002).abs() < 1e-9);
    // Bad sources are input errors that change nothing.
    env.fails_unchanged(
        &["verify", LUCA, "--source", "a b"],
        "12345\n",
        2,
        "network",
    );
    env.fails_unchanged(
        &["verify", LUCA, "--device-token", "nope"],
        "12345\n",
        2,
        "device token",
    );
    env.fails_unchanged(&["status"], "", 2, "");
}
