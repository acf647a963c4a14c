//! [`SmtpNotifier`]: e-mail and PEC messages through an SMTP relay.

use std::fmt;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::authentication::Credentials as LettreCredentials;
use lettre::transport::smtp::{PoolConfig, SmtpTransportBuilder};
use lettre::{Address, SmtpTransport, Transport};
use pin_core::command::{Delivery, Notice};
use pin_core::notify::{DeliveryError, Notifier, Receipt};
use pin_core::subject::Channel;

use crate::config::{ConfigError, SmtpConfig, TlsMode};
use crate::text::{self, Language};

/// Reply codes of a relay that refuses *us* rather than the recipient: authentication
/// required (530), too weak (534), wrong credentials (535), encryption required (538).
/// Failing the part would make the person wait for a fresh PIN that would fail the same
/// way; the part stays pending until the configuration is fixed.
const OUR_FAULT: [&str; 4] = ["530", "534", "535", "538"];

/// How much of a relay's reply an error message quotes.
const MAX_REPLY: usize = 200;

/// A [`Notifier`] that sends [`Channel::Email`] and [`Channel::Pec`] messages through an
/// SMTP relay, with `lettre`'s blocking transport.
///
/// - **Connections**: kept open between messages and reused
///   ([`SmtpConfig::pool_max_size`], [`SmtpConfig::pool_idle_timeout`]), so a delivery
///   worker sending many messages opens one connection rather than one per message
///   (threads sending at once each get a connection; at most `pool_max_size` stay open
///   between messages). A connection on which a message failed is closed, not reused; one
///   the relay closed while idle is replaced. Share one notifier between threads (e.g. in
///   an `Arc`) to share its connections; dropping it closes them.
/// - **Texts**: [`crate::text::render`] in the configured [`Language`]; the secret is on a
///   line of the body and never in the subject line.
/// - **Outcomes**: accepted by the relay → [`Receipt::Sent`] (a PEC provider's delivery
///   receipt arrives later, by mail to the sender: record it with
///   `pin_core::command::Command::Receipt`). A recipient or message refused for good (a
///   permanent `5xx` reply) → [`DeliveryError::Refused`]: the part is failed and recovery is
///   a fresh PIN (POL-3). A relay that is down, unreachable, slow, deferring (`4xx`), failing
///   TLS, or refusing our own credentials → [`DeliveryError::Unavailable`]: the part stays
///   pending.
/// - **Other channels** (SMS, phone, post, envelope) are not this notifier's job: they
///   answer [`DeliveryError::Unavailable`] naming the channel. Combine notifiers with
///   [`crate::ChannelRouter`].
/// - **Secrets**: errors and `Debug` never contain the secret (a relay's reply that quotes
///   it is redacted) nor the relay password.
pub struct SmtpNotifier {
    transport: SmtpTransport,
    from: Mailbox,
    language: Language,
    relay: String,
    tls: TlsMode,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            transport: _,
            from,
            language,
            relay,
            tls,
        } = self;
        f.debug_struct("SmtpNotifier")
            .field("relay", relay)
            .field("tls", tls)
            .field("from", &from.to_string())
            .field("language", language)
            .finish_non_exhaustive()
    }
}

