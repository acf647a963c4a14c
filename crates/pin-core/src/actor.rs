//! Who performs a command.
//!
//! Every command names its actor; [`crate::machine`] refuses the pairs RULES.md forbids
//! (support changing contacts, NOIPA-9; a delegate asking for a PIN, INPS-10; …).

use serde::{Deserialize, Serialize};

use crate::subject::Representation;

/// The party performing a command. Operators carry their own identifier, for the audit log.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind", content = "id")]
pub enum Actor {
    /// The person the record is about, acting for themself.
    Subject,
    /// NoiPA *RID* (*Responsabile dell'Identificazione Dipendente*): the official who
    /// identifies employees in person (NOIPA-3).
    Rid(String),
    /// NoiPA enrolment operator (NOIPA-3).
    EnrolmentOperator(String),
    /// NoiPA support service operator (NOIPA-5): may re-send, may not change contacts.
    Support(String),
    /// INPS branch-counter operator (INPS-5).
    BranchOperator(String),
    /// INPS contact-centre operator, inbound or outbound (INPS-6, INPS-7).
    ContactCentre(String),
    /// Someone acting for the person with a declaration of their role (INPS-10).
    Representative(Representation),
    /// Someone the person chose to act for them. Never admitted (INPS-10).
    Delegate(String),
    /// The system itself (automatic issue at enrolment, pre-assigned letters, receipts).
    System,
}

impl Actor {
    /// A short stable name of the actor's kind (`"rid"`, `"support"`, …).
    #[must_use]
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Subject => "subject",
            Self::Rid(_) => "rid",
            Self::EnrolmentOperator(_) => "enrolment_operator",
            Self::Support(_) => "support",
            Self::BranchOperator(_) => "branch_operator",
            Self::ContactCentre(_) => "contact_centre",
            Self::Representative(_) => "representative",
            Self::Delegate(_) => "delegate",
            Self::System => "system",
        }
    }

    /// The operator's identifier, or the representation, as recorded in the audit log.
    #[must_use]
    pub fn label(&self) -> String {
        match self {
            Self::Rid(id)
            | Self::EnrolmentOperator(id)
            | Self::Support(id)
            | Self::BranchOperator(id)
            | Self::ContactCentre(id)
            | Self::Delegate(id) => format!("{}:{id}", self.kind()),
            Self::Representative(r) => format!("representative:{r:?}").to_lowercase(),
            Self::Subject | Self::System => self.kind().to_owned(),
        }
    }
}
