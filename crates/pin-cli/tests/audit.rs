//! The keyed audit chain through the `pin` binary: the audit key file `pin init` writes,
//! a rewrite-and-recompute attack that `pin audit verify` now finds, `pin audit export`
//! and its offline check, `pin audit head`, and `pin audit init-key` for a database
//! written before the chain was keyed.
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

use pin_core::audit::chain::{self, GENESIS};
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
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
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

    fn ok(&self, args: &[&str]) -> Out {
        let out = self.run(args, "");
        assert_eq!(out.code, 0, "pin {args:?}: {}{}", out.stdout, out.stderr);
        out
    }

    fn code(&self, args: &[&str], code: i32) -> Out {
        let out = self.run(args, "");
        assert_eq!(out.code, code, "pin {args:?}: {}{}", out.stdout, out.stderr);
        out
    }

    fn json(&self, args: &[&str], code: i32) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.code(&all, code);
        serde_json::from_str(out.stdout.trim()).unwrap()
    }

    /// Enrols `tax` (NoiPA) and makes two wrong verifies: `rejected` rows in the log.
    fn activity(&self, tax: &str, email: &str) {
        self.ok(&[
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
        ]);
        for _ in 0..2 {
            let out = self.run(&["verify", tax], "00000\n");
            assert!(
                out.stdout.contains("rejected"),
                "{}{}",
                out.stdout,
                out.stderr
            );
        }
    }
}

/// Rewrites the first `rejected` event of the SQLite file into `accepted` and recomputes
/// every hash after it as SHA-256 links, as someone with the file but not the audit key.
fn rewrite_rejection(db: &Path) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
    let target: i64 = conn
        .query_row(
            "SELECT min(id) FROM audit WHERE event LIKE '%\"outcome\":\"rejected\"%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute(
        "UPDATE audit SET event = replace(event, '\"outcome\":\"rejected\"', '\"outcome\":\"accepted\"') WHERE id = ?1",
        [target],
    )
    .unwrap();
    let rows: Vec<(i64, String, Vec<u8>)> = conn
        .prepare("SELECT id, event, prev_hash FROM audit WHERE id >= ?1 ORDER BY id")
        .unwrap()
        .query_map([target], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let mut prev: [u8; 32] = rows[0].2.clone().try_into().unwrap();
    for (id, event, _) in rows {
        let hash = chain::link(&prev, event.as_bytes());
        conn.execute(
            "UPDATE audit SET prev_hash = ?2, hash = ?3 WHERE id = ?1",
            rusqlite::params![id, prev.as_slice(), hash.as_slice()],
        )
        .unwrap();
        prev = hash;
    }
}

