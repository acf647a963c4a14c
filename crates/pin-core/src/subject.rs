//! The record the store keeps for one subject, and the values it is made of.
//!
//! Nothing here holds a secret: a credential keeps only the [`PinHash`] of its PIN (BOTH-2).
//! The count of consecutive wrong attempts is *not* part of this record: the store keeps it
//! beside the record and changes it only through atomic reserve/settle operations (see
//! [`crate::store::Store`]), so that a compare-and-swap save of the record can never roll
//! back a counted failure.

use chrono::{DateTime, Months, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::contact::{ContactKind, Contacts};
use crate::format::PinFormat;
use crate::hash::PinHash;
use crate::tax_code::TaxCode;

/// Which administration's rules apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// NoiPA, the payroll portal of public employees: 5-digit PINs.
    Noipa,
    /// INPS, the social-security institute: 16 → 8 character PINs, two levels.
    Inps,
}

/// The subject's role, which fixes the profile and the rotation period.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// A public employee (*amministrato*) on NoiPA.
    Employee,
    /// A citizen on INPS (rotation every 6 months, INPS-11).
    Citizen,
    /// An intermediary on INPS — *patronato*, *CAF* (tax-assistance centre), or a
    /// professional acting for others (rotation every 3 months, INPS-11).
    Intermediary,
}

impl Role {
    /// The profile whose rules apply to this role.
    #[must_use]
    pub fn profile(self) -> Profile {
        match self {
            Self::Employee => Profile::Noipa,
            Self::Citizen | Self::Intermediary => Profile::Inps,
        }
    }
}

/// Assurance level of an INPS PIN (INPS-1). NoiPA has a single level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    /// `online`: enough for most services.
    Online,
    /// `dispositivo`: released only after identification in person or an identity
    /// document (INPS-2); required by some services.
    Dispositivo,
}

/// A channel a message travels on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Channel {
    /// E-mail.
    Email,
    /// SMS to the mobile number.
    Sms,
    /// *PEC*: certified e-mail.
    Pec,
    /// Told by a contact-centre operator over the phone (INPS-7).
    Phone,
    /// A letter to the residence address.
    Post,
    /// A sealed envelope handed over at a branch counter (INPS-5).
    SealedEnvelope,
}

impl Channel {
    /// Whether the channel is physical (post, envelope), for expiry of unused PINs.
    #[must_use]
    pub fn is_physical(self) -> bool {
        matches!(self, Self::Post | Self::SealedEnvelope)
    }
}

/// Delivery state of one part of an issued PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Decided and saved, not yet handed to the channel (a crash here leaves it so).
    Pending,
    /// The channel accepted it.
    Sent,
    /// The channel confirmed delivery, or the PIN was used.
    Confirmed,
    /// The channel refused it; recovery is a fresh issue (POL-3).
    Failed,
}

/// One delivery of one part of a PIN.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// Part number, from 1.
    pub index: u8,
    /// How many parts the PIN was split into (1 or 2).
    pub of: u8,
    /// Channel.
    pub channel: Channel,
    /// Where it stands.
    pub state: DeliveryState,
    /// When the state last changed.
    pub updated_at: DateTime<Utc>,
    /// The sealed copy waiting for the channel, while the part is pending
    /// ([`crate::delivery`]); erased by the receipt. Never a PIN in clear (BOTH-2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queued: Option<crate::delivery::Queued>,
}

impl Part {
    /// Moves the part to `state` at `now`; any state but pending erases the sealed copy.
    pub fn set_state(&mut self, state: DeliveryState, now: DateTime<Utc>) {
        self.state = state;
        self.updated_at = now;
        if state != DeliveryState::Pending {
            self.queued = None;
        }
    }
}

/// How a PIN came to be issued.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// NoiPA: at enrolment (NOIPA-2).
    Enrolment,
    /// NoiPA: after identification by the RID (NOIPA-2, NOIPA-6, NOIPA-7).
    Identification,
    /// INPS branch counter (INPS-5).
    Branch,
    /// INPS web request (INPS-6).
    Web,
    /// INPS contact centre (INPS-7).
    ContactCentre,
    /// INPS pre-assigned letter (INPS-8).
    PreAssigned,
    /// Reset after loss (INPS-14).
    Reset,
    /// Re-send: a fresh PIN on the same channels (POL-3).
    Resend,
    /// Imported from an earlier system.
    Import,
}

