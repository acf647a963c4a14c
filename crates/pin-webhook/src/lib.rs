//! SMS for the PIN lifecycle through an HTTP gateway: most Italian SMS gateways are HTTP
//! APIs, so [`WebhookNotifier`] sends each message as a signed JSON `POST`.
//!
//! It is a blocking [`pin_core::notify::Notifier`] (`ureq`, no async runtime inside): call
//! it from a thread that may block. HTTPS uses rustls with the webpki roots (feature
//! `rustls`, the default); plain `http://` is accepted only to this machine.
//!
//! # The request
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! X-Pin-Signature: t=1767225600,v1=<64 hex digits>
//! Idempotency-Key: 9f2c4e1a0b7d3f5e8a6c2b1d4e7f0a3c
//!
//! {"type":"pin","message_id":"9f2c4e1a0b7d3f5e8a6c2b1d4e7f0a3c","channel":"sms",
//!  "recipient":"+393471234567","language":"it",
//!  "text":"Il Suo PIN NoiPA: 48213. Il PIN è personale: non lo comunichi a nessuno."}
//! ```
//!
//! | field | meaning |
//! |---|---|
//! | `type` | `"pin"`: a message carrying a PIN or part of one; `"notice"`: a security notice (POL-6), which carries none |
//! | `message_id` | 32 hex digits, the idempotency key (also in the `Idempotency-Key` header): the same for every attempt to send the same part of the same credential ([`WebhookNotifier::message_id`]) |
//! | `channel` | always `"sms"` |
//! | `recipient` | the mobile number in E.164 form (`+39…`) |
//! | `language` | `"it"` or `"en"`: the language of `text` |
//! | `text` | the SMS to send as it is ([`text`]); for `"pin"`, the only field that holds a secret |
//!
//! Nothing else is sent: no tax code, no serial, no other secret. The gateway should answer
//! `2xx` once it has taken the message; `{"status":"delivered"}` in the reply says the phone
//! has it already ([`pin_core::notify::Receipt::Confirmed`]), anything else in a `2xx` means
//! accepted ([`pin_core::notify::Receipt::Sent`]). See [`WebhookNotifier`] for the other
//! replies, timeouts and retries.
//!
//! # Why at-least-once is safe
//!
//! A reply can be lost after the gateway took the message (a timeout, a dropped
//! connection). The notifier then sends again, and the delivery worker above it retries a
//! part that stayed pending: a message may be *sent* twice. Every copy carries the same
//! `message_id`, derived from the subject, the credential serial and the part, so a gateway
//! that keeps the ids it has carried (for a day, say) drops the copy, and the person gets
//! one SMS. A different part or a new credential has a different id, so a fresh PIN is never
//! mistaken for a copy. (A pipeline that re-generates the secret of the *same* serial must
//! not rely on this: the gateway would drop the new text as a copy of the old one.)
//!
//! # The signature
//!
//! [`signature`] describes the `X-Pin-Signature` header and how a gateway verifies it;
//! [`verify_signature`] is that check, for the receiving side and for tests. The key
//! ([`SigningKey`]) is shared with the gateway and kept apart from the database.
//!
//! # Example
//!
//! ```
//! use pin_core::subject::Channel;
//! use pin_webhook::{Language, SigningKey, WebhookConfig, WebhookNotifier};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = SigningKey::new(b"32 bytes from your secrets store")?;
//! let mut config = WebhookConfig::new("https://sms.example.it/v1/messages", key);
//! config.language = Language::Italian;
//! config.max_attempts = 3;
//! let sms = WebhookNotifier::new(config)?; // no connection yet
//! assert_eq!(sms.endpoint(), "https://sms.example.it/v1/messages");
//! // With pin-smtp: ChannelRouter::new().route(&[Channel::Sms], sms).route(&[Channel::Email,
//! // Channel::Pec], smtp).otherwise(outbox), then PinService::new(store, router, …).
//! # let _ = Channel::Sms;
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

mod config;
mod notifier;
pub mod signature;
pub mod text;

pub use config::{ConfigError, Language, MIN_KEY_LEN, SigningKey, WebhookConfig};
pub use notifier::{IDEMPOTENCY_HEADER, WebhookNotifier};
pub use signature::{SIGNATURE_HEADER, SignatureError, sign, verify_signature};
