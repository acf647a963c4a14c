//! Dispatch, and the commands an operator or the system performs through the machine.

use pin_core::Actor;
use pin_core::command::{Command, Enrolment};
use pin_core::contact::{ContactProof, Contacts};
use pin_core::store::Store;
use pin_core::subject::Pending;
use pin_core::tax_code::TaxCode;
use serde_json::{Value, json};

use crate::app::{self, Ctx, Service};
use crate::cli::{AuditCmd, Cli, Cmd, ContactArgs, RequestCmd};
use crate::exit::Failure;
use crate::report::{self, Done};
use crate::{admin, audit_cmd, demo, key_cmd, subject};

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> Result<Done, Failure> {
    let ctx = Ctx::new(&cli.global);
    match cli.command {
        Cmd::Init => admin::init(&ctx),
        Cmd::Policy => admin::policy(),
        Cmd::Outbox { tax_code } => admin::outbox(&ctx, tax_code.as_ref()),
        Cmd::Demo => demo::run(&ctx),
        Cmd::Completions { .. } => Err(Failure::internal("completions are printed by main")),
        Cmd::Hash { format } => admin::hash(&ctx, format.into()),
        Cmd::Audit(a @ AuditCmd::Show { .. }) => admin::audit(&ctx, &a),
        Cmd::Audit(a) => audit_cmd::run(&ctx, &a),
        Cmd::Key(k) => key_cmd::run(&ctx, &k),
        command => {
            let store = app::open_store_for(&ctx, command.access())?;
            let svc = app::service(&ctx, store)?;
            with_service(&ctx, &svc, command)
        }
    }
}

/// The commands that need the service.
fn with_service<S: Store>(ctx: &Ctx, svc: &Service<S>, command: Cmd) -> Result<Done, Failure> {
    let exec = |name: &'static str, tax: &TaxCode, actor: &Actor, cmd: Command| {
        let done = svc.execute(tax, actor, &cmd, ctx.now)?;
        Ok(report::executed(name, ctx, actor, &done))
    };
    match command {
        Cmd::Enrol {
            tax_code,
            role,
            contacts,
            cns,
            enrolled_on,
            actor,
        } => {
            let e = Enrolment {
                role: role.into(),
                contacts: contacts_of(&contacts),
                cns_holder: cns,
                enrolled_on,
            };
            exec("enrol", &tax_code, &actor, Command::Enrol(e))
        }
        Cmd::Identify {
            tax_code,
            contacts,
            actor,
        } => exec(
            "identify",
            &tax_code,
            &actor,
            Command::Identify {
                contacts: contacts_of(&contacts),
            },
        ),
        Cmd::Request(RequestCmd::Branch {
            tax_code,
            document,
            on_behalf,
            actor,
        }) => exec(
            "request branch",
            &tax_code,
            &actor,
            Command::BranchRequest {
                identity_document: document.into(),
                on_behalf: on_behalf.map(Into::into),
            },
        ),
        Cmd::Request(RequestCmd::Web {
            tax_code,
            address_check,
            actor,
        }) => exec(
            "request web",
            &tax_code,
            &actor,
            Command::WebRequest {
                address: address_check.into(),
            },
        ),
        Cmd::Request(RequestCmd::ContactCentre {
            tax_code,
            archives,
            actor,
        }) => exec(
            "request contact-centre",
            &tax_code,
            &actor,
            Command::ContactCentreRequest {
                archives: archives.into(),
            },
        ),
        Cmd::Outbound {
            tax_code,
            result,
            actor,
        } => exec(
            "outbound",
            &tax_code,
            &actor,
            Command::OutboundVerification {
                result: result.into(),
            },
        ),
        Cmd::Queue { actor } => queue(svc, &actor),
        Cmd::Deliver {
            watch,
            interval,
            limit,
        } => deliver(ctx, svc, watch, interval, limit),
        Cmd::PreAssign { tax_code, actor } => {
            exec("pre-assign", &tax_code, &actor, Command::PreAssign)
        }
        Cmd::Convert {
            tax_code,
            document,
            actor,
        } => exec(
            "convert",
            &tax_code,
            &actor,
            Command::Convert {
                document: document.into(),
            },
        ),
        Cmd::Reset {
            tax_code,
            email,
            mobile,
            pec,
            actor,
        } => {
            let proofs: Vec<ContactProof> = [
                email.map(ContactProof::Email),
                mobile.map(ContactProof::Mobile),
                pec.map(ContactProof::Pec),
            ]
            .into_iter()
            .flatten()
            .collect();
            if proofs.len() < 2 {
                return Err(Failure::input(
                    "a reset needs two contacts registered at first registration: give two of --email, --mobile, --pec (INPS-14)",
                ));
            }
            exec("reset", &tax_code, &actor, Command::Reset { proofs })
        }
        Cmd::Resend { tax_code, actor } => exec("resend", &tax_code, &actor, Command::Resend),
        Cmd::Receipt {
            tax_code,
            serial,
            part,
            channel,
            state,
            actor,
        } => exec(
            "receipt",
            &tax_code,
            &actor,
            Command::Receipt {
                serial,
                part,
                channel,
                state: state.into(),
            },
        ),
        Cmd::Contacts {
            tax_code,
            contacts,
            remove,
            actor,
        } => subject::contacts(ctx, svc, &tax_code, &contacts, &remove, &actor),
        Cmd::Verify {
            tax_code,
            level,
            actor,
            source,
            device_token,
            challenge_passed,
        } => {
            let source = pin_core::population::Source {
                network: source,
                device: device_token,
                challenge_passed,
            };
            subject::verify(ctx, svc, &tax_code, level.into(), &actor, &source)
        }
        Cmd::Change {
            tax_code,
            generate,
            actor,
        } => subject::change(ctx, svc, &tax_code, generate, &actor),
        Cmd::Activate {
            tax_code,
            health_card,
            actor,
        } => subject::activate(ctx, svc, &tax_code, health_card.into(), &actor),
        Cmd::Status { tax_code: None, .. } => {
            Ok(report::population(&svc.population_report(10, ctx.now)?))
        }
        Cmd::Status {
            tax_code: Some(tax_code),
            ..
        } => Ok(report::status(ctx, &svc.status(&tax_code, ctx.now)?)),
        Cmd::Import { file, actor } => admin::import(ctx, svc, &file, &actor),
        Cmd::Init
        | Cmd::Policy
        | Cmd::Outbox { .. }
        | Cmd::Demo
        | Cmd::Completions { .. }
        | Cmd::Hash { .. }
        | Cmd::Audit(_)
        | Cmd::Key(_) => Err(Failure::internal("command dispatched twice")),
    }
}

