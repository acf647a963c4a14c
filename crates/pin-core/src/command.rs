//! What can be asked of the machine ([`Command`]) and what it answers ([`Decision`]).

use chrono::{DateTime, NaiveDate, Utc};

use crate::audit::AuditEvent;
use crate::contact::{ContactProof, Contacts};
use crate::error::Refusal;
use crate::format::PinFormat;
use crate::hash::PinHash;
use crate::secret::Pin;
use crate::subject::{
    Attempts, Channel, DeliveryState, Level, Representation, Role, Stage, Subject,
};
use crate::tax_code::TaxCode;

/// The result of a check made by an outside registry — residence address, archives of the
/// contact centre, health card (*tessera sanitaria*), identity document. The core never
/// makes these checks itself: it is told their result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// The registry confirmed the data.
    Passed,
    /// The registry did not confirm the data.
    Failed,
}

/// Data of a new subject.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enrolment {
    /// Role (employee → NoiPA; citizen or intermediary → INPS).
    pub role: Role,
    /// Contacts given.
    pub contacts: Contacts,
    /// Holds a CNS (NOIPA-10).
    pub cns_holder: bool,
    /// NoiPA: date of enrolment (*immatricolazione*), which decides the automatic issue
    /// (NOIPA-2).
    pub enrolled_on: Option<NaiveDate>,
}

/// A credential brought over from an earlier system, with its pre-computed hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Imported {
    /// Role.
    pub role: Role,
    /// Contacts.
    pub contacts: Contacts,
    /// Hash made by this library's hasher (same pepper keyring).
    pub hash: PinHash,
    /// Shape of the PIN (an INPS 16 in stage Active is a legacy PIN, INPS-4).
    pub format: PinFormat,
    /// Level.
    pub level: Level,
    /// Stage.
    pub stage: Stage,
    /// When the PIN was issued.
    pub issued_at: DateTime<Utc>,
    /// Last change.
    pub changed_at: Option<DateTime<Utc>>,
}

/// Proof that the subject just gave their current PIN, made only by
/// [`crate::verify::finish`] from a [`crate::hash::Compared`] that matched. It names the
/// subject, the credential serial and stage, why the PIN was given and when, so that it
/// cannot be used for another person (serials count per subject), after that PIN changed or
/// was blocked, for another purpose, or after [`PROOF_TTL`]. It is not `Clone`.
#[derive(Debug, PartialEq, Eq)]
pub struct Authenticated {
    pub(crate) subject: TaxCode,
    pub(crate) serial: u64,
    pub(crate) stage: Stage,
    pub(crate) purpose: crate::verify::Purpose,
    pub(crate) at: DateTime<Utc>,
}

/// How long a proof of authentication stays usable.
pub const PROOF_TTL: chrono::Duration = chrono::Duration::minutes(5);

impl Authenticated {
    /// The credential serial authenticated.
    #[must_use]
    pub fn serial(&self) -> u64 {
        self.serial
    }

    /// Why the PIN was given.
    #[must_use]
    pub fn purpose(&self) -> crate::verify::Purpose {
        self.purpose
    }
}

/// The purposes of a proof an action accepts.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Want {
    /// Given to use a service: the PIN is active, not expired, of the level required.
    Access,
    /// Given to change the PIN.
    Change,
    /// Given to activate a pre-assigned PIN.
    Activate,
}

impl Authenticated {
    /// Checks the proof for `action` on `subject`: the same person and credential (serial
    /// and stage), not blocked since (`counter`), fresh at `now`, and given for one of the
    /// purposes in `wants`.
    pub(crate) fn check<'s>(
        &self,
        subject: &'s Subject,
        counter: &Attempts,
        now: DateTime<Utc>,
        wants: &[Want],
        action: &'static str,
    ) -> Result<&'s crate::subject::Credential, Refusal> {
        let cred = subject.credential.as_ref().ok_or(Refusal::NoPin)?;
        if self.subject != subject.tax_code
            || cred.serial != self.serial
            || cred.stage != self.stage
        {
            return Err(Refusal::StaleAuthentication);
        }
        if counter.serial == cred.serial && counter.blocked {
            return Err(Refusal::Blocked);
        }
        if now > self.at + PROOF_TTL || now < self.at {
            return Err(Refusal::StaleAuthentication);
        }
        let accepted = wants.iter().any(|w| {
            matches!(
                (w, self.purpose),
                (Want::Access, crate::verify::Purpose::Access { .. })
                    | (Want::Change, crate::verify::Purpose::Change)
                    | (Want::Activate, crate::verify::Purpose::Activate)
            )
        });
        if accepted {
            Ok(cred)
        } else {
            Err(Refusal::WrongProof { action })
        }
    }
}

