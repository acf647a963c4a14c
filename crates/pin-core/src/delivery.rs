//! The durable delivery queue: how a part of a PIN waits for its channel without ever being
//! at rest in clear (BOTH-2), and when it is tried again. Pure: no I/O, no clock.
//!
//! # The design, and why
//!
//! An issue and the deliveries it needs are committed in **one** write: each [`Part`] that
//! still has to reach its channel carries a [`Queued`] entry — the part's characters and
//! its recipient, sealed with XChaCha20-Poly1305 under a key derived from the pepper
//! (HKDF-SHA-256, [`SealKey`]), bound to the tax code, serial, part and channel as
//! associated data. The driver then tries to deliver (inline, or a
//! [`crate::service::PinService::deliver_due`] worker later); the receipt — sent,
//! confirmed, or failed for good — erases the sealed copy in the same write that records
//! it. A process killed between the commit and the delivery loses nothing: the part is
//! still due, and the next worker run delivers it (at least once; [`Delivery::message_id`]
//! lets a channel drop a duplicate).
//!
//! This is the option (b), an encrypted outbox, argued against the rules:
//!
//! - **BOTH-2** (nobody but the person learns the whole PIN; only a one-way hash at rest):
//!   the database, its WAL and its backups hold ciphertext only, under a key that lives
//!   where the pepper lives — apart from the database. Whoever holds both the database and
//!   the pepper can already recover a 5-digit or 8-character PIN from its hash by trying
//!   every value; the sealed copy, erased at the receipt, adds no capability they lack for
//!   the minutes it usually exists. A split INPS PIN stays split: each half is sealed alone
//!   and erased at its own receipt.
//! - **POL-3** (a failed delivery is re-sent by issuing a fresh PIN, never by storing the
//!   old one in clear): a part that failed for good, or stayed undeliverable past
//!   [`Policy::delivery_deadline`](crate::Policy::delivery_deadline), is marked failed and
//!   its sealed copy erased; recovery is a fresh issue, which the person can ask for
//!   without spending their POL-4 budget (nothing reached them). Retrying a channel that
//!   was *unavailable* is not a re-send: the message never left.
//!
//! The alternative, generating the PIN at delivery time, would re-issue every part of a
//! split PIN after any crash of the worker, and complicates the in-person branch flows
//! (INPS-5) where a half is handed over in the same request.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, Zeroizing};

use crate::command::Delivery;
use crate::hash::Keyring;
use crate::secret::{KeyId, Pepper, Pin};
use crate::subject::{Channel, Credential, DeliveryState, Part};
use crate::tax_code::TaxCode;

/// The HKDF `info` of the seal key: a key for this purpose only, never the pepper itself.
const SEAL_INFO: &[u8] = b"pin-core/delivery-seal/v1";

/// Bytes of an XChaCha20 nonce.
const NONCE_LEN: usize = 24;

/// The sealing key of one pepper: HKDF-SHA-256 of the pepper with a fixed `info`, so the
/// outbox key is independent of the hashing key and rotates with it. Zeroized on drop; no
/// `Debug` of the key.
pub struct SealKey {
    id: KeyId,
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealKey")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl SealKey {
    /// The sealing key derived from `pepper`.
    #[must_use]
    pub fn derive(pepper: &Pepper) -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        let hk = hkdf::Hkdf::<sha2::Sha256>::new(None, pepper.expose_secret());
        // 32 bytes is far below HKDF-SHA-256's limit of 255 × 32: this cannot fail.
        let expanded = hk.expand(SEAL_INFO, key.as_mut_slice());
        debug_assert!(expanded.is_ok());
        Self {
            id: pepper.id(),
            key,
        }
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new(&chacha20poly1305::Key::from(*self.key))
    }
}

/// A part's recipient and characters, sealed ([`SealKey`]). Its `Debug` shows the key id
/// and the length only; its stored form is `v1.<key id>.<hex of nonce and ciphertext>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedPart {
    key_id: KeyId,
    nonce: [u8; NONCE_LEN],
    ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedPart {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealedPart")
            .field("key_id", &self.key_id)
            .field("len", &self.ciphertext.len())
            .finish()
    }
}

