//! The hash chain of the audit log, as the SQL adapters (pin-sqlite, pin-postgres) store it.
//! Pure: no I/O; each adapter only runs its `SELECT` and `INSERT`.
//!
//! Row `n` stores the event as canonical JSON ([`canonical`]: `serde_json` of
//! [`AuditEvent`], fields in declaration order), `prev_hash` = the `hash` of row `n − 1`
//! ([`GENESIS`], 32 zero bytes, for row 1) and `hash = SHA-256(prev_hash ‖ event bytes)`
//! ([`link`]). Ids run 1, 2, 3, … with no gap. So a log is checked the same way whichever
//! store wrote it: [`verify`] walks the rows and reports the first broken or missing link.
//!
//! What a chain cannot show by itself: rows cut off at the end. Keep the [`ChainHead`] of a
//! report somewhere else (a log, another system) and compare it later to detect that; a
//! store that records its head ([`ChainReport::check_recorded_head`]) reports it itself.
//!
//! # Keyed rows
//!
//! An unkeyed chain proves nothing against someone who can write to the database: rewrite
//! an event, recompute every hash after it, and the chain verifies again. So rows are
//! *keyed*: a row that stores an audit key id `k` has
//! `hash = HMAC-SHA-256(key k, KEYED_LABEL ‖ k (4 bytes, big-endian) ‖ prev_hash ‖ event)`
//! ([`keyed_link`]), which nobody without the key ([`AuditKey`]) can recompute.
//!
//! A database written before keying has unkeyed rows; they stay as they are. The store
//! records the *keyed boundary*, the id of the first keyed row, and from it on every row must
//! be keyed ([`verify_keyed`] reports [`BreakKind::WrongKeying`] otherwise). The rows before
//! the boundary verify as SHA-256 links, and the first keyed row's HMAC covers the hash of
//! the last of them, so none of them can be changed either without breaking a keyed link.
//! What the boundary alone cannot show is a boundary moved, or removed, by someone who also
//! rewrote every keyed row as an unkeyed one: compare it with the boundary you expect
//! ([`ChainReport::check_keyed_from`], e.g. 1 for a database keyed from its creation), and
//! keep the head elsewhere.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use super::key::{AuditKey, AuditKeyring};
use super::{AuditEvent, AuditRecord, RecordLink};
use crate::store::StoreError;

/// What a keyed link MACs before the key id, the previous hash and the event: fixed, so that
/// an HMAC under the audit key made for another purpose is never a valid link.
pub const KEYED_LABEL: &[u8] = b"pin-lifecycle audit chain v1\0";

/// `prev_hash` of the first row.
pub const GENESIS: [u8; 32] = [0; 32];

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
    /// The row's `hash` is not the SHA-256 (for a keyed row: the HMAC under its key) of its
    /// `prev_hash` and event: the row was changed.
    HashMismatch,
    /// The row is unkeyed although the chain is keyed from an earlier row (or keyed
    /// although the chain records no keyed boundary at or before it): written around the
    /// store, or rewritten by someone without the audit key.
    WrongKeying {
        /// Whether the row should have been keyed.
        expected_keyed: bool,
    },
    /// The row is keyed under an audit key id the verifier does not hold (or the verifier
    /// was given no audit key at all): it cannot be checked.
    UnknownKey {
        /// The row's key id.
        key_id: u32,
    },
    /// Every row verifies, but the keyed boundary the store records (the id of its first
    /// keyed row; `None`: no row keyed) is not the one expected
    /// ([`ChainReport::check_keyed_from`]): rows may have been rewritten unkeyed.
    KeyedFromMismatch {
        /// The boundary as recorded.
        recorded: Option<u64>,
        /// The boundary expected.
        expected: u64,
    },
    /// The row cannot be read as an audit event in canonical form.
    Unreadable {
        /// Why.
        reason: String,
    },
    /// Every row verifies, but the chain head the store records (pin-postgres:
    /// `audit_head`) is not the last row: rows were cut off at the end, or the head was
    /// changed. A store that records no head never reports it.
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

