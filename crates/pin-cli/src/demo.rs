//! `pin demo`: NoiPA and INPS lifecycles on a throw-away database, through the library.
//!
//! The demo plays both sides: the operators who run the commands, and the people who read
//! their mailboxes, phones and letters. So it prints the PINs they receive — which the real
//! commands never do.

use std::io::Write as _;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use pin_core::command::{Check, Command, Enrolment};
use pin_core::contact::{Address, Contacts, Email, Mobile};
use pin_core::service::{ChangeOutcome, Executed};
use pin_core::store::Store;
use pin_core::subject::{Level, Role};
use pin_core::tax_code::TaxCode;
use pin_core::{Actor, VerifyOutcome};
use serde_json::json;
use zeroize::Zeroizing;

use crate::app::{self, Ctx, Service};
use crate::exit::Failure;
use crate::key;
use crate::outbox;
use crate::report::{Done, outcome_text};

/// Prints as it goes (or collects, for `--json`).
struct Narrator {
    json: bool,
    steps: usize,
    log: String,
}

impl Narrator {
    fn say(&mut self, s: &str) {
        if self.json {
            self.log.push_str(s);
            self.log.push('\n');
        } else {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "{s}");
            let _ = out.flush();
        }
    }

    fn step(&mut self, title: &str) {
        self.steps += 1;
        let n = self.steps;
        self.say(&format!("\n── {n}. {title}"));
    }
}

struct Demo<'a, S: Store> {
    ctx: &'a Ctx,
    svc: Service<S>,
    base: DateTime<Utc>,
    n: Narrator,
}

fn demo_err(what: &str) -> Failure {
    Failure::internal(format!("demo: {what}"))
}

fn parse<T, E: std::fmt::Display>(r: Result<T, E>) -> Result<T, Failure> {
    r.map_err(|e| demo_err(&e.to_string()))
}

impl<S: Store> Demo<'_, S> {
    fn at(&self, hours: i64) -> DateTime<Utc> {
        self.base + Duration::hours(hours)
    }

    fn stamp(t: DateTime<Utc>) -> String {
        t.format("%Y-%m-%d %H:%M").to_string()
    }

    /// Runs a command and shows what each channel received; returns the secrets delivered.
    fn exec(
        &mut self,
        tax: &TaxCode,
        actor: &Actor,
        cmd: Command,
        hours: i64,
    ) -> Result<Vec<Zeroizing<String>>, Failure> {
        let now = self.at(hours);
        let done = self.svc.execute(tax, actor, &cmd, now)?;
        self.n.say(&format!(
            "   [{}] {} → {}: done",
            Self::stamp(now),
            actor.label(),
            cmd.name()
        ));
        self.show(&done)
    }

    fn show(&mut self, done: &Executed) -> Result<Vec<Zeroizing<String>>, Failure> {
        let mut secrets = Vec::new();
        for d in &done.deliveries {
            let name = outbox::file_name(&done.subject.tax_code, d.serial, d.part, d.of, d.channel);
            let body = Zeroizing::new(
                std::fs::read_to_string(self.ctx.outbox.join(&name))
                    .map_err(|e| demo_err(&format!("cannot read {name}: {e}")))?,
            );
            self.n.say(&format!(
                "   {} received (part {} of {}, outbox/{name}):",
                outbox::channel_name(d.channel),
                d.part,
                d.of
            ));
            for line in body.lines() {
                self.n.say(&format!("   │ {line}"));
            }
            if let Some(s) = outbox::secret_of(&body) {
                secrets.push(s);
            }
        }
        for a in &done.advice {
            self.n
                .say(&format!("   advice: {}", crate::report::snake(a)));
        }
        Ok(secrets)
    }

    /// Verifies and checks the outcome is `expected` (the demo checks itself).
    fn verify(
        &mut self,
        tax: &TaxCode,
        pin: &str,
        level: Level,
        hours: i64,
        expected: &str,
    ) -> Result<(), Failure> {
        let now = self.at(hours);
        let outcome: VerifyOutcome = self.svc.verify(tax, pin, level, now)?;
        self.n.say(&format!(
            "   [{}] verify {pin} (service needs {}): {}",
            Self::stamp(now),
            crate::report::level_name(level),
            outcome_text(&outcome)
        ));
        if outcome.name() == expected {
            Ok(())
        } else {
            Err(demo_err(&format!(
                "expected {expected}, got {}",
                outcome.name()
            )))
        }
    }

    fn refused(
        &mut self,
        tax: &TaxCode,
        actor: &Actor,
        cmd: Command,
        hours: i64,
    ) -> Result<(), Failure> {
        let now = self.at(hours);
        match self.svc.execute(tax, actor, &cmd, now) {
            Ok(_) => Err(demo_err("an action the rules forbid was carried out")),
            Err(e) => {
                self.n.say(&format!(
                    "   [{}] {} → {}: refused — {e}",
                    Self::stamp(now),
                    actor.label(),
                    cmd.name()
                ));
                Ok(())
            }
        }
    }

    fn change(
        &mut self,
        tax: &TaxCode,
        current: &str,
        hours: i64,
    ) -> Result<Zeroizing<String>, Failure> {
        let now = self.at(hours);
        match self.svc.change_pin(tax, current, None, now)? {
            ChangeOutcome::Changed {
                revealed: Some(pin),
            } => {
                let pin = Zeroizing::new(pin.expose_secret().to_owned());
                self.n.say(&format!(
                    "   [{}] change (system-generated): new 8-character PIN shown to the person alone: {}",
                    Self::stamp(now),
                    pin.as_str()
                ));
                Ok(pin)
            }
            ChangeOutcome::Changed { revealed: None } => Err(demo_err("no generated PIN")),
            ChangeOutcome::NotAuthenticated(o) => {
                Err(demo_err(&format!("change refused: {}", o.name())))
            }
        }
    }
}