impl SealedPart {
    /// The id of the pepper whose [`SealKey`] sealed it.
    #[must_use]
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }
}

impl Serialize for SealedPart {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use crate::audit::export::hex;
        s.serialize_str(&format!(
            "v1.{}.{}{}",
            self.key_id.0,
            hex(&self.nonce),
            hex(&self.ciphertext)
        ))
    }
}

impl<'de> Deserialize<'de> for SealedPart {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let text = String::deserialize(d)?;
        let bad = || D::Error::custom("a sealed part is `v1.<key id>.<hex>`");
        let mut fields = text.splitn(3, '.');
        if fields.next() != Some("v1") {
            return Err(bad());
        }
        let key_id = fields
            .next()
            .and_then(|k| k.parse::<u32>().ok())
            .ok_or_else(bad)?;
        let hex = fields.next().ok_or_else(bad)?;
        if hex.len() > 2 * (NONCE_LEN + 1024) {
            return Err(bad());
        }
        let bytes = crate::audit::export::unhex(hex).ok_or_else(bad)?;
        if bytes.len() < NONCE_LEN + 16 {
            return Err(bad());
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let mut n = [0u8; NONCE_LEN];
        n.copy_from_slice(nonce);
        Ok(Self {
            key_id: KeyId(key_id),
            nonce: n,
            ciphertext: ciphertext.to_vec(),
        })
    }
}

/// A part waiting for its channel: the sealed copy, how many tries found the channel
/// unavailable, and when the next try is due.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Queued {
    /// The part's recipient and characters, sealed.
    pub sealed: SealedPart,
    /// Tries that found the channel unavailable (or were claimed and never receipted).
    pub tries: u32,
    /// When a worker may take it next.
    pub due_at: DateTime<Utc>,
}

/// Why a sealed part cannot be opened: it can never be delivered, and the part is failed
/// (POL-3: a fresh issue recovers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsealError {
    /// The pepper that sealed it is no longer in the keyring.
    #[error("sealed under key {0:?}, which the keyring no longer holds")]
    UnknownKey(KeyId),
    /// Authentication failed: the copy was altered or moved to another part.
    #[error("the sealed copy does not open: altered, or not this part's")]
    Damaged,
}

/// What a sealed part opens to.
pub struct Opened {
    /// The recipient as it was on record at issue.
    pub recipient: String,
    /// The part's characters.
    pub secret: Pin,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened").finish_non_exhaustive()
    }
}

/// The associated data binding a sealed copy to its place: moved to another subject,
/// serial, part or channel, it does not open.
fn aad(tax: &TaxCode, serial: u64, part: u8, channel: Channel) -> Vec<u8> {
    let mut a = Vec::with_capacity(40);
    a.extend_from_slice(b"pin-core part v1\0");
    a.extend_from_slice(tax.as_str().as_bytes());
    a.extend_from_slice(&serial.to_be_bytes());
    a.push(part);
    a.extend_from_slice(format!("{channel:?}").as_bytes());
    a
}

/// Seals `delivery`'s recipient and characters under `keys`' current pepper with a fresh
/// random `nonce`.
#[must_use]
pub fn seal(keys: &Keyring, delivery: &Delivery, nonce: [u8; NONCE_LEN]) -> SealedPart {
    let key = SealKey::derive(keys.current());
    let recipient = delivery.recipient.as_bytes();
    let len = u16::try_from(recipient.len()).unwrap_or(u16::MAX);
    let mut plain = Zeroizing::new(Vec::with_capacity(2 + recipient.len() + 16));
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(recipient.get(..usize::from(len)).unwrap_or(recipient));
    plain.extend_from_slice(delivery.secret.expose_secret().as_bytes());
    let ad = aad(
        &delivery.subject,
        delivery.serial,
        delivery.part,
        delivery.channel,
    );
    // Encryption with a 32-byte key, a 24-byte nonce and short inputs cannot fail.
    let ciphertext = key
        .cipher()
        .encrypt(
            &XNonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &ad,
            },
        )
        .unwrap_or_default();
    SealedPart {
        key_id: key.id,
        nonce,
        ciphertext,
    }
}

