//! The hash-chained audit log.
//!
//! Row `n` stores the event as canonical JSON (`serde_json` of [`AuditEvent`], fields in
//! declaration order), `prev_hash` = the `hash` of row `n − 1` (32 zero bytes for row 1)
//! and `hash = SHA-256(prev_hash ‖ event bytes)`. Ids run 1, 2, 3, … with no gap. Triggers
//! refuse `UPDATE` and `DELETE` of audit rows and any insert that does not extend the chain;
//! the hashes make a change made around the triggers (another tool, a `DROP TRIGGER`, a
//! hex editor) visible to [`crate::SqliteStore::verify_audit_chain`].
//!
//! What a chain cannot show by itself: rows cut off at the end. Keep the [`ChainHead`] of a
//! report somewhere else (a log, another system) and compare it later to detect that.

use pin_core::audit::AuditEvent;
use pin_core::store::StoreError;
use rusqlite::{OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};

use crate::store::db;

/// `prev_hash` of the first row.
const GENESIS: [u8; 32] = [0; 32];

/// The last row of a chain: remember it elsewhere to detect a later truncation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ChainHead {
    /// Its id.
    pub id: u64,
    /// Its hash.
    pub hash: [u8; 32],
}

/// What is wrong at the first broken link.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum BreakKind {
    /// Rows are missing: the id expected here is absent and the next row present has id
    /// `next_present`.
    Missing {
        /// The id of the next row that is present.
        next_present: u64,
    },
    /// The row's `prev_hash` is not the previous row's `hash` (a row before it was changed,
    /// replaced or removed).
    LinkMismatch,
    /// The row's `hash` is not the SHA-256 of its `prev_hash` and event: the row was
    /// changed.
    HashMismatch,
    /// The row cannot be read as an audit event in canonical form.
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// The first broken or missing link of the chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    /// The id where the chain breaks (for [`BreakKind::Missing`], the first missing id).
    pub id: u64,
    /// What is wrong.
    pub kind: BreakKind,
}

/// The result of [`crate::SqliteStore::verify_audit_chain`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[must_use]
pub struct ChainReport {
    /// Rows verified as intact, from id 1.
    pub intact_rows: u64,
    /// The last intact row, if any.
    pub head: Option<ChainHead>,
    /// The first problem found; `None` when the whole chain verifies.
    pub first_break: Option<ChainBreak>,
}

impl ChainReport {
    /// Whether every row verified.
    #[must_use]
    pub fn is_intact(&self) -> bool {
        self.first_break.is_none()
    }
}

fn link(prev: &[u8; 32], event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(event);
    h.finalize().into()
}

fn canonical(event: &AuditEvent) -> Result<String, StoreError> {
    serde_json::to_string(event).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// Appends `events` inside the caller's write transaction.
pub(crate) fn append(tx: &Transaction<'_>, events: &[AuditEvent]) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    let last: Option<(i64, Vec<u8>)> = tx
        .query_row(
            "SELECT id, hash FROM audit ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(db)?;
    let (mut id, mut prev) = match last {
        None => (0, GENESIS),
        Some((id, hash)) => (
            id,
            <[u8; 32]>::try_from(hash.as_slice())
                .map_err(|_| StoreError::Corrupt("audit hash is not 32 bytes".into()))?,
        ),
    };
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO audit (id, tax_code, event, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db)?;
    for event in events {
        let bytes = canonical(event)?;
        let hash = link(&prev, bytes.as_bytes());
        id += 1;
        insert
            .execute(params![
                id,
                event.subject.as_str(),
                bytes,
                prev.as_slice(),
                hash.as_slice()
            ])
            .map_err(db)?;
        prev = hash;
    }
    Ok(())
}

/// Walks the whole chain in one read transaction.
pub(crate) fn verify(tx: &Transaction<'_>) -> Result<ChainReport, StoreError> {
    let mut stmt = tx
        .prepare("SELECT id, tax_code, event, prev_hash, hash FROM audit ORDER BY id")
        .map_err(db)?;
    let mut rows = stmt.query([]).map_err(db)?;
    let mut report = ChainReport {
        intact_rows: 0,
        head: None,
        first_break: None,
    };
    let mut prev = GENESIS;
    let mut expected: u64 = 1;
    while let Some(row) = rows.next().map_err(db)? {
        let id: i64 = row.get(0).map_err(db)?;
        let id = u64::try_from(id).unwrap_or(0);
        let broken = |kind| Some(ChainBreak { id: expected, kind });
        if id != expected {
            report.first_break = broken(BreakKind::Missing { next_present: id });
            break;
        }
        let unreadable = |reason: &str| {
            broken(BreakKind::Unreadable {
                reason: reason.to_owned(),
            })
        };
        let (Ok(tax_code), Ok(event), Ok(prev_hash), Ok(hash)) = (
            row.get::<_, String>(1),
            row.get::<_, String>(2),
            row.get::<_, Vec<u8>>(3),
            row.get::<_, Vec<u8>>(4),
        ) else {
            report.first_break = unreadable("a column has the wrong type");
            break;
        };
        let (Ok(prev_hash), Ok(hash)) = (
            <[u8; 32]>::try_from(prev_hash.as_slice()),
            <[u8; 32]>::try_from(hash.as_slice()),
        ) else {
            report.first_break = unreadable("a hash is not 32 bytes");
            break;
        };
        if prev_hash != prev {
            report.first_break = broken(BreakKind::LinkMismatch);
            break;
        }
        if link(&prev, event.as_bytes()) != hash {
            report.first_break = broken(BreakKind::HashMismatch);
            break;
        }
        match serde_json::from_str::<AuditEvent>(&event) {
            Err(_) => {
                report.first_break = unreadable("the event is not an audit event");
                break;
            }
            Ok(e) if e.subject.as_str() != tax_code => {
                report.first_break = unreadable("the tax code column differs from the event's");
                break;
            }
            Ok(e) if canonical(&e)? != event => {
                report.first_break = unreadable("the event is not in canonical form");
                break;
            }
            Ok(_) => {}
        }
        prev = hash;
        report.intact_rows += 1;
        report.head = Some(ChainHead { id, hash });
        expected += 1;
    }
    Ok(report)
}
