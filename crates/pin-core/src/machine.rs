//! The decisions: given a subject's record, a command, the actor, `now` and the policy, the
//! next record and the effects.
//!
//! ```text
//!                 Enrol / Import
//!                      │
//!                      ▼
//!   ┌──────────── no credential ◄─────────────────────────────┐
//!   │  WebRequest(address failed) / ContactCentreRequest(no    │ OutboundVerification
//!   │  match) ──► Pending::OutboundVerification ───────────────┘ (failed)
//!   │                      │ OutboundVerification(passed)
//!   ▼                      ▼
//!  issue ─────────► MustChange (INPS 16) ──ChangePin──► Active (INPS 8) ──rotation──► Expired
//!   │  PreAssign ─► AwaitingActivation ──Activate──┘        ▲    │                  │
//!   │                                                        │    └──── ChangePin ◄──┘
//!   └──(NoiPA)────► Active (5 digits) ──────────────────────┘
//!
//!  any credential ──10 consecutive wrong attempts──► blocked (for good)
//!  Identify / Reset / BranchRequest / Resend ──► a new credential; the old one is gone (BOTH-1)
//! ```
//!
//! One rule guards every issue that replaces a PIN (`Step::may_replace`, POL-7): a web or
//! contact-centre request or a pre-assigned letter never takes away a PIN in use, and only a
//! branch issue lowers a `dispositivo` PIN. Reset is open only to a person who once received
//! a PIN through a verifying channel (`Subject::verified_pin`, INPS-16). Security notices
//! ([`Effect::Notify`], POL-6) go to the contacts on record before the command.
//!
//! The machine never hashes inside a storage lock because it never sees one: it runs before
//! the driver's compare-and-swap save. Randomness and hashing reach it through [`Mint`].

use chrono::{DateTime, Utc};

use crate::actor::Actor;
use crate::audit::AuditEvent;
use crate::command::{
    Advice, AttemptsUpdate, Authenticated, Check, CnsAuthenticated, Command, Decision, Delivery,
    Effect, Enrolment, Imported, NewPin, Notice, NoticeKind, Want,
};
use crate::contact::{ContactKind, ContactProof, Contacts};
use crate::delivery::Queued;
use crate::error::{Error, InputError, Refusal};
use crate::format::{self, PinFormat};
use crate::hash::{Hasher, PinHash};
use crate::policy::Policy;
use crate::secret::Pin;
use crate::subject::{
    Attempts, Channel, Credential, Declaration, DeliveryState, Level, Origin, Part, Pending,
    Profile, Representation, Stage, Subject,
};
use crate::tax_code::TaxCode;

/// Randomness and hashing, as the machine needs them.
pub trait Mint {
    /// A fresh, uniformly random, non-trivial PIN.
    fn generate(&mut self, format: PinFormat) -> Pin;
    /// Hashes a PIN with a fresh salt.
    ///
    /// # Errors
    /// [`Error::Hash`] when hashing fails.
    fn seal(&mut self, pin: &Pin) -> Result<PinHash, Error>;
    /// Whether `pin` is the PIN of `hash`.
    ///
    /// # Errors
    /// [`Error::Hash`] when the stored hash cannot be used.
    fn matches(&mut self, pin: &Pin, hash: &PinHash) -> Result<bool, Error>;
    /// Seals a delivery's recipient and characters for the durable queue, with a fresh
    /// random nonce ([`crate::delivery::seal`]).
    fn seal_part(&mut self, delivery: &Delivery) -> crate::delivery::SealedPart;
}

/// The [`Mint`] of a [`Hasher`] and a cryptographic random generator.
#[derive(Debug)]
pub struct Minter<'a, R: ?Sized> {
    hasher: &'a Hasher,
    rng: &'a mut R,
}

impl<'a, R: rand_core::CryptoRng + ?Sized> Minter<'a, R> {
    /// A mint drawing from `rng` and hashing with `hasher`.
    pub fn new(hasher: &'a Hasher, rng: &'a mut R) -> Self {
        Self { hasher, rng }
    }
}

impl<R: rand_core::CryptoRng + ?Sized> Mint for Minter<'_, R> {
    fn generate(&mut self, format: PinFormat) -> Pin {
        format::generate(format, self.rng)
    }
    fn seal(&mut self, pin: &Pin) -> Result<PinHash, Error> {
        Ok(self.hasher.hash(pin, self.rng)?)
    }
    fn matches(&mut self, pin: &Pin, hash: &PinHash) -> Result<bool, Error> {
        Ok(matches!(
            self.hasher.verify(pin, hash)?,
            crate::hash::Verified::Match { .. }
        ))
    }
    fn seal_part(&mut self, delivery: &Delivery) -> crate::delivery::SealedPart {
        let mut nonce = [0u8; 24];
        self.rng.fill_bytes(&mut nonce);
        crate::delivery::seal(self.hasher.keys(), delivery, nonce)
    }
}

/// The inputs every decision needs.
#[derive(Debug)]
pub struct Context<'a> {
    /// The present time.
    pub now: DateTime<Utc>,
    /// The policy.
    pub policy: &'a Policy,
}

