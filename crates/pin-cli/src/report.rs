//! What a command prints: one JSON object, or lines of text.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use pin_core::Actor;
use pin_core::VerifyOutcome;
use pin_core::service::{DeliveryReport, DeliveryRun, Executed, Status};
use pin_core::subject::{Credential, DeliveryState, Level, Pending, Profile, Role, Stage, Subject};
use serde_json::{Value, json};

use crate::app::Ctx;
use crate::exit::Kind;
use crate::outbox::channel_name;

/// A finished command: its output and how the process ends.
#[derive(Debug)]
pub(crate) struct Done {
    /// The JSON object (without `ok` and `command`, added by [`Done::json_text`]).
    pub(crate) json: Value,
    /// The text for people.
    pub(crate) text: String,
    /// A non-success ending that is an outcome, not an error (a rejected PIN).
    pub(crate) exit: Option<Kind>,
    /// The command's name.
    pub(crate) command: &'static str,
}

impl Done {
    pub(crate) fn ok(command: &'static str, json: Value, text: String) -> Self {
        Self {
            json,
            text,
            exit: None,
            command,
        }
    }

    /// The JSON object as printed.
    pub(crate) fn json_text(&self) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("ok".into(), Value::Bool(self.exit.is_none()));
        obj.insert("command".into(), Value::String(self.command.into()));
        if let Value::Object(m) = &self.json {
            obj.extend(m.clone());
        }
        if let Some(k) = self.exit {
            obj.insert("exit_code".into(), Value::from(k.code()));
        }
        Value::Object(obj).to_string()
    }
}

pub(crate) fn snake<T: serde::Serialize>(v: &T) -> String {
    match serde_json::to_value(v) {
        Ok(Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

pub(crate) fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Noipa => "noipa",
        Profile::Inps => "inps",
    }
}

pub(crate) fn level_name(l: Level) -> &'static str {
    match l {
        Level::Online => "online",
        Level::Dispositivo => "dispositivo",
    }
}

pub(crate) fn role_name(r: Role) -> &'static str {
    match r {
        Role::Employee => "employee",
        Role::Citizen => "citizen",
        Role::Intermediary => "intermediary",
    }
}

fn stage_name(s: Stage) -> &'static str {
    match s {
        Stage::AwaitingActivation => "awaiting_activation",
        Stage::MustChange => "must_change",
        Stage::Active => "active",
    }
}

fn state_name(s: DeliveryState) -> &'static str {
    match s {
        DeliveryState::Pending => "pending",
        DeliveryState::Sent => "sent",
        DeliveryState::Confirmed => "confirmed",
        DeliveryState::Failed => "failed",
    }
}

fn time(t: Option<DateTime<Utc>>) -> Value {
    t.map_or(Value::Null, |t| {
        Value::String(t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
    })
}

fn credential_json(c: &Credential) -> Value {
    json!({
        "serial": c.serial,
        "pin_length": c.format.len(),
        "stage": stage_name(c.stage),
        "level": level_name(c.level),
        "origin": snake(&c.origin),
        "issued_at": time(Some(c.issued_at)),
        "changed_at": time(c.changed_at),
        "first_used_at": time(c.first_used_at),
    })
}

fn pending_name(p: &Pending) -> Option<&'static str> {
    match p {
        Pending::None => None,
        Pending::OutboundVerification { .. } => Some("outbound_verification"),
    }
}

/// Whether a delivery of this command did not happen: the channel did not take it (left
/// `pending`) or refused it (`failed`). Nobody holds that part of the PIN.
fn undelivered(d: &DeliveryReport) -> bool {
    matches!(d.state, DeliveryState::Pending | DeliveryState::Failed)
}

/// One delivery, as printed; `file` only for a message that is in the outbox.
fn delivery_json(ctx: &Ctx, subject: &Subject, d: &DeliveryReport) -> Value {
    let file = ctx
        .outbox_file(&subject.tax_code, d.serial, d.part, d.of, d.channel)
        .filter(|_| !undelivered(d));
    json!({
        "serial": d.serial,
        "part": d.part,
        "of": d.of,
        "channel": channel_name(d.channel),
        "state": state_name(d.state),
        "error": d.error,
        "file": file.map(|f| f.display().to_string()),
    })
}

