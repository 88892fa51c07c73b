//! Release names: the `share-button` in `/api/v1/assets/share-button` and
//! `/widgets/share-button/button.js`.
//!
//! A name travels inside URLs, file names and database keys, so we allow only characters that
//! mean the same thing everywhere: lowercase ASCII letters, digits, `-`, `_` and `.`. It must
//! start with a letter or digit (so it is never `.`, `..`, a hidden file or an option such as
//! `-rf`) and may not hold `..` anywhere. Lowercase only, so two names that differ by case on a
//! case-insensitive file system or in a hand-typed URL cannot name two different releases.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a string is not a [`ReleaseName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is the empty string.
    #[error("a release name cannot be empty")]
    Empty,
    /// The name is longer than [`ReleaseName::MAX_LEN`] bytes.
    #[error("a release name is at most {max} characters, got {0}", max = ReleaseName::MAX_LEN)]
    TooLong(usize),
    /// The first character is `-`, `_` or `.`.
    #[error("a release name must start with a lowercase letter or a digit, not {0:?}")]
    BadStart(char),
    /// A character outside `a-z`, `0-9`, `-`, `_`, `.` (uppercase letters included).
    #[error("a release name may hold only a-z, 0-9, '-', '_' and '.', not {0:?}")]
    BadCharacter(char),
    /// The name holds `..`.
    #[error("a release name may not hold \"..\"")]
    DotDot,
}

/// A validated release name (see the module docs for the rules).
///
/// ```
/// use swarmcdn_proto::manifest::ReleaseName;
///
/// let name: ReleaseName = "share-button".parse()?;
/// assert_eq!(name.as_str(), "share-button");
/// assert!("../x".parse::<ReleaseName>().is_err());
/// assert!("Share".parse::<ReleaseName>().is_err());
/// # Ok::<(), swarmcdn_proto::manifest::NameError>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ReleaseName(String);

impl ReleaseName {
    /// The longest name accepted, in bytes (every accepted character is one byte).
    pub const MAX_LEN: usize = 64;

    /// Validates `name`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        check(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

fn allowed(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.')
}

fn check(name: &str) -> Result<(), NameError> {
    let first = name.chars().next().ok_or(NameError::Empty)?;
    if name.len() > ReleaseName::MAX_LEN {
        return Err(NameError::TooLong(name.len()));
    }
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(NameError::BadCharacter(bad));
    }
    if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
        return Err(NameError::BadStart(first));
    }
    if name.contains("..") {
        return Err(NameError::DotDot);
    }
    Ok(())
}

impl fmt::Display for ReleaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ReleaseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ReleaseName({})", self.0)
    }
}

impl FromStr for ReleaseName {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for ReleaseName {
    type Error = NameError;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        check(&s)?;
        Ok(Self(s))
    }
}

impl TryFrom<&str> for ReleaseName {
    type Error = NameError;

    fn try_from(s: &str) -> Result<Self, Self::Error> {
        Self::new(s)
    }
}

impl AsRef<str> for ReleaseName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl Serialize for ReleaseName {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ReleaseName {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::try_from(text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_ordinary_names() {
        for good in [
            "share-button",
            "a",
            "0",
            "widget_2.1",
            "x.y-z_9",
            &"a".repeat(64),
        ] {
            let name = ReleaseName::new(good).unwrap();
            assert_eq!(name.as_str(), good);
            assert_eq!(name.to_string(), good);
        }
    }

    #[test]
    fn rejects_each_rule() {
        assert_eq!(ReleaseName::new(""), Err(NameError::Empty));
        assert_eq!(
            ReleaseName::new(&"a".repeat(65)),
            Err(NameError::TooLong(65))
        );
        assert_eq!(ReleaseName::new("../x"), Err(NameError::BadCharacter('/')));
        assert_eq!(ReleaseName::new("..x"), Err(NameError::BadStart('.')));
        assert_eq!(ReleaseName::new("a..b"), Err(NameError::DotDot));
        assert_eq!(ReleaseName::new("a.."), Err(NameError::DotDot));
        assert_eq!(ReleaseName::new("Share"), Err(NameError::BadCharacter('S')));
        assert_eq!(ReleaseName::new("-rf"), Err(NameError::BadStart('-')));
        assert_eq!(ReleaseName::new("_x"), Err(NameError::BadStart('_')));
        assert_eq!(ReleaseName::new("a b"), Err(NameError::BadCharacter(' ')));
        assert_eq!(ReleaseName::new("a%2f"), Err(NameError::BadCharacter('%')));
        assert_eq!(ReleaseName::new("é"), Err(NameError::BadCharacter('é')));
        assert_eq!(ReleaseName::new("a\0"), Err(NameError::BadCharacter('\0')));
    }

    #[test]
    fn serde_validates() {
        let name = ReleaseName::new("share-button").unwrap();
        let json = serde_json::to_string(&name).unwrap();
        assert_eq!(json, "\"share-button\"");
        assert_eq!(serde_json::from_str::<ReleaseName>(&json).unwrap(), name);
        for bad in ["\"../x\"", "\"UPPER\"", "\"\"", "42"] {
            assert!(serde_json::from_str::<ReleaseName>(bad).is_err(), "{bad}");
        }
        let long = format!("\"{}\"", "a".repeat(65));
        assert!(serde_json::from_str::<ReleaseName>(&long).is_err());
    }

    /// Names that follow the rules, for property tests across the manifest module.
    pub(crate) fn arb_name() -> impl Strategy<Value = ReleaseName> {
        "[a-z0-9][a-z0-9._-]{0,63}".prop_filter_map("no ..", |s| ReleaseName::new(&s).ok())
    }

    proptest! {
        #[test]
        fn parse_display_is_identity(name in arb_name()) {
            prop_assert_eq!(name.to_string().parse::<ReleaseName>(), Ok(name));
        }

        #[test]
        fn accepted_names_follow_the_rules(s in "[ -~]{0,70}") {
            if let Ok(name) = ReleaseName::new(&s) {
                let text = name.as_str();
                prop_assert!(!text.is_empty() && text.len() <= 64);
                prop_assert!(!text.contains(".."));
                prop_assert!(text.chars().all(allowed));
                prop_assert!(text.starts_with(|c: char| c.is_ascii_alphanumeric()));
            }
        }
    }
}