/// Decides `command` by `actor` on the subject `tax_code`, whose record is `current`
/// (`None` when not on record) and whose attempt counter is `attempts`.
///
/// # Errors
/// [`Error::Input`] for malformed input, [`Error::Refused`] when the rules forbid the
/// action, [`Error::UnknownSubject`] / [`Error::SubjectExists`], [`Error::Hash`] when
/// hashing fails. On error nothing is to be saved.
pub fn decide(
    tax_code: &TaxCode,
    current: Option<&Subject>,
    attempts: &Attempts,
    actor: &Actor,
    command: &Command,
    ctx: &Context<'_>,
    mint: &mut dyn Mint,
) -> Result<Decision, Error> {
    if let Actor::Delegate(_) = actor {
        return Err(Refusal::Delegate.into());
    }
    // INPS-15: a representative asks at a branch, where the role and the self-declaration
    // are recorded; never on the web, by reset, or through the contact centre.
    if let Actor::Representative(_) = actor
        && matches!(
            command,
            Command::WebRequest { .. }
                | Command::Reset { .. }
                | Command::ContactCentreRequest { .. }
                | Command::Resend
        )
    {
        return Err(refuse_actor(
            actor,
            command.name(),
            "INPS-15: requests on behalf of another person are made at a branch, with the self-declaration of the role",
        ));
    }
    let name = command.name();
    match (command, current) {
        (Command::Enrol(e), None) => enrol(tax_code, e.clone(), actor, ctx, mint),
        (Command::Import(i), None) => import(tax_code, i.clone(), actor, ctx),
        (Command::Enrol(_) | Command::Import(_), Some(_)) => {
            Err(Error::SubjectExists(tax_code.clone()))
        }
        (_, None) => Err(unknown_subject(tax_code, actor, command)),
        (command, Some(subject)) => {
            let mut step = Step::new(subject, *attempts, actor, ctx, name);
            match command {
                Command::Enrol(_) | Command::Import(_) => {
                    return Err(Error::SubjectExists(tax_code.clone()));
                }
                Command::Identify { contacts } => step.identify(contacts.clone(), mint)?,
                Command::Resend => step.resend(attempts, mint)?,
                Command::ChangeContacts {
                    contacts,
                    authenticated,
                } => {
                    step.change_contacts(contacts.clone(), authenticated.as_ref())?;
                }
                Command::ChangeContactsWithCns { contacts, cns } => {
                    step.change_contacts_with_cns(contacts.clone(), cns)?;
                }
                Command::BranchRequest {
                    identity_document,
                    on_behalf,
                } => {
                    step.branch(*identity_document, *on_behalf, mint)?;
                }
                Command::WebRequest { address } => step.web(*address, mint)?,
                Command::ContactCentreRequest { archives } => {
                    step.contact_centre(*archives, mint)?
                }
                Command::OutboundVerification { result } => step.outbound(*result, mint)?,
                Command::PreAssign => step.pre_assign(mint)?,
                Command::Activate {
                    authenticated,
                    first_half,
                    health_card,
                } => {
                    step.activate(authenticated, first_half, *health_card, mint)?;
                }
                Command::Convert { document } => step.convert(*document)?,
                Command::Reset { proofs } => step.reset(proofs, mint)?,
                Command::ChangePin { authenticated, new } => {
                    step.change_pin(authenticated, new, attempts, mint)?;
                }
                Command::Receipt {
                    serial,
                    part,
                    channel,
                    state,
                } => {
                    step.receipt(*serial, *part, *channel, *state)?;
                }
            }
            Ok(step.finish())
        }
    }
}

/// The answer to a command for a tax code not on record. The commands a person starts
/// without authenticating answer what a person on record gets when their proof fails, so
/// that the answer does not tell whether someone is on record: a reset gets
/// [`Refusal::ContactsDoNotMatch`], a web request [`Refusal::RequestNotPossible`] (what a
/// registered person with a PIN in use or a request waiting gets), a re-send
/// [`Refusal::NoPin`] (what a registered person with no PIN gets). Operators and the system
/// learn that the subject is unknown.
fn unknown_subject(tax_code: &TaxCode, actor: &Actor, command: &Command) -> Error {
    if *actor == Actor::Subject {
        match command {
            Command::Reset { .. } => return Refusal::ContactsDoNotMatch.into(),
            Command::WebRequest { .. } => return Refusal::RequestNotPossible.into(),
            Command::Resend => return Refusal::NoPin.into(),
            _ => {}
        }
    }
    Error::UnknownSubject(tax_code.clone())
}

fn refuse_actor(actor: &Actor, action: &'static str, rule: &'static str) -> Error {
    Refusal::Actor {
        actor: actor.kind(),
        action,
        rule,
    }
    .into()
}

fn profile_name(p: Profile) -> &'static str {
    match p {
        Profile::Noipa => "NoiPA",
        Profile::Inps => "INPS",
    }
}

fn audit(
    subject: &TaxCode,
    actor: &Actor,
    now: DateTime<Utc>,
    action: &str,
    outcome: &str,
) -> AuditEvent {
    AuditEvent {
        at: now,
        subject: subject.clone(),
        actor: actor.label(),
        action: action.to_owned(),
        outcome: outcome.to_owned(),
        serial: None,
        channels: Vec::new(),
        detail: String::new(),
    }
}

fn check_noipa_contacts(contacts: &Contacts) -> Result<(), Error> {
    if contacts.email.is_none() {
        return Err(InputError::MissingContact {
            what: "an e-mail address",
            why: "NoiPA sends PINs and security notices there (NOIPA-3, NOIPA-8)",
        }
        .into());
    }
    Ok(())
}

fn enrol(
    tax_code: &TaxCode,
    e: Enrolment,
    actor: &Actor,
    ctx: &Context<'_>,
    mint: &mut dyn Mint,
) -> Result<Decision, Error> {
    let profile = e.role.profile();
    let allowed = match profile {
        Profile::Noipa => {
            matches!(
                actor,
                Actor::Rid(_) | Actor::EnrolmentOperator(_) | Actor::System
            )
        }
        Profile::Inps => matches!(
            actor,
            Actor::Subject
                | Actor::BranchOperator(_)
                | Actor::ContactCentre(_)
                | Actor::Representative(_)
                | Actor::System
        ),
    };
    if !allowed {
        return Err(refuse_actor(actor, "enrol", "NOIPA-3 / INPS-13"));
    }
    if let Actor::Representative(r) = actor {
        check_representation(tax_code, *r, ctx.now)?;
    }
    if profile == Profile::Noipa {
        check_noipa_contacts(&e.contacts)?;
        if e.enrolled_on.is_none() {
            return Err(InputError::Role {
                role: "employee",
                why: "a NoiPA enrolment needs the date of enrolment (NOIPA-2)",
            }
            .into());
        }
    } else if e.cns_holder || e.enrolled_on.is_some() {
        return Err(InputError::Role {
            role: "citizen/intermediary",
            why: "CNS and enrolment date are NoiPA data",
        }
        .into());
    }
    let registered = Contacts {
        address: None,
        ..e.contacts.clone()
    };
    let subject = Subject {
        tax_code: tax_code.clone(),
        role: e.role,
        contacts: e.contacts,
        registered,
        cns_holder: e.cns_holder,
        enrolled_on: e.enrolled_on,
        identified_at: None,
        // INPS-15: a representation is recorded only at a branch, with the declaration.
        represented_by: None,
        declaration: None,
        verified_pin: false,
        pending: Pending::None,
        credential: None,
        last_serial: 0,
        resends: Vec::new(),
        created_at: ctx.now,
    };
    let mut step = Step::new(&subject, Attempts::default(), actor, ctx, "enrol");
    step.outcome = "enrolled";
    if profile == Profile::Inps && step.next.contacts.reset_contact_count() < 2 {
        step.effects
            .push(Effect::Advise(Advice::FewerThanTwoResetContacts));
    }
    // NOIPA-2: people enrolled after 31 March 2014 get their PIN at enrolment; NOIPA-10:
    // CNS holders need none.
    if profile == Profile::Noipa
        && !subject.cns_holder
        && subject
            .enrolled_on
            .is_some_and(|d| d >= ctx.policy.noipa_auto_issue_from())
    {
        step.issue_noipa(Origin::Enrolment, mint)?;
        step.outcome = "enrolled_and_issued";
    }
    Ok(step.finish())
}

