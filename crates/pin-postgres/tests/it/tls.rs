//! TLS to the server: libpq's `sslmode` and `sslrootcert`, against one throw-away server
//! started with a CA and a certificate made for this run (valid for `pin-db.test` only).
//! Connections name that host and go to 127.0.0.1 (`hostaddr`), so no DNS is involved;
//! connecting *as* 127.0.0.1 is a host name the certificate does not list.
//!
//! One server for every case (each case is a function, run in turn by one test), turned
//! from TLS on to off for the last ones.
//! rule: NOIPA-8, INPS-12, POL-5, BOTH-1 (pin-core's conformance suite, run over verified TLS)

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use pin_core::store::Store;
use pin_postgres::cluster::{self, Cluster};
use pin_postgres::{OpenError, PostgresStore};

use crate::common::{cluster as plain_cluster, database, sql};

const NAME: &str = "pin-db.test";

/// The password in `url` (`postgres://postgres:PASSWORD@…`), to look for in messages.
fn password(url: &str) -> String {
    let rest = url.strip_prefix("postgres://postgres:").unwrap();
    rest.split('@').next().unwrap().to_owned()
}

/// `url` (to 127.0.0.1) rewritten to name `host`, reached at 127.0.0.1, with `params`.
fn via(url: &str, host: &str, params: &str) -> String {
    let url = url.replace("@127.0.0.1:", &format!("@{host}:"));
    let hostaddr = if host == "127.0.0.1" {
        String::new()
    } else {
        "hostaddr=127.0.0.1&".to_owned()
    };
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    format!("{url}?{hostaddr}application_name=tls_test_{n}&{params}")
}

fn ca(c: &Cluster) -> PathBuf {
    c.ca_file().unwrap()
}

/// Opens, expecting an error; checks that neither its message nor its `Debug` holds the
/// password.
fn refused(url: &str) -> OpenError {
    let e = PostgresStore::open(url).unwrap_err();
    let secret = password(url);
    let shown = format!("{e} | {e:?}");
    assert!(!shown.contains(&secret), "the password leaked: {shown}");
    e
}

/// Whether the connections of `store`, opened with `store_url` (its own
/// `application_name`), are encrypted, as the server sees them (asked through `admin`).
fn encrypted(admin: &str, store_url: &str, store: &PostgresStore) -> bool {
    let _ = store.key_fingerprints().unwrap();
    let app = store_url
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("application_name="))
        .unwrap();
    let row = sql(admin)
        .query_one(
            "SELECT bool_and(s.ssl) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
              WHERE a.application_name = $1",
            &[&app],
        )
        .unwrap();
    row.get::<_, Option<bool>>(0).unwrap()
}

/// Opens `store_url` and tells whether its connection is encrypted.
fn open_encrypted(admin: &str, store_url: &str) -> bool {
    let store = PostgresStore::open(store_url).unwrap();
    encrypted(admin, store_url, &store)
}

fn verify_full_with_the_right_ca_connects_and_conforms(c: &Cluster) {
    let ca = ca(c);
    let url = database(c);
    let tls = via(
        &url,
        NAME,
        &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
    );
    assert!(open_encrypted(&url, &tls));
    // The whole conformance suite over verified TLS.
    pin_core::conformance::run_all(|| {
        PostgresStore::open(&via(
            &database(c),
            NAME,
            &format!("sslmode=verify-full&sslrootcert={}", ca.display()),
        ))
        .unwrap()
    });
}

/// The same through a libpq `key=value` string, the value quoted.
fn key_value_strings_carry_the_tls_parameters(c: &Cluster) {
    let url = database(c);
    let db = url.rsplit('/').next().unwrap();
    let kv = format!(
        "host={NAME} hostaddr=127.0.0.1 port={} user=postgres password='{}' dbname={db} \
         application_name=tls_test_kv sslmode = verify-full sslrootcert='{}'",
        c.port(),
        password(&url),
        ca(c).display()
    );
    let store = PostgresStore::open(&kv).unwrap();
    assert!(encrypted(&url, "?application_name=tls_test_kv", &store));
}

