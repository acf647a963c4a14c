//! The keyed audit chain on PostgreSQL: rewriting a `rejected` event into `accepted` and
//! recomputing the chain (and the head) passes an unkeyed chain, and fails a keyed one
//! without the audit key; an unkeyed database keeps its old rows up to the recorded boundary.

use pin_core::audit::chain::{self, BreakKind, GENESIS};
use pin_core::audit::key::{AuditKey, AuditKeyring};
use pin_core::store::{Store, StoreError};
use pin_core::subject::Level;
use pin_postgres::PostgresStore;

use crate::common::{cluster, database, enrol_noipa, service, sql, t0, tax, wrong};

fn keys() -> AuditKeyring {
    AuditKeyring::new(AuditKey::new(1, &[0x5a; 32]).unwrap())
}

fn activity(store: &PostgresStore, seed: u64, who: usize) {
    let svc = service(store, seed);
    let pin = enrol_noipa(&svc, &tax(who), &format!("user{who}@example.it"));
    for _ in 0..3 {
        let _ = svc
            .verify(&tax(who), &wrong(&pin), Level::Online, t0())
            .unwrap();
    }
}

/// What a superuser without the audit key does: disables the triggers, turns the first
/// `rejected` event into `accepted`, recomputes every hash from it on as SHA-256 links (with
/// `key_id` set as given) and moves the head to the new last hash. Returns the row's id.
fn rewrite_rejection(db: &mut postgres::Client, key_id: Option<i64>) -> i64 {
    db.batch_execute(
        "ALTER TABLE audit DISABLE TRIGGER USER; ALTER TABLE audit_head DISABLE TRIGGER USER;
         ALTER TABLE audit_keying DISABLE TRIGGER USER;",
    )
    .unwrap();
    let target: i64 = db
        .query_one(
            "SELECT min(id) FROM audit WHERE event LIKE '%\"outcome\":\"rejected\"%'",
            &[],
        )
        .unwrap()
        .get(0);
    let _ = db
        .execute(
            "UPDATE audit SET event = replace(event, '\"outcome\":\"rejected\"', '\"outcome\":\"accepted\"') WHERE id = $1",
            &[&target],
        )
        .unwrap();
    recompute(db, target, key_id);
    target
}

fn recompute(db: &mut postgres::Client, from: i64, key_id: Option<i64>) {
    let mut prev: [u8; 32] = if from == 1 {
        GENESIS
    } else {
        let h: Vec<u8> = db
            .query_one("SELECT hash FROM audit WHERE id = $1", &[&(from - 1)])
            .unwrap()
            .get(0);
        h.try_into().unwrap()
    };
    let rows: Vec<(i64, String)> = db
        .query(
            "SELECT id, event FROM audit WHERE id >= $1 ORDER BY id",
            &[&from],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    for (id, event) in rows {
        let hash = chain::link(&prev, event.as_bytes());
        let _ = db
            .execute(
                "UPDATE audit SET prev_hash = $2, hash = $3, key_id = $4 WHERE id = $1",
                &[&id, &prev.as_slice(), &hash.as_slice(), &key_id],
            )
            .unwrap();
        prev = hash;
    }
    let _ = db
        .execute("UPDATE audit_head SET hash = $1", &[&prev.as_slice()])
        .unwrap();
}

#[test]
fn rewriting_a_rejection_and_recomputing_fails_without_the_audit_key() {
    let Some(c) = cluster("rewriting_a_rejection_and_recomputing_fails_without_the_audit_key")
    else {
        return;
    };

    // Unkeyed: the attack passes (the weakness, shown so that the rest can fail).
    let url = database(&c);
    let store = PostgresStore::open(&url).unwrap();
    activity(&store, 1, 0);
    let _ = rewrite_rejection(&mut sql(&url), None);
    assert!(store.verify_audit_chain().unwrap().is_intact());
    assert_eq!(store.audit_keyed_from().unwrap(), None);

    // Keyed: the same attack is found.
    let url = database(&c);
    let store = PostgresStore::open(&url).unwrap().with_audit_keys(keys());
    activity(&store, 1, 0);
    let report = store.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(store.audit_keyed_from().unwrap(), Some(1));
    let mut db = sql(&url);
    let target = rewrite_rejection(&mut db, Some(1));
    let target_u = u64::try_from(target).unwrap();
    let b = store.verify_audit_chain().unwrap().first_break.unwrap();
    assert_eq!((b.id, b.kind), (target_u, BreakKind::HashMismatch));
    recompute(&mut db, target, None);
    let b = store.verify_audit_chain().unwrap().first_break.unwrap();
    assert_eq!(
        (b.id, b.kind),
        (
            target_u,
            BreakKind::WrongKeying {
                expected_keyed: true
            }
        )
    );
    // Everything downgraded and the boundary deleted: only the expected boundary tells.
    db.batch_execute("DELETE FROM audit_keying").unwrap();
    recompute(&mut db, 1, None);
    let mut report = store.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "{report:?}");
    report.check_keyed_from(store.audit_keyed_from().unwrap(), 1);
    assert_eq!(
        report.first_break.unwrap().kind,
        BreakKind::KeyedFromMismatch {
            recorded: None,
            expected: 1
        }
    );
}

#[test]
fn a_keyed_chain_refuses_unkeyed_rows_and_an_old_chain_keeps_its_rows() {
    let Some(c) = cluster("a_keyed_chain_refuses_unkeyed_rows_and_an_old_chain_keeps_its_rows")
    else {
        return;
    };
    let url = database(&c);
    activity(&PostgresStore::open(&url).unwrap(), 1, 0);
    let n = PostgresStore::open(&url)
        .unwrap()
        .verify_audit_chain()
        .unwrap()
        .intact_rows;
    let keyed = PostgresStore::open(&url).unwrap().with_audit_keys(keys());
    activity(&keyed, 2, 1);
    assert_eq!(keyed.audit_keyed_from().unwrap(), Some(n + 1));
    let report = keyed.verify_audit_chain().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert!(report.intact_rows > n);

    // A store without the key: cannot append (nothing written), cannot check keyed rows.
    let bare = PostgresStore::open(&url).unwrap();
    let before = bare.audit_log(None).unwrap();
    match bare.append_audit(&before[..1]) {
        Err(StoreError::Backend(e)) => {
            assert!(e.to_string().contains("keyed from row"), "{e}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(bare.audit_log(None).unwrap().len(), before.len());
    let b = bare.verify_audit_chain().unwrap().first_break.unwrap();
    assert_eq!((b.id, b.kind), (n + 1, BreakKind::UnknownKey { key_id: 1 }));
    // Around the store, the trigger refuses an unkeyed row too, and the boundary is fixed.
    let mut db = sql(&url);
    let e = db
        .batch_execute(
            "INSERT INTO audit (id, tax_code, event, prev_hash, hash)
             SELECT id + 1, tax_code, event, hash, hash FROM audit ORDER BY id DESC LIMIT 1",
        )
        .unwrap_err();
    assert!(format!("{e:?}").contains("keyed"), "{e:?}");
    assert!(
        db.batch_execute("UPDATE audit_keying SET keyed_from = 1")
            .is_err()
    );
    assert!(db.batch_execute("DELETE FROM audit_keying").is_err());
}
