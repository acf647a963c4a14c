//! How to reach the gateway: [`WebhookConfig`], [`SigningKey`], [`Language`].

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use ureq::http::Uri;
use zeroize::Zeroizing;

/// The shortest signing key accepted, in bytes (128 bits).
pub const MIN_KEY_LEN: usize = 16;

/// The HMAC-SHA-256 key shared with the gateway, which signs every request
/// ([`crate::signature`]). Keep it apart from the database, like the pepper: whoever holds
/// it can send messages the gateway will believe are ours.
///
/// It is zeroized on drop and never shown by `Debug` or in an error.
#[derive(Clone)]
pub struct SigningKey(Zeroizing<Vec<u8>>);

impl SigningKey {
    /// A key of at least [`MIN_KEY_LEN`] bytes (e.g. 32 random bytes from a secrets
    /// manager).
    ///
    /// # Errors
    /// [`ConfigError::KeyTooShort`] for fewer than [`MIN_KEY_LEN`] bytes.
    pub fn new(key: &[u8]) -> Result<Self, ConfigError> {
        if key.len() < MIN_KEY_LEN {
            return Err(ConfigError::KeyTooShort { len: key.len() });
        }
        Ok(Self(Zeroizing::new(key.to_vec())))
    }

    /// The one way to read the key.
    #[must_use]
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self(_) = self;
        f.debug_struct("SigningKey").finish_non_exhaustive()
    }
}

/// The language of the texts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Language {
    /// Italian, the language of NoiPA and INPS (the default).
    #[default]
    Italian,
    /// English.
    English,
}

impl Language {
    /// The code sent in the request body: `it` or `en`.
    #[must_use]
    pub fn code(self) -> &'static str {
        match self {
            Self::Italian => "it",
            Self::English => "en",
        }
    }
}

impl FromStr for Language {
    type Err = ConfigError;

    /// `it`/`italian`/`italiano` or `en`/`english`/`inglese`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "it" | "ita" | "italian" | "italiano" => Ok(Self::Italian),
            "en" | "eng" | "english" | "inglese" => Ok(Self::English),
            _ => Err(ConfigError::Language),
        }
    }
}

/// Everything [`crate::WebhookNotifier`] needs to know about the gateway. `Debug` shows
/// the URL without its query string or credentials, and not the key.
#[derive(Clone)]
pub struct WebhookConfig {
    /// Where messages are POSTed: `https://…`, or `http://` only to this machine
    /// (`localhost`, `127.0.0.1`, `::1`). A query string (some gateways take an API token
    /// there) is sent but never shown in `Debug` or errors.
    pub url: String,
    /// The key that signs each request.
    pub signing_key: SigningKey,
    /// The language of the texts.
    pub language: Language,
    /// How long to wait for the connection (TCP and TLS) of one attempt.
    pub connect_timeout: Duration,
    /// How long one attempt may take in all: connect, send, and read the whole reply.
    pub timeout: Duration,
    /// Attempts per message within one `deliver`, the first included (at least 1). The
    /// delivery worker above the notifier retries again later.
    pub max_attempts: u32,
    /// The wait before the second attempt; it doubles before each later one.
    pub backoff: Duration,
    /// The longest wait between attempts, also the cap on a gateway's `Retry-After`.
    pub max_backoff: Duration,
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            url,
            signing_key: _,
            language,
            connect_timeout,
            timeout,
            max_attempts,
            backoff,
            max_backoff,
        } = self;
        f.debug_struct("WebhookConfig")
            .field("url", &without_secrets(url))
            .field("language", language)
            .field("connect_timeout", connect_timeout)
            .field("timeout", timeout)
            .field("max_attempts", max_attempts)
            .field("backoff", backoff)
            .field("max_backoff", max_backoff)
            .finish_non_exhaustive()
    }
}

/// `url` without its query string, fragment and `user:password@`.
fn without_secrets(url: &str) -> String {
    let url = url.trim();
    let end = url.find(['?', '#']).unwrap_or(url.len());
    let url = url.get(..end).unwrap_or_default();
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    format!("{scheme}://{host}{path}")
}

impl WebhookConfig {
    /// A configuration for the gateway at `url`: Italian texts, a 5-second connect
    /// timeout, a 15-second timeout per attempt, 3 attempts, waits of 0.5 s then 1 s (at
    /// most 5 s). With these defaults one `deliver` takes at most about 47 seconds.
    #[must_use]
    pub fn new(url: impl Into<String>, signing_key: SigningKey) -> Self {
        Self {
            url: url.into(),
            signing_key,
            language: Language::default(),
            connect_timeout: Duration::from_secs(5),
            timeout: Duration::from_secs(15),
            max_attempts: 3,
            backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(5),
        }
    }

    /// Checks the URL and the limits; answers the URL parsed, its shown form (scheme, host,
    /// port and path: no credentials, no query) and whether it is on this machine.
    pub(crate) fn checked(&self) -> Result<Checked, ConfigError> {
        let url = self.url.trim();
        let uri: Uri = url.parse().map_err(|_| ConfigError::Url {
            reason: "it is not a valid URL (e.g. `https://sms.example.it/v1/messages`)",
        })?;
        let host = uri.host().unwrap_or_default();
        if host.is_empty() {
            return Err(ConfigError::Url {
                reason: "it has no host",
            });
        }
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            return Err(ConfigError::Url {
                reason: "it holds credentials (`user:password@`); sign with the signing key, \
                         or give the gateway's token in its query string",
            });
        }
        match uri.scheme_str() {
            Some("https") => {
                if cfg!(not(feature = "rustls")) {
                    return Err(ConfigError::NoTlsSupport);
                }
            }
            Some("http") if is_loopback(host) => {}
            Some("http") => return Err(ConfigError::PlainHttp),
            _ => {
                return Err(ConfigError::Url {
                    reason: "its scheme is neither `https` nor `http`",
                });
            }
        }
        if self.max_attempts == 0 {
            return Err(ConfigError::NoAttempts);
        }
        if self.timeout.is_zero() || self.connect_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        let scheme = uri.scheme_str().unwrap_or_default();
        let port = uri.port_u16().map(|p| format!(":{p}")).unwrap_or_default();
        let shown = format!("{scheme}://{host}{port}{}", uri.path());
        Ok(Checked {
            loopback: is_loopback(host),
            uri,
            shown,
        })
    }
}

