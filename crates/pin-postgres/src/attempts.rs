//! The attempt protocol in SQL: each step locks the subject's counter row
//! (`SELECT … FOR UPDATE`), reads the leases in flight, applies pin-core's shared rule
//! ([`pin_core::attempts`]) and writes back exactly what it returns, in one transaction.
//! Every step that changes a counter or its leases locks that row first, so the
//! read-apply-write is one atomic step across every connection, process and host.

use chrono::DateTime;
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

use crate::chain;
use crate::pool::{Tx, TxError, get};

fn corrupt(what: impl std::fmt::Display) -> TxError {
    StoreError::Corrupt(what.to_string()).into()
}

fn to_u64(v: i64, what: &str) -> Result<u64, TxError> {
    u64::try_from(v).map_err(|_| corrupt(format_args!("{what} {v}")))
}

fn to_i64(v: u64, what: &str) -> Result<i64, TxError> {
    i64::try_from(v).map_err(|_| corrupt(format_args!("{what} {v}")))
}

/// Locks the counter row and reads it with the current serial. `None`: no such subject.
fn lock_counter(tx: &mut Tx<'_>, tax: &str) -> Result<Option<(Attempts, Option<u64>)>, TxError> {
    let Some(row) = tx.query_opt(
        "SELECT serial, failures, blocked FROM attempts WHERE tax_code = $1 FOR UPDATE",
        &[&tax],
    )?
    else {
        return if tx
            .query_opt("SELECT 1 FROM subjects WHERE tax_code = $1", &[&tax])?
            .is_some()
        {
            Err(corrupt("the subject has no attempt counter"))
        } else {
            Ok(None)
        };
    };
    let serial: i64 = get(&row, 0)?;
    let failures: i64 = get(&row, 1)?;
    let attempts = Attempts {
        serial: to_u64(serial, "attempts serial")?,
        failures: u32::try_from(failures)
            .map_err(|_| corrupt(format_args!("attempts failures {failures}")))?,
        blocked: get(&row, 2)?,
    };
    // A statement of its own, after the lock: it sees every save committed before it.
    let current = tx
        .query_opt(
            "SELECT serial FROM credentials WHERE tax_code = $1",
            &[&tax],
        )?
        .map(|r| get::<i64>(&r, 0))
        .transpose()?
        .map(|c| to_u64(c, "credential serial"))
        .transpose()?;
    Ok(Some((attempts, current)))
}

fn write_counter(tx: &mut Tx<'_>, tax: &str, a: Attempts) -> Result<(), TxError> {
    let _ = tx.execute(
        "UPDATE attempts SET failures = $2, blocked = $3 WHERE tax_code = $1",
        &[&tax, &i64::from(a.failures), &a.blocked],
    )?;
    Ok(())
}

/// [`pin_core::store::Store::reserve_attempt`] inside a write transaction.
pub(crate) fn reserve_in(
    tx: &mut Tx<'_>,
    tax_code: &TaxCode,
    request: &ReserveRequest,
    key: Option<&AuditKey>,
) -> Result<Reservation, TxError> {
    let tax = tax_code.as_str();
    let Some((attempts, current)) = lock_counter(tx, tax)? else {
        return Err(StoreError::NotFound.into());
    };
    let mut leases = Vec::new();
    for row in tx.query(
        "SELECT id, serial, expires_at FROM attempt_leases WHERE tax_code = $1 ORDER BY id",
        &[&tax],
    )? {
        let id: i64 = get(&row, 0)?;
        let serial: i64 = get(&row, 1)?;
        let expires: i64 = get(&row, 2)?;
        leases.push(Lease {
            id: LeaseId(to_u64(id, "lease id")?),
            serial: to_u64(serial, "lease serial")?,
            expires_at: DateTime::from_timestamp_millis(expires)
                .ok_or_else(|| corrupt(format_args!("lease expiry {expires}")))?,
        });
    }
    // Decide first with a placeholder id: a sequence number is drawn only for a grant.
    let mut step = reserve_rule(tax_code, attempts, current, &leases, request, LeaseId(0));
    if step.insert.is_some() {
        let id: i64 = get(
            &tx.query_one("SELECT nextval('attempt_lease_ids')", &[])?,
            0,
        )?;
        step = reserve_rule(
            tax_code,
            attempts,
            current,
            &leases,
            request,
            LeaseId(to_u64(id, "lease id")?),
        );
    }
    if step.counter != attempts {
        write_counter(tx, tax, step.counter)?;
    }
    for id in &step.drop {
        let id = to_i64(id.0, "lease id")?;
        let _ = tx.execute("DELETE FROM attempt_leases WHERE id = $1", &[&id])?;
    }
    if let Some(l) = step.insert {
        let id = to_i64(l.id.0, "lease id")?;
        let serial = to_i64(l.serial, "lease serial")?;
        let _ = tx.execute(
            "INSERT INTO attempt_leases (id, tax_code, serial, expires_at) VALUES ($1, $2, $3, $4)",
            &[&id, &tax, &serial, &l.expires_at.timestamp_millis()],
        )?;
    }
    chain::append(tx, key, &step.audit)?;
    Ok(step.answer)
}

