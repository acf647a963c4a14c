//! Files the store must refuse with a clear error, leaving them exactly as they were.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use pin_core::store::Store;
use pin_sqlite::{OpenError, SCHEMA_VERSION, SqliteStore};

use crate::common::tax;

fn bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

/// Files beside `path` that SQLite would create (`-wal`, `-shm`, `-journal`).
fn siblings(path: &Path) -> Vec<String> {
    let dir = path.parent().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn garbage_file_is_not_a_database_and_stays_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    for (i, content) in [
        b"hello, I am not a database".to_vec(),
        (0..8192u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect::<Vec<u8>>(),
        b"SQLite format 3\0 but then nothing sensible follows at all, just text".repeat(20),
    ]
    .into_iter()
    .enumerate()
    {
        let path = dir.path().join(format!("garbage-{i}.db"));
        std::fs::write(&path, &content).unwrap();
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(
            matches!(err, OpenError::NotADatabase { .. }),
            "case {i}: {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains("not an SQLite database") && msg.contains(&format!("garbage-{i}.db")),
            "{msg}"
        );
        assert_eq!(
            bytes(&path),
            content,
            "case {i}: the file must be unchanged"
        );
    }
}

#[test]
fn newer_schema_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("newer.db");
    {
        let _store = SqliteStore::open(&path).unwrap();
    }
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        conn.pragma_update(None, "journal_mode", "DELETE").unwrap();
    }
    let before = bytes(&path);
    let names = siblings(&path);
    let err = SqliteStore::open(&path).unwrap_err();
    match &err {
        OpenError::NewerSchema {
            found, supported, ..
        } => {
            assert_eq!((*found, *supported), (SCHEMA_VERSION + 1, SCHEMA_VERSION));
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("upgrade the program"), "{err}");
    assert_eq!(bytes(&path), before, "the file must be unchanged");
    assert_eq!(siblings(&path), names, "no file created beside it");
}

#[test]
fn read_only_file_is_refused_and_left_unchanged() {
    // Tests run as root, whom permission bits do not stop: the store reads the bits itself.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ro.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.load(&tax(0)).unwrap().is_none());
    }
    let before = bytes(&path);
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, OpenError::ReadOnly { .. }), "{err:?}");
    assert!(err.to_string().contains("read-only"), "{err}");
    assert_eq!(bytes(&path), before);
}

#[test]
fn missing_directory_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir
        .path()
        .join("no")
        .join("such")
        .join("dir")
        .join("pins.db");
    let err = SqliteStore::open(&path).unwrap_err();
    match &err {
        OpenError::MissingDirectory { directory, .. } => {
            assert_eq!(directory, path.parent().unwrap())
        }
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("does not exist"), "{err}");
    assert!(!dir.path().join("no").exists(), "nothing was created");
}

#[test]
fn reopening_keeps_data_and_applies_no_migration_twice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("again.db");
    for _ in 0..3 {
        let store = SqliteStore::open(&path).unwrap();
        assert!(store.verify_audit_chain().unwrap().is_intact());
    }
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    let mode: String = conn
        .pragma_query_value(None, "journal_mode", |r| r.get(0))
        .unwrap();
    assert_eq!(mode, "wal");
}
