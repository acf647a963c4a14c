//! Observability: `tracing` spans and events, and metrics through the `metrics` facade.
//!
//! pin-core only *emits*: it installs no subscriber and no recorder, does no I/O for them,
//! and reads no clock. An embedder that installs neither pays a few atomic loads and a
//! few small label allocations per call — nothing beside one Argon2 evaluation (the verify
//! benchmark, `benches/verify.rs`, measures the driver's overhead). Install a `tracing` subscriber (e.g. `tracing-subscriber`) to see the spans and
//! events, and a `metrics` recorder (e.g. `metrics-exporter-prometheus`) to collect the
//! metrics below. The adapters (`pin-sqlite`, `pin-postgres`) emit through the same
//! facades and use the names defined here.
//!
//! # What is never emitted
//!
//! No field of any span or event, and no metric label, ever holds a PIN (or a part of one),
//! a pepper, a sealed part, or a full contact. A subject is named by its masked tax code
//! ([`mask`]: the first 3 and the last character, e.g. `RSS************S`); contacts are not
//! named at all; errors are shown by their message, which never holds a secret.
//!
//! # Durations
//!
//! pin-core reads no clock, so latencies are measured only when the embedder hands the
//! service a monotonic clock: [`PinService::with_stopwatch`](crate::service::PinService::with_stopwatch)
//! with [`Stopwatch::new(std::time::Instant::now)`](Stopwatch::new). Without one, the
//! `duration_ms` fields are absent and the duration histograms are not recorded; span
//! timings from the subscriber (e.g. `tracing-subscriber`'s span close events) still work.
//!
//! # Spans
//!
//! | span | level | fields |
//! |---|---|---|
//! | `pin.execute` | INFO | `command`, `actor` (kind), `subject` (masked), `serial` |
//! | `pin.verify` | INFO | `purpose`, `subject` (masked), `serial` |
//! | `pin.deliver_due` | INFO | `limit` |
//! | `pin.deliver_subject` | DEBUG | `subject` (masked) |
//!
//! # Events
//!
//! | message | level | fields | when |
//! |---|---|---|---|
//! | `command done` | INFO | `command`, `outcome` (`ok` or the error kind), `retries`, `duration_ms`, `deliveries`, `receipts_saved` | each [`PinService::execute`](crate::service::PinService::execute) |
//! | `verify done` | INFO | `outcome` (a [`VerifyOutcome`] name or `error`), `retries`, `duration_ms` | each verify/authenticate |
//! | `record changed concurrently; deciding again` | DEBUG | `operation`, `retry` | a compare-and-swap conflict |
//! | `settlement failed; retrying` | WARN | `retry`, `error` | a retryable settlement failure (POL-8) |
//! | `PIN blocked` | WARN | `serial` | a verify made a lock (INPS-12, POL-1) |
//! | `lock notice not sent` | WARN | `channel`, `error` | a POL-6 notice the channel refused |
//! | `new hash not made after a match` | WARN | `error` | the rehash of a matched PIN failed |
//! | `first use or rehash not saved after a match` | WARN | `error` | that save failed (the next verify tries again) |
//! | `delivery receipts not recorded` | WARN | `error` | [`Executed::receipts_saved`](crate::service::Executed::receipts_saved) is `false` |
//! | `part delivered` / `part deferred` / `part given up` | INFO / WARN / WARN | `serial`, `part`, `of`, `channel`, `state`, `error` | each part a worker handled |
//! | `delivery run` | INFO | `taken`, `delivered`, `deferred`, `failed`, `errors`, `oldest_due_age_s` | each [`PinService::deliver_due`](crate::service::PinService::deliver_due) |
//! | `subject not delivered this run` | WARN | `subject` (masked), `error` | a record the worker could not read or write |
//!
//! # Metrics
//!
//! | name | type | labels | meaning |
//! |---|---|---|---|
//! | `pin_verify_total` | counter | `outcome` | verifies by outcome (`accepted`, `rejected`, `locked`, `try_later`, `must_change`, `expired`, `insufficient_level`, `no_pin`, `error`) |
//! | `pin_verify_duration_seconds` | histogram | `outcome` | verify latency (with a [`Stopwatch`]) |
//! | `pin_no_pin_answers_total` | counter | — | verifies answered `no_pin`: a burst is an enumeration signal |
//! | `pin_lockouts_total` | counter | — | PINs newly blocked by wrong attempts |
//! | `pin_commands_total` | counter | `command`, `outcome` | commands by outcome (`ok` or an error kind: `input`, `refused`, `locked`, `config`, `storage`, `retryable`) |
//! | `pin_command_duration_seconds` | histogram | `command` | command latency (with a [`Stopwatch`]) |
//! | `pin_rejections_total` | counter | `command` | commands the rules refused (error kind `refused` or `locked`) |
//! | `pin_contention_retries_total` | counter | `operation` | compare-and-swap conflicts decided again (`execute`, `verify`, `receipts`, `claim`) |
//! | `pin_settle_retries_total` | counter | — | settlements retried after a retryable storage error |
//! | `pin_ignored_failures_total` | counter | `what` | failures that do not change the answer: `rehash`, `refresh_save`, `receipts`, `lock_notice` |
//! | `pin_deliveries_total` | counter | `channel`, `result`, `via` | parts handed to a channel: `result` is `sent`, `confirmed`, `deferred` or `failed`; `via` is `inline` or `worker` |
//! | `pin_delivery_oldest_due_age_seconds` | gauge | — | at each worker run: how long the oldest due part it found has waited (0 when none) |
//! | `pin_hashes_total` | counter | `key_id` | new Argon2 hashes made, by pepper key id |
//! | `pin_verify_by_key_total` | counter | `key_id` | compares against stored hashes, by the key id they were made with (key-rotation progress) |
//! | `pin_store_busy_total` | counter | `backend` | storage busy errors (SQLite lock held past the busy timeout, PostgreSQL pool exhausted) |
//! | `pin_store_retries_total` | counter | `backend`, `reason` | transactions the adapter re-ran (`serialization`, `connection_lost`) |
//! | `pin_store_pool_wait_seconds` | histogram | `backend` | time waited for a pooled connection (PostgreSQL) |
//! | `pin_store_migrations_total` | counter | `backend` | schema migrations applied |