#[test]
fn init_writes_a_private_audit_key_and_never_overwrites_it() {
    let env = Env::new();
    let v = env.json(&["init"], 0);
    assert!(
        v["audit_key_file"]
            .as_str()
            .unwrap()
            .ends_with("/pin.audit-key")
    );
    let text = std::fs::read_to_string(env.path("pin.audit-key")).unwrap();
    assert!(text.contains("keyed-from 1\n"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("key 1 ") && l.len() == 6 + 64)
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(env.path("pin.audit-key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // A second init refuses (the pepper key is there), and the audit key is unchanged.
    let _ = env.code(&["init"], 5);
    assert_eq!(
        std::fs::read_to_string(env.path("pin.audit-key")).unwrap(),
        text
    );
    // The key never shows in any output.
    let key = text.lines().find(|l| l.starts_with("key 1 ")).unwrap();
    env.activity(MARIO, "mario@example.it");
    let out = env.ok(&["audit", "export"]);
    assert!(!out.stdout.contains(&key[6..]));
}

#[test]
fn a_rewritten_and_recomputed_rejection_fails_audit_verify_without_the_key() {
    let env = Env::new();
    env.ok(&["init"]);
    env.activity(MARIO, "mario@example.it");
    let v = env.json(&["audit", "verify"], 0);
    assert_eq!(v["intact"].as_bool(), Some(true));
    rewrite_rejection(&env.path("pin.db"));
    let shown = env.ok(&["audit", "show"]).stdout;
    assert!(shown.contains("accepted"), "the rewrite took: {shown}");
    let out = env.code(&["audit", "verify"], 8);
    assert!(out.stderr.contains("HashMismatch"), "{}", out.stderr);
    let _ = env.code(&["audit", "head"], 8);
}

#[test]
fn a_write_without_the_audit_key_is_refused_and_a_read_says_the_key_is_needed() {
    let env = Env::new();
    env.ok(&["init"]);
    env.activity(MARIO, "mario@example.it");
    std::fs::rename(env.path("pin.audit-key"), env.path("elsewhere.key")).unwrap();
    let before = env.ok(&["audit", "show"]).stdout;
    let out = env.code(&["verify", MARIO], 7);
    assert!(out.stderr.contains("no audit key file"), "{}", out.stderr);
    assert!(out.stderr.contains("--audit-key-file"), "{}", out.stderr);
    assert_eq!(env.ok(&["audit", "show"]).stdout, before, "nothing written");
    let out = env.code(&["audit", "verify"], 8);
    assert!(out.stderr.contains("UnknownKey"), "{}", out.stderr);
    // The key moved elsewhere: --audit-key-file (or PIN_AUDIT_KEY_FILE) finds it.
    env.ok(&["--audit-key-file", "elsewhere.key", "audit", "verify"]);
    env.ok(&["--audit-key-file", "elsewhere.key", "status", MARIO]);
    // Another audit key (of the same id) does not verify the chain.
    let other = Env::new();
    other.ok(&["init"]);
    let wrong = other.path("pin.audit-key");
    let out = env.code(
        &[
            "--audit-key-file",
            wrong.to_str().unwrap(),
            "audit",
            "verify",
        ],
        8,
    );
    assert!(out.stderr.contains("HashMismatch"), "{}", out.stderr);
    // A corrupt key file is refused with a clear message, its content never echoed.
    std::fs::write(env.path("bad.key"), "keyed-from 1\nkey 1 nothex\n").unwrap();
    let out = env.code(&["--audit-key-file", "bad.key", "audit", "verify"], 7);
    assert!(out.stderr.contains("corrupt"), "{}", out.stderr);
}

#[test]
fn an_export_verifies_offline_and_a_changed_or_cut_export_does_not() {
    let env = Env::new();
    env.ok(&["init"]);
    env.activity(MARIO, "mario@example.it");
    let head = env.ok(&["audit", "head"]).stdout.trim().to_owned();
    let h = env.json(&["audit", "head"], 0);
    assert_eq!(h["head"].as_str(), Some(head.as_str()));
    assert!(head.starts_with("4:"), "{head}");
    env.activity(ANNA, "anna@example.it");

    let v = env.json(&["audit", "export", "--out", "log.jsonl"], 0);
    assert_eq!(v["rows"].as_u64(), Some(8));
    let text = std::fs::read_to_string(env.path("log.jsonl")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 9, "a header and one line per row");
    let header: Value = serde_json::from_str(lines[0]).unwrap();
    assert_eq!(header["keyed_from"].as_u64(), Some(1));
    let row: Value = serde_json::from_str(lines[1]).unwrap();
    assert_eq!(row["key_id"].as_u64(), Some(1));
    assert_eq!(row["hash"].as_str().unwrap().len(), 64);
    // Never overwritten; stdout gives the same lines.
    let _ = env.code(&["audit", "export", "--out", "log.jsonl"], 5);
    assert_eq!(env.ok(&["audit", "export"]).stdout, text);

    // Offline: the database gone, the export verifies with the audit key and the head.
    std::fs::rename(env.path("pin.db"), env.path("gone.db")).unwrap();
    let v = env.json(
        &["audit", "verify", "--file", "log.jsonl", "--head", &head],
        0,
    );
    assert_eq!(v["intact_rows"].as_u64(), Some(8));
    // Without the audit key it cannot be checked.
    let _ = env.code(
        &[
            "--audit-key-file",
            "absent",
            "audit",
            "verify",
            "--file",
            "log.jsonl",
        ],
        8,
    );

    // A rejection rewritten in the export with its hashes recomputed: found.
    let mut forged: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    let mut prev = GENESIS;
    let mut changed = false;
    for line in forged.iter_mut().skip(1) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        let mut event = v["event"].as_str().unwrap().to_owned();
        if !changed && event.contains("\"outcome\":\"rejected\"") {
            event = event.replace("\"outcome\":\"rejected\"", "\"outcome\":\"accepted\"");
            changed = true;
        }
        let hash = chain::link(&prev, event.as_bytes());
        v["event"] = Value::from(event);
        v["prev_hash"] = Value::from(hex(&prev));
        v["hash"] = Value::from(hex(&hash));
        *line = v.to_string();
        prev = hash;
    }
    assert!(changed);
    std::fs::write(env.path("forged.jsonl"), forged.join("\n") + "\n").unwrap();
    let out = env.code(&["audit", "verify", "--file", "forged.jsonl"], 8);
    assert!(out.stderr.contains("HashMismatch"), "{}", out.stderr);
    // The same, claiming no keyed row: the key file's boundary says otherwise.
    let mut unkeyed = forged.clone();
    unkeyed[0] = r#"{"format":"pin-audit-export","version":1,"keyed_from":null}"#.to_owned();
    for line in unkeyed.iter_mut().skip(1) {
        let mut v: Value = serde_json::from_str(line).unwrap();
        v["key_id"] = Value::Null;
        *line = v.to_string();
    }
    std::fs::write(env.path("unkeyed.jsonl"), unkeyed.join("\n") + "\n").unwrap();
    let out = env.code(&["audit", "verify", "--file", "unkeyed.jsonl"], 8);
    assert!(out.stderr.contains("KeyedFromMismatch"), "{}", out.stderr);

    // Cut off before the head kept elsewhere: found by --head, not without it.
    std::fs::write(env.path("cut.jsonl"), lines[..3].join("\n") + "\n").unwrap();
    env.ok(&["audit", "verify", "--file", "cut.jsonl"]);
    let out = env.code(
        &["audit", "verify", "--file", "cut.jsonl", "--head", &head],
        8,
    );
    assert!(out.stderr.contains("HeadMismatch"), "{}", out.stderr);
    // A head that is not in the chain at all.
    let fake = format!("4:{}", "ab".repeat(32));
    let _ = env.code(
        &["audit", "verify", "--file", "log.jsonl", "--head", &fake],
        8,
    );

    // Not an export, a bad line, a bad head: clear errors.
    std::fs::write(env.path("junk.txt"), "hello\n").unwrap();
    let out = env.code(&["audit", "verify", "--file", "junk.txt"], 2);
    assert!(out.stderr.contains("not an audit export"), "{}", out.stderr);
    let mut bad = lines.iter().map(|l| (*l).to_owned()).collect::<Vec<_>>();
    bad[2] = "{not json".to_owned();
    std::fs::write(env.path("bad.jsonl"), bad.join("\n") + "\n").unwrap();
    let out = env.code(&["audit", "verify", "--file", "bad.jsonl"], 8);
    assert!(out.stderr.contains("broken at row 2"), "{}", out.stderr);
    let out = env.code(
        &["audit", "verify", "--file", "log.jsonl", "--head", "x"],
        2,
    );
    assert!(out.stderr.contains("--head"), "{}", out.stderr);

    // The database back, --head checks it in place too.
    std::fs::rename(env.path("gone.db"), env.path("pin.db")).unwrap();
    env.ok(&["audit", "verify", "--head", &head]);
    let _ = env.code(&["audit", "verify", "--head", &fake], 8);
    // --json export to stdout would mix the summary with the lines: refused.
    let _ = env.code(&["--json", "audit", "export"], 2);
}

#[test]
fn an_export_streams_page_by_page_past_a_thousand_rows() {
    let env = Env::new();
    env.ok(&["init"]);
    env.activity(MARIO, "mario@example.it");
    // 1 200 more rows appended through the store with the audit key, as the CLI keys them.
    let keys = audit_keys(&env.path("pin.audit-key"));
    let store = pin_sqlite::SqliteStore::open(env.path("pin.db"))
        .unwrap()
        .with_audit_keys(keys);
    use pin_core::store::Store;
    let event = store.audit_log(None).unwrap().remove(0);
    store.append_audit(&vec![event; 1200]).unwrap();
    let v = env.json(&["audit", "export", "--out", "big.jsonl"], 0);
    assert_eq!(v["rows"].as_u64(), Some(1204));
    env.ok(&["audit", "verify", "--file", "big.jsonl"]);
    let ids: Vec<u64> = std::fs::read_to_string(env.path("big.jsonl"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        ids,
        (1..=1204).collect::<Vec<_>>(),
        "every row once, in order"
    );
}

#[test]
fn init_key_keys_a_database_written_before_the_audit_key() {
    // A database of before: no audit key file, four unkeyed rows (written by a store
    // without an audit key, as every store wrote them before).
    let env = Env::new();
    env.ok(&["init"]);
    std::fs::remove_file(env.path("pin.audit-key")).unwrap();
    {
        use pin_core::store::Store;
        let store = pin_sqlite::SqliteStore::open(env.path("pin.db")).unwrap();
        let other = Env::new();
        other.ok(&["init"]);
        other.activity(MARIO, "mario@example.it");
        let events = pin_sqlite::SqliteStore::open(other.path("pin.db"))
            .unwrap()
            .audit_log(None)
            .unwrap();
        store.append_audit(&events).unwrap();
    }
    let out = env.code(&["verify", MARIO], 7);
    assert!(out.stderr.contains("pin audit init-key"), "{}", out.stderr);
    env.ok(&["audit", "verify"]);

    let v = env.json(&["audit", "init-key"], 0);
    assert_eq!(v["keyed_from"].as_u64(), Some(5));
    let _ = env.code(&["audit", "init-key"], 5);
    env.activity(ANNA, "anna@example.it");
    let v = env.json(&["audit", "verify"], 0);
    assert_eq!(v["intact_rows"].as_u64(), Some(8));
    let conn = rusqlite::Connection::open(env.path("pin.db")).unwrap();
    let ids: Vec<Option<i64>> = conn
        .prepare("SELECT key_id FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        ids[..4],
        [None, None, None, None],
        "the old rows stay unkeyed"
    );
    assert!(
        ids[4..].iter().all(|k| *k == Some(1)),
        "every new row keyed"
    );
    drop(conn);
    // An old row rewritten and its links recomputed: the first keyed row breaks.
    rewrite_rejection(&env.path("pin.db"));
    let out = env.code(&["audit", "verify"], 8);
    assert!(out.stderr.contains("row 5"), "{}", out.stderr);
    // Once keyed, a lost audit key cannot be replaced by a new one.
    std::fs::remove_file(env.path("pin.audit-key")).unwrap();
    let out = env.code(&["audit", "init-key"], 5);
    assert!(
        out.stderr.contains("already keyed from row 5"),
        "{}",
        out.stderr
    );
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn audit_keys(path: &Path) -> pin_core::audit::key::AuditKeyring {
    let text = std::fs::read_to_string(path).unwrap();
    let line = text.lines().find(|l| l.starts_with("key 1 ")).unwrap();
    let bytes: Vec<u8> = (0..32)
        .map(|i| u8::from_str_radix(&line[6 + 2 * i..8 + 2 * i], 16).unwrap())
        .collect();
    pin_core::audit::key::AuditKeyring::new(pin_core::audit::key::AuditKey::new(1, &bytes).unwrap())
}
