//! The database's own constraints: no plaintext secret, an append-only audit log whose
//! chain cannot fork, damaged rows reported as corrupt, tampering made visible.
//! rule: BOTH-2 (only a one-way hash is stored), BOTH-1 (one current PIN per subject)

use pin_core::store::{Store, StoreError};
use pin_postgres::{BreakKind, PostgresStore};

use crate::common::{cluster, database, enrol_noipa, service, sql, tax};

// rule: BOTH-2, BOTH-1 — the schema itself refuses a PIN in clear and a second credential.
#[test]
fn constraints_triggers_and_tampering() {
    let Some(c) = cluster("constraints_triggers_and_tampering") else {
        return;
    };
    let url = database(&c);
    let store = PostgresStore::open(&url).unwrap();
    let svc = service(&store, 3);
    let pin = enrol_noipa(&svc, &tax(0), "mario.rossi@example.it");
    let _ = enrol_noipa(&svc, &tax(1), "giuseppe.verdi@example.it");
    let mut db = sql(&url);

    // BOTH-2: a PIN in clear cannot be stored.
    let e = db
        .execute("UPDATE credentials SET phc = $1", &[&pin])
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "23514", "check violation: {e}");
    // BOTH-1: a second current credential cannot exist.
    let e = db
        .execute(
            "INSERT INTO credentials SELECT tax_code, profile, serial + 1, key_id, phc, body
               FROM credentials WHERE tax_code = $1",
            &[&tax(0).as_str()],
        )
        .unwrap_err();
    assert_eq!(e.code().unwrap().code(), "23505", "{e}");

    // The audit log is append-only, and an insert must extend the chain.
    for statement in [
        "UPDATE audit SET tax_code = tax_code",
        "DELETE FROM audit",
        "TRUNCATE audit",
        "DELETE FROM audit_head",
        "INSERT INTO audit SELECT id + 1, tax_code, event, prev_hash, hash FROM audit
          WHERE id = (SELECT max(id) FROM audit)",
    ] {
        let e = db.batch_execute(statement).unwrap_err();
        assert!(
            e.to_string().contains("audit") || e.as_db_error().is_some(),
            "{statement}: {e}"
        );
    }
    let report = store.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "{report:?}");
    let rows = report.intact_rows;
    assert!(rows >= 2);

    // A superuser working around the triggers is seen by the hashes.
    db.batch_execute(
        "ALTER TABLE audit DISABLE TRIGGER USER;
         UPDATE audit SET event = replace(event, 'rid-1', 'rid-9') WHERE id = 1;",
    )
    .unwrap();
    let report = store.verify_audit_chain().unwrap();
    let b = report.first_break.unwrap();
    assert_eq!((b.id, b.kind), (1, BreakKind::HashMismatch));

    // Rows cut off at the end, the head left as it was: seen by the head.
    let url2 = database(&c);
    let store2 = PostgresStore::open(&url2).unwrap();
    let _ = enrol_noipa(&service(&store2, 4), &tax(0), "mario.rossi@example.it");
    let mut db2 = sql(&url2);
    db2.batch_execute(
        "ALTER TABLE audit DISABLE TRIGGER USER;
         DELETE FROM audit WHERE id = (SELECT max(id) FROM audit);",
    )
    .unwrap();
    let report = store2.verify_audit_chain().unwrap();
    assert!(
        matches!(
            report.first_break.as_ref().map(|b| &b.kind),
            Some(BreakKind::HeadMismatch { .. })
        ),
        "{report:?}"
    );

    // A damaged row is Corrupt, never a panic or a usable record.
    db.execute(
        "UPDATE subjects SET body = '{\"role\": \"pilot\"}' WHERE tax_code = $1",
        &[&tax(1).as_str()],
    )
    .unwrap();
    assert!(matches!(store.load(&tax(1)), Err(StoreError::Corrupt(_))));
    db.execute(
        "UPDATE credentials SET key_id = 4294967295 + 0, serial = 99 WHERE tax_code = $1",
        &[&tax(0).as_str()],
    )
    .unwrap();
    assert!(
        matches!(store.load(&tax(0)), Err(StoreError::Corrupt(_))),
        "a credential serial above the last one is corrupt"
    );
}
