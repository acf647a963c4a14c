//! The pepper key file.
//!
//! Format: 64 hexadecimal digits (32 bytes), optionally followed by one newline — text, so
//! that it can be inspected, backed up and compared without a hex dump. `pin init` writes a
//! fresh one from the operating system's random source with file mode 0600 and never
//! overwrites an existing file. Anything else in the file is refused as corrupt: a wrong key
//! would make every stored PIN hash unverifiable.

use std::fs::OpenOptions;
use std::io::{ErrorKind, Read, Write};
use std::path::Path;

use pin_core::hash::Keyring;
use pin_core::secret::{KeyId, Pepper};
use zeroize::Zeroizing;

use crate::exit::{Failure, Kind};

/// Bytes of a key.
pub(crate) const KEY_LEN: usize = 32;

/// The id under which the key file's pepper is used (stored beside every hash).
pub(crate) const KEY_ID: KeyId = KeyId(1);

/// 32 random bytes from the operating system.
pub(crate) fn random_key() -> Result<Zeroizing<[u8; KEY_LEN]>, Failure> {
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    getrandom::fill(&mut key[..]).map_err(|e| {
        Failure::internal(format!("the operating system's random source failed: {e}"))
    })?;
    Ok(key)
}

/// Writes `key` to a new file at `path` (mode 0600), refusing to overwrite.
pub(crate) fn write_new(path: &Path, key: &[u8; KEY_LEN]) -> Result<(), Failure> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| match e.kind() {
        ErrorKind::AlreadyExists => Failure::refused(format!(
            "the key file {} already exists; it is never overwritten (every stored PIN hash depends on it) — remove it yourself only if the database is new",
            path.display()
        )),
        ErrorKind::NotFound => Failure::storage(format!(
            "cannot create the key file {}: its directory does not exist",
            path.display()
        )),
        _ => Failure::storage(format!("cannot create the key file {}: {e}", path.display())),
    })?;
    let mut text = Zeroizing::new(String::with_capacity(2 * KEY_LEN + 1));
    for b in key {
        text.push(hex_digit(b >> 4));
        text.push(hex_digit(b & 0x0f));
    }
    text.push('\n');
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| Failure::storage(format!("cannot write the key file {}: {e}", path.display())))
}

pub(crate) fn hex_digit(n: u8) -> char {
    char::from(
        b"0123456789abcdef"
            .get(usize::from(n))
            .copied()
            .unwrap_or(b'0'),
    )
}

pub(crate) fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The refusal of a key file that is not a regular file.
fn not_regular(path: &Path, meta: &std::fs::Metadata) -> Failure {
    let what = if meta.is_dir() {
        "a directory"
    } else {
        "not a regular file (a FIFO, socket or device)"
    };
    Failure::storage(format!(
        "the key file {} is {what}; it must be a regular file holding 64 hexadecimal digits (pass the right --key-file)",
        path.display()
    ))
}

/// Reads the key file at `path` and builds the keyring.
///
/// Only a regular file (or a link to one) is read: a FIFO, socket or device is refused
/// before it is opened, so the command never waits for a writer that never comes.
pub(crate) fn load(path: &Path) -> Result<Keyring, Failure> {
    if let Ok(meta) = std::fs::metadata(path)
        && !meta.is_file()
    {
        return Err(not_regular(path, &meta));
    }
    let mut file = std::fs::File::open(path).map_err(|e| match e.kind() {
        ErrorKind::NotFound => Failure::storage(format!(
            "no key file at {}; run `pin init` to create the database and its key, or pass --key-file",
            path.display()
        )),
        _ => Failure::storage(format!("cannot read the key file {}: {e}", path.display())),
    })?;
    // The name may have been replaced between the check and the open.
    let meta = file.metadata().map_err(|e| {
        Failure::storage(format!("cannot read the key file {}: {e}", path.display()))
    })?;
    if !meta.is_file() {
        return Err(not_regular(path, &meta));
    }
    let mut text = Zeroizing::new(Vec::new());
    Read::by_ref(&mut file)
        .take(4096)
        .read_to_end(&mut text)
        .map_err(|e| {
            Failure::storage(format!("cannot read the key file {}: {e}", path.display()))
        })?;
    let corrupt = |why: &str| {
        Failure::new(
            Kind::Storage,
            format!(
                "the key file {} is corrupt: {why}; it must hold 64 hexadecimal digits (restore it from your backup)",
                path.display()
            ),
        )
    };
    let body = text.strip_suffix(b"\n").unwrap_or(&text);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if body.len() != 2 * KEY_LEN {
        return Err(corrupt(&format!("it has {} characters", body.len())));
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (slot, pair) in key.iter_mut().zip(body.chunks_exact(2)) {
        let (Some(hi), Some(lo)) = (
            pair.first().copied().and_then(hex_value),
            pair.get(1).copied().and_then(hex_value),
        ) else {
            return Err(corrupt(
                "it holds a character that is not a hexadecimal digit",
            ));
        };
        *slot = (hi << 4) | lo;
    }
    let pepper = Pepper::new(KEY_ID, &key[..]).map_err(|e| corrupt(&e.to_string()))?;
    Ok(Keyring::new(pepper))
}

/// A warning when the key file can be read by others than its owner.
pub(crate) fn permission_warning(path: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path).ok()?.permissions().mode();
        if mode & 0o077 != 0 {
            return Some(format!(
                "the key file {} can be read by other users (mode {:o}); run `chmod 600` on it",
                path.display(),
                mode & 0o777
            ));
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    None
}
