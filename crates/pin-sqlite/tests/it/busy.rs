//! Under load: opening an up-to-date database only reads, a read-only store never writes, a
//! lock held past the busy deadline is `StoreError::Busy` (retryable, nothing changed), a
//! lock released within it is waited for; and only a creating open makes a database
//! (mode 0600), never out of an empty or foreign file.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, SystemTime};

use pin_core::conformance::sample_subject;
use pin_core::store::{Store, StoreError};
use pin_core::subject::Role;
use pin_sqlite::{DEFAULT_BUSY_TIMEOUT, OpenError, SqliteOptions, SqliteStore};

use crate::common::tax;

/// The bytes and modification time of a file.
fn snapshot(path: &Path) -> (Vec<u8>, SystemTime) {
    (
        std::fs::read(path).unwrap(),
        std::fs::metadata(path).unwrap().modified().unwrap(),
    )
}

/// A database holding one subject, closed (its log moved into the file).
fn database_with_one_subject(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("pins.db");
    let store = SqliteStore::open(&path).unwrap();
    let s = sample_subject(tax(0), Role::Employee, "mario@example.it", 1);
    store.create(&s, &[]).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    path
}

/// Another connection holding the write lock (`BEGIN IMMEDIATE`) until dropped.
fn hold_write_lock(path: &Path) -> rusqlite::Connection {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch("BEGIN IMMEDIATE").unwrap();
    conn
}

fn short(ms: u64) -> SqliteOptions {
    SqliteOptions::new().busy_timeout(Duration::from_millis(ms))
}

#[test]
fn the_default_busy_deadline_is_the_documented_one() {
    assert_eq!(DEFAULT_BUSY_TIMEOUT, Duration::from_secs(30));
    assert_eq!(SqliteOptions::new().busy_timeout, DEFAULT_BUSY_TIMEOUT);
    assert_eq!(SqliteOptions::default(), SqliteOptions::new());
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("pins.db")).unwrap();
    assert_eq!(store.options().busy_timeout, DEFAULT_BUSY_TIMEOUT);
    drop(store);
    // A pool of no connections would wait forever: it is taken as one.
    assert_eq!(SqliteOptions::new().pool_size(0).pool_size, 1);
    let mut zero = SqliteOptions::new();
    zero.pool_size = 0;
    let store = zero.open(dir.path().join("pins.db")).unwrap();
    assert_eq!(store.options().pool_size, 1);
    assert!(store.load(&tax(0)).unwrap().is_none());
}

#[test]
fn opening_an_up_to_date_database_takes_no_write_lock_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_one_subject(dir.path());
    let before = snapshot(&path);
    // Another process writes (holds the lock) the whole time: opening still works at once,
    // because it only reads (the schema version, the journal mode, the tables).
    let writer = hold_write_lock(&path);
    for options in [
        short(50),
        short(50).read_only(true),
        short(50).create(false),
    ] {
        let store = options.open(&path).unwrap();
        assert!(store.load(&tax(0)).unwrap().is_some(), "{options:?}");
        assert_eq!(store.audit_log(None).unwrap().len(), 0);
        drop(store);
    }
    drop(writer);
    assert!(snapshot(&path) == before, "the file must be unchanged");
}

#[test]
fn a_read_only_store_reads_a_read_only_file_and_never_writes() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_one_subject(dir.path());
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = snapshot(&path);
    // A read-write open refuses the file; a read-only one reads it.
    assert!(matches!(
        SqliteStore::open(&path).unwrap_err(),
        OpenError::ReadOnly { .. }
    ));
    let store = SqliteStore::open_read_only(&path).unwrap();
    assert!(store.options().read_only);
    let loaded = store.load(&tax(0)).unwrap().unwrap();
    assert_eq!(loaded.subject.tax_code, tax(0));
    assert!(store.verify_audit_chain().unwrap().is_intact());
    assert_eq!(store.integrity_check().unwrap(), ["ok"]);
    // A write fails cleanly and changes nothing.
    let other = sample_subject(tax(1), Role::Citizen, "anna@example.it", 1);
    let err = store.create(&other, &[]).unwrap_err();
    assert!(matches!(err, StoreError::Backend(_)), "{err:?}");
    assert!(err.to_string().contains("readonly"), "{err}");
    drop(store);
    assert!(snapshot(&path) == before, "the file must be unchanged");
}

