//! Audit events: who did what, when, on which channel, with what outcome — never a secret.
//!
//! The type cannot hold a secret: no field has a type that carries a PIN or the pepper.
//! [`chain`] is the tamper-evident hash chain the SQL adapters store the log as.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::subject::Channel;
use crate::tax_code::TaxCode;

pub mod chain;
pub mod export;
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

/// A row of the audit log in chain order, as [`crate::store::Store::audit_page`] returns it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditRecord {
    /// The row id: 1, 2, 3, … in the order the events were appended.
    pub id: u64,
    /// The event.
    pub event: AuditEvent,
    /// Its link in the hash chain, for a store that chains its log (`None` for one that
    /// does not, such as the in-memory store).
    pub link: Option<RecordLink>,
}

/// The place of a row in the hash chain ([`chain`]): what an export carries so that it can
/// be verified without the database.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordLink {
    /// The event exactly as stored (its canonical JSON): the bytes the hash covers.
    pub stored: String,
    /// The hash of the row before ([`chain::GENESIS`] for row 1).
    pub prev_hash: [u8; 32],
    /// The row's hash.
    pub hash: [u8; 32],
    /// The audit key id the row is keyed with; `None` for an unkeyed row.
    pub key_id: Option<u32>,
}
