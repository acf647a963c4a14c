//! A throw-away PostgreSQL server for tests and benchmarks (feature `throwaway-cluster`).
//!
//! [`Cluster::start`] finds the server binaries (`$PIN_POSTGRES_BIN`, else the newest
//! `/usr/lib/postgresql/*/bin` of Debian and Ubuntu, else `/usr/bin` or `/usr/local/bin`),
//! runs `initdb` into a new temporary directory and starts the server with `pg_ctl`,
//! listening on **127.0.0.1 only** at a free port, its unix socket inside that directory.
//! TCP connections need the password of the `postgres` superuser (SCRAM), so that tests
//! can also present a wrong one. Dropping the cluster stops the server and removes the
//! directory.
//!
//! Running as root, the server runs as the `postgres` user (`runuser -u postgres`), which
//! the distribution's package creates; PostgreSQL refuses to run as root.
//!
//! [`Cluster::start_with_tls`] also turns TLS on (`ssl = on` in `postgresql.conf`), with a
//! CA and a server certificate made at start ([`Cluster::ca_file`] is the CA to trust);
//! plain connections are still accepted, and [`Cluster::set_ssl`] turns TLS off and on
//! again. [`unrelated_ca_pem`] is a CA that signed nothing, to see a certificate refused.

use std::ffi::OsString;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the cluster could not be made or driven.
#[derive(Debug, thiserror::Error)]
#[error("throw-away PostgreSQL cluster: {0}")]
pub struct ClusterError(String);

fn fail(what: impl std::fmt::Display) -> ClusterError {
    ClusterError(what.to_string())
}

/// A running throw-away server.
#[derive(Debug)]
pub struct Cluster {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    password: String,
    as_postgres: bool,
    max_connections: u32,
}

/// Where the server binaries are, if anywhere: a directory with `initdb` and `pg_ctl`.
#[must_use]
pub fn find_binaries() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Some(d) = std::env::var_os("PIN_POSTGRES_BIN") {
        let d = PathBuf::from(d);
        return has(&d).then_some(d);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has(&bin).then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    ["/usr/bin", "/usr/local/bin"]
        .into_iter()
        .map(PathBuf::from)
        .find(|d| has(d))
}

fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0)).map_err(fail)?;
    Ok(l.local_addr().map_err(fail)?.port())
}

impl Cluster {
    /// Makes and starts a new cluster.
    ///
    /// # Errors
    /// [`ClusterError`] when no binaries are found (see [`find_binaries`]) or `initdb` or
    /// `pg_ctl` fails (the server log is quoted).
    pub fn start() -> Result<Self, ClusterError> {
        Self::start_with_max_connections(300)
    }

    /// Makes and starts a new cluster that accepts at most `max_connections` connections
    /// at once (PostgreSQL's `max_connections`; the superuser may use all of them), to see
    /// what callers get from a full server.
    ///
    /// # Errors
    /// As [`Cluster::start`].
    pub fn start_with_max_connections(max_connections: u32) -> Result<Self, ClusterError> {
        Self::start_inner(max_connections, None)
    }

    /// Makes and starts a new cluster with TLS on: a new CA signs a server certificate
    /// valid for `names` (DNS names, or IP addresses such as `127.0.0.1`); the CA is
    /// [`Cluster::ca_file`]. Plain connections are accepted too.
    ///
    /// # Errors
    /// As [`Cluster::start`], or when the certificates cannot be made.
    pub fn start_with_tls(names: &[&str]) -> Result<Self, ClusterError> {
        Self::start_inner(300, Some(names))
    }