/// Why a national service card (CNS) did not authenticate.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the national service card (CNS) did not authenticate: {0}")]
pub struct CnsError(pub String);

/// The outside check of a national service card (*CNS*): the card middleware that
/// verifies the card's certificate chain, its revocation status and the signature the card
/// made with the holder's card PIN, and reads the tax code the certificate names. The core
/// never reads a card; the deployment wires in its middleware, as it wires in a
/// [`crate::notify::Notifier`].
pub trait CnsAuthority {
    /// Checks `evidence` (what the card presented: certificate chain and signature, in the
    /// middleware's format) and returns the tax code of the card holder.
    ///
    /// # Errors
    /// [`CnsError`] when the card did not authenticate.
    fn authenticate(&self, evidence: &[u8]) -> Result<TaxCode, CnsError>;
}

/// Proof that a CNS authenticated its holder (NOIPA-10, NOIPA-13): made only by
/// [`CnsAuthenticated::check`] from the answer of a [`CnsAuthority`], never from a flag.
/// It names the holder and the time, so that it cannot be used for another person or after
/// [`PROOF_TTL`]. It is not `Clone`.
#[derive(Debug, PartialEq, Eq)]
pub struct CnsAuthenticated {
    subject: TaxCode,
    at: DateTime<Utc>,
}

impl CnsAuthenticated {
    /// Asks `authority` to check `evidence` at `now`.
    ///
    /// # Errors
    /// [`CnsError`] when the card did not authenticate.
    pub fn check(
        authority: &dyn CnsAuthority,
        evidence: &[u8],
        now: DateTime<Utc>,
    ) -> Result<Self, CnsError> {
        let subject = authority.authenticate(evidence)?;
        Ok(Self { subject, at: now })
    }

    /// The card holder's tax code.
    #[must_use]
    pub fn subject(&self) -> &TaxCode {
        &self.subject
    }

    /// Checks the proof for a change of `subject`'s contacts at `now`: the card is this
    /// person's, the proof is fresh, and the person is registered as a CNS holder.
    pub(crate) fn check_for(&self, subject: &Subject, now: DateTime<Utc>) -> Result<(), Refusal> {
        if self.subject != subject.tax_code || now > self.at + PROOF_TTL || now < self.at {
            return Err(Refusal::StaleAuthentication);
        }
        if !subject.cns_holder {
            return Err(Refusal::Stage {
                stage: "not linked to a CNS",
                why: "register the national service card first, or use the PIN",
            });
        }
        Ok(())
    }
}

/// The new PIN of a change (INPS-3).
#[derive(Debug)]
pub enum NewPin {
    /// Chosen by the person; must be 8 characters of the INPS alphabet and not trivial
    /// (parse it with [`crate::format::parse_chosen`]).
    Chosen(Pin),
    /// Generated by the system and shown to the person alone ([`Effect::Reveal`]).
    Generated,
}

