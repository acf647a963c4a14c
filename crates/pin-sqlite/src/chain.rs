//! The hash-chained audit log: pin-core's chain ([`pin_core::audit::chain`]) in the `audit`
//! table.
//!
//! Row `n` stores the event as canonical JSON, `prev_hash` = the `hash` of row `n − 1` (32
//! zero bytes for row 1) and `hash = SHA-256(prev_hash ‖ event bytes)`. Ids run 1, 2, 3, …
//! with no gap. Triggers refuse `UPDATE` and `DELETE` of audit rows and any insert that does
//! not extend the chain; the hashes make a change made around the triggers (another tool, a
//! `DROP TRIGGER`, a hex editor) visible to [`crate::SqliteStore::verify_audit_chain`].
//!
//! What a chain cannot show by itself: rows cut off at the end. Keep the [`ChainHead`] of a
//! report somewhere else (a log, another system) and compare it later to detect that.

use pin_core::audit::AuditEvent;
use pin_core::audit::chain::{self, ChainReport, GENESIS, StoredLink};
use pin_core::store::StoreError;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::db;

#[cfg(doc)]
use pin_core::audit::chain::ChainHead;

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
    let (id, prev) = match last {
        None => (0, GENESIS),
        Some((id, hash)) => (id, chain::hash32(&hash, "audit hash")?),
    };
    let mut insert = tx
        .prepare_cached(
            "INSERT INTO audit (id, tax_code, event, prev_hash, hash) VALUES (?1, ?2, ?3, ?4, ?5)",
        )
        .map_err(db)?;
    for row in chain::extend(id, prev, events)? {
        insert
            .execute(params![
                row.id,
                row.tax_code,
                row.event,
                row.prev_hash.as_slice(),
                row.hash.as_slice()
            ])
            .map_err(db)?;
    }
    Ok(())
}

/// Walks the whole chain in one read transaction.
pub(crate) fn verify(tx: &Transaction<'_>) -> Result<ChainReport, StoreError> {
    let mut stmt = tx
        .prepare("SELECT id, tax_code, event, prev_hash, hash FROM audit ORDER BY id")
        .map_err(db)?;
    let rows = stmt
        .query_map([], |row| {
            Ok(StoredLink {
                id: row.get(0)?,
                tax_code: row.get::<_, String>(1).ok(),
                event: row.get::<_, String>(2).ok(),
                prev_hash: row.get::<_, Vec<u8>>(3).ok(),
                hash: row.get::<_, Vec<u8>>(4).ok(),
            })
        })
        .map_err(db)?;
    chain::verify(rows.map(|r| r.map_err(db)))
}
