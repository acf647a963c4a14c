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

use sha2::{Digest, Sha256};

use super::AuditEvent;
use crate::store::StoreError;

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
    /// The row's `hash` is not the SHA-256 of its `prev_hash` and event: the row was
    /// changed.
    HashMismatch,
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

/// `SHA-256(prev ‖ event)`: the `hash` of a row whose `prev_hash` is `prev`.
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
    /// `hash`: [`link`] of `prev_hash` and `event`.
    pub hash: [u8; 32],
}

/// The rows that append `events`, in order, to a chain whose last row has id `last_id` and
/// hash `last_hash` (0 and [`GENESIS`] for an empty chain).
///
/// # Errors
/// [`StoreError::Backend`] when an event cannot be written as JSON.
pub fn extend<'a>(
    last_id: i64,
    last_hash: [u8; 32],
    events: &'a [AuditEvent],
) -> Result<Vec<NewLink<'a>>, StoreError> {
    let (mut id, mut prev) = (last_id, last_hash);
    events
        .iter()
        .map(|event| {
            let bytes = canonical(event)?;
            let hash = link(&prev, bytes.as_bytes());
            id += 1;
            let row = NewLink {
                id,
                tax_code: event.subject.as_str(),
                event: bytes,
                prev_hash: prev,
                hash,
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
}

/// Walks the rows of an audit log in id order and reports the first broken or missing link.
/// Stops reading at the first break, so a failure to read a later row is not an error.
///
/// # Errors
/// The first error of `rows` up to the first break; [`StoreError::Backend`] (as `E`) when an
/// event cannot be written back as JSON. A broken chain is not an error: it is reported in
/// [`ChainReport::first_break`].
pub fn verify<I, S, B, E>(rows: I) -> Result<ChainReport, E>
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