fn verify_full_with_a_wrong_ca_is_refused_as_untrusted(c: &Cluster, dir: &Path) {
    let wrong = dir.join("unrelated-ca.pem");
    std::fs::write(&wrong, cluster::unrelated_ca_pem().unwrap()).unwrap();
    let url = via(
        &database(c),
        NAME,
        &format!("sslmode=verify-full&sslrootcert={}", wrong.display()),
    );
    let e = refused(&url);
    assert!(matches!(e, OpenError::CertificateUntrusted { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("not trusted"), "{text}");
    assert!(text.contains("unrelated-ca.pem"), "{text}");
}

/// No `sslmode`, a host that is not this machine: `verify-full` against the public CAs,
/// which did not sign the test certificate.
fn the_default_off_this_host_is_verify_full(c: &Cluster) {
    let e = refused(&via(&database(c), NAME, "connect_timeout=5"));
    assert!(matches!(e, OpenError::CertificateUntrusted { .. }), "{e:?}");
    assert!(e.to_string().contains("sslrootcert"), "{e}");
}

/// No `sslmode`, the server on this machine: plain, as before TLS support.
fn the_default_on_this_host_is_plain(c: &Cluster) {
    let url = database(c);
    assert!(!open_encrypted(
        &url,
        &via(&url, "127.0.0.1", "connect_timeout=5")
    ));
}

fn verify_full_to_a_name_not_in_the_certificate_is_refused(c: &Cluster) {
    let url = via(
        &database(c),
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={}", ca(c).display()),
    );
    let e = refused(&url);
    assert!(matches!(e, OpenError::HostnameMismatch { .. }), "{e:?}");
    assert!(
        e.to_string().contains("not valid for that host name"),
        "{e}"
    );
}

/// `verify-ca`: the chain is checked (a wrong CA is refused), the host name is not.
fn verify_ca_checks_the_chain_but_not_the_name(c: &Cluster, dir: &Path) {
    let url = database(c);
    assert!(open_encrypted(
        &url,
        &via(
            &url,
            "127.0.0.1",
            &format!("sslmode=verify-ca&sslrootcert={}", ca(c).display()),
        )
    ));
    let wrong = dir.join("unrelated-ca.pem");
    let e = refused(&via(
        &url,
        "127.0.0.1",
        &format!("sslmode=verify-ca&sslrootcert={}", wrong.display()),
    ));
    assert!(matches!(e, OpenError::CertificateUntrusted { .. }), "{e:?}");
    // Without a CA file it would trust any public certificate for any name: refused.
    let e = refused(&via(&url, "127.0.0.1", "sslmode=verify-ca"));
    assert!(matches!(e, OpenError::InvalidUrl { .. }), "{e:?}");
    assert!(e.to_string().contains("sslrootcert"), "{e}");
}

/// `require` without a CA file: encrypted, and any certificate accepted. With one, the
/// chain is checked (as libpq does).
fn require_encrypts_without_verifying(c: &Cluster, dir: &Path) {
    let url = database(c);
    assert!(open_encrypted(
        &url,
        &via(&url, "127.0.0.1", "sslmode=require")
    ));
    let wrong = dir.join("unrelated-ca.pem");
    let e = refused(&via(
        &url,
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={}", wrong.display()),
    ));
    assert!(matches!(e, OpenError::CertificateUntrusted { .. }), "{e:?}");
}

fn prefer_uses_tls_when_offered(c: &Cluster) {
    let url = database(c);
    assert!(open_encrypted(
        &url,
        &via(&url, "127.0.0.1", "sslmode=prefer")
    ));
}

fn disable_connects_in_plain(c: &Cluster) {
    let url = database(c);
    assert!(!open_encrypted(&url, &via(&url, NAME, "sslmode=disable")));
}

fn an_unusable_ca_file_is_named(c: &Cluster, dir: &Path) {
    let url = database(c);
    let missing = dir.join("no-such-ca.pem");
    let e = refused(&via(
        &url,
        NAME,
        &format!("sslmode=verify-full&sslrootcert={}", missing.display()),
    ));
    assert!(matches!(e, OpenError::CaFile { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-ca.pem"), "{e}");
    let garbage = dir.join("garbage.pem");
    std::fs::write(&garbage, "not a certificate\n").unwrap();
    let e = refused(&via(
        &url,
        NAME,
        &format!("sslmode=verify-full&sslrootcert={}", garbage.display()),
    ));
    assert!(matches!(e, OpenError::CaFile { .. }), "{e:?}");
    assert!(e.to_string().contains("no PEM certificate"), "{e}");
}

fn an_unknown_sslmode_is_refused(c: &Cluster) {
    let e = refused(&via(&database(c), NAME, "sslmode=allow"));
    assert!(matches!(e, OpenError::InvalidUrl { .. }), "{e:?}");
    assert!(e.to_string().contains("verify-full"), "{e}");
}

/// The server with TLS turned off.
fn require_against_a_server_without_tls_is_refused(c: &Cluster) {
    let url = database(c);
    for (params, defaulted) in [
        ("sslmode=require".to_owned(), false),
        (
            format!("sslmode=verify-full&sslrootcert={}", ca(c).display()),
            false,
        ),
        ("connect_timeout=5".to_owned(), true),
    ] {
        let e = refused(&via(&url, NAME, &params));
        match &e {
            OpenError::TlsNotOffered { defaulted: d, .. } => assert_eq!(*d, defaulted, "{e}"),
            other => panic!("{params}: expected TlsNotOffered, got {other:?}"),
        }
        assert!(e.to_string().contains("does not offer TLS"), "{e}");
    }
    // `prefer` falls back to plain; `disable` is plain anyway.
    for mode in ["prefer", "disable"] {
        let store_url = via(&url, NAME, &format!("sslmode={mode}"));
        assert!(!open_encrypted(&url, &store_url), "{mode}");
    }
}

#[test]
fn sslmodes_against_a_tls_server() {
    if cluster::find_binaries().is_none() {
        // Says so loudly (or fails in CI).
        let _ = plain_cluster("sslmodes_against_a_tls_server");
        return;
    }
    let c = Cluster::start_with_tls(&[NAME]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("unrelated-ca.pem"),
        cluster::unrelated_ca_pem().unwrap(),
    )
    .unwrap();
    verify_full_with_the_right_ca_connects_and_conforms(&c);
    key_value_strings_carry_the_tls_parameters(&c);
    verify_full_with_a_wrong_ca_is_refused_as_untrusted(&c, dir.path());
    the_default_off_this_host_is_verify_full(&c);
    the_default_on_this_host_is_plain(&c);
    verify_full_to_a_name_not_in_the_certificate_is_refused(&c);
    verify_ca_checks_the_chain_but_not_the_name(&c, dir.path());
    require_encrypts_without_verifying(&c, dir.path());
    prefer_uses_tls_when_offered(&c);
    disable_connects_in_plain(&c);
    an_unusable_ca_file_is_named(&c, dir.path());
    an_unknown_sslmode_is_refused(&c);

    c.set_ssl(false).unwrap();
    require_against_a_server_without_tls_is_refused(&c);
}
