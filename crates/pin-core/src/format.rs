//! PIN formats, alphabets, generation and input parsing.
//!
//! | Format | Length | Alphabet | Rule |
//! |---|---|---|---|
//! | [`PinFormat::NoipaDigits5`] | 5 | `0123456789` ([`NOIPA_ALPHABET`]) | NOIPA-1 |
//! | [`PinFormat::InpsIssued16`] | 16, delivered as two halves of 8 | [`INPS_ALPHABET`] | INPS-3, INPS-6..8 |
//! | [`PinFormat::InpsInUse8`] | 8 | [`INPS_ALPHABET`] | INPS-3 |
//!
//! Generation ([`generate`]) draws every character uniformly from the alphabet
//! with rejection sampling (no modulo bias), and draws the whole PIN again while
//! it is trivial ([`is_trivial`]): the result is uniform over the non-trivial
//! PINs. Randomness is always injected; this module reads no OS entropy.
//!
//! Parsing ([`parse_input`], [`parse_any_inps`], [`parse_chosen`]) turns what a
//! person typed into a [`Pin`]. Errors say which position is wrong and what kind
//! of character is expected, but never echo what was typed.
//!
//! ```
//! use pin_core::format::{PinFormat, PinInputError, generate, is_trivial, parse_chosen};
//! use rand_chacha::ChaCha20Rng;
//! use rand_core::SeedableRng;
//!
//! # fn main() -> Result<(), PinInputError> {
//! let pin = generate(PinFormat::InpsInUse8, &mut ChaCha20Rng::seed_from_u64(7));
//! assert_eq!(pin.len(), 8);
//! assert!(!is_trivial(pin.expose_secret()));
//!
//! let refused = parse_chosen(PinFormat::NoipaDigits5, "12345").map(|_| ());
//! assert_eq!(refused, Err(PinInputError::Trivial));
//! let chosen = parse_chosen(PinFormat::InpsInUse8, " r7kx2mq9\r\n")?;
//! assert_eq!(chosen.expose_secret(), "R7KX2MQ9");
//! # Ok(())
//! # }
//! ```

use crate::secret::Pin;
use rand_core::CryptoRng;
use zeroize::Zeroizing;

/// The symbols of a NoiPA PIN: the ten decimal digits (NOIPA-1).
pub const NOIPA_ALPHABET: &str = "0123456789";

/// The 32 symbols of an INPS PIN, in their canonical order.
///
/// Digits 2–9 and the letters A–Z without `I` and `O`: the digits `0` and `1`
/// and the letters `O` and `I` look and sound alike, and INPS PINs are read
/// aloud (the contact centre tells the first half by phone, INPS-7) and typed
/// from a letter, an e-mail or an SMS (INPS-6, INPS-8). 32 symbols also make
/// generation exact: 5 random bits per character.
pub const INPS_ALPHABET: &str = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ";

/// Longest input examined at all; anything longer is refused before any other work.
const MAX_INPUT_LEN: usize = 64;

/// Keyboard rows (Italian and US layouts agree on these letters), see [`is_trivial`].
const KEYBOARD_ROWS: [&str; 4] = ["1234567890", "QWERTYUIOP", "ASDFGHJKL", "ZXCVBNM"];

/// Candidates drawn by [`generate`] before giving up on the random source (see there).
const MAX_CANDIDATES: u32 = 1_000;

/// Draws rejected by [`uniform_index`] before giving up on the random source (see there).
const MAX_REJECTIONS: u32 = 128;

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
    #[allow(
        clippy::len_without_is_empty,
        reason = "a format always has characters; `is_empty` would always be false"
    )]
    pub fn len(self) -> usize {
        match self {
            Self::NoipaDigits5 => 5,
            Self::InpsIssued16 => 16,
            Self::InpsInUse8 => 8,
        }
    }

    /// The symbols a PIN of this format is made of: [`NOIPA_ALPHABET`] or [`INPS_ALPHABET`].
    #[must_use]
    pub fn alphabet(self) -> &'static str {
        match self {
            Self::NoipaDigits5 => NOIPA_ALPHABET,
            Self::InpsIssued16 | Self::InpsInUse8 => INPS_ALPHABET,
        }
    }

    /// The kind of character every position of this format holds.
    #[must_use]
    pub fn char_class(self) -> CharClass {
        match self {
            Self::NoipaDigits5 => CharClass::Digit,
            Self::InpsIssued16 | Self::InpsInUse8 => CharClass::InpsAlphabet,
        }
    }
}

/// The kind of character a PIN position expects; named in [`PinInputError::Character`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CharClass {
    /// A decimal digit `0`–`9` (NoiPA).
    Digit,
    /// A symbol of [`INPS_ALPHABET`] (INPS); lower-case letters are accepted and upper-cased.
    InpsAlphabet,
}