use std::cell::Cell;
use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::service::{DeliveryRun, Executed};
use crate::subject::{Channel, DeliveryState};
use crate::tax_code::TaxCode;
use crate::verify::{Purpose, VerifyOutcome};

/// `pin_verify_total`: verifies by `outcome`.
pub const VERIFY_TOTAL: &str = "pin_verify_total";
/// `pin_verify_duration_seconds`: verify latency by `outcome`.
pub const VERIFY_DURATION: &str = "pin_verify_duration_seconds";
/// `pin_no_pin_answers_total`: verifies answered `no_pin`.
pub const NO_PIN_ANSWERS_TOTAL: &str = "pin_no_pin_answers_total";
/// `pin_lockouts_total`: PINs newly blocked.
pub const LOCKOUTS_TOTAL: &str = "pin_lockouts_total";
/// `pin_commands_total`: commands by `command` and `outcome`.
pub const COMMANDS_TOTAL: &str = "pin_commands_total";
/// `pin_command_duration_seconds`: command latency by `command`.
pub const COMMAND_DURATION: &str = "pin_command_duration_seconds";
/// `pin_rejections_total`: commands refused by the rules, by `command`.
pub const REJECTIONS_TOTAL: &str = "pin_rejections_total";
/// `pin_contention_retries_total`: compare-and-swap conflicts, by `operation`.
pub const CONTENTION_RETRIES_TOTAL: &str = "pin_contention_retries_total";
/// `pin_settle_retries_total`: settlements retried.
pub const SETTLE_RETRIES_TOTAL: &str = "pin_settle_retries_total";
/// `pin_ignored_failures_total`: failures that leave the answer unchanged, by `what`.
pub const IGNORED_FAILURES_TOTAL: &str = "pin_ignored_failures_total";
/// `pin_deliveries_total`: parts by `channel`, `result` and `via`.
pub const DELIVERIES_TOTAL: &str = "pin_deliveries_total";
/// `pin_delivery_oldest_due_age_seconds`: age of the oldest due part a worker run found.
pub const DELIVERY_OLDEST_DUE_AGE: &str = "pin_delivery_oldest_due_age_seconds";
/// `pin_hashes_total`: new hashes by `key_id`.
pub const HASHES_TOTAL: &str = "pin_hashes_total";
/// `pin_verify_by_key_total`: compares by the stored hash's `key_id`.
pub const VERIFY_BY_KEY_TOTAL: &str = "pin_verify_by_key_total";
/// `pin_store_busy_total`: busy errors by `backend` (emitted by the adapters).
pub const STORE_BUSY_TOTAL: &str = "pin_store_busy_total";
/// `pin_store_retries_total`: transactions re-run by `backend` and `reason` (adapters).
pub const STORE_RETRIES_TOTAL: &str = "pin_store_retries_total";
/// `pin_store_pool_wait_seconds`: waits for a pooled connection, by `backend` (adapters).
pub const STORE_POOL_WAIT: &str = "pin_store_pool_wait_seconds";
/// `pin_store_migrations_total`: migrations applied, by `backend` (adapters).
pub const STORE_MIGRATIONS_TOTAL: &str = "pin_store_migrations_total";

