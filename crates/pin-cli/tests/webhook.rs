//! `pin --sms-webhook URL`: SMS go to an HTTP gateway (pin-webhook) as signed JSON POSTs,
//! against a tiny HTTP server started by the test on 127.0.0.1.
#![allow(
    clippy::unwrap_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_pin");
const T0: &str = "2025-01-15T09:00:00Z";
const MARIO: &str = "RSSMRA85T10A562S";
const KEY_HEX: &str = "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

/// (signature header, body) of every request the gateway took.
type Taken = Arc<Mutex<Vec<(String, String)>>>;

/// A gateway that answers 200 to every POST and keeps what it got.
fn gateway() -> (String, Taken) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/v1/sms", listener.local_addr().unwrap());
    let taken: Taken = Arc::default();
    let keep = Arc::clone(&taken);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let (mut len, mut signature) = (0usize, String::new());
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let line = line.trim_end();
                if line.is_empty() {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(v) = lower.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("x-pin-signature:") {
                    signature = line.split_once(':').unwrap().1.trim().to_owned();
                }
            }
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            keep.lock()
                .unwrap()
                .push((signature, String::from_utf8(body).unwrap()));
            let reply = r#"{"status":"accepted"}"#;
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                reply.len()
            );
        }
    });
    (url, taken)
}

fn pin(
    dir: &std::path::Path,
    args: &[&str],
    stdin: &str,
    key: Option<&str>,
) -> (i32, String, String) {
    let mut c = Command::new(BIN);
    c.args(args)
        .current_dir(dir)
        .env("PIN_DB", dir.join("pin.db"))
        .env_remove("PIN_KEY_FILE")
        .env_remove("PIN_OUTBOX")
        .env_remove("PIN_NOTIFIER")
        .env_remove("PIN_SMS_WEBHOOK")
        .env_remove("PIN_SMS_WEBHOOK_KEY")
        .env("PIN_NOW", T0)
        .env("PIN_INSECURE_FAST_HASH", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(k) = key {
        c.env("PIN_SMS_WEBHOOK_KEY", k);
    }
    let mut child = c.spawn().unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn enrol_args(url: &str) -> Vec<String> {
    [
        "--json",
        "--sms-webhook",
        url,
        "enrol",
        MARIO,
        "--role",
        "employee",
        "--enrolled-on",
        "2020-09-01",
        "--email",
        "mario@example.it",
        "--mobile",
        "3471234567",
        "--as",
        "rid:R042",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect()
}

#[test]
fn noipa_4_the_sms_goes_to_the_gateway_signed_and_its_pin_verifies() {
    // rule: NOIPA-4 — with a mobile on record the PIN goes by SMS only, here to the gateway.
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(pin(dir.path(), &["init"], "", None).0, 0);
    let (url, taken) = gateway();
    let args = enrol_args(&url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out, err) = pin(dir.path(), &args, "", Some(KEY_HEX));
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(out.trim()).unwrap();
    let d = &v["deliveries"][0];
    assert_eq!(
        (d["channel"].as_str(), d["state"].as_str()),
        (Some("sms"), Some("sent")),
        "{v}"
    );
    assert_eq!(d["file"], Value::Null, "not in the outbox: {v}");
    let got = taken.lock().unwrap().clone();
    assert_eq!(got.len(), 1);
    let (signature, body) = &got[0];
    let key = pin_webhook::SigningKey::new(&[
        0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee,
        0xff, 0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd,
        0xee, 0xff,
    ])
    .unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    pin_webhook::signature::verify_signature(&key, signature, body.as_bytes(), now, 600)
        .expect("signed with the shared key");
    let msg: Value = serde_json::from_str(body).unwrap();
    assert_eq!(msg["recipient"], "+393471234567");
    let text = msg["text"].as_str().unwrap();
    let digits: String = text
        .split(|c: char| !c.is_ascii_digit())
        .find(|w| w.len() == 5)
        .unwrap_or_else(|| panic!("no 5-digit PIN in {text:?}"))
        .to_owned();
    let (code, out, err) = pin(dir.path(), &["verify", MARIO], &format!("{digits}\n"), None);
    assert_eq!(code, 0, "{out}{err}");
    // Nothing of it in the outbox.
    let outbox = dir.path().join("outbox");
    let files: Vec<_> = std::fs::read_dir(&outbox)
        .map(|e| e.filter_map(Result::ok).map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(files.is_empty(), "{files:?}");
}

#[test]
fn a_missing_or_malformed_gateway_key_is_refused_before_anything_is_done() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(pin(dir.path(), &["init"], "", None).0, 0);
    let (url, taken) = gateway();
    let args = enrol_args(&url);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    for key in [None, Some("xyz"), Some("0011")] {
        let (code, out, err) = pin(dir.path(), &args, "", key);
        assert_eq!(code, 2, "{key:?}: {out}{err}");
        assert!(err.contains("PIN_SMS_WEBHOOK_KEY"), "{err}");
        assert!(!err.contains(KEY_HEX), "{err}");
    }
    assert!(taken.lock().unwrap().is_empty());
    let (code, _, err) = pin(dir.path(), &["status", MARIO], "", None);
    assert_ne!(code, 0, "nothing was enrolled: {err}");
}
