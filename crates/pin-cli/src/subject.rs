//! The commands where the subject types a PIN: verify, change, activate, and contact changes
//! authenticated with the PIN.

use pin_core::command::{Check, Command};
use pin_core::service::ChangeOutcome;
use pin_core::store::Store;
use pin_core::subject::Level;
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, VerifyOutcome};
use serde_json::{Value, json};

use crate::app::{Ctx, Service};
use crate::cli::{ContactArgs, ContactKindArg};
use crate::exit::{Failure, Kind};
use crate::input::PinReader;
use crate::report::{self, Done};

/// Only the subject types their own PIN.
fn require_subject(actor: &Actor, what: &str) -> Result<(), Failure> {
    if *actor == Actor::Subject {
        Ok(())
    } else {
        Err(Failure::refused(format!(
            "{} may not {what}: only the person types their own PIN (use --as subject)",
            actor.label()
        )))
    }
}

/// A PIN that did not authenticate ends the command with the outcome's exit code.
fn not_authenticated(command: &'static str, tax: &TaxCode, outcome: &VerifyOutcome) -> Done {
    let mut json = report::outcome_json(outcome, None);
    if let Value::Object(m) = &mut json {
        m.insert("subject".into(), Value::from(tax.as_str()));
        m.insert("changed".into(), Value::Bool(false));
    }
    Done {
        json,
        text: format!(
            "{tax}: {}; nothing was changed.\n",
            report::outcome_text(outcome)
        ),
        exit: Kind::of_outcome(outcome).or(Some(Kind::NotUsable)),
        command,
    }
}

/// `pin verify`.
pub(crate) fn verify<S: Store>(
    ctx: &Ctx,
    svc: &Service<S>,
    tax: &TaxCode,
    level: Level,
    actor: &Actor,
    source: &pin_core::population::Source,
) -> Result<Done, Failure> {
    require_subject(actor, "verify a PIN")?;
    let pin = PinReader::new().read("PIN")?;
    let verified = svc.verify_from(tax, &pin, level, source, ctx.now)?;
    let outcome = verified.outcome;
    let token = verified.device_token.map(|t| t.encode());
    let remaining = match outcome {
        VerifyOutcome::NoPin => None,
        _ => svc.status(tax, ctx.now).ok().map(|s| s.remaining_attempts),
    };
    let mut json = report::outcome_json(&outcome, remaining);
    if let Value::Object(m) = &mut json {
        m.insert("subject".into(), Value::from(tax.as_str()));
        m.insert(
            "required_level".into(),
            Value::from(report::level_name(level)),
        );
        if let Some(t) = &token {
            m.insert("device_token".into(), Value::from(t.as_str()));
        }
    }
    let mut text = format!("{tax}: {}\n", report::outcome_text(&outcome));
    if let Some(t) = &token {
        text.push_str(&format!(
            "device token (keep it on this device; --device-token): {t}\n"
        ));
    }
    Ok(Done {
        json,
        text,
        exit: Kind::of_outcome(&outcome),
        command: "verify",
    })
}

/// `pin change`.
pub(crate) fn change<S: Store>(
    ctx: &Ctx,
    svc: &Service<S>,
    tax: &TaxCode,
    generate: bool,
    actor: &Actor,
) -> Result<Done, Failure> {
    require_subject(actor, "change a PIN")?;
    // Every subject's current PIN is checked first: a NoiPA PIN has no change (its 5 digits
    // are only ever issued), but refusing before the PIN would tell a NoiPA employee from an
    // INPS citizen or a tax code not on record. A wrong PIN is a guess, counted as one; the
    // right NoiPA PIN is then refused with the way that works (the RID).
    let mut reader = PinReader::new();
    let current = reader.read("Current PIN")?;
    let new = if generate {
        None
    } else {
        Some(reader.read_new("New PIN (8 characters)")?)
    };
    let changed = svc.change_pin(tax, &current, new.as_deref().map(String::as_str), ctx.now);
    if let Err(pin_core::Error::Refused(pin_core::Refusal::NotForProfile {
        profile: "NoiPA",
        ..
    })) = changed
    {
        return Err(Failure::refused(
            "a NoiPA PIN cannot be changed by its holder; the RID issues a new one (pin identify)",
        ));
    }
    match changed? {
        ChangeOutcome::NotAuthenticated(outcome) => Ok(not_authenticated("change", tax, &outcome)),
        ChangeOutcome::Changed { revealed } => {
            let mut json = json!({ "subject": tax.as_str(), "changed": true, "pin_length": 8 });
            let mut text =
                format!("{tax}: PIN changed; use the new 8-character PIN from now on.\n");
            if let (Some(pin), Value::Object(m)) = (&revealed, &mut json) {
                // The subject asked for a generated PIN: shown to them alone, here.
                m.insert("generated_pin".into(), Value::from(pin.expose_secret()));
                text.push_str(&format!(
                    "Your new PIN (shown only now, to you alone): {}\n",
                    pin.expose_secret()
                ));
            }
            Ok(Done::ok("change", json, text))
        }
    }
}

