//! Audit events: who did what, when, on which channel, with what outcome — never a secret.
//!
//! The type cannot hold a secret: no field has a type that carries a PIN or the pepper.
//! [`chain`] is the tamper-evident hash chain the SQL adapters store the log as.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::subject::Channel;
use crate::tax_code::TaxCode;

pub mod chain;
pub mod key;

/// One audit event, produced by every transition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When.
    pub at: DateTime<Utc>,
    /// About whom.
    pub subject: TaxCode,
    /// Who acted ([`crate::Actor::label`]).
    pub actor: String,
    /// What was done (`"issue"`, `"verify"`, `"change_contacts"`, …).
    pub action: String,
    /// How it ended (`"issued"`, `"rejected"`, `"locked"`, …).
    pub outcome: String,
    /// Credential serial concerned, if any.
    pub serial: Option<u64>,
    /// Channels used, if any.
    pub channels: Vec<Channel>,
    /// Free text with no secret (e.g. the origin of an issue, a masked address).
    pub detail: String,
}
