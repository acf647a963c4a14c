//! The hash-chained audit log: pin-core's chain ([`pin_core::audit::chain`]) in the `audit`
//! table.
//!
//! Row `n` stores the event as canonical JSON, `prev_hash` = the `hash` of row `n − 1` (32
//! zero bytes for row 1), the audit key id in `key_id`, and `hash` = the HMAC-SHA-256 under
//! that audit key of `prev_hash ‖ event bytes` ([`pin_core::audit::chain::keyed_link`]); a
//! row written without an audit key (before schema 5, or by a store opened without one) has
//! no `key_id` and `hash = SHA-256(prev_hash ‖ event bytes)`. Ids run 1, 2, 3, … with no
//! gap. Triggers refuse `UPDATE` and `DELETE` of audit rows and any insert that does not
//! extend the chain; the hashes make a change made around the triggers (another tool, a
//! `DROP TRIGGER`, a hex editor) visible to [`crate::SqliteStore::verify_audit_chain`], and
//! the keyed ones cannot be recomputed without the audit key.
//!
//! The first keyed row is recorded in `audit_keying` (a trigger does it, in the inserting
//! transaction); from then on a trigger refuses unkeyed rows, and the verification expects
//! every row from that boundary on to be keyed.
//!
//! What a chain cannot show by itself: rows cut off at the end. Keep the [`ChainHead`] of a
//! report somewhere else (a log, another system) and compare it later to detect that.

use pin_core::audit::AuditEvent;
use pin_core::audit::chain::{self, ChainReport, GENESIS, StoredLink};
use pin_core::audit::key::{AuditKey, AuditKeyring};
use pin_core::store::StoreError;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::db;

#[cfg(doc)]
use pin_core::audit::chain::ChainHead;

/// Appends `events` inside the caller's write transaction, keyed with `key` when given.
pub(crate) fn append(
    tx: &Transaction<'_>,
    key: Option<&AuditKey>,
    events: &[AuditEvent],
) -> Result<(), StoreError> {
    if events.is_empty() {
        return Ok(());
    }
    if key.is_none()
        && let Some(from) = keyed_from(tx)?
    {
        return Err(StoreError::Backend(
            format!("the audit log is keyed from row {from}: this store has no audit key to append with (open it with its audit key)")
                .into(),
        ));
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
            "INSERT INTO audit (id, tax_code, event, prev_hash, hash, key_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .map_err(db)?;
    for row in chain::extend_keyed(id, prev, key, events)? {
        insert
            .execute(params![
                row.id,
                row.tax_code,
                row.event,
                row.prev_hash.as_slice(),
                row.hash.as_slice(),
                row.key_id,
            ])
            .map_err(db)?;
    }
    Ok(())
}

/// The id of the first keyed row, as recorded.
pub(crate) fn keyed_from(tx: &Transaction<'_>) -> Result<Option<u64>, StoreError> {
    let from: Option<i64> = tx
        .query_row("SELECT keyed_from FROM audit_keying", [], |r| r.get(0))
        .optional()
        .map_err(db)?;
    from.map(|f| {
        u64::try_from(f).map_err(|_| StoreError::Corrupt(format!("audit keyed boundary {f}")))
    })
    .transpose()
}

/// Walks the whole chain in one read transaction.
pub(crate) fn verify(
    tx: &Transaction<'_>,
    keys: Option<&AuditKeyring>,
) -> Result<ChainReport, StoreError> {
    let from = keyed_from(tx)?;
    let mut stmt = tx
        .prepare("SELECT id, tax_code, event, prev_hash, hash, key_id FROM audit ORDER BY id")
        .map_err(db)?;
    let rows = stmt
        .query_map([], |row| {
            Ok(StoredLink {
                id: row.get(0)?,
                tax_code: row.get::<_, String>(1).ok(),
                event: row.get::<_, String>(2).ok(),
                prev_hash: row.get::<_, Vec<u8>>(3).ok(),
                hash: row.get::<_, Vec<u8>>(4).ok(),
                key_id: row.get::<_, Option<i64>>(5).unwrap_or(Some(-1)),
            })
        })
        .map_err(db)?;
    chain::verify_keyed(rows.map(|r| r.map_err(db)), keys, from)
}