impl SmtpNotifier {
    /// A notifier for the relay of `config`. Nothing is sent and no connection is opened
    /// until the first delivery.
    ///
    /// # Errors
    /// [`ConfigError::NoHost`], [`ConfigError::From`] for a sender that is not a mailbox,
    /// [`ConfigError::CredentialsInClear`] for credentials without TLS to a relay that is
    /// not on this machine, [`ConfigError::NoTlsSupport`] / [`ConfigError::Tls`] when TLS
    /// cannot be set up.
    pub fn new(config: SmtpConfig) -> Result<Self, ConfigError> {
        let host = config.host.trim().to_owned();
        if host.is_empty() {
            return Err(ConfigError::NoHost);
        }
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|_| ConfigError::From(config.from.clone()))?;
        if config.tls == TlsMode::None && config.credentials.is_some() && !config.is_loopback() {
            return Err(ConfigError::CredentialsInClear);
        }
        let port = config.port();
        let pool = PoolConfig::new()
            .max_size(config.pool_max_size)
            .idle_timeout(config.pool_idle_timeout);
        let builder = SmtpTransport::builder_dangerous(host.as_str())
            .port(port)
            .timeout(Some(config.timeout))
            .pool_config(pool);
        let mut builder = with_tls(builder, config.tls, &host)?;
        if let Some(c) = &config.credentials {
            builder = builder.credentials(LettreCredentials::new(
                c.user().to_owned(),
                c.expose_password().to_owned(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            language: config.language,
            relay: format!("{host}:{port}"),
            tls: config.tls,
        })
    }

    /// The relay, as `host:port`.
    #[must_use]
    pub fn relay(&self) -> &str {
        &self.relay
    }

    /// Builds the message for `d` (public for previews and tests; holds the secret).
    fn message(&self, d: &Delivery) -> Result<Message, DeliveryError> {
        let to: Address = d.recipient.trim().parse().map_err(|_| {
            DeliveryError::Refused("the recipient is not a valid e-mail address".to_owned())
        })?;
        let rendered = text::render(d, self.language);
        Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(rendered.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(String::clone(&rendered.body))
            .map_err(|e| DeliveryError::Refused(format!("cannot build the message: {e}")))
    }

    /// The [`DeliveryError`] for a failure of the relay, with any quote of the secret
    /// redacted.
    fn classify(&self, e: &lettre::transport::smtp::Error, secret: &str) -> DeliveryError {
        let said = quote(&e.to_string(), secret);
        let relay = &self.relay;
        let code = e.status().map(|c| c.to_string()).unwrap_or_default();
        if e.is_permanent() && OUR_FAULT.contains(&code.as_str()) {
            DeliveryError::Unavailable(format!(
                "the SMTP relay {relay} refused our authentication; check the relay \
                 credentials and TLS mode ({said})"
            ))
        } else if e.is_permanent() {
            DeliveryError::Refused(format!(
                "the SMTP relay {relay} refused the message ({said})"
            ))
        } else if e.is_transient() {
            DeliveryError::Unavailable(format!(
                "the SMTP relay {relay} deferred the message; try again later ({said})"
            ))
        } else if e.is_timeout() {
            DeliveryError::Unavailable(format!("the SMTP relay {relay} did not answer in time"))
        } else if is_tls(e) {
            DeliveryError::Unavailable(format!(
                "TLS with the SMTP relay {relay} failed ({said}); check the TLS mode ({})",
                self.tls.name()
            ))
        } else {
            DeliveryError::Unavailable(format!("cannot reach the SMTP relay {relay} ({said})"))
        }
    }
}

#[cfg(any(feature = "rustls", feature = "native-tls"))]
fn is_tls(e: &lettre::transport::smtp::Error) -> bool {
    e.is_tls()
}

#[cfg(not(any(feature = "rustls", feature = "native-tls")))]
fn is_tls(_: &lettre::transport::smtp::Error) -> bool {
    false
}

#[cfg(any(feature = "rustls", feature = "native-tls"))]
fn with_tls(
    builder: SmtpTransportBuilder,
    mode: TlsMode,
    host: &str,
) -> Result<SmtpTransportBuilder, ConfigError> {
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    let params = || {
        TlsParameters::new(host.to_owned()).map_err(|e| ConfigError::Tls {
            host: host.to_owned(),
            reason: one_line(&e.to_string()),
        })
    };
    Ok(builder.tls(match mode {
        TlsMode::None => Tls::None,
        TlsMode::StartTls => Tls::Required(params()?),
        TlsMode::Implicit => Tls::Wrapper(params()?),
    }))
}

/// Without a TLS backend the transport speaks plain text only.
#[cfg(not(any(feature = "rustls", feature = "native-tls")))]
fn with_tls(
    builder: SmtpTransportBuilder,
    mode: TlsMode,
    _host: &str,
) -> Result<SmtpTransportBuilder, ConfigError> {
    match mode {
        TlsMode::None => Ok(builder),
        TlsMode::StartTls | TlsMode::Implicit => Err(ConfigError::NoTlsSupport),
    }
}

/// A relay's reply as an error quotes it: `secret` redacted, then on one line and shortened
/// (in that order: a cut first could leave part of the secret behind).
fn quote(text: &str, secret: &str) -> String {
    one_line(&redact(text, secret))
}

/// `text` on one line, at most [`MAX_REPLY`] characters.
fn one_line(text: &str) -> String {
    let flat: String = text.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.char_indices().nth(MAX_REPLY) {
        Some((cut, _)) => format!("{}…", flat.get(..cut).unwrap_or_default()),
        None => flat,
    }
}

/// `text` with every occurrence of `secret` (in any case) replaced by `[redacted]`.
fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    let lower = text.to_ascii_lowercase();
    let needle = secret.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for (at, _) in lower.match_indices(&needle) {
        if at < rest {
            continue;
        }
        out.push_str(text.get(rest..at).unwrap_or_default());
        out.push_str("[redacted]");
        rest = at.saturating_add(needle.len());
    }
    out.push_str(text.get(rest..).unwrap_or_default());
    out
}

impl Notifier for SmtpNotifier {
    fn notify(&self, n: &Notice) -> Result<Receipt, DeliveryError> {
        if !matches!(n.channel, Channel::Email | Channel::Pec) {
            return Err(DeliveryError::Unavailable(format!(
                "the SMTP notifier carries e-mail and PEC only, not the {:?} channel; route \
                 that channel to another notifier",
                n.channel
            )));
        }
        let to: Address = n.recipient.trim().parse().map_err(|_| {
            DeliveryError::Refused("the recipient is not a valid e-mail address".to_owned())
        })?;
        let rendered = text::render_notice(n, self.language);
        let message = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(None, to))
            .subject(rendered.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(String::clone(&rendered.body))
            .map_err(|e| DeliveryError::Refused(format!("cannot build the message: {e}")))?;
        match self.transport.send(&message) {
            Ok(_) => Ok(Receipt::Sent),
            Err(e) => Err(self.classify(&e, "")),
        }
    }

