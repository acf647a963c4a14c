//! Real delivery for the PIN lifecycle: e-mail and PEC over SMTP, and a router that gives
//! each channel its own [`pin_core::notify::Notifier`].
//!
//! - [`SmtpNotifier`] sends the messages of [`pin_core::subject::Channel::Email`] and
//!   [`pin_core::subject::Channel::Pec`] through a relay (host, port, TLS mode — none for a
//!   relay on this machine, STARTTLS, implicit TLS —, optional credentials, sender), with
//!   the texts of [`text`] in Italian or English. The PIN is on a line of the body, never in
//!   the subject line, in errors or in `Debug` output.
//! - Failures map onto the core's delivery states: a recipient refused for good is a failed
//!   part (recovery: a fresh PIN, POL-3); a relay that is down or deferring leaves the part
//!   pending.
//! - [`ChannelRouter`] combines notifiers: SMTP for e-mail and PEC, an SMS gateway for SMS,
//!   an outbox for post, phone scripts and sealed envelopes.
//!
//! TLS uses rustls with the webpki roots (feature `rustls`, the default: no system OpenSSL);
//! feature `native-tls` uses the platform's library instead.
//!
//! # Example
//!
//! ```
//! use pin_core::notify::MemoryOutbox;
//! use pin_core::subject::Channel;
//! use pin_smtp::{ChannelRouter, Credentials, Language, SmtpConfig, SmtpNotifier, TlsMode};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut config = SmtpConfig::new("smtp.example.it", "INPS <no-reply@inps.example>");
//! config.tls = TlsMode::StartTls; // port 587 unless `config.port` says otherwise
//! config.credentials = Some(Credentials::new("mailer", "from-your-secrets-manager"));
//! config.language = Language::Italian;
//! let smtp = SmtpNotifier::new(config)?; // no connection yet
//!
//! // E-mail and PEC over SMTP; SMS, phone, post and envelopes to another notifier.
//! let notifier = ChannelRouter::new()
//!     .route(&[Channel::Email, Channel::Pec], smtp)
//!     .otherwise(MemoryOutbox::new());
//! // PinService::new(store, notifier, policy, keys, rng)
//! # let _ = notifier;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod config;
mod notifier;
mod router;
#[cfg(any(test, feature = "test-relay"))]
pub mod test_relay;
pub mod text;

pub use config::{ConfigError, Credentials, SmtpConfig, TlsMode};
pub use notifier::SmtpNotifier;
pub use router::ChannelRouter;
pub use text::Language;
