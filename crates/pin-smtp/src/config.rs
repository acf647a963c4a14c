//! How to reach the relay: [`SmtpConfig`], [`TlsMode`], [`Credentials`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use zeroize::Zeroizing;

use crate::text::Language;

/// How the connection to the relay is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TlsMode {
    /// Plain text, for a relay on this machine (`localhost`, `127.0.0.1`). Credentials are
    /// refused in this mode unless the relay is on a loopback address.
    None,
    /// Plain text, then `STARTTLS`, which the relay must offer (port 587; the default).
    #[default]
    StartTls,
    /// TLS from the first byte ("implicit TLS", SMTPS, port 465).
    Implicit,
}

impl TlsMode {
    /// The usual port of the mode: 25, 587 or 465.
    #[must_use]
    pub fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::StartTls => 587,
            Self::Implicit => 465,
        }
    }

    /// The name [`TlsMode::from_str`] reads: `none`, `starttls` or `tls`.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::StartTls => "starttls",
            Self::Implicit => "tls",
        }
    }
}

impl FromStr for TlsMode {
    type Err = ConfigError;

    /// `none`, `starttls`, or `tls` (also `implicit`, `smtps`), in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "plain" | "off" => Ok(Self::None),
            "starttls" | "start-tls" => Ok(Self::StartTls),
            "tls" | "implicit" | "implicit-tls" | "smtps" | "ssl" => Ok(Self::Implicit),
            _ => Err(ConfigError::TlsMode),
        }
    }
}

/// A user name and password for `AUTH` on the relay. The password is zeroized on drop and
/// never shown by `Debug`.
#[derive(Clone)]
pub struct Credentials {
    user: String,
    password: Zeroizing<String>,
}

impl Credentials {
    /// Credentials for `user`.
    #[must_use]
    pub fn new(user: impl Into<String>, password: impl Into<String>) -> Self {
        Self {
            user: user.into(),
            password: Zeroizing::new(password.into()),
        }
    }

    /// The user name.
    #[must_use]
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The one way to read the password.
    #[must_use]
    pub fn expose_password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self { user, password: _ } = self;
        f.debug_struct("Credentials")
            .field("user", user)
            .finish_non_exhaustive()
    }
}

/// Everything [`crate::SmtpNotifier`] needs to know about the relay and the messages.
#[derive(Clone, Debug)]
pub struct SmtpConfig {
    /// The relay's host name or IP address.
    pub host: String,
    /// The relay's port; `None` for the mode's usual one ([`TlsMode::default_port`]).
    pub port: Option<u16>,
    /// How the connection is protected.
    pub tls: TlsMode,
    /// `AUTH` credentials, when the relay asks for them.
    pub credentials: Option<Credentials>,
    /// The sender, e.g. `NoiPA <no-reply@noipa.example>` or `no-reply@inps.example`.
    pub from: String,
    /// The language of the messages.
    pub language: Language,
    /// How long to wait for the relay at each step (connect, each reply).
    pub timeout: Duration,
    /// How many connections to the relay are kept open between messages, for reuse by the
    /// next ones (a delivery worker sending many messages then opens one connection, not
    /// one per message). `0` closes each connection after its message.
    pub pool_max_size: u32,
    /// How long a connection kept open may stay unused before it is closed. Keep it below
    /// the relay's own idle limit (Postfix: 300 s); a connection the relay closed anyway is
    /// noticed (`NOOP`) and replaced before it is used.
    pub pool_idle_timeout: Duration,
}

impl SmtpConfig {
    /// A configuration for the relay `host` sending as `from`, with STARTTLS on port 587,
    /// no credentials, Italian texts, a 30-second timeout, and up to 4 connections kept
    /// open for reuse, each for at most 60 seconds unused.
    #[must_use]
    pub fn new(host: impl Into<String>, from: impl Into<String>) -> Self {
        Self {
            host: host.into(),
            port: None,
            tls: TlsMode::default(),
            credentials: None,
            from: from.into(),
            language: Language::default(),
            timeout: Duration::from_secs(30),
            pool_max_size: 4,
            pool_idle_timeout: Duration::from_secs(60),
        }
    }

    /// The port in use: the one set, or the mode's usual one.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.port.unwrap_or_else(|| self.tls.default_port())
    }

    /// Whether the relay is on this machine (`localhost` or a loopback address).
    #[must_use]
    pub fn is_loopback(&self) -> bool {
        let host = self.host.trim_start_matches('[').trim_end_matches(']');
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }
}

/// A configuration the notifier cannot work with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The relay host is empty.
    #[error("the SMTP relay host is empty: give the relay's host name or address")]
    NoHost,
    /// The sender is not a valid mailbox.
    #[error("the sender `{0}` is not a valid e-mail address (e.g. `no-reply@inps.example`)")]
    From(String),
    /// The TLS mode is not one of `none`, `starttls`, `tls`.
    #[error("unknown SMTP TLS mode: use `none`, `starttls` or `tls` (implicit TLS)")]
    TlsMode,
    /// Credentials would cross the network in clear.
    #[error(
        "SMTP credentials over a connection without TLS are allowed only to a relay on this \
         machine; use TLS mode `starttls` or `tls`"
    )]
    CredentialsInClear,
    /// TLS was asked for but this build has no TLS (features `rustls` and `native-tls` off).
    #[error(
        "this build of pin-smtp has no TLS support (enable feature `rustls`); use TLS mode \
         `none` only for a relay on this machine"
    )]
    NoTlsSupport,
    /// The TLS parameters for the host could not be built.
    #[error("cannot set up TLS for the SMTP relay `{host}`: {reason}")]
    Tls {
        /// The relay host.
        host: String,
        /// What went wrong.
        reason: String,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn modes_and_ports() {
        assert_eq!("STARTTLS".parse::<TlsMode>().unwrap(), TlsMode::StartTls);
        assert_eq!("tls".parse::<TlsMode>().unwrap(), TlsMode::Implicit);
        assert_eq!("none".parse::<TlsMode>().unwrap(), TlsMode::None);
        assert!("maybe".parse::<TlsMode>().is_err());
        let mut c = SmtpConfig::new("smtp.example.it", "no-reply@inps.example");
        assert_eq!(c.port(), 587);
        c.tls = TlsMode::Implicit;
        assert_eq!(c.port(), 465);
        c.port = Some(2525);
        assert_eq!(c.port(), 2525);
    }

    #[test]
    fn the_documented_defaults() {
        let c = SmtpConfig::new("smtp.example.it", "no-reply@inps.example");
        assert_eq!(c.tls, TlsMode::StartTls);
        assert_eq!(c.language, Language::Italian);
        assert!(c.credentials.is_none());
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.pool_max_size, 4);
        assert_eq!(c.pool_idle_timeout, Duration::from_secs(60));
    }

    #[test]
    fn loopback_hosts() {
        for h in ["localhost", "127.0.0.1", "127.0.0.2", "::1", "[::1]"] {
            assert!(SmtpConfig::new(h, "a@b.example").is_loopback(), "{h}");
        }
        assert!(!SmtpConfig::new("smtp.example.it", "a@b.example").is_loopback());
    }

    #[test]
    fn the_password_is_not_in_debug() {
        let mut c = SmtpConfig::new("smtp.example.it", "no-reply@inps.example");
        c.credentials = Some(Credentials::new("mailer", "s3cret-Pa55"));
        let shown = format!("{c:?}");
        assert!(shown.contains("mailer"));
        assert!(!shown.contains("s3cret-Pa55"));
    }
}
