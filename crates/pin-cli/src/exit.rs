//! Exit codes and the one error type of the binary.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success (for `verify`: the PIN was accepted) |
//! | 1 | internal error: a bug, or the outbox could not be read |
//! | 2 | bad input or usage: malformed tax code, contact, PIN, date or option |
//! | 3 | PIN rejected: wrong PIN, attempts remain |
//! | 4 | PIN locked: blocked after too many wrong attempts |
//! | 5 | refused: the rules forbid the action (actor, state, failed check, unknown or existing subject, rate limit, existing key file) |
//! | 6 | PIN not usable here: right PIN but `must_change`, `expired` or `insufficient_level`, or `no_pin` |
//! | 7 | storage failure: the database or the key file is missing, unreadable or corrupt |
//! | 8 | the audit chain does not verify (tampering or corruption) |
//! | 9 | try again later: the database was busy, or other attempts on the PIN are still being checked; nothing was counted or changed |
//! | 10 | not delivered (yet): the command was saved (a PIN was issued; any earlier one no longer works) but a part of it did not reach its channel. A `pending` part waits sealed in the delivery queue — fix the outbox or relay and run `pin deliver`; a `failed` part is recovered by `pin resend`, a fresh PIN (POL-3) not counted against the re-send limit |
//! | 11 | challenge required: the service is defended against a spray of guesses across many people and this source is not trusted; nothing was checked or counted — run the challenge (CAPTCHA, proof of work) and retry with `--challenge-passed`, or from a trusted device (`--device-token`) |
//!
//! Every failure prints one line on stderr, `pin: error: …`, saying what was wrong and what
//! to do; with `--json` the same failure is also printed on stdout as one JSON object
//! `{"ok": false, "error": {"kind": …, "message": …, "exit_code": …, "retryable": …}}`;
//! `retryable` is true exactly for exit code 9 (the same command may succeed later
//! unchanged: a busy database says "busy: retry …", never to check permissions).
//!
//! Exit code 10 is the one failure after which something WAS saved: the command's report is
//! printed as on success, with `"ok": false`, `"saved": true`, `"delivered": false`,
//! `"exit_code": 10` and the same `error` object (kind `undelivered`), and the deliveries
//! that did not happen have `"file": null`.

use std::fmt;

use pin_core::VerifyOutcome;
use pin_core::error::{Error as CoreError, ErrorKind};
use pin_core::store::StoreError;

/// The text of the exit-code table, printed at the end of `pin --help`.
pub(crate) const EXIT_CODES_HELP: &str = "\
Exit codes:
  0  success (verify: the PIN was accepted)
  1  internal error
  2  bad input or usage (malformed tax code, contact, PIN, date, option)
  3  PIN rejected (wrong PIN, attempts remain)
  4  PIN locked (blocked after too many wrong attempts)
  5  refused by the rules (actor, state, failed check, unknown/existing subject)
  6  PIN not usable here (must_change, expired, insufficient_level, no_pin)
  7  storage failure (database or key file missing, unreadable, corrupt)
  8  the audit chain does not verify
  9  try again later (database busy, or attempts in flight); nothing counted or changed
 10  not delivered yet: the PIN was issued and saved (any earlier one no longer works) but
     did not reach the person; a pending part waits in the delivery queue (fix the outbox
     or relay, then `pin deliver`); a failed one: `pin resend` (a fresh PIN)
 11  challenge required: defended against a spray of guesses; nothing checked or counted;
     retry with --challenge-passed after a challenge, or with a trusted --device-token";

/// Why a command failed, which fixes the exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A bug or an unexpected failure outside storage.
    Internal,
    /// Bad input or usage.
    Input,
    /// The PIN is wrong.
    Rejected,
    /// The PIN is blocked.
    Locked,
    /// The rules forbid the action.
    Refused,
    /// The PIN is right but cannot be used here, or there is none.
    NotUsable,
    /// The database or the key file cannot be used.
    Storage,
    /// The audit chain is broken.
    Integrity,
    /// Nothing was done; the same command may succeed later (busy database, attempts in
    /// flight).
    Retry,
    /// The command was saved but its PIN did not reach the person.
    Undelivered,
    /// Defended mode: the source must pass a challenge first; nothing was counted.
    Challenge,
}