impl std::fmt::Display for CharClass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Digit => "is not a digit (0-9)",
            Self::InpsAlphabet => {
                "is not in the INPS alphabet: use letters A-Z and digits 2-9 \
                 (letters O and I and digits 0 and 1 are never used, to avoid confusion)"
            }
        })
    }
}

/// Why PIN input was refused. Messages never repeat what was typed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinInputError {
    /// Wrong length.
    #[error("a PIN here has {expected} characters; {found} were given")]
    Length {
        /// Expected.
        expected: usize,
        /// Found (for input longer than 64 bytes, its length in bytes).
        found: usize,
    },
    /// An INPS PIN of unknown kind ([`parse_any_inps`]) has neither 8 nor 16 characters.
    #[error(
        "an INPS PIN has 8 characters (16 when just issued, before the first access); \
         {found} were given"
    )]
    InpsLength {
        /// Found (for input longer than 64 bytes, its length in bytes).
        found: usize,
    },
    /// Nothing but white space was given.
    #[error("no PIN was given")]
    Empty,
    /// A character is not allowed at that position; the character itself is not repeated.
    #[error("character {position} {expected}")]
    Character {
        /// 1-based position of the first wrong character.
        position: usize,
        /// What is expected there.
        expected: CharClass,
    },
    /// A PIN chosen by the person is too easy to guess ([`is_trivial`]).
    #[error("this PIN is too easy to guess (a run, repetition or keyboard row); choose another")]
    Trivial,
}

/// A uniformly random index in `0..n`, by rejection sampling (no modulo bias).
///
/// For `n ≤ 256` one byte is drawn per try and values `≥ 256 − 256 mod n` are
/// rejected (for 10 digits: bytes 250..=255; for 32 symbols nothing is
/// rejected and the index is the low 5 bits). Larger `n` use a `u32` the same
/// way. Returns 0 for `n ≤ 1`.
///
/// A working `CryptoRng` is rejected [`MAX_REJECTIONS`] times in a row with
/// probability below 2⁻¹²⁸ (below 2⁻⁶⁰⁰ for the 10 digits; the 32 INPS symbols
/// are never rejected); a random source stuck on a rejected value would
/// otherwise hang the caller, so after that the last draw is reduced modulo
/// `n` (biased, but such a source has no entropy to lose anyway).
fn uniform_index<R: CryptoRng + ?Sized>(n: usize, rng: &mut R) -> usize {
    if n <= 1 {
        return 0;
    }
    if let Ok(n8) = u16::try_from(n)
        && n8 <= 256
    {
        let limit = 256 - (256 % n8);
        let mut byte = [0u8; 1];
        for _ in 0..MAX_REJECTIONS {
            rng.fill_bytes(&mut byte);
            let [b] = byte;
            if u16::from(b) < limit {
                return usize::from(u16::from(b) % n8);
            }
        }
        let [b] = byte;
        return usize::from(u16::from(b) % n8);
    }
    let n64 = u64::try_from(n).unwrap_or(u64::MAX).min(1 << 32);
    let limit = (1u64 << 32) - ((1u64 << 32) % n64);
    let mut x = 0u64;
    for _ in 0..MAX_REJECTIONS {
        x = u64::from(rng.next_u32());
        if x < limit {
            break;
        }
    }
    usize::try_from(x % n64).unwrap_or(0)
}

/// One candidate of `format`: every character uniform over the alphabet.
fn candidate<R: CryptoRng + ?Sized>(format: PinFormat, rng: &mut R) -> Zeroizing<String> {
    let symbols = format.alphabet().as_bytes();
    let mut s = Zeroizing::new(String::with_capacity(format.len()));
    for _ in 0..format.len() {
        if let Some(&c) = symbols.get(uniform_index(symbols.len(), rng)) {
            s.push(char::from(c));
        }
    }
    s
}

/// Whether `s`, a PIN of `format`, is trivial; for 16 characters, also either half.
fn is_trivial_for(format: PinFormat, s: &str) -> bool {
    if is_trivial(s) {
        return true;
    }
    match format {
        PinFormat::InpsIssued16 => match s.split_at_checked(s.len() / 2) {
            Some((first, second)) => is_trivial(first) || is_trivial(second),
            None => true,
        },
        PinFormat::NoipaDigits5 | PinFormat::InpsInUse8 => false,
    }
}

/// A PIN for each format that is not trivial; see [`generate`] for when it is used.
fn fallback(format: PinFormat) -> &'static str {
    match format {
        PinFormat::NoipaDigits5 => "60318",
        PinFormat::InpsInUse8 => "R7KX2MQ9",
        PinFormat::InpsIssued16 => "R7KX2MQ9H4WC8TNF",
    }
}