/// The report of a command carried out by the machine.
pub(crate) fn executed(command: &'static str, ctx: &Ctx, actor: &Actor, done: &Executed) -> Done {
    let s = &done.subject;
    let deliveries: Vec<Value> = done
        .deliveries
        .iter()
        .map(|d| delivery_json(ctx, s, d))
        .collect();
    let advice: Vec<String> = done.advice.iter().map(snake).collect();
    let json = json!({
        "subject": s.tax_code.as_str(),
        "profile": profile_name(s.profile()),
        "role": role_name(s.role),
        "actor": actor.label(),
        "credential": s.credential.as_ref().map(credential_json),
        "pending": pending_name(&s.pending),
        "deliveries": deliveries,
        "advice": advice,
    });
    let mut text = format!("{}: {command} done by {}.\n", s.tax_code, actor.label());
    if let Some(c) = &s.credential {
        let _ = writeln!(
            text,
            "  PIN serial {}: {} characters, {}, level {}.",
            c.serial,
            c.format.len(),
            stage_name(c.stage).replace('_', " "),
            level_name(c.level)
        );
    } else {
        text.push_str("  No PIN on record.\n");
    }
    if pending_name(&s.pending).is_some() {
        text.push_str("  The request waits for an outbound contact-centre call (pin outbound).\n");
    }
    for d in &done.deliveries {
        let to = if undelivered(d) {
            "not delivered".to_owned()
        } else {
            ctx.outbox_file(&s.tax_code, d.serial, d.part, d.of, d.channel)
                .map_or_else(
                    || {
                        if ctx.by_webhook(d.channel) {
                            "SMS gateway".to_owned()
                        } else {
                            "SMTP relay".to_owned()
                        }
                    },
                    |f| f.display().to_string(),
                )
        };
        let _ = write!(
            text,
            "  part {} of {} by {}: {} -> {to}",
            d.part,
            d.of,
            channel_name(d.channel),
            state_name(d.state),
        );
        if let Some(e) = &d.error {
            let _ = write!(text, " ({e})");
        }
        text.push('\n');
    }
    for a in &advice {
        let _ = writeln!(text, "  advice: {}", advice_text(a));
    }
    let mut out = Done::ok(command, json, text);
    if done.deliveries.iter().any(undelivered) {
        undelivered_failure(&mut out, done);
    }
    out
}

/// The report of `pin deliver`: each part taken, and what became of it.
pub(crate) fn delivered(ctx: &Ctx, run: &DeliveryRun, swept: usize) -> Done {
    let mut text = String::new();
    let mut parts = Vec::new();
    for p in &run.parts {
        let d = &p.delivery;
        let file = ctx
            .outbox_file(&p.subject, d.serial, d.part, d.of, d.channel)
            .filter(|_| !undelivered(d));
        let _ = write!(
            text,
            "{}: PIN serial {} part {} of {} by {}: {}",
            p.subject,
            d.serial,
            d.part,
            d.of,
            channel_name(d.channel),
            state_name(d.state)
        );
        if let Some(f) = &file {
            let _ = write!(text, " -> {}", f.display());
        }
        if let Some(e) = &d.error {
            let _ = write!(text, " ({e})");
        }
        if p.gave_up {
            let _ = write!(
                text,
                "; failed for good: run `pin resend {}` for a fresh PIN (not counted against the re-send limit, POL-3/POL-4)",
                p.subject
            );
        } else if d.state == DeliveryState::Pending {
            text.push_str("; tried again later");
        }
        text.push('\n');
        parts.push(json!({
            "subject": p.subject.as_str(),
            "serial": d.serial,
            "part": d.part,
            "of": d.of,
            "channel": channel_name(d.channel),
            "state": state_name(d.state),
            "error": d.error,
            "gave_up": p.gave_up,
            "file": file.map(|f| f.display().to_string()),
        }));
    }
    let errors: Vec<Value> = run
        .errors
        .iter()
        .map(|(t, e)| json!({ "subject": t.as_str(), "error": e }))
        .collect();
    for (t, e) in &run.errors {
        let _ = writeln!(text, "{t}: not handled this run, still due: {e}");
    }
    if run.parts.is_empty() && run.errors.is_empty() {
        text.push_str("Nothing is due for delivery.\n");
    }
    if swept > 0 {
        let _ = writeln!(
            text,
            "Removed {swept} temporary file(s) a killed process left in the outbox."
        );
    }
    let mut out = Done::ok(
        "deliver",
        json!({
            "delivered": run.delivered(),
            "deferred": run.deferred(),
            "failed": run.failed(),
            "parts": parts,
            "errors": errors,
            "swept_temporaries": swept,
        }),
        text,
    );
    if run.failed() > 0 || run.deferred() > 0 || !run.errors.is_empty() {
        let kind = Kind::Undelivered;
        let message = format!(
            "{} part(s) delivered, {} to be tried again, {} failed for good, {} subject(s) not handled",
            run.delivered(),
            run.deferred(),
            run.failed(),
            run.errors.len()
        );
        if let Value::Object(m) = &mut out.json {
            m.insert(
                "error".into(),
                json!({
                    "kind": kind.name(),
                    "message": message,
                    "exit_code": kind.code(),
                    "retryable": false,
                }),
            );
        }
        out.exit = Some(kind);
    }
    out
}

