//! What the schema refuses, what a damaged row becomes, and what the audit chain reveals.

use pin_core::Error;
use pin_core::VerifyOutcome;
use pin_core::store::{Store, StoreError};
use pin_core::subject::Level;
use pin_sqlite::{BreakKind, SqliteStore};
use rusqlite::Connection;

use crate::common::{enrol_noipa, service, t0, tax};

/// A store with one NoiPA subject and a few audit rows, and a raw connection beside it.
fn setup(dir: &tempfile::TempDir) -> (SqliteStore, Connection) {
    let path = dir.path().join("rows.db");
    let svc = service(SqliteStore::open(&path).unwrap(), 3);
    let pin = enrol_noipa(&svc, &tax(0), "mario.rossi@example.it");
    for _ in 0..3 {
        let _ = svc
            .verify(&tax(0), &crate::common::wrong(&pin), Level::Online, t0())
            .unwrap();
    }
    drop(svc);
    let conn = Connection::open(&path).unwrap();
    (SqliteStore::open(&path).unwrap(), conn)
}

fn corrupt(store: &SqliteStore) -> String {
    match store.load(&tax(0)) {
        Err(StoreError::Corrupt(why)) => why,
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

// rule: BOTH-2 — the schema refuses anything but an Argon2id hash.
#[test]
fn schema_refuses_a_plaintext_pin_and_a_second_credential() {
    let dir = tempfile::tempdir().unwrap();
    let (store, conn) = setup(&dir);
    let plain = conn.execute("UPDATE credentials SET phc = '12345'", []);
    assert!(plain.is_err(), "a plaintext PIN was stored");
    // rule: BOTH-1 — one current PIN per subject, structurally.
    let second = conn.execute(
        "INSERT INTO credentials (tax_code, profile, serial, key_id, phc, body)
         SELECT tax_code, profile, serial + 1, key_id, phc, body FROM credentials",
        [],
    );
    assert!(second.is_err(), "a second credential was stored");
    let bad_counter = conn.execute("UPDATE attempts SET failures = -1", []);
    assert!(bad_counter.is_err());
    assert!(store.load(&tax(0)).unwrap().is_some());
}

// rule: NOIPA-8 — e-mail addresses are unique among NoiPA users, whatever the case.
#[test]
fn noipa_email_taken_through_the_service() {
    let dir = tempfile::tempdir().unwrap();
    let svc = service(SqliteStore::open(dir.path().join("mail.db")).unwrap(), 1);
    let _ = enrol_noipa(&svc, &tax(0), "mario.rossi@example.it");
    let contacts = pin_core::contact::Contacts {
        email: Some(crate::common::email("Mario.Rossi@EXAMPLE.it")),
        ..Default::default()
    };
    let cmd = pin_core::command::Command::Enrol(pin_core::command::Enrolment {
        role: pin_core::Role::Employee,
        contacts,
        cns_holder: false,
        enrolled_on: chrono::NaiveDate::from_ymd_opt(2020, 3, 2),
    });
    let err = svc
        .execute(&tax(1), &pin_core::Actor::Rid("rid-1".into()), &cmd, t0())
        .unwrap_err();
    assert!(matches!(err, Error::EmailInUse), "{err:?}");
    assert!(svc.store().load(&tax(1)).unwrap().is_none());
}

#[test]
fn damaged_rows_are_corrupt_never_a_panic_nor_a_valid_pin() {
    let dir = tempfile::tempdir().unwrap();
    let (store, conn) = setup(&dir);
    // Bypass the CHECKs, as a hostile editor or a bit flip would.
    conn.pragma_update(None, "ignore_check_constraints", true)
        .unwrap();
    let cases: [(&str, &str); 9] = [
        ("UPDATE subjects SET body = '{}'", "subject body"),
        (
            "UPDATE subjects SET body = json_set(body, '$.role', 'king')",
            "subject body",
        ),
        (
            "UPDATE subjects SET body = json_set(body, '$.contacts.email', 'not an address')",
            "subject body",
        ),
        ("UPDATE subjects SET row_format = 2", "row format"),
        ("UPDATE subjects SET profile = 'inps'", "profile"),
        ("UPDATE credentials SET phc = '12345'", "Argon2id"),
        (
            "UPDATE credentials SET serial = 99",
            "above the last serial",
        ),
        ("UPDATE attempts SET blocked = 7", "blocked"),
        ("UPDATE attempts SET failures = -1", "failures"),
    ];
    backup(&conn);
    for (sql, expected) in cases {
        conn.execute(sql, []).unwrap();
        let why = corrupt(&store);
        assert!(why.contains(expected), "{sql}: {why}");
        let svc = service(&store, 0);
        let err = svc
            .verify(&tax(0), "12345", Level::Online, t0())
            .unwrap_err();
        assert!(
            matches!(err, Error::Store(StoreError::Corrupt(_))),
            "{sql}: {err:?}"
        );
        restore(&conn);
        assert!(store.load(&tax(0)).is_ok(), "{sql}: restored");
    }
}

/// Puts back the rows saved by [`backup`].
fn restore(conn: &Connection) {
    conn.execute_batch(
        "UPDATE subjects SET body = (SELECT body FROM bak_subjects), row_format = 1,
                             profile = (SELECT profile FROM bak_subjects);
         UPDATE credentials SET phc = (SELECT phc FROM bak_credentials),
                                serial = (SELECT serial FROM bak_credentials);
         UPDATE attempts SET blocked = (SELECT blocked FROM bak_attempts),
                             failures = (SELECT failures FROM bak_attempts);",
    )
    .unwrap();
}

/// Saves the one subject's rows beside them, for [`restore`].
fn backup(conn: &Connection) {
    conn.execute_batch(
        "CREATE TABLE bak_subjects AS SELECT * FROM subjects;
         CREATE TABLE bak_credentials AS SELECT * FROM credentials;
         CREATE TABLE bak_attempts AS SELECT * FROM attempts;",
    )
    .unwrap();
}

#[test]
fn audit_rows_cannot_be_changed_and_tampering_is_found() {
    let dir = tempfile::tempdir().unwrap();
    let (store, conn) = setup(&dir);
    let report = store.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "{report:?}");
    let rows = report.intact_rows;
    assert!(rows >= 4, "enrol and three verifies were audited");
    assert_eq!(report.head.unwrap().id, rows);
    // The triggers: no update, no delete, no insert that does not extend the chain.
    assert!(
        conn.execute("UPDATE audit SET event = event WHERE id = 2", [])
            .is_err()
    );
    assert!(conn.execute("DELETE FROM audit WHERE id = 2", []).is_err());
    assert!(
        conn.execute(
            "INSERT INTO audit (id, tax_code, event, prev_hash, hash)
             SELECT id + 100, tax_code, event, prev_hash, hash FROM audit WHERE id = 1",
            [],
        )
        .is_err()
    );
    // Around the triggers: the chain shows where.
    conn.execute_batch("DROP TRIGGER audit_no_update; DROP TRIGGER audit_no_delete;")
        .unwrap();
    conn.execute(
        "UPDATE audit SET event = replace(event, 'rejected', 'accepted') WHERE id = 3",
        [],
    )
    .unwrap();
    let report = store.verify_audit_chain().unwrap();
    let br = report.first_break.unwrap();
    assert_eq!((br.id, br.kind), (3, BreakKind::HashMismatch));
    assert_eq!(report.intact_rows, 2);
    conn.execute("DELETE FROM audit WHERE id = 3", []).unwrap();
    let br = store.verify_audit_chain().unwrap().first_break.unwrap();
    assert_eq!(
        (br.id, br.kind),
        (3, BreakKind::Missing { next_present: 4 })
    );
}

#[test]
fn a_lock_survives_reopening() {
    // rule: POL-5 — the block is stored, not recomputed.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lock.db");
    let pin = {
        let svc = service(SqliteStore::open(&path).unwrap(), 5);
        let pin = enrol_noipa(&svc, &tax(0), "mario.rossi@example.it");
        for _ in 0..10 {
            let _ = svc
                .verify(&tax(0), &crate::common::wrong(&pin), Level::Online, t0())
                .unwrap();
        }
        pin
    };
    let svc = service(SqliteStore::open(&path).unwrap(), 6);
    assert_eq!(
        svc.verify(&tax(0), &pin, Level::Online, t0()).unwrap(),
        VerifyOutcome::Locked
    );
    let l = svc.store().load(&tax(0)).unwrap().unwrap();
    assert!(l.attempts.blocked);
    assert_eq!(l.attempts.failures, 10);
}
