//! Observability (issue #13): the spans and events the driver emits never hold a PIN, a
//! pepper, a sealed part or a full contact, and the metrics count what happened.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use chrono::Duration;
use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use pin_core::command::{Command, Delivery, Enrolment, Notice};
use pin_core::hash::Keyring;
use pin_core::memory::MemoryStore;
use pin_core::notify::{DeliveryError, Notifier, Receipt};
use pin_core::secret::{KeyId, Pepper};
use pin_core::service::{DeliveryMode, DriverOptions, PinService};
use pin_core::store::Store;
use pin_core::subject::Role;
use pin_core::telemetry::{self, Stopwatch};
use pin_core::{Actor, Level, VerifyOutcome};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;
use tracing::field::{Field, Visit};
use tracing_subscriber::layer::{Context, SubscriberExt as _};

use crate::harness::{GIUSEPPE, LAURA, MARIO, PEPPER, cheap_policy, date, full_contacts, t0, tax};

/// Every span and event, as text (string and debug fields) and numbers (kept apart: a
/// duration's digits are not a PIN).
#[derive(Default)]
struct Seen {
    text: Vec<String>,
    numbers: Vec<u64>,
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Seen>>);

struct Fields<'a> {
    line: String,
    numbers: &'a mut Vec<u64>,
}

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.line, " {}={value:?}", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.line, " {}={value}", field.name());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        let _ = write!(self.line, " {}=<u64>", field.name());
        self.numbers.push(value);
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        let _ = write!(self.line, " {}=<i64>", field.name());
        self.numbers.push(value.unsigned_abs());
    }
    fn record_f64(&mut self, field: &Field, _: f64) {
        let _ = write!(self.line, " {}=<f64>", field.name());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        let _ = write!(self.line, " {}={value}", field.name());
    }
}

impl Capture {
    fn push(&self, head: String, record: impl FnOnce(&mut Fields<'_>)) {
        let mut seen = self.0.lock().unwrap();
        let mut f = Fields {
            line: head,
            numbers: &mut seen.numbers,
        };
        record(&mut f);
        let line = f.line;
        seen.text.push(line);
    }
    fn lines(&self) -> Vec<String> {
        self.0.lock().unwrap().text.clone()
    }
    fn numbers(&self) -> Vec<u64> {
        self.0.lock().unwrap().numbers.clone()
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: Context<'_, S>,
    ) {
        self.push(format!("span {}", attrs.metadata().name()), |f| {
            attrs.record(f);
        });
    }
    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: Context<'_, S>,
    ) {
        self.push("record".to_owned(), |f| values.record(f));
    }
    fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
        self.push(format!("event {}", event.metadata().level()), |f| {
            event.record(f);
        });
    }
}

/// A channel that keeps the secrets it was given (the test needs them to look for them in
/// the logs), can be switched down, and refuses every security notice.
#[derive(Default)]
struct Channel {
    down: Mutex<bool>,
    secrets: Mutex<Vec<String>>,
}

impl Notifier for Channel {
    fn deliver(&self, d: &Delivery) -> Result<Receipt, DeliveryError> {
        if *self.down.lock().unwrap() {
            return Err(DeliveryError::Unavailable("relay down".into()));
        }
        self.secrets
            .lock()
            .unwrap()
            .push(d.secret.expose_secret().to_owned());
        Ok(Receipt::Sent)
    }
    fn notify(&self, _: &Notice) -> Result<Receipt, DeliveryError> {
        Err(DeliveryError::Refused("550 notices are off".into()))
    }
}

type Svc<'a> = PinService<&'a MemoryStore, &'a Channel, ChaCha20Rng>;

#[allow(
    clippy::disallowed_methods,
    reason = "the embedder (here the test) hands the service its monotonic clock"
)]
fn svc<'a>(store: &'a MemoryStore, channel: &'a Channel, mode: DeliveryMode) -> Svc<'a> {
    PinService::new(
        store,
        channel,
        cheap_policy().build().unwrap(),
        Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap()),
        ChaCha20Rng::seed_from_u64(11),
    )
    .unwrap()
    .with_options(DriverOptions::default().with_delivery(mode))
    .with_stopwatch(Stopwatch::new(std::time::Instant::now))
}

fn enrol(
    s: &Svc<'_>,
    code: &str,
    email: &str,
) -> Result<pin_core::service::Executed, pin_core::Error> {
    s.execute(
        &tax(code),
        &Actor::Rid("rid-1".into()),
        &Command::Enrol(Enrolment {
            role: Role::Employee,
            contacts: full_contacts(email),
            cns_holder: false,
            enrolled_on: Some(date(2020, 9, 1)),
        }),
        t0(),
    )
}