/// A URL that passed [`WebhookConfig::checked`].
pub(crate) struct Checked {
    /// The URL.
    pub(crate) uri: Uri,
    /// Scheme, host, port and path.
    pub(crate) shown: String,
    /// Whether the host is this machine.
    pub(crate) loopback: bool,
}

/// Whether `host` is this machine (`localhost` or a loopback address).
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// A configuration the notifier cannot work with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The gateway URL cannot be used.
    #[error("the gateway URL cannot be used: {reason}")]
    Url {
        /// What is wrong with it.
        reason: &'static str,
    },
    /// Plain `http://` to a host that is not this machine would carry PINs in clear.
    #[error(
        "the gateway URL must use `https://`: plain `http://` is allowed only to this machine \
         (localhost, 127.0.0.1, ::1)"
    )]
    PlainHttp,
    /// `https://` was asked for but this build has no TLS (feature `rustls` off).
    #[error("this build of pin-webhook has no TLS support (enable feature `rustls`)")]
    NoTlsSupport,
    /// The signing key is too short.
    #[error(
        "the signing key has {len} bytes; give at least {MIN_KEY_LEN} (32 random bytes are usual)"
    )]
    KeyTooShort {
        /// Its length in bytes.
        len: usize,
    },
    /// `max_attempts` is 0.
    #[error("max_attempts must be at least 1")]
    NoAttempts,
    /// A timeout is zero.
    #[error("the timeouts must be longer than zero")]
    ZeroTimeout,
    /// The language is not one of `it`, `en`.
    #[error("unknown language: use `it` (Italian) or `en` (English)")]
    Language,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn https_anywhere_http_only_here() {
        let ok = |u: &str| WebhookConfig::new(u, key()).checked().map(|c| c.shown);
        assert_eq!(
            ok("https://sms.example.it/v1/send?token=abc").unwrap(),
            "https://sms.example.it/v1/send"
        );
        assert_eq!(
            ok("http://127.0.0.1:8080/hook").unwrap(),
            "http://127.0.0.1:8080/hook"
        );
        assert!(ok("http://localhost/hook").is_ok());
        assert!(ok("http://[::1]:9/hook").is_ok());
        assert!(matches!(
            ok("http://sms.example.it/hook"),
            Err(ConfigError::PlainHttp)
        ));
        assert!(matches!(
            ok("ftp://sms.example.it/hook"),
            Err(ConfigError::Url { .. })
        ));
        assert!(matches!(ok("not a url"), Err(ConfigError::Url { .. })));
        assert!(matches!(
            ok("https://user:pw@sms.example.it/"),
            Err(ConfigError::Url { .. })
        ));
    }

    #[test]
    fn the_documented_defaults() {
        let c = WebhookConfig::new("https://sms.example.it/", key());
        assert_eq!(c.language, Language::Italian);
        assert_eq!(c.connect_timeout, Duration::from_secs(5));
        assert_eq!(c.timeout, Duration::from_secs(15));
        assert_eq!(c.max_attempts, 3);
        assert_eq!(c.backoff, Duration::from_millis(500));
        assert_eq!(c.max_backoff, Duration::from_secs(5));
        // At most: every attempt times out, with the waits between them.
        let worst = c.timeout * c.max_attempts + c.backoff + c.backoff * 2;
        assert!(worst <= Duration::from_secs(47), "{worst:?}");
    }

    #[test]
    fn limits_are_checked() {
        let mut c = WebhookConfig::new("https://sms.example.it/", key());
        c.max_attempts = 0;
        assert!(matches!(c.checked(), Err(ConfigError::NoAttempts)));
        c.max_attempts = 1;
        c.timeout = Duration::ZERO;
        assert!(matches!(c.checked(), Err(ConfigError::ZeroTimeout)));
    }

    #[test]
    fn short_keys_are_refused_and_keys_are_not_shown() {
        assert!(matches!(
            SigningKey::new(b"short"),
            Err(ConfigError::KeyTooShort { len: 5 })
        ));
        let c = WebhookConfig::new("https://sms.example.it/", key());
        let shown = format!("{c:?}");
        assert!(!shown.contains("0123456789abcdef"), "{shown}");
        let c = WebhookConfig::new("https://u:pw@sms.example.it/send?token=t0k3n#x", key());
        let shown = format!("{c:?}");
        assert!(shown.contains("\"https://sms.example.it/send\""), "{shown}");
        assert!(!shown.contains("t0k3n") && !shown.contains("pw"), "{shown}");
        assert!(!shown.contains("48, 49, 50"), "{shown}");
    }

    #[test]
    fn languages_parse() {
        assert_eq!("IT".parse::<Language>().unwrap(), Language::Italian);
        assert_eq!("english".parse::<Language>().unwrap().code(), "en");
        assert!("fr".parse::<Language>().is_err());
    }
}
