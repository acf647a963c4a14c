//! *Codice fiscale* (the Italian tax code of a natural person): parsing and validation.
//!
//! A tax code has 16 characters:
//!
//! | positions | content |
//! |---|---|
//! | 1-3 | surname (consonants, then vowels, then `X`) |
//! | 4-6 | first name (same scheme) |
//! | 7-8 | last two digits of the year of birth |
//! | 9 | month of birth, one of `A B C D E H L M P R S T` (January to December) |
//! | 10-11 | day of birth, plus 40 for women (`01`-`31` men, `41`-`71` women) |
//! | 12-15 | place of birth (*codice catastale*, a letter and three digits, e.g. `H501`) |
//! | 16 | check character |
//!
//! *Omocodia*: when two people would get the same code, the Agenzia delle Entrate
//! replaces digits with letters (`L M N P Q R S T U V` for `0`-`9`), starting from
//! the rightmost digit (position 15) and moving left over positions 14, 13, 11,
//! 10, 8 and 7. [`TaxCode::parse`] accepts such codes, keeps them as written, and
//! decodes the letters back to digits before checking the date of birth.
//!
//! What is **not** checked: that positions 1-6 follow the consonant/vowel scheme
//! and that the place code exists. A code assigned by the Agenzia is valid even
//! when it does not match the derivation from the personal data, and this crate
//! has neither the names nor the registry of places; the check character catches
//! typing mistakes.

use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, Months, NaiveDate};
use serde::{Deserialize, Serialize};

/// Number of characters in a tax code.
const LEN: usize = 16;

/// Month letters, January first.
const MONTHS: [u8; 12] = *b"ABCDEHLMPRST";

/// Omocodia letters, standing for `0`..=`9`.
const OMOCODIA: [u8; 10] = *b"LMNPQRSTUV";

/// Positions (0-based) that hold digits, possibly replaced by omocodia letters,
/// from the right: the order in which substitutions are made.
const DIGIT_POSITIONS_FROM_RIGHT: [usize; 7] = [14, 13, 12, 10, 9, 7, 6];

/// Values of characters in odd positions (1st, 3rd, …) for the check character,
/// indexed by the value of the character (`0`-`9` as `A`-`J`).
const ODD_VALUES: [u32; 26] = [
    1, 0, 5, 7, 9, 13, 15, 17, 19, 21, 2, 4, 18, 20, 11, 3, 6, 8, 12, 14, 16, 10, 22, 25, 24, 23,
];

/// Age of majority in Italy, in years.
const AGE_OF_MAJORITY: u32 = 18;

/// A valid *codice fiscale* (tax code), normalised to upper case.
///
/// Omocodia letters are kept as written: [`TaxCode::as_str`] gives back the code
/// as issued, and the accessors decode it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TaxCode(String);

/// Sex as encoded in a tax code (day of birth plus 40 for women).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    /// Day of birth written as is (`01`-`31`).
    Male,
    /// Day of birth plus 40 (`41`-`71`).
    Female,
}