/// A command for one subject. Each is performed by an [`crate::Actor`].
#[derive(Debug)]
#[non_exhaustive]
pub enum Command {
    /// Create the subject. NoiPA employees enrolled on or after the policy's date get a PIN
    /// at once (NOIPA-2) unless they hold a CNS (NOIPA-10).
    Enrol(Enrolment),
    /// Bring over a subject with an existing credential.
    Import(Imported),
    /// NoiPA: the RID identified the person in person, who gave these contacts; a new PIN is
    /// issued (NOIPA-2, NOIPA-3, NOIPA-6, NOIPA-7).
    Identify {
        /// Contacts given at identification (e-mail required, mobile optional).
        contacts: Contacts,
    },
    /// A fresh PIN on the channels of the current one, to the contacts on record (NOIPA-5,
    /// POL-3, POL-4).
    Resend,
    /// Change the contacts on record (NOIPA-9).
    ChangeContacts {
        /// The new contacts.
        contacts: Contacts,
        /// Present when the subject authenticated with the PIN.
        authenticated: Option<Authenticated>,
    },
    /// NoiPA: the person changes their own contacts, authenticated with the national service
    /// card instead of the PIN (NOIPA-13); only for subjects registered as CNS holders.
    ChangeContactsWithCns {
        /// The new contacts.
        contacts: Contacts,
        /// Proof from the card middleware.
        cns: CnsAuthenticated,
    },
    /// INPS branch counter: the operator verified identity against the document of form
    /// MV35 (INPS-5).
    BranchRequest {
        /// The operator's check of the identity document.
        identity_document: Check,
        /// When a guardian, curator, support administrator or parent asks (INPS-10).
        on_behalf: Option<Representation>,
    },
    /// INPS web request, with the automatic residence validation's result (INPS-6).
    WebRequest {
        /// Residence address validation.
        address: Check,
    },
    /// INPS contact centre request, with the match against the archives (INPS-7).
    ContactCentreRequest {
        /// Identity, residence and health-card data matched the archives.
        archives: Check,
    },
    /// The outbound contact-centre call for a pending request (INPS-6, INPS-7).
    OutboundVerification {
        /// Whether the operator could verify the person.
        result: Check,
    },
    /// INPS pre-assigned PIN: the letter with the first half (INPS-8).
    PreAssign,
    /// INPS activation of a pre-assigned PIN: the person proved the letter's half and gave
    /// health-card data (INPS-8).
    Activate {
        /// Proof of the first half, from [`crate::verify::finish`].
        authenticated: Authenticated,
        /// The first half, as the person typed it from the letter.
        first_half: Pin,
        /// Health-card data check.
        health_card: Check,
    },
    /// INPS conversion `online` → `dispositivo` after a signed request and an identity
    /// document (INPS-9). The PIN value does not change.
    Convert {
        /// Check of the signed request and document.
        document: Check,
    },
    /// INPS reset after loss: tax code plus two registered contacts (INPS-14), only for a
    /// person who once received a PIN through a verifying channel and has no request
    /// waiting (INPS-16), asked by the person (never a representative, INPS-15).
    Reset {
        /// The contacts quoted by the person.
        proofs: Vec<ContactProof>,
    },
    /// INPS change of PIN (first access, rotation; INPS-3, INPS-4, INPS-11).
    ChangePin {
        /// Proof of the current PIN.
        authenticated: Authenticated,
        /// The new PIN.
        new: NewPin,
    },
    /// A delivery receipt from a channel.
    Receipt {
        /// Credential serial the message belonged to.
        serial: u64,
        /// Part number.
        part: u8,
        /// Channel.
        channel: Channel,
        /// New state.
        state: DeliveryState,
    },
}

impl Command {
    /// A short stable name (`"enrol"`, `"resend"`, …) used in audit events and errors.
    #[must_use]
    pub fn name(&self) -> &'static str {
        match self {
            Self::Enrol(_) => "enrol",
            Self::Import(_) => "import",
            Self::Identify { .. } => "identify",
            Self::Resend => "resend",
            Self::ChangeContacts { .. } | Self::ChangeContactsWithCns { .. } => "change_contacts",
            Self::BranchRequest { .. } => "branch_request",
            Self::WebRequest { .. } => "web_request",
            Self::ContactCentreRequest { .. } => "contact_centre_request",
            Self::OutboundVerification { .. } => "outbound_verification",
            Self::PreAssign => "pre_assign",
            Self::Activate { .. } => "activate",
            Self::Convert { .. } => "convert",
            Self::Reset { .. } => "reset",
            Self::ChangePin { .. } => "change_pin",
            Self::Receipt { .. } => "receipt",
        }
    }
}

/// One message to deliver: part `part` of `of` of credential `serial`, on `channel`, to
/// `recipient`. Holds a secret; `Debug` is redacted.
pub struct Delivery {
    /// The subject.
    pub subject: TaxCode,
    /// Credential serial.
    pub serial: u64,
    /// Part number, from 1.
    pub part: u8,
    /// Number of parts.
    pub of: u8,
    /// Channel.
    pub channel: Channel,
    /// Address, number, or postal address on record (empty for a sealed envelope).
    pub recipient: String,
    /// The characters of this part — never the whole PIN when it is split (BOTH-2).
    pub secret: Pin,
    /// Why it is sent.
    pub origin: crate::subject::Origin,
}

impl Delivery {
    /// A stable id of this message — the same for every try of the same part of the same
    /// PIN, different for any other — so that a channel can drop a duplicate of an
    /// at-least-once delivery ([`crate::delivery`]). 32 hex digits of SHA-256 over the tax
    /// code, serial, part and channel; it carries no secret.
    #[must_use]
    pub fn message_id(&self) -> String {
        use sha2::Digest as _;
        let mut h = sha2::Sha256::new();
        h.update(b"pin-core message v1\0");
        h.update(self.subject.as_str().as_bytes());
        h.update(self.serial.to_be_bytes());
        h.update([self.part]);
        h.update(format!("{:?}", self.channel).as_bytes());
        h.finalize()
            .iter()
            .take(16)
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            subject,
            serial,
            part,
            of,
            channel,
            recipient: _,
            secret: _,
            origin,
        } = self;
        f.debug_struct("Delivery")
            .field("subject", subject)
            .field("serial", serial)
            .field("part", part)
            .field("of", of)
            .field("channel", channel)
            .field("origin", origin)
            .finish_non_exhaustive()
    }
}

