//! `WebhookNotifier` against a real HTTP server on 127.0.0.1 (`support::Gateway`, started
//! by each test on a port the OS picks), driven through `PinService` where a test is about
//! the lifecycle: what reaches the gateway, how it is signed, and what each kind of answer
//! does to the part.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "tests"
)]

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use pin_core::command::{Check, Command, Delivery, Enrolment, Notice, NoticeKind};
use pin_core::contact::{Address, Contacts, Email, Mobile};
use pin_core::format::{PinFormat, parse_input};
use pin_core::hash::{HashParams, Keyring};
use pin_core::memory::MemoryStore;
use pin_core::notify::{DeliveryError, MemoryOutbox, Notifier, Receipt};
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::{Executed, PinService};
use pin_core::subject::{Channel, DeliveryState, Origin, Role};
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, Level, Policy, VerifyOutcome};
use pin_smtp::ChannelRouter;
use pin_webhook::{
    IDEMPOTENCY_HEADER, Language, SIGNATURE_HEADER, SignatureError, SigningKey, WebhookConfig,
    WebhookNotifier, verify_signature,
};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use support::{Gateway, Reply, closed_port};

const KEY: &[u8] = b"gateway-shared-key-0123456789abc";
const MARIO: &str = "RSSMRA85T10A562S";
const MOBILE: &str = "+393471234567";

fn key() -> SigningKey {
    SigningKey::new(KEY).unwrap()
}

/// Fast waits so the retry tests take milliseconds.
fn config(url: &str) -> WebhookConfig {
    let mut c = WebhookConfig::new(url, key());
    c.backoff = Duration::from_millis(10);
    c.max_backoff = Duration::from_millis(50);
    c.timeout = Duration::from_secs(5);
    c.connect_timeout = Duration::from_secs(2);
    c
}

fn notifier(gateway: &Gateway) -> WebhookNotifier {
    WebhookNotifier::new(config(&gateway.url())).unwrap()
}

type Service<N> = PinService<MemoryStore, N, ChaCha20Rng>;