/// `pin deliver [--watch]`: runs the delivery worker of the library
/// ([`pin_core::service::PinService::deliver_due`]) over the outbox (and SMTP under
/// `--notifier smtp`), after sweeping temporary files a killed process left in the outbox.
fn deliver<S: Store>(
    ctx: &Ctx,
    svc: &Service<S>,
    watch: bool,
    interval: u64,
    limit: u64,
) -> Result<Done, Failure> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let sweep = crate::outbox::FileOutbox::new(ctx.outbox.clone());
    let mut swept = 0;
    loop {
        swept += sweep
            .sweep_temporaries(std::time::Duration::from_secs(600))
            .unwrap_or(0);
        // Under --watch each run acts at the clock's time (unless --now pins it).
        let now = if watch { app::now(ctx) } else { ctx.now };
        let run = svc.deliver_due(now, limit)?;
        if !watch {
            return Ok(report::delivered(ctx, &run, swept));
        }
        if !run.parts.is_empty() || !run.errors.is_empty() || swept > 0 {
            report::print_progress(ctx, &report::delivered(ctx, &run, swept));
            swept = 0;
        }
        std::thread::sleep(std::time::Duration::from_secs(interval));
    }
}

/// `pin queue`: the requests waiting for the outbound call (INPS-6, INPS-7), oldest first,
/// with the contacts masked. Only contact-centre operators work it.
fn queue<S: Store>(svc: &Service<S>, actor: &Actor) -> Result<Done, Failure> {
    if !matches!(actor, Actor::ContactCentre(_)) {
        return Err(Failure::refused(format!(
            "{} may not list the outbound queue: contact-centre operators make the outbound calls (INPS-6, INPS-7; use --as contact-centre:ID)",
            actor.label()
        )));
    }
    let waiting = svc.store().awaiting_outbound()?;
    let mut text = String::new();
    let mut rows = Vec::new();
    for s in &waiting {
        let Pending::OutboundVerification { origin, since } = s.pending else {
            continue;
        };
        let origin = serde_json::to_value(origin).unwrap_or(Value::Null);
        let c = &s.contacts;
        let email = c.email.as_ref().map(|e| e.masked());
        let mobile = c.mobile.as_ref().map(|m| m.masked());
        let pec = c.pec.as_ref().map(|e| e.masked());
        text.push_str(&format!(
            "{}  since {}  via {}  mobile {}  e-mail {}\n",
            s.tax_code.as_str(),
            since.to_rfc3339(),
            origin.as_str().unwrap_or("?"),
            mobile.as_deref().unwrap_or("-"),
            email.as_deref().unwrap_or("-"),
        ));
        rows.push(json!({
            "subject": s.tax_code.as_str(),
            "origin": origin,
            "since": since.to_rfc3339(),
            "email": email,
            "mobile": mobile,
            "pec": pec,
        }));
    }
    if rows.is_empty() {
        text.push_str("No request is waiting for the outbound call.\n");
    }
    Ok(Done::ok(
        "queue",
        json!({ "count": rows.len(), "waiting": rows }),
        text,
    ))
}

/// The contacts given on the command line.
pub(crate) fn contacts_of(c: &ContactArgs) -> Contacts {
    Contacts {
        email: c.email.clone(),
        mobile: c.mobile.clone(),
        pec: c.pec.clone(),
        address: c.address.clone(),
    }
}