/// Why a security notice is sent (POL-6).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    /// The contacts on record were changed.
    ContactsChanged,
    /// The PIN was reset (INPS-14).
    PinReset,
    /// A new PIN was issued at the request of someone other than the person: an operator,
    /// the RID, or a representative; `by` is the actor kind (`"rid"`, `"branch_operator"`,
    /// `"representative"`, …).
    PinIssuedByOther {
        /// Who asked.
        by: &'static str,
    },
    /// The PIN was blocked after too many wrong attempts (INPS-12, POL-1).
    Locked,
    /// A part of a new PIN could not be delivered (refused for good, or undeliverable past
    /// the delivery deadline): the person asks for a fresh one (POL-3), which does not count
    /// against the re-send limit (POL-4), or updates the contacts.
    DeliveryFailed,
}

/// A security notice (POL-6): tells the person of an action on their PIN or contacts, on
/// one of the contacts on record *before* the action. It carries no secret of any kind;
/// its `Debug` leaves the recipient out, as [`Delivery`]'s does (personal data).
#[derive(Clone, PartialEq, Eq)]
pub struct Notice {
    /// The subject.
    pub subject: TaxCode,
    /// What happened.
    pub kind: NoticeKind,
    /// Channel: e-mail, PEC or SMS.
    pub channel: Channel,
    /// The address or number on record before the action.
    pub recipient: String,
    /// When the action happened.
    pub at: DateTime<Utc>,
}

impl std::fmt::Debug for Notice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            subject,
            kind,
            channel,
            recipient: _,
            at,
        } = self;
        f.debug_struct("Notice")
            .field("subject", subject)
            .field("kind", kind)
            .field("channel", channel)
            .field("at", at)
            .finish_non_exhaustive()
    }
}

impl Notice {
    /// One notice of `kind` per digital contact of `contacts` (e-mail, PEC, mobile): the
    /// contacts on record before the action (POL-6, NOIPA-8). None when there are none.
    #[must_use]
    pub fn to_contacts(
        subject: &TaxCode,
        contacts: &Contacts,
        kind: NoticeKind,
        at: DateTime<Utc>,
    ) -> Vec<Self> {
        let make = |channel, recipient: &str| Self {
            subject: subject.clone(),
            kind,
            channel,
            recipient: recipient.to_owned(),
            at,
        };
        let mut out = Vec::new();
        if let Some(e) = &contacts.email {
            out.push(make(Channel::Email, e.as_str()));
        }
        if let Some(p) = &contacts.pec {
            out.push(make(Channel::Pec, p.as_str()));
        }
        if let Some(m) = &contacts.mobile {
            out.push(make(Channel::Sms, m.as_str()));
        }
        out
    }
}

/// Advice for the caller that is not an error.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Advice {
    /// Fewer than two of mobile, e-mail and PEC were given: online reset will not be
    /// possible (INPS-13).
    FewerThanTwoResetContacts,
    /// The request waits for an outbound contact-centre call (INPS-6, INPS-7).
    AwaitingOutboundVerification,
    /// The PIN is active only after activation with health-card data (INPS-8).
    AwaitingActivation,
}

/// Something the driver must carry out after saving the decision.
#[derive(Debug)]
#[must_use]
pub enum Effect {
    /// Deliver a message.
    Deliver(Delivery),
    /// Show a PIN generated at the subject's own request to that subject alone.
    Reveal(Pin),
    /// Tell the caller.
    Advise(Advice),
    /// Send a security notice, without any secret (POL-6).
    Notify(Notice),
}

/// How the store's attempt counter follows a decision.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttemptsUpdate {
    /// Same credential: leave the counter alone.
    Keep,
    /// New credential with a fresh counter (issue after identification, reset, change).
    Fresh,
    /// New credential that inherits the failures and block of the previous one (a re-send
    /// does not restore the attempt budget).
    CarryOver,
}

/// What the machine decided: the next record, the counter rule, the audit events to store
/// with it, and the effects to carry out after the save.
#[derive(Debug)]
#[must_use]
pub struct Decision {
    /// The record to save.
    pub next: Subject,
    /// What happens to the attempt counter.
    pub attempts: AttemptsUpdate,
    /// Audit events, stored atomically with the record.
    pub audit: Vec<AuditEvent>,
    /// Effects to carry out after the save, in order.
    pub effects: Vec<Effect>,
}