fn import(
    tax_code: &TaxCode,
    i: Imported,
    actor: &Actor,
    ctx: &Context<'_>,
) -> Result<Decision, Error> {
    if *actor != Actor::System {
        return Err(refuse_actor(
            actor,
            "import subjects",
            "operators enrol, the system imports",
        ));
    }
    let consistent = matches!(
        (i.role.profile(), i.format, i.stage),
        (Profile::Noipa, PinFormat::NoipaDigits5, Stage::Active)
            | (
                Profile::Inps,
                PinFormat::InpsIssued16,
                Stage::MustChange | Stage::Active
            )
            | (Profile::Inps, PinFormat::InpsInUse8, Stage::Active)
    );
    if !consistent {
        return Err(InputError::Import("format and stage do not fit the role's profile").into());
    }
    if i.role.profile() == Profile::Noipa {
        check_noipa_contacts(&i.contacts)?;
    }
    let credential = Credential {
        serial: 1,
        hash: i.hash,
        format: i.format,
        level: if i.role.profile() == Profile::Noipa {
            Level::Online
        } else {
            i.level
        },
        stage: i.stage,
        origin: Origin::Import,
        issued_at: i.issued_at,
        changed_at: i.changed_at,
        // A PIN imported in stage Active is in use (INPS-4) even when the earlier system
        // kept no date of change: it must never expire as an unused initial PIN.
        first_used_at: match i.stage {
            Stage::Active => i.changed_at.or(Some(i.issued_at)),
            Stage::MustChange | Stage::AwaitingActivation => i.changed_at,
        },
        parts: Vec::new(),
    };
    let registered = Contacts {
        address: None,
        ..i.contacts.clone()
    };
    let subject = Subject {
        tax_code: tax_code.clone(),
        role: i.role,
        contacts: i.contacts,
        registered,
        cns_holder: false,
        enrolled_on: None,
        identified_at: None,
        represented_by: None,
        declaration: None,
        // INPS-16: a PIN brought over from the earlier system was issued by its channels.
        verified_pin: true,
        pending: Pending::None,
        credential: Some(credential),
        last_serial: 1,
        resends: Vec::new(),
        created_at: ctx.now,
    };
    let mut ev = audit(tax_code, actor, ctx.now, "import", "imported");
    ev.serial = Some(1);
    Ok(Decision {
        next: subject,
        attempts: AttemptsUpdate::Fresh,
        audit: vec![ev],
        effects: vec![],
    })
}

fn check_representation(
    tax_code: &TaxCode,
    r: Representation,
    now: DateTime<Utc>,
) -> Result<(), Error> {
    if r == Representation::Parent && !tax_code.is_minor(now.date_naive()) {
        return Err(Refusal::ParentOfAdult.into());
    }
    Ok(())
}

/// A decision under construction for an existing subject.
struct Step<'a> {
    actor: &'a Actor,
    /// The store's attempt counter when the record was loaded.
    counter: Attempts,
    ctx: &'a Context<'a>,
    action: &'static str,
    next: Subject,
    attempts: AttemptsUpdate,
    effects: Vec<Effect>,
    outcome: &'static str,
    channels: Vec<Channel>,
    detail: String,
    /// The contacts on record before this command: security notices go there (POL-6).
    before: Contacts,
}

/// How the parts of a new PIN travel.
enum Route {
    /// The whole PIN on one channel.
    Whole(Channel),
    /// The whole PIN on each of these channels (NOIPA-4 with e-mail as well as SMS).
    Copies(Vec<Channel>),
    /// First half on these channels, second half on that one.
    Halves(Vec<Channel>, Channel),
}

impl<'a> Step<'a> {
    fn new(
        subject: &Subject,
        counter: Attempts,
        actor: &'a Actor,
        ctx: &'a Context<'a>,
        action: &'static str,
    ) -> Self {
        Self {
            actor,
            counter,
            ctx,
            action,
            next: subject.clone(),
            attempts: AttemptsUpdate::Keep,
            effects: Vec::new(),
            outcome: "done",
            channels: Vec::new(),
            detail: String::new(),
            before: subject.contacts.clone(),
        }
    }

    /// Queues a security notice of `kind` to every contact on record before this command
    /// (POL-6).
    fn notify(&mut self, kind: NoticeKind) {
        let notices = Notice::to_contacts(&self.next.tax_code, &self.before, kind, self.now());
        self.effects.extend(notices.into_iter().map(Effect::Notify));
    }

    /// POL-7, the one rule for every issue that replaces a PIN: a request without
    /// identification in person (web, contact centre, pre-assigned letter — `origin`) never
    /// takes away a PIN in use (used at least once and not blocked), and nothing but a
    /// branch issue lowers the level of a `dispositivo` PIN (conversion, INPS-9, only raises
    /// it). Checked when such a request is accepted, and again when it issues.
    fn may_replace(&self, origin: Origin, level: Level) -> Result<(), Error> {
        let Some(c) = self.next.credential.as_ref() else {
            return Ok(());
        };
        let unauthenticated = matches!(
            origin,
            Origin::Web | Origin::ContactCentre | Origin::PreAssigned
        );
        let blocked = self.counter.serial == c.serial
            && self
                .counter
                .is_locked(self.ctx.policy.lockout(self.profile()));
        let in_use = (c.first_used_at.is_some() || c.changed_at.is_some()) && !blocked;
        if (unauthenticated && in_use) || (c.level > level && origin != Origin::Branch) {
            return Err(Refusal::RequestNotPossible.into());
        }
        Ok(())
    }

    fn finish(self) -> Decision {
        let mut ev = audit(
            &self.next.tax_code,
            self.actor,
            self.ctx.now,
            self.action,
            self.outcome,
        );
        ev.serial = self.next.credential.as_ref().map(|c| c.serial);
        ev.channels = self.channels;
        ev.detail = self.detail;
        Decision {
            next: self.next,
            attempts: self.attempts,
            audit: vec![ev],
            effects: self.effects,
        }
    }