fn first(secrets: &[Zeroizing<String>]) -> Result<Zeroizing<String>, Failure> {
    secrets
        .first()
        .cloned()
        .ok_or_else(|| demo_err("no PIN was delivered"))
}

/// A wrong PIN of the same shape.
fn wrong(pin: &str, i: u32) -> String {
    let digits: String = format!("{:05}", (i * 7919 + 13) % 100_000);
    if digits == pin {
        format!("{:05}", (i * 7919 + 14) % 100_000)
    } else {
        digits
    }
}

/// `pin demo`.
pub(crate) fn run(outer: &Ctx) -> Result<Done, Failure> {
    let dir = tempfile::Builder::new()
        .prefix("pin-demo-")
        .tempdir()
        .map_err(|e| demo_err(&format!("cannot create a temporary directory: {e}")))?;
    let ctx = Ctx::in_dir(dir.path(), outer.now);
    key::write_new(&ctx.key_file, &*key::random_key()?)?;
    crate::audit_key::write_new(&ctx.audit_key_file, 1)?;
    let store = app::create_store(&ctx)?;
    let svc = app::service(&ctx, store)?;
    let mut d = Demo {
        ctx: &ctx,
        svc,
        base: outer.now,
        n: Narrator {
            json: outer.json,
            steps: 0,
            log: String::new(),
        },
    };
    d.n.say("pin demo — NoiPA and INPS PIN lifecycles, on a throw-away database");
    d.n.say(&format!(
        "   database {}  (deleted at the end)",
        ctx.db.display()
    ));
    d.n.say("   NOTE: this demo plays the people reading their mailboxes, phones and letters,");
    d.n.say("   so it prints the PINs they receive. The real commands never print an issued PIN:");
    d.n.say("   it exists only in the outbox file written for its recipient.");
    walk(&mut d)?;
    let report = d.svc.store().audit_log(None)?;
    d.n.step("The audit log");
    d.n.say(&format!(
        "   {} events recorded (who, what, when, channel, outcome — never a PIN); `pin audit verify` checks their hash chain.",
        report.len()
    ));
    d.n.say("\nDone. Try it for real: `pin init`, then `pin --help`.");
    let json = json!({ "steps": d.n.steps, "audit_events": report.len(), "transcript": d.n.log });
    Ok(Done::ok("demo", json, String::new()))
}

