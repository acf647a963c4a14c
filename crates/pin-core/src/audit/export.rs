//! The export format of the audit log: JSON lines that carry each row with its place in the
//! chain, so that an auditor verifies them without the database ([`verify_export`]), with
//! the audit key.
//!
//! The first line is an [`ExportHeader`]; every other line an [`ExportLine`], in id order:
//!
//! ```text
//! {"format":"pin-audit-export","version":1,"keyed_from":1}
//! {"id":1,"key_id":1,"prev_hash":"00…","hash":"9f…","tax_code":"RSSMRA85T10A562S","event":"{\"at\":…}"}
//! ```
//!
//! `event` is the event exactly as stored (a JSON string holding its canonical JSON), so
//! that the hash can be recomputed byte for byte; hashes are lower-case hex.

use serde::{Deserialize, Serialize};

use super::AuditRecord;
use super::chain::{self, ChainHead, ChainReport, StoredLink};
use super::key::AuditKeyring;
use crate::store::StoreError;

/// The `format` of an [`ExportHeader`].
pub const FORMAT: &str = "pin-audit-export";

/// The first line of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportHeader {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always 1.
    pub version: u32,
    /// The keyed boundary the store recorded (the id of its first keyed row), if any.
    pub keyed_from: Option<u64>,
}

impl ExportHeader {
    /// The header of an export of a chain keyed from `keyed_from`.
    #[must_use]
    pub fn new(keyed_from: Option<u64>) -> Self {
        Self {
            format: FORMAT.to_owned(),
            version: 1,
            keyed_from,
        }
    }
}

/// One row of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportLine {
    /// The row id.
    pub id: u64,
    /// The audit key id; `None` for an unkeyed row.
    pub key_id: Option<u32>,
    /// The previous row's hash, hex.
    pub prev_hash: String,
    /// The row's hash, hex.
    pub hash: String,
    /// The subject's tax code.
    pub tax_code: String,
    /// The event exactly as stored.
    pub event: String,
}

impl ExportLine {
    /// The line of `record`, or `None` for a record without a chain link (a store that
    /// keeps no chain has nothing to export for verification).
    #[must_use]
    pub fn of(record: &AuditRecord) -> Option<Self> {
        let link = record.link.as_ref()?;
        Some(Self {
            id: record.id,
            key_id: link.key_id,
            prev_hash: hex(&link.prev_hash),
            hash: hex(&link.hash),
            tax_code: record.event.subject.as_str().to_owned(),
            event: link.stored.clone(),
        })
    }

    /// The row as [`chain::verify_keyed`] reads it; a hash that is not hex is `None`
    /// (unreadable there).
    #[must_use]
    pub fn stored(self) -> StoredLink<String, Vec<u8>> {
        StoredLink {
            id: i64::try_from(self.id).unwrap_or(-1),
            tax_code: Some(self.tax_code),
            event: Some(self.event),
            prev_hash: unhex(&self.prev_hash),
            hash: unhex(&self.hash),
            key_id: self.key_id.map(i64::from),
        }
    }
}

/// Lower-case hex of `bytes`.
#[must_use]
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(2 * bytes.len()), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The bytes of hex text (either case); `None` when it is not hex.
#[must_use]
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    text.as_bytes()
        .chunks_exact(2)
        .map(|p| {
            let s = std::str::from_utf8(p).ok()?;
            u8::from_str_radix(s, 16).ok()
        })
        .collect()
}

/// A head as `pin audit head` prints it: `ID:HASH` (hash in hex).
#[must_use]
pub fn format_head(head: &ChainHead) -> String {
    format!("{}:{}", head.id, hex(&head.hash))
}

/// Parses `ID:HASH`.
///
/// # Errors
/// A message saying what is wrong.
pub fn parse_head(text: &str) -> Result<ChainHead, String> {
    let (id, hash) = text
        .trim()
        .split_once(':')
        .ok_or("a head is ID:HASH (as `pin audit head` prints it)")?;
    let id = id
        .parse::<u64>()
        .map_err(|_| "the head's id is not a number".to_owned())?;
    let hash = unhex(hash)
        .and_then(|h| <[u8; 32]>::try_from(h).ok())
        .ok_or("the head's hash is not 64 hexadecimal digits")?;
    Ok(ChainHead { id, hash })
}