/// Generates a uniformly random, non-trivial PIN of `format` from `rng`.
///
/// Each character is uniform over the alphabet ([`PinFormat::alphabet`]); a
/// candidate that [`is_trivial`] (for 16 characters: whose whole or either
/// half is trivial) is thrown away and a fresh one drawn, which keeps the
/// result uniform over the non-trivial PINs.
///
/// With a working `CryptoRng`, 1,000 trivial candidates in a row never happen
/// (each is trivial with probability below 0.2%). A random source stuck on one
/// value would loop for ever; after 1,000 candidates this returns a fixed
/// non-trivial PIN instead of hanging (such a source yields a predictable PIN
/// whatever we do).
pub fn generate<R: CryptoRng + ?Sized>(format: PinFormat, rng: &mut R) -> Pin {
    for _ in 0..MAX_CANDIDATES {
        let mut s = candidate(format, rng);
        if s.len() == format.len() && !is_trivial_for(format, &s) {
            return Pin::from_string(std::mem::take(&mut *s));
        }
    }
    Pin::from_string(fallback(format).to_owned())
}

/// Whether `s` is too easy to guess. Letters are compared case-insensitively.
///
/// A string is trivial when, taken as a whole, it is:
///
/// 1. **a repetition**: all characters equal (`00000`, `AAAAAAAA`);
/// 2. **a pattern of period 2**: `12121`, `ABABABAB` (this includes rule 1);
/// 3. **a run**: consecutive symbols, going up or down, of `0123456789` or of
///    the INPS alphabet order [`INPS_ALPHABET`] (`12345`, `54321`, `23456789`,
///    `ABCDEFGH`, `6789ABCD`, `ZYXWVUTS`);
/// 4. **a keyboard row**: for 4 characters or more, consecutive keys, left to
///    right or right to left, of one row `1234567890`, `QWERTYUIOP`,
///    `ASDFGHJKL` or `ZXCVBNM` (`67890`, `09876`, `ASDFGHJK`).
///
/// Strings of fewer than 3 characters are always trivial (rule 2). Only the
/// whole string is matched: a PIN merely *containing* a run is fine. Dates and
/// years (`19840`, `20251`) are deliberately not refused: the rules stay small,
/// and of the 100,000 NoiPA PINs fewer than 200 are trivial.
#[must_use]
pub fn is_trivial(s: &str) -> bool {
    // The copies below hold a PIN: zeroized when dropped.
    let chars: Zeroizing<Vec<char>> =
        Zeroizing::new(s.chars().map(|c| c.to_ascii_uppercase()).collect());
    let has_period_2 = chars.iter().zip(chars.iter().skip(2)).all(|(a, b)| a == b);
    if has_period_2 {
        return true;
    }
    let upper: Zeroizing<String> = Zeroizing::new(chars.iter().collect());
    let reversed: Zeroizing<String> = Zeroizing::new(chars.iter().rev().collect());
    let inside = |seq: &str| seq.contains(upper.as_str()) || seq.contains(reversed.as_str());
    if inside(NOIPA_ALPHABET) || inside(INPS_ALPHABET) {
        return true;
    }
    chars.len() >= 4 && KEYBOARD_ROWS.iter().any(|row| inside(row))
}

/// Cuts what was typed down to the PIN text: refuses input over 64 bytes,
/// strips one trailing `"\n"` or `"\r\n"`, then surrounding ASCII white space.
fn clean(input: &str, too_long: PinInputError) -> Result<&str, PinInputError> {
    if input.len() > MAX_INPUT_LEN {
        return Err(too_long);
    }
    let s = input
        .strip_suffix("\r\n")
        .or_else(|| input.strip_suffix('\n'))
        .unwrap_or(input);
    let s = s.trim_matches(|c: char| c.is_ascii_whitespace());
    if s.is_empty() {
        Err(PinInputError::Empty)
    } else {
        Ok(s)
    }
}

/// Checks that `s` has the length and alphabet of `format`, upper-casing letters.
fn check(format: PinFormat, s: &str) -> Result<Pin, PinInputError> {
    let found = s.chars().count();
    if found != format.len() {
        return Err(PinInputError::Length {
            expected: format.len(),
            found,
        });
    }
    let alphabet = format.alphabet();
    let mut pin = Zeroizing::new(String::with_capacity(format.len()));
    for (i, c) in s.chars().enumerate() {
        let c = c.to_ascii_uppercase();
        if !c.is_ascii() || !alphabet.contains(c) {
            return Err(PinInputError::Character {
                position: i.saturating_add(1),
                expected: format.char_class(),
            });
        }
        pin.push(c);
    }
    Ok(Pin::from_string(std::mem::take(&mut *pin)))
}

