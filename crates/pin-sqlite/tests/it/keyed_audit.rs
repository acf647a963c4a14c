//! The keyed audit chain on SQLite: rewriting an event and recomputing the chain, which an
//! unkeyed chain cannot reveal, fails without the audit key; a database written before
//! keying keeps its unkeyed rows verifiable up to the recorded boundary.

use pin_core::audit::chain::{self, BreakKind, GENESIS};
use pin_core::audit::key::{AuditKey, AuditKeyring};
use pin_core::store::{Store, StoreError};
use pin_core::subject::Level;
use pin_sqlite::SqliteStore;
use rusqlite::Connection;

use crate::common::{enrol_noipa, service, t0, tax, wrong};

fn keys() -> AuditKeyring {
    AuditKeyring::new(AuditKey::new(1, &[0x5a; 32]).unwrap())
}

/// Enrols one subject and makes three wrong verifies (three `rejected` rows or more).
fn activity(store: SqliteStore, seed: u64, who: usize) {
    let svc = service(store, seed);
    let pin = enrol_noipa(&svc, &tax(who), &format!("user{who}@example.it"));
    for _ in 0..3 {
        let _ = svc
            .verify(&tax(who), &wrong(&pin), Level::Online, t0())
            .unwrap();
    }
}

/// What an attacker with write access but no audit key does: drops the triggers, turns the
/// first `rejected` event into `accepted` and recomputes every hash from it on as SHA-256
/// links (with `key_id` set to `key_id`). Returns the id of the rewritten row.
fn rewrite_rejection(conn: &Connection, key_id: Option<i64>) -> i64 {
    conn.execute_batch(
        "DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_no_delete;",
    )
    .unwrap();
    let target: i64 = conn
        .query_row(
            "SELECT min(id) FROM audit WHERE event LIKE '%\"outcome\":\"rejected\"%'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    conn.execute(
        "UPDATE audit SET event = replace(event, '\"outcome\":\"rejected\"', '\"outcome\":\"accepted\"') WHERE id = ?1",
        [target],
    )
    .unwrap();
    recompute(conn, target, key_id);
    target
}

/// Recomputes every hash from row `from` on as SHA-256 links, with `key_id` set to `key_id`.
fn recompute(conn: &Connection, from: i64, key_id: Option<i64>) {
    let target = from;
    let mut prev: [u8; 32] = if target == 1 {
        GENESIS
    } else {
        let h: Vec<u8> = conn
            .query_row("SELECT hash FROM audit WHERE id = ?1", [target - 1], |r| {
                r.get(0)
            })
            .unwrap();
        h.try_into().unwrap()
    };
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT id, event FROM audit WHERE id >= ?1 ORDER BY id")
        .unwrap()
        .query_map([target], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (id, event) in rows {
        let hash = chain::link(&prev, event.as_bytes());
        conn.execute(
            "UPDATE audit SET prev_hash = ?2, hash = ?3, key_id = ?4 WHERE id = ?1",
            rusqlite::params![id, prev.as_slice(), hash.as_slice(), key_id],
        )
        .unwrap();
        prev = hash;
    }
}

#[test]
fn an_unkeyed_chain_passes_the_recomputed_rewrite_which_is_the_attack() {
    // The weakness the keyed chain closes, shown so that the test below can fail.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unkeyed.db");
    activity(SqliteStore::open(&path).unwrap(), 1, 0);
    let conn = Connection::open(&path).unwrap();
    let _ = rewrite_rejection(&conn, None);
    let store = SqliteStore::open(&path).unwrap();
    assert!(store.verify_audit_chain().unwrap().is_intact());
    assert_eq!(store.audit_keyed_from().unwrap(), None);
    assert!(
        store
            .audit_log(None)
            .unwrap()
            .iter()
            .any(|e| e.outcome == "accepted")
    );
}

#[test]
fn rewriting_a_rejection_and_recomputing_fails_without_the_audit_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyed.db");
    activity(
        SqliteStore::open(&path).unwrap().with_audit_keys(keys()),
        1,
        0,
    );
    let store = SqliteStore::open(&path).unwrap().with_audit_keys(keys());
    let report = store.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert!(report.intact_rows >= 4);
    assert_eq!(store.audit_keyed_from().unwrap(), Some(1));

    // Recomputed with the key id kept: the HMAC is not there.
    let conn = Connection::open(&path).unwrap();
    let target = rewrite_rejection(&conn, Some(1));
    let b = store.verify_audit_chain().unwrap().first_break.unwrap();
    assert_eq!(
        (b.id, b.kind),
        (u64::try_from(target).unwrap(), BreakKind::HashMismatch)
    );

    // Recomputed as unkeyed rows: refused as unkeyed past the boundary.
    recompute(&conn, target, None);
    let b = store.verify_audit_chain().unwrap().first_break.unwrap();
    assert_eq!(
        (b.id, b.kind),
        (
            u64::try_from(target).unwrap(),
            BreakKind::WrongKeying {
                expected_keyed: true
            }
        )
    );

    // Every row downgraded and the boundary deleted: the walk passes, the boundary the
    // operator expects (1: keyed from creation) does not.
    conn.execute_batch("DROP TRIGGER audit_keying_no_delete; DELETE FROM audit_keying;")
        .unwrap();
    recompute(&conn, 1, None);
    let mut report = store.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "the walk alone cannot tell: {report:?}");
    report.check_keyed_from(store.audit_keyed_from().unwrap(), 1);
    let b = report.first_break.unwrap();
    assert_eq!(
        b.kind,
        BreakKind::KeyedFromMismatch {
            recorded: None,
            expected: 1
        }
    );
}