#[test]
fn busy_past_the_deadline_is_store_error_busy_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_one_subject(dir.path());
    let store = short(100).open(&path).unwrap();
    let writer = hold_write_lock(&path);
    let s = sample_subject(tax(1), Role::Citizen, "anna@example.it", 1);
    let err = store.create(&s, &[]).unwrap_err();
    assert!(matches!(err, StoreError::Busy(_)), "{err:?}");
    assert!(err.is_retryable());
    assert!(pin_core::Error::Store(err).is_retryable());
    // Readers are not stopped by the writer (WAL).
    assert!(store.load(&tax(0)).unwrap().is_some());
    drop(writer);
    assert!(
        store.load(&tax(1)).unwrap().is_none(),
        "nothing was written"
    );
    // Once the lock is released, the same call succeeds.
    store.create(&s, &[]).unwrap();
    assert!(store.load(&tax(1)).unwrap().is_some());
}

#[test]
fn a_lock_released_within_the_deadline_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = database_with_one_subject(dir.path());
    let store = SqliteStore::open(&path).unwrap();
    let (locked, is_locked) = mpsc::channel();
    let holder = {
        let path = path.clone();
        std::thread::spawn(move || {
            let writer = hold_write_lock(&path);
            locked.send(()).unwrap();
            // Longer than SQLite's first back-off steps, far shorter than the deadline.
            std::thread::sleep(Duration::from_millis(300));
            writer.execute_batch("COMMIT").unwrap();
        })
    };
    is_locked.recv().unwrap();
    let s = sample_subject(tax(1), Role::Citizen, "anna@example.it", 1);
    store.create(&s, &[]).unwrap();
    holder.join().unwrap();
    assert!(store.load(&tax(1)).unwrap().is_some());
}

#[test]
fn a_database_that_stays_locked_while_being_created_is_open_error_busy() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("new.db");
    // Another program is creating the file and holds its lock.
    let writer = hold_write_lock(&path);
    let err = short(100).open(&path).unwrap_err();
    assert!(err.is_busy(), "{err:?}");
    assert!(matches!(err, OpenError::Busy { .. }));
    let msg = err.to_string();
    assert!(msg.contains("retry") && msg.contains("locked"), "{msg}");
    drop(writer);
    // Released: the open succeeds.
    short(100).open(&path).unwrap();
}

#[test]
fn only_a_creating_open_makes_a_database_and_it_is_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pins.db");
    for options in [
        SqliteOptions::new().create(false),
        SqliteOptions::new().read_only(true),
    ] {
        let err = options.open(&path).unwrap_err();
        assert!(matches!(err, OpenError::Missing { .. }), "{err:?}");
        assert!(err.to_string().contains("no such file"), "{err}");
        assert!(!path.exists(), "nothing was created");
    }
    let store = SqliteStore::open(&path).unwrap();
    let s = sample_subject(tax(0), Role::Employee, "mario@example.it", 1);
    store.create(&s, &[]).unwrap();
    for name in ["pins.db", "pins.db-wal", "pins.db-shm"] {
        let mode = std::fs::metadata(dir.path().join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name}: {mode:o}");
    }
}

#[test]
fn an_empty_or_foreign_file_is_refused_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    // Zero bytes: only a creating open may make it a database.
    let empty = dir.path().join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    for options in [
        SqliteOptions::new().create(false),
        SqliteOptions::new().read_only(true),
    ] {
        let err = options.open(&empty).unwrap_err();
        assert!(matches!(err, OpenError::NotAPinDatabase { .. }), "{err:?}");
        assert!(err.to_string().contains("empty"), "{err}");
        assert!(
            std::fs::read(&empty).unwrap().is_empty(),
            "the file must stay empty"
        );
    }
    // Another program's database: refused by every open, its tables never added to.
    let foreign = dir.path().join("foreign.db");
    {
        let conn = rusqlite::Connection::open(&foreign).unwrap();
        conn.execute_batch("CREATE TABLE notes (body TEXT); INSERT INTO notes VALUES ('x');")
            .unwrap();
    }
    let before = snapshot(&foreign);
    for options in [
        SqliteOptions::new(),
        SqliteOptions::new().create(false),
        SqliteOptions::new().read_only(true),
    ] {
        let err = options.open(&foreign).unwrap_err();
        assert!(matches!(err, OpenError::NotAPinDatabase { .. }), "{err:?}");
        assert!(err.to_string().contains("another program"), "{err}");
    }
    assert!(snapshot(&foreign) == before, "the file must be unchanged");
    // A creating open makes a database of the empty file.
    let store = SqliteStore::open(&empty).unwrap();
    assert!(store.verify_audit_chain().unwrap().is_intact());
}
