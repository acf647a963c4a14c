//! Contacts of a subject: e-mail, mobile number, *PEC* (certified e-mail), residence address.
//!
//! The parsers here are syntactic: they refuse what cannot be a working contact
//! and normalise the rest, so that equal contacts compare equal. Whether a
//! mailbox exists, a phone rings or an address is real is for the delivery
//! channels and outside registries to find out (NOIPA-8, INPS-6).
//!
//! Error messages say what is wrong and where, but never repeat the whole
//! input: contacts are personal data and errors end up in logs.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest e-mail address accepted (RFC 5321 path limit minus the angle brackets).
const EMAIL_MAX: usize = 254;
/// Longest local part (before '@').
const LOCAL_MAX: usize = 64;
/// Longest domain label.
const LABEL_MAX: usize = 63;
/// Longest phone input, separators included; longer input is refused unread.
const MOBILE_INPUT_MAX: usize = 40;
/// Shortest and longest E.164 number, in digits after '+'.
const E164_MIN: usize = 8;
/// See [`E164_MIN`].
const E164_MAX: usize = 15;
/// Shortest and longest address, in characters after collapsing spaces.
const ADDRESS_MIN: usize = 5;
/// See [`ADDRESS_MIN`].
const ADDRESS_MAX: usize = 200;
/// Longest address input in bytes before collapsing spaces; longer input is refused unread.
const ADDRESS_INPUT_MAX: usize = 4 * ADDRESS_MAX;

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
    /// A character that is not allowed in the e-mail address.
    #[error(
        "invalid e-mail address: character {position} ({character:?}) is not allowed in the {part}"
    )]
    EmailCharacter {
        /// Position of the character in the address, from 1, after trimming spaces.
        position: usize,
        /// The character.
        character: char,
        /// Where it is: `"part before '@'"` or `"domain"`.
        part: &'static str,
    },
    /// A character that is neither a digit nor a separator in the phone number.
    #[error(
        "invalid mobile number: character {position} ({character:?}) is not allowed; use digits, an optional leading '+', and spaces, dashes, dots or parentheses as separators"
    )]
    MobileCharacter {
        /// Position of the character, from 1, after trimming spaces.
        position: usize,
        /// The character.
        character: char,
    },
    /// A control or invisible formatting character in the address.
    #[error(
        "invalid residence address: character {position} ({character:?}) is a control or invisible character; write the address as plain text"
    )]
    AddressCharacter {
        /// Position of the character, from 1, after trimming spaces.
        position: usize,
        /// The character.
        character: char,
    },
}

// ---------------------------------------------------------------------------
// E-mail

/// A syntactically valid e-mail address, normalised (trimmed, domain lower-cased).
///
/// Accepted: `local@domain` where
/// - the whole address has at most 254 characters and exactly one `@`;
/// - the local part has 1 to 64 characters among letters, digits, `.` and
///   ``! # $ % & ' * + - / = ? ^ _ ` { | } ~`` (the RFC 5322 *dot-atom*: printable
///   ASCII without spaces and without the characters that need quoting), with no
///   dot at the start, at the end or twice in a row;
/// - the domain has at least two labels separated by dots, each 1 to 63 letters,
///   digits or hyphens, not starting or ending with a hyphen, the last one (the
///   top-level domain) made of at least two letters.
///
/// Quoted local parts, IP-address domains and non-ASCII addresses are refused
/// (internationalised domains are accepted in their `xn--` form, except for the
/// top-level domain). The local part is kept as given, since in principle it is
/// case-sensitive; [`Email::unique_key`] folds it for uniqueness checks.
///
/// `Debug` shows the address masked ([`Email::masked`]): it is personal data.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self(_) = self;
        f.debug_struct("Email")
            .field("masked", &self.masked())
            .finish_non_exhaustive()
    }
}

/// Whether `c` may appear in an unquoted local part (RFC 5322 `atext`, plus '.').
fn is_local_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~.".contains(c)
}