/// The result of [`verify`] (and of the stores' `verify_audit_chain`).
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

    /// Compares the end of an intact chain with the head the store recorded, and reports
    /// [`BreakKind::HeadMismatch`] when they differ (an empty chain ends at id 0 and
    /// [`GENESIS`]). A report that is already broken is left as it is.
    pub fn check_recorded_head(&mut self, recorded: ChainHead) {
        if self.first_break.is_some() {
            return;
        }
        let last = self.head.unwrap_or(ChainHead {
            id: 0,
            hash: GENESIS,
        });
        if recorded != last {
            self.first_break = Some(ChainBreak {
                id: self.intact_rows + 1,
                kind: BreakKind::HeadMismatch { recorded },
            });
        }
    }
}

impl ChainReport {
    /// Compares the keyed boundary the store records (`recorded`: the id of the first keyed
    /// row, `None` when no row is keyed) with the one `expected` (1 for a database keyed
    /// from its creation), and reports [`BreakKind::KeyedFromMismatch`] when they differ —
    /// except that a chain with fewer than `expected` rows, no boundary recorded and every
    /// row intact is fine (no row has been written past the boundary yet). A report that is
    /// already broken is left as it is.
    pub fn check_keyed_from(&mut self, recorded: Option<u64>, expected: u64) {
        if self.first_break.is_some() || recorded == Some(expected) {
            return;
        }
        if recorded.is_none() && self.intact_rows < expected {
            return;
        }
        self.first_break = Some(ChainBreak {
            id: recorded.unwrap_or(self.intact_rows + 1).min(expected),
            kind: BreakKind::KeyedFromMismatch { recorded, expected },
        });
    }
}

/// `HMAC-SHA-256(key, KEYED_LABEL ‖ key id ‖ prev ‖ event)`: the `hash` of a row keyed with
/// `key` whose `prev_hash` is `prev`.
#[must_use]
pub fn keyed_link(key: &AuditKey, prev: &[u8; 32], event: &[u8]) -> [u8; 32] {
    #[allow(clippy::expect_used)]
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose_secret())
        .expect("HMAC accepts keys of every length");
    mac.update(KEYED_LABEL);
    mac.update(&key.id().to_be_bytes());
    mac.update(prev);
    mac.update(event);
    mac.finalize().into_bytes().into()
}

/// `SHA-256(prev ‖ event)`: the `hash` of an unkeyed row whose `prev_hash` is `prev`.
#[must_use]
pub fn link(prev: &[u8; 32], event: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(event);
    h.finalize().into()
}

/// The canonical bytes of `event`, as stored and hashed: its `serde_json`, fields in
/// declaration order.
///
/// # Errors
/// [`StoreError::Backend`] when the event cannot be written as JSON.
pub fn canonical(event: &AuditEvent) -> Result<String, StoreError> {
    serde_json::to_string(event).map_err(|e| StoreError::Backend(Box::new(e)))
}

/// The event stored in a row of the audit log, read back for the log.
///
/// # Errors
/// [`StoreError::Corrupt`] when `event` is not an audit event, or one about another tax code
/// than the row's `tax_code` column.
pub fn read_event(tax_code: &str, event: &str) -> Result<AuditEvent, StoreError> {
    let event: AuditEvent = serde_json::from_str(event)
        .map_err(|e| StoreError::Corrupt(format!("audit event: {e}")))?;
    if event.subject.as_str() != tax_code {
        return Err(StoreError::Corrupt("audit row of another tax code".into()));
    }
    Ok(event)
}