/// Everything recorded so far (a snapshot resets the counters: take one).
type Snap = Vec<(
    metrics_util::CompositeKey,
    Option<metrics::Unit>,
    Option<metrics::SharedString>,
    DebugValue,
)>;

/// The value of the metric `name` with exactly `labels`.
fn metric<'a>(snap: &'a Snap, name: &str, labels: &[(&str, &str)]) -> Option<&'a DebugValue> {
    snap.iter().find_map(|(key, _, _, value)| {
        let k = key.key();
        let mut have: Vec<(String, String)> = k
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        have.sort();
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        want.sort();
        (k.name() == name && have == want).then_some(value)
    })
}

fn counter(snap: &Snap, name: &str, labels: &[(&str, &str)]) -> u64 {
    match metric(snap, name, labels) {
        Some(DebugValue::Counter(n)) => *n,
        None => 0,
        Some(other) => panic!("{name} is not a counter: {other:?}"),
    }
}

/// Runs `f` with the capture subscriber and a debugging recorder installed on this thread.
fn observed<T>(f: impl FnOnce() -> T) -> (T, Capture, Snap) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let out = tracing::subscriber::with_default(subscriber, || {
        metrics::with_local_recorder(&recorder, f)
    });
    (out, capture, snap.snapshot().into_vec())
}

#[test]
fn no_pin_pepper_sealed_part_or_contact_reaches_any_span_or_event() {
    let store = MemoryStore::new();
    let channel = Channel::default();
    let (sealed, capture, _) = observed(|| {
        // Inline: issued and delivered in the request.
        let s = svc(&store, &channel, DeliveryMode::Inline);
        let _ = enrol(&s, MARIO, "mario.rossi@example.it").unwrap();
        let pin = channel.secrets.lock().unwrap().last().cloned().unwrap();
        let wrong = if pin == "13579" { "24680" } else { "13579" };
        for _ in 0..3 {
            let _ = s.verify(&tax(MARIO), wrong, Level::Online, t0()).unwrap();
        }
        assert!(matches!(
            s.verify(&tax(MARIO), &pin, Level::Online, t0()).unwrap(),
            VerifyOutcome::Accepted { .. }
        ));
        // Deferred, with the channel down: the part waits sealed, then a worker delivers it.
        let d = svc(&store, &channel, DeliveryMode::Deferred);
        let _ = enrol(&d, GIUSEPPE, "giuseppe.verdi@example.it").unwrap();
        let queued = store
            .load(&tax(GIUSEPPE))
            .unwrap()
            .unwrap()
            .subject
            .credential
            .unwrap();
        let sealed: Vec<String> = queued
            .parts
            .iter()
            .filter_map(|p| p.queued.as_ref())
            .flat_map(|q| {
                let v = serde_json::to_value(&q.sealed).unwrap();
                strings(&v)
            })
            .filter(|s| s.len() >= 16)
            .collect();
        assert!(!sealed.is_empty(), "the part waits sealed");
        *channel.down.lock().unwrap() = true;
        let run = d.deliver_due(t0(), 10).unwrap();
        assert_eq!(run.deferred(), 1);
        *channel.down.lock().unwrap() = false;
        let run = d.deliver_due(t0() + Duration::days(1), 10).unwrap();
        assert_eq!(run.delivered(), 1);
        // A PIN-shaped answer for a subject not on record.
        let _ = s.verify(&tax(LAURA), "97531", Level::Online, t0()).unwrap();
        sealed
    });
    let lines = capture.lines();
    let all = lines.join("\n");
    let pins = channel.secrets.lock().unwrap().clone();
    assert_eq!(pins.len(), 2);
    let mut forbidden: Vec<String> = pins.clone();
    forbidden.extend(["13579", "24680", "97531"].map(str::to_owned));
    forbidden.extend(sealed);
    forbidden.extend(
        [
            "mario.rossi@example.it",
            "giuseppe.verdi@example.it",
            "pec.user@pec.example.it",
            "347 123 4567",
            "3471234567",
            "Via Roma",
            // The pepper (0x5a bytes) as text and as hex, and the full tax codes.
            "ZZZZZZZZ",
            "5a5a5a5a",
            MARIO,
            GIUSEPPE,
            LAURA,
        ]
        .map(str::to_owned),
    );
    for secret in &forbidden {
        assert!(
            !all.contains(secret.as_str()),
            "{secret:?} appears in the logs:\n{all}"
        );
    }
    let numbers = capture.numbers();
    for pin in &pins {
        let n: u64 = pin.parse().unwrap();
        assert!(
            !numbers.contains(&n) || n < 100,
            "PIN {pin} logged as a number"
        );
    }
    // What is there: the spans with the masked tax code, the outcomes, the worker's events.
    assert!(all.contains("span pin.verify"), "{all}");
    assert!(all.contains("subject=RSS************S"), "{all}");
    assert!(
        all.contains("outcome=\"rejected\"") || all.contains("outcome=rejected"),
        "{all}"
    );
    assert!(all.contains("part deferred"), "{all}");
    assert!(all.contains("delivery run"), "{all}");
    assert!(
        all.contains("command=\"enrol\"") || all.contains("command=enrol"),
        "{all}"
    );
}

