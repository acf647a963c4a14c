//! The crate's errors, kept apart by who must act: the caller misused the API or gave bad
//! input ([`InputError`]), the rules forbid the action now ([`Refusal`]), or storage failed
//! ([`StoreError`]). A wrong PIN is not an error: it is a
//! [`VerifyOutcome`](crate::VerifyOutcome).

use chrono::{DateTime, Utc};

use crate::contact::ContactError;
use crate::format::PinInputError;
use crate::hash::HashError;
use crate::policy::PolicyError;
use crate::secret::KeyId;
use crate::store::StoreError;
use crate::tax_code::{TaxCode, TaxCodeError};

/// Every failure of the library.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is malformed; nothing was changed.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The rules forbid this action now; nothing was changed.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// No subject has this tax code.
    #[error("no subject with tax code {0} is on record; enrol them first")]
    UnknownSubject(TaxCode),
    /// A subject with this tax code already exists.
    #[error("a subject with tax code {0} is already on record")]
    SubjectExists(TaxCode),
    /// The e-mail address belongs to another NoiPA user (NOIPA-8).
    #[error(
        "this e-mail address is already registered to another NoiPA user; give a personal address (NOIPA-8)"
    )]
    EmailInUse,
    /// The store failed.
    #[error("storage failed: {0}")]
    Store(#[from] StoreError),
    /// A stored hash cannot be used (malformed, unknown key, parameters out of bounds).
    #[error("stored PIN hash cannot be used: {0}")]
    Hash(#[from] HashError),
    /// The service is configured wrongly for this store (another pepper key, hashes made
    /// with other parameters): nothing was counted or changed. An operator must act.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The policy is not valid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A record of a batch (import) was refused; nothing of the batch was stored.
    #[error("record {index} of the batch: {source}")]
    Batch {
        /// Position of the record in the batch, from 0.
        index: usize,
        /// Why it was refused.
        source: Box<Error>,
    },
    /// The record kept changing under us; the action was not applied.
    #[error("the record of {0} changed concurrently too many times; try again")]
    Contention(TaxCode),
}

/// Who must act on an [`Error`], in one word: what a service maps to its answers (an HTTP
/// status, an exit code) without matching every variant. See [`Error::kind`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The input is malformed, or the policy is not valid: the caller must fix the call.
    Input,
    /// The rules forbid the action now (a refusal, an unknown or existing subject, an
    /// e-mail address in use); nothing was changed.
    Refused,
    /// The PIN is blocked after too many wrong attempts (INPS-12, POL-1, POL-5).
    Locked,
    /// The service is configured wrongly for this store (another pepper key, test-only
    /// hashes): an operator must act.
    Config,
    /// Storage failed, or data on record is corrupt or cannot be used.
    Storage,
    /// Nothing was changed and the same call may succeed later unchanged (a busy or
    /// unreachable store, a record that kept changing): [`Error::is_retryable`].
    Retryable,
}

impl Error {
    /// Who must act on this error (see [`ErrorKind`]). A [`Error::Batch`] has the kind of
    /// the record that failed.
    #[must_use]
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Batch { source, .. } => source.kind(),
            Self::Input(_) | Self::Policy(_) => ErrorKind::Input,
            Self::Refused(Refusal::Blocked) => ErrorKind::Locked,
            Self::Contention(_) => ErrorKind::Retryable,
            Self::Store(e) if e.is_retryable() => ErrorKind::Retryable,
            Self::Refused(_)
            | Self::UnknownSubject(_)
            | Self::SubjectExists(_)
            | Self::EmailInUse
            | Self::Store(StoreError::Exists | StoreError::NotFound | StoreError::EmailTaken) => {
                ErrorKind::Refused
            }
            Self::Config(_) => ErrorKind::Config,
            Self::Store(_) | Self::Hash(_) => ErrorKind::Storage,
        }
    }

    /// Whether the same call may succeed later unchanged: the store was busy or
    /// unreachable, or the record kept changing. Nothing was changed in those cases.
    #[must_use]
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Store(e) => e.is_retryable(),
            Self::Contention(_) => true,
            _ => false,
        }
    }
}