/// Every metric name above, for documentation checks and dashboards.
pub const ALL_METRICS: &[&str] = &[
    VERIFY_TOTAL,
    VERIFY_DURATION,
    NO_PIN_ANSWERS_TOTAL,
    LOCKOUTS_TOTAL,
    COMMANDS_TOTAL,
    COMMAND_DURATION,
    REJECTIONS_TOTAL,
    CONTENTION_RETRIES_TOTAL,
    SETTLE_RETRIES_TOTAL,
    IGNORED_FAILURES_TOTAL,
    DELIVERIES_TOTAL,
    DELIVERY_OLDEST_DUE_AGE,
    HASHES_TOTAL,
    VERIFY_BY_KEY_TOTAL,
    STORE_BUSY_TOTAL,
    STORE_RETRIES_TOTAL,
    STORE_POOL_WAIT,
    STORE_MIGRATIONS_TOTAL,
];

/// A tax code as logs show it: the first 3 and the last character, the others `*`
/// (`RSSMRA85T10A562S` → `RSS************S`). Enough to tell subjects apart in a trace,
/// not to name the person. Formatting happens only when a subscriber records the field.
#[derive(Clone, Copy)]
pub struct Masked<'a>(&'a str);

/// The masked form of `tax` (see [`Masked`]).
#[must_use]
pub fn mask(tax: &TaxCode) -> Masked<'_> {
    Masked(tax.as_str())
}

/// The masked form of any identifier (see [`Masked`]); a string of 4 characters or fewer is
/// all `*`.
#[must_use]
pub fn mask_str(s: &str) -> Masked<'_> {
    Masked(s)
}

impl fmt::Display for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.0.chars().count();
        for (i, c) in self.0.chars().enumerate() {
            let shown = n > 4 && (i < 3 || i + 1 == n);
            if shown {
                fmt::Write::write_char(f, c)?;
            } else {
                f.write_str("*")?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Masked<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// A monotonic clock the embedder hands the service, so that latencies can be measured
/// without pin-core reading a clock itself: `Stopwatch::new(std::time::Instant::now)`.
#[derive(Clone, Copy)]
pub struct Stopwatch(fn() -> Instant);

impl Stopwatch {
    /// A stopwatch reading `clock` (normally `std::time::Instant::now`).
    #[must_use]
    pub const fn new(clock: fn() -> Instant) -> Self {
        Self(clock)
    }

    /// The current reading.
    #[must_use]
    pub fn read(&self) -> Instant {
        (self.0)()
    }
}

impl fmt::Debug for Stopwatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Stopwatch")
    }
}

impl PartialEq for Stopwatch {
    fn eq(&self, other: &Self) -> bool {
        std::ptr::fn_addr_eq(self.0, other.0)
    }
}

