//! [`WebhookNotifier`]: SMS messages through an HTTP gateway.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use pin_core::command::{Delivery, Notice};
use pin_core::notify::{DeliveryError, Notifier, Receipt};
use pin_core::subject::Channel;
use serde::Serialize;
use sha2::Sha256;
use ureq::Agent;
use ureq::http::Uri;
use zeroize::Zeroizing;

use crate::config::{ConfigError, Language, SigningKey, WebhookConfig};
use crate::signature::{SIGNATURE_HEADER, hex, sign};
use crate::text;

/// How much of a gateway's reply an error message quotes, in characters.
const MAX_REPLY: usize = 200;

/// How much of a gateway's reply is read at all, in bytes.
const MAX_READ: u64 = 64 * 1024;

/// The header that repeats the body's `message_id`, for gateways that deduplicate on a
/// header (the `Idempotency-Key` convention).
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// Replies that say *we* are wrong, not the message: credentials or signature refused
/// (401, 403), wrong URL or method (404, 405), a proxy asking for credentials (407).
/// Failing the part would make the person wait for a fresh PIN that would fail the same
/// way; the part stays pending until the configuration is fixed.
const OUR_FAULT: [u16; 5] = [401, 403, 404, 405, 407];

/// A [`Notifier`] that POSTs [`Channel::Sms`] messages, as signed JSON, to an SMS gateway's
/// HTTP API (`ureq`'s blocking client: call it from a thread that may block, e.g.
/// `spawn_blocking` or a delivery worker).
///
/// - **Proxy**: the one the environment names (`HTTPS_PROXY`, `ALL_PROXY`, honouring
///   `NO_PROXY`), except for a gateway on this machine, which is always reached directly.
/// - **Request**: `POST` of the JSON body described in the [crate docs](crate), with
///   `Content-Type: application/json`, the signature header [`SIGNATURE_HEADER`]
///   (see [`crate::signature`]) and [`IDEMPOTENCY_HEADER`] carrying the `message_id`.
/// - **Retries**: within one `deliver`, up to [`WebhookConfig::max_attempts`] attempts on a
///   `5xx`, `408` or `429` reply, a timeout or a network error, waiting
///   [`WebhookConfig::backoff`] then twice as long each time (at most
///   [`WebhookConfig::max_backoff`], which also caps a `Retry-After`). Every attempt sends
///   the same body — the same `message_id` — so a gateway that deduplicates on it carries
///   the message once even when a reply was lost and we sent again (we send at least
///   once; dropping the copies is the gateway's part).
/// - **Outcomes**: `2xx` with `{"status":"delivered"}` → [`Receipt::Confirmed`]; any other
///   `2xx` → [`Receipt::Sent`]. Another `4xx` (an invalid number, a text refused) →
///   [`DeliveryError::Refused`]: the part is failed and recovery is a fresh PIN (POL-3).
///   `401`, `403`, `404`, `405`, `407` and redirects say our configuration is wrong (key,
///   URL), not the recipient → [`DeliveryError::Unavailable`] at once, without retries. When
///   the attempts run out → [`DeliveryError::Unavailable`]: the part stays pending.
/// - **Other channels** (e-mail, PEC, phone, post, envelope) answer
///   [`DeliveryError::Unavailable`] naming the channel; combine notifiers with
///   `pin_smtp::ChannelRouter`.
/// - **Secrets**: errors quote at most 200 characters of a reply, with the PIN redacted if
///   the gateway echoes it; neither errors nor `Debug` show the signing key or the URL's
///   query string.
pub struct WebhookNotifier {
    agent: Agent,
    uri: Uri,
    endpoint: String,
    key: SigningKey,
    language: Language,
    max_attempts: u32,
    backoff: Duration,
    max_backoff: Duration,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            agent: _,
            uri: _,
            endpoint,
            key: _,
            language,
            max_attempts,
            backoff,
            max_backoff,
        } = self;
        f.debug_struct("WebhookNotifier")
            .field("endpoint", endpoint)
            .field("language", language)
            .field("max_attempts", max_attempts)
            .field("backoff", backoff)
            .field("max_backoff", max_backoff)
            .finish_non_exhaustive()
    }
}

/// The request body of a PIN message (`"type": "pin"`) or a security notice
/// (`"type": "notice"`). The one field that can hold a secret is `text`.
#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message_id: &'a str,
    channel: &'static str,
    recipient: &'a str,
    language: &'static str,
    text: &'a str,
}

/// What one attempt came to.
enum Attempt {
    Done(Receipt),
    Refused(String),
    OurFault(String),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
}