/// The service's configuration does not fit the store: detected before any attempt is
/// counted, so that a misconfigured service never turns a right PIN into a failure (POL-8).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The store recorded another fingerprint for this pepper key id: the key file is not
    /// the one this database's hashes were made with.
    #[error(
        "wrong key file for this database: pepper key id {} does not match the fingerprint \
         recorded in the database; use the key file the database was set up with",
        .0.0
    )]
    WrongKey(KeyId),
    /// The stored hash was made with the parameters meant only for tests.
    #[error(
        "hash made with test-only parameters: this PIN was hashed with the insecure test \
         settings (e.g. PIN_INSECURE_FAST_HASH=1) and the service now runs with real ones; \
         use the same settings, or issue a new PIN"
    )]
    TestOnlyHash,
    /// The stored hash cannot be checked by this service (key not in the keyring,
    /// parameters outside the floor/cap, malformed).
    #[error("the PIN hash on record cannot be checked by this service: {0}")]
    UnusableHash(HashError),
}

/// Malformed input.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// A bad tax code.
    #[error("tax code: {0}")]
    TaxCode(#[from] TaxCodeError),
    /// A bad contact.
    #[error(transparent)]
    Contact(#[from] ContactError),
    /// A bad PIN.
    #[error("PIN: {0}")]
    Pin(#[from] PinInputError),
    /// A contact the action needs is not on record or not given.
    #[error("{what} is required: {why}")]
    MissingContact {
        /// Which contact.
        what: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// The role does not belong to the subject's profile.
    #[error("role {role} does not fit this action: {why}")]
    Role {
        /// The role.
        role: &'static str,
        /// Why not.
        why: &'static str,
    },
    /// A receipt names a part that the current PIN does not have.
    #[error("PIN serial {serial} has no part {part} on channel {channel}")]
    UnknownPart {
        /// Serial.
        serial: u64,
        /// Part number.
        part: u8,
        /// Channel.
        channel: String,
    },
    /// A receipt tries to move a delivery backwards.
    #[error("delivery of part {part} cannot go from {from} to {to}")]
    DeliveryTransition {
        /// Part number.
        part: u8,
        /// Present state.
        from: String,
        /// Requested state.
        to: String,
    },
    /// The same contact kind was quoted twice where two different ones are needed.
    #[error("quote two different contacts (e.g. e-mail and mobile), not the same kind twice")]
    DuplicateContactKind,
    /// An imported record is inconsistent.
    #[error("import: {0}")]
    Import(&'static str),
}

/// The rules forbid the action now.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// This actor may not perform this action.
    #[error("{actor} may not {action} ({rule})")]
    Actor {
        /// Actor kind.
        actor: &'static str,
        /// The action.
        action: &'static str,
        /// The rule that forbids it.
        rule: &'static str,
    },
    /// Delegates are never admitted: the PIN is a digital identity (INPS-10).
    #[error(
        "delegates are not admitted: the person, or a guardian/curator/support administrator/parent with a declaration, must ask (INPS-10)"
    )]
    Delegate,
    /// A parent may act only for a minor (INPS-10).
    #[error("a parent may request the PIN only for a minor; this person is of age (INPS-10)")]
    ParentOfAdult,
    /// The action needs a PIN on record and there is none usable.
    #[error("there is no usable PIN on record")]
    NoPin,
    /// The PIN is blocked; only a new issue unblocks (POL-5).
    #[error(
        "the PIN is blocked after too many wrong attempts; ask for a new one — INPS: reset with two registered contacts, or at a branch; NoiPA: identification by the RID (POL-5)"
    )]
    Blocked,
    /// A request is already waiting for outbound verification.
    #[error("a request is already waiting for outbound verification by the contact centre")]
    AlreadyPending,
    /// No request is waiting for outbound verification.
    #[error("no request is waiting for outbound verification")]
    NothingPending,
    /// An outside check (address, archives, document, health card) did not pass.
    #[error("{0} check did not pass")]
    CheckFailed(&'static str),
    /// Support may re-send only after the waiting period from identification (NOIPA-5).
    #[error("support may re-send only after {until}, 12 hours after identification (NOIPA-5)")]
    ResendTooEarly {
        /// Earliest time.
        until: DateTime<Utc>,
    },
    /// Too many re-sends in the window (POL-4).
    #[error("too many re-sends; the next is allowed after {until} (POL-4)")]
    ResendLimit {
        /// Earliest time.
        until: DateTime<Utc>,
    },
    /// The PIN was already used or changed: a re-send would not help; `remedy` names the
    /// way that works for the subject's profile (INPS: reset; NoiPA: the RID).
    #[error(
        "the PIN on record was already used; a re-send is only for PINs not yet received — {remedy}"
    )]
    AlreadyUsed {
        /// What to do instead.
        remedy: &'static str,
    },
    /// A PIN cannot be issued on a request without identification in person (web, contact
    /// centre, pre-assigned letter): the tax code is not registered, a request already
    /// waits, or the person's PIN is in use or of kind `dispositivo` (POL-7). The same
    /// answer for each, so that it does not tell whether a person is on record.
    #[error(
        "no PIN can be issued on this request: it needs a registered person whose PIN is not in use, with no request already waiting; a PIN in use is changed, or reset with two registered contacts (INPS-14), and a dispositivo PIN is replaced only at a branch (INPS-5, POL-7)"
    )]
    RequestNotPossible,
    /// The action does not exist for this profile.
    #[error("{action} is not available for {profile} subjects")]
    NotForProfile {
        /// The action.
        action: &'static str,
        /// The profile.
        profile: &'static str,
    },
    /// A reset is not possible with the data given: the contacts do not match two of those
    /// registered (INPS-14), or the person never received a PIN through a channel that
    /// verified them, or a request waits for outbound verification (INPS-16). One answer for
    /// all, also for a tax code not on record.
    #[error(
        "reset is not possible with these data: it needs two of the contacts registered at first registration (INPS-14), of an INPS user who once received a PIN at a branch, on the web, through the contact centre or by letter (INPS-16); otherwise ask at a branch (INPS-5); NoiPA users ask their RID (NOIPA-6)"
    )]
    ContactsDoNotMatch,
    /// The proof of authentication is for an earlier PIN or another purpose.
    #[error("authenticate again: the PIN changed since")]
    StaleAuthentication,
    /// The proof of authentication was made for another purpose (e.g. an initial PIN,
    /// which allows nothing but a change, INPS-3).
    #[error("the PIN given does not allow to {action}; authenticate with a PIN in use for this")]
    WrongProof {
        /// The action.
        action: &'static str,
    },
    /// The PIN is in a stage that does not allow the action.
    #[error("the PIN is {stage}: {why}")]
    Stage {
        /// Present stage.
        stage: &'static str,
        /// What to do.
        why: &'static str,
    },
    /// The new PIN equals the current one.
    #[error("the new PIN must differ from the current one")]
    SamePin,
    /// The PIN already has the requested level.
    #[error("the PIN is already of kind dispositivo")]
    AlreadyDispositivo,
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn tax() -> TaxCode {
        TaxCode::parse("RSSMRA85T10A562S").unwrap()
    }

    fn backend() -> Box<dyn std::error::Error + Send + Sync> {
        "disk full".into()
    }

    #[test]
    fn every_error_has_its_kind() {
        use ErrorKind::{Config, Input, Locked, Refused, Retryable, Storage};
        let cases: Vec<(Error, ErrorKind)> = vec![
            (InputError::DuplicateContactKind.into(), Input),
            (
                PolicyError::Zero {
                    field: "lockout_attempts",
                }
                .into(),
                Input,
            ),
            (Refusal::Blocked.into(), Locked),
            (Refusal::SamePin.into(), Refused),
            (Error::UnknownSubject(tax()), Refused),
            (Error::SubjectExists(tax()), Refused),
            (Error::EmailInUse, Refused),
            (StoreError::Exists.into(), Refused),
            (StoreError::NotFound.into(), Refused),
            (StoreError::EmailTaken.into(), Refused),
            (ConfigError::WrongKey(KeyId(1)).into(), Config),
            (ConfigError::TestOnlyHash.into(), Config),
            (
                ConfigError::UnusableHash(HashError::UnsupportedAlgorithm).into(),
                Config,
            ),
            (StoreError::Corrupt("bad row".into()).into(), Storage),
            (StoreError::Backend(backend()).into(), Storage),
            (HashError::UnsupportedAlgorithm.into(), Storage),
            (StoreError::Conflict.into(), Retryable),
            (StoreError::Busy(backend()).into(), Retryable),
            (StoreError::Unavailable(backend()).into(), Retryable),
            (Error::Contention(tax()), Retryable),
        ];
        for (e, kind) in cases {
            assert_eq!(e.kind(), kind, "{e:?}");
            assert_eq!(e.is_retryable(), kind == Retryable, "{e:?}");
            // A batch has the kind of the record that failed.
            let batch = Error::Batch {
                index: 3,
                source: Box::new(e),
            };
            assert_eq!(batch.kind(), kind, "{batch:?}");
        }
    }
}
