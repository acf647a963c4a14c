//! The request signature: what the notifier sends in [`SIGNATURE_HEADER`] and how a gateway
//! checks it ([`verify_signature`]).
//!
//! ```text
//! X-Pin-Signature: t=1767225600,v1=5f0c…(64 hex digits)
//! ```
//!
//! - `t` is the time of the attempt in seconds since the Unix epoch (UTC).
//! - `v1` is HMAC-SHA-256, keyed with the shared [`SigningKey`], over the bytes of `t` in
//!   decimal, one `.`, and the request body exactly as received: `"{t}.{body}"`. Lower-case
//!   hex.
//!
//! A gateway verifies a request in four steps (what [`verify_signature`] does):
//!
//! 1. Read the **raw** body bytes (before any JSON parsing or re-encoding).
//! 2. Split the header at `,` into `key=value` pairs; take `t` and every `v1` (more than one
//!    `v1` may be given while keys are rotated; unknown keys are ignored, for later schemes).
//! 3. Compute HMAC-SHA-256(key, `t` + `.` + body) and compare it with each `v1` in
//!    **constant time**; one must match.
//! 4. Refuse a `t` farther than a tolerance (e.g. 5 minutes) from the gateway's clock, so a
//!    recorded request cannot be replayed later; within the tolerance, the body's
//!    `message_id` lets the gateway drop a replay or a retry it has already carried.
//!
//! Each attempt of a retried send is signed afresh (a new `t`); the body stays the same.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::SigningKey;

/// The name of the header that carries the signature.
pub const SIGNATURE_HEADER: &str = "X-Pin-Signature";

/// The header value for a request with `body` sent at `timestamp` (seconds since the Unix
/// epoch): `t=<timestamp>,v1=<hex>`.
#[must_use]
pub fn sign(key: &SigningKey, timestamp: u64, body: &[u8]) -> String {
    format!("t={timestamp},v1={}", hex(&mac(key, timestamp, body)))
}

fn mac(key: &SigningKey, timestamp: u64, body: &[u8]) -> [u8; 32] {
    #[allow(clippy::expect_used, reason = "HMAC takes keys of every length")]
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key.expose_secret())
        .expect("HMAC accepts keys of every length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().into()
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Why a signature was not accepted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The header is not `t=<seconds>,v1=<64 hex digits>`.
    #[error("the signature header is malformed: {0}")]
    Malformed(&'static str),
    /// The timestamp is farther from `now` than the tolerance: a replay, or a clock off.
    #[error(
        "the signature's timestamp {timestamp} is {skew_secs} s away from now (tolerance {tolerance_secs} s)"
    )]
    Stale {
        /// The timestamp of the header.
        timestamp: u64,
        /// How far it is from `now`, in seconds.
        skew_secs: u64,
        /// The tolerance, in seconds.
        tolerance_secs: u64,
    },
    /// No `v1` matches the body under the key: the body was changed, or the key differs.
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks the `header` value ([`SIGNATURE_HEADER`]) of a request with the raw `body`, for a
/// receiver whose clock reads `now` (seconds since the Unix epoch), accepting timestamps at
/// most `tolerance_secs` away. Answers the timestamp signed.
///
/// The MACs are compared in constant time; the timestamp is checked after the MAC, so a
/// forged header learns nothing from which check failed.
///
/// # Errors
/// [`SignatureError::Malformed`], [`SignatureError::Mismatch`], [`SignatureError::Stale`].
pub fn verify_signature(
    key: &SigningKey,
    header: &str,
    body: &[u8],
    now: u64,
    tolerance_secs: u64,
) -> Result<u64, SignatureError> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for item in header.split(',') {
        let Some((name, value)) = item.trim().split_once('=') else {
            return Err(SignatureError::Malformed("an item is not `key=value`"));
        };
        match name {
            "t" => {
                if timestamp.is_some() {
                    return Err(SignatureError::Malformed("`t` is given twice"));
                }
                let t = value
                    .parse::<u64>()
                    .map_err(|_| SignatureError::Malformed("`t` is not a number of seconds"))?;
                timestamp = Some(t);
            }
            "v1" => candidates
                .push(unhex(value).ok_or(SignatureError::Malformed("`v1` is not 64 hex digits"))?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed("`t` is missing"))?;
    if candidates.is_empty() {
        return Err(SignatureError::Malformed("`v1` is missing"));
    }
    let expected = mac(key, timestamp, body);
    let matched = candidates
        .iter()
        .fold(subtle::Choice::from(0), |any, c| any | expected.ct_eq(c));
    if !bool::from(matched) {
        return Err(SignatureError::Mismatch);
    }
    let skew_secs = now.abs_diff(timestamp);
    if skew_secs > tolerance_secs {
        return Err(SignatureError::Stale {
            timestamp,
            skew_secs,
            tolerance_secs,
        });
    }
    Ok(timestamp)
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (o, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        let digits = std::str::from_utf8(pair).ok()?;
        *o = u8::from_str_radix(digits, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn key(k: &[u8; 16]) -> SigningKey {
        SigningKey::new(k).unwrap()
    }

    /// A vector computed independently (Python: `hmac.new(key, b"1767225600." + body,
    /// sha256).hexdigest()`), so the scheme the docs describe is the one implemented.
    #[test]
    fn the_documented_scheme() {
        let k = key(b"0123456789abcdef");
        assert_eq!(
            sign(&k, 1_767_225_600, br#"{"a":1}"#),
            "t=1767225600,v1=539b0e21b535c5201ef7d1453c0a0de4ad132293226de9018be0cfbf0092faa6"
        );
    }

    #[test]
    fn round_trip_tamper_stale_malformed() {
        let k = key(b"0123456789abcdef");
        let body = br#"{"type":"pin"}"#;
        let h = sign(&k, 1000, body);
        assert_eq!(verify_signature(&k, &h, body, 1000, 300), Ok(1000));
        assert_eq!(verify_signature(&k, &h, body, 1300, 300), Ok(1000));
        assert_eq!(
            verify_signature(&k, &h, br#"{"type":"pim"}"#, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_signature(&key(b"fedcba9876543210"), &h, body, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        assert!(matches!(
            verify_signature(&k, &h, body, 1301, 300),
            Err(SignatureError::Stale { skew_secs: 301, .. })
        ));
        // Another timestamp with the same MAC does not verify: `t` is signed.
        let moved = h.replace("t=1000", "t=1001");
        assert_eq!(
            verify_signature(&k, &moved, body, 1000, 300),
            Err(SignatureError::Mismatch)
        );
        for bad in [
            "",
            "t=1000",
            "v1=00",
            "t=x,v1=00",
            "t=1,t=1,v1=00",
            "garbage",
        ] {
            assert!(
                matches!(
                    verify_signature(&k, bad, body, 1000, 300),
                    Err(SignatureError::Malformed(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn any_of_several_v1_may_match() {
        let old = key(b"0123456789abcdef");
        let new = key(b"fedcba9876543210");
        let body = b"{}";
        let v_old = sign(&old, 5, body);
        let v_new = sign(&new, 5, body);
        let both = format!("{v_new},{}", v_old.trim_start_matches("t=5,"));
        assert_eq!(verify_signature(&old, &both, body, 5, 0), Ok(5));
        assert_eq!(verify_signature(&new, &both, body, 5, 0), Ok(5));
    }
}