impl Email {
    /// Parses an e-mail address.
    ///
    /// # Errors
    /// [`ContactError::Email`] or [`ContactError::EmailCharacter`] says what is wrong.
    pub fn parse(input: &str) -> Result<Self, ContactError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ContactError::Email("it is empty"));
        }
        if s.len() > EMAIL_MAX {
            return Err(ContactError::Email("it is longer than 254 characters"));
        }
        let mut parts = s.splitn(3, '@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(if s.contains('@') {
                ContactError::Email("it has more than one '@'")
            } else {
                ContactError::Email("it has no '@'")
            });
        };
        if local.is_empty() {
            return Err(ContactError::Email("the part before '@' is empty"));
        }
        if let Some((i, c)) = local.chars().enumerate().find(|&(_, c)| !is_local_char(c)) {
            return Err(ContactError::EmailCharacter {
                position: i + 1,
                character: c,
                part: "part before '@'",
            });
        }
        // Only ASCII from here on in the local part: bytes are characters.
        if local.len() > LOCAL_MAX {
            return Err(ContactError::Email(
                "the part before '@' is longer than 64 characters",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') {
            return Err(ContactError::Email(
                "the part before '@' starts or ends with a dot",
            ));
        }
        if local.contains("..") {
            return Err(ContactError::Email(
                "the part before '@' has two dots in a row",
            ));
        }

        if domain.is_empty() {
            return Err(ContactError::Email("the domain after '@' is empty"));
        }
        let domain_start = local.len() + 2; // position (from 1) of the domain's first character
        if let Some((i, c)) = domain
            .chars()
            .enumerate()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'))
        {
            return Err(ContactError::EmailCharacter {
                position: domain_start + i,
                character: c,
                part: "domain",
            });
        }
        let mut labels = 0usize;
        let mut last = "";
        for label in domain.split('.') {
            if label.is_empty() {
                return Err(ContactError::Email(
                    "the domain has an empty part (a dot at the start or end, or two dots in a row)",
                ));
            }
            if label.len() > LABEL_MAX {
                return Err(ContactError::Email(
                    "a part of the domain between dots is longer than 63 characters",
                ));
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(ContactError::Email(
                    "a part of the domain between dots starts or ends with '-'",
                ));
            }
            labels += 1;
            last = label;
        }
        if labels < 2 {
            return Err(ContactError::Email(
                "the domain after '@' needs at least two parts separated by a dot (e.g. example.it)",
            ));
        }
        if last.len() < 2 || !last.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(ContactError::Email(
                "the last part of the domain must be two or more letters (e.g. .it, .com)",
            ));
        }
        Ok(Self(format!("{local}@{}", domain.to_ascii_lowercase())))
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

    /// The address with the local part hidden but its first character, for
    /// operators and logs: `mario.rossi@example.it` gives `m***@example.it`.
    #[must_use]
    pub fn masked(&self) -> String {
        let (local, domain) = self.0.split_once('@').unwrap_or(("", &self.0));
        let first = local.chars().next().map(String::from).unwrap_or_default();
        format!("{first}***@{domain}")
    }
}

impl FromStr for Email {
    type Err = ContactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
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

// ---------------------------------------------------------------------------
// Mobile

/// A mobile phone number in E.164 form (`+393471234567`).
///
/// `Debug` shows the number masked ([`Mobile::masked`]): it is personal data.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mobile(String);

impl std::fmt::Debug for Mobile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self(_) = self;
        f.debug_struct("Mobile")
            .field("masked", &self.masked())
            .finish_non_exhaustive()
    }
}