/// Where a credential stands in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// INPS pre-assigned: the letter carries the first half; the hash is of that half
    /// alone until activation adds the second (INPS-8). Not usable.
    AwaitingActivation,
    /// INPS 16-character PIN as issued: it allows nothing but a change to 8 characters
    /// (INPS-3), like a PKCS#11 token flagged `TO_BE_CHANGED`.
    MustChange,
    /// In use (5 digits for NoiPA; 8 characters, or a legacy 16 for INPS-4).
    Active,
}

/// The PIN currently on record for a subject. Only this one is valid (BOTH-1).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Credential {
    /// Generation number: bumped by every issue and change, so that attempts reserved and
    /// receipts sent for an earlier generation can never apply to this one.
    pub serial: u64,
    /// The one-way hash (BOTH-2).
    pub hash: PinHash,
    /// Shape of the PIN the hash is of.
    pub format: PinFormat,
    /// Level (INPS-1); NoiPA credentials carry `Online` and satisfy any requirement.
    pub level: Level,
    /// Stage.
    pub stage: Stage,
    /// How it was issued.
    pub origin: Origin,
    /// When this PIN value was issued.
    pub issued_at: DateTime<Utc>,
    /// Last change of the value by the person; rotation counts from here (POL-2).
    pub changed_at: Option<DateTime<Utc>>,
    /// First successful use (NOIPA-7: first use confirms a PIN).
    pub first_used_at: Option<DateTime<Utc>>,
    /// The delivery of each part.
    pub parts: Vec<Part>,
}

impl Credential {
    /// The moment a PIN never used stops working: issue time plus the policy's validity
    /// for the slowest channel of its parts (INPS), or the NoiPA validity, which by default
    /// is none (POL-2).
    #[must_use]
    pub fn unused_deadline(&self, policy: &crate::Policy) -> Option<DateTime<Utc>> {
        if self.first_used_at.is_some() || self.changed_at.is_some() {
            return None;
        }
        if self.format == PinFormat::NoipaDigits5 {
            return self
                .issued_at
                .checked_add_signed(policy.noipa_unused_expiry()?);
        }
        let physical = self.parts.iter().any(|p| p.channel.is_physical());
        let validity = if physical {
            policy.unused_expiry_post()
        } else {
            policy.unused_expiry_digital()
        };
        self.issued_at.checked_add_signed(validity)
    }

    /// When the periodic change falls due (INPS-11); `None` when the role does not rotate
    /// or the PIN was never put in use.
    #[must_use]
    pub fn rotation_due(&self, role: Role, policy: &crate::Policy) -> Option<DateTime<Utc>> {
        let months = policy.rotation_months(role)?;
        if self.stage != Stage::Active {
            return None;
        }
        let base = self
            .changed_at
            .or(self.first_used_at)
            .unwrap_or(self.issued_at);
        base.checked_add_months(Months::new(months))
    }
}

/// The declaration of someone acting for a person lacking legal capacity or a minor (INPS-10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Representation {
    /// *Tutore*: guardian of a person lacking legal capacity.
    Guardian,
    /// *Curatore*: curator.
    Curator,
    /// *Amministratore di sostegno*: support administrator.
    SupportAdministrator,
    /// Parent of a minor, with a self-declaration of parental authority.
    Parent,
}

/// What a representative declared at the branch counter, as recorded with the request
/// (INPS-10, INPS-15): the role, under a sworn self-declaration (art. 46 DPR 445/2000),
/// received by the operator named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Declaration {
    /// The role declared.
    pub role: Representation,
    /// The operator who received the signed form and the self-declaration (actor label).
    pub received_by: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// A request waiting for an outside check (INPS-6, INPS-7, INPS-8).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum Pending {
    /// Nothing pending.
    None,
    /// Residence or identity data could not be validated automatically: the request waits
    /// for an outbound contact-centre operator to call and verify (INPS-6, INPS-7).
    OutboundVerification {
        /// How the request came in.
        origin: Origin,
        /// Since when.
        since: DateTime<Utc>,
    },
}