/// [`pin_core::store::Store::settle_attempt`] inside a write transaction.
#[allow(clippy::too_many_arguments)] // the trait method's arguments and the audit key
pub(crate) fn settle_in(
    tx: &mut Tx<'_>,
    tax_code: &TaxCode,
    serial: u64,
    lease: LeaseId,
    limit: u32,
    settlement: Settlement,
    audit: &AuditEvent,
    key: Option<&AuditKey>,
) -> Result<Settled, TxError> {
    let tax = tax_code.as_str();
    let Some((attempts, current)) = lock_counter(tx, tax)? else {
        return Ok(Settled::Stale);
    };
    let live = match i64::try_from(lease.0) {
        Ok(id) => {
            tx.execute(
                "DELETE FROM attempt_leases WHERE id = $1 AND tax_code = $2",
                &[&id, &tax],
            )? == 1
        }
        Err(_) => false,
    };
    let step = settle_rule(attempts, current, live, serial, limit, settlement, audit);
    if step.counter != attempts {
        write_counter(tx, tax, step.counter)?;
    }
    chain::append(tx, key, std::slice::from_ref(&step.audit))?;
    Ok(step.answer)
}

fn fingerprint(row: &postgres::Row) -> Result<(KeyId, KeyFingerprint), TxError> {
    let id: i64 = get(row, 0)?;
    let fp: Vec<u8> = get(row, 1)?;
    let id = u32::try_from(id).map_err(|_| corrupt(format_args!("key id {id}")))?;
    let fp: [u8; 32] = fp
        .try_into()
        .map_err(|_| corrupt("a key fingerprint is not 32 bytes"))?;
    Ok((KeyId(id), KeyFingerprint(fp)))
}

/// Every recorded pepper-key fingerprint.
pub(crate) fn fingerprints(tx: &mut Tx<'_>) -> Result<Vec<(KeyId, KeyFingerprint)>, TxError> {
    tx.query(
        "SELECT key_id, fingerprint FROM key_fingerprints ORDER BY key_id",
        &[],
    )?
    .iter()
    .map(fingerprint)
    .collect()
}

/// Records a fingerprint unless one is on record for the id; returns the one on record.
pub(crate) fn record_fingerprint(
    tx: &mut Tx<'_>,
    id: KeyId,
    fp: &KeyFingerprint,
) -> Result<KeyFingerprint, TxError> {
    let _ = tx.execute(
        "INSERT INTO key_fingerprints (key_id, fingerprint) VALUES ($1, $2)
         ON CONFLICT (key_id) DO NOTHING",
        &[&i64::from(id.0), &fp.0.as_slice()],
    )?;
    let row = tx.query_one(
        "SELECT key_id, fingerprint FROM key_fingerprints WHERE key_id = $1",
        &[&i64::from(id.0)],
    )?;
    Ok(fingerprint(&row)?.1)
}
