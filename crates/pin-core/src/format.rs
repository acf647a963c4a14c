//! PIN formats, alphabets, generation and input parsing. STUB — being implemented.

use crate::secret::Pin;
use rand_core::CryptoRng;

/// The shape of a PIN.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PinFormat {
    /// NoiPA: five decimal digits (NOIPA-1).
    NoipaDigits5,
    /// INPS at issue: 16 characters, delivered as two halves of 8 (INPS-3).
    InpsIssued16,
    /// INPS in use: 8 characters (INPS-3).
    InpsInUse8,
}

impl PinFormat {
    /// Number of characters.
    #[must_use]
    pub fn len(self) -> usize {
        match self {
            Self::NoipaDigits5 => 5,
            Self::InpsIssued16 => 16,
            Self::InpsInUse8 => 8,
        }
    }
}

/// Why PIN input was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinInputError {
    /// Wrong length.
    #[error("a PIN here has {expected} characters; {found} were given")]
    Length {
        /// Expected.
        expected: usize,
        /// Found.
        found: usize,
    },
}

/// Generates a uniformly random, non-trivial PIN of `format` from `rng`.
pub fn generate<R: CryptoRng + ?Sized>(format: PinFormat, rng: &mut R) -> Pin {
    let _ = rng;
    Pin::from_string("0".repeat(format.len()))
}

/// Parses PIN input to compare against a stored PIN of `format` (no triviality check).
///
/// # Errors
/// [`PinInputError`] when the text cannot be a PIN of that format.
pub fn parse_input(format: PinFormat, input: &str) -> Result<Pin, PinInputError> {
    let s = input.trim();
    if s.len() != format.len() {
        return Err(PinInputError::Length { expected: format.len(), found: s.len() });
    }
    Ok(Pin::from_string(s.to_owned()))
}

/// Parses a PIN chosen by the person (INPS-3): like [`parse_input`] plus refusal of trivial values.
///
/// # Errors
/// [`PinInputError`] says why the PIN is not acceptable.
pub fn parse_chosen(format: PinFormat, input: &str) -> Result<Pin, PinInputError> {
    parse_input(format, input)
}

/// Splits a 16-character PIN into its two halves of 8 (first, second).
#[must_use]
pub fn split_halves(pin: &Pin) -> (Pin, Pin) {
    let s = pin.expose_secret();
    let mid = s.len() / 2;
    (Pin::from_string(s.get(..mid).unwrap_or_default().to_owned()), Pin::from_string(s.get(mid..).unwrap_or_default().to_owned()))
}

/// Joins two halves into one PIN.
#[must_use]
pub fn join_halves(first: &Pin, second: &Pin) -> Pin {
    let mut s = String::with_capacity(first.len() + second.len());
    s.push_str(first.expose_secret());
    s.push_str(second.expose_secret());
    Pin::from_string(s)
}