/// Prints the report of one run of `pin deliver --watch` as it happens.
pub(crate) fn print_progress(ctx: &Ctx, done: &Done) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = if ctx.json {
        writeln!(out, "{}", done.json_text())
    } else {
        write!(out, "{}", done.text)
    };
    let _ = out.flush();
}

/// Turns the report of a command whose PIN did not reach the person into a failure (exit
/// code 10): the command was saved — the PIN was issued and any earlier one no longer
/// works — but nobody holds the new PIN. The JSON gets `"ok": false`, `"saved": true`,
/// `"delivered": false` and an `error` object as for other failures; the text ends with
/// what to do.
fn undelivered_failure(out: &mut Done, done: &Executed) {
    let s = &done.subject;
    let parts: Vec<String> = done
        .deliveries
        .iter()
        .filter(|d| undelivered(d))
        .map(|d| {
            format!(
                "part {} of {} by {} ({})",
                d.part,
                d.of,
                channel_name(d.channel),
                d.error.as_deref().unwrap_or("not taken")
            )
        })
        .collect();
    let serial = done
        .deliveries
        .first()
        .map_or_else(String::new, |d| format!(" serial {}", d.serial));
    let failed = done
        .deliveries
        .iter()
        .any(|d| d.state == DeliveryState::Failed);
    let message = if failed {
        format!(
            "the PIN{serial} was issued and saved and any earlier PIN no longer works, but a channel refused it for good: {}; run `pin resend {}` for a fresh PIN (POL-3; not counted against the re-send limit)",
            parts.join("; "),
            s.tax_code
        )
    } else {
        format!(
            "the PIN{serial} was issued and saved and any earlier PIN no longer works, but it was not delivered yet: {}; it waits, sealed, in the delivery queue — fix the delivery (is the outbox writable? is the relay up?) and run `pin deliver`, which sends it (no new PIN is needed)",
            parts.join("; ")
        )
    };
    let kind = Kind::Undelivered;
    if let Value::Object(m) = &mut out.json {
        m.insert("saved".into(), Value::Bool(true));
        m.insert("delivered".into(), Value::Bool(false));
        m.insert(
            "error".into(),
            json!({
                "kind": kind.name(),
                "message": crate::exit::one_line(&message),
                "exit_code": kind.code(),
                "retryable": false,
            }),
        );
    }
    let _ = writeln!(out.text, "  NOT DELIVERED: {message}.");
    out.exit = Some(kind);
}

fn advice_text(a: &str) -> &'static str {
    match a {
        "fewer_than_two_reset_contacts" => {
            "fewer than two of mobile, e-mail and PEC are on record: online reset will not be possible (INPS-13)"
        }
        "awaiting_outbound_verification" => {
            "the request waits for an outbound contact-centre call (INPS-6, INPS-7)"
        }
        "awaiting_activation" => {
            "the PIN works only after activation with health-card data (pin activate, INPS-8)"
        }
        _ => "see the documentation",
    }
}

/// The summary state of a subject, as pin-core computed it for the command's time.
pub(crate) fn summary_state(st: &Status, _now: DateTime<Utc>) -> &'static str {
    st.state.name()
}