/// The record of one subject.
///
/// `Debug` shows the contacts masked (see [`Contacts`]).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subject {
    /// The *codice fiscale* (tax code) identifying the person.
    pub tax_code: TaxCode,
    /// Role, and with it the profile.
    pub role: Role,
    /// Contacts on record.
    pub contacts: Contacts,
    /// The contact kinds (mobile, e-mail, PEC) registered at the first registration, with
    /// their values: reset after loss must quote two of them (INPS-14).
    pub registered: Contacts,
    /// Holds a *CNS* (national service card): needs no PIN (NOIPA-10).
    pub cns_holder: bool,
    /// NoiPA: date of enrolment (*immatricolazione*).
    pub enrolled_on: Option<NaiveDate>,
    /// Last identification in person (NoiPA RID, INPS branch).
    pub identified_at: Option<DateTime<Utc>>,
    /// Who acts for this person, when someone does (INPS-10).
    pub represented_by: Option<Representation>,
    /// The self-declaration of the representative recorded at the branch (INPS-15).
    pub declaration: Option<Declaration>,
    /// Whether the person once received a PIN through a channel that verified them
    /// (INPS-5 to INPS-8, NoiPA enrolment or identification, or an import): only such a
    /// person may reset (INPS-16). Never cleared.
    pub verified_pin: bool,
    /// A request waiting for an outside check.
    pub pending: Pending,
    /// The only valid PIN, if any (BOTH-1).
    pub credential: Option<Credential>,
    /// Highest credential serial ever used for this subject (serials never repeat).
    pub last_serial: u64,
    /// Times of recent re-sends, for the rate limit (POL-4).
    pub resends: Vec<DateTime<Utc>>,
    /// When the subject was created.
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for Subject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            tax_code,
            role,
            contacts,
            registered,
            cns_holder,
            enrolled_on,
            identified_at,
            represented_by,
            declaration,
            verified_pin,
            pending,
            credential,
            last_serial,
            resends,
            created_at,
        } = self;
        f.debug_struct("Subject")
            .field("tax_code", tax_code)
            .field("role", role)
            .field("contacts", contacts)
            .field("registered", registered)
            .field("cns_holder", cns_holder)
            .field("enrolled_on", enrolled_on)
            .field("identified_at", identified_at)
            .field("represented_by", represented_by)
            .field("declaration", declaration)
            .field("verified_pin", verified_pin)
            .field("pending", pending)
            .field("credential", credential)
            .field("last_serial", last_serial)
            .field("resends", resends)
            .field("created_at", created_at)
            .finish_non_exhaustive()
    }
}

impl Subject {
    /// The profile of the subject's role.
    #[must_use]
    pub fn profile(&self) -> Profile {
        self.role.profile()
    }

    /// The contact kinds registered at first registration (for INPS-14).
    #[must_use]
    pub fn registered_kinds(&self) -> Vec<ContactKind> {
        let r = &self.registered;
        let mut kinds = Vec::new();
        if r.email.is_some() {
            kinds.push(ContactKind::Email);
        }
        if r.mobile.is_some() {
            kinds.push(ContactKind::Mobile);
        }
        if r.pec.is_some() {
            kinds.push(ContactKind::Pec);
        }
        kinds
    }
}

/// The store's count of consecutive wrong attempts on the current credential.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempts {
    /// The serial the count belongs to.
    pub serial: u64,
    /// Attempts reserved and not settled as successes since the last success (a reserved
    /// attempt counts as a failure until it is settled).
    pub failures: u32,
    /// Set for good once failures reached the limit: a blocked PIN never becomes valid
    /// again (POL-5), even if the limit is later raised.
    pub blocked: bool,
}

impl Attempts {
    /// Whether the credential is locked under `limit`.
    #[must_use]
    pub fn is_locked(&self, limit: u32) -> bool {
        self.blocked || self.failures >= limit
    }
}
