//! The hash-chained audit log, one chain for every instance that writes to the database.
//!
//! Row `n` stores the event as canonical JSON (`serde_json` of [`AuditEvent`], fields in
//! declaration order) in a `text` column, `prev_hash` = the `hash` of row `n − 1` (32 zero
//! bytes for row 1) and `hash = SHA-256(prev_hash ‖ event bytes)` — the same chain as
//! pin-sqlite's, so a log can be checked the same way whichever store wrote it. Ids run
//! 1, 2, 3, … with no gap.
//!
//! # One chain, many writers
//!
//! The single row of `audit_head` holds the id and hash of the last row. An append first
//! reads it `FOR UPDATE`, which holds every other appender — in this process or another —
//! until the appending transaction commits or rolls back; so appends are serialised and
//! each extends the head the previous one left. A trigger checks every inserted row against
//! the head (the right id, the right `prev_hash`) and moves the head, so even a writer that
//! bypasses this crate cannot fork the chain. Every write appends last, so the head is held
//! only for the end of a transaction.
//!
//! Other triggers refuse `UPDATE`, `DELETE` and `TRUNCATE` of audit rows; the hashes make a
//! change made around them (a superuser disabling the triggers) visible to
//! [`crate::PostgresStore::verify_audit_chain`], which also compares the last row with
//! the head, so rows cut off at the end without also rewinding the head are reported.

use pin_core::audit::AuditEvent;
use pin_core::store::StoreError;
use sha2::{Digest, Sha256};

use crate::pool::{Tx, TxError, get};

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
    /// Every row verifies, but the chain head recorded in `audit_head` is not the last row:
    /// rows were cut off at the end, or the head was changed.
    HeadMismatch {
        /// The head as recorded.
        recorded: ChainHead,
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

/// The result of [`crate::PostgresStore::verify_audit_chain`].
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

fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// Appends `events` inside the caller's write transaction; call it last, after the other
/// writes, so that the chain head is held as briefly as possible.
pub(crate) fn append(tx: &mut Tx<'_>, events: &[AuditEvent]) -> Result<(), TxError> {
    if events.is_empty() {
        return Ok(());
    }
    let head = tx.query_one("SELECT id, hash FROM audit_head FOR UPDATE", &[])?;
    let mut id: i64 = get(&head, 0)?;
    let mut prev = hash32(get::<&[u8]>(&head, 1)?, "the audit head hash")?;
    for event in events {
        let bytes = canonical(event)?;
        let hash = link(&prev, bytes.as_bytes());
        id += 1;
        let _ = tx.execute(
            "INSERT INTO audit (id, tax_code, event, prev_hash, hash) VALUES ($1, $2, $3, $4, $5)",
            &[
                &id,
                &event.subject.as_str(),
                &bytes,
                &prev.as_slice(),
                &hash.as_slice(),
            ],
        )?;
        prev = hash;
    }
    Ok(())
}

/// Walks the whole chain in one snapshot, then compares its end with the recorded head.
pub(crate) fn verify(tx: &mut Tx<'_>) -> Result<ChainReport, TxError> {
    let rows = tx.query(
        "SELECT id, tax_code, event, prev_hash, hash FROM audit ORDER BY id",
        &[],
    )?;
    let mut report = ChainReport {
        intact_rows: 0,
        head: None,
        first_break: None,
    };
    let mut prev = GENESIS;
    let mut expected: u64 = 1;
    for row in &rows {
        let id: i64 = get(row, 0)?;
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
            row.try_get::<_, &str>(1),
            row.try_get::<_, &str>(2),
            row.try_get::<_, &[u8]>(3),
            row.try_get::<_, &[u8]>(4),
        ) else {
            report.first_break = unreadable("a column has the wrong type");
            break;
        };
        let (Ok(prev_hash), Ok(hash)) =
            (<[u8; 32]>::try_from(prev_hash), <[u8; 32]>::try_from(hash))
        else {
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
        match serde_json::from_str::<AuditEvent>(event) {
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
    if report.first_break.is_none() {
        let head = tx.query_one("SELECT id, hash FROM audit_head", &[])?;
        let id: i64 = get(&head, 0)?;
        let recorded = ChainHead {
            id: u64::try_from(id).unwrap_or(u64::MAX),
            hash: hash32(get::<&[u8]>(&head, 1)?, "the audit head hash")?,
        };
        let last = report.head.unwrap_or(ChainHead {
            id: 0,
            hash: GENESIS,
        });
        if recorded != last {
            report.first_break = Some(ChainBreak {
                id: expected,
                kind: BreakKind::HeadMismatch { recorded },
            });
        }
    }
    Ok(report)
}