/// Opens the sealed copy of part `part` on `channel` of credential `serial` of `tax`.
///
/// # Errors
/// [`UnsealError`] when the key is gone or the copy does not authenticate.
pub fn open(
    keys: &Keyring,
    tax: &TaxCode,
    serial: u64,
    part: u8,
    channel: Channel,
    sealed: &SealedPart,
) -> Result<Opened, UnsealError> {
    let pepper = keys
        .keys()
        .find(|k| k.id() == sealed.key_id)
        .ok_or(UnsealError::UnknownKey(sealed.key_id))?;
    let key = SealKey::derive(pepper);
    let ad = aad(tax, serial, part, channel);
    let plain = Zeroizing::new(
        key.cipher()
            .decrypt(
                &XNonce::from(sealed.nonce),
                Payload {
                    msg: &sealed.ciphertext,
                    aad: &ad,
                },
            )
            .map_err(|_| UnsealError::Damaged)?,
    );
    let (len, rest) = plain.split_at_checked(2).ok_or(UnsealError::Damaged)?;
    let len = usize::from(u16::from_be_bytes([
        *len.first().ok_or(UnsealError::Damaged)?,
        *len.get(1).ok_or(UnsealError::Damaged)?,
    ]));
    let (recipient, secret) = rest.split_at_checked(len).ok_or(UnsealError::Damaged)?;
    let recipient = String::from_utf8(recipient.to_vec()).map_err(|_| UnsealError::Damaged)?;
    let mut secret = String::from_utf8(secret.to_vec()).map_err(|e| {
        let mut bytes = e.into_bytes();
        bytes.zeroize();
        UnsealError::Damaged
    })?;
    let pin = Pin::from_string(std::mem::take(&mut secret));
    Ok(Opened {
        recipient,
        secret: pin,
    })
}

/// When the next try of a part is due after `tries` tries found its channel unavailable:
/// `first` doubled each time, at most `cap`.
#[must_use]
pub fn retry_delay(first: TimeDelta, cap: TimeDelta, tries: u32) -> TimeDelta {
    let factor = 1i32
        .checked_shl(tries.saturating_sub(1).min(20))
        .unwrap_or(i32::MAX);
    first.checked_mul(factor).unwrap_or(cap).min(cap)
}

/// The earliest moment any part of `credential` is due, or `None` when nothing waits —
/// what a store indexes to find due deliveries.
#[must_use]
pub fn next_due(credential: &Credential) -> Option<DateTime<Utc>> {
    credential
        .parts
        .iter()
        .filter_map(|p| p.queued.as_ref().map(|q| q.due_at))
        .min()
}

/// The parts of `credential` due at `now`: pending, with a sealed copy, due.
pub fn due_parts(credential: &Credential, now: DateTime<Utc>) -> impl Iterator<Item = &Part> {
    credential.parts.iter().filter(move |p| {
        p.state == DeliveryState::Pending && p.queued.as_ref().is_some_and(|q| q.due_at <= now)
    })
}