    fn start_inner(max_connections: u32, tls: Option<&[&str]>) -> Result<Self, ClusterError> {
        let bin = find_binaries().ok_or_else(|| {
            fail("no PostgreSQL server binaries (initdb, pg_ctl); install the distribution's postgresql package or set PIN_POSTGRES_BIN")
        })?;
        let dir = tempfile::Builder::new()
            .prefix("pin-pg-")
            .tempdir()
            .map_err(fail)?;
        let as_postgres = std::fs::metadata("/proc/self").map_err(fail)?.uid() == 0;
        let password = format!("pin-test-{}-{}", std::process::id(), free_port()?);
        std::fs::write(dir.path().join("pwfile"), &password).map_err(fail)?;
        if let Some(names) = tls {
            write_certificates(dir.path(), names)?;
        }
        let mut cluster = Self {
            dir,
            bin,
            port: 0,
            password,
            as_postgres,
            max_connections,
        };
        if as_postgres {
            let status = Command::new("chown")
                .arg("-R")
                .arg("postgres:postgres")
                .arg(cluster.dir.path())
                .status()
                .map_err(fail)?;
            if !status.success() {
                return Err(fail(
                    "chown to the postgres user failed; is the postgresql package installed?",
                ));
            }
        }
        let data = cluster.data();
        let pwfile = cluster.dir.path().join("pwfile");
        cluster.run(
            "initdb",
            &[
                "-D".into(),
                data.into(),
                "-U".into(),
                "postgres".into(),
                "--auth-local=trust".into(),
                "--auth-host=scram-sha-256".into(),
                {
                    let mut o = OsString::from("--pwfile=");
                    o.push(pwfile);
                    o
                },
                "-E".into(),
                "UTF8".into(),
                "--no-sync".into(),
            ],
        )?;
        if tls.is_some() {
            let conf = cluster.data().join("postgresql.conf");
            let mut text = std::fs::read_to_string(&conf).map_err(fail)?;
            text.push_str(&format!(
                "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
                cluster.dir.path().join("server.pem").display(),
                cluster.dir.path().join("server.key").display()
            ));
            std::fs::write(&conf, text).map_err(fail)?;
        }
        let mut last = None;
        for _ in 0..5 {
            cluster.port = free_port()?;
            match cluster.pg_ctl("start") {
                Ok(()) => return Ok(cluster),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| fail("the server did not start")))
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn run(&self, program: &str, args: &[OsString]) -> Result<(), ClusterError> {
        let exe = self.bin.join(program);
        let mut cmd = if self.as_postgres {
            let mut c = Command::new("runuser");
            let _ = c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        let out = cmd
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .map_err(|e| fail(format_args!("cannot run {}: {e}", exe.display())))?;
        if out.status.success() {
            return Ok(());
        }
        let log = std::fs::read_to_string(self.dir.path().join("log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        Err(fail(format_args!(
            "{program} failed ({}): {}{}\nserver log (last lines, newest first):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            tail.join("\n")
        )))
    }

    fn pg_ctl(&self, action: &str) -> Result<(), ClusterError> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -k {} -c max_connections={}",
            self.port,
            self.dir.path().display(),
            self.max_connections
        );
        self.run(
            "pg_ctl",
            &[
                "-D".into(),
                self.data().into(),
                "-l".into(),
                self.dir.path().join("log").into(),
                "-w".into(),
                "-t".into(),
                "60".into(),
                "-m".into(),
                "fast".into(),
                "-o".into(),
                options.into(),
                action.into(),
            ],
        )
    }

    /// The TCP port on 127.0.0.1.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of `database` as the superuser, with the right password.
    #[must_use]
    pub fn url(&self, database: &str) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Creates an empty database and returns its URL.
    ///
    /// # Errors
    /// [`ClusterError`] when the server refuses.
    pub fn create_database(&self, name: &str) -> Result<String, ClusterError> {
        if !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(fail(format_args!("database name {name:?}: use [a-z0-9_]")));
        }
        let mut client =
            postgres::Client::connect(&self.url("postgres"), postgres::NoTls).map_err(fail)?;
        client
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .map_err(fail)?;
        Ok(self.url(name))
    }

    /// The PEM file of the CA that signed the server's certificate, for a cluster started
    /// with [`Cluster::start_with_tls`].
    #[must_use]
    pub fn ca_file(&self) -> Option<PathBuf> {
        let path = self.dir.path().join("ca.pem");
        path.is_file().then_some(path)
    }

    /// Turns TLS off or (for a cluster started with [`Cluster::start_with_tls`]) on again,
    /// for new connections (`ALTER SYSTEM SET ssl`, then a reload).
    ///
    /// # Errors
    /// [`ClusterError`] when the server refuses.
    pub fn set_ssl(&self, on: bool) -> Result<(), ClusterError> {
        let mut client =
            postgres::Client::connect(&self.url("postgres"), postgres::NoTls).map_err(fail)?;
        let want = if on { "on" } else { "off" };
        // Two statements: ALTER SYSTEM cannot run in a transaction (or a batch).
        for statement in [
            format!("ALTER SYSTEM SET ssl = {want}"),
            "SELECT pg_reload_conf()".to_owned(),
        ] {
            client
                .batch_execute(&statement)
                .map_err(|e| fail(format_args!("{statement}: {e} ({e:?})")))?;
        }
        // The reload is asynchronous: wait until a new session sees the setting.
        for _ in 0..200 {
            let mut probe =
                postgres::Client::connect(&self.url("postgres"), postgres::NoTls).map_err(fail)?;
            let row = probe.query_one("SHOW ssl", &[]).map_err(fail)?;
            let now: String = row.try_get(0).map_err(fail)?;
            if now == want {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(fail(format_args!("the server did not turn ssl {want}")))
    }

    /// Stops the server (`pg_ctl stop -m fast`: clients are disconnected).
    ///
    /// # Errors
    /// [`ClusterError`] when `pg_ctl` fails.
    pub fn stop(&self) -> Result<(), ClusterError> {
        self.pg_ctl("stop")
    }

    /// Starts the server again after [`Cluster::stop`], on the same port.
    ///
    /// # Errors
    /// [`ClusterError`] when `pg_ctl` fails.
    pub fn start_again(&self) -> Result<(), ClusterError> {
        self.pg_ctl("start")
    }

    /// Restarts the server (`pg_ctl restart -m fast`): every connection is cut.
    ///
    /// # Errors
    /// [`ClusterError`] when `pg_ctl` fails.
    pub fn restart(&self) -> Result<(), ClusterError> {
        self.pg_ctl("restart")
    }
}

/// Writes `ca.pem`, `server.pem` and `server.key` (mode 0600, as the server demands) into
/// `dir`: a new CA, and a server certificate it signed for `names`.
fn write_certificates(dir: &Path, names: &[&str]) -> Result<(), ClusterError> {
    use std::os::unix::fs::PermissionsExt;

    let (ca_pem, issuer) = new_ca("pin-postgres throw-away test CA")?;
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let mut params = rcgen::CertificateParams::new(names).map_err(fail)?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "pin-postgres throw-away server");
    let cert = params.signed_by(&key, &issuer).map_err(fail)?;
    std::fs::write(dir.join("ca.pem"), ca_pem).map_err(fail)?;
    std::fs::write(dir.join("server.pem"), cert.pem()).map_err(fail)?;
    let key_file = dir.join("server.key");
    std::fs::write(&key_file, key.serialize_pem()).map_err(fail)?;
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    Ok(())
}

fn new_ca(name: &str) -> Result<(String, rcgen::Issuer<'static, rcgen::KeyPair>), ClusterError> {
    let key = rcgen::KeyPair::generate().map_err(fail)?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, name);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).map_err(fail)?;
    Ok((cert.pem(), rcgen::Issuer::new(params, key)))
}

/// A new CA certificate (PEM) that signed nothing: a server's certificate checked against
/// it is not trusted.
///
/// # Errors
/// [`ClusterError`] when the certificate cannot be made.
pub fn unrelated_ca_pem() -> Result<String, ClusterError> {
    Ok(new_ca("pin-postgres unrelated test CA")?.0)
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if self.data().join("postmaster.pid").exists() {
            let _ = self.run(
                "pg_ctl",
                &[
                    "-D".into(),
                    self.data().into(),
                    "-w".into(),
                    "-m".into(),
                    "immediate".into(),
                    "stop".into(),
                ],
            );
        }
    }
}