impl Mobile {
    /// Parses and normalises a mobile number; numbers without a country prefix are Italian (+39).
    ///
    /// - Spaces, dashes, dots and parentheses are separators and are dropped.
    /// - A leading `+`, or a leading `00`, introduces the country code.
    /// - Any other number is **national**: `+39` is always put in front, even
    ///   when it already begins with `39`. Italian mobile numbers themselves may
    ///   begin with `39` (e.g. `393 …`), so stripping such a prefix would guess;
    ///   a national number given with its country code but without `+`/`00`
    ///   comes out too long and is refused with a hint to add the `+`.
    /// - The result is `+` and 8 to 15 digits, the first not `0` (E.164).
    /// - Italian numbers (`+39`) must be mobile: 9 or 10 digits after `+39`,
    ///   starting with `3`. Landlines (starting with `0`) are refused: the
    ///   number is for SMS.
    ///
    /// Numbers of other countries are checked only against E.164.
    ///
    /// # Errors
    /// [`ContactError::Mobile`] or [`ContactError::MobileCharacter`] says what is wrong.
    pub fn parse(input: &str) -> Result<Self, ContactError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ContactError::Mobile("it is empty"));
        }
        if s.len() > MOBILE_INPUT_MAX {
            return Err(ContactError::Mobile(
                "it is too long to be a phone number (at most 40 characters with separators)",
            ));
        }
        let mut digits = String::with_capacity(E164_MAX + 2);
        let mut plus = false;
        for (i, c) in s.chars().enumerate() {
            match c {
                '0'..='9' => digits.push(c),
                ' ' | '-' | '.' | '(' | ')' => {}
                '+' if !plus && digits.is_empty() => plus = true,
                '+' => {
                    return Err(ContactError::Mobile(
                        "a '+' may appear only once, before the country code",
                    ));
                }
                _ => {
                    return Err(ContactError::MobileCharacter {
                        position: i + 1,
                        character: c,
                    });
                }
            }
        }
        if digits.is_empty() {
            return Err(ContactError::Mobile("it has no digits"));
        }
        let international: &str = if plus {
            &digits
        } else if let Some(rest) = digits.strip_prefix("00") {
            rest
        } else {
            // National number: always Italian, see the doc comment.
            let national = digits.as_str();
            if national.starts_with('0') {
                return Err(ContactError::Mobile(
                    "this is an Italian landline number (it starts with 0); a mobile number is needed for SMS",
                ));
            }
            return Self::italian(national, true);
        };
        if international.starts_with('0') {
            return Err(ContactError::Mobile("the country code cannot start with 0"));
        }
        if let Some(national) = international.strip_prefix("39") {
            return Self::italian(national, false);
        }
        if international.len() < E164_MIN {
            return Err(ContactError::Mobile(
                "it is too short: an international number has at least 8 digits after '+'",
            ));
        }
        if international.len() > E164_MAX {
            return Err(ContactError::Mobile(
                "it is too long: an international number has at most 15 digits after '+'",
            ));
        }
        Ok(Self(format!("+{international}")))
    }

    /// Checks the national part of an Italian number and builds `+39…`.
    ///
    /// `bare` says that the input had no `+`/`00`, to hint at a country code
    /// written without them.
    fn italian(national: &str, bare: bool) -> Result<Self, ContactError> {
        if national.starts_with('0') {
            return Err(ContactError::Mobile(
                "this is an Italian landline number (+39 0…); a mobile number is needed for SMS",
            ));
        }
        if !national.starts_with('3') {
            return Err(ContactError::Mobile(
                "Italian mobile numbers start with 3 (after +39); a mobile number is needed for SMS",
            ));
        }
        match national.len() {
            9 | 10 => Ok(Self(format!("+39{national}"))),
            11 | 12 if bare && national.starts_with("39") => Err(ContactError::Mobile(
                "an Italian mobile number has 9 or 10 digits; if this one includes the country code 39, write it with '+' (+39…)",
            )),
            n if n < 9 => Err(ContactError::Mobile(
                "it is too short: an Italian mobile number has 9 or 10 digits after +39",
            )),
            _ => Err(ContactError::Mobile(
                "it is too long: an Italian mobile number has 9 or 10 digits after +39",
            )),
        }
    }

    /// The E.164 form.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The number with all but the last 3 digits hidden, for operators and logs.
    ///
    /// The Italian country code stays visible (`+39*******567`); for other
    /// countries only `+` does (`+*********567`), since the length of a country
    /// code is not known here.
    #[must_use]
    pub fn masked(&self) -> String {
        let (prefix, rest) = match self.0.strip_prefix("+39") {
            Some(rest) => ("+39", rest),
            None => ("+", self.0.strip_prefix('+').unwrap_or(&self.0)),
        };
        let hidden = rest.len().saturating_sub(3);
        let tail = rest.get(hidden..).unwrap_or_default();
        format!("{prefix}{}{tail}", "*".repeat(hidden))
    }
}
impl FromStr for Mobile {
    type Err = ContactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
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

// ---------------------------------------------------------------------------
// Address

/// A residence address for letters.
///
/// Only a light sanity check is made: one line of 5 to 200 characters, no
/// control or invisible characters, and at least one digit (a street number or
/// a postcode; an address *senza numero civico* still has its postcode). Whether
/// the address exists is validated by an outside registry (INPS-6), not here.
///
/// `Debug` shows nothing of the address: it is personal data.
#[derive(Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Address(String);

impl std::fmt::Debug for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self(_) = self;
        f.debug_struct("Address").finish_non_exhaustive()
    }
}

/// Invisible formatting characters refused in addresses: zero-width characters
/// and bidirectional overrides, which can make a printed address differ from
/// the stored one.
fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

impl Address {
    /// Parses a postal address (one line, e.g. "Via Roma 1, 00100 Roma RM").
    ///
    /// Leading and trailing spaces are removed and every run of white space
    /// (including tabs and line breaks) becomes a single space.
    ///
    /// # Errors
    /// [`ContactError::Address`] or [`ContactError::AddressCharacter`] says what is wrong.
    pub fn parse(input: &str) -> Result<Self, ContactError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(ContactError::Address("it is empty"));
        }
        if s.len() > ADDRESS_INPUT_MAX {
            return Err(ContactError::Address("it is longer than 200 characters"));
        }
        if let Some((i, c)) = s
            .chars()
            .enumerate()
            .find(|&(_, c)| (c.is_control() && !c.is_whitespace()) || is_invisible(c))
        {
            return Err(ContactError::AddressCharacter {
                position: i + 1,
                character: c,
            });
        }
        let collapsed = s.split_whitespace().collect::<Vec<_>>().join(" ");
        let n = collapsed.chars().count();
        if n < ADDRESS_MIN {
            return Err(ContactError::Address("it is shorter than 5 characters"));
        }
        if n > ADDRESS_MAX {
            return Err(ContactError::Address("it is longer than 200 characters"));
        }
        if !collapsed.chars().any(|c| c.is_ascii_digit()) {
            return Err(ContactError::Address(
                "it has no digit: give the street number and the postcode (e.g. \"Via Roma 1, 00100 Roma RM\")",
            ));
        }
        Ok(Self(collapsed))
    }

    /// The address.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl FromStr for Address {
    type Err = ContactError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
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