/// A stored hash as 32 bytes.
///
/// # Errors
/// [`StoreError::Corrupt`] ("`what` is not 32 bytes") when it has another length.
pub fn hash32(bytes: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes).map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// A row of the audit log as read, turned into an [`AuditRecord`] with its link: the shared
/// conversion of the stores' [`crate::store::Store::audit_page`].
///
/// # Errors
/// [`StoreError::Corrupt`] when the id is not positive, the event is not an audit event of
/// the row's tax code, a hash is not 32 bytes or the key id is not a `u32`.
pub fn record(
    id: i64,
    tax_code: &str,
    event: &str,
    prev_hash: &[u8],
    hash: &[u8],
    key_id: Option<i64>,
) -> Result<AuditRecord, StoreError> {
    let id = u64::try_from(id)
        .ok()
        .filter(|i| *i >= 1)
        .ok_or_else(|| StoreError::Corrupt(format!("audit row id {id}")))?;
    let key_id = key_id
        .map(u32::try_from)
        .transpose()
        .map_err(|_| StoreError::Corrupt("audit key id out of range".into()))?;
    Ok(AuditRecord {
        id,
        event: read_event(tax_code, event)?,
        link: Some(RecordLink {
            stored: event.to_owned(),
            prev_hash: hash32(prev_hash, "audit prev_hash")?,
            hash: hash32(hash, "audit hash")?,
            key_id,
        }),
    })
}

/// A row to insert into the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewLink<'a> {
    /// `id`.
    pub id: i64,
    /// `tax_code`: the event's subject.
    pub tax_code: &'a str,
    /// `event`: the canonical JSON of the event.
    pub event: String,
    /// `prev_hash`: the hash of the row before.
    pub prev_hash: [u8; 32],
    /// `hash`: [`keyed_link`] (or, unkeyed, [`link`]) of `prev_hash` and `event`.
    pub hash: [u8; 32],
    /// `key_id`: the audit key id, `None` for an unkeyed row.
    pub key_id: Option<u32>,
}

/// The unkeyed rows that append `events`, in order, to a chain whose last row has id
/// `last_id` and hash `last_hash` (0 and [`GENESIS`] for an empty chain): [`extend_keyed`]
/// without a key.
///
/// # Errors
/// [`StoreError::Backend`] when an event cannot be written as JSON.
pub fn extend<'a>(
    last_id: i64,
    last_hash: [u8; 32],
    events: &'a [AuditEvent],
) -> Result<Vec<NewLink<'a>>, StoreError> {
    extend_keyed(last_id, last_hash, None, events)
}

/// The rows that append `events`, in order, to a chain whose last row has id `last_id` and
/// hash `last_hash` (0 and [`GENESIS`] for an empty chain), keyed with `key` ([`keyed_link`])
/// or, without one, unkeyed ([`link`]).
///
/// # Errors
/// [`StoreError::Backend`] when an event cannot be written as JSON.
pub fn extend_keyed<'a>(
    last_id: i64,
    last_hash: [u8; 32],
    key: Option<&AuditKey>,
    events: &'a [AuditEvent],
) -> Result<Vec<NewLink<'a>>, StoreError> {
    let (mut id, mut prev) = (last_id, last_hash);
    events
        .iter()
        .map(|event| {
            let bytes = canonical(event)?;
            let hash = match key {
                Some(k) => keyed_link(k, &prev, bytes.as_bytes()),
                None => link(&prev, bytes.as_bytes()),
            };
            id += 1;
            let row = NewLink {
                id,
                tax_code: event.subject.as_str(),
                event: bytes,
                prev_hash: prev,
                hash,
                key_id: key.map(AuditKey::id),
            };
            prev = hash;
            Ok(row)
        })
        .collect()
}

/// A row of the audit log as read, for [`verify`]. A column is `None` when the database
/// holds a value of another type there; `S` is text (`String`, `&str`), `B` bytes
/// (`Vec<u8>`, `&[u8]`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredLink<S, B> {
    /// `id`.
    pub id: i64,
    /// `tax_code`.
    pub tax_code: Option<S>,
    /// `event`: the canonical JSON of the event.
    pub event: Option<S>,
    /// `prev_hash`.
    pub prev_hash: Option<B>,
    /// `hash`.
    pub hash: Option<B>,
    /// `key_id`: `None` for an unkeyed row (SQL `NULL`). A value of another type, or out of
    /// the range of a `u32`, should be given as `Some(-1)`: the row is then unreadable.
    pub key_id: Option<i64>,
}