/// Claims the parts of `credential` due at `now` for `hold`: their `due_at` moves to
/// `now + hold`, so another worker leaves them alone until this one receipts them or dies.
/// Returns the claimed parts' (index, channel).
pub fn claim(
    credential: &mut Credential,
    now: DateTime<Utc>,
    hold: TimeDelta,
) -> Vec<(u8, Channel)> {
    let mut claimed = Vec::new();
    for p in &mut credential.parts {
        if p.state != DeliveryState::Pending {
            continue;
        }
        if let Some(q) = p.queued.as_mut().filter(|q| q.due_at <= now) {
            q.due_at = now + hold;
            claimed.push((p.index, p.channel));
        }
    }
    claimed
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
mod tests {
    use super::*;
    use crate::subject::Origin;

    fn keys(byte: u8, id: u32) -> Keyring {
        Keyring::new(Pepper::new(KeyId(id), &[byte; 32]).unwrap())
    }

    fn delivery(secret: &str) -> Delivery {
        Delivery {
            subject: TaxCode::parse("RSSMRA85T10A562S").unwrap(),
            serial: 3,
            part: 1,
            of: 2,
            channel: Channel::Email,
            recipient: "mario.rossi@example.it".into(),
            secret: Pin::from_string(secret.into()),
            origin: Origin::Web,
        }
    }

    #[test]
    fn a_sealed_part_opens_only_in_its_place_and_under_its_key() {
        // rule: BOTH-2 — the queue holds no PIN in clear, and a copy moved elsewhere is useless.
        let k = keys(7, 1);
        let d = delivery("A7KQ2MXP");
        let sealed = seal(&k, &d, [9; 24]);
        let stored = serde_json::to_string(&sealed).unwrap();
        assert!(
            !stored.contains("A7KQ2MXP") && !stored.contains("mario"),
            "{stored}"
        );
        assert!(!format!("{sealed:?}").contains("A7KQ2MXP"));
        let back: SealedPart = serde_json::from_str(&stored).unwrap();
        assert_eq!(back, sealed);
        let opened = open(&k, &d.subject, 3, 1, Channel::Email, &back).unwrap();
        assert_eq!(opened.secret.expose_secret(), "A7KQ2MXP");
        assert_eq!(opened.recipient, "mario.rossi@example.it");
        // Another serial, part, channel or subject: does not open.
        for (serial, part, channel) in [
            (4, 1, Channel::Email),
            (3, 2, Channel::Email),
            (3, 1, Channel::Sms),
        ] {
            assert_eq!(
                open(&k, &d.subject, serial, part, channel, &back).unwrap_err(),
                UnsealError::Damaged
            );
        }
        let other = TaxCode::parse("VRDGPP80A01H501U").unwrap();
        assert!(open(&k, &other, 3, 1, Channel::Email, &back).is_err());
        // Another pepper with the same id: does not open; a retired id: said so.
        assert_eq!(
            open(&keys(8, 1), &d.subject, 3, 1, Channel::Email, &back).unwrap_err(),
            UnsealError::Damaged
        );
        assert_eq!(
            open(&keys(7, 2), &d.subject, 3, 1, Channel::Email, &back).unwrap_err(),
            UnsealError::UnknownKey(KeyId(1))
        );
        // One flipped bit: does not open.
        let mut bad = back.clone();
        bad.ciphertext[0] ^= 1;
        assert_eq!(
            open(&k, &d.subject, 3, 1, Channel::Email, &bad).unwrap_err(),
            UnsealError::Damaged
        );
    }

    #[test]
    fn malformed_stored_copies_are_refused_not_panicked_on() {
        for text in [
            "", "v2.1.00", "v1.x.00", "v1.1.0", "v1.1.zz", "v1.1.00", "v1",
        ] {
            let json = serde_json::to_string(text).unwrap();
            assert!(serde_json::from_str::<SealedPart>(&json).is_err(), "{text}");
        }
    }

    #[test]
    fn the_seal_key_is_not_the_pepper() {
        let p = Pepper::new(KeyId(1), &[7; 32]).unwrap();
        let k = SealKey::derive(&p);
        assert_ne!(k.key.as_slice(), p.expose_secret());
        assert!(!format!("{k:?}").contains('7'.to_string().repeat(2).as_str()));
    }

    #[test]
    fn retries_back_off_to_the_cap() {
        let first = TimeDelta::seconds(30);
        let cap = TimeDelta::minutes(15);
        let d: Vec<i64> = (1..=8)
            .map(|t| retry_delay(first, cap, t).num_seconds())
            .collect();
        assert_eq!(d, [30, 60, 120, 240, 480, 900, 900, 900]);
        assert_eq!(retry_delay(first, cap, u32::MAX), cap);
        assert_eq!(retry_delay(first, cap, 0), first);
    }
}