/// The stable name of a channel in labels and fields.
#[must_use]
pub fn channel_name(c: Channel) -> &'static str {
    match c {
        Channel::Email => "email",
        Channel::Sms => "sms",
        Channel::Pec => "pec",
        Channel::Phone => "phone",
        Channel::Post => "post",
        Channel::SealedEnvelope => "sealed_envelope",
    }
}

fn state_name(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Pending => "deferred",
        DeliveryState::Sent => "sent",
        DeliveryState::Confirmed => "confirmed",
        DeliveryState::Failed => "failed",
    }
}

fn purpose_name(p: Purpose) -> &'static str {
    match p {
        Purpose::Access { .. } => "access",
        Purpose::Change => "change",
        Purpose::Activate => "activate",
    }
}

/// The stable name of an error kind in labels and fields.
fn error_kind(e: &Error) -> &'static str {
    use crate::error::ErrorKind as K;
    match e.kind() {
        K::Input => "input",
        K::Refused => "refused",
        K::Locked => "locked",
        K::Config => "config",
        K::Storage => "storage",
        K::Retryable => "retryable",
    }
}

thread_local! {
    /// Compare-and-swap retries of the operation running on this thread.
    static RETRIES: Cell<u32> = const { Cell::new(0) };
    /// The earliest `due_at` of the due parts the running delivery worker found.
    static OLDEST_DUE: Cell<Option<DateTime<Utc>>> = const { Cell::new(None) };
}

/// One traced operation: its span (entered), when it started, and the retry count of the
/// operation it interrupts (restored when it ends, so nested operations count apart).
pub(crate) struct Op {
    span: tracing::span::EnteredSpan,
    started: Option<(Stopwatch, Instant)>,
    outer_retries: u32,
}

impl Op {
    fn start(span: tracing::Span, stopwatch: Option<Stopwatch>) -> Self {
        let outer_retries = RETRIES.with(|r| r.replace(0));
        Self {
            span: span.entered(),
            started: stopwatch.map(|s| (s, s.read())),
            outer_retries,
        }
    }

    fn elapsed(&self) -> Option<Duration> {
        self.started
            .map(|(s, at)| s.read().saturating_duration_since(at))
    }

    fn retries(&self) -> u32 {
        RETRIES.with(Cell::get)
    }

    /// The span of a verify.
    pub(crate) fn verify(tax: &TaxCode, purpose: Purpose, stopwatch: Option<Stopwatch>) -> Self {
        let span = tracing::info_span!(
            "pin.verify",
            purpose = purpose_name(purpose),
            subject = %mask(tax),
            serial = tracing::field::Empty,
        );
        Self::start(span, stopwatch)
    }

    /// Ends a verify: the outcome event and metrics.
    pub(crate) fn verified(self, result: Result<&VerifyOutcome, &Error>) {
        let elapsed = self.elapsed();
        let outcome = match result {
            Ok(o) => o.name(),
            Err(_) => "error",
        };
        let retries = self.retries();
        let ms = elapsed.map(|d| d.as_secs_f64() * 1e3);
        match result {
            Ok(_) => tracing::info!(outcome, retries, duration_ms = ms, "verify done"),
            Err(e) => tracing::info!(
                outcome,
                error_kind = error_kind(e),
                error = %e,
                retries,
                duration_ms = ms,
                "verify done"
            ),
        }
        metrics::counter!(VERIFY_TOTAL, "outcome" => outcome).increment(1);
        if let Some(d) = elapsed {
            metrics::histogram!(VERIFY_DURATION, "outcome" => outcome).record(d.as_secs_f64());
        }
        if matches!(result, Ok(VerifyOutcome::NoPin)) {
            metrics::counter!(NO_PIN_ANSWERS_TOTAL).increment(1);
        }
    }

    /// The span of a command.
    pub(crate) fn execute(
        tax: &TaxCode,
        actor: &crate::Actor,
        command: &crate::command::Command,
        stopwatch: Option<Stopwatch>,
    ) -> Self {
        let span = tracing::info_span!(
            "pin.execute",
            command = command.name(),
            actor = actor.kind(),
            subject = %mask(tax),
            serial = tracing::field::Empty,
        );
        Self::start(span, stopwatch)
    }