// ---------------------------------------------------------------------------
// Contacts

/// The contacts on record for one subject.
///
/// `Debug` shows e-mail, mobile and PEC masked and the address not at all.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
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

impl std::fmt::Debug for Contacts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self {
            email,
            mobile,
            pec,
            address,
        } = self;
        f.debug_struct("Contacts")
            .field("email", email)
            .field("mobile", mobile)
            .field("pec", pec)
            .field("address", address)
            .finish_non_exhaustive()
    }
}

impl Contacts {
    /// How many of e-mail, mobile and PEC are on record: the contacts that can
    /// prove identity in an online reset (INPS-13, INPS-14 need at least two).
    /// The postal address does not count.
    #[must_use]
    pub fn reset_contact_count(&self) -> usize {
        usize::from(self.email.is_some())
            + usize::from(self.mobile.is_some())
            + usize::from(self.pec.is_some())
    }

    /// Whether `proof` is the contact of the same kind on record.
    ///
    /// E-mail addresses (plain and PEC) are compared by [`Email::unique_key`],
    /// so case does not matter; mobile numbers by their E.164 form. A proof of
    /// one kind never matches a contact of another kind (an e-mail quoted as
    /// proof does not match the PEC, even if the address is the same).
    #[must_use]
    pub fn matches(&self, proof: &ContactProof) -> bool {
        match proof {
            ContactProof::Email(e) => self
                .email
                .as_ref()
                .is_some_and(|r| r.unique_key() == e.unique_key()),
            ContactProof::Pec(e) => self
                .pec
                .as_ref()
                .is_some_and(|r| r.unique_key() == e.unique_key()),
            ContactProof::Mobile(m) => self.mobile.as_ref() == Some(m),
        }
    }
}

/// The kinds of contact that can prove identity (INPS-14).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactKind {
    /// Ordinary e-mail.
    Email,
    /// Mobile number.
    Mobile,
    /// *PEC*: certified e-mail.
    Pec,
}

impl fmt::Display for ContactKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Email => "e-mail",
            Self::Mobile => "mobile number",
            Self::Pec => "PEC",
        })
    }
}

/// A contact a person quotes to prove who they are (INPS-14: a reset needs the
/// tax code and at least two contacts given at registration).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ContactProof {
    /// An ordinary e-mail address.
    Email(Email),
    /// A mobile number.
    Mobile(Mobile),
    /// A *PEC* address.
    Pec(Email),
}