#[test]
fn a_store_without_the_audit_key_cannot_append_to_a_keyed_chain_nor_check_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keyed.db");
    activity(
        SqliteStore::open(&path).unwrap().with_audit_keys(keys()),
        1,
        0,
    );
    let bare = SqliteStore::open(&path).unwrap();
    let before = bare.audit_log(None).unwrap().len();
    let event = bare.audit_log(None).unwrap().remove(0);
    match bare.append_audit(std::slice::from_ref(&event)) {
        Err(StoreError::Backend(e)) => assert!(e.to_string().contains("keyed from row 1"), "{e}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(
        bare.audit_log(None).unwrap().len(),
        before,
        "nothing written"
    );
    // Nor around the store: the trigger refuses an unkeyed row.
    let conn = Connection::open(&path).unwrap();
    let sneak = conn.execute(
        "INSERT INTO audit (id, tax_code, event, prev_hash, hash)
         SELECT id + 1, tax_code, event, hash, hash FROM audit ORDER BY id DESC LIMIT 1",
        [],
    );
    assert!(sneak.unwrap_err().to_string().contains("keyed"));
    let b = bare.verify_audit_chain().unwrap().first_break.unwrap();
    assert_eq!((b.id, b.kind), (1, BreakKind::UnknownKey { key_id: 1 }));
    // A second key: new rows use it, old rows still verify under the first.
    let two = keys().with(AuditKey::new(2, &[0x33; 32]).unwrap()).unwrap();
    activity(
        SqliteStore::open(&path)
            .unwrap()
            .with_audit_keys(two.clone()),
        2,
        1,
    );
    let ids: Vec<Option<i64>> = conn
        .prepare("SELECT key_id FROM audit ORDER BY id")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(ids.first(), Some(&Some(1)));
    assert_eq!(ids.last(), Some(&Some(2)));
    let with_two = SqliteStore::open(&path).unwrap().with_audit_keys(two);
    assert!(with_two.verify_audit_chain().unwrap().is_intact());
    let b = SqliteStore::open(&path)
        .unwrap()
        .with_audit_keys(keys())
        .verify_audit_chain()
        .unwrap()
        .first_break
        .unwrap();
    assert!(matches!(b.kind, BreakKind::UnknownKey { key_id: 2 }));
}

#[test]
fn an_unkeyed_database_keeps_its_old_rows_and_keys_every_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("legacy.db");
    activity(SqliteStore::open(&path).unwrap(), 1, 0);
    let legacy = SqliteStore::open(&path)
        .unwrap()
        .verify_audit_chain()
        .unwrap();
    assert!(legacy.is_intact());
    let n = legacy.intact_rows;

    activity(
        SqliteStore::open(&path).unwrap().with_audit_keys(keys()),
        2,
        1,
    );
    let store = SqliteStore::open(&path).unwrap().with_audit_keys(keys());
    assert_eq!(store.audit_keyed_from().unwrap(), Some(n + 1));
    let mut report = store.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert!(report.intact_rows > n);
    report.check_keyed_from(Some(n + 1), n + 1);
    assert!(report.is_intact());

    // An old row rewritten and its SHA-256 links recomputed up to the boundary: the first
    // keyed row, whose HMAC covers the last old hash, breaks.
    let conn = Connection::open(&path).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
    let mut prev = GENESIS;
    let rows: Vec<(i64, String)> = conn
        .prepare("SELECT id, event FROM audit WHERE key_id IS NULL ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    for (id, event) in rows {
        let event = event.replace("\"outcome\":\"rejected\"", "\"outcome\":\"accepted\"");
        let hash = chain::link(&prev, event.as_bytes());
        conn.execute(
            "UPDATE audit SET event = ?2, prev_hash = ?3, hash = ?4 WHERE id = ?1",
            rusqlite::params![id, event, prev.as_slice(), hash.as_slice()],
        )
        .unwrap();
        prev = hash;
    }
    let b = store.verify_audit_chain().unwrap().first_break.unwrap();
    assert_eq!((b.id, b.kind), (n + 1, BreakKind::LinkMismatch));
}

#[test]
fn a_schema_3_database_is_migrated_and_its_rows_stay_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    activity(SqliteStore::open(&path).unwrap(), 1, 0);
    let rows = SqliteStore::open(&path)
        .unwrap()
        .verify_audit_chain()
        .unwrap()
        .intact_rows;
    // Take it back to schema 3: no key_id column, no keyed boundary, no population tables.
    {
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "DROP TRIGGER audit_stays_keyed; DROP TRIGGER audit_records_keyed_from;
             DROP TRIGGER audit_keying_no_update; DROP TRIGGER audit_keying_no_delete;
             DROP TABLE audit_keying;
             ALTER TABLE audit DROP COLUMN key_id;
             DROP TABLE failed_guesses; DROP TABLE population_baselines;
             PRAGMA user_version = 3;",
        )
        .unwrap();
        let cols: i64 = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('audit') WHERE name = 'key_id'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(cols, 0);
    }
    // Opened by this version: migrated to 5, old rows unkeyed and intact, new rows keyed.
    let store = SqliteStore::open(&path).unwrap().with_audit_keys(keys());
    let v: i64 = Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, pin_sqlite::SCHEMA_VERSION);
    assert!(store.verify_audit_chain().unwrap().is_intact());
    assert_eq!(store.audit_keyed_from().unwrap(), None);
    activity(store, 2, 1);
    let store = SqliteStore::open(&path).unwrap().with_audit_keys(keys());
    assert_eq!(store.audit_keyed_from().unwrap(), Some(rows + 1));
    let report = store.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert!(report.intact_rows > rows);
}