    fn profile(&self) -> Profile {
        self.next.profile()
    }

    fn require_profile(&self, profile: Profile) -> Result<(), Error> {
        if self.profile() == profile {
            Ok(())
        } else {
            Err(Refusal::NotForProfile {
                action: self.action,
                profile: profile_name(self.profile()),
            }
            .into())
        }
    }

    fn require_actor(&self, ok: bool, rule: &'static str) -> Result<(), Error> {
        if ok {
            Ok(())
        } else {
            Err(refuse_actor(self.actor, self.action, rule))
        }
    }

    fn now(&self) -> DateTime<Utc> {
        self.ctx.now
    }

    fn recipient(&self, channel: Channel) -> Result<String, Error> {
        let c = &self.next.contacts;
        let missing = |what| InputError::MissingContact {
            what,
            why: "the PIN is sent there",
        };
        Ok(match channel {
            Channel::Email => c
                .email
                .as_ref()
                .ok_or(missing("an e-mail address"))?
                .as_str()
                .to_owned(),
            Channel::Pec => c
                .pec
                .as_ref()
                .ok_or(missing("a PEC address"))?
                .as_str()
                .to_owned(),
            Channel::Sms => c
                .mobile
                .as_ref()
                .ok_or(missing("a mobile number"))?
                .as_str()
                .to_owned(),
            // INPS-7: told by the operator on the call in progress; the mobile number is
            // noted when on record, but none is needed (the first half is also sent by SMS
            // or e-mail).
            Channel::Phone => c
                .mobile
                .as_ref()
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            Channel::Post => c
                .address
                .as_ref()
                .ok_or(missing("a residence address"))?
                .as_str()
                .to_owned(),
            Channel::SealedEnvelope => String::new(),
        })
    }

    /// The digital channel for the first half of an INPS PIN: SMS when a mobile is on
    /// record, else e-mail, else PEC (INPS-6).
    fn first_half_channel(&self) -> Result<Channel, Error> {
        let c = &self.next.contacts;
        if c.mobile.is_some() {
            Ok(Channel::Sms)
        } else if c.email.is_some() {
            Ok(Channel::Email)
        } else if c.pec.is_some() {
            Ok(Channel::Pec)
        } else {
            Err(InputError::MissingContact {
                what: "a mobile number, e-mail or PEC",
                why: "the first half of the PIN goes there (INPS-6)",
            }
            .into())
        }
    }

    /// Issues a new credential: generates, hashes, routes the parts. Every earlier PIN is
    /// replaced at once (BOTH-1).
    #[allow(clippy::too_many_arguments)]
    fn issue(
        &mut self,
        origin: Origin,
        format: PinFormat,
        level: Level,
        stage: Stage,
        route: Route,
        attempts: AttemptsUpdate,
        mint: &mut dyn Mint,
    ) -> Result<(), Error> {
        self.may_replace(origin, level)?;
        // Check every recipient before any work, so a missing contact changes nothing.
        let channels: Vec<Channel> = match &route {
            Route::Whole(c) => vec![*c],
            Route::Copies(cs) => cs.clone(),
            Route::Halves(first, second) => first.iter().copied().chain([*second]).collect(),
        };
        let recipients = channels
            .iter()
            .map(|c| self.recipient(*c))
            .collect::<Result<Vec<_>, _>>()?;
        let pin = mint.generate(format);
        let hash = mint.seal(&pin)?;
        let serial = self.next.last_serial.saturating_add(1);
        let now = self.now();
        let mut parts = Vec::new();
        let mut secrets: Vec<(u8, u8, Pin)> = Vec::new();
        // POL-6: the person learns of a reset, or of a PIN issued at someone else's request,
        // on the contacts on record before it (the first PIN at enrolment is no news).
        let notice = match (origin, self.actor) {
            (Origin::Reset, _) => Some(NoticeKind::PinReset),
            (Origin::Enrolment, _) | (_, Actor::Subject | Actor::System) => None,
            (_, actor) => Some(NoticeKind::PinIssuedByOther { by: actor.kind() }),
        };
        if let Some(kind) = notice {
            self.notify(kind);
        }
        match &route {
            Route::Whole(_) => secrets.push((1, 1, pin)),
            Route::Copies(cs) => {
                for _ in cs {
                    secrets.push((1, 1, pin.duplicate()));
                }
            }
            Route::Halves(first, _) => {
                let (a, b) = format::split_halves(&pin);
                for _ in first {
                    secrets.push((1, 2, a.duplicate()));
                }
                secrets.push((2, 2, b));
            }
        }
        for ((part, of, secret), (channel, recipient)) in secrets
            .into_iter()
            .zip(channels.iter().copied().zip(recipients))
        {
            let delivery = Delivery {
                subject: self.next.tax_code.clone(),
                serial,
                part,
                of,
                channel,
                recipient,
                secret,
                origin,
            };
            parts.push(Part {
                index: part,
                of,
                channel,
                state: DeliveryState::Pending,
                updated_at: now,
                queued: Some(Queued {
                    sealed: mint.seal_part(&delivery),
                    tries: 0,
                    due_at: now,
                }),
            });
            self.effects.push(Effect::Deliver(delivery));
        }
        self.next.credential = Some(Credential {
            serial,
            hash,
            format,
            level,
            stage,
            origin,
            issued_at: now,
            changed_at: None,
            first_used_at: None,
            parts,
        });
        self.next.last_serial = serial;
        self.next.pending = Pending::None;
        // INPS-16: these channels verified the person (a reset or re-send keeps the fact).
        if matches!(
            origin,
            Origin::Branch
                | Origin::Web
                | Origin::ContactCentre
                | Origin::Enrolment
                | Origin::Identification
        ) {
            self.next.verified_pin = true;
        }
        self.attempts = attempts;
        self.channels = channels;
        self.outcome = "issued";
        self.detail = format!("origin={origin:?}").to_lowercase();
        Ok(())
    }

    /// NoiPA issue: 5 digits, by SMS only when a mobile is on record, else by e-mail
    /// (NOIPA-4).
    fn issue_noipa(&mut self, origin: Origin, mint: &mut dyn Mint) -> Result<(), Error> {
        let c = &self.next.contacts;
        let route = if c.mobile.is_none() {
            Route::Whole(Channel::Email)
        } else if self.ctx.policy.noipa_email_with_sms() && c.email.is_some() {
            Route::Copies(vec![Channel::Sms, Channel::Email])
        } else {
            Route::Whole(Channel::Sms)
        };
        let attempts = if origin == Origin::Resend {
            AttemptsUpdate::CarryOver
        } else {
            AttemptsUpdate::Fresh
        };
        self.issue(
            origin,
            PinFormat::NoipaDigits5,
            Level::Online,
            Stage::Active,
            route,
            attempts,
            mint,
        )
    }

