//! The pepper key file.
//!
//! Format: 64 hexadecimal digits (32 bytes), optionally followed by one newline — text, so
//! that it can be inspected, backed up and compared without a hex dump. That is the key of
//! id 1. Once `pin key add` has run it is a keyring instead: `key ID HEX` lines (and `#`
//! comments), the highest id the key of new hashes, the others kept to verify the hashes
//! they made until `pin key retire` drops them. `pin init` writes a
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
                "the key file {} is corrupt: {why}; it must hold 64 hexadecimal digits, or `key ID HEX` lines (restore it from your backup)",
                path.display()
            ),
        )
    };
    let keys = parse(&text).map_err(|why| corrupt(&why))?;
    keyring(&keys).map_err(|why| corrupt(&why))
}

/// One pepper key of the key file.
pub(crate) type FileKey = (KeyId, Zeroizing<[u8; KEY_LEN]>);

/// The keyring of `keys`: the highest id is the current key (new hashes), the others verify.
pub(crate) fn keyring(keys: &[FileKey]) -> Result<Keyring, String> {
    let mut sorted: Vec<&FileKey> = keys.iter().collect();
    sorted.sort_by_key(|(id, _)| std::cmp::Reverse(*id));
    let mut it = sorted.into_iter();
    let (id, key) = it.next().ok_or("it holds no key")?;
    let mut ring = Keyring::new(Pepper::new(*id, &key[..]).map_err(|e| e.to_string())?);
    for (id, key) in it {
        ring = ring.with_previous(Pepper::new(*id, &key[..]).map_err(|e| e.to_string())?);
    }
    Ok(ring)
}

/// The keys of a key file's text: the single-key format (64 hexadecimal digits, the key of
/// id [`KEY_ID`]) or the keyring format (`key ID HEX` lines; `#` comments and blank lines
/// ignored; ids unique).
pub(crate) fn parse(text: &[u8]) -> Result<Vec<FileKey>, String> {
    let body = text.strip_suffix(b"\n").unwrap_or(text);
    let body = body.strip_suffix(b"\r").unwrap_or(body);
    if !body.starts_with(b"key ") && !body.starts_with(b"#") {
        if body.len() != 2 * KEY_LEN {
            return Err(format!("it has {} characters", body.len()));
        }
        let key = decode(body).ok_or("it holds a character that is not a hexadecimal digit")?;
        return Ok(vec![(KEY_ID, key)]);
    }
    let text = std::str::from_utf8(text).map_err(|_| "it is not UTF-8 text".to_owned())?;
    let mut keys: Vec<FileKey> = Vec::new();
    for (n, line) in (1..).zip(text.lines()) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().collect();
        let ["key", id, hex] = words.as_slice() else {
            return Err(format!("line {n} is not `key ID HEX`"));
        };
        let id = id
            .parse::<u32>()
            .map(KeyId)
            .map_err(|_| format!("line {n}: the key id is not a number"))?;
        if keys.iter().any(|(k, _)| *k == id) {
            return Err(format!("line {n}: key id {} appears twice", id.0));
        }
        let key = decode(hex.as_bytes())
            .ok_or_else(|| format!("line {n}: the key is not 64 hexadecimal digits"))?;
        keys.push((id, key));
    }
    if keys.is_empty() {
        return Err("it holds no key".to_owned());
    }
    Ok(keys)
}

fn decode(hex: &[u8]) -> Option<Zeroizing<[u8; KEY_LEN]>> {
    if hex.len() != 2 * KEY_LEN {
        return None;
    }
    let mut key = Zeroizing::new([0u8; KEY_LEN]);
    for (slot, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = hex_value(*pair.first()?)?;
        let lo = hex_value(*pair.get(1)?)?;
        *slot = (hi << 4) | lo;
    }
    Some(key)
}

/// Reads the keys of the key file at `path` (as [`load`] does, without building the ring).
pub(crate) fn load_keys(path: &Path) -> Result<Vec<FileKey>, Failure> {
    let _ = load(path)?;
    let text = Zeroizing::new(std::fs::read(path).map_err(|e| {
        Failure::storage(format!("cannot read the key file {}: {e}", path.display()))
    })?);
    parse(&text).map_err(|why| {
        Failure::storage(format!("the key file {} is corrupt: {why}", path.display()))
    })
}

/// Replaces the key file at `path` with `keys` in the keyring format, atomically: a new
/// file of mode 0600 beside it, synced, renamed over it, the directory synced. A crash
/// leaves the old file or the new one, never a mix.
pub(crate) fn replace(path: &Path, keys: &[FileKey]) -> Result<(), Failure> {
    let fail = |e: std::io::Error| {
        Failure::storage(format!("cannot write the key file {}: {e}", path.display()))
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut text = Zeroizing::new(String::from(
        "# pin pepper keys: new hashes use the highest id; older ids verify the hashes they made.\n# Keep secret, back up apart from the database.\n",
    ));
    let mut sorted: Vec<&FileKey> = keys.iter().collect();
    sorted.sort_by_key(|(id, _)| *id);
    for (id, key) in sorted {
        text.push_str(&format!("key {} ", id.0));
        for b in key.iter() {
            text.push(hex_digit(b >> 4));
            text.push(hex_digit(b & 0x0f));
        }
        text.push('\n');
    }
    let written = options.open(&tmp).and_then(|mut f| {
        f.write_all(text.as_bytes())?;
        f.sync_all()
    });
    if let Err(e) = written.and_then(|()| std::fs::rename(&tmp, path)) {
        let _ = std::fs::remove_file(&tmp);
        return Err(fail(e));
    }
    if let Ok(d) = std::fs::File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
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
