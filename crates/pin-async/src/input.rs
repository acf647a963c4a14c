//! [`PinInput`]: a PIN as typed by a person, owned so that it can move to the pool's thread.

use zeroize::Zeroizing;

/// A PIN (or half of one) as a person typed it, not yet checked: owned, so that it moves
/// into the operation that runs on the pool's thread, and wiped when that operation drops
/// it. `Debug` is redacted; there is no `Clone`, `Display` or `Serialize`.
///
/// Build it from a `String` (the buffer is taken over, not copied), from a
/// `Zeroizing<String>`, or from a `&str` (copied into a buffer wiped on drop; the caller's
/// own copy is the caller's). It can also be deserialized (e.g. from a JSON request body);
/// the bytes of the body itself belong to the web stack and are not wiped.
pub struct PinInput(Zeroizing<String>);

impl PinInput {
    /// Wraps `text`, taking over its buffer.
    #[must_use]
    pub fn new(text: String) -> Self {
        Self(Zeroizing::new(text))
    }

    /// The one way to read the secret.
    #[must_use]
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl From<String> for PinInput {
    fn from(text: String) -> Self {
        Self::new(text)
    }
}

impl From<&str> for PinInput {
    fn from(text: &str) -> Self {
        Self::new(text.to_owned())
    }
}

impl From<Zeroizing<String>> for PinInput {
    fn from(text: Zeroizing<String>) -> Self {
        Self(text)
    }
}

impl std::fmt::Debug for PinInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self(_secret) = self;
        f.debug_struct("PinInput").finish_non_exhaustive()
    }
}

impl<'de> serde::Deserialize<'de> for PinInput {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Self::new)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let pin = PinInput::from("7K4MZQ9X");
        for debug in [format!("{pin:?}"), format!("{pin:#?}")] {
            assert!(!debug.contains("7K4M"), "{debug}");
            assert!(debug.starts_with("PinInput"), "{debug}");
        }
        assert_eq!(pin.expose_secret(), "7K4MZQ9X");
    }

    #[test]
    fn built_from_strings_and_json() {
        assert_eq!(
            PinInput::from(String::from("48213")).expose_secret(),
            "48213"
        );
        assert_eq!(
            PinInput::from(Zeroizing::new(String::from("48213"))).expose_secret(),
            "48213"
        );
        let json: PinInput = serde_json::from_str("\"48213\"").unwrap();
        assert_eq!(json.expose_secret(), "48213");
        assert!(serde_json::from_str::<PinInput>("48213").is_err());
    }

    #[test]
    fn a_string_is_taken_over_not_copied() {
        let text = String::from("48213");
        let at = text.as_ptr();
        let pin = PinInput::from(text);
        assert_eq!(
            pin.expose_secret().as_ptr(),
            at,
            "the same buffer, wiped on drop"
        );
    }
}