    fn deliver(&self, d: &Delivery) -> Result<Receipt, DeliveryError> {
        if !matches!(d.channel, Channel::Email | Channel::Pec) {
            // The wiring is wrong, not the recipient: keep the part pending.
            return Err(DeliveryError::Unavailable(format!(
                "the SMTP notifier carries e-mail and PEC only, not the {:?} channel; route \
                 that channel to another notifier",
                d.channel
            )));
        }
        let message = self.message(d)?;
        match self.transport.send(&message) {
            Ok(_) => Ok(Receipt::Sent),
            Err(e) => Err(self.classify(&e, d.secret.expose_secret())),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;
    use crate::config::Credentials;

    #[test]
    fn redaction_is_case_blind_and_total() {
        assert_eq!(
            redact("554 PIN: k7qm2zxa and K7QM2ZXA", "K7QM2ZXA"),
            "554 PIN: [redacted] and [redacted]"
        );
        assert_eq!(redact("nothing here", "48213"), "nothing here");
    }

    #[test]
    fn a_secret_across_the_cut_is_redacted_whole() {
        let reply = format!("554 {}48213 more", "x".repeat(MAX_REPLY - 7));
        let said = quote(&reply, "48213");
        assert!(!said.contains("4821"), "{said}");
    }

    #[test]
    fn replies_are_shortened_to_one_line() {
        assert_eq!(one_line("550 5.1.1\r\n  unknown"), "550 5.1.1 unknown");
        assert_eq!(one_line(&"x".repeat(500)).chars().count(), MAX_REPLY + 1);
    }

    #[test]
    fn credentials_in_clear_only_to_this_machine() {
        let mut c = SmtpConfig::new("smtp.example.it", "no-reply@inps.example");
        c.tls = TlsMode::None;
        c.credentials = Some(Credentials::new("u", "p"));
        assert!(matches!(
            SmtpNotifier::new(c.clone()),
            Err(ConfigError::CredentialsInClear)
        ));
        c.host = "127.0.0.1".into();
        assert!(SmtpNotifier::new(c).is_ok());
    }

    #[test]
    fn bad_sender_and_host_are_refused() {
        let c = SmtpConfig::new("smtp.example.it", "not an address");
        assert!(matches!(SmtpNotifier::new(c), Err(ConfigError::From(_))));
        let c = SmtpConfig::new(" ", "no-reply@inps.example");
        assert!(matches!(SmtpNotifier::new(c), Err(ConfigError::NoHost)));
    }

    #[test]
    fn debug_shows_the_relay_not_the_password() {
        let mut c = SmtpConfig::new("smtp.example.it", "INPS <no-reply@inps.example>");
        c.credentials = Some(Credentials::new("mailer", "s3cret-Pa55"));
        let n = SmtpNotifier::new(c).unwrap();
        let shown = format!("{n:?}");
        assert!(shown.contains("smtp.example.it:587"), "{shown}");
        assert!(!shown.contains("s3cret-Pa55"));
    }
}