impl WebhookNotifier {
    /// A notifier for the gateway of `config`. Nothing is sent and no connection is opened
    /// until the first delivery.
    ///
    /// # Errors
    /// [`ConfigError`] for a URL that is not `https://` (or `http://` to this machine),
    /// that holds credentials or cannot be parsed, for no attempts or a zero timeout, and
    /// [`ConfigError::NoTlsSupport`] for `https://` without the `rustls` feature.
    pub fn new(config: WebhookConfig) -> Result<Self, ConfigError> {
        let checked = config.checked()?;
        // A gateway on this machine is never reached through a proxy of the environment.
        let proxy = if checked.loopback {
            None
        } else {
            ureq::Proxy::try_from_env()
        };
        let agent_config = Agent::config_builder()
            .proxy(proxy)
            .http_status_as_error(false)
            .max_redirects(0)
            .max_redirects_will_error(false)
            .timeout_connect(Some(config.connect_timeout))
            .timeout_global(Some(config.timeout))
            .user_agent(concat!("pin-webhook/", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            agent: Agent::new_with_config(agent_config),
            uri: checked.uri,
            endpoint: checked.shown,
            key: config.signing_key,
            language: config.language,
            max_attempts: config.max_attempts,
            backoff: config.backoff,
            max_backoff: config.max_backoff,
        })
    }

    /// The gateway, as shown in errors: scheme, host, port and path (no query string).
    #[must_use]
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The `message_id` of `d`: the same for every attempt and every `deliver` of the same
    /// part of the same credential (subject, serial, part), different for any other part.
    ///
    /// It is HMAC-SHA-256 under the signing key over those three, cut to 128 bits (32 hex
    /// digits): a gateway can deduplicate on it, and whoever reads it without the key (in a
    /// gateway's logs, say) cannot tell whose tax code is behind it. A new signing key gives new ids, so rotate the key when no
    /// send is pending.
    #[must_use]
    pub fn message_id(&self, d: &Delivery) -> String {
        self.id(&[
            b"pin",
            d.subject.as_str().as_bytes(),
            d.serial.to_string().as_bytes(),
            d.part.to_string().as_bytes(),
        ])
    }

    /// The `message_id` of a security notice: the same for the same notice (subject, kind,
    /// time, recipient).
    #[must_use]
    pub fn notice_id(&self, n: &Notice) -> String {
        self.id(&[
            b"notice",
            n.subject.as_str().as_bytes(),
            serde_json::to_string(&n.kind)
                .unwrap_or_default()
                .as_bytes(),
            n.at.to_rfc3339().as_bytes(),
            n.recipient.trim().as_bytes(),
        ])
    }