    /// INPS split issue: first half by SMS/e-mail (and by phone at the contact centre),
    /// second half by post (INPS-6, INPS-7).
    fn issue_inps_split(&mut self, origin: Origin, mint: &mut dyn Mint) -> Result<(), Error> {
        let digital = self.first_half_channel()?;
        let first = if origin == Origin::ContactCentre {
            vec![Channel::Phone, digital]
        } else {
            vec![digital]
        };
        self.issue(
            origin,
            PinFormat::InpsIssued16,
            Level::Online,
            Stage::MustChange,
            Route::Halves(first, Channel::Post),
            AttemptsUpdate::Fresh,
            mint,
        )
    }

    fn identify(&mut self, contacts: Contacts, mint: &mut dyn Mint) -> Result<(), Error> {
        self.require_profile(Profile::Noipa)?;
        self.require_actor(
            matches!(self.actor, Actor::Rid(_)),
            "NOIPA-12: after enrolment only the RID identifies a person again and gives new contacts",
        )?;
        check_noipa_contacts(&contacts)?;
        // NOIPA-7: a new mailbox given at identification replaces the old one; NOIPA-9: the
        // RID may change contacts. POL-6: the old contacts hear of it.
        if contacts != self.next.contacts {
            self.notify(NoticeKind::ContactsChanged);
        }
        self.next.contacts = contacts;
        self.next.identified_at = Some(self.now());
        self.issue_noipa(Origin::Identification, mint)
    }

    fn resend(&mut self, attempts: &Attempts, mint: &mut dyn Mint) -> Result<(), Error> {
        let profile = self.profile();
        let allowed = match profile {
            Profile::Noipa => matches!(
                self.actor,
                Actor::Subject | Actor::Support(_) | Actor::Rid(_) | Actor::System
            ),
            Profile::Inps => matches!(
                self.actor,
                Actor::Subject | Actor::ContactCentre(_) | Actor::BranchOperator(_) | Actor::System
            ),
        };
        self.require_actor(allowed, "POL-3: re-sends go only to the contacts on record")?;
        let cred = self.next.credential.clone().ok_or(Refusal::NoPin)?;
        if attempts.serial == cred.serial && attempts.is_locked(self.ctx.policy.lockout(profile)) {
            return Err(Refusal::Blocked.into());
        }
        if cred.first_used_at.is_some()
            || cred.changed_at.is_some()
            || cred.origin == Origin::Import
        {
            let remedy = match profile {
                Profile::Inps => {
                    "reset it with two registered contacts (INPS-14), or ask at a branch (INPS-5)"
                }
                Profile::Noipa => "ask your office's RID to identify you again (NOIPA-6)",
            };
            return Err(Refusal::AlreadyUsed { remedy }.into());
        }
        // INPS-5, INPS-7: a sealed envelope is handed over at a branch, a PIN told by phone
        // needs an operator on the call; nobody else can re-send those.
        for p in &cred.parts {
            let operator = match p.channel {
                Channel::SealedEnvelope => matches!(self.actor, Actor::BranchOperator(_)),
                Channel::Phone => matches!(self.actor, Actor::ContactCentre(_)),
                _ => true,
            };
            self.require_actor(
                operator,
                "INPS-5/INPS-7: envelopes are re-issued at a branch, phone parts by the contact centre",
            )?;
        }
        // NOIPA-5: support re-sends only when the PIN has not arrived within 12 hours of
        // its issue (at identification, or at enrolment).
        if let Actor::Support(_) = self.actor {
            let until = cred.issued_at + self.ctx.policy.support_resend_after();
            if self.now() < until {
                return Err(Refusal::ResendTooEarly { until }.into());
            }
        }
        // POL-4 counts what reached the person: a re-send replacing a PIN whose delivery
        // failed for good (refused, or undeliverable past the deadline) is not counted —
        // nothing was sent to flood anyone with, and the person must be able to ask again.
        if !cred.parts.iter().any(|p| p.state == DeliveryState::Failed) {
            self.rate_limit()?;
        }
        // POL-3: a fresh PIN on the same channels; the failures carry over.
        match cred.stage {
            Stage::AwaitingActivation => {
                self.issue(
                    Origin::Resend,
                    PinFormat::InpsInUse8,
                    Level::Online,
                    Stage::AwaitingActivation,
                    Route::Whole(Channel::Post),
                    AttemptsUpdate::CarryOver,
                    mint,
                )?;
                self.fix_pre_assigned_parts();
            }
            _ if profile == Profile::Noipa => self.issue_noipa(Origin::Resend, mint)?,
            _ => {
                let route = route_like(&cred);
                self.issue(
                    Origin::Resend,
                    cred.format,
                    cred.level,
                    cred.stage,
                    route,
                    AttemptsUpdate::CarryOver,
                    mint,
                )?;
            }
        }
        Ok(())
    }

    /// POL-4: at most `resend_limit` PINs sent to the contacts on record in the sliding
    /// window — re-sends, and the requests a person can make without authenticating (web
    /// request, reset) — so that nobody can flood a mailbox or phone.
    fn rate_limit(&mut self) -> Result<(), Error> {
        let now = self.now();
        let window = self.ctx.policy.resend_window();
        self.next.resends.retain(|t| *t + window > now);
        let limit = usize::try_from(self.ctx.policy.resend_limit()).unwrap_or(usize::MAX);
        if self.next.resends.len() >= limit {
            let oldest = self.next.resends.iter().min().copied().unwrap_or(now);
            return Err(Refusal::ResendLimit {
                until: oldest + window,
            }
            .into());
        }
        self.next.resends.push(now);
        Ok(())
    }

    /// A pre-assigned letter is part 1 of 2 although it is issued alone.
    fn fix_pre_assigned_parts(&mut self) {
        if let Some(c) = self.next.credential.as_mut() {
            for p in &mut c.parts {
                p.index = 1;
                p.of = 2;
            }
        }
        for e in &mut self.effects {
            if let Effect::Deliver(d) = e {
                d.part = 1;
                d.of = 2;
            }
        }
    }