/// Every string in a JSON value.
fn strings(v: &serde_json::Value) -> Vec<String> {
    match v {
        serde_json::Value::String(s) => vec![s.clone()],
        serde_json::Value::Array(a) => a.iter().flat_map(strings).collect(),
        serde_json::Value::Object(o) => o.values().flat_map(strings).collect(),
        _ => Vec::new(),
    }
}

#[test]
fn a_flow_emits_the_documented_counters() {
    let store = MemoryStore::new();
    let channel = Channel::default();
    let ((), capture, snap) = observed(|| {
        let s = svc(&store, &channel, DeliveryMode::Inline);
        let _ = enrol(&s, MARIO, "mario.rossi@example.it").unwrap();
        // A second enrolment is refused by the rules.
        assert!(enrol(&s, MARIO, "mario.rossi@example.it").is_err());
        let pin = channel.secrets.lock().unwrap().last().cloned().unwrap();
        let wrong = if pin == "13579" { "24680" } else { "13579" };
        let _ = s.verify(&tax(MARIO), wrong, Level::Online, t0()).unwrap();
        let _ = s.verify(&tax(MARIO), &pin, Level::Online, t0()).unwrap();
        let _ = s.verify(&tax(LAURA), "97531", Level::Online, t0()).unwrap();
        // rule: INPS-12 — ten wrong PINs block it; the lock notice the channel refuses is
        // an ignored failure, not an error.
        let mut last = None;
        for _ in 0..10 {
            last = Some(s.verify(&tax(MARIO), wrong, Level::Online, t0()).unwrap());
        }
        assert_eq!(last, Some(VerifyOutcome::Locked));
    });
    let c = |name: &str, labels: &[(&str, &str)]| counter(&snap, name, labels);
    assert_eq!(
        c(
            telemetry::COMMANDS_TOTAL,
            &[("command", "enrol"), ("outcome", "ok")]
        ),
        1
    );
    assert_eq!(
        c(
            telemetry::COMMANDS_TOTAL,
            &[("command", "enrol"), ("outcome", "refused")]
        ),
        1
    );
    assert_eq!(c(telemetry::REJECTIONS_TOTAL, &[("command", "enrol")]), 1);
    assert_eq!(c(telemetry::VERIFY_TOTAL, &[("outcome", "accepted")]), 1);
    assert_eq!(c(telemetry::VERIFY_TOTAL, &[("outcome", "rejected")]), 10);
    assert_eq!(c(telemetry::VERIFY_TOTAL, &[("outcome", "locked")]), 1);
    assert_eq!(c(telemetry::VERIFY_TOTAL, &[("outcome", "no_pin")]), 1);
    assert_eq!(c(telemetry::NO_PIN_ANSWERS_TOTAL, &[]), 1);
    assert_eq!(c(telemetry::LOCKOUTS_TOTAL, &[]), 1);
    // One refused notice per contact (e-mail, SMS, PEC; POL-6).
    assert_eq!(
        c(
            telemetry::IGNORED_FAILURES_TOTAL,
            &[("what", "lock_notice")]
        ),
        3
    );
    assert_eq!(c(telemetry::HASHES_TOTAL, &[("key_id", "1")]), 1);
    // Every answer about the stored hash (1 + 1 + 10); the unknown subject has none.
    assert_eq!(c(telemetry::VERIFY_BY_KEY_TOTAL, &[("key_id", "1")]), 12);
    assert!(
        c(
            telemetry::DELIVERIES_TOTAL,
            &[("channel", "sms"), ("result", "sent"), ("via", "inline")]
        ) + c(
            telemetry::DELIVERIES_TOTAL,
            &[("channel", "email"), ("result", "sent"), ("via", "inline")]
        ) >= 1
    );
    match metric(
        &snap,
        telemetry::VERIFY_DURATION,
        &[("outcome", "rejected")],
    ) {
        Some(DebugValue::Histogram(v)) => assert_eq!(v.len(), 10),
        other => panic!("no verify latency: {other:?}"),
    }
    let all = capture.lines().join("\n");
    assert!(all.contains("PIN blocked"), "{all}");
    assert!(all.contains("lock notice not sent"), "{all}");
}