impl ContactProof {
    /// The kind of contact quoted.
    #[must_use]
    pub fn kind(&self) -> ContactKind {
        match self {
            Self::Email(_) => ContactKind::Email,
            Self::Mobile(_) => ContactKind::Mobile,
            Self::Pec(_) => ContactKind::Pec,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn email(s: &str) -> Email {
        Email::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }
    fn mobile(s: &str) -> Mobile {
        Mobile::parse(s).unwrap_or_else(|e| panic!("{s:?}: {e}"))
    }
    fn email_err(s: &str) -> String {
        match Email::parse(s) {
            Ok(e) => panic!("{s:?} accepted as {e:?}"),
            Err(e) => e.to_string(),
        }
    }
    fn mobile_err(s: &str) -> String {
        match Mobile::parse(s) {
            Ok(m) => panic!("{s:?} accepted as {m:?}"),
            Err(e) => e.to_string(),
        }
    }
    fn address_err(s: &str) -> String {
        match Address::parse(s) {
            Ok(a) => panic!("{s:?} accepted as {a:?}"),
            Err(e) => e.to_string(),
        }
    }

    // --- e-mail ----------------------------------------------------------

    #[test]
    fn email_valid_and_normalised() {
        assert_eq!(
            email("  Mario.Rossi@Example.IT ").as_str(),
            "Mario.Rossi@example.it"
        );
        for ok in [
            "a@b.it",
            "mario.rossi+pin@example.co.uk",
            "x_y-z@sub-domain.example.com",
            "o'neil@example.ie",
            "!#$%&'*+-/=?^_`{|}~@example.org",
            "user@xn--bcher-kva.example",
            "user@123.example.it",
        ] {
            assert_eq!(email(ok).as_str(), ok, "{ok}");
        }
        assert_eq!(
            email(&format!("{}@example.it", "a".repeat(64)))
                .as_str()
                .len(),
            64 + 11
        );
        assert_eq!("a@B.it".parse::<Email>().unwrap().as_str(), "a@b.it");
    }

    #[test]
    fn email_length_limits() {
        assert_eq!(Email::parse(""), Err(ContactError::Email("it is empty")));
        assert_eq!(Email::parse("   "), Err(ContactError::Email("it is empty")));
        // 254 accepted, 255 refused.
        let label = "a".repeat(63);
        let domain = format!("{label}.{label}.{label}.{}.it", "b".repeat(54));
        let addr = format!("{}@{domain}", "c".repeat(254 - 1 - domain.len()));
        assert_eq!(addr.len(), 254);
        assert!(Email::parse(&addr).is_ok());
        let long = format!("c{addr}");
        assert!(email_err(&long).contains("longer than 254"));
        assert!(email_err(&format!("{}@example.it", "a".repeat(65))).contains("longer than 64"));
        assert!(
            email_err(&format!("a@{}.it", "b".repeat(64))).contains("longer than 63 characters")
        );
        // Huge input is refused without work.
        assert!(email_err(&"@".repeat(10_000_000)).contains("254"));
    }

    #[test]
    fn email_at_signs() {
        assert_eq!(
            Email::parse("mario.example.it"),
            Err(ContactError::Email("it has no '@'"))
        );
        assert!(email_err("a@b@example.it").contains("more than one '@'"));
        assert!(email_err("@example.it").contains("before '@' is empty"));
        assert!(email_err("mario@").contains("domain after '@' is empty"));
    }

    #[test]
    fn email_local_part() {
        assert_eq!(
            Email::parse("ma rio@example.it"),
            Err(ContactError::EmailCharacter {
                position: 3,
                character: ' ',
                part: "part before '@'"
            })
        );
        assert!(email_err("ma\"rio@example.it").contains("character 3 ('\"')"));
        assert!(email_err("a\u{0}b@example.it").contains("'\\0'"));
        assert!(email_err("a\tb@example.it").contains("character 2"));
        assert!(email_err("a,b@example.it").contains("character 2 (',')"));
        assert!(email_err(".mario@example.it").contains("starts or ends with a dot"));
        assert!(email_err("mario.@example.it").contains("starts or ends with a dot"));
        assert!(email_err("ma..rio@example.it").contains("two dots in a row"));
        assert_eq!(
            Email::parse("màrio@example.it"),
            Err(ContactError::EmailCharacter {
                position: 2,
                character: 'à',
                part: "part before '@'"
            })
        );
    }

    #[test]
    fn email_domain() {
        assert_eq!(
            Email::parse("mario@exa_mple.it"),
            Err(ContactError::EmailCharacter {
                position: 10,
                character: '_',
                part: "domain"
            })
        );
        assert_eq!(
            Email::parse("mario@bücher.de"),
            Err(ContactError::EmailCharacter {
                position: 8,
                character: 'ü',
                part: "domain"
            })
        );
        assert!(email_err("mario@localhost").contains("at least two parts"));
        assert!(email_err("mario@.example.it").contains("empty part"));
        assert!(email_err("mario@example.it.").contains("empty part"));
        assert!(email_err("mario@example..it").contains("empty part"));
        assert!(email_err("mario@-example.it").contains("starts or ends with '-'"));
        assert!(email_err("mario@example-.it").contains("starts or ends with '-'"));
        assert!(email_err("mario@example.i").contains("two or more letters"));
        assert!(email_err("mario@example.123").contains("two or more letters"));
        assert!(email_err("mario@192.168.0.1").contains("two or more letters"));
        assert!(email_err("mario@[192.168.0.1]").contains("character 7 ('[')"));
    }

    #[test]
    fn email_unique_key_and_masked() {
        // rule: NOIPA-8
        let a = email("Mario.Rossi@Example.it");
        let b = email("mario.rossi@EXAMPLE.IT");
        assert_ne!(a, b, "local part kept as given");
        assert_eq!(a.unique_key(), b.unique_key());
        assert_eq!(a.unique_key(), "mario.rossi@example.it");
        assert_eq!(a.masked(), "M***@example.it");
        assert_eq!(email("m@example.it").masked(), "m***@example.it");
    }

    #[test]
    fn email_serde() {
        let e = email("Mario@Example.it");
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(json, "\"Mario@example.it\"");
        assert_eq!(serde_json::from_str::<Email>(&json).unwrap(), e);
        assert!(serde_json::from_str::<Email>("\"nope\"").is_err());
        assert_eq!(String::from(e.clone()), e.as_str());
    }

    // --- mobile ----------------------------------------------------------

    #[test]
    fn mobile_italian_forms() {
        for input in [
            "3471234567",
            "347 123 4567",
            "347-123-4567",
            "347.123.4567",
            "(347) 1234567",
            "+39 347 1234567",
            "+393471234567",
            "0039 347 1234567",
            "(+39) 347-123-4567",
            "  +39 (347) 123.45.67  ",
        ] {
            assert_eq!(mobile(input).as_str(), "+393471234567", "{input}");
        }
        // 9 national digits (older numbers).
        assert_eq!(mobile("333 123456").as_str(), "+39333123456");
        // Mobile numbers that themselves begin with 39 are not mistaken for a prefix.
        assert_eq!(mobile("393 1234567").as_str(), "+393931234567");
        assert_eq!(mobile("+39 393 1234567").as_str(), "+393931234567");
        assert_eq!(
            "3471234567".parse::<Mobile>().unwrap().as_str(),
            "+393471234567"
        );
    }

    #[test]
    fn mobile_bare_number_is_national_even_with_39() {
        // Documented choice: a bare "39…" number is national, so it gets +39 again
        // and is then too long, with a hint.
        let e = mobile_err("393471234567");
        assert!(e.contains("write it with '+'"), "{e}");
        let e = mobile_err("39 333 123456");
        assert!(e.contains("write it with '+'"), "{e}");
        assert_eq!(mobile("+39 3471234567").as_str(), "+393471234567");
    }

    #[test]
    fn mobile_italian_landline_refused() {
        for input in [
            "06 1234567",
            "+39 06 1234567",
            "0039 02 12345678",
            "0612345678",
        ] {
            let e = mobile_err(input);
            assert!(e.contains("landline") && e.contains("SMS"), "{input}: {e}");
        }
        let e = mobile_err("+39 812345678");
        assert!(e.contains("start with 3"), "{e}");
        assert!(mobile_err("34712345").contains("too short"));
        assert!(mobile_err("+39 34712345678").contains("too long"));
    }

    #[test]
    fn mobile_international() {
        assert_eq!(mobile("+44 7911 123456").as_str(), "+447911123456");
        assert_eq!(mobile("0044 7911 123456").as_str(), "+447911123456");
        assert_eq!(mobile("+1 (202) 555-0143").as_str(), "+12025550143");
        assert_eq!(mobile("+1234567890").as_str(), "+1234567890");
        assert_eq!(mobile("+12345678").as_str(), "+12345678", "8 digits");
        assert_eq!(
            mobile("+123456789012345").as_str(),
            "+123456789012345",
            "15 digits"
        );
        assert!(mobile_err("+1234567").contains("too short"));
        assert!(mobile_err("+1234567890123456").contains("too long"));
        assert!(mobile_err("+0123456789").contains("cannot start with 0"));
        assert!(mobile_err("000123456789").contains("cannot start with 0"));
    }

    #[test]
    fn mobile_characters() {
        assert_eq!(Mobile::parse(""), Err(ContactError::Mobile("it is empty")));
        assert_eq!(
            Mobile::parse("347 123x4567"),
            Err(ContactError::MobileCharacter {
                position: 8,
                character: 'x'
            })
        );
        assert_eq!(
            Mobile::parse("347١234567"),
            Err(ContactError::MobileCharacter {
                position: 4,
                character: '١'
            })
        );
        assert!(mobile_err("347\t1234567").contains("'\\t'"));
        assert!(mobile_err("+39 +347 1234567").contains("'+' may appear only once"));
        assert!(mobile_err("347+1234567").contains("'+' may appear only once"));
        assert!(mobile_err("+ - ()").contains("no digits"));
        assert!(mobile_err(&"3".repeat(41)).contains("too long"));
        assert!(mobile_err(&"3".repeat(10_000_000)).contains("too long"));
    }

    #[test]
    fn mobile_masked() {
        assert_eq!(mobile("347 123 4567").masked(), "+39*******567");
        assert_eq!(mobile("+44 7911 123456").masked(), "+*********456");
        assert_eq!(mobile("+12345678").masked(), "+*****678");
    }

    #[test]
    fn mobile_serde() {
        let m = mobile("347 123 4567");
        let json = serde_json::to_string(&m).unwrap();
        assert_eq!(json, "\"+393471234567\"");
        assert_eq!(serde_json::from_str::<Mobile>(&json).unwrap(), m);
        assert!(serde_json::from_str::<Mobile>("\"06 1234567\"").is_err());
    }

    // --- address ---------------------------------------------------------

    #[test]
    fn address_valid_and_collapsed() {
        // rule: INPS-6 (light check only; validation is the registry's job)
        let a = Address::parse("  Via   Roma 1,\t00100\n Roma  RM ").unwrap();
        assert_eq!(a.as_str(), "Via Roma 1, 00100 Roma RM");
        assert_eq!(
            Address::parse("Via Roma snc, 00100 Roma")
                .unwrap()
                .as_str()
                .len(),
            24
        );
        assert_eq!(Address::parse("Via Pò 1").unwrap().as_str(), "Via Pò 1");
        assert_eq!("V. 1a".parse::<Address>().unwrap().as_str(), "V. 1a");
        let max = format!("Via {}1", "x".repeat(ADDRESS_MAX - 5));
        assert_eq!(
            Address::parse(&max).unwrap().as_str().chars().count(),
            ADDRESS_MAX
        );
        // Multibyte characters count as one.
        let max = format!("Via {}1", "è".repeat(ADDRESS_MAX - 5));
        assert!(Address::parse(&max).is_ok());
    }

    #[test]
    fn address_errors() {
        assert_eq!(
            Address::parse("  "),
            Err(ContactError::Address("it is empty"))
        );
        assert!(address_err("V 1").contains("shorter than 5"));
        assert!(
            address_err("V   1").contains("shorter than 5"),
            "collapsed first"
        );
        assert!(
            address_err(&format!("Via {}1", "x".repeat(ADDRESS_MAX))).contains("longer than 200")
        );
        assert!(address_err(&"Via 1 ".repeat(100_000)).contains("longer than 200"));
        assert!(address_err("Via Roma, Roma").contains("no digit"));
        assert_eq!(
            Address::parse("Via Roma\u{7} 1"),
            Err(ContactError::AddressCharacter {
                position: 9,
                character: '\u{7}'
            })
        );
        assert_eq!(
            Address::parse("Via Roma 1\u{202E}MR"),
            Err(ContactError::AddressCharacter {
                position: 11,
                character: '\u{202E}'
            })
        );
        assert!(address_err("Via\u{200B}Roma 1").contains("'\\u{200b}'"));
        assert!(address_err("Via Roma 1\u{0}").contains("control"));
    }

    #[test]
    fn address_serde() {
        let a = Address::parse("Via Roma 1, 00100 Roma").unwrap();
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Address>(&json).unwrap(), a);
        assert!(serde_json::from_str::<Address>("\"Roma\"").is_err());
        assert_eq!(String::from(a.clone()), a.as_str());
    }

    // --- contacts --------------------------------------------------------

    fn full() -> Contacts {
        Contacts {
            email: Some(email("Mario.Rossi@example.it")),
            mobile: Some(mobile("347 123 4567")),
            pec: Some(email("mario.rossi@pec.example.it")),
            address: Some(Address::parse("Via Roma 1, 00100 Roma").unwrap()),
        }
    }

    #[test]
    fn reset_contact_count_ignores_address() {
        // rule: INPS-13, INPS-14
        assert_eq!(full().reset_contact_count(), 3);
        assert_eq!(Contacts::default().reset_contact_count(), 0);
        let c = Contacts {
            pec: None,
            ..full()
        };
        assert_eq!(c.reset_contact_count(), 2);
        let c = Contacts {
            email: None,
            mobile: None,
            ..full()
        };
        assert_eq!(c.reset_contact_count(), 1);
        let c = Contacts {
            email: None,
            mobile: None,
            pec: None,
            ..full()
        };
        assert_eq!(c.reset_contact_count(), 0);
    }

    #[test]
    fn matches_by_kind() {
        // rule: INPS-14
        let c = full();
        assert!(c.matches(&ContactProof::Email(email("MARIO.ROSSI@EXAMPLE.IT"))));
        assert!(c.matches(&ContactProof::Mobile(mobile("+39 347-123-4567"))));
        assert!(c.matches(&ContactProof::Pec(email("Mario.Rossi@PEC.example.it"))));
        assert!(!c.matches(&ContactProof::Email(email("other@example.it"))));
        assert!(!c.matches(&ContactProof::Mobile(mobile("347 123 4568"))));
        // Kinds do not cross.
        assert!(!c.matches(&ContactProof::Pec(email("mario.rossi@example.it"))));
        assert!(!c.matches(&ContactProof::Email(email("mario.rossi@pec.example.it"))));
        // Nothing on record matches nothing.
        let empty = Contacts::default();
        assert!(!empty.matches(&ContactProof::Email(email("mario.rossi@example.it"))));
        assert!(!empty.matches(&ContactProof::Mobile(mobile("3471234567"))));
        assert!(!empty.matches(&ContactProof::Pec(email("mario.rossi@pec.example.it"))));
    }

    #[test]
    fn proof_kind() {
        assert_eq!(
            ContactProof::Email(email("a@b.it")).kind(),
            ContactKind::Email
        );
        assert_eq!(ContactProof::Pec(email("a@b.it")).kind(), ContactKind::Pec);
        assert_eq!(
            ContactProof::Mobile(mobile("3471234567")).kind(),
            ContactKind::Mobile
        );
        assert_eq!(ContactKind::Pec.to_string(), "PEC");
        assert_eq!(ContactKind::Email.to_string(), "e-mail");
        assert_eq!(ContactKind::Mobile.to_string(), "mobile number");
        let kinds: std::collections::HashSet<_> = [
            ContactKind::Email,
            ContactKind::Mobile,
            ContactKind::Pec,
            ContactKind::Email,
        ]
        .into_iter()
        .collect();
        assert_eq!(kinds.len(), 3);
    }

    #[test]
    fn contacts_serde() {
        let c = full();
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Contacts>(&json).unwrap(), c);
        let p = ContactProof::Pec(email("a@b.it"));
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(json, r#"{"pec":"a@b.it"}"#);
        assert_eq!(serde_json::from_str::<ContactProof>(&json).unwrap(), p);
        assert_eq!(
            serde_json::to_string(&ContactKind::Mobile).unwrap(),
            "\"mobile\""
        );
        // Invalid contacts inside are refused.
        assert!(serde_json::from_str::<ContactProof>(r#"{"mobile":"06 1234567"}"#).is_err());
        assert!(
            serde_json::from_str::<Contacts>(
                r#"{"email":"x","mobile":null,"pec":null,"address":null}"#
            )
            .is_err()
        );
    }

    proptest! {
        #[test]
        fn email_never_panics(s in any::<String>()) {
            if let Ok(e) = Email::parse(&s) {
                prop_assert!(e.as_str().len() <= EMAIL_MAX);
                prop_assert_eq!(Email::parse(e.as_str()), Ok(e.clone()));
                prop_assert!(e.masked().contains("***@"));
            }
        }

        #[test]
        fn email_near_valid(s in "[ a-zA-Z0-9.@_+-]{0,20}(@[a-zA-Z0-9.-]{0,20})?(\\.[a-zA-Zé]{0,4})?") {
            if let Ok(e) = Email::parse(&s) {
                prop_assert_eq!(e.as_str().matches('@').count(), 1);
                prop_assert_eq!(Email::parse(e.as_str()), Ok(e.clone()));
                prop_assert_eq!(e.unique_key(), e.as_str().to_lowercase());
            }
        }

        #[test]
        fn mobile_never_panics(s in any::<String>()) {
            if let Ok(m) = Mobile::parse(&s) {
                prop_assert_eq!(Mobile::parse(m.as_str()), Ok(m.clone()));
                prop_assert_eq!(m.masked().len(), m.as_str().len());
            }
        }

        #[test]
        fn mobile_near_valid(s in "[+]?[0-9 ().+-]{0,24}") {
            if let Ok(m) = Mobile::parse(&s) {
                let digits = &m.as_str()[1..];
                prop_assert!(m.as_str().starts_with('+'));
                prop_assert!((E164_MIN..=E164_MAX).contains(&digits.len()));
                prop_assert!(digits.bytes().all(|b| b.is_ascii_digit()));
                prop_assert!(!digits.starts_with('0'));
                prop_assert_eq!(Mobile::parse(m.as_str()), Ok(m.clone()));
                prop_assert!(m.masked().ends_with(&m.as_str()[m.as_str().len() - 3..]));
            }
        }

        #[test]
        fn address_never_panics(s in any::<String>()) {
            if let Ok(a) = Address::parse(&s) {
                prop_assert_eq!(Address::parse(a.as_str()), Ok(a.clone()));
                prop_assert!(!a.as_str().contains("  "));
            }
        }

        #[test]
        fn address_near_valid(s in "[ \t\na-zà-ù0-9,.\u{0}\u{202e}]{0,40}") {
            if let Ok(a) = Address::parse(&s) {
                let n = a.as_str().chars().count();
                prop_assert!((ADDRESS_MIN..=ADDRESS_MAX).contains(&n));
                prop_assert!(a.as_str().chars().any(|c| c.is_ascii_digit()));
                prop_assert!(!a.as_str().chars().any(char::is_control));
                prop_assert_eq!(Address::parse(a.as_str()), Ok(a.clone()));
            }
        }
    }
}