    fn change_contacts(
        &mut self,
        contacts: Contacts,
        authenticated: Option<&Authenticated>,
    ) -> Result<(), Error> {
        let by_subject = match (self.actor, authenticated) {
            (Actor::Subject, Some(a)) => {
                self.check_proof(a, &[Want::Access])?;
                true
            }
            _ => false,
        };
        let allowed = match self.profile() {
            Profile::Noipa => by_subject || matches!(self.actor, Actor::Rid(_)),
            Profile::Inps => by_subject || matches!(self.actor, Actor::BranchOperator(_)),
        };
        self.require_actor(
            allowed,
            "NOIPA-9: contacts change only by the RID, or by the person authenticated with the PIN",
        )?;
        self.replace_contacts(contacts)
    }

    /// NOIPA-13: a CNS holder changes their own contacts with the card.
    fn change_contacts_with_cns(
        &mut self,
        contacts: Contacts,
        cns: &CnsAuthenticated,
    ) -> Result<(), Error> {
        self.require_profile(Profile::Noipa)?;
        self.require_actor(
            matches!(self.actor, Actor::Subject),
            "NOIPA-13: the card holder changes their own contacts",
        )?;
        cns.check_for(&self.next, self.now())?;
        self.detail = "proof=cns".to_owned();
        self.replace_contacts(contacts)
    }

    /// Puts `contacts` on record, after a notice to the old ones (POL-6).
    fn replace_contacts(&mut self, contacts: Contacts) -> Result<(), Error> {
        if self.profile() == Profile::Noipa {
            check_noipa_contacts(&contacts)?;
        }
        if contacts != self.next.contacts {
            self.notify(NoticeKind::ContactsChanged);
        }
        self.next.contacts = contacts;
        self.outcome = "contacts_changed";
        Ok(())
    }

    /// Checks a proof of authentication for this action.
    fn check_proof(&self, a: &Authenticated, wants: &[Want]) -> Result<&Credential, Error> {
        Ok(a.check(&self.next, &self.counter, self.now(), wants, self.action)?)
    }

    fn request_allowed(&self, on_behalf: Option<Representation>) -> Result<(), Error> {
        if let Some(r) = on_behalf {
            check_representation(&self.next.tax_code, r, self.now())?;
        }
        Ok(())
    }

    fn require_no_pending(&self) -> Result<(), Error> {
        if self.next.pending == Pending::None {
            Ok(())
        } else {
            Err(Refusal::AlreadyPending.into())
        }
    }

    fn branch(
        &mut self,
        document: Check,
        on_behalf: Option<Representation>,
        mint: &mut dyn Mint,
    ) -> Result<(), Error> {
        self.require_profile(Profile::Inps)?;
        self.require_actor(
            matches!(self.actor, Actor::BranchOperator(_)),
            "INPS-5: only a branch operator hands over PINs at the counter",
        )?;
        self.request_allowed(on_behalf)?;
        if document == Check::Failed {
            return Err(Refusal::CheckFailed("identity document").into());
        }
        self.next.identified_at = Some(self.now());
        if let Some(role) = on_behalf {
            // INPS-15: the role, under the sworn self-declaration handed in with the signed
            // form, is recorded with the request.
            self.next.represented_by = Some(role);
            self.next.declaration = Some(Declaration {
                role,
                received_by: self.actor.label(),
                at: self.now(),
            });
        }
        // INPS-5, INPS-2: identified in person → dispositivo, in a sealed envelope; still 16
        // characters to change at first access (INPS-3).
        self.issue(
            Origin::Branch,
            PinFormat::InpsIssued16,
            Level::Dispositivo,
            Stage::MustChange,
            Route::Whole(Channel::SealedEnvelope),
            AttemptsUpdate::Fresh,
            mint,
        )?;
        if let Some(role) = on_behalf {
            self.detail = format!(
                "{};on_behalf={};self_declaration=art46_dpr445_2000;received_by={}",
                self.detail,
                format!("{role:?}").to_lowercase(),
                self.actor.label()
            );
        }
        Ok(())
    }

    fn web(&mut self, address: Check, mint: &mut dyn Mint) -> Result<(), Error> {
        // INPS-15: representatives ask at a branch (refused in `decide`).
        self.require_actor(matches!(self.actor, Actor::Subject), "INPS-6")?;
        // The person is not authenticated: a NoiPA record, a request waiting, and a PIN in
        // use (POL-7) all get the answer a tax code not on record gets.
        if self.profile() != Profile::Inps || self.next.pending != Pending::None {
            return Err(Refusal::RequestNotPossible.into());
        }
        self.may_replace(Origin::Web, Level::Online)?;
        if self.next.contacts.address.is_none() {
            return Err(InputError::MissingContact {
                what: "a residence address",
                why: "the second half of the PIN goes there by post (INPS-6)",
            }
            .into());
        }
        self.rate_limit()?;
        if self.next.contacts.reset_contact_count() < 2 {
            self.effects
                .push(Effect::Advise(Advice::FewerThanTwoResetContacts));
        }
        match address {
            Check::Passed => self.issue_inps_split(Origin::Web, mint),
            Check::Failed => self.await_outbound(Origin::Web),
        }
    }

    fn await_outbound(&mut self, origin: Origin) -> Result<(), Error> {
        self.may_replace(origin, Level::Online)?;
        self.next.pending = Pending::OutboundVerification {
            origin,
            since: self.now(),
        };
        self.effects
            .push(Effect::Advise(Advice::AwaitingOutboundVerification));
        self.outcome = "awaiting_outbound_verification";
        Ok(())
    }

    fn contact_centre(&mut self, archives: Check, mint: &mut dyn Mint) -> Result<(), Error> {
        self.require_profile(Profile::Inps)?;
        self.require_actor(matches!(self.actor, Actor::ContactCentre(_)), "INPS-7")?;
        self.require_no_pending()?;
        self.may_replace(Origin::ContactCentre, Level::Online)?;
        if self.next.contacts.address.is_none() {
            return Err(InputError::MissingContact {
                what: "a residence address",
                why: "the second half of the PIN goes there by post (INPS-7)",
            }
            .into());
        }
        match archives {
            Check::Passed => self.issue_inps_split(Origin::ContactCentre, mint),
            Check::Failed => self.await_outbound(Origin::ContactCentre),
        }
    }