#[allow(clippy::too_many_lines, reason = "one linear story, told step by step")]
fn walk<S: Store>(d: &mut Demo<'_, S>) -> Result<(), Failure> {
    let rid = Actor::Rid("R042".into());
    let support = Actor::Support("S007".into());
    let mario = parse(TaxCode::parse("RSSMRA85T10A562S"))?;
    let anna = parse(TaxCode::parse("BNCGNN70A41H501V"))?;
    let giulia = parse(TaxCode::parse("VRDLCU01M29Z404A"))?;
    let luca = parse(TaxCode::parse("FRRLCU80A01F205N"))?;
    let email = |s: &str| parse(Email::parse(s));
    let mobile = |s: &str| parse(Mobile::parse(s));
    let address = |s: &str| parse(Address::parse(s));

    d.n.step(
        "NoiPA: the RID enrols Mario, a public employee (enrolled 2020), who gives only an e-mail",
    );
    d.n.say("   NOIPA-2: enrolled after 31 March 2014, he gets his 5-digit PIN at once; NOIPA-4: by e-mail.");
    let enrol = Enrolment {
        role: Role::Employee,
        contacts: Contacts {
            email: Some(email("mario.rossi@example.it")?),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: NaiveDate::from_ymd_opt(2020, 9, 1),
    };
    let pin1 = first(&d.exec(&mario, &rid, Command::Enrol(enrol), 0)?)?;
    d.verify(&mario, &pin1, Level::Online, 1, "accepted")?;

    d.n.step("NoiPA: Mario lost his mailbox; the RID identifies him again, with a new e-mail and a mobile");
    d.n.say("   NOIPA-7 and NOIPA-4: a new PIN, by SMS only since a mobile was given; BOTH-1: the old one dies.");
    let contacts = Contacts {
        email: Some(email("m.rossi@newmail.example.it")?),
        mobile: Some(mobile("347 123 4567")?),
        ..Contacts::default()
    };
    let pin2 = first(&d.exec(
        &mario,
        &rid,
        Command::Identify {
            contacts: contacts.clone(),
        },
        24,
    )?)?;
    d.verify(&mario, &pin1, Level::Online, 25, "rejected")?;
    d.verify(&mario, &pin2, Level::Online, 25, "accepted")?;

    d.n.step("NoiPA: someone guesses Mario's PIN — 10 wrong attempts block it (POL-1)");
    for i in 0..10 {
        let w = wrong(&pin2, i);
        d.verify(
            &mario,
            &w,
            Level::Online,
            26,
            if i < 9 { "rejected" } else { "locked" },
        )?;
    }
    d.verify(&mario, &pin2, Level::Online, 26, "locked")?;
    d.n.say(
        "   POL-5: a blocked PIN never works again; the RID identifies Mario and issues a new one.",
    );
    let pin3 = first(&d.exec(&mario, &rid, Command::Identify { contacts }, 27)?)?;
    d.verify(&mario, &pin3, Level::Online, 28, "accepted")?;

    d.n.step("NoiPA: Anna's PIN does not arrive; support re-sends it (NOIPA-5, POL-3)");
    let enrol = Enrolment {
        role: Role::Employee,
        contacts: Contacts {
            email: Some(email("anna.bianchi@example.it")?),
            ..Contacts::default()
        },
        cns_holder: false,
        enrolled_on: NaiveDate::from_ymd_opt(2012, 5, 1),
    };
    d.n.say(
        "   Enrolled in 2012, before the automatic issue: she gets her PIN after identification.",
    );
    d.exec(&anna, &rid, Command::Enrol(enrol), 30)?;
    let contacts = Contacts {
        email: Some(email("anna.bianchi@example.it")?),
        ..Contacts::default()
    };
    let lost = first(&d.exec(&anna, &rid, Command::Identify { contacts }, 31)?)?;
    d.n.say("   (the e-mail is stuck in a spam filter; Anna calls support an hour later)");
    d.refused(&anna, &support, Command::Resend, 32)?;
    d.n.say("   13 hours after identification, support may re-send: a FRESH PIN, the old one stops working.");
    let fresh = first(&d.exec(&anna, &support, Command::Resend, 44)?)?;
    d.verify(&anna, &lost, Level::Online, 45, "rejected")?;
    d.verify(&anna, &fresh, Level::Online, 45, "accepted")?;
    d.n.say("   NOIPA-9: support may not change contacts:");
    let contacts = Contacts {
        email: Some(email("anna@elsewhere.example.it")?),
        ..Contacts::default()
    };
    d.refused(
        &anna,
        &support,
        Command::ChangeContacts {
            contacts,
            authenticated: None,
        },
        46,
    )?;

    d.n.step(
        "INPS: Luca asks on the web; the residence is validated; split delivery 8 + 8 (INPS-6)",
    );
    let enrol = Enrolment {
        role: Role::Citizen,
        contacts: Contacts {
            email: Some(email("luca.ferrari@example.it")?),
            mobile: Some(mobile("+39 333 765 4321")?),
            pec: None,
            address: Some(address("Via Garibaldi 7, 20121 Milano MI")?),
        },
        cns_holder: false,
        enrolled_on: None,
    };
    d.exec(&luca, &Actor::Subject, Command::Enrol(enrol), 48)?;
    let halves = d.exec(
        &luca,
        &Actor::Subject,
        Command::WebRequest {
            address: Check::Passed,
        },
        48,
    )?;
    let whole = Zeroizing::new(halves.iter().map(|h| h.as_str()).collect::<String>());
    d.n.say(&format!(
        "   Luca puts the two halves together: {} (16 characters).",
        whole.as_str()
    ));

    d.n.step("INPS: first access with the 16 characters — they must be replaced by 8 (INPS-3)");
    d.verify(&luca, &whole, Level::Online, 120, "must_change")?;
    let eight = d.change(&luca, &whole, 120)?;
    d.verify(&luca, &eight, Level::Online, 121, "accepted")?;

    d.n.step(
        "INPS: six months later the periodic change is due (INPS-11) — time travel with --now",
    );
    let later = 121 + 24 * 184;
    d.verify(&luca, &eight, Level::Online, later, "expired")?;
    let eight2 = d.change(&luca, &eight, later)?;
    d.verify(&luca, &eight2, Level::Online, later + 1, "accepted")?;

    d.n.step("INPS: a service that needs `dispositivo`; Luca converts his PIN (INPS-1, INPS-9)");
    d.verify(
        &luca,
        &eight2,
        Level::Dispositivo,
        later + 2,
        "insufficient_level",
    )?;
    d.exec(
        &luca,
        &Actor::BranchOperator("RM-01".into()),
        Command::Convert {
            document: Check::Passed,
        },
        later + 3,
    )?;
    d.n.say("   The PIN value did not change; its level did:");
    d.verify(&luca, &eight2, Level::Dispositivo, later + 4, "accepted")?;

    d.n.step("INPS: Giulia calls the contact centre; first half by phone and SMS, second by post (INPS-7)");
    let enrol = Enrolment {
        role: Role::Citizen,
        contacts: Contacts {
            email: Some(email("giulia.verdi@example.it")?),
            mobile: Some(mobile("3391112233")?),
            pec: Some(email("giulia.verdi@pec.example.it")?),
            address: Some(address("Corso Italia 12, 80121 Napoli NA")?),
        },
        cns_holder: false,
        enrolled_on: None,
    };
    let cc = Actor::ContactCentre("CC19".into());
    d.exec(&giulia, &cc, Command::Enrol(enrol), later + 24)?;
    d.exec(
        &giulia,
        &cc,
        Command::ContactCentreRequest {
            archives: Check::Passed,
        },
        later + 24,
    )?;

    d.n.step("INPS: Giulia loses the letter; she resets with two registered contacts (INPS-14)");
    let proofs = vec![
        pin_core::contact::ContactProof::Email(email("giulia.verdi@example.it")?),
        pin_core::contact::ContactProof::Pec(email("giulia.verdi@pec.example.it")?),
    ];
    d.exec(
        &giulia,
        &Actor::Subject,
        Command::Reset { proofs },
        later + 48,
    )?;
    d.n.say("   INPS-10: a delegate may never ask on her behalf:");
    d.refused(
        &giulia,
        &Actor::Delegate("friend".into()),
        Command::WebRequest {
            address: Check::Passed,
        },
        later + 49,
    )?;
    Ok(())
}
