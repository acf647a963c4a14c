//! [`Status`]: what a caller may show about a subject — no PIN hash, contacts masked.
//!
//! [`PinService::status`](crate::service::PinService::status) answers with this view, not
//! with the stored [`Subject`]: the record holds the Argon2 PHC hash and the full contacts,
//! which have no place in a status page, a log line or a JSON answer.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::contact::Contacts;
use crate::format::PinFormat;
use crate::service::State;
use crate::subject::{
    Attempts, Credential, Level, Origin, Part, Pending, Profile, Representation, Role, Stage,
    Subject,
};
use crate::tax_code::TaxCode;

/// A subject's state, for display. Holds no secret: no PIN hash, and contacts only masked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Status {
    /// The summary at the time asked.
    pub state: State,
    /// The subject's tax code.
    pub tax_code: TaxCode,
    /// The subject's role (and with it the profile).
    pub role: Role,
    /// The contacts on record, masked.
    pub contacts: MaskedContacts,
    /// The current PIN, without its hash; `None` without a PIN.
    pub credential: Option<CredentialSummary>,
    /// A request waiting for an outside check.
    pub pending: Pending,
    /// Holds a *CNS*: needs no PIN (NOIPA-10).
    pub cns_holder: bool,
    /// Who acts for this person, when someone does (INPS-10).
    pub represented_by: Option<Representation>,
    /// The attempt counter of the current PIN.
    pub attempts: Attempts,
    /// Whether the current PIN is locked.
    pub locked: bool,
    /// Wrong attempts left.
    pub remaining_attempts: u32,
    /// When the periodic change is due.
    pub rotation_due: Option<DateTime<Utc>>,
    /// When an unused PIN stops working.
    pub unused_deadline: Option<DateTime<Utc>>,
}

impl Status {
    /// The profile of the subject's role.
    #[must_use]
    pub fn profile(&self) -> Profile {
        self.role.profile()
    }

    /// The view of `subject`; the other fields are computed by the caller.
    #[allow(
        clippy::too_many_arguments,
        reason = "crate-internal constructor listing the computed fields once"
    )]
    pub(crate) fn new(
        state: State,
        subject: &Subject,
        attempts: Attempts,
        locked: bool,
        remaining_attempts: u32,
        rotation_due: Option<DateTime<Utc>>,
        unused_deadline: Option<DateTime<Utc>>,
    ) -> Self {
        Self {
            state,
            tax_code: subject.tax_code.clone(),
            role: subject.role,
            contacts: subject.contacts.masked(),
            credential: subject.credential.as_ref().map(CredentialSummary::of),
            pending: subject.pending.clone(),
            cns_holder: subject.cns_holder,
            represented_by: subject.represented_by,
            attempts,
            locked,
            remaining_attempts,
            rotation_due,
            unused_deadline,
        }
    }
}

/// Contacts as they may be shown: e-mail, mobile and PEC masked
/// ([`Email::masked`](crate::contact::Email::masked),
/// [`Mobile::masked`](crate::contact::Mobile::masked)); of the postal address only whether
/// there is one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MaskedContacts {
    /// The masked e-mail address (`m***@example.it`).
    pub email: Option<String>,
    /// The masked mobile number (`+39*******567`).
    pub mobile: Option<String>,
    /// The masked PEC address.
    pub pec: Option<String>,
    /// Whether a postal address is on record.
    pub address: bool,
}

impl Contacts {
    /// These contacts masked, for display (see [`MaskedContacts`]).
    #[must_use]
    pub fn masked(&self) -> MaskedContacts {
        let Self {
            email,
            mobile,
            pec,
            address,
        } = self;
        MaskedContacts {
            email: email.as_ref().map(crate::contact::Email::masked),
            mobile: mobile.as_ref().map(crate::contact::Mobile::masked),
            pec: pec.as_ref().map(crate::contact::Email::masked),
            address: address.is_some(),
        }
    }
}

/// The current PIN as it may be shown: everything but the hash.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CredentialSummary {
    /// Serial number (never reused for a subject).
    pub serial: u64,
    /// The PIN's shape (its length is [`PinFormat::len`]).
    pub format: PinFormat,
    /// Assurance level.
    pub level: Level,
    /// Life-cycle stage.
    pub stage: Stage,
    /// How it was issued.
    pub origin: Origin,
    /// When it was issued.
    pub issued_at: DateTime<Utc>,
    /// When it was last changed by its holder.
    pub changed_at: Option<DateTime<Utc>>,
    /// When it was first used.
    pub first_used_at: Option<DateTime<Utc>>,
    /// Its parts and their delivery.
    pub parts: Vec<Part>,
}

impl CredentialSummary {
    /// The summary of `c`, leaving its hash out.
    #[must_use]
    pub fn of(c: &Credential) -> Self {
        let Credential {
            serial,
            hash: _,
            format,
            level,
            stage,
            origin,
            issued_at,
            changed_at,
            first_used_at,
            parts,
        } = c;
        Self {
            serial: *serial,
            format: *format,
            level: *level,
            stage: *stage,
            origin: *origin,
            issued_at: *issued_at,
            changed_at: *changed_at,
            first_used_at: *first_used_at,
            parts: parts.clone(),
        }
    }
}