impl Kind {
    /// The process exit code.
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Internal => 1,
            Self::Input => 2,
            Self::Rejected => 3,
            Self::Locked => 4,
            Self::Refused => 5,
            Self::NotUsable => 6,
            Self::Storage => 7,
            Self::Integrity => 8,
            Self::Retry => 9,
            Self::Undelivered => 10,
            Self::Challenge => 11,
        }
    }

    /// A stable name for JSON output.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Internal => "internal",
            Self::Input => "input",
            Self::Rejected => "rejected",
            Self::Locked => "locked",
            Self::Refused => "refused",
            Self::NotUsable => "not_usable",
            Self::Storage => "storage",
            Self::Integrity => "integrity",
            Self::Retry => "retry",
            Self::Undelivered => "undelivered",
            Self::Challenge => "challenge_required",
        }
    }

    /// The kind a verify outcome ends the process with; `None` for acceptance.
    pub(crate) fn of_outcome(outcome: &VerifyOutcome) -> Option<Self> {
        match outcome {
            VerifyOutcome::Accepted { .. } => None,
            VerifyOutcome::Rejected { .. } => Some(Self::Rejected),
            VerifyOutcome::Locked => Some(Self::Locked),
            VerifyOutcome::TryLater { .. } => Some(Self::Retry),
            VerifyOutcome::ChallengeRequired => Some(Self::Challenge),
            VerifyOutcome::MustChange
            | VerifyOutcome::Expired { .. }
            | VerifyOutcome::InsufficientLevel { .. }
            | VerifyOutcome::NoPin => Some(Self::NotUsable),
        }
    }
}

/// A failed command: its kind and a message a person can act on (one line, no secret).
#[derive(Debug)]
pub(crate) struct Failure {
    /// The kind.
    pub(crate) kind: Kind,
    /// The message.
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(kind: Kind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
    pub(crate) fn input(message: impl Into<String>) -> Self {
        Self::new(Kind::Input, message)
    }
    pub(crate) fn refused(message: impl Into<String>) -> Self {
        Self::new(Kind::Refused, message)
    }
    pub(crate) fn storage(message: impl Into<String>) -> Self {
        Self::new(Kind::Storage, message)
    }
    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(Kind::Internal, message)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// The kind of a library error: the core's [`pin_core::error::ErrorKind`], one mapping.
fn kind_of(e: &CoreError) -> Kind {
    match e.kind() {
        ErrorKind::Input => Kind::Input,
        ErrorKind::Refused => Kind::Refused,
        ErrorKind::Locked => Kind::Locked,
        ErrorKind::Retryable => Kind::Retry,
        ErrorKind::Config | ErrorKind::Storage => Kind::Storage,
        _ => Kind::Internal,
    }
}

impl From<CoreError> for Failure {
    fn from(e: CoreError) -> Self {
        let kind = kind_of(&e);
        let message = match &e {
            CoreError::Store(StoreError::Backend(_)) => {
                format!("{e}; check that the database file is readable and writable, and retry")
            }
            // Never "check permissions": nothing is wrong but the load.
            CoreError::Store(StoreError::Busy(source)) => format!(
                "busy: retry in a moment; other processes held the database's write lock past the wait deadline, and nothing was changed ({source})"
            ),
            CoreError::Store(StoreError::Unavailable(source)) => format!(
                "unavailable: retry later; the database server refused or dropped the connection, and nothing was changed ({source})"
            ),
            _ => e.to_string(),
        };
        Self::new(kind, one_line(&message))
    }
}

impl From<StoreError> for Failure {
    fn from(e: StoreError) -> Self {
        Self::from(CoreError::Store(e))
    }
}

/// Keeps a message on one line.
pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use pin_core::Refusal;
    use pin_core::error::InputError;

    use super::*;

    /// The CLI's kinds come from the core's `Error::kind`: one mapping, the exit codes of
    /// the README's table.
    #[test]
    fn core_error_kinds_map_to_exit_codes() {
        let busy: Box<dyn std::error::Error + Send + Sync> = "locked".into();
        for (e, code) in [
            (CoreError::from(InputError::DuplicateContactKind), 2),
            (CoreError::from(Refusal::Blocked), 4),
            (CoreError::from(Refusal::SamePin), 5),
            (CoreError::EmailInUse, 5),
            (CoreError::from(StoreError::Corrupt("row".into())), 7),
            (
                CoreError::from(pin_core::error::ConfigError::TestOnlyHash),
                7,
            ),
            (CoreError::from(StoreError::Busy(busy)), 9),
        ] {
            assert_eq!(Failure::from(e).kind.code(), code);
        }
    }
}
