//! Contacts of a subject: e-mail, mobile number, *PEC* (certified e-mail), residence address.
//!
//! STUB — being implemented.

use serde::{Deserialize, Serialize};

/// Why a contact was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ContactError {
    /// The e-mail address is not well formed.
    #[error("invalid e-mail address: {0}")]
    Email(&'static str),
    /// The phone number is not a valid mobile number.
    #[error("invalid mobile number: {0}")]
    Mobile(&'static str),
    /// The residence address is not acceptable.
    #[error("invalid residence address: {0}")]
    Address(&'static str),
}

/// A syntactically valid e-mail address, normalised (trimmed, domain lower-cased).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Parses an e-mail address.
    ///
    /// # Errors
    /// [`ContactError::Email`] says what is wrong.
    pub fn parse(input: &str) -> Result<Self, ContactError> {
        let s = input.trim();
        if !s.contains('@') {
            return Err(ContactError::Email("it has no '@'"));
        }
        Ok(Self(s.to_owned()))
    }
    /// The address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The key under which uniqueness is enforced (NOIPA-8): the whole address lower-cased.
    #[must_use]
    pub fn unique_key(&self) -> String {
        self.0.to_lowercase()
    }
}

impl TryFrom<String> for Email {
    type Error = ContactError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Email> for String {
    fn from(e: Email) -> Self {
        e.0
    }
}

/// A mobile phone number in E.164 form (`+393471234567`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mobile(String);

impl Mobile {
    /// Parses and normalises a mobile number; numbers without a country prefix are Italian (+39).
    ///
    /// # Errors
    /// [`ContactError::Mobile`] says what is wrong.
    pub fn parse(input: &str) -> Result<Self, ContactError> {
        Ok(Self(input.trim().to_owned()))
    }
    /// The E.164 form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Mobile {
    type Error = ContactError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Mobile> for String {
    fn from(e: Mobile) -> Self {
        e.0
    }
}

/// A residence address for letters.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address(String);

impl Address {
    /// Parses a postal address (one line, e.g. "Via Roma 1, 00100 Roma RM").
    ///
    /// # Errors
    /// [`ContactError::Address`] says what is wrong.
    pub fn parse(input: &str) -> Result<Self, ContactError> {
        Ok(Self(input.trim().to_owned()))
    }
    /// The address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Address {
    type Error = ContactError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}
impl From<Address> for String {
    fn from(e: Address) -> Self {
        e.0
    }
}

/// The contacts on record for one subject.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contacts {
    /// E-mail address (NoiPA: required, unique among NoiPA users).
    pub email: Option<Email>,
    /// Mobile number, for SMS.
    pub mobile: Option<Mobile>,
    /// *PEC* (posta elettronica certificata): certified e-mail.
    pub pec: Option<Email>,
    /// Residence address, for letters.
    pub address: Option<Address>,
}
