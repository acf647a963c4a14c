//! TLS to the server: libpq's `sslmode` and `sslrootcert` connection parameters, on rustls.
//!
//! The `postgres` crate knows `sslmode=disable|prefer|require` but not the two verifying
//! modes nor `sslrootcert`, so both parameters are taken out of the URL (or `key=value`
//! string) here, before the rest is handed to it, and the TLS configuration is built from
//! them: which certificates are trusted, and what is checked of the server's.
//!
//! See the crate docs ("TLS") for what each mode protects against.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use postgres::config::{Host, SslMode as PgSslMode};
use postgres::{Client, Config};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::OpenError;

/// libpq's `sslmode`, as this crate implements it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, plain otherwise; nothing verified.
    Prefer,
    /// TLS or no connection; the certificate is not verified (unless `sslrootcert` is
    /// given: then as `VerifyCa`, like libpq).
    Require,
    /// TLS, the certificate chain verified against the trusted CAs; any host name.
    VerifyCa,
    /// TLS, the chain verified and the certificate valid for the host connected to.
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<Self, OpenError> {
        Ok(match value {
            "disable" => Self::Disable,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            // libpq's `allow` tries plain first and TLS only when refused: nothing a
            // service wants.
            other => {
                return Err(OpenError::InvalidUrl {
                    reason: format!(
                        "sslmode={other:?} is not supported; use disable, prefer, require, verify-ca or verify-full"
                    ),
                });
            }
        })
    }

    /// The name in the URL.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }
}

impl fmt::Display for SslMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The TLS parameters found in a connection string, and the string without them.
pub(crate) struct Extracted {
    /// The connection string without `sslmode` and `sslrootcert`, for `Config::from_str`.
    pub(crate) rest: String,
    mode: Option<SslMode>,
    root_cert: Option<PathBuf>,
}

/// Takes `sslmode` and `sslrootcert` out of a `postgres://` URL or a `key=value` string.
/// A string that cannot be split is returned whole: the `postgres` crate's parser then
/// says what is wrong with it.
pub(crate) fn extract(url: &str) -> Result<Extracted, OpenError> {
    let (rest, params) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        extract_url(url)
    } else {
        extract_key_values(url).unwrap_or_else(|| (url.to_owned(), Vec::new()))
    };
    let mut mode = None;
    let mut root_cert = None;
    for (key, value) in params {
        if key == "sslmode" {
            mode = Some(SslMode::parse(&value)?);
        } else if value.is_empty() {
            root_cert = None;
        } else {
            root_cert = Some(PathBuf::from(value));
        }
    }
    Ok(Extracted {
        rest,
        mode,
        root_cert,
    })
}

fn ours(key: &str) -> bool {
    key == "sslmode" || key == "sslrootcert"
}