    fn outbound(&mut self, result: Check, mint: &mut dyn Mint) -> Result<(), Error> {
        self.require_profile(Profile::Inps)?;
        self.require_actor(
            matches!(self.actor, Actor::ContactCentre(_)),
            "INPS-6: outbound verification is a contact-centre call",
        )?;
        let Pending::OutboundVerification { origin, .. } = self.next.pending else {
            return Err(Refusal::NothingPending.into());
        };
        match result {
            Check::Passed => self.issue_inps_split(origin, mint),
            Check::Failed => {
                self.next.pending = Pending::None;
                self.outcome = "request_rejected";
                Ok(())
            }
        }
    }

    fn pre_assign(&mut self, mint: &mut dyn Mint) -> Result<(), Error> {
        self.require_profile(Profile::Inps)?;
        self.require_actor(
            matches!(self.actor, Actor::System),
            "INPS-8: pre-assigned letters are sent by the institute",
        )?;
        self.require_no_pending()?;
        self.may_replace(Origin::PreAssigned, Level::Online)?;
        // INPS-8: the letter carries the first half; the hash is of that half alone, so the
        // second half can be drawn at activation without any half kept in clear (POL-3).
        self.issue(
            Origin::PreAssigned,
            PinFormat::InpsInUse8,
            Level::Online,
            Stage::AwaitingActivation,
            Route::Whole(Channel::Post),
            AttemptsUpdate::Fresh,
            mint,
        )?;
        self.fix_pre_assigned_parts();
        self.effects
            .push(Effect::Advise(Advice::AwaitingActivation));
        Ok(())
    }

    fn activate(
        &mut self,
        authenticated: &Authenticated,
        first_half: &Pin,
        health_card: Check,
        mint: &mut dyn Mint,
    ) -> Result<(), Error> {
        self.require_profile(Profile::Inps)?;
        self.require_actor(
            matches!(self.actor, Actor::Subject),
            "INPS-8: the person activates",
        )?;
        let cred = self.check_proof(authenticated, &[Want::Activate])?.clone();
        if cred.stage != Stage::AwaitingActivation {
            return Err(Refusal::Stage {
                stage: "already active",
                why: "only a pre-assigned PIN is activated",
            }
            .into());
        }
        if health_card == Check::Failed {
            return Err(Refusal::CheckFailed("health card").into());
        }
        let channel = self.first_half_channel()?;
        let recipient = self.recipient(channel)?;
        // The person proved the letter's half; the second half is drawn now and the hash of
        // the whole 16 replaces the hash of the half, so no half is ever kept in clear.
        if !mint.matches(first_half, &cred.hash)? {
            return Err(Refusal::WrongProof {
                action: "activate with another half",
            }
            .into());
        }
        let second = mint.generate(PinFormat::InpsInUse8);
        let whole = format::join_halves(first_half, &second);
        let hash = mint.seal(&whole)?;
        let now = self.now();
        let serial = self.next.last_serial.saturating_add(1);
        let mut parts = cred.parts.clone();
        for p in &mut parts {
            p.set_state(DeliveryState::Confirmed, now);
        }
        let delivery = Delivery {
            subject: self.next.tax_code.clone(),
            serial,
            part: 2,
            of: 2,
            channel,
            recipient,
            secret: second,
            origin: Origin::PreAssigned,
        };
        parts.push(Part {
            index: 2,
            of: 2,
            channel,
            state: DeliveryState::Pending,
            updated_at: now,
            queued: Some(Queued {
                sealed: mint.seal_part(&delivery),
                tries: 0,
                due_at: now,
            }),
        });
        self.effects.push(Effect::Deliver(delivery));
        self.next.credential = Some(Credential {
            serial,
            hash,
            format: PinFormat::InpsIssued16,
            level: Level::Online,
            stage: Stage::MustChange,
            origin: Origin::PreAssigned,
            issued_at: now,
            changed_at: None,
            first_used_at: None,
            parts,
        });
        self.next.last_serial = serial;
        self.attempts = AttemptsUpdate::Fresh;
        self.channels = vec![channel];
        self.next.pending = Pending::None;
        // INPS-16: activation with health-card data verified the person (INPS-8).
        self.next.verified_pin = true;
        self.outcome = "activated";
        Ok(())
    }

    fn convert(&mut self, document: Check) -> Result<(), Error> {
        self.require_profile(Profile::Inps)?;
        self.require_actor(
            matches!(self.actor, Actor::BranchOperator(_) | Actor::System),
            "INPS-9: the person sends the signed request and document; the branch or the back office that checks them records the conversion",
        )?;
        let cred = self.next.credential.as_mut().ok_or(Refusal::NoPin)?;
        if cred.stage == Stage::AwaitingActivation {
            return Err(Refusal::Stage {
                stage: "awaiting activation",
                why: "activate it first (INPS-8)",
            }
            .into());
        }
        if cred.level == Level::Dispositivo {
            return Err(Refusal::AlreadyDispositivo.into());
        }
        if document == Check::Failed {
            return Err(Refusal::CheckFailed("signed request and identity document").into());
        }
        // INPS-9: the value (and so the hash and serial) does not change.
        cred.level = Level::Dispositivo;
        self.outcome = "converted_to_dispositivo";
        Ok(())
    }

    fn reset(&mut self, proofs: &[ContactProof], mint: &mut dyn Mint) -> Result<(), Error> {
        // INPS-15: representatives ask at a branch (refused in `decide`).
        self.require_actor(
            matches!(self.actor, Actor::Subject),
            "INPS-14: the person resets",
        )?;
        // INPS-16: reset is a recovery, for a person who once received a PIN through a
        // channel that verified them, with no request waiting for (or failed at) the
        // outbound call. Whoever cannot reset gets the answer of wrong contacts, as a tax
        // code not on record does, so that the answer does not tell who is on record.
        if self.profile() != Profile::Inps
            || !self.next.verified_pin
            || self.next.pending != Pending::None
        {
            return Err(Refusal::ContactsDoNotMatch.into());
        }
        self.rate_limit()?;
        let mut kinds: Vec<ContactKind> = Vec::new();
        for p in proofs {
            if kinds.contains(&p.kind()) {
                return Err(InputError::DuplicateContactKind.into());
            }
            kinds.push(p.kind());
        }
        // INPS-14: at least two of the contacts registered at the first registration.
        let matched: Vec<&ContactProof> = proofs
            .iter()
            .filter(|p| self.next.registered.matches(p))
            .collect();
        let (Some(a), Some(b)) = (matched.first(), matched.get(1)) else {
            return Err(Refusal::ContactsDoNotMatch.into());
        };
        let channel_of = |p: &ContactProof| match p.kind() {
            ContactKind::Email => Channel::Email,
            ContactKind::Mobile => Channel::Sms,
            ContactKind::Pec => Channel::Pec,
        };
        let (first, second) = (channel_of(a), channel_of(b));
        // The halves go to the registered contacts that were proven, one each. POL-7: a
        // reset keeps the level of a dispositivo PIN.
        let level = self
            .next
            .credential
            .as_ref()
            .map_or(Level::Online, |c| c.level);
        let saved = std::mem::replace(&mut self.next.contacts, self.next.registered.clone());
        let result = self.issue(
            Origin::Reset,
            PinFormat::InpsIssued16,
            level,
            Stage::MustChange,
            Route::Halves(vec![first], second),
            AttemptsUpdate::Fresh,
            mint,
        );
        self.next.contacts = saved;
        result
    }