#[test]
fn a_worker_run_reports_deliveries_by_result_and_the_oldest_due_age() {
    let store = MemoryStore::new();
    let channel = Channel::default();
    let ((), _, snap) = observed(|| {
        let d = svc(&store, &channel, DeliveryMode::Deferred);
        let _ = enrol(&d, GIUSEPPE, "giuseppe.verdi@example.it").unwrap();
        *channel.down.lock().unwrap() = true;
        d.deliver_due(t0(), 10).unwrap();
        *channel.down.lock().unwrap() = false;
        d.deliver_due(t0() + Duration::days(1), 10).unwrap();
    });
    let deferred: u64 = ["sms", "email"]
        .iter()
        .map(|ch| {
            counter(
                &snap,
                telemetry::DELIVERIES_TOTAL,
                &[("channel", ch), ("result", "deferred"), ("via", "worker")],
            )
        })
        .sum();
    let sent: u64 = ["sms", "email"]
        .iter()
        .map(|ch| {
            counter(
                &snap,
                telemetry::DELIVERIES_TOTAL,
                &[("channel", ch), ("result", "sent"), ("via", "worker")],
            )
        })
        .sum();
    assert_eq!((deferred, sent), (1, 1));
    // The second run found the part due since the first run's backoff: it had waited.
    match metric(&snap, telemetry::DELIVERY_OLDEST_DUE_AGE, &[]) {
        Some(DebugValue::Gauge(g)) => assert!(g.into_inner() > 0.0, "{g}"),
        other => panic!("no oldest-due gauge: {other:?}"),
    }
}

#[test]
fn without_a_subscriber_or_recorder_the_service_works_unchanged() {
    // No subscriber, no recorder: the facades are no-ops, and the answers are the same.
    let store = MemoryStore::new();
    let channel = Channel::default();
    let s = svc(&store, &channel, DeliveryMode::Inline);
    let _ = enrol(&s, MARIO, "mario.rossi@example.it").unwrap();
    let pin = channel.secrets.lock().unwrap().last().cloned().unwrap();
    assert!(matches!(
        s.verify(&tax(MARIO), &pin, Level::Online, t0()).unwrap(),
        VerifyOutcome::Accepted { .. }
    ));
}

#[test]
fn receipts_not_recorded_after_the_commit_are_an_event_and_a_counter() {
    // The command commits, the channel takes the message, then every save fails: the
    // answer is Ok with receipts_saved false, which used to be silent.
    let store = MemoryStore::new();
    let channel = Channel::default();
    let dying = crate::delivery::DiesAfter {
        inner: &store,
        saves_left: std::sync::atomic::AtomicU32::new(0),
    };
    let (done, capture, snap) = observed(|| {
        let s = PinService::new(
            &dying,
            &channel,
            cheap_policy().build().unwrap(),
            Keyring::new(Pepper::new(KeyId(1), &PEPPER).unwrap()),
            ChaCha20Rng::seed_from_u64(5),
        )
        .unwrap();
        s.execute(
            &tax(MARIO),
            &Actor::Rid("rid-1".into()),
            &Command::Enrol(Enrolment {
                role: Role::Employee,
                contacts: full_contacts("mario.rossi@example.it"),
                cns_holder: false,
                enrolled_on: Some(date(2020, 9, 1)),
            }),
            t0(),
        )
        .unwrap()
    });
    assert!(!done.receipts_saved);
    assert_eq!(
        counter(
            &snap,
            telemetry::IGNORED_FAILURES_TOTAL,
            &[("what", "receipts")]
        ),
        1
    );
    let all = capture.lines().join("\n");
    assert!(all.contains("delivery receipts not recorded"), "{all}");
    assert!(all.contains("receipts_saved=false"), "{all}");
    // Without a stopwatch there is no duration, and still no secret.
    assert!(all.contains("command done"), "{all}");
    for secret in channel.secrets.lock().unwrap().iter() {
        assert!(!all.contains(secret.as_str()), "{secret}");
    }
}