/// The query of a URL starts at the first `?` after the credentials (as the `postgres`
/// crate reads it); its `sslmode` and `sslrootcert` are percent-decoded and removed.
fn extract_url(url: &str) -> (String, Vec<(String, String)>) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let after_credentials = url
        .get(after_scheme..)
        .and_then(|s| s.find('@'))
        .map_or(after_scheme, |i| after_scheme + i + 1);
    let Some(q) = url
        .get(after_credentials..)
        .and_then(|s| s.find('?'))
        .map(|i| after_credentials + i)
    else {
        return (url.to_owned(), Vec::new());
    };
    let (Some(head), Some(query)) = (url.get(..q), url.get(q + 1..)) else {
        return (url.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&') {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = percent_decode(key);
        if ours(&key) {
            taken.push((key, percent_decode(value)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        head.to_owned()
    } else {
        format!("{head}?{}", kept.join("&"))
    };
    (rest, taken)
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits a libpq `key = value` string (values bare or in single quotes, `\` escapes, as
/// the `postgres` crate reads it) and writes it back without our keys, every value
/// quoted. `None` when it does not parse.
fn extract_key_values(s: &str) -> Option<(String, Vec<(String, String)>)> {
    let mut it = s.chars().peekable();
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    loop {
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut key = String::new();
        while let Some(c) = it.next_if(|c| !c.is_whitespace() && *c != '=') {
            key.push(c);
        }
        if key.is_empty() {
            break;
        }
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        it.next_if_eq(&'=')?;
        while it.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if it.next_if_eq(&'\'').is_some() {
            loop {
                match it.next()? {
                    '\'' => break,
                    '\\' => value.push(it.next()?),
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = it.next_if(|c| !c.is_whitespace()) {
                if c == '\\' {
                    value.push(it.next()?);
                } else {
                    value.push(c);
                }
            }
            if value.is_empty() {
                return None;
            }
        }
        if ours(&key) {
            taken.push((key, value));
        } else {
            let quoted = value.replace('\\', "\\\\").replace('\'', "\\'");
            kept.push(format!("{key}='{quoted}'"));
        }
    }
    Some((kept.join(" "), taken))
}

/// How a store's connections are secured.
#[derive(Clone)]
pub(crate) struct Tls {
    mode: SslMode,
    /// Whether the mode was the default (not written in the URL).
    defaulted: bool,
    root_cert: Option<PathBuf>,
    /// `None` for [`SslMode::Disable`].
    connector: Option<MakeRustlsConnect>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("sslmode", &self.mode)
            .field("defaulted", &self.defaulted)
            .field("sslrootcert", &self.root_cert)
            .finish_non_exhaustive()
    }
}

/// Whether every host (and `hostaddr`) of `config` is this machine: a Unix-domain socket,
/// `localhost`, or a loopback address.
fn all_loopback(config: &Config) -> bool {
    let host_local = |h: &Host| match h {
        Host::Tcp(name) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Host::Unix(_) => true,
    };
    config.get_hosts().iter().all(host_local)
        && config.get_hostaddrs().iter().all(IpAddr::is_loopback)
}

impl Extracted {
    /// The TLS settings for `config` (whose `ssl_mode` is set to match): the mode of the
    /// URL, else `disable` when every host is this machine and `verify-full` otherwise;
    /// the CA certificates of `sslrootcert` read now, so that a bad file fails the open.
    pub(crate) fn resolve(self, config: &mut Config) -> Result<Tls, OpenError> {
        let defaulted = self.mode.is_none();
        let mode = self.mode.unwrap_or(if all_loopback(config) {
            SslMode::Disable
        } else {
            SslMode::VerifyFull
        });
        let sockets = config
            .get_hosts()
            .iter()
            .any(|h| matches!(h, Host::Unix(_)));
        if sockets
            && matches!(
                mode,
                SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull
            )
        {
            return Err(OpenError::InvalidUrl {
                reason: format!(
                    "sslmode={mode} cannot be met over a Unix-domain socket (PostgreSQL has no TLS there); connect over TCP, or use sslmode=disable"
                ),
            });
        }
        let _ = config.ssl_mode(match mode {
            SslMode::Disable => PgSslMode::Disable,
            SslMode::Prefer => PgSslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => PgSslMode::Require,
        });
        let connector = match mode {
            SslMode::Disable => None,
            _ => Some(MakeRustlsConnect::new(client_config(
                mode,
                self.root_cert.as_deref(),
            )?)),
        };
        Ok(Tls {
            mode,
            defaulted,
            root_cert: self.root_cert,
            connector,
        })
    }
}

/// Reads the PEM certificates of `path` into a root store.
fn read_roots(path: &Path) -> Result<RootCertStore, OpenError> {
    let bad = |reason: String| OpenError::CaFile {
        path: path.to_owned(),
        reason,
    };
    let pem = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| bad(format!("not a valid PEM file: {e}")))?;
        roots
            .add(cert)
            .map_err(|e| bad(format!("a certificate in it cannot be used as a CA: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificate (BEGIN CERTIFICATE) in it".into()));
    }
    Ok(roots)
}

fn client_config(mode: SslMode, root_cert: Option<&Path>) -> Result<ClientConfig, OpenError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let roots = match root_cert {
        Some(path) => read_roots(path)?,
        None if mode == SslMode::VerifyCa => {
            return Err(OpenError::InvalidUrl {
                reason: "sslmode=verify-ca needs sslrootcert=PATH (the CA that signed the server's certificate): against the public web CAs, without the host name check, any certificate they ever issued would pass".into(),
            });
        }
        None => RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    let tls_error = |e: rustls::Error| OpenError::InvalidUrl {
        reason: format!("cannot set up TLS: {e}"),
    };
    let builder = ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(tls_error)?;
    let verify_chain = matches!(mode, SslMode::VerifyCa)
        || (matches!(mode, SslMode::Require) && root_cert.is_some());
    let mut config = match mode {
        SslMode::VerifyFull => builder.with_root_certificates(roots),
        _ if verify_chain => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ChainOnly {
                roots: Arc::new(roots),
                algorithms: provider.signature_verification_algorithms,
            })),
        _ => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate {
                algorithms: provider.signature_verification_algorithms,
            })),
    }
    .with_no_client_auth();
    // For `sslnegotiation=direct` (PostgreSQL 17); harmless otherwise.
    config.alpn_protocols = vec![b"postgresql".to_vec()];
    Ok(config)
}

/// `verify-ca` (and `require` with `sslrootcert`): the chain must lead to a trusted CA
/// and be valid now; the host name is not checked.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `require` and `prefer` without `sslrootcert`: encryption only. Any certificate is
/// accepted, so whoever sits between the client and the server can pose as the server.
#[derive(Debug)]
struct AnyCertificate {
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// Opens one connection with `config` secured as `tls` says; a TLS failure gets its own
/// error, anything else is classified by `classify`. Refused inside an async runtime,
/// where the blocking client would panic ([`OpenError::InsideAsyncRuntime`]).
pub(crate) fn connect(
    config: &Config,
    tls: &Tls,
    server: &str,
    classify: fn(&str, postgres::Error) -> OpenError,
) -> Result<Client, OpenError> {
    crate::runtime::check().map_err(|_| OpenError::InsideAsyncRuntime)?;
    let result = match &tls.connector {
        None => config.connect(postgres::NoTls),
        Some(connector) => config.connect(connector.clone()),
    };
    result.map_err(|e| tls_error(server, tls, &e).unwrap_or_else(|| classify(server, e)))
}

/// A TLS failure of a connection attempt as its specific [`OpenError`], if it is one.
fn tls_error(server: &str, tls: &Tls, e: &postgres::Error) -> Option<OpenError> {
    let server = server.to_owned();
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut texts = vec![e.to_string()];
    while let Some(s) = source {
        if let Some(rustls_error) = s.downcast_ref::<rustls::Error>() {
            return Some(match rustls_error {
                rustls::Error::InvalidCertificate(
                    CertificateError::NotValidForName
                    | CertificateError::NotValidForNameContext { .. },
                ) => OpenError::HostnameMismatch {
                    server,
                    reason: rustls_error.to_string(),
                },
                rustls::Error::InvalidCertificate(_) => OpenError::CertificateUntrusted {
                    server,
                    reason: rustls_error.to_string(),
                    trusted: tls.trusted(),
                },
                _ => OpenError::Tls {
                    server,
                    reason: rustls_error.to_string(),
                },
            });
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
        {
            source = Some(inner);
            continue;
        }
        texts.push(s.to_string());
        source = s.source();
    }
    let text = texts.join(": ");
    if text.contains("server does not support TLS") {
        return Some(OpenError::TlsNotOffered {
            server,
            sslmode: tls.mode.name(),
            defaulted: tls.defaulted,
        });
    }
    if text.contains("error performing TLS handshake") {
        return Some(OpenError::Tls {
            server,
            reason: text,
        });
    }
    None
}

impl Tls {
    /// What the certificate was checked against, for messages.
    fn trusted(&self) -> String {
        match &self.root_cert {
            Some(path) => format!("the CA certificates of sslrootcert={}", path.display()),
            None => "the public web CAs (webpki-roots); give the server's CA with sslrootcert=PATH"
                .into(),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use std::str::FromStr;

    use super::*;

    /// The mode `url` resolves to, and the `postgres` crate's mode set for it.
    fn resolved(url: &str) -> Result<(SslMode, bool, PgSslMode), OpenError> {
        let extracted = extract(url)?;
        let mut config = Config::from_str(&extracted.rest).unwrap();
        let tls = extracted.resolve(&mut config)?;
        Ok((tls.mode, tls.defaulted, config.get_ssl_mode()))
    }

    #[test]
    fn the_default_is_plain_on_this_host_and_verify_full_elsewhere() {
        for local in [
            "postgres://u:p@127.0.0.1:5432/db",
            "postgres://u:p@127.8.9.10/db",
            "postgres://u:p@localhost/db",
            "postgres://u:p@LOCALHOST/db",
            "postgres://u:p@[::1]:5432/db",
            "postgres://u:p@%2Fvar%2Frun%2Fpostgresql/db",
            "host=/var/run/postgresql user=u dbname=db",
            "postgres://u:p@db.example.it/db?hostaddr=127.0.0.1&sslmode=disable",
        ] {
            assert_eq!(resolved(local).unwrap().0, SslMode::Disable, "{local}");
            assert_eq!(resolved(local).unwrap().2, PgSslMode::Disable, "{local}");
        }
        for remote in [
            "postgres://u:p@db.example.it/db",
            "postgres://u:p@10.0.0.5:5432/db",
            "postgres://u:p@127.0.0.1,db.example.it/db",
            "postgres://u:p@localhost/db?hostaddr=10.0.0.5",
            "host=db.example.it user=u",
        ] {
            let (mode, defaulted, pg) = resolved(remote).unwrap();
            assert_eq!(mode, SslMode::VerifyFull, "{remote}");
            assert!(defaulted, "{remote}");
            assert_eq!(pg, PgSslMode::Require, "{remote}");
        }
    }

    #[test]
    fn every_mode_is_read_from_a_url_and_a_key_value_string() {
        for (name, mode, pg) in [
            ("disable", SslMode::Disable, PgSslMode::Disable),
            ("prefer", SslMode::Prefer, PgSslMode::Prefer),
            ("require", SslMode::Require, PgSslMode::Require),
            ("verify-full", SslMode::VerifyFull, PgSslMode::Require),
        ] {
            let url = format!("postgres://u:p@db.example.it/db?connect_timeout=3&sslmode={name}");
            assert_eq!(resolved(&url).unwrap(), (mode, false, pg), "{url}");
            let kv = format!("host=db.example.it sslmode = '{name}' user=u");
            assert_eq!(resolved(&kv).unwrap(), (mode, false, pg), "{kv}");
        }
    }

    #[test]
    fn the_tls_parameters_are_taken_out_and_the_rest_kept() {
        let e = extract(
            "postgres://u:p%3Fx@h:1/db?sslrootcert=%2Fetc%2Fca%20file.pem&connect_timeout=3&sslmode=require&application_name=a",
        )
        .unwrap();
        assert_eq!(
            e.rest,
            "postgres://u:p%3Fx@h:1/db?connect_timeout=3&application_name=a"
        );
        assert_eq!(e.mode, Some(SslMode::Require));
        assert_eq!(e.root_cert, Some(PathBuf::from("/etc/ca file.pem")));

        // A '?' in the password (allowed by the postgres crate) is not the query.
        let e = extract("postgres://u:p?q@h/db").unwrap();
        assert_eq!(e.rest, "postgres://u:p?q@h/db");
        assert_eq!(e.mode, None);

        let e =
            extract("host=h password='it\\'s \\\\ x' sslrootcert='/a b/ca.pem' sslmode=verify-ca")
                .unwrap();
        assert_eq!(e.mode, Some(SslMode::VerifyCa));
        assert_eq!(e.root_cert, Some(PathBuf::from("/a b/ca.pem")));
        let config = Config::from_str(&e.rest).unwrap();
        assert_eq!(config.get_hosts(), &[Host::Tcp("h".into())]);
        assert_eq!(config.get_password(), Some(&b"it's \\ x"[..]));

        // Unparsable: handed on whole, for the postgres crate to say what is wrong.
        let e = extract("host='unterminated sslmode=require").unwrap();
        assert_eq!(e.rest, "host='unterminated sslmode=require");
        assert!(Config::from_str(&e.rest).is_err());
    }

    #[test]
    fn impossible_settings_are_refused_at_open() {
        for (url, says) in [
            ("postgres://u:p@h/db?sslmode=allow", "not supported"),
            ("postgres://u:p@h/db?sslmode=VERIFY-FULL", "not supported"),
            ("postgres://u:p@h/db?sslmode=verify-ca", "needs sslrootcert"),
            (
                "host=/var/run/postgresql sslmode=require",
                "Unix-domain socket",
            ),
            (
                "postgres://u:p@%2Ftmp/db?sslmode=verify-full",
                "Unix-domain socket",
            ),
        ] {
            match resolved(url) {
                Err(OpenError::InvalidUrl { reason }) => {
                    assert!(reason.contains(says), "{url}: {reason}");
                    assert!(!reason.contains("u:p"), "{reason}");
                }
                other => panic!("{url}: {other:?}"),
            }
        }
        // `prefer` over a socket is plain, as libpq.
        assert_eq!(
            resolved("host=/var/run/postgresql sslmode=prefer")
                .unwrap()
                .0,
            SslMode::Prefer
        );
    }

    #[test]
    fn the_debug_of_the_tls_settings_holds_no_password() {
        let extracted = extract("postgres://u:hunter2@h/db?sslmode=require").unwrap();
        let mut config = Config::from_str(&extracted.rest).unwrap();
        let tls = extracted.resolve(&mut config).unwrap();
        let shown = format!("{tls:?}");
        assert!(shown.contains("Require"), "{shown}");
        assert!(!shown.contains("hunter2"), "{shown}");
    }
}