/// `pin status --population`.
pub(crate) fn population(r: &pin_core::population::PopulationReport) -> Done {
    let json = serde_json::to_value(r).unwrap_or(Value::Null);
    let mode = match r.mode {
        pin_core::population::Mode::Normal => "normal",
        pin_core::population::Mode::Defended => {
            "defended (untrusted sources must pass a challenge)"
        }
    };
    let mut text = format!("population defence: {mode}\n");
    for p in &r.profiles {
        let _ = writeln!(
            text,
            "  {}: {} failed guesses in the window (defended above {}; baseline {:.1}); \
             expected accounts guessed: {:.4}",
            snake(&p.profile),
            p.failures,
            p.threshold,
            p.baseline,
            p.expected_guessed
        );
    }
    if r.top_sources.is_empty() {
        text.push_str("  no network with failed guesses in the window\n");
    } else {
        text.push_str("  top networks by failed guesses:\n");
        for (net, n) in &r.top_sources {
            let _ = writeln!(text, "    {net}: {n}");
        }
    }
    Done::ok("status", json, text)
}

/// `pin status`.
pub(crate) fn status(ctx: &Ctx, st: &Status) -> Done {
    let c = st.credential.as_ref();
    let state = summary_state(st, ctx.now);
    let deliveries: Vec<Value> = c
        .map(|c| {
            c.parts
                .iter()
                .map(|p| {
                    json!({
                        "part": p.index,
                        "of": p.of,
                        "channel": channel_name(p.channel),
                        "state": state_name(p.state),
                        "updated_at": time(Some(p.updated_at)),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let pin_core::service::MaskedContacts {
        email,
        mobile,
        pec,
        address,
        ..
    } = &st.contacts;
    let contacts = json!({
        "email": email,
        "mobile": mobile,
        "pec": pec,
        "address": address,
    });
    let json = json!({
        "subject": st.tax_code.as_str(),
        "profile": profile_name(st.profile()),
        "role": role_name(st.role),
        "state": state,
        "level": c.map(|c| level_name(c.level)),
        "stage": c.map(|c| stage_name(c.stage)),
        "pin_length": c.map(|c| c.format.len()),
        "serial": c.map(|c| c.serial),
        "origin": c.map(|c| snake(&c.origin)),
        "consecutive_failures": st.attempts.failures,
        "remaining_attempts": st.remaining_attempts,
        "locked": st.locked,
        "deliveries": deliveries,
        "rotation_due": time(st.rotation_due),
        "unused_deadline": time(st.unused_deadline),
        "issued_at": time(c.map(|c| c.issued_at)),
        "changed_at": time(c.and_then(|c| c.changed_at)),
        "first_used_at": time(c.and_then(|c| c.first_used_at)),
        "pending": pending_name(&st.pending),
        "cns_holder": st.cns_holder,
        "represented_by": st.represented_by.as_ref().map(snake),
        "contacts": contacts,
    });
    let mut text = format!(
        "{} ({} {}): {}\n",
        st.tax_code,
        profile_name(st.profile())
            .to_uppercase()
            .replace("NOIPA", "NoiPA"),
        role_name(st.role),
        state.replace('_', " ")
    );
    if let Some(c) = c {
        let _ = writeln!(
            text,
            "  PIN serial {}: {} characters, {}, level {}, issued {} ({})",
            c.serial,
            c.format.len(),
            stage_name(c.stage).replace('_', " "),
            level_name(c.level),
            c.issued_at
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            snake(&c.origin).replace('_', " ")
        );
        let _ = writeln!(
            text,
            "  consecutive failures: {} ({} attempts left{})",
            st.attempts.failures,
            st.remaining_attempts,
            if st.locked { ", LOCKED" } else { "" }
        );
        for p in &c.parts {
            let _ = writeln!(
                text,
                "  part {} of {} by {}: {}",
                p.index,
                p.of,
                channel_name(p.channel),
                state_name(p.state)
            );
        }
        if let Some(d) = st.rotation_due {
            let _ = writeln!(
                text,
                "  rotation due: {}",
                d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
        if let Some(d) = st.unused_deadline {
            let _ = writeln!(
                text,
                "  unused PIN stops working at: {}",
                d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            );
        }
    }
    Done::ok("status", json, text)
}

/// The fields of a verify outcome.
pub(crate) fn outcome_json(outcome: &VerifyOutcome, remaining: Option<u32>) -> Value {
    let mut m = serde_json::Map::new();
    m.insert("outcome".into(), Value::String(outcome.name().into()));
    let remaining = match outcome {
        VerifyOutcome::Rejected {
            remaining_attempts, ..
        } => Some(*remaining_attempts),
        VerifyOutcome::Locked => Some(0),
        _ => remaining,
    };
    m.insert(
        "remaining_attempts".into(),
        remaining.map_or(Value::Null, Value::from),
    );
    match outcome {
        VerifyOutcome::Accepted {
            level,
            rotation_due,
            first_use,
        } => {
            m.insert("level".into(), Value::from(level_name(*level)));
            m.insert("rotation_due".into(), time(*rotation_due));
            m.insert("first_use".into(), Value::Bool(*first_use));
        }
        VerifyOutcome::Rejected { final_try, .. } => {
            m.insert("final_try".into(), Value::Bool(*final_try));
        }
        VerifyOutcome::Expired { reason } => {
            m.insert("reason".into(), Value::String(snake(reason)));
        }
        VerifyOutcome::InsufficientLevel { have, need } => {
            m.insert("level".into(), Value::from(level_name(*have)));
            m.insert("required_level".into(), Value::from(level_name(*need)));
        }
        VerifyOutcome::TryLater { retry_after } => {
            let secs = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            m.insert("retry_after_secs".into(), Value::from(secs));
            m.insert("retryable".into(), Value::Bool(true));
        }
        VerifyOutcome::ChallengeRequired => {
            m.insert("challenge_required".into(), Value::Bool(true));
        }
        VerifyOutcome::Locked | VerifyOutcome::MustChange | VerifyOutcome::NoPin => {}
    }
    Value::Object(m)
}

/// A sentence for a verify outcome.
pub(crate) fn outcome_text(outcome: &VerifyOutcome) -> String {
    match outcome {
        VerifyOutcome::Accepted { level, rotation_due, first_use } => {
            let mut s = format!("accepted: the PIN is right (level {})", level_name(*level));
            if *first_use {
                s.push_str("; first use, delivery confirmed");
            }
            if let Some(d) = rotation_due {
                let _ = write!(s, "; change it by {}", d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
            }
            s
        }
        VerifyOutcome::Rejected { remaining_attempts, final_try } => {
            let mut s = format!("rejected: wrong PIN; {remaining_attempts} attempt(s) left");
            if *final_try {
                s.push_str(" — the next wrong PIN blocks it");
            }
            s
        }
        VerifyOutcome::Locked => {
            "locked: the PIN is blocked after too many wrong attempts; reset it or be identified again"
                .to_owned()
        }
        VerifyOutcome::TryLater { retry_after } => format!(
            "try_later: other attempts on this PIN are still being checked; nothing was counted — retry in {} s",
            retry_after.as_secs().max(1)
        ),
        VerifyOutcome::MustChange => {
            "must_change: the PIN is right but must be changed first (pin change)".to_owned()
        }
        VerifyOutcome::Expired { reason } => match snake(reason).as_str() {
            "rotation" => {
                "expired: the PIN is right but the periodic change is due (pin change)".to_owned()
            }
            // The input was not compared: say nothing about it (no oracle for the PIN).
            _ => "expired: this PIN was never used in time and can no longer be used (the PIN \
                  given was not checked); ask for a new one"
                .to_owned(),
        },
        VerifyOutcome::InsufficientLevel { have, need } => format!(
            "insufficient_level: the PIN is right but of level {}; this service needs {} (pin convert)",
            level_name(*have),
            level_name(*need)
        ),
        VerifyOutcome::NoPin => "no_pin: there is no usable PIN for this tax code".to_owned(),
        VerifyOutcome::ChallengeRequired => {
            "challenge_required: the service is defended against a spray of guesses across many \
             people; the PIN was not checked and nothing was counted — pass the challenge and \
             retry with --challenge-passed, or use a trusted device (--device-token)"
                .to_owned()
        }
    }
}