/// Parses PIN input to compare against a stored PIN of `format` (no triviality check).
///
/// One trailing `"\n"` or `"\r\n"` and surrounding ASCII white space are
/// removed; the rest must be exactly `format.len()` characters of the format's
/// alphabet. INPS letters may be typed in lower case. Input longer than 64
/// bytes is refused without being examined.
///
/// # Errors
/// [`PinInputError`] when the text cannot be a PIN of that format:
/// [`Empty`](PinInputError::Empty), [`Length`](PinInputError::Length), or
/// [`Character`](PinInputError::Character) for the first character outside the
/// alphabet (a digit for NoiPA; for INPS, `O`, `I`, `0` and `1` are never used).
pub fn parse_input(format: PinFormat, input: &str) -> Result<Pin, PinInputError> {
    let too_long = PinInputError::Length {
        expected: format.len(),
        found: input.len(),
    };
    check(format, clean(input, too_long)?)
}

/// Parses an INPS PIN of either length: 16 characters ([`PinFormat::InpsIssued16`],
/// just issued) or 8 ([`PinFormat::InpsInUse8`]), cleaned as in [`parse_input`].
///
/// # Errors
/// [`PinInputError::InpsLength`] when the text has neither 8 nor 16 characters;
/// otherwise the errors of [`parse_input`].
pub fn parse_any_inps(input: &str) -> Result<(PinFormat, Pin), PinInputError> {
    let s = clean(input, PinInputError::InpsLength { found: input.len() })?;
    let format = match s.chars().count() {
        16 => PinFormat::InpsIssued16,
        8 => PinFormat::InpsInUse8,
        found => return Err(PinInputError::InpsLength { found }),
    };
    Ok((format, check(format, s)?))
}

/// Parses a PIN chosen by the person (INPS-3): like [`parse_input`] plus refusal of trivial values.
///
/// # Errors
/// [`PinInputError`] says why the PIN is not acceptable: the errors of
/// [`parse_input`], or [`PinInputError::Trivial`] when it [`is_trivial`] (for
/// 16 characters: the whole or either half).
pub fn parse_chosen(format: PinFormat, input: &str) -> Result<Pin, PinInputError> {
    let pin = parse_input(format, input)?;
    if is_trivial_for(format, pin.expose_secret()) {
        return Err(PinInputError::Trivial);
    }
    Ok(pin)
}

/// Splits a 16-character PIN into its two halves of 8 (first, second).
///
/// In general the cut is at half the length (the first half is the shorter
/// one when the length is odd); it never panics, and a PIN that could not be
/// cut there (impossible for parsed or generated PINs, which are ASCII) comes
/// back whole as the first part with an empty second part.
#[must_use]
pub fn split_halves(pin: &Pin) -> (Pin, Pin) {
    let s = pin.expose_secret();
    let (first, second) = s.split_at_checked(s.len() / 2).unwrap_or((s, ""));
    (
        Pin::from_string(first.to_owned()),
        Pin::from_string(second.to_owned()),
    )
}