/// Why a string is not a valid *codice fiscale*.
///
/// Positions in messages count characters from 1, after leading and trailing
/// spaces are removed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TaxCodeError {
    /// The input is empty.
    #[error("the tax code is empty")]
    Empty,
    /// The input does not have 16 characters.
    #[error("a tax code has 16 characters; {found} were given")]
    Length {
        /// Number of characters given (after trimming spaces).
        found: usize,
    },
    /// A character is outside ASCII (accented letter, symbol from another script, …).
    #[error(
        "character {position} ({character:?}) is not allowed: a tax code uses only the letters A-Z and the digits 0-9"
    )]
    NonAscii {
        /// Position of the character, from 1.
        position: usize,
        /// The character.
        character: char,
    },
    /// A position that must hold a letter holds something else.
    #[error("character {position} ({character:?}) must be a letter ({part})")]
    ExpectedLetter {
        /// Position of the character, from 1.
        position: usize,
        /// The character found.
        character: char,
        /// What that position encodes.
        part: &'static str,
    },
    /// A position that must hold a digit (or an omocodia letter) holds something else.
    #[error(
        "character {position} ({character:?}) must be a digit, or one of the omocodia letters L M N P Q R S T U V ({part})"
    )]
    ExpectedDigit {
        /// Position of the character, from 1.
        position: usize,
        /// The character found.
        character: char,
        /// What that position encodes.
        part: &'static str,
    },
    /// Character 9 is not one of the twelve month letters.
    #[error("character 9 ({character:?}) must be a month letter (A B C D E H L M P R S T)")]
    Month {
        /// The character found.
        character: char,
    },
    /// Characters 10-11 are not a day of birth (01-31 for men, 41-71 for women).
    #[error("characters 10-11 ({found:02}) must be a day of birth: 01-31 for men, 41-71 for women")]
    Day {
        /// The two-digit number found (omocodia letters decoded).
        found: u8,
    },
    /// The day of birth does not exist in the month of birth.
    #[error(
        "characters 10-11 give day {day} of month {month}, but that month has only {max} days in a year ending in {year:02}"
    )]
    DayNotInMonth {
        /// Day of the month (40 already taken away for women).
        day: u8,
        /// Month, 1 to 12.
        month: u8,
        /// Last two digits of the year.
        year: u8,
        /// Number of days of that month.
        max: u8,
    },
    /// An omocodia letter has a plain digit somewhere to its right: substitutions
    /// are made from the right, so this code cannot have been issued.
    #[error(
        "character {position} ({character:?}) is an omocodia letter but character {digit_position} after it is still a digit: omocodia substitutions start from the right (character 15 first)"
    )]
    OmocodiaOrder {
        /// Position of the omocodia letter, from 1.
        position: usize,
        /// The omocodia letter.
        character: char,
        /// Position of the digit to its right, from 1.
        digit_position: usize,
    },
    /// Character 16 does not match the first 15.
    #[error(
        "character 16 ({found:?}) is not the check character of the first 15, which is {expected:?}: one of the characters may be mistyped"
    )]
    CheckCharacter {
        /// The check character computed from the first 15 characters.
        expected: char,
        /// The character given.
        found: char,
    },
}

/// What a position (0-based) of the code encodes, for error messages.
fn part_of(index: usize) -> &'static str {
    match index {
        0..=2 => "surname",
        3..=5 => "first name",
        6 | 7 => "year of birth",
        8 => "month of birth",
        9 | 10 => "day of birth and sex",
        11..=14 => "place of birth",
        _ => "check character",
    }
}

/// Whether position `index` (0-based) holds a digit or an omocodia letter.
fn is_digit_position(index: usize) -> bool {
    DIGIT_POSITIONS_FROM_RIGHT.contains(&index)
}

/// The digit a character stands for in a digit position: itself, or the omocodia letter's value.
fn digit_value(c: u8) -> Option<u8> {
    if c.is_ascii_digit() {
        return Some(c - b'0');
    }
    OMOCODIA
        .iter()
        .position(|&l| l == c)
        .and_then(|p| u8::try_from(p).ok())
}

/// Two decoded digits at 0-based positions `hi` and `lo`, as a number.
fn two_digits(code: &[u8; LEN], hi: usize, lo: usize) -> Option<u8> {
    let h = digit_value(*code.get(hi)?)?;
    let l = digit_value(*code.get(lo)?)?;
    Some(h * 10 + l)
}

/// The check character of the first 15 characters of an upper-case ASCII code.
///
/// Returns `None` if a character is not an ASCII upper-case letter or digit.
fn check_character(first15: &[u8]) -> Option<char> {
    let mut sum: u32 = 0;
    for (i, &c) in first15.iter().enumerate() {
        let value = match c {
            b'0'..=b'9' => usize::from(c - b'0'),
            b'A'..=b'Z' => usize::from(c - b'A'),
            _ => return None,
        };
        // Positions counted from 1: index 0 is the 1st, an odd position.
        sum += if i % 2 == 0 {
            *ODD_VALUES.get(value)?
        } else {
            u32::try_from(value).ok()?
        };
    }
    let offset = u8::try_from(sum % 26).ok()?;
    Some(char::from(b'A' + offset))
}

