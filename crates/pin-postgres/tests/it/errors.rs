//! Clear errors when the server is down, the credentials are wrong, the URL or the database
//! is bad, or the schema is newer; recovery when the server comes back; migrations applied
//! once when many instances start together.

use pin_core::store::{Store, StoreError};
use pin_postgres::{OpenError, PostgresStore};

use crate::common::{cluster, database, enrol_noipa, service, sql, tax};

#[test]
fn server_down_then_back() {
    let Some(c) = cluster("server_down_then_back") else {
        return;
    };
    let url = database(&c);
    let store = PostgresStore::open(&url).unwrap();
    let svc = service(&store, 1);
    let _pin = enrol_noipa(&svc, &tax(0), "mario.rossi@example.it");
    c.stop().unwrap();

    let e = PostgresStore::open(&url).unwrap_err();
    assert!(matches!(e, OpenError::Unreachable { .. }), "{e:?}");
    assert!(
        !e.is_retryable(),
        "a server that is not there is its operator's matter"
    );
    let msg = e.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{}", c.port())) && msg.contains("running"),
        "{msg}"
    );
    assert!(
        !msg.contains("pin-test-"),
        "the password is never shown: {msg}"
    );

    let e = store.load(&tax(0)).unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(e.is_retryable());
    let msg = e.to_string();
    assert!(msg.contains("cannot reach the PostgreSQL server"), "{msg}");
    assert!(
        !msg.contains("pin-test-"),
        "the password is never shown: {msg}"
    );

    c.start_again().unwrap();
    // The same store, not reopened: the pool reconnects.
    let l = store.load(&tax(0)).unwrap().unwrap();
    assert_eq!(l.subject.tax_code, tax(0));
    assert!(store.verify_audit_chain().unwrap().is_intact());
}

#[test]
fn bad_credentials_url_and_database() {
    let Some(c) = cluster("bad_credentials_url_and_database") else {
        return;
    };
    let wrong = format!(
        "postgres://postgres:not-the-password@127.0.0.1:{}/postgres",
        c.port()
    );
    let e = PostgresStore::open(&wrong).unwrap_err();
    assert!(matches!(e, OpenError::Authentication { .. }), "{e:?}");
    let msg = e.to_string();
    assert!(msg.contains("user name and password"), "{msg}");
    assert!(!msg.contains("not-the-password"), "{msg}");

    let none = format!("postgres://postgres@127.0.0.1:{}/postgres", c.port());
    let e = PostgresStore::open(&none).unwrap_err();
    assert!(matches!(e, OpenError::Authentication { .. }), "{e:?}");

    let e = PostgresStore::open(&c.url("no_such_db")).unwrap_err();
    assert!(matches!(e, OpenError::NoDatabase { .. }), "{e:?}");
    assert!(e.to_string().contains("no_such_db"), "{e}");

    let e = PostgresStore::open("postgres://u:p@127.0.0.1:notaport/db").unwrap_err();
    assert!(matches!(e, OpenError::InvalidUrl { .. }), "{e:?}");
}

#[test]
fn migrations_once_and_newer_schema_refused() {
    let Some(c) = cluster("migrations_once_and_newer_schema_refused") else {
        return;
    };
    let url = database(&c);
    // Eight instances start at once on an empty database.
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| PostgresStore::open_with_pool_size(&url, 1).map(|_| ())))
            .collect();
        for h in handles {
            h.join().unwrap().unwrap();
        }
    });
    let mut client = sql(&url);
    let versions: Vec<i32> = client
        .query("SELECT version FROM pin_migrations ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        versions,
        (1..=pin_postgres::SCHEMA_VERSION).collect::<Vec<_>>(),
        "each migration once"
    );

    client
        .execute(
            "INSERT INTO pin_migrations (version) VALUES ($1)",
            &[&(pin_postgres::SCHEMA_VERSION + 1)],
        )
        .unwrap();
    let e = PostgresStore::open(&url).unwrap_err();
    assert!(
        matches!(
            e,
            OpenError::NewerSchema {
                found,
                supported,
                ..
            } if i64::from(found) == i64::from(pin_postgres::SCHEMA_VERSION) + 1
                && i64::from(supported) == i64::from(pin_postgres::SCHEMA_VERSION)
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("upgrade the program"), "{e}");
}