    fn change_pin(
        &mut self,
        authenticated: &Authenticated,
        new: &NewPin,
        attempts: &Attempts,
        mint: &mut dyn Mint,
    ) -> Result<(), Error> {
        self.require_profile(Profile::Inps)?;
        self.require_actor(
            matches!(self.actor, Actor::Subject),
            "INPS-3: only the person changes their PIN",
        )?;
        let cred = self
            .check_proof(authenticated, &[Want::Change, Want::Access])?
            .clone();
        if cred.stage == Stage::AwaitingActivation {
            return Err(Refusal::Stage {
                stage: "awaiting activation",
                why: "activate it first (INPS-8)",
            }
            .into());
        }
        if attempts.serial == cred.serial && attempts.blocked {
            return Err(Refusal::Blocked.into());
        }
        let (pin, reveal) = match new {
            NewPin::Chosen(pin) => {
                // Re-validate: a Pin may have been parsed for another format.
                let pin = format::parse_chosen(PinFormat::InpsInUse8, pin.expose_secret())
                    .map_err(InputError::from)?;
                (pin, false)
            }
            NewPin::Generated => (mint.generate(PinFormat::InpsInUse8), true),
        };
        if cred.format == PinFormat::InpsInUse8 && mint.matches(&pin, &cred.hash)? {
            return Err(Refusal::SamePin.into());
        }
        let hash = mint.seal(&pin)?;
        let now = self.now();
        let serial = self.next.last_serial.saturating_add(1);
        self.next.credential = Some(Credential {
            serial,
            hash,
            format: PinFormat::InpsInUse8,
            level: cred.level,
            stage: Stage::Active,
            origin: cred.origin,
            issued_at: cred.issued_at,
            changed_at: Some(now),
            first_used_at: cred.first_used_at.or(Some(now)),
            parts: cred.parts,
        });
        self.next.last_serial = serial;
        self.attempts = AttemptsUpdate::Fresh;
        self.outcome = if reveal {
            "changed_generated"
        } else {
            "changed_chosen"
        };
        if reveal {
            self.effects.push(Effect::Reveal(pin));
        }
        Ok(())
    }

    fn receipt(
        &mut self,
        serial: u64,
        part: u8,
        channel: Channel,
        state: DeliveryState,
    ) -> Result<(), Error> {
        self.require_actor(
            matches!(self.actor, Actor::System),
            "receipts come from the delivery channels",
        )?;
        let now = self.now();
        let Some(cred) = self.next.credential.as_mut().filter(|c| c.serial == serial) else {
            // A receipt for a superseded PIN changes nothing (BOTH-1); it is still recorded.
            self.outcome = "stale_receipt";
            self.detail = format!("serial={serial}");
            return Ok(());
        };
        let p = cred
            .parts
            .iter_mut()
            .find(|p| p.index == part && p.channel == channel)
            .ok_or_else(|| InputError::UnknownPart {
                serial,
                part,
                channel: format!("{channel:?}").to_lowercase(),
            })?;
        use DeliveryState as D;
        if (p.state, state) == (D::Pending, D::Pending) {
            // A try that found the channel unavailable: due again after a backoff, or
            // failed for good past the deadline (POL-3: recovery is a fresh issue).
            let policy = self.ctx.policy;
            let issued_at = cred.issued_at;
            self.channels = vec![channel];
            self.detail = format!("part={part}");
            let Some(q) = p.queued.as_mut() else {
                return Err(InputError::DeliveryTransition {
                    part,
                    from: "pending".into(),
                    to: "pending".into(),
                }
                .into());
            };
            q.tries = q.tries.saturating_add(1);
            if now >= issued_at + policy.delivery_deadline() {
                p.set_state(D::Failed, now);
                self.outcome = "undeliverable";
                // POL-3: the person is told, on the contacts on record, how to recover.
                self.notify(NoticeKind::DeliveryFailed);
            } else {
                q.due_at = now
                    + crate::delivery::retry_delay(
                        policy.delivery_retry_first(),
                        policy.delivery_retry_cap(),
                        q.tries,
                    );
                self.outcome = "deferred";
            }
            return Ok(());
        }
        let ok = matches!(
            (p.state, state),
            (D::Pending, D::Sent | D::Confirmed | D::Failed)
                | (D::Sent, D::Sent | D::Confirmed | D::Failed)
                | (D::Confirmed, D::Confirmed)
                | (D::Failed, D::Failed)
        );
        if !ok {
            return Err(InputError::DeliveryTransition {
                part,
                from: format!("{:?}", p.state).to_lowercase(),
                to: format!("{state:?}").to_lowercase(),
            }
            .into());
        }
        let newly_failed = state == D::Failed && p.state != D::Failed;
        p.set_state(state, now);
        if newly_failed {
            // POL-3: the person is told, on the contacts on record, how to recover.
            self.notify(NoticeKind::DeliveryFailed);
        }
        self.channels = vec![channel];
        self.outcome = match state {
            D::Pending => "pending",
            D::Sent => "sent",
            D::Confirmed => "confirmed",
            D::Failed => "failed",
        };
        self.detail = format!("part={part}");
        Ok(())
    }
}

/// The route of a re-send: the channels of the credential being replaced.
fn route_like(cred: &Credential) -> Route {
    let firsts: Vec<Channel> = cred
        .parts
        .iter()
        .filter(|p| p.index == 1 && p.of == 2)
        .map(|p| p.channel)
        .collect();
    match cred.parts.iter().find(|p| p.index == 2) {
        Some(second) => Route::Halves(firsts, second.channel),
        None => Route::Whole(cred.parts.first().map_or(Channel::Email, |p| p.channel)),
    }
}