/// Number of days of `month` (1-12) in a year ending in `yy`, the century being unknown.
///
/// February has 29 days when `yy` is a multiple of 4: every such year is a leap
/// year in some century (00 in 2000, 1600, …).
fn days_in_month(month: u8, yy: u8) -> u8 {
    match month {
        2 if yy.is_multiple_of(4) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

impl TaxCode {
    /// Parses and validates a tax code.
    ///
    /// Leading and trailing spaces are removed and letters are upper-cased. The
    /// structure, the month letter, the day of birth (which must exist in the
    /// month; 29 February is accepted whenever the year could be a leap year),
    /// the order of omocodia substitutions and the check character are verified.
    ///
    /// # Errors
    /// [`TaxCodeError`] says what is wrong and at which character.
    pub fn parse(input: &str) -> Result<Self, TaxCodeError> {
        let s = input.trim();
        if s.is_empty() {
            return Err(TaxCodeError::Empty);
        }
        // Length gate before any allocation: anything else, however long, is only counted.
        let found = s.chars().count();
        if found != LEN {
            return Err(TaxCodeError::Length { found });
        }
        if let Some((i, c)) = s.chars().enumerate().find(|(_, c)| !c.is_ascii()) {
            return Err(TaxCodeError::NonAscii {
                position: i + 1,
                character: c,
            });
        }
        let upper = s.to_ascii_uppercase();
        let code: [u8; LEN] = upper
            .as_bytes()
            .try_into()
            .map_err(|_| TaxCodeError::Length { found: upper.len() })?;

        // Character classes, left to right.
        for (i, &c) in code.iter().enumerate() {
            if is_digit_position(i) {
                if digit_value(c).is_none() {
                    return Err(TaxCodeError::ExpectedDigit {
                        position: i + 1,
                        character: char::from(c),
                        part: part_of(i),
                    });
                }
            } else if !c.is_ascii_uppercase() {
                return Err(TaxCodeError::ExpectedLetter {
                    position: i + 1,
                    character: char::from(c),
                    part: part_of(i),
                });
            }
        }

        // Omocodia: once a plain digit is met going from the right, no letter may follow.
        let mut rightmost_digit: Option<usize> = None;
        for &i in &DIGIT_POSITIONS_FROM_RIGHT {
            let c = code.get(i).copied().unwrap_or(b'0');
            if c.is_ascii_digit() {
                if rightmost_digit.is_none() {
                    rightmost_digit = Some(i);
                }
            } else if let Some(d) = rightmost_digit {
                return Err(TaxCodeError::OmocodiaOrder {
                    position: i + 1,
                    character: char::from(c),
                    digit_position: d + 1,
                });
            }
        }

        let month_char = code.get(8).copied().unwrap_or(b'?');
        let Some(month) = month_index(month_char) else {
            return Err(TaxCodeError::Month {
                character: char::from(month_char),
            });
        };
        let yy = two_digits(&code, 6, 7).unwrap_or(0);
        let raw_day = two_digits(&code, 9, 10).unwrap_or(0);
        let day = match raw_day {
            1..=31 => raw_day,
            41..=71 => raw_day - 40,
            _ => return Err(TaxCodeError::Day { found: raw_day }),
        };
        let max = days_in_month(month, yy);
        if day > max {
            return Err(TaxCodeError::DayNotInMonth {
                day,
                month,
                year: yy,
                max,
            });
        }

        let found = char::from(code.get(15).copied().unwrap_or(b'?'));
        let expected = code.get(..15).and_then(check_character).unwrap_or('?');
        if found != expected {
            return Err(TaxCodeError::CheckCharacter { expected, found });
        }
        Ok(Self(upper))
    }

    /// The normalised 16 characters, omocodia letters kept as written.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The code as bytes of fixed length (always succeeds for a parsed code).
    fn bytes(&self) -> Option<&[u8; LEN]> {
        self.0.as_bytes().try_into().ok()
    }

    /// Whether omocodia letters replace some digits (the code was changed to
    /// tell apart people who would otherwise share it).
    #[must_use]
    pub fn is_omocode(&self) -> bool {
        self.0
            .as_bytes()
            .get(14)
            .is_some_and(|c| !c.is_ascii_digit())
    }

    /// Sex encoded in the day of birth (plus 40 for women).
    #[must_use]
    pub fn sex(&self) -> Sex {
        match self.bytes().and_then(|b| two_digits(b, 9, 10)) {
            Some(d) if d > 40 => Sex::Female,
            _ => Sex::Male,
        }
    }

    /// Place of birth (*codice catastale*, e.g. `H501` for Rome, `Z…` abroad),
    /// omocodia letters decoded.
    #[must_use]
    pub fn place_code(&self) -> String {
        let b = self.0.as_bytes();
        let letter = b.get(11).map_or('?', |&c| char::from(c));
        let mut out = String::with_capacity(4);
        out.push(letter);
        for &c in b.get(12..15).unwrap_or_default() {
            out.push(digit_value(c).map_or('?', |d| char::from(b'0' + d)));
        }
        out
    }

    /// Date of birth encoded in the code: the latest date not after `today` that matches.
    ///
    /// The code gives only the last two digits of the year, so the year is taken
    /// in the latest century that puts the birth on or before `today` (a code for
    /// `85` read in 2025 gives 1985; `10` gives 2010). People over a hundred
    /// years old are therefore read as a century younger, a limit of the code
    /// itself. Returns `None` only when no date in the four centuries up to
    /// `today` matches (e.g. `today` is before year 400).
    #[must_use]
    pub fn birth_date(&self, today: NaiveDate) -> Option<NaiveDate> {
        let b = self.bytes()?;
        let yy = i32::from(two_digits(b, 6, 7)?);
        let month = u32::from(month_index(*b.get(8)?)?);
        let raw_day = two_digits(b, 9, 10)?;
        let day = u32::from(if raw_day > 40 { raw_day - 40 } else { raw_day });
        let century = today.year().div_euclid(100);
        // 29 February of a year ending in 00 exists only every fourth century.
        (0..5).find_map(|back| {
            let year = century
                .checked_sub(back)?
                .checked_mul(100)?
                .checked_add(yy)?;
            NaiveDate::from_ymd_opt(year, month, day).filter(|d| *d <= today)
        })
    }

    /// Whether the subject is under 18 on `today` (INPS-10: a parent may ask for
    /// the PIN of a minor).
    ///
    /// The 18th birthday of someone born on 29 February is 28 February in a
    /// common year (the term ends on the last day of the month, art. 2963 c.c.).
    /// When the date of birth cannot be resolved, the subject is not treated as a
    /// minor, so that nobody gains powers over an adult's PIN by mistake.
    #[must_use]
    pub fn is_minor(&self, today: NaiveDate) -> bool {
        self.birth_date(today)
            .and_then(|born| born.checked_add_months(Months::new(12 * AGE_OF_MAJORITY)))
            .is_some_and(|adult| today < adult)
    }
}

/// Month (1-12) of a month letter.
fn month_index(c: u8) -> Option<u8> {
    MONTHS
        .iter()
        .position(|&m| m == c)
        .and_then(|p| u8::try_from(p + 1).ok())
}

impl FromStr for TaxCode {
    type Err = TaxCodeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
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

impl fmt::Display for TaxCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Appends the right check character to 15 characters.
    fn with_check(first15: &str) -> String {
        assert_eq!(first15.len(), 15);
        let c = check_character(first15.as_bytes()).unwrap();
        format!("{first15}{c}")
    }

    /// A valid code whose check character is then replaced by a wrong one.
    fn with_wrong_check(first15: &str) -> (String, char, char) {
        let good = with_check(first15);
        let expected = good.chars().last().unwrap();
        let wrong = if expected == 'A' { 'B' } else { 'A' };
        (format!("{first15}{wrong}"), expected, wrong)
    }

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    /// Replaces digit positions (0-based) by their omocodia letters.
    fn omocode(code15: &str, positions: &[usize]) -> String {
        let mut b = code15.as_bytes().to_vec();
        for &p in positions {
            b[p] = OMOCODIA[usize::from(b[p] - b'0')];
        }
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn check_character_of_known_code() {
        // Mario Rossi, born 10 December 1985, place A562. Worked out by hand:
        // odd positions  R=8 S=12 R=8 8=19 T=14 0=1 5=13 2=5 -> 80,
        // even positions S=18 M=12 A=0 5=5 1=1 A=0 6=6     -> 42;
        // 122 mod 26 = 18 -> 'S'.
        assert_eq!(check_character(b"RSSMRA85T10A562"), Some('S'));
        assert!(TaxCode::parse("RSSMRA85T10A562S").is_ok());
    }

    #[test]
    fn check_character_by_hand() {
        // Independent computation of RSSMRA85T10A562 with the tables spelled out.
        let odd = |c: char| -> u32 {
            match c {
                '0' | 'A' => 1,
                '1' | 'B' => 0,
                '2' | 'C' => 5,
                '3' | 'D' => 7,
                '4' | 'E' => 9,
                '5' | 'F' => 13,
                '6' | 'G' => 15,
                '7' | 'H' => 17,
                '8' | 'I' => 19,
                '9' | 'J' => 21,
                'K' => 2,
                'L' => 4,
                'M' => 18,
                'N' => 20,
                'O' => 11,
                'P' => 3,
                'Q' => 6,
                'R' => 8,
                'S' => 12,
                'T' => 14,
                'U' => 16,
                'V' => 10,
                'W' => 22,
                'X' => 25,
                'Y' => 24,
                'Z' => 23,
                _ => unreachable!(),
            }
        };
        let even = |c: char| -> u32 {
            if c.is_ascii_digit() {
                c as u32 - '0' as u32
            } else {
                c as u32 - 'A' as u32
            }
        };
        for code in [
            "RSSMRA85T10A562",
            "BNCGNN70A41H501",
            "VRDLCU01M29Z404",
            "XXXYYY99E71L219",
        ] {
            let sum: u32 = code
                .chars()
                .enumerate()
                .map(|(i, c)| if i % 2 == 0 { odd(c) } else { even(c) })
                .sum();
            let expected = char::from(b'A' + u8::try_from(sum % 26).unwrap());
            assert_eq!(check_character(code.as_bytes()), Some(expected), "{code}");
        }
    }

    #[test]
    fn parses_valid_codes() {
        for first15 in [
            "RSSMRA85T10A562",
            "BNCGNN70A41H501", // woman, 1 January
            "VRDLCU00B29F205", // 29 February of a year ending in 00
            "XXXYYY99E71L219", // woman, 31 May
            "FOXAIX12S30Z404", // born abroad, 30 December
        ] {
            let code = with_check(first15);
            let t = TaxCode::parse(&code).unwrap();
            assert_eq!(t.as_str(), code);
            assert_eq!(t.to_string(), code);
            assert_eq!(code.parse::<TaxCode>().unwrap(), t);
            assert!(!t.is_omocode());
        }
    }

    #[test]
    fn trims_and_uppercases() {
        let t = TaxCode::parse("  rssmra85t10a562s\t\n").unwrap();
        assert_eq!(t.as_str(), "RSSMRA85T10A562S");
        let t = TaxCode::parse(" RssMra85T10a562s ").unwrap();
        assert_eq!(t.as_str(), "RSSMRA85T10A562S");
    }

    #[test]
    fn sex_day_and_place() {
        let m = TaxCode::parse("RSSMRA85T10A562S").unwrap();
        assert_eq!(m.sex(), Sex::Male);
        assert_eq!(m.place_code(), "A562");
        assert_eq!(m.birth_date(date(2025, 1, 1)), Some(date(1985, 12, 10)));

        // Female: day + 40.
        let f = TaxCode::parse(&with_check("BNCGNN70A41H501")).unwrap();
        assert_eq!(f.sex(), Sex::Female);
        assert_eq!(f.place_code(), "H501");
        assert_eq!(f.birth_date(date(2025, 1, 1)), Some(date(1970, 1, 1)));
    }

    #[test]
    fn omocode_variants_are_accepted_and_decoded() {
        let base = "RSSMRA85T10A562";
        // Every prefix of the substitution order, from the right.
        for n in 1..=DIGIT_POSITIONS_FROM_RIGHT.len() {
            let code = with_check(&omocode(base, &DIGIT_POSITIONS_FROM_RIGHT[..n]));
            let t = TaxCode::parse(&code).unwrap_or_else(|e| panic!("{code}: {e}"));
            assert_eq!(t.as_str(), code, "kept as written");
            assert!(t.is_omocode());
            assert_eq!(t.place_code(), "A562");
            assert_eq!(t.sex(), Sex::Male);
            assert_eq!(
                t.birth_date(date(2025, 1, 1)),
                Some(date(1985, 12, 10)),
                "{code}"
            );
        }
        // The last digit of the place code: 2 -> N.
        let code = with_check("RSSMRA85T10A56N");
        let t = TaxCode::parse(&code).unwrap();
        assert_eq!(t.place_code(), "A562");
        // A woman's day fully substituted: 41 -> QM.
        let code = with_check(&omocode("BNCGNN70A41H501", &[14, 13, 12, 10, 9]));
        assert_eq!(&code[9..11], "QM");
        let t = TaxCode::parse(&code).unwrap();
        assert_eq!(t.sex(), Sex::Female);
        assert_eq!(t.birth_date(date(2025, 1, 1)), Some(date(1970, 1, 1)));
    }

    #[test]
    fn omocodia_must_start_from_the_right() {
        // Letter at 14 (0-based 13) while 15 is still a digit.
        let code = with_check("RSSMRA85T10A5S2");
        assert_eq!(
            TaxCode::parse(&code),
            Err(TaxCodeError::OmocodiaOrder {
                position: 14,
                character: 'S',
                digit_position: 15
            })
        );
        // Letter in the year while the day is a digit.
        let code = with_check(&omocode("RSSMRA85T10A562", &[14, 13, 12, 7]));
        assert_eq!(
            TaxCode::parse(&code),
            Err(TaxCodeError::OmocodiaOrder {
                position: 8,
                character: 'R',
                digit_position: 11
            })
        );
    }

    #[test]
    fn empty_and_length() {
        assert_eq!(TaxCode::parse(""), Err(TaxCodeError::Empty));
        assert_eq!(TaxCode::parse("   \t "), Err(TaxCodeError::Empty));
        assert_eq!(
            TaxCode::parse("RSSMRA85T10A562"),
            Err(TaxCodeError::Length { found: 15 })
        );
        assert_eq!(
            TaxCode::parse("RSSMRA85T10A562SS"),
            Err(TaxCodeError::Length { found: 17 })
        );
        // Inner spaces are not removed.
        assert_eq!(
            TaxCode::parse("RSS MRA 85T10A562S"),
            Err(TaxCodeError::Length { found: 18 })
        );
        let huge = "A".repeat(10_000_000);
        assert_eq!(
            TaxCode::parse(&huge),
            Err(TaxCodeError::Length { found: 10_000_000 })
        );
    }

    #[test]
    fn non_ascii_is_refused_without_panic() {
        // 16 characters, more than 16 bytes.
        let e = TaxCode::parse("RSSMRÀ85T10A562S").unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::NonAscii {
                position: 6,
                character: 'À'
            }
        );
        assert!(e.to_string().contains("character 6"));
        // Multibyte characters that make exactly 16 bytes.
        let e = TaxCode::parse("RSSMRA85T10A56€S").unwrap_err(); // 16 chars, 18 bytes
        assert_eq!(
            e,
            TaxCodeError::NonAscii {
                position: 15,
                character: '€'
            }
        );
        let e = TaxCode::parse("ééééééééé").unwrap_err(); // 9 chars, 18 bytes
        assert_eq!(e, TaxCodeError::Length { found: 9 });
        let e = TaxCode::parse("éééééééé").unwrap_err(); // 8 chars, 16 bytes
        assert_eq!(e, TaxCodeError::Length { found: 8 });
        let e = TaxCode::parse("🦀🦀🦀🦀").unwrap_err(); // 4 chars, 16 bytes
        assert_eq!(e, TaxCodeError::Length { found: 4 });
        let e = TaxCode::parse("ⅰSSMRA85T10A562S").unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::NonAscii {
                position: 1,
                character: 'ⅰ'
            }
        );
    }

    #[test]
    fn expected_letter() {
        let e = TaxCode::parse(&with_check("R5SMRA85T10A562")).unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::ExpectedLetter {
                position: 2,
                character: '5',
                part: "surname"
            }
        );
        assert_eq!(
            e.to_string(),
            "character 2 ('5') must be a letter (surname)"
        );
        let e = TaxCode::parse(&with_check("RSSMRA85T101562")).unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::ExpectedLetter {
                position: 12,
                character: '1',
                part: "place of birth"
            }
        );
        let e = TaxCode::parse("RSSMRA85T10A5625").unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::ExpectedLetter {
                position: 16,
                character: '5',
                part: "check character"
            }
        );
        let e = TaxCode::parse("RSSMR-85T10A562S").unwrap_err();
        assert!(matches!(
            e,
            TaxCodeError::ExpectedLetter {
                position: 6,
                character: '-',
                ..
            }
        ));
        // Control characters are reported, escaped.
        let e = TaxCode::parse("RSS\u{7}RA85T10A562S").unwrap_err();
        assert!(e.to_string().contains("'\\u{7}'"), "{e}");
    }

    #[test]
    fn expected_digit() {
        // 'A' is not an omocodia letter.
        let e = TaxCode::parse(&with_check("RSSMRA8AT10A562")).unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::ExpectedDigit {
                position: 8,
                character: 'A',
                part: "year of birth"
            }
        );
        assert!(e.to_string().contains("L M N P Q R S T U V"));
        let e = TaxCode::parse("RSSMRA85T1 A562S").unwrap_err();
        assert!(matches!(
            e,
            TaxCodeError::ExpectedDigit {
                position: 11,
                character: ' ',
                ..
            }
        ));
    }

    #[test]
    fn month_letter() {
        let e = TaxCode::parse(&with_check("RSSMRA85X10A562")).unwrap_err();
        assert_eq!(e, TaxCodeError::Month { character: 'X' });
        assert_eq!(
            e.to_string(),
            "character 9 ('X') must be a month letter (A B C D E H L M P R S T)"
        );
        for (i, m) in MONTHS.iter().enumerate() {
            let code = with_check(&format!("RSSMRA85{}10A562", char::from(*m)));
            let t = TaxCode::parse(&code).unwrap();
            let born = t.birth_date(date(2025, 1, 1)).unwrap();
            assert_eq!(born.month() as usize, i + 1);
        }
    }

    #[test]
    fn day_ranges() {
        for bad in ["00", "32", "40", "72", "99"] {
            let e = TaxCode::parse(&with_check(&format!("RSSMRA85A{bad}A562"))).unwrap_err();
            assert_eq!(
                e,
                TaxCodeError::Day {
                    found: bad.parse().unwrap()
                },
                "{bad}"
            );
        }
        let e = TaxCode::parse(&with_check("RSSMRA85A00A562")).unwrap_err();
        assert!(e.to_string().contains("(00)"), "{e}");
        for good in ["01", "31", "41", "71"] {
            assert!(TaxCode::parse(&with_check(&format!("RSSMRA85A{good}A562"))).is_ok());
        }
    }

    #[test]
    fn day_must_exist_in_month() {
        // 30 February refused, for men and women.
        let e = TaxCode::parse(&with_check("RSSMRA84B30A562")).unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::DayNotInMonth {
                day: 30,
                month: 2,
                year: 84,
                max: 29
            }
        );
        let e = TaxCode::parse(&with_check("RSSMRA84B70A562")).unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::DayNotInMonth {
                day: 30,
                month: 2,
                year: 84,
                max: 29
            }
        );
        // 29 February only in years that can be leap years.
        let e = TaxCode::parse(&with_check("RSSMRA85B29A562")).unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::DayNotInMonth {
                day: 29,
                month: 2,
                year: 85,
                max: 28
            }
        );
        assert!(e.to_string().contains("only 28 days"));
        assert!(TaxCode::parse(&with_check("RSSMRA84B29A562")).is_ok());
        assert!(TaxCode::parse(&with_check("RSSMRA00B69A562")).is_ok());
        // 31 April (D) refused, 30 April accepted.
        let e = TaxCode::parse(&with_check("RSSMRA85D31A562")).unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::DayNotInMonth {
                day: 31,
                month: 4,
                year: 85,
                max: 30
            }
        );
        assert!(TaxCode::parse(&with_check("RSSMRA85D30A562")).is_ok());
        // 31 December accepted.
        assert!(TaxCode::parse(&with_check("RSSMRA85T31A562")).is_ok());
    }

    #[test]
    fn wrong_check_character_says_which_is_expected() {
        let e = TaxCode::parse("RSSMRA85T10A562X").unwrap_err();
        assert_eq!(
            e,
            TaxCodeError::CheckCharacter {
                expected: 'S',
                found: 'X'
            }
        );
        assert!(e.to_string().contains("'S'"), "{e}");
        let (code, expected, found) = with_wrong_check("BNCGNN70A41H501");
        assert_eq!(
            TaxCode::parse(&code),
            Err(TaxCodeError::CheckCharacter { expected, found })
        );
        // A single swapped character is caught.
        assert!(matches!(
            TaxCode::parse("RSSMRA85T10A526S"),
            Err(TaxCodeError::CheckCharacter { .. })
        ));
    }

    #[test]
    fn birth_date_century_resolution() {
        let t = TaxCode::parse(&with_check("RSSMRA10A01A562")).unwrap();
        assert_eq!(t.birth_date(date(2025, 6, 1)), Some(date(2010, 1, 1)));
        assert_eq!(
            t.birth_date(date(2010, 1, 1)),
            Some(date(2010, 1, 1)),
            "born today"
        );
        assert_eq!(t.birth_date(date(2009, 12, 31)), Some(date(1910, 1, 1)));
        let t = TaxCode::parse(&with_check("RSSMRA25H01A562")).unwrap();
        // 1 June 25 read on 31 May 2025: not yet born in 2025, so 1925.
        assert_eq!(t.birth_date(date(2025, 5, 31)), Some(date(1925, 6, 1)));
        assert_eq!(t.birth_date(date(2025, 6, 1)), Some(date(2025, 6, 1)));
        // 29 February 00: 2000 is a leap year, 1900 is not.
        let t = TaxCode::parse(&with_check("RSSMRA00B29A562")).unwrap();
        assert_eq!(t.birth_date(date(2025, 1, 1)), Some(date(2000, 2, 29)));
        assert_eq!(t.birth_date(date(1999, 1, 1)), Some(date(1600, 2, 29)));
        // No panic at the edges of chrono's range.
        assert_eq!(t.birth_date(NaiveDate::MIN), None);
        assert!(t.birth_date(NaiveDate::MAX).is_some());
    }

    #[test]
    fn minors() {
        let t = TaxCode::parse(&with_check("RSSMRA07C15A562")).unwrap(); // 15 March 2007
        assert!(t.is_minor(date(2025, 3, 14)));
        assert!(!t.is_minor(date(2025, 3, 15)), "18 on the birthday");
        assert!(!t.is_minor(date(2030, 1, 1)));
        assert!(t.is_minor(date(2007, 3, 15)), "born today");
        let adult = TaxCode::parse("RSSMRA85T10A562S").unwrap();
        assert!(!adult.is_minor(date(2025, 1, 1)));
        // Born 29 February 2008: of age on 28 February 2026.
        let leap = TaxCode::parse(&with_check("RSSMRA08B69A562")).unwrap();
        assert!(leap.is_minor(date(2026, 2, 27)));
        assert!(!leap.is_minor(date(2026, 2, 28)));
        assert!(!leap.is_minor(NaiveDate::MIN));
    }

    #[test]
    fn serde_round_trip() {
        let t = TaxCode::parse(&with_check("RSSMRA85T10A56N")).unwrap();
        let json = serde_json::to_string(&t).unwrap();
        assert_eq!(json, format!("\"{}\"", t.as_str()));
        let back: TaxCode = serde_json::from_str(&json).unwrap();
        assert_eq!(back, t);
        // Deserialising normalises and validates.
        let back: TaxCode = serde_json::from_str("\" rssmra85t10a562s \"").unwrap();
        assert_eq!(back.as_str(), "RSSMRA85T10A562S");
        let err = serde_json::from_str::<TaxCode>("\"RSSMRA85T10A562X\"").unwrap_err();
        assert!(err.to_string().contains("check character"), "{err}");
        assert_eq!(String::from(t.clone()), t.as_str());
        assert_eq!(TaxCode::try_from(t.as_str().to_owned()).unwrap(), t);
        assert_eq!(serde_json::to_string(&Sex::Female).unwrap(), "\"female\"");
    }

    /// Valid codes: random fields, random omocodia depth, correct check character.
    fn valid_code() -> impl Strategy<Value = String> {
        (
            "[A-Z]{6}",
            0u8..100,
            0usize..12,
            1u8..=28,
            any::<bool>(),
            "[A-Z][0-9]{3}",
            0usize..=7,
        )
            .prop_map(|(names, yy, month, day, female, place, omo)| {
                let day = if female { day + 40 } else { day };
                let m = char::from(MONTHS[month]);
                let first15 = format!("{names}{yy:02}{m}{day:02}{place}");
                with_check(&omocode(&first15, &DIGIT_POSITIONS_FROM_RIGHT[..omo]))
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in any::<String>()) {
            if let Ok(t) = TaxCode::parse(&s) {
                prop_assert_eq!(TaxCode::parse(t.as_str()), Ok(t.clone()));
                prop_assert_eq!(t.as_str().len(), LEN);
            }
        }

        #[test]
        fn parse_never_panics_near_valid(s in "[ a-zA-Z0-9À-ÿ€🦀]{14,18}") {
            if let Ok(t) = TaxCode::parse(&s) {
                prop_assert_eq!(t.as_str(), s.trim().to_ascii_uppercase());
                prop_assert_eq!(TaxCode::parse(t.as_str()), Ok(t.clone()));
            }
        }

        #[test]
        fn valid_codes_round_trip(code in valid_code(), lower in any::<bool>()) {
            let input = if lower { code.to_ascii_lowercase() } else { code.clone() };
            let t = TaxCode::parse(&input).unwrap();
            prop_assert_eq!(t.as_str(), code.as_str());
            prop_assert_eq!(TaxCode::parse(t.as_str()), Ok(t.clone()));
            let json = serde_json::to_string(&t).unwrap();
            prop_assert_eq!(serde_json::from_str::<TaxCode>(&json).unwrap(), t.clone());
            let today = date(2025, 7, 1);
            let born = t.birth_date(today).unwrap();
            prop_assert!(born <= today);
            prop_assert!(born > date(1925, 7, 1));
        }

        #[test]
        fn one_changed_character_is_refused(code in valid_code(), pos in 0usize..15, c in "[A-Z0-9]") {
            let mut b = code.into_bytes();
            let new = c.as_bytes()[0];
            prop_assume!(b[pos] != new);
            b[pos] = new;
            let changed = String::from_utf8(b).unwrap();
            // Either structurally wrong or caught by the check character; never a panic.
            prop_assert!(TaxCode::parse(&changed).is_err(), "{}", changed);
        }
    }
}
