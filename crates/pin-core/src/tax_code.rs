//! *Codice fiscale* (the Italian tax code): parsing and validation.
//!
//! STUB — being implemented; see the module spec in the task.

use serde::{Deserialize, Serialize};

/// A valid *codice fiscale* (tax code), normalised to upper case.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaxCode(String);

/// Why a string is not a valid *codice fiscale*.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaxCodeError {
    /// The input is empty.
    #[error("the tax code is empty")]
    Empty,
}

impl TaxCode {
    /// Parses and validates a tax code.
    ///
    /// # Errors
    /// [`TaxCodeError`] says what is wrong.
    pub fn parse(input: &str) -> Result<Self, TaxCodeError> {
        let s = input.trim().to_ascii_uppercase();
        if s.is_empty() {
            return Err(TaxCodeError::Empty);
        }
        Ok(Self(s))
    }

    /// The normalised 16 characters.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Date of birth encoded in the code: the latest date not after `today` that matches.
    #[must_use]
    pub fn birth_date(&self, today: chrono::NaiveDate) -> Option<chrono::NaiveDate> {
        let _ = today;
        None
    }
}

impl TryFrom<String> for TaxCode {
    type Error = TaxCodeError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TaxCode> for String {
    fn from(t: TaxCode) -> Self {
        t.0
    }
}

impl std::fmt::Display for TaxCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
