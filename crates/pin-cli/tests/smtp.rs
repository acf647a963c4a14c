//! `pin --notifier smtp`: e-mail and PEC through a real SMTP server on 127.0.0.1
//! (python3-aiosmtpd, `pin_smtp::test_relay`), the other channels still into the outbox.
//! Without aiosmtpd these tests say so and pass, except under `CI=true`.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    clippy::print_stderr,
    missing_docs,
    reason = "tests"
)]

use std::path::Path;
use std::process::{Command, Output};

use pin_smtp::test_relay::TestRelay;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pin");
const MARIO: &str = "RSSMRA85T10A562S";
const ANNA: &str = "BNCGNN70A41H501V";

fn relay() -> Option<TestRelay> {
    let relay = TestRelay::start().unwrap();
    if relay.is_none() {
        let why = "python3-aiosmtpd is not installed (apt-get install python3-aiosmtpd)";
        assert!(std::env::var("CI").as_deref() != Ok("true"), "{why}");
        eprintln!("skipped: {why}");
    }
    relay
}

/// `pin` in `dir`, with the SMTP variables of the caller's environment removed.
fn pin(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(dir)
        .env("PIN_DB", dir.join("pin.db"))
        .env("PIN_NOW", "2025-01-15T09:00:00Z")
        .env("PIN_INSECURE_FAST_HASH", "1");
    for v in [
        "PIN_KEY_FILE",
        "PIN_OUTBOX",
        "PIN_NOTIFIER",
        "PIN_SMTP_HOST",
        "PIN_SMTP_PORT",
        "PIN_SMTP_TLS",
        "PIN_SMTP_USER",
        "PIN_SMTP_PASSWORD",
        "PIN_SMTP_FROM",
        "PIN_SMTP_LANG",
    ] {
        c.env_remove(v);
    }
    c.envs(env.iter().copied()).output().unwrap()
}

fn json(out: &Output, code: i32) -> Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(code),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).unwrap()
}

fn outbox(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("outbox"))
        .map(|it| {
            it.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn e_mail_goes_over_smtp_and_post_to_the_outbox() {
    let Some(relay) = relay() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    json(&pin(d, &["--json", "init"], &[]), 0);
    let port = relay.port().to_string();
    // Settings from the environment, as a service manager would give them.
    let env = [
        ("PIN_NOTIFIER", "smtp"),
        ("PIN_SMTP_HOST", "127.0.0.1"),
        ("PIN_SMTP_PORT", port.as_str()),
        ("PIN_SMTP_TLS", "none"),
        ("PIN_SMTP_FROM", "INPS <no-reply@inps.example>"),
    ];
    let enrol = [
        "--json",
        "enrol",
        ANNA,
        "--role",
        "citizen",
        "--email",
        "anna.bianchi@example.it",
        "--address",
        "Via Roma 1, 00100 Roma RM",
        "--as",
        "subject",
    ];
    json(&pin(d, &enrol, &env), 0);
    let web = [
        "--json",
        "request",
        "web",
        ANNA,
        "--address-check",
        "passed",
        "--as",
        "subject",
    ];
    let v = json(&pin(d, &web, &env), 0);
    let deliveries = v["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 2, "{v}");
    assert_eq!(deliveries[0]["channel"], "email");
    assert_eq!(deliveries[0]["state"], "sent");
    assert_eq!(
        deliveries[0]["file"],
        Value::Null,
        "no outbox file for SMTP"
    );
    assert_eq!(deliveries[1]["channel"], "post");
    assert_eq!(deliveries[1]["state"], "sent");
    assert!(
        deliveries[1]["file"]
            .as_str()
            .unwrap()
            .ends_with("-post.txt")
    );

    let mail = relay.messages().unwrap();
    assert_eq!(mail.len(), 1);
    assert_eq!(mail[0].header("to"), Some("anna.bianchi@example.it"));
    assert_eq!(
        mail[0].header("subject"),
        Some("Il Suo PIN INPS (parte 1 di 2)")
    );
    let first = mail[0].secret().unwrap();
    assert_eq!(first.len(), 8);
    assert_eq!(outbox(d), [format!("{ANNA}-s1-p2of2-post.txt")]);
    let letter = std::fs::read_to_string(d.join("outbox").join(&outbox(d)[0])).unwrap();
    assert!(
        !letter.contains(&first),
        "BOTH-2: the letter has only its half"
    );
}

#[test]
fn flags_work_too_and_a_refused_recipient_fails_the_part() {
    let Some(relay) = relay() else { return };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    json(&pin(d, &["--json", "init"], &[]), 0);
    let port = relay.port().to_string();
    let args = [
        "--json",
        "--notifier",
        "smtp",
        "--smtp-host",
        "127.0.0.1",
        "--smtp-port",
        port.as_str(),
        "--smtp-tls",
        "none",
        "--smtp-from",
        "no-reply@noipa.example",
        "--smtp-lang",
        "en",
        "enrol",
        MARIO,
        "--role",
        "employee",
        "--enrolled-on",
        "2020-09-01",
        "--email",
        "unknown.rossi@example.it",
        "--as",
        "rid:R042",
    ];
    // The PIN was issued but reached nobody: exit code 10, "not delivered".
    let v = json(&pin(d, &args, &[]), 10);
    assert_eq!(v["deliveries"][0]["state"], "failed", "{v}");
    assert_eq!(v["error"]["kind"], "undelivered", "{v}");
    assert!(
        v["deliveries"][0]["error"]
            .as_str()
            .unwrap()
            .contains("550")
    );
    assert!(relay.messages().unwrap().is_empty());
    assert!(outbox(d).is_empty(), "nothing falls back to the outbox");
}

#[test]
fn smtp_settings_are_checked_before_anything_happens() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    json(&pin(d, &["--json", "init"], &[]), 0);
    let enrol = [
        "--json",
        "--notifier",
        "smtp",
        "enrol",
        MARIO,
        "--role",
        "employee",
        "--enrolled-on",
        "2020-09-01",
        "--email",
        "mario.rossi@example.it",
        "--as",
        "rid:R042",
    ];
    let v = json(&pin(d, &enrol, &[]), 2);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("--smtp-host"), "{message}");

    let with_user = [
        ("PIN_SMTP_HOST", "127.0.0.1"),
        ("PIN_SMTP_FROM", "no-reply@noipa.example"),
        ("PIN_SMTP_USER", "mailer"),
    ];
    let v = json(&pin(d, &enrol, &with_user), 2);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("PIN_SMTP_PASSWORD"), "{message}");

    // Credentials in clear to a relay elsewhere are refused.
    let remote = [
        ("PIN_SMTP_HOST", "smtp.example.it"),
        ("PIN_SMTP_TLS", "none"),
        ("PIN_SMTP_FROM", "no-reply@noipa.example"),
        ("PIN_SMTP_USER", "mailer"),
        ("PIN_SMTP_PASSWORD", "s3cret-Pa55"),
    ];
    let out = pin(d, &enrol, &remote);
    let v = json(&out, 2);
    assert!(v["error"]["message"].as_str().unwrap().contains("TLS"));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("s3cret-Pa55"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("s3cret-Pa55"));

    // Nothing was enrolled by any of these.
    let v = json(&pin(d, &["--json", "status", MARIO], &[]), 5);
    assert_eq!(v["ok"], false);
}
