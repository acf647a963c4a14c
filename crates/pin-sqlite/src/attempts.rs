//! The attempt protocol in SQL: each step reads the counter and the leases in flight inside
//! one `BEGIN IMMEDIATE` transaction, applies pin-core's shared rule
//! ([`pin_core::attempts`]) and writes back exactly what it returns. The write lock makes
//! the read-apply-write one atomic step across every connection and process.

use chrono::{DateTime, Utc};
use pin_core::audit::AuditEvent;
use pin_core::audit::key::AuditKey;
use pin_core::keycheck::KeyFingerprint;
use pin_core::secret::KeyId;
use pin_core::store::{
    Lease, LeaseId, Reservation, ReserveRequest, Settled, Settlement, StoreError, reserve_rule,
    settle_rule,
};
use pin_core::subject::Attempts;
use pin_core::tax_code::TaxCode;
use rusqlite::{OptionalExtension, Transaction, params};

use crate::chain;
use crate::store::db;

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| corrupt(format_args!("lease expiry {ms}")))
}

fn to_u64(v: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(format_args!("{what} {v}")))
}

/// The counter and the current serial, read under the write lock.
fn counter(tx: &Transaction<'_>, tax: &str) -> Result<(Attempts, Option<u64>), StoreError> {
    /// Counter serial, failures, blocked flag, current credential serial.
    type CounterRow = (Option<i64>, Option<i64>, Option<i64>, Option<i64>);
    let row: Option<CounterRow> = tx
        .prepare_cached(
            "SELECT a.serial, a.failures, a.blocked, c.serial FROM subjects s
               LEFT JOIN attempts a ON a.tax_code = s.tax_code
               LEFT JOIN credentials c ON c.tax_code = s.tax_code
              WHERE s.tax_code = ?1",
        )
        .and_then(|mut s| {
            s.query_row([tax], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        })
        .map_err(db)?;
    let Some((serial, failures, blocked, current)) = row else {
        return Err(StoreError::NotFound);
    };
    let (Some(serial), Some(failures), Some(blocked)) = (serial, failures, blocked) else {
        return Err(corrupt("the subject has no attempt counter"));
    };
    let attempts = Attempts {
        serial: to_u64(serial, "attempts serial")?,
        failures: u32::try_from(failures)
            .map_err(|_| corrupt(format_args!("attempts failures {failures}")))?,
        blocked: blocked != 0,
    };
    let current = current
        .map(|c| to_u64(c, "credential serial"))
        .transpose()?;
    Ok((attempts, current))
}

fn write_counter(tx: &Transaction<'_>, tax: &str, a: Attempts) -> Result<(), StoreError> {
    tx.prepare_cached("UPDATE attempts SET failures = ?2, blocked = ?3 WHERE tax_code = ?1")
        .and_then(|mut s| s.execute(params![tax, a.failures, a.blocked]))
        .map_err(db)?;
    Ok(())
}

/// [`pin_core::store::Store::reserve_attempt`] inside a write transaction.
pub(crate) fn reserve_in(
    tx: &Transaction<'_>,
    tax_code: &TaxCode,
    request: &ReserveRequest,
    key: Option<&AuditKey>,
) -> Result<Reservation, StoreError> {
    let tax = tax_code.as_str();
    let (attempts, current) = counter(tx, tax)?;
    let mut leases = Vec::new();
    {
        let mut stmt = tx
            .prepare_cached(
                "SELECT id, serial, expires_at FROM attempt_leases WHERE tax_code = ?1 ORDER BY id",
            )
            .map_err(db)?;
        let rows = stmt
            .query_map([tax], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(db)?;
        for row in rows {
            let (id, serial, expires) = row.map_err(db)?;
            leases.push(Lease {
                id: LeaseId(to_u64(id, "lease id")?),
                serial: to_u64(serial, "lease serial")?,
                expires_at: from_millis(expires)?,
            });
        }
    }
    // The id AUTOINCREMENT would give next: never one used before, so a late settlement of
    // an expired lease cannot take a newer lease for its own.
    let next: i64 = tx
        .prepare_cached(
            "SELECT max(coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'attempt_leases'), 0),
                        coalesce((SELECT max(id) FROM attempt_leases), 0)) + 1",
        )
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .map_err(db)?;
    let step = reserve_rule(
        tax_code,
        attempts,
        current,
        &leases,
        request,
        LeaseId(to_u64(next, "lease id")?),
    );
    if step.counter != attempts {
        write_counter(tx, tax, step.counter)?;
    }
    for id in &step.drop {
        let id = i64::try_from(id.0).map_err(|_| corrupt("lease id"))?;
        tx.prepare_cached("DELETE FROM attempt_leases WHERE id = ?1")
            .and_then(|mut s| s.execute([id]))
            .map_err(db)?;
    }
    if let Some(l) = step.insert {
        let id = i64::try_from(l.id.0).map_err(|_| corrupt("lease id"))?;
        let serial = i64::try_from(l.serial).map_err(|_| corrupt("lease serial"))?;
        tx.prepare_cached(
            "INSERT INTO attempt_leases (id, tax_code, serial, expires_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![id, tax, serial, millis(l.expires_at)]))
        .map_err(db)?;
    }
    chain::append(tx, key, &step.audit)?;
    Ok(step.answer)
}

/// [`pin_core::store::Store::settle_attempt`] inside a write transaction.
#[allow(clippy::too_many_arguments)] // the trait method's arguments and the audit key
pub(crate) fn settle_in(
    tx: &Transaction<'_>,
    tax_code: &TaxCode,
    serial: u64,
    lease: LeaseId,
    limit: u32,
    settlement: Settlement,
    audit: &AuditEvent,
    key: Option<&AuditKey>,
) -> Result<Settled, StoreError> {
    let tax = tax_code.as_str();
    let live = match i64::try_from(lease.0) {
        Ok(id) => {
            tx.prepare_cached("DELETE FROM attempt_leases WHERE id = ?1 AND tax_code = ?2")
                .and_then(|mut s| s.execute(params![id, tax]))
                .map_err(db)?
                == 1
        }
        Err(_) => false,
    };
    let (attempts, current) = match counter(tx, tax) {
        Ok(c) => c,
        Err(StoreError::NotFound) => return Ok(Settled::Stale),
        Err(e) => return Err(e),
    };
    let step = settle_rule(attempts, current, live, serial, limit, settlement, audit);
    if step.counter != attempts {
        write_counter(tx, tax, step.counter)?;
    }
    chain::append(tx, key, std::slice::from_ref(&step.audit))?;
    Ok(step.answer)
}

/// Every recorded pepper-key fingerprint.
pub(crate) fn fingerprints(
    tx: &Transaction<'_>,
) -> Result<Vec<(KeyId, KeyFingerprint)>, StoreError> {
    let mut stmt = tx
        .prepare_cached("SELECT key_id, fingerprint FROM key_fingerprints ORDER BY key_id")
        .map_err(db)?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))
        .map_err(db)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, fp) = row.map_err(db)?;
        let id = u32::try_from(id).map_err(|_| corrupt(format_args!("key id {id}")))?;
        let fp: [u8; 32] = fp
            .try_into()
            .map_err(|_| corrupt("a key fingerprint is not 32 bytes"))?;
        out.push((KeyId(id), KeyFingerprint(fp)));
    }
    Ok(out)
}

/// Records a fingerprint unless one is on record for the id; returns the one on record.
pub(crate) fn record_fingerprint(
    tx: &Transaction<'_>,
    id: KeyId,
    fingerprint: &KeyFingerprint,
) -> Result<KeyFingerprint, StoreError> {
    tx.prepare_cached(
        "INSERT INTO key_fingerprints (key_id, fingerprint) VALUES (?1, ?2)
         ON CONFLICT (key_id) DO NOTHING",
    )
    .and_then(|mut s| s.execute(params![id.0, fingerprint.0.as_slice()]))
    .map_err(db)?;
    let fp: Vec<u8> = tx
        .prepare_cached("SELECT fingerprint FROM key_fingerprints WHERE key_id = ?1")
        .and_then(|mut s| s.query_row([id.0], |r| r.get(0)))
        .map_err(db)?;
    let fp: [u8; 32] = fp
        .try_into()
        .map_err(|_| corrupt("a key fingerprint is not 32 bytes"))?;
    Ok(KeyFingerprint(fp))
}