/// `pin activate`.
pub(crate) fn activate<S: Store>(
    ctx: &Ctx,
    svc: &Service<S>,
    tax: &TaxCode,
    health_card: Check,
    actor: &Actor,
) -> Result<Done, Failure> {
    require_subject(actor, "activate a pre-assigned PIN")?;
    if health_card == Check::Failed {
        // The core refuses it before reading anything; do the same before asking for the half.
        return Err(pin_core::Refusal::CheckFailed("health card").into_failure());
    }
    let half = PinReader::new().read("First 8 characters (from the letter)")?;
    match svc.activate(tax, &half, health_card, ctx.now)? {
        Err(outcome) => Ok(not_authenticated("activate", tax, &outcome)),
        Ok(done) => Ok(report::executed("activate", ctx, actor, &done)),
    }
}

/// `pin contacts`.
pub(crate) fn contacts<S: Store>(
    ctx: &Ctx,
    svc: &Service<S>,
    tax: &TaxCode,
    given: &ContactArgs,
    remove: &[ContactKindArg],
    actor: &Actor,
) -> Result<Done, Failure> {
    // The person is not authenticated yet: a tax code not on record goes on to the PIN, as
    // a person on record does; an operator learns that the subject is unknown.
    let status = if *actor == Actor::Subject {
        known(svc.status(tax, ctx.now))?
    } else {
        Some(svc.status(tax, ctx.now)?)
    };
    // The status masks the contacts: the change starts from the full ones on record.
    let mut c = match status {
        Some(_) => svc
            .store()
            .load(tax)
            .map_err(pin_core::Error::Store)?
            .map(|l| l.subject.contacts)
            .unwrap_or_default(),
        None => pin_core::contact::Contacts::default(),
    };
    for kind in remove {
        match kind {
            ContactKindArg::Email => c.email = None,
            ContactKindArg::Mobile => c.mobile = None,
            ContactKindArg::Pec => c.pec = None,
            ContactKindArg::Address => c.address = None,
        }
    }
    let ContactArgs {
        email,
        mobile,
        pec,
        address,
    } = given.clone();
    if email.is_none()
        && mobile.is_none()
        && pec.is_none()
        && address.is_none()
        && remove.is_empty()
    {
        return Err(Failure::input(
            "nothing to change: give --email, --mobile, --pec, --address or --remove",
        ));
    }
    c.email = email.or(c.email);
    c.mobile = mobile.or(c.mobile);
    c.pec = pec.or(c.pec);
    c.address = address.or(c.address);
    if *actor == Actor::Subject {
        let pin = PinReader::new().read("PIN")?;
        return match svc.change_contacts_with_pin(tax, &pin, c, ctx.now)? {
            Err(outcome) => Ok(not_authenticated("contacts", tax, &outcome)),
            Ok(done) => Ok(report::executed("contacts", ctx, actor, &done)),
        };
    }
    let done = svc.execute(
        tax,
        actor,
        &Command::ChangeContacts {
            contacts: c,
            authenticated: None,
        },
        ctx.now,
    )?;
    Ok(report::executed("contacts", ctx, actor, &done))
}

/// `Ok(None)` for a subject not on record, the status otherwise.
fn known(
    r: Result<pin_core::service::Status, pin_core::Error>,
) -> Result<Option<pin_core::service::Status>, Failure> {
    match r {
        Ok(s) => Ok(Some(s)),
        Err(pin_core::Error::UnknownSubject(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

trait IntoFailure {
    fn into_failure(self) -> Failure;
}

impl IntoFailure for pin_core::Refusal {
    fn into_failure(self) -> Failure {
        Failure::from(pin_core::Error::from(self))
    }
}