/// Joins two halves into one PIN.
#[must_use]
pub fn join_halves(first: &Pin, second: &Pin) -> Pin {
    let mut s = String::with_capacity(first.len().saturating_add(second.len()));
    s.push_str(first.expose_secret());
    s.push_str(second.expose_secret());
    Pin::from_string(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    const ALL: [PinFormat; 3] = [
        PinFormat::NoipaDigits5,
        PinFormat::InpsIssued16,
        PinFormat::InpsInUse8,
    ];

    fn rng(seed: u64) -> ChaCha20Rng {
        ChaCha20Rng::seed_from_u64(seed)
    }

    // ---- alphabets ----

    #[test]
    fn inps_alphabet_has_32_unambiguous_symbols() {
        // rule: INPS-3 (alphabet choice documented on INPS_ALPHABET)
        assert_eq!(INPS_ALPHABET.len(), 32);
        for c in ['0', '1', 'O', 'I'] {
            assert!(!INPS_ALPHABET.contains(c), "{c}");
        }
        let mut sorted: Vec<char> = INPS_ALPHABET.chars().collect();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), 32, "no duplicates, already in ASCII order");
        assert_eq!(sorted.iter().collect::<String>(), INPS_ALPHABET);
        assert!(
            INPS_ALPHABET
                .chars()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        );
    }

    #[test]
    fn formats_have_their_lengths_and_alphabets() {
        // rule: NOIPA-1, INPS-3
        assert_eq!(PinFormat::NoipaDigits5.len(), 5);
        assert_eq!(PinFormat::InpsIssued16.len(), 16);
        assert_eq!(PinFormat::InpsInUse8.len(), 8);
        assert_eq!(PinFormat::NoipaDigits5.alphabet(), "0123456789");
        assert_eq!(PinFormat::InpsInUse8.alphabet(), INPS_ALPHABET);
        assert_eq!(PinFormat::InpsIssued16.alphabet(), INPS_ALPHABET);
    }

    // ---- uniform_index ----

    #[test]
    fn uniform_index_stays_in_range() {
        let mut r = rng(1);
        for n in [2usize, 3, 10, 32, 200, 255, 256, 257, 1000, 1 << 20] {
            for _ in 0..500 {
                assert!(uniform_index(n, &mut r) < n, "n = {n}");
            }
        }
        assert_eq!(uniform_index(0, &mut r), 0);
        assert_eq!(uniform_index(1, &mut r), 0);
    }

    #[test]
    fn uniform_index_covers_every_value() {
        let mut r = rng(2);
        for n in [10usize, 32, 300] {
            let mut seen = vec![false; n];
            for _ in 0..20_000 {
                seen[uniform_index(n, &mut r)] = true;
            }
            assert!(seen.iter().all(|&s| s), "n = {n}");
        }
    }

    /// An RNG whose every byte is 0xFF: always rejected for 10 symbols.
    struct Stuck(u8);
    impl rand_core::TryRng for Stuck {
        type Error = core::convert::Infallible;
        fn try_next_u32(&mut self) -> Result<u32, Self::Error> {
            Ok(u32::from_le_bytes([self.0; 4]))
        }
        fn try_next_u64(&mut self) -> Result<u64, Self::Error> {
            Ok(u64::from_le_bytes([self.0; 8]))
        }
        fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Self::Error> {
            dst.fill(self.0);
            Ok(())
        }
    }
    impl rand_core::TryCryptoRng for Stuck {}

    #[test]
    fn a_stuck_random_source_does_not_hang() {
        assert!(uniform_index(10, &mut Stuck(0xFF)) < 10);
        assert!(uniform_index(1000, &mut Stuck(0xFF)) < 1000);
        for format in ALL {
            for byte in [0x00, 0xFF, 0x42] {
                let pin = generate(format, &mut Stuck(byte));
                assert_eq!(pin.len(), format.len());
                assert!(!is_trivial_for(format, pin.expose_secret()));
            }
        }
    }

    #[test]
    fn fallbacks_are_well_formed_and_not_trivial() {
        for format in ALL {
            let pin = parse_chosen(format, fallback(format)).unwrap();
            assert_eq!(pin.expose_secret(), fallback(format));
        }
    }

    // ---- generation ----

    #[test]
    fn generation_is_deterministic_for_a_seed() {
        for format in ALL {
            let a = generate(format, &mut rng(42));
            let b = generate(format, &mut rng(42));
            let c = generate(format, &mut rng(43));
            assert_eq!(a.expose_secret(), b.expose_secret());
            assert_ne!(a.expose_secret(), c.expose_secret());
        }
    }

    #[test]
    fn generated_pins_are_well_formed_and_never_trivial() {
        // rule: NOIPA-1, INPS-3
        let mut r = rng(7);
        for format in ALL {
            for _ in 0..10_000 {
                let pin = generate(format, &mut r);
                let s = pin.expose_secret();
                assert_eq!(s.len(), format.len());
                assert!(
                    s.chars().all(|c| format.alphabet().contains(c)),
                    "{format:?}"
                );
                assert!(!is_trivial(s), "{format:?}");
                if format == PinFormat::InpsIssued16 {
                    let (first, second) = split_halves(&pin);
                    assert!(!is_trivial(first.expose_secret()));
                    assert!(!is_trivial(second.expose_secret()));
                }
                // What we generate, a person can type back, and could have chosen.
                assert_eq!(parse_input(format, s).unwrap().expose_secret(), s);
                assert!(parse_chosen(format, s).is_ok());
            }
        }
    }

    /// Pearson's chi-square of `counts` against a uniform distribution.
    fn chi_square(counts: &[u32]) -> f64 {
        let total: u32 = counts.iter().sum();
        let expected = f64::from(total) / counts.len() as f64;
        counts
            .iter()
            .map(|&c| (f64::from(c) - expected).powi(2) / expected)
            .sum()
    }

    #[test]
    fn generation_is_uniform_per_position() {
        // Fixed seeds: deterministic, never flaky. Bounds are generous: for k
        // symbols the statistic has k-1 degrees of freedom, mean k-1 and
        // standard deviation about sqrt(2(k-1)); we allow about 6 of those.
        let draws = 20_000;
        for (format, bound) in [
            (PinFormat::NoipaDigits5, 35.0),
            (PinFormat::InpsInUse8, 80.0),
            (PinFormat::InpsIssued16, 80.0),
        ] {
            let alphabet: Vec<char> = format.alphabet().chars().collect();
            let mut counts = vec![vec![0u32; alphabet.len()]; format.len()];
            let mut r = rng(2024);
            for _ in 0..draws {
                let pin = generate(format, &mut r);
                for (pos, c) in pin.expose_secret().chars().enumerate() {
                    let idx = alphabet.iter().position(|&a| a == c).unwrap();
                    counts[pos][idx] += 1;
                }
            }
            for (pos, row) in counts.iter().enumerate() {
                let chi = chi_square(row);
                assert!(chi < bound, "{format:?} position {pos}: chi-square {chi}");
            }
        }
    }

    // ---- triviality ----

    #[test]
    fn trivial_examples() {
        for s in [
            "", "7", "42", "00000", "99999", "AAAAAAAA", // repetitions
            "12121", "90909", "ABABABAB", "2Z2Z2Z2Z", // period 2
            "12345", "56789", "54321", "98765", "01234", // digit runs
            "23456789", "98765432", "ABCDEFGH", "HGFEDCBA", "6789ABCD", "STUVWXYZ", "ZYXWVUTS",
            "GHJKLMNP", // INPS-order runs (no I, no O)
            "67890", "09876", "QWERTYUI", "ASDFGHJK", "KJHGFDSA", "ZXCVBNM", "POIUYTRE",
            "abcdefgh", "asdfghjk", "ababab", // case-insensitive
        ] {
            assert!(is_trivial(s), "{s:?} should be trivial");
        }
    }

    #[test]
    fn non_trivial_examples() {
        for s in [
            "48213", "19840", "20251", "12346", "13579", "11112", "12312", "90123", "R7KX2MQ9",
            "ABCDEFGJ", "QWERTYUZ", "2346789A", "ABCABCAB", "7K4MZQ9X", "QWE",
        ] {
            assert!(!is_trivial(s), "{s:?} should not be trivial");
        }
        // Keyboard rows count from 4 characters; runs of the alphabets from any length.
        assert!(is_trivial("QWER"));
        assert!(is_trivial("ABC"));
    }

    #[test]
    fn almost_all_noipa_pins_are_acceptable() {
        // rule: NOIPA-1
        let trivial = (0..100_000u32)
            .filter(|n| is_trivial(&format!("{n:05}")))
            .count();
        assert!(
            trivial >= 100,
            "10 repetitions + 90 other period-2 patterns at least"
        );
        assert!(100_000 - trivial > 99_000, "{trivial} trivial NoiPA PINs");
    }

    #[test]
    fn sixteen_character_pins_need_non_trivial_halves() {
        // rule: INPS-3, INPS-6 (each half travels alone)
        let whole_ok = "R7KX2MQ9ABCDEFGH";
        assert!(!is_trivial(whole_ok));
        assert!(is_trivial_for(PinFormat::InpsIssued16, whole_ok));
        assert_eq!(
            parse_chosen(PinFormat::InpsIssued16, whole_ok).unwrap_err(),
            PinInputError::Trivial
        );
        assert!(parse_input(PinFormat::InpsIssued16, whole_ok).is_ok());
        assert!(parse_chosen(PinFormat::InpsIssued16, "R7KX2MQ9H4WC8TNF").is_ok());
    }

    // ---- parsing ----

    #[test]
    fn parse_accepts_well_formed_input() {
        // rule: NOIPA-1
        assert_eq!(
            parse_input(PinFormat::NoipaDigits5, "48213")
                .unwrap()
                .expose_secret(),
            "48213"
        );
        assert_eq!(
            parse_input(PinFormat::NoipaDigits5, "  48213\r\n")
                .unwrap()
                .expose_secret(),
            "48213"
        );
        assert_eq!(
            parse_input(PinFormat::NoipaDigits5, "\t48213 \n")
                .unwrap()
                .expose_secret(),
            "48213"
        );
        // rule: INPS-3
        assert_eq!(
            parse_input(PinFormat::InpsInUse8, "r7kx2mq9\n")
                .unwrap()
                .expose_secret(),
            "R7KX2MQ9"
        );
        assert_eq!(
            parse_input(PinFormat::InpsIssued16, "R7KX2MQ9h4wc8tnf")
                .unwrap()
                .expose_secret(),
            "R7KX2MQ9H4WC8TNF"
        );
        // Triviality is not checked when verifying.
        assert!(parse_input(PinFormat::NoipaDigits5, "12345").is_ok());
    }

    #[test]
    fn parse_refuses_wrong_length() {
        assert_eq!(
            parse_input(PinFormat::NoipaDigits5, "4821").unwrap_err(),
            PinInputError::Length {
                expected: 5,
                found: 4
            }
        );
        assert_eq!(
            parse_input(PinFormat::InpsInUse8, "R7KX2MQ9H").unwrap_err(),
            PinInputError::Length {
                expected: 8,
                found: 9
            }
        );
        // Interior spaces are not removed.
        assert_eq!(
            parse_input(PinFormat::InpsIssued16, "R7KX2MQ9 H4WC8TNF").unwrap_err(),
            PinInputError::Length {
                expected: 16,
                found: 17
            }
        );
        // Only one trailing newline is stripped by rule; white space trimming does the rest.
        assert!(parse_input(PinFormat::NoipaDigits5, "48213\n\n").is_ok());
        // Length counts characters, not bytes.
        assert_eq!(
            parse_input(PinFormat::NoipaDigits5, "4821é").unwrap_err(),
            PinInputError::Character {
                position: 5,
                expected: CharClass::Digit
            }
        );
    }

    #[test]
    fn parse_refuses_overlong_input_without_examining_it() {
        let long = "1".repeat(65);
        assert_eq!(
            parse_input(PinFormat::NoipaDigits5, &long).unwrap_err(),
            PinInputError::Length {
                expected: 5,
                found: 65
            }
        );
        let long_ws = format!("{}48213", " ".repeat(60));
        assert_eq!(
            parse_input(PinFormat::NoipaDigits5, &long_ws).unwrap_err(),
            PinInputError::Length {
                expected: 5,
                found: 65
            }
        );
        assert_eq!(
            parse_any_inps(&long).unwrap_err(),
            PinInputError::InpsLength { found: 65 }
        );
        let exactly_64 = format!("{}48213", " ".repeat(59));
        assert!(parse_input(PinFormat::NoipaDigits5, &exactly_64).is_ok());
    }

    #[test]
    fn parse_refuses_empty_input() {
        for input in ["", " ", "\n", "\r\n", " \t \r\n"] {
            assert_eq!(
                parse_input(PinFormat::NoipaDigits5, input).unwrap_err(),
                PinInputError::Empty
            );
            assert_eq!(parse_any_inps(input).unwrap_err(), PinInputError::Empty);
        }
    }

    #[test]
    fn parse_refuses_wrong_characters_by_position_and_class() {
        assert_eq!(
            parse_input(PinFormat::NoipaDigits5, "48a13").unwrap_err(),
            PinInputError::Character {
                position: 3,
                expected: CharClass::Digit
            }
        );
        assert_eq!(
            parse_input(PinFormat::NoipaDigits5, "4821٣").unwrap_err(), // Arabic-Indic digit three
            PinInputError::Character {
                position: 5,
                expected: CharClass::Digit
            }
        );
        for (input, position) in [
            ("R7KX2MQ0", 8),
            ("O7KX2MQ9", 1),
            ("R7IX2MQ9", 3),
            ("R1KX2MQ9", 2),
            ("r7kx2mqo", 8),
        ] {
            assert_eq!(
                parse_input(PinFormat::InpsInUse8, input).unwrap_err(),
                PinInputError::Character {
                    position,
                    expected: CharClass::InpsAlphabet
                },
                "{input}"
            );
        }
        assert_eq!(
            parse_input(PinFormat::InpsInUse8, "R7KX-MQ9").unwrap_err(),
            PinInputError::Character {
                position: 5,
                expected: CharClass::InpsAlphabet
            }
        );
        assert_eq!(
            parse_input(PinFormat::InpsInUse8, "R7KXÄMQ9").unwrap_err(),
            PinInputError::Character {
                position: 5,
                expected: CharClass::InpsAlphabet
            }
        );
    }

    #[test]
    fn error_messages_explain_without_echoing_input() {
        let msg = parse_input(PinFormat::InpsInUse8, "R7KX2MQ0")
            .unwrap_err()
            .to_string();
        assert!(
            msg.starts_with("character 8 is not in the INPS alphabet"),
            "{msg}"
        );
        assert!(
            msg.contains("letters O and I and digits 0 and 1 are never used"),
            "{msg}"
        );
        assert!(!msg.contains("R7KX"), "{msg}");
        let msg = parse_input(PinFormat::NoipaDigits5, "48x13")
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "character 3 is not a digit (0-9)");
        let msg = parse_input(PinFormat::NoipaDigits5, "4821")
            .unwrap_err()
            .to_string();
        assert_eq!(msg, "a PIN here has 5 characters; 4 were given");
        assert_eq!(
            parse_chosen(PinFormat::NoipaDigits5, "11111")
                .unwrap_err()
                .to_string(),
            "this PIN is too easy to guess (a run, repetition or keyboard row); choose another"
        );
        assert_eq!(PinInputError::Empty.to_string(), "no PIN was given");
        let msg = parse_any_inps("ABC").unwrap_err().to_string();
        assert!(msg.contains("8 characters") && msg.contains("16"), "{msg}");
    }

    #[test]
    fn parse_any_inps_tells_the_two_lengths_apart() {
        // rule: INPS-3, INPS-4
        let (format, pin) = parse_any_inps("r7kx2mq9h4wc8tnf\r\n").unwrap();
        assert_eq!(format, PinFormat::InpsIssued16);
        assert_eq!(pin.expose_secret(), "R7KX2MQ9H4WC8TNF");
        let (format, pin) = parse_any_inps(" R7KX2MQ9 ").unwrap();
        assert_eq!(format, PinFormat::InpsInUse8);
        assert_eq!(pin.expose_secret(), "R7KX2MQ9");
        assert_eq!(
            parse_any_inps("R7KX2MQ9H").unwrap_err(),
            PinInputError::InpsLength { found: 9 }
        );
        assert_eq!(
            parse_any_inps("R7KX2MQ1").unwrap_err(),
            PinInputError::Character {
                position: 8,
                expected: CharClass::InpsAlphabet
            }
        );
    }

    #[test]
    fn parse_chosen_refuses_trivial_pins() {
        // rule: INPS-3 (a PIN chosen by the person)
        for (format, input) in [
            (PinFormat::NoipaDigits5, "12345"),
            (PinFormat::NoipaDigits5, "00000"),
            (PinFormat::NoipaDigits5, "67890"),
            (PinFormat::InpsInUse8, "abcdefgh"),
            (PinFormat::InpsInUse8, "ABABABAB"),
            (PinFormat::InpsInUse8, "23456789"),
            (PinFormat::InpsInUse8, "asdfghjk"),
        ] {
            assert_eq!(
                parse_chosen(format, input).unwrap_err(),
                PinInputError::Trivial,
                "{input}"
            );
        }
        assert_eq!(
            parse_chosen(PinFormat::NoipaDigits5, "48213")
                .unwrap()
                .expose_secret(),
            "48213"
        );
        assert_eq!(
            parse_chosen(PinFormat::InpsInUse8, "7k4mzq9x")
                .unwrap()
                .expose_secret(),
            "7K4MZQ9X"
        );
        // Format errors come before triviality.
        assert_eq!(
            parse_chosen(PinFormat::NoipaDigits5, "1234").unwrap_err(),
            PinInputError::Length {
                expected: 5,
                found: 4
            }
        );
    }

    // ---- halves ----

    #[test]
    fn halves_split_and_join() {
        // rule: INPS-6 (first 8 characters on one channel, last 8 on another)
        let pin = parse_input(PinFormat::InpsIssued16, "R7KX2MQ9H4WC8TNF").unwrap();
        let (first, second) = split_halves(&pin);
        assert_eq!(first.expose_secret(), "R7KX2MQ9");
        assert_eq!(second.expose_secret(), "H4WC8TNF");
        assert_eq!(
            join_halves(&first, &second).expose_secret(),
            "R7KX2MQ9H4WC8TNF"
        );
    }

    #[test]
    fn halves_never_panic() {
        let (a, b) = split_halves(&Pin::from_string(String::new()));
        assert!(a.is_empty() && b.is_empty());
        let (a, b) = split_halves(&Pin::from_string("ABC".to_owned()));
        assert_eq!((a.expose_secret(), b.expose_secret()), ("A", "BC"));
        // A cut inside a multi-byte character falls back to (whole, empty).
        let (a, b) = split_halves(&Pin::from_string("é".to_owned()));
        assert_eq!((a.expose_secret(), b.expose_secret()), ("é", ""));
        assert!(join_halves(&a, &b).expose_secret() == "é");
    }

    proptest! {
        #[test]
        fn parsing_never_panics(input in any::<String>()) {
            for format in ALL {
                let _ = parse_input(format, &input);
                let _ = parse_chosen(format, &input);
            }
            let _ = parse_any_inps(&input);
            let _ = is_trivial(&input);
        }

        #[test]
        fn parsing_never_panics_on_pin_like_input(input in "[ \t\r\n0-9A-Za-z\u{80}-\u{10FF}]{0,70}") {
            for format in ALL {
                if let Ok(pin) = parse_input(format, &input) {
                    prop_assert_eq!(pin.len(), format.len());
                    prop_assert!(pin.expose_secret().chars().all(|c| format.alphabet().contains(c)));
                }
            }
            if let Ok((format, pin)) = parse_any_inps(&input) {
                prop_assert_eq!(pin.len(), format.len());
            }
        }

        #[test]
        fn errors_never_contain_the_input(input in "[2-9A-HJ-NP-Z]{6,12}[01OI][2-9A-Z]{0,3}") {
            for format in ALL {
                if let Err(e) = parse_input(format, &input) {
                    let msg = e.to_string();
                    prop_assert!(!msg.contains(input.as_str()));
                    prop_assert!(!msg.contains(input.get(..4).unwrap_or_default()));
                }
            }
        }

        #[test]
        fn generated_pins_round_trip(seed in any::<u64>()) {
            for format in ALL {
                let pin = generate(format, &mut rng(seed));
                let parsed = parse_chosen(format, &pin.expose_secret().to_ascii_lowercase()).unwrap();
                prop_assert_eq!(parsed.expose_secret(), pin.expose_secret());
            }
        }
    }
}