    /// Ends a command: the outcome event and metrics, and the inline deliveries.
    pub(crate) fn executed(self, command: &'static str, result: &Result<Executed, Error>) {
        let elapsed = self.elapsed();
        let retries = self.retries();
        let ms = elapsed.map(|d| d.as_secs_f64() * 1e3);
        let outcome = match result {
            Ok(done) => {
                if let Some(serial) = done.subject.credential.as_ref().map(|c| c.serial) {
                    self.span.record("serial", serial);
                }
                tracing::info!(
                    command,
                    outcome = "ok",
                    retries,
                    deliveries = done.deliveries.len(),
                    receipts_saved = done.receipts_saved,
                    duration_ms = ms,
                    "command done"
                );
                for d in &done.deliveries {
                    delivery(d, "inline");
                }
                "ok"
            }
            Err(e) => {
                let kind = error_kind(e);
                tracing::info!(command, outcome = kind, error = %e, retries, duration_ms = ms, "command done");
                if matches!(kind, "refused" | "locked") {
                    metrics::counter!(REJECTIONS_TOTAL, "command" => command).increment(1);
                }
                kind
            }
        };
        metrics::counter!(COMMANDS_TOTAL, "command" => command, "outcome" => outcome).increment(1);
        if let Some(d) = elapsed {
            metrics::histogram!(COMMAND_DURATION, "command" => command).record(d.as_secs_f64());
        }
    }

    /// The span of a delivery worker's run.
    pub(crate) fn deliver_due(limit: usize, stopwatch: Option<Stopwatch>) -> Self {
        OLDEST_DUE.with(|o| o.set(None));
        Self::start(tracing::info_span!("pin.deliver_due", limit), stopwatch)
    }

    /// Ends a worker run: one event per part, a summary, the metrics.
    pub(crate) fn delivered(self, result: &Result<DeliveryRun, Error>, now: DateTime<Utc>) {
        let age = OLDEST_DUE
            .with(Cell::take)
            .and_then(|due| (now - due).to_std().ok())
            .unwrap_or_default()
            .as_secs_f64();
        metrics::gauge!(DELIVERY_OLDEST_DUE_AGE).set(age);
        let run = match result {
            Ok(run) => run,
            Err(e) => {
                tracing::warn!(error = %e, "delivery run failed: the due parts could not be listed");
                return;
            }
        };
        for p in &run.parts {
            let d = &p.delivery;
            let _subject =
                tracing::debug_span!("pin.deliver_subject", subject = %mask(&p.subject)).entered();
            delivery(d, "worker");
        }
        for (tax, error) in &run.errors {
            tracing::warn!(subject = %mask(tax), error = %error, "subject not delivered this run");
        }
        tracing::info!(
            taken = run.parts.len(),
            delivered = run.delivered(),
            deferred = run.deferred(),
            failed = run.failed(),
            errors = run.errors.len(),
            oldest_due_age_s = age,
            duration_ms = self.elapsed().map(|d| d.as_secs_f64() * 1e3),
            "delivery run"
        );
    }
}

impl Drop for Op {
    fn drop(&mut self) {
        let outer = self.outer_retries;
        RETRIES.with(|r| r.set(outer));
    }
}

/// One part handed to its channel (or not): an event and `pin_deliveries_total`.
fn delivery(d: &crate::service::DeliveryReport, via: &'static str) {
    let channel = channel_name(d.channel);
    let result = state_name(d.state);
    let error = d.error.as_deref();
    match d.state {
        DeliveryState::Sent | DeliveryState::Confirmed => tracing::info!(
            serial = d.serial,
            part = d.part,
            of = d.of,
            channel,
            state = result,
            via,
            "part delivered"
        ),
        DeliveryState::Pending => tracing::warn!(
            serial = d.serial,
            part = d.part,
            of = d.of,
            channel,
            state = result,
            via,
            error,
            "part deferred: the channel is unavailable, it stays due"
        ),
        DeliveryState::Failed => tracing::warn!(
            serial = d.serial,
            part = d.part,
            of = d.of,
            channel,
            state = result,
            via,
            error,
            "part given up: recovery is a fresh issue (POL-3)"
        ),
    }
    metrics::counter!(DELIVERIES_TOTAL, "channel" => channel, "result" => result, "via" => via)
        .increment(1);
}