/// Walks the unkeyed rows of an audit log in id order and reports the first broken or
/// missing link: [`verify_keyed`] with no key and no keyed boundary, so a keyed row is
/// reported as [`BreakKind::WrongKeying`].
///
/// # Errors
/// As [`verify_keyed`].
pub fn verify<I, S, B, E>(rows: I) -> Result<ChainReport, E>
where
    I: IntoIterator<Item = Result<StoredLink<S, B>, E>>,
    S: AsRef<str>,
    B: AsRef<[u8]>,
    E: From<StoreError>,
{
    verify_keyed(rows, None, None)
}

/// Walks the rows of an audit log in id order and reports the first broken or missing link.
/// Rows before `keyed_from` (all rows when `None`: the store records no keyed row) must be
/// unkeyed SHA-256 links; rows from it on must be keyed, each under the key of `keys` its
/// key id names. Stops reading at the first break, so a failure to read a later row is not
/// an error.
///
/// # Errors
/// The first error of `rows` up to the first break; [`StoreError::Backend`] (as `E`) when an
/// event cannot be written back as JSON. A broken chain is not an error: it is reported in
/// [`ChainReport::first_break`].
pub fn verify_keyed<I, S, B, E>(
    rows: I,
    keys: Option<&AuditKeyring>,
    keyed_from: Option<u64>,
) -> Result<ChainReport, E>
where
    I: IntoIterator<Item = Result<StoredLink<S, B>, E>>,
    S: AsRef<str>,
    B: AsRef<[u8]>,
    E: From<StoreError>,
{
    let mut report = ChainReport {
        intact_rows: 0,
        head: None,
        first_break: None,
    };
    let mut prev = GENESIS;
    for (expected, row) in (1_u64..).zip(rows) {
        let row = row?;
        let id = u64::try_from(row.id).unwrap_or(0);
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
        let (Some(tax_code), Some(event), Some(prev_hash), Some(hash)) =
            (row.tax_code, row.event, row.prev_hash, row.hash)
        else {
            report.first_break = unreadable("a column has the wrong type");
            break;
        };
        let (tax_code, event) = (tax_code.as_ref(), event.as_ref());
        let (Ok(prev_hash), Ok(hash)) = (
            <[u8; 32]>::try_from(prev_hash.as_ref()),
            <[u8; 32]>::try_from(hash.as_ref()),
        ) else {
            report.first_break = unreadable("a hash is not 32 bytes");
            break;
        };
        let Ok(key_id) = row.key_id.map(u32::try_from).transpose() else {
            report.first_break = unreadable("the key id is not a 32-bit unsigned number");
            break;
        };
        let expected_keyed = keyed_from.is_some_and(|b| id >= b);
        if key_id.is_some() != expected_keyed {
            report.first_break = broken(BreakKind::WrongKeying { expected_keyed });
            break;
        }
        if prev_hash != prev {
            report.first_break = broken(BreakKind::LinkMismatch);
            break;
        }
        let computed = match key_id {
            None => link(&prev, event.as_bytes()),
            Some(key_id) => match keys.and_then(|k| k.get(key_id)) {
                Some(key) => keyed_link(key, &prev, event.as_bytes()),
                None => {
                    report.first_break = broken(BreakKind::UnknownKey { key_id });
                    break;
                }
            },
        };
        if computed != hash {
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
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::tax_code::TaxCode;

    fn events(n: usize) -> Vec<AuditEvent> {
        let subject = TaxCode::parse("RSSMRA85T10A562S").unwrap();
        (0..n)
            .map(|i| AuditEvent {
                at: Utc.with_ymd_and_hms(2026, 3, 2, 9, 30, 0).unwrap(),
                subject: subject.clone(),
                actor: "test".into(),
                action: format!("action-{i}"),
                outcome: "ok".into(),
                serial: None,
                channels: Vec::new(),
                detail: String::new(),
            })
            .collect()
    }

    type Row = StoredLink<String, Vec<u8>>;

    fn stored(links: &[NewLink<'_>]) -> Vec<Row> {
        links
            .iter()
            .map(|l| StoredLink {
                id: l.id,
                tax_code: Some(l.tax_code.to_owned()),
                event: Some(l.event.clone()),
                prev_hash: Some(l.prev_hash.to_vec()),
                hash: Some(l.hash.to_vec()),
                key_id: l.key_id.map(i64::from),
            })
            .collect()
    }

    fn check(rows: Vec<Row>) -> ChainReport {
        verify(rows.into_iter().map(Ok::<_, StoreError>)).unwrap()
    }

    #[test]
    fn extended_chains_verify_and_changes_are_found() {
        let events = events(3);
        let links = extend(0, GENESIS, &events).unwrap();
        assert_eq!(links[0].prev_hash, GENESIS);
        assert_eq!(links[1].prev_hash, links[0].hash);
        assert_eq!(
            links[2].hash,
            link(&links[1].hash, links[2].event.as_bytes())
        );
        let report = check(stored(&links));
        assert!(report.is_intact());
        assert_eq!(report.intact_rows, 3);
        assert_eq!(
            report.head,
            Some(ChainHead {
                id: 3,
                hash: links[2].hash
            })
        );

        // Appending to the head continues the same chain.
        let more = extend(3, links[2].hash, &events[..1]).unwrap();
        assert_eq!((more[0].id, more[0].prev_hash), (4, links[2].hash));

        let mut changed = stored(&links);
        changed[1].event = Some(changed[1].event.take().unwrap().replace("action-1", "x"));
        let b = check(changed).first_break.unwrap();
        assert_eq!((b.id, b.kind), (2, BreakKind::HashMismatch));

        let mut gap = stored(&links);
        let _ = gap.remove(1);
        let b = check(gap).first_break.unwrap();
        assert_eq!((b.id, b.kind), (2, BreakKind::Missing { next_present: 3 }));

        let mut wrong_type = stored(&links);
        wrong_type[0].hash = None;
        let report = check(wrong_type);
        assert_eq!(report.intact_rows, 0);
        assert!(matches!(
            report.first_break.unwrap().kind,
            BreakKind::Unreadable { .. }
        ));
    }

    #[test]
    fn a_recorded_head_behind_the_last_row_is_reported() {
        let events = events(2);
        let links = extend(0, GENESIS, &events).unwrap();
        let mut report = check(stored(&links));
        let at_end = report.head.unwrap();
        report.check_recorded_head(at_end);
        assert!(report.is_intact());
        let recorded = ChainHead {
            id: 1,
            hash: links[0].hash,
        };
        report.check_recorded_head(recorded);
        let b = report.first_break.unwrap();
        assert_eq!((b.id, b.kind), (3, BreakKind::HeadMismatch { recorded }));

        let mut empty = check(Vec::new());
        empty.check_recorded_head(ChainHead {
            id: 0,
            hash: GENESIS,
        });
        assert!(empty.is_intact());
    }

    fn key(id: u32, byte: u8) -> AuditKey {
        AuditKey::new(id, &[byte; 32]).unwrap()
    }

    fn keyed_check(rows: Vec<Row>, keys: Option<&AuditKeyring>, from: Option<u64>) -> ChainReport {
        verify_keyed(rows.into_iter().map(Ok::<_, StoreError>), keys, from).unwrap()
    }

    /// Rewrites row `at` (0-based) with `edit` and recomputes every hash from it on, as an
    /// attacker with write access to the database would: with `key` when it has one, else
    /// as unkeyed SHA-256 links (the key ids are left as they are).
    fn rewrite(rows: &mut [Row], at: usize, edit: &dyn Fn(&str) -> String, key: Option<&AuditKey>) {
        let e = rows[at].event.take().unwrap();
        rows[at].event = Some(edit(&e));
        let mut prev = if at == 0 {
            GENESIS
        } else {
            hash32(rows[at - 1].hash.as_ref().unwrap(), "h").unwrap()
        };
        for row in rows.iter_mut().skip(at) {
            let ev = row.event.clone().unwrap();
            let h = match key {
                Some(k) => keyed_link(k, &prev, ev.as_bytes()),
                None => link(&prev, ev.as_bytes()),
            };
            row.prev_hash = Some(prev.to_vec());
            row.hash = Some(h.to_vec());
            prev = h;
        }
    }

    #[test]
    fn keyed_chains_verify_only_under_their_key() {
        let k1 = key(1, 7);
        let ring = AuditKeyring::new(k1.clone());
        let events = events(3);
        let links = extend_keyed(0, GENESIS, Some(&k1), &events).unwrap();
        assert!(links.iter().all(|l| l.key_id == Some(1)));
        assert_eq!(
            links[0].hash,
            keyed_link(&k1, &GENESIS, links[0].event.as_bytes())
        );
        assert_ne!(links[0].hash, link(&GENESIS, links[0].event.as_bytes()));
        let report = keyed_check(stored(&links), Some(&ring), Some(1));
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.intact_rows, 3);

        // Without the key, or with another key of the same id, a keyed row cannot verify.
        let b = keyed_check(stored(&links), None, Some(1))
            .first_break
            .unwrap();
        assert_eq!((b.id, b.kind), (1, BreakKind::UnknownKey { key_id: 1 }));
        let other = AuditKeyring::new(key(1, 8));
        let b = keyed_check(stored(&links), Some(&other), Some(1))
            .first_break
            .unwrap();
        assert_eq!((b.id, b.kind), (1, BreakKind::HashMismatch));
        // The plain verify sees a keyed row where it expects none.
        let b = check(stored(&links)).first_break.unwrap();
        assert_eq!(
            (b.id, b.kind),
            (
                1,
                BreakKind::WrongKeying {
                    expected_keyed: false
                }
            )
        );
    }

    #[test]
    fn rewriting_a_rejection_and_recomputing_fails_without_the_key() {
        let k1 = key(1, 7);
        let ring = AuditKeyring::new(k1.clone());
        let mut events = events(3);
        events[1].outcome = "rejected".into();
        let links = extend_keyed(0, GENESIS, Some(&k1), &events).unwrap();
        let accept = |e: &str| e.replace("\"rejected\"", "\"accepted\"");

        // Recomputed with a guessed key, keeping the key ids: the HMAC does not match.
        let mut forged = stored(&links);
        rewrite(&mut forged, 1, &accept, Some(&key(1, 9)));
        assert!(forged[1].event.as_ref().unwrap().contains("accepted"));
        let b = keyed_check(forged, Some(&ring), Some(1))
            .first_break
            .unwrap();
        assert_eq!((b.id, b.kind), (2, BreakKind::HashMismatch));

        // Recomputed as unkeyed SHA-256 rows past the boundary: refused as unkeyed.
        let mut downgraded = stored(&links);
        rewrite(&mut downgraded, 1, &accept, None);
        for row in &mut downgraded[1..] {
            row.key_id = None;
        }
        let b = keyed_check(downgraded.clone(), Some(&ring), Some(1))
            .first_break
            .unwrap();
        assert_eq!(
            (b.id, b.kind),
            (
                2,
                BreakKind::WrongKeying {
                    expected_keyed: true
                }
            )
        );

        // Every row downgraded and the boundary removed: the walk alone passes, the
        // expected boundary does not.
        let mut all = stored(&links);
        rewrite(&mut all, 0, &|e: &str| e.to_owned(), None);
        rewrite(&mut all, 1, &accept, None);
        for row in &mut all {
            row.key_id = None;
        }
        let mut report = keyed_check(all, Some(&ring), None);
        assert!(report.is_intact());
        report.check_keyed_from(None, 1);
        let b = report.first_break.unwrap();
        assert_eq!(
            (b.id, b.kind),
            (
                1,
                BreakKind::KeyedFromMismatch {
                    recorded: None,
                    expected: 1
                }
            )
        );
    }

    #[test]
    fn a_legacy_prefix_stays_verifiable_and_is_sealed_by_the_first_keyed_row() {
        let k1 = key(1, 7);
        let k2 = key(2, 3);
        let ring = AuditKeyring::new(k2.clone()).with(k1.clone()).unwrap();
        assert_eq!(ring.current().id(), 2);
        assert_eq!(ring.ids().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(
            AuditKeyring::new(key(1, 0)).with(key(1, 1)).unwrap_err(),
            crate::audit::key::AuditKeyError::DuplicateId { id: 1 }
        );
        let events = events(5);
        let mut links = extend(0, GENESIS, &events[..2]).unwrap();
        let legacy_head = links[1].hash;
        links.extend(extend_keyed(2, legacy_head, Some(&k1), &events[2..4]).unwrap());
        let head = links[3].hash;
        links.extend(extend_keyed(4, head, Some(ring.current()), &events[4..]).unwrap());
        assert_eq!(
            links.iter().map(|l| l.key_id).collect::<Vec<_>>(),
            [None, None, Some(1), Some(1), Some(2)]
        );

        let mut report = keyed_check(stored(&links), Some(&ring), Some(3));
        assert!(report.is_intact(), "{report:?}");
        report.check_keyed_from(Some(3), 3);
        assert!(report.is_intact());
        let mut moved = report.clone();
        moved.check_keyed_from(Some(3), 1);
        assert!(matches!(
            moved.first_break.unwrap().kind,
            BreakKind::KeyedFromMismatch { .. }
        ));

        // A legacy row rewritten and its SHA-256 links recomputed breaks the first keyed row.
        let mut forged = stored(&links);
        let e = forged[0].event.take().unwrap();
        forged[0].event = Some(e.replace("action-0", "x"));
        let h0 = link(&GENESIS, forged[0].event.as_ref().unwrap().as_bytes());
        forged[0].hash = Some(h0.to_vec());
        forged[1].prev_hash = Some(h0.to_vec());
        let h1 = link(&h0, forged[1].event.as_ref().unwrap().as_bytes());
        forged[1].hash = Some(h1.to_vec());
        let b = keyed_check(forged.clone(), Some(&ring), Some(3))
            .first_break
            .unwrap();
        assert_eq!((b.id, b.kind), (3, BreakKind::LinkMismatch));
        forged[2].prev_hash = Some(h1.to_vec());
        let b = keyed_check(forged, Some(&ring), Some(3))
            .first_break
            .unwrap();
        assert_eq!((b.id, b.kind), (3, BreakKind::HashMismatch));

        // A key id out of range is unreadable; a retired key id unknown.
        let mut bad = stored(&links);
        bad[2].key_id = Some(-1);
        assert!(matches!(
            keyed_check(bad, Some(&ring), Some(3))
                .first_break
                .unwrap()
                .kind,
            BreakKind::Unreadable { .. }
        ));
        let only2 = AuditKeyring::new(k2);
        let b = keyed_check(stored(&links), Some(&only2), Some(3))
            .first_break
            .unwrap();
        assert_eq!((b.id, b.kind), (3, BreakKind::UnknownKey { key_id: 1 }));
        assert!(
            !format!("{ring:?}").contains("[7"),
            "Debug shows no key bytes"
        );
        assert!(AuditKey::new(1, &[0; 31]).is_err());
    }

    #[test]
    fn log_rows_of_another_subject_are_corrupt() {
        let events = events(1);
        let text = canonical(&events[0]).unwrap();
        assert_eq!(read_event("RSSMRA85T10A562S", &text).unwrap(), events[0]);
        assert!(matches!(
            read_event("VRDGPP80A01H501X", &text),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(
            hash32(&[0; 31], "x"),
            Err(StoreError::Corrupt(m)) if m == "x is not 32 bytes"
        ));
    }
}
