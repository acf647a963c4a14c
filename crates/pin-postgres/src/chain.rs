//! The hash-chained audit log, one chain for every instance that writes to the database:
//! pin-core's chain ([`pin_core::audit::chain`]) in the `audit` table.
//!
//! Row `n` stores the event as canonical JSON ([`pin_core::audit::chain::canonical`]) in a
//! `text` column, `prev_hash` = the `hash` of row `n − 1` (32 zero bytes for row 1), the
//! audit key id in `key_id` and `hash` = the HMAC-SHA-256 under that key of
//! `prev_hash ‖ event bytes` ([`pin_core::audit::chain::keyed_link`]); a row written without
//! an audit key (before schema 5, or by a store opened without one) has no `key_id` and
//! `hash = SHA-256(prev_hash ‖ event bytes)` — the same chain as pin-sqlite's, so a log can
//! be checked the same way whichever store wrote it. Ids run 1, 2, 3, … with no gap. The
//! first keyed row is recorded in `audit_keying` by a trigger; from then on unkeyed rows are
//! refused.
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
use pin_core::audit::chain::{self, ChainHead, ChainReport, StoredLink};
use pin_core::audit::key::{AuditKey, AuditKeyring};
use pin_core::store::StoreError;

use crate::pool::{Tx, TxError, get};

/// Appends `events` inside the caller's write transaction, keyed with `key` when given; call
/// it last, after the other writes, so that the chain head is held as briefly as possible.
pub(crate) fn append(
    tx: &mut Tx<'_>,
    key: Option<&AuditKey>,
    events: &[AuditEvent],
) -> Result<(), TxError> {
    if events.is_empty() {
        return Ok(());
    }
    let head = tx.query_one("SELECT id, hash FROM audit_head FOR UPDATE", &[])?;
    if key.is_none()
        && let Some(from) = keyed_from(tx)?
    {
        return Err(StoreError::Backend(
            format!("the audit log is keyed from row {from}: this store has no audit key to append with (open it with its audit key)")
                .into(),
        )
        .into());
    }
    let id: i64 = get(&head, 0)?;
    let prev = chain::hash32(get::<&[u8]>(&head, 1)?, "the audit head hash")?;
    for row in chain::extend_keyed(id, prev, key, events)? {
        let key_id = row.key_id.map(i64::from);
        let _ = tx.execute(
            "INSERT INTO audit (id, tax_code, event, prev_hash, hash, key_id) VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &row.id,
                &row.tax_code,
                &row.event,
                &row.prev_hash.as_slice(),
                &row.hash.as_slice(),
                &key_id,
            ],
        )?;
    }
    Ok(())
}

/// The id of the first keyed row, as recorded.
pub(crate) fn keyed_from(tx: &mut Tx<'_>) -> Result<Option<u64>, TxError> {
    let Some(row) = tx.query_opt("SELECT keyed_from FROM audit_keying", &[])? else {
        return Ok(None);
    };
    let from: i64 = get(&row, 0)?;
    Ok(Some(u64::try_from(from).map_err(|_| {
        StoreError::Corrupt(format!("audit keyed boundary {from}"))
    })?))
}

/// Walks the whole chain in one snapshot, then compares its end with the recorded head.
pub(crate) fn verify(tx: &mut Tx<'_>, keys: Option<&AuditKeyring>) -> Result<ChainReport, TxError> {
    let from = keyed_from(tx)?;
    let rows = tx.query(
        "SELECT id, tax_code, event, prev_hash, hash, key_id FROM audit ORDER BY id",
        &[],
    )?;
    let mut report = chain::verify_keyed(
        rows.iter().map(|row| {
            Ok::<_, TxError>(StoredLink {
                id: get(row, 0)?,
                tax_code: row.try_get::<_, &str>(1).ok(),
                event: row.try_get::<_, &str>(2).ok(),
                prev_hash: row.try_get::<_, &[u8]>(3).ok(),
                hash: row.try_get::<_, &[u8]>(4).ok(),
                key_id: row.try_get::<_, Option<i64>>(5).unwrap_or(Some(-1)),
            })
        }),
        keys,
        from,
    )?;
    if report.is_intact() {
        let head = tx.query_one("SELECT id, hash FROM audit_head", &[])?;
        let id: i64 = get(&head, 0)?;
        report.check_recorded_head(ChainHead {
            id: u64::try_from(id).unwrap_or(u64::MAX),
            hash: chain::hash32(get::<&[u8]>(&head, 1)?, "the audit head hash")?,
        });
    }
    Ok(report)
}