fn service<N: Notifier>(notifier: N) -> Service<N> {
    let fast = HashParams::INSECURE_FAST_FOR_TESTS;
    let policy = Policy::builder()
        .hash_live(fast)
        .hash_floor(fast)
        .build()
        .unwrap();
    let keys = Keyring::new(Pepper::new(KeyId(1), &[7u8; 32]).unwrap());
    PinService::new(
        MemoryStore::new(),
        notifier,
        policy,
        keys,
        ChaCha20Rng::seed_from_u64(11),
    )
    .unwrap()
}

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 9, 30, 0).single().unwrap()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A NoiPA employee enrolled with an e-mail address and a mobile number.
fn enrol_employee<N: Notifier>(s: &Service<N>) -> Executed {
    let enrolment = Enrolment {
        role: Role::Employee,
        contacts: Contacts {
            email: Some(Email::parse("mario.rossi@example.it").unwrap()),
            mobile: Some(Mobile::parse("347 123 4567").unwrap()),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: NaiveDate::from_ymd_opt(2020, 9, 1),
    };
    s.execute(
        &TaxCode::parse(MARIO).unwrap(),
        &Actor::Rid("R042".into()),
        &Command::Enrol(enrolment),
        now(),
    )
    .unwrap()
}

/// The secret in an SMS text: the characters after the first `": "`, up to the `.`.
fn secret_in(text: &str) -> String {
    let (_, rest) = text.split_once(": ").unwrap();
    rest.chars()
        .take_while(char::is_ascii_alphanumeric)
        .collect()
}

fn sms(secret: &str, part: u8, of: u8) -> Delivery {
    let format = if secret.len() == 5 {
        PinFormat::NoipaDigits5
    } else {
        PinFormat::InpsInUse8
    };
    Delivery {
        subject: TaxCode::parse(MARIO).unwrap(),
        serial: 3,
        part,
        of,
        channel: Channel::Sms,
        recipient: MOBILE.into(),
        secret: parse_input(format, secret).unwrap(),
        origin: Origin::Identification,
    }
}

/// NOIPA-4: with a mobile number on record the PIN goes only by SMS; it reaches the gateway
/// signed, with exactly the documented fields, and the person can use it.
#[test]
fn noipa_4_the_sms_arrives_signed_and_the_pin_verifies() {
    let gateway = Gateway::start(vec![Reply::Status(200, r#"{"status":"queued"}"#)]);
    let s = service(notifier(&gateway));
    let done = enrol_employee(&s);
    let states: Vec<(Channel, DeliveryState)> = done
        .deliveries
        .iter()
        .map(|d| (d.channel, d.state))
        .collect();
    assert_eq!(states, [(Channel::Sms, DeliveryState::Sent)], "{done:?}");

    let requests = gateway.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.line, "POST /sms?token=t0k3n-in-query HTTP/1.1");
    assert_eq!(r.header("content-type"), Some("application/json"));
    let header = r.header(&SIGNATURE_HEADER.to_ascii_lowercase()).unwrap();
    let t = verify_signature(&key(), header, &r.body, unix_now(), 300).unwrap();
    assert!(unix_now().abs_diff(t) < 60);

    let json = r.json();
    let fields: BTreeSet<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(
        fields,
        BTreeSet::from([
            "type",
            "message_id",
            "channel",
            "recipient",
            "language",
            "text"
        ])
    );
    assert_eq!(json["type"], "pin");
    assert_eq!(json["channel"], "sms");
    assert_eq!(json["recipient"], MOBILE);
    assert_eq!(json["language"], "it");
    let id = json["message_id"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(r.header(&IDEMPOTENCY_HEADER.to_ascii_lowercase()), Some(id));
    let raw = String::from_utf8(r.body.clone()).unwrap();
    assert!(!raw.contains(MARIO), "no tax code in the body: {raw}");

    let text = json["text"].as_str().unwrap();
    assert!(text.starts_with("Il Suo PIN NoiPA: "), "{text}");
    let pin = secret_in(text);
    assert_eq!(pin.len(), 5, "NOIPA-1: five digits");
    assert_eq!(
        raw.matches(&pin).count(),
        1,
        "the PIN only in the text: {raw}"
    );
    let outcome = s
        .verify(&TaxCode::parse(MARIO).unwrap(), &pin, Level::Online, now())
        .unwrap();
    assert!(
        matches!(outcome, VerifyOutcome::Accepted { .. }),
        "{outcome:?}"
    );
}

#[test]
fn a_tampered_body_or_another_key_fails_verify_signature() {
    let gateway = Gateway::start(vec![Reply::Status(200, "{}")]);
    notifier(&gateway).deliver(&sms("48213", 1, 1)).unwrap();
    let r = &gateway.requests()[0];
    let header = r.header("x-pin-signature").unwrap();
    let now = unix_now();
    assert!(verify_signature(&key(), header, &r.body, now, 300).is_ok());
    let tampered = String::from_utf8(r.body.clone())
        .unwrap()
        .replace(MOBILE, "+393339999999");
    assert_eq!(
        verify_signature(&key(), header, tampered.as_bytes(), now, 300),
        Err(SignatureError::Mismatch)
    );
    let other = SigningKey::new(b"another-key-of-enough-bytes-0000").unwrap();
    assert_eq!(
        verify_signature(&other, header, &r.body, now, 300),
        Err(SignatureError::Mismatch)
    );
    // A replay long after: refused by the tolerance.
    assert!(matches!(
        verify_signature(&key(), header, &r.body, now + 3600, 300),
        Err(SignatureError::Stale { .. })
    ));
}

/// Two 503s, then 200: one `deliver` sends three times, the same body and message id each
/// time (so a gateway can deduplicate), each attempt signed.
#[test]
fn two_503s_then_200_is_sent_with_three_requests_and_one_message_id() {
    let gateway = Gateway::start(vec![
        Reply::Status(503, r#"{"error":"maintenance"}"#),
        Reply::Status(503, r#"{"error":"maintenance"}"#),
        Reply::Status(202, r#"{"status":"accepted"}"#),
    ]);
    let n = notifier(&gateway);
    let d = sms("K7QM2ZXA", 1, 2);
    assert_eq!(n.deliver(&d).unwrap(), Receipt::Sent);
    let requests = gateway.requests();
    assert_eq!(requests.len(), 3);
    let id = n.message_id(&d);
    for r in &requests {
        assert_eq!(r.body, requests[0].body, "the same body every attempt");
        assert_eq!(r.json()["message_id"], id.as_str());
        assert_eq!(r.header("idempotency-key"), Some(id.as_str()));
        let header = r.header("x-pin-signature").unwrap();
        verify_signature(&key(), header, &r.body, unix_now(), 300).unwrap();
    }
}

/// The idempotency key is stable across `deliver` calls (the worker's retries) and differs
/// for another part or another credential.
#[test]
fn the_message_id_is_stable_across_retries_and_distinct_per_part() {
    let gateway = Gateway::start(vec![Reply::Status(200, "{}")]);
    let n = notifier(&gateway);
    let d = sms("K7QM2ZXA", 1, 2);
    n.deliver(&d).unwrap();
    n.deliver(&d).unwrap();
    let again = notifier(&gateway); // a restarted worker: a new notifier, the same key
    again.deliver(&d).unwrap();
    let ids: Vec<String> = gateway
        .requests()
        .iter()
        .map(|r| r.json()["message_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.iter().all(|i| *i == ids[0]), "{ids:?}");
    let second_part = sms("ABCD2345", 2, 2);
    assert_ne!(n.message_id(&second_part), ids[0]);
    let mut next_serial = sms("K7QM2ZXA", 1, 2);
    next_serial.serial = 4;
    assert_ne!(n.message_id(&next_serial), ids[0]);
}

#[test]
fn permanent_500s_leave_the_part_pending() {
    let gateway = Gateway::start(vec![Reply::Status(500, r#"{"error":"database down"}"#)]);
    let s = service(notifier(&gateway));
    let done = enrol_employee(&s);
    let d = &done.deliveries[0];
    assert_eq!(d.state, DeliveryState::Pending, "{d:?}");
    let error = d.error.as_deref().unwrap();
    assert!(
        error.contains("after 3 attempts")
            && error.contains("HTTP 500: {\"error\":\"database down\"}"),
        "{error}"
    );
    assert!(
        !error.contains("t0k3n"),
        "no query string in errors: {error}"
    );
    assert_eq!(gateway.requests().len(), 3);
    let parts = &done.subject.credential.as_ref().unwrap().parts;
    assert_eq!(parts[0].state, DeliveryState::Pending);
}

// rule: POL-3 — a number the gateway refuses for good fails the part; recovery is a
// fresh issue, not a re-send of this PIN.
#[test]
fn a_400_refuses_the_message_and_fails_the_part() {
    let gateway = Gateway::start(vec![Reply::Status(400, r#"{"error":"invalid recipient"}"#)]);
    let s = service(notifier(&gateway));
    let done = enrol_employee(&s);
    let d = &done.deliveries[0];
    assert_eq!(d.state, DeliveryState::Failed, "{d:?}");
    let error = d.error.as_deref().unwrap();
    assert!(
        error.contains("refused the message") && error.contains("invalid recipient"),
        "{error}"
    );
    let requests = gateway.requests();
    let kind = |r: &support::Request| {
        serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["type"].clone()
    };
    assert_eq!(
        requests.iter().filter(|r| kind(r) == "pin").count(),
        1,
        "no retry of a refusal"
    );
    // rule: POL-6 — the failure itself is told to the person (a notice, no PIN).
    assert!(requests.iter().any(|r| kind(r) == "notice"));
    let parts = &done.subject.credential.as_ref().unwrap().parts;
    assert_eq!(parts[0].state, DeliveryState::Failed);
}

/// A 401 says our key or URL is wrong, not the number: the part stays pending (failing it
/// would only make the person wait for a fresh PIN that fails the same way).
#[test]
fn a_401_is_our_fault_and_leaves_the_part_pending() {
    let gateway = Gateway::start(vec![Reply::Status(401, r#"{"error":"bad signature"}"#)]);
    let s = service(notifier(&gateway));
    let done = enrol_employee(&s);
    let d = &done.deliveries[0];
    assert_eq!(d.state, DeliveryState::Pending, "{d:?}");
    assert!(d.error.as_deref().unwrap().contains("signing key"), "{d:?}");
    assert_eq!(gateway.requests().len(), 1);
}

#[test]
fn a_429_is_retried_after_its_retry_after() {
    let gateway = Gateway::start(vec![
        Reply::RetryAfter(429, 0),
        Reply::Status(200, r#"{"status":"delivered"}"#),
    ]);
    let n = notifier(&gateway);
    assert_eq!(n.deliver(&sms("48213", 1, 1)).unwrap(), Receipt::Confirmed);
    assert_eq!(gateway.requests().len(), 2);
}

/// A `Retry-After` longer than `max_backoff` is capped by it (an hour's wait would hang
/// this test), and a redirect is not followed: it says the URL is wrong.
#[test]
fn retry_after_is_capped_and_redirects_are_not_followed() {
    let gateway = Gateway::start(vec![Reply::RetryAfter(503, 3600), Reply::Status(200, "{}")]);
    assert_eq!(
        notifier(&gateway).deliver(&sms("48213", 1, 1)).unwrap(),
        Receipt::Sent
    );
    assert_eq!(gateway.requests().len(), 2);

    let moved = Gateway::start(vec![Reply::Status(301, "{}")]);
    let e = notifier(&moved).deliver(&sms("48213", 1, 1)).unwrap_err();
    assert!(
        matches!(&e, DeliveryError::Unavailable(m) if m.contains("redirects are not followed")),
        "{e}"
    );
    assert_eq!(moved.requests().len(), 1);
}

/// `{"status":"delivered"}` confirms the part in the record.
#[test]
fn a_delivered_status_confirms_the_part() {
    let gateway = Gateway::start(vec![Reply::Status(
        200,
        r#"{"status":"delivered","id":"x"}"#,
    )]);
    let s = service(notifier(&gateway));
    let done = enrol_employee(&s);
    assert_eq!(
        done.deliveries[0].state,
        DeliveryState::Confirmed,
        "{done:?}"
    );
}

#[test]
fn a_gateway_that_never_answers_times_out_and_the_part_stays_pending() {
    let gateway = Gateway::start(vec![Reply::Hang]);
    let mut c = config(&gateway.url());
    c.timeout = Duration::from_millis(500);
    c.max_attempts = 2;
    let s = service(WebhookNotifier::new(c).unwrap());
    let done = enrol_employee(&s);
    let d = &done.deliveries[0];
    assert_eq!(d.state, DeliveryState::Pending, "{d:?}");
    let error = d.error.as_deref().unwrap();
    assert!(
        error.contains("after 2 attempts") && error.contains("no answer in time"),
        "{error}"
    );
    assert_eq!(gateway.requests().len(), 2);
}

#[test]
fn a_gateway_that_is_down_leaves_the_part_pending() {
    let url = format!("http://127.0.0.1:{}/sms", closed_port());
    let s = service(WebhookNotifier::new(config(&url)).unwrap());
    let done = enrol_employee(&s);
    let d = &done.deliveries[0];
    assert_eq!(d.state, DeliveryState::Pending, "{d:?}");
    let error = d.error.as_deref().unwrap();
    assert!(
        error.contains("did not take the message after 3 attempts"),
        "{error}"
    );
}

// rule: BOTH-2 — a gateway that quotes the text (and so the PIN) back in its error: the
// error recorded and returned has the PIN redacted.
#[test]
fn both_2_a_reply_echoing_the_pin_is_redacted() {
    let gateway = Gateway::start(vec![Reply::EchoText(422)]);
    let s = service(notifier(&gateway));
    let done = enrol_employee(&s);
    let d = &done.deliveries[0];
    assert_eq!(d.state, DeliveryState::Failed, "{d:?}");
    let error = d.error.as_deref().unwrap();
    let sent = gateway.requests()[0].json();
    let pin = secret_in(sent["text"].as_str().unwrap());
    assert!(
        error.contains("text not allowed: Il Suo PIN NoiPA: [redacted]."),
        "{error}"
    );
    assert!(!error.contains(&pin), "{error}");
    assert!(error.chars().count() < 400, "a quote is short: {error}");
    // The notifier's own answer too.
    let e = notifier(&gateway).deliver(&sms("48213", 1, 1)).unwrap_err();
    assert!(matches!(e, DeliveryError::Refused(_)), "{e}");
    assert!(!e.to_string().contains("48213"), "{e}");
}

#[test]
fn debug_shows_the_endpoint_not_the_key_or_the_token() {
    let gateway = Gateway::start(vec![Reply::Status(200, "{}")]);
    let n = notifier(&gateway);
    let shown = format!("{n:?}");
    assert!(shown.contains("http://127.0.0.1:"), "{shown}");
    assert!(!shown.contains("gateway-shared-key"), "{shown}");
    assert!(!shown.contains("103, 97, 116"), "{shown}"); // the key's bytes
    assert!(!shown.contains("t0k3n"), "{shown}");
    assert!(!format!("{:?}", config(&gateway.url())).contains("gateway-shared-key"));
}

#[test]
fn other_channels_are_unavailable_and_name_the_channel() {
    let gateway = Gateway::start(vec![Reply::Status(200, "{}")]);
    let n = notifier(&gateway);
    let mut d = sms("48213", 1, 1);
    d.channel = Channel::Email;
    let e = n.deliver(&d).unwrap_err();
    assert!(
        matches!(&e, DeliveryError::Unavailable(m) if m.contains("Email")),
        "{e}"
    );
    assert!(gateway.requests().is_empty());
}

// rule: INPS-6 — a web request splits the PIN: the first 8 by SMS through the gateway,
// the last 8 by post, each channel only its half (BOTH-2); the router gives each channel
// its notifier.
#[test]
fn inps_6_split_delivery_by_sms_gateway_and_post_through_the_router() {
    let gateway = Gateway::start(vec![Reply::Status(200, "{}")]);
    let post = Arc::new(MemoryOutbox::new());
    let mut c = config(&gateway.url());
    c.language = Language::English;
    let router = ChannelRouter::new()
        .route(&[Channel::Sms], WebhookNotifier::new(c).unwrap())
        .otherwise_shared(post.clone());
    let s = service(router);
    let tax = TaxCode::parse(MARIO).unwrap();
    let enrolment = Enrolment {
        role: Role::Citizen,
        contacts: Contacts {
            mobile: Some(Mobile::parse(MOBILE).unwrap()),
            address: Some(Address::parse("Via Roma 1, 00100 Roma RM").unwrap()),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: None,
    };
    let _enrolled = s
        .execute(&tax, &Actor::Subject, &Command::Enrol(enrolment), now())
        .unwrap();
    let done = s
        .execute(
            &tax,
            &Actor::Subject,
            &Command::WebRequest {
                address: Check::Passed,
            },
            now(),
        )
        .unwrap();
    let states: Vec<(Channel, DeliveryState)> = done
        .deliveries
        .iter()
        .map(|d| (d.channel, d.state))
        .collect();
    assert_eq!(
        states,
        [
            (Channel::Sms, DeliveryState::Sent),
            (Channel::Post, DeliveryState::Sent)
        ]
    );
    let requests = gateway.requests();
    assert_eq!(requests.len(), 1, "only the SMS goes to the gateway");
    let text = requests[0].json()["text"].as_str().unwrap().to_owned();
    assert!(text.starts_with("Your INPS PIN, part 1 of 2: "), "{text}");
    let first = secret_in(&text);
    let second = post.take()[0].delivery.secret.expose_secret().to_owned();
    assert_eq!((first.len(), second.len()), (8, 8));
    let raw = String::from_utf8(requests[0].body.clone()).unwrap();
    assert!(!raw.contains(&second), "BOTH-2: each channel only its half");
    let outcome = s
        .verify(&tax, &format!("{first}{second}"), Level::Online, now())
        .unwrap();
    assert!(matches!(outcome, VerifyOutcome::MustChange), "{outcome:?}");
}

// rule: POL-6 — a security notice by SMS is its own JSON type, signed, with no PIN.
#[test]
fn pol_6_a_security_notice_is_sent_as_its_own_type_without_a_pin() {
    let gateway = Gateway::start(vec![Reply::Status(200, "{}")]);
    let n = notifier(&gateway);
    let notice = Notice {
        subject: TaxCode::parse(MARIO).unwrap(),
        kind: NoticeKind::ContactsChanged,
        channel: Channel::Sms,
        recipient: MOBILE.into(),
        at: now(),
    };
    assert_eq!(n.notify(&notice).unwrap(), Receipt::Sent);
    let r = &gateway.requests()[0];
    verify_signature(
        &key(),
        r.header("x-pin-signature").unwrap(),
        &r.body,
        unix_now(),
        300,
    )
    .unwrap();
    let json = r.json();
    assert_eq!(json["type"], "notice");
    assert_eq!(json["recipient"], MOBILE);
    assert_eq!(json["message_id"], n.notice_id(&notice).as_str());
    let text = json["text"].as_str().unwrap();
    assert!(
        text.starts_with("Avviso di sicurezza: il 2026-03-02 09:30 UTC"),
        "{text}"
    );
    assert!(!text.contains("PIN:"), "{text}");
    // The same notice has the same id (a retry); another kind of notice another one.
    assert_eq!(notifier(&gateway).notice_id(&notice), n.notice_id(&notice));
    let locked = Notice {
        kind: NoticeKind::Locked,
        ..notice.clone()
    };
    assert_ne!(n.notice_id(&locked), n.notice_id(&notice));
    // A notice on another channel is not this notifier's.
    let mail = Notice {
        channel: Channel::Email,
        ..notice
    };
    assert!(matches!(
        n.notify(&mail),
        Err(DeliveryError::Unavailable(_))
    ));
    assert_eq!(gateway.requests().len(), 1);
}

/// `https://` speaks TLS even to this machine: the first bytes on the wire are a TLS
/// handshake record, never the JSON (and a server that does not answer TLS leaves the part
/// pending).
#[test]
fn https_speaks_tls_and_never_sends_the_body_in_clear() {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut first = [0u8; 3];
        stream.read_exact(&mut first).unwrap();
        first // dropped: the connection closes
    });
    let mut c = config(&format!("https://127.0.0.1:{port}/sms"));
    c.max_attempts = 1;
    let e = WebhookNotifier::new(c)
        .unwrap()
        .deliver(&sms("48213", 1, 1))
        .unwrap_err();
    assert!(matches!(e, DeliveryError::Unavailable(_)), "{e}");
    let first = server.join().unwrap();
    assert_eq!(
        first[..2],
        [0x16, 0x03],
        "a TLS handshake record: {first:?}"
    );
}

/// A gateway on this machine is reached directly even when the environment names a proxy
/// (here one that is down): run in a child process of this test binary, so the variables
/// are set only there.
#[test]
fn a_loopback_gateway_is_never_reached_through_a_proxy() {
    let dead_proxy = format!("http://127.0.0.1:{}", closed_port());
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "proxy_child_delivers_directly",
            "--nocapture",
        ])
        .env("ALL_PROXY", &dead_proxy)
        .env("HTTP_PROXY", &dead_proxy)
        .env("http_proxy", &dead_proxy)
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("1 passed"), "the child ran: {stdout}");
}

/// The child of [`a_loopback_gateway_is_never_reached_through_a_proxy`].
#[test]
#[ignore = "run by a_loopback_gateway_is_never_reached_through_a_proxy with a proxy set"]
fn proxy_child_delivers_directly() {
    assert!(std::env::var("ALL_PROXY").is_ok(), "run with a proxy set");
    let gateway = Gateway::start(vec![Reply::Status(200, "{}")]);
    notifier(&gateway).deliver(&sms("48213", 1, 1)).unwrap();
    assert_eq!(gateway.requests().len(), 1);
}