/// A delivery worker looked at `credential`: keeps the oldest due part's `due_at` of the
/// run, for `pin_delivery_oldest_due_age_seconds`.
pub(crate) fn saw_due(credential: &crate::subject::Credential, now: DateTime<Utc>) {
    let due = crate::delivery::due_parts(credential, now)
        .filter_map(|p| p.queued.as_ref().map(|q| q.due_at))
        .min();
    if let Some(due) = due {
        OLDEST_DUE.with(|o| o.set(Some(o.get().map_or(due, |old| old.min(due)))));
    }
}

/// Records the serial of the credential being worked on in the current span.
pub(crate) fn serial(serial: u64) {
    tracing::Span::current().record("serial", serial);
}

/// A compare-and-swap conflict: the operation decides again.
pub(crate) fn conflict(operation: &'static str) {
    let retry = RETRIES.with(|r| {
        let n = r.get().saturating_add(1);
        r.set(n);
        n
    });
    tracing::debug!(
        operation,
        retry,
        "record changed concurrently; deciding again"
    );
    metrics::counter!(CONTENTION_RETRIES_TOTAL, "operation" => operation).increment(1);
}

/// A settlement that failed with a retryable error, tried again.
pub(crate) fn settle_retry(retry: u32, error: &crate::store::StoreError) {
    tracing::warn!(retry, error = %error, "settlement failed; retrying");
    metrics::counter!(SETTLE_RETRIES_TOTAL).increment(1);
}

/// A verify made a lock.
pub(crate) fn locked(serial: Option<u64>) {
    tracing::warn!(serial, "PIN blocked");
    metrics::counter!(LOCKOUTS_TOTAL).increment(1);
}

/// A failure that does not change the answer (`what`: see the metrics table).
pub(crate) fn ignored(what: &'static str, error: &dyn fmt::Display) {
    let message = match what {
        "rehash" => "new hash not made after a match",
        "refresh_save" => "first use or rehash not saved after a match",
        "receipts" => "delivery receipts not recorded",
        "lock_notice" => "lock notice not sent",
        _ => "failure ignored",
    };
    tracing::warn!(what, error = %error, "{message}");
    metrics::counter!(IGNORED_FAILURES_TOTAL, "what" => what).increment(1);
}

/// A new hash made under `key`.
pub(crate) fn hashed(key: crate::secret::KeyId) {
    metrics::counter!(HASHES_TOTAL, "key_id" => key.0.to_string()).increment(1);
}

/// A compare against a stored hash made under `key`.
pub(crate) fn compared_under(key: crate::secret::KeyId) {
    metrics::counter!(VERIFY_BY_KEY_TOTAL, "key_id" => key.0.to_string()).increment(1);
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn mask_keeps_the_first_three_and_the_last_character() {
        let t = TaxCode::parse("RSSMRA85T10A562S").unwrap();
        assert_eq!(mask(&t).to_string(), "RSS************S");
        assert_eq!(format!("{:?}", mask(&t)), "\"RSS************S\"");
        assert_eq!(mask_str("ABCD").to_string(), "****");
        assert_eq!(mask_str("").to_string(), "");
        assert_eq!(mask_str("ABCDE").to_string(), "ABC*E");
    }

    #[test]
    fn every_metric_name_is_in_the_module_docs_table() {
        let docs = include_str!("telemetry.rs");
        for name in ALL_METRICS {
            assert!(
                docs.contains(&format!("| `{name}` |")),
                "{name} is not in the table"
            );
        }
    }

    #[test]
    fn every_metric_name_is_in_the_readme_table() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("## Observability")
            .nth(1)
            .and_then(|s| s.split("\n## ").next())
            .unwrap();
        for name in ALL_METRICS {
            assert!(section.contains(&format!("| `{name}` |")), "{name}");
        }
    }
}