    fn id(&self, fields: &[&[u8]]) -> String {
        #[allow(clippy::expect_used, reason = "HMAC takes keys of every length")]
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.expose_secret())
            .expect("HMAC accepts keys of every length");
        mac.update(b"pin-webhook message id v1");
        for f in fields {
            // Length-prefixed, so no two field lists give the same input.
            mac.update(&(f.len() as u64).to_be_bytes());
            mac.update(f);
        }
        let full: [u8; 32] = mac.finalize().into_bytes().into();
        hex(full.get(..16).unwrap_or_default())
    }

    fn body(
        &self,
        kind: &'static str,
        id: &str,
        recipient: &str,
        text: &str,
    ) -> Zeroizing<Vec<u8>> {
        let body = Body {
            kind,
            message_id: id,
            channel: "sms",
            recipient: recipient.trim(),
            language: self.language.code(),
            text,
        };
        // Room for the whole body up front, so no reallocation leaves a copy behind.
        let mut out = Zeroizing::new(Vec::with_capacity(
            256 + 2 * (id.len() + recipient.len() + text.len()),
        ));
        // Writing plain strings into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, &body);
        out
    }

    /// Sends `body`, retrying as the type's docs say; `secret` is redacted from replies.
    fn post(&self, body: &[u8], id: &str, secret: &str) -> Result<Receipt, DeliveryError> {
        let endpoint = &self.endpoint;
        let mut wait = self.backoff;
        let mut last = String::new();
        for attempt in 1..=self.max_attempts {
            match self.attempt(body, id, secret) {
                Attempt::Done(receipt) => return Ok(receipt),
                Attempt::Refused(said) => {
                    return Err(DeliveryError::Refused(format!(
                        "the SMS gateway {endpoint} refused the message ({said})"
                    )));
                }
                Attempt::OurFault(said) => {
                    return Err(DeliveryError::Unavailable(format!(
                        "the SMS gateway {endpoint} refused our request ({said}); check the \
                         gateway URL and the signing key"
                    )));
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    last = reason;
                    if attempt < self.max_attempts {
                        std::thread::sleep(retry_after.unwrap_or(wait).min(self.max_backoff));
                        wait = wait.saturating_mul(2).min(self.max_backoff);
                    }
                }
            }
        }
        let n = self.max_attempts;
        Err(DeliveryError::Unavailable(format!(
            "the SMS gateway {endpoint} did not take the message after {n} attempt{}; try \
             again later (last: {last})",
            if n == 1 { "" } else { "s" }
        )))
    }

    fn attempt(&self, body: &[u8], id: &str, secret: &str) -> Attempt {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let sent = self
            .agent
            .post(self.uri.clone())
            .header("Content-Type", "application/json")
            .header(SIGNATURE_HEADER, sign(&self.key, now, body))
            .header(IDEMPOTENCY_HEADER, id)
            .send(body);
        let mut response = match sent {
            Ok(r) => r,
            Err(ureq::Error::Timeout(_)) => {
                return Attempt::Retry {
                    reason: "no answer in time".to_owned(),
                    retry_after: None,
                };
            }
            Err(e) => {
                return Attempt::Retry {
                    reason: quote(&e.to_string(), secret),
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let reply = response
            .body_mut()
            .with_config()
            .limit(MAX_READ)
            .read_to_string();
        // A reply that cannot be read in full (too long, too slow, cut) is quoted as empty;
        // a `2xx` status line already says the gateway took the message.
        let reply = Zeroizing::new(reply.unwrap_or_default());
        let said = || {
            let text = quote(&reply, secret);
            if text.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {text}")
            }
        };
        match status {
            200..=299 => Attempt::Done(receipt(&reply)),
            300..=399 => Attempt::OurFault(format!(
                "{}; redirects are not followed, give the final URL",
                said()
            )),
            408 | 429 | 500..=599 => Attempt::Retry {
                reason: said(),
                retry_after,
            },
            s if OUR_FAULT.contains(&s) => Attempt::OurFault(said()),
            400..=499 => Attempt::Refused(said()),
            _ => Attempt::Retry {
                reason: said(),
                retry_after: None,
            },
        }
    }
}

/// [`Receipt::Confirmed`] for a reply `{"status":"delivered"}`, else [`Receipt::Sent`].
fn receipt(reply: &str) -> Receipt {
    let delivered = serde_json::from_str::<serde_json::Value>(reply)
        .ok()
        .and_then(|v| v.get("status").and_then(|s| s.as_str()).map(str::to_owned))
        .is_some_and(|s| s == "delivered");
    if delivered {
        Receipt::Confirmed
    } else {
        Receipt::Sent
    }
}

/// `text` with `secret` redacted, then on one line and at most [`MAX_REPLY`] characters
/// (redacted first, so a cut cannot leave part of the secret behind).
fn quote(text: &str, secret: &str) -> String {
    let flat: String = redact(text, secret)
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
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

fn not_sms(channel: Channel) -> DeliveryError {
    // The wiring is wrong, not the recipient: keep the part pending.
    DeliveryError::Unavailable(format!(
        "the SMS gateway notifier carries SMS only, not the {channel:?} channel; route that \
         channel to another notifier"
    ))
}

impl Notifier for WebhookNotifier {
    fn deliver(&self, d: &Delivery) -> Result<Receipt, DeliveryError> {
        if d.channel != Channel::Sms {
            return Err(not_sms(d.channel));
        }
        if d.recipient.trim().is_empty() {
            return Err(DeliveryError::Refused(
                "there is no mobile number to send the SMS to".to_owned(),
            ));
        }
        let id = self.message_id(d);
        let text = text::render(d, self.language);
        let body = self.body("pin", &id, &d.recipient, &text);
        self.post(&body, &id, d.secret.expose_secret())
    }

    fn notify(&self, n: &Notice) -> Result<Receipt, DeliveryError> {
        if n.channel != Channel::Sms {
            return Err(not_sms(n.channel));
        }
        if n.recipient.trim().is_empty() {
            return Err(DeliveryError::Refused(
                "there is no mobile number to send the notice to".to_owned(),
            ));
        }
        let id = self.notice_id(n);
        let text = text::render_notice(n, self.language);
        let body = self.body("notice", &id, &n.recipient, &text);
        self.post(&body, &id, "")
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn redaction_comes_before_the_cut() {
        // The PIN straddles the 200th character: cutting first would leave "4821" behind.
        let reply = format!("{}48213 trailing", "x".repeat(197));
        let q = quote(&reply, "48213");
        assert!(!q.contains("4821"), "{q}");
        assert_eq!(q.chars().count(), MAX_REPLY + 1);
        assert_eq!(
            redact("bad text: PIN k7qm2zxa and K7QM2ZXA", "K7QM2ZXA"),
            "bad text: PIN [redacted] and [redacted]"
        );
        assert_eq!(quote("a\r\n  b", ""), "a b");
    }

    #[test]
    fn receipts_from_the_reply() {
        assert_eq!(receipt(r#"{"status":"delivered"}"#), Receipt::Confirmed);
        assert_eq!(receipt(r#"{"status":"queued"}"#), Receipt::Sent);
        assert_eq!(receipt(r#"{"status":1}"#), Receipt::Sent);
        assert_eq!(receipt("OK"), Receipt::Sent);
        assert_eq!(receipt(""), Receipt::Sent);
    }
}
