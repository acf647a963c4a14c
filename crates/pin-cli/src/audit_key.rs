//! The audit key file: the keys of the audit chain's HMAC and the keyed boundary, kept apart
//! from the database and from the pepper key.
//!
//! Format (text, so that it can be inspected and backed up like the pepper key):
//!
//! ```text
//! # pin audit key: the HMAC key of the audit chain. Keep it apart from the database.
//! keyed-from 1
//! key 1 5f0c…(64 hexadecimal digits)
//! ```
//!
//! `keyed-from N`: every audit row from id `N` on must be keyed (1 for a database created
//! with its audit key; for a database that had unkeyed rows before, the id after its last
//! one, recorded by `pin audit init-key`). `key ID HEX`: one audit key; new rows are keyed
//! with the highest id, older rows verify under the id they name. Lines starting with `#`
//! and blank lines are ignored; anything else is refused as corrupt. `pin init` and
//! `pin audit init-key` write it with mode 0600 and never overwrite one.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use pin_core::audit::key::{AUDIT_KEY_LEN, AuditKey, AuditKeyring};
use zeroize::Zeroizing;

use crate::exit::{Failure, Kind};
use crate::key::{self, hex_digit, hex_value};

/// The file name of the audit key beside the pepper key file.
pub(crate) const FILE_NAME: &str = "pin.audit-key";

/// What the audit key file holds.
#[derive(Debug)]
pub(crate) struct AuditKeyFile {
    /// The keys.
    pub(crate) keys: AuditKeyring,
    /// The id of the first row that must be keyed.
    pub(crate) keyed_from: u64,
}

/// Writes a new audit key file at `path` (mode 0600) with one fresh key of id 1 and the
/// boundary `keyed_from`; refuses to overwrite.
pub(crate) fn write_new(path: &Path, keyed_from: u64) -> Result<(), Failure> {
    let key = key::random_key()?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => Failure::refused(format!(
            "the audit key file {} already exists; it is never overwritten (the audit chain depends on it)",
            path.display()
        )),
        ErrorKind::NotFound => Failure::storage(format!(
            "cannot create the audit key file {}: its directory does not exist",
            path.display()
        )),
        _ => Failure::storage(format!(
            "cannot create the audit key file {}: {e}",
            path.display()
        )),
    })?;
    let mut text = Zeroizing::new(format!(
        "# pin audit key: the HMAC key of the audit chain. Keep it apart from the database.\nkeyed-from {keyed_from}\nkey 1 "
    ));
    for b in key.iter() {
        text.push(hex_digit(b >> 4));
        text.push(hex_digit(b & 0x0f));
    }
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| {
            Failure::storage(format!(
                "cannot write the audit key file {}: {e}",
                path.display()
            ))
        })
}

/// Reads the audit key file at `path`; `None` when there is none. Only a regular file is
/// read (a FIFO or device is refused before it is opened).
pub(crate) fn load(path: &Path) -> Result<Option<AuditKeyFile>, Failure> {
    let unreadable = |e: std::io::Error| {
        Failure::storage(format!(
            "cannot read the audit key file {}: {e}",
            path.display()
        ))
    };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(unreadable(e)),
        Ok(m) if !m.is_file() => {
            return Err(Failure::storage(format!(
                "the audit key file {} is not a regular file; pass the right --audit-key-file",
                path.display()
            )));
        }
        Ok(_) => {}
    }
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut text = Zeroizing::new(Vec::new());
    file.take(64 * 1024)
        .read_to_end(&mut text)
        .map_err(unreadable)?;
    parse(&text).map(Some).map_err(|why| {
        Failure::new(
            Kind::Storage,
            format!(
                "the audit key file {} is corrupt: {why} (restore it from your backup)",
                path.display()
            ),
        )
    })
}

/// Parses the text of an audit key file.
fn parse(text: &[u8]) -> Result<AuditKeyFile, String> {
    let text = std::str::from_utf8(text).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let mut keyed_from = None;
    let mut keys: Option<AuditKeyring> = None;
    for (n, line) in (1..).zip(text.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["keyed-from", v] if keyed_from.is_none() => {
                keyed_from = Some(
                    v.parse::<u64>()
                        .ok()
                        .filter(|v| *v >= 1)
                        .ok_or_else(|| format!("line {n}: keyed-from needs a row id from 1"))?,
                );
            }
            ["key", id, hex] => {
                let id = id
                    .parse::<u32>()
                    .map_err(|_| format!("line {n}: the key id is not a number"))?;
                let bytes = decode(hex).ok_or_else(|| {
                    format!(
                        "line {n}: the key is not {} hexadecimal digits",
                        2 * AUDIT_KEY_LEN
                    )
                })?;
                let key = AuditKey::new(id, &bytes[..]).map_err(|e| format!("line {n}: {e}"))?;
                keys = Some(match keys {
                    None => AuditKeyring::new(key),
                    Some(k) => k.with(key).map_err(|e| format!("line {n}: {e}"))?,
                });
            }
            _ => {
                return Err(format!(
                    "line {n} is neither `keyed-from N` nor `key ID HEX`"
                ));
            }
        }
    }
    Ok(AuditKeyFile {
        keys: keys.ok_or("it holds no key")?,
        keyed_from: keyed_from.ok_or("it has no keyed-from line")?,
    })
}

fn decode(hex: &str) -> Option<Zeroizing<[u8; AUDIT_KEY_LEN]>> {
    let hex = hex.as_bytes();
    if hex.len() != 2 * AUDIT_KEY_LEN {
        return None;
    }
    let mut out = Zeroizing::new([0u8; AUDIT_KEY_LEN]);
    for (slot, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = hex_value(*pair.first()?)?;
        let lo = hex_value(*pair.get(1)?)?;
        *slot = (hi << 4) | lo;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_written_file_reads_back_and_bad_ones_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        write_new(&path, 7).unwrap();
        let f = load(&path).unwrap().unwrap();
        assert_eq!((f.keyed_from, f.keys.current().id()), (7, 1));
        assert!(write_new(&path, 1).is_err(), "never overwritten");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(load(&dir.path().join("absent")).unwrap().is_none());
        let k = "ab".repeat(32);
        let two = parse(format!("keyed-from 3\nkey 1 {k}\n\n# x\nkey 2 {k}\n").as_bytes()).unwrap();
        assert_eq!((two.keyed_from, two.keys.current().id()), (3, 2));
        for bad in [
            String::new(),
            format!("key 1 {k}\n"),
            "keyed-from 1\n".to_owned(),
            format!("keyed-from 0\nkey 1 {k}\n"),
            format!("keyed-from 1\nkey 1 {}\n", "ab".repeat(31)),
            format!("keyed-from 1\nkey 1 {}\n", "zz".repeat(32)),
            format!("keyed-from 1\nkey 1 {k}\nkey 1 {k}\n"),
            format!("keyed-from 1\nkey 1 {k}\nsomething\n"),
        ] {
            let e = parse(bad.as_bytes());
            assert!(e.is_err(), "{bad:?}");
            assert!(!e.unwrap_err().contains(&k), "no key in the message");
        }
    }
}