/// Verifies the rows of an export (the lines after the header, in order) under `keys`, the
/// rows before `header.keyed_from` as unkeyed, then:
/// - when `expected_keyed_from` is given, that the header's boundary is the one expected
///   ([`ChainReport::check_keyed_from`]);
/// - when `head` is given, that the chain holds it: its row is there and has its hash
///   ([`chain::BreakKind::HeadMismatch`] otherwise), so an export cut off before the head
///   kept elsewhere is found.
///
/// A line that is not a row is reported as unreadable at the id it should have had.
///
/// # Errors
/// [`StoreError::Backend`] when an event cannot be written back as JSON.
pub fn verify_export<I>(
    lines: I,
    header: &ExportHeader,
    keys: Option<&AuditKeyring>,
    expected_keyed_from: Option<u64>,
    head: Option<ChainHead>,
) -> Result<ChainReport, StoreError>
where
    I: IntoIterator<Item = Option<ExportLine>>,
{
    let mut at_head = None;
    let rows = lines.into_iter().zip(1_i64..).map(|(line, n)| {
        let row = line.map_or(
            StoredLink {
                id: n,
                tax_code: None,
                event: None,
                prev_hash: None,
                hash: None,
                key_id: None,
            },
            ExportLine::stored,
        );
        if let (Some(h), Some(hash)) = (head, row.hash.as_ref())
            && u64::try_from(row.id).ok() == Some(h.id)
        {
            at_head = Some(hash.clone());
        }
        Ok::<_, StoreError>(row)
    });
    let mut report = chain::verify_keyed(rows, keys, header.keyed_from)?;
    if let Some(expected) = expected_keyed_from {
        report.check_keyed_from(header.keyed_from, expected);
    }
    if let Some(h) = head
        && report.is_intact()
    {
        let reached =
            h.id == 0 || (report.intact_rows >= h.id && at_head.as_deref() == Some(&h.hash[..]));
        if !reached {
            report.first_break = Some(chain::ChainBreak {
                id: h.id.min(report.intact_rows + 1),
                kind: chain::BreakKind::HeadMismatch { recorded: h },
            });
        }
    }
    Ok(report)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::audit::AuditEvent;
    use crate::audit::chain::{BreakKind, GENESIS, extend_keyed};
    use crate::audit::key::AuditKey;
    use crate::tax_code::TaxCode;

    fn lines(n: usize, key: &AuditKey) -> Vec<ExportLine> {
        let events: Vec<AuditEvent> = (0..n)
            .map(|i| AuditEvent {
                at: Utc.with_ymd_and_hms(2026, 3, 2, 9, 0, 0).unwrap(),
                subject: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
                actor: "test".into(),
                action: format!("a{i}"),
                outcome: "rejected".into(),
                serial: None,
                channels: Vec::new(),
                detail: String::new(),
            })
            .collect();
        extend_keyed(0, GENESIS, Some(key), &events)
            .unwrap()
            .into_iter()
            .zip(&events)
            .map(|(l, e)| {
                ExportLine::of(&AuditRecord {
                    id: u64::try_from(l.id).unwrap(),
                    event: e.clone(),
                    link: Some(crate::audit::RecordLink {
                        stored: l.event.clone(),
                        prev_hash: l.prev_hash,
                        hash: l.hash,
                        key_id: l.key_id,
                    }),
                })
                .unwrap()
            })
            .collect()
    }

    #[test]
    fn heads_and_hex_round_trip_and_bad_ones_are_refused() {
        let head = ChainHead {
            id: 7,
            hash: [0xab; 32],
        };
        assert_eq!(parse_head(&format_head(&head)).unwrap(), head);
        assert_eq!(unhex(&hex(&[0, 1, 254])).unwrap(), vec![0, 1, 254]);
        assert!(unhex("abc").is_none());
        assert!(unhex("zz").is_none());
        for bad in ["7", "x:ab", "7:abcd", ""] {
            assert!(parse_head(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_export_verifies_offline_and_every_change_is_found() {
        let key = AuditKey::new(1, &[3; 32]).unwrap();
        let keys = AuditKeyring::new(key.clone());
        let rows = lines(3, &key);
        let header = ExportHeader::new(Some(1));
        let check = |rows: Vec<Option<ExportLine>>, from, head| {
            verify_export(rows, &header, Some(&keys), from, head).unwrap()
        };
        let all = || rows.iter().cloned().map(Some).collect::<Vec<_>>();
        let report = check(all(), Some(1), None);
        assert!(report.is_intact(), "{report:?}");
        assert_eq!(report.intact_rows, 3);
        let head = report.head.unwrap();
        assert!(check(all(), Some(1), Some(head)).is_intact());
        let first = ChainHead {
            id: 1,
            hash: <[u8; 32]>::try_from(unhex(&rows[0].hash).unwrap()).unwrap(),
        };
        assert!(
            check(all(), Some(1), Some(first)).is_intact(),
            "an older head is held"
        );

        // Cut before the head: found with the head.
        let cut: Vec<_> = all().into_iter().take(2).collect();
        let b = check(cut, Some(1), Some(head)).first_break.unwrap();
        assert!(matches!(b.kind, BreakKind::HeadMismatch { .. }));
        // A head hash that is not the chain's.
        let fake = ChainHead {
            id: 2,
            hash: [9; 32],
        };
        assert!(!check(all(), Some(1), Some(fake)).is_intact());
        // A changed event.
        let mut changed = all();
        if let Some(l) = changed[1].as_mut() {
            l.event = l.event.replace("rejected", "accepted");
        }
        let b = check(changed, Some(1), None).first_break.unwrap();
        assert_eq!((b.id, b.kind), (2, BreakKind::HashMismatch));
        // A line that is not a row: unreadable at its place.
        let mut junk = all();
        junk[1] = None;
        let b = check(junk, Some(1), None).first_break.unwrap();
        assert!(matches!((b.id, b.kind), (2, BreakKind::Unreadable { .. })));
        // The header's boundary against the expected one.
        let b = check(all(), Some(2), None).first_break.unwrap();
        assert!(matches!(b.kind, BreakKind::KeyedFromMismatch { .. }));
    }

    #[test]
    fn a_chain_shorter_than_the_expected_boundary_is_fine_until_it_reaches_it() {
        let rows: Vec<Option<ExportLine>> = Vec::new();
        let mut report =
            verify_export(rows, &ExportHeader::new(None), None, Some(3), None).unwrap();
        assert!(report.is_intact());
        report.check_keyed_from(None, 3);
        assert!(report.is_intact());
        report.intact_rows = 3;
        report.check_keyed_from(None, 3);
        assert!(!report.is_intact());
    }
}
