//! A person's name as shown in the console.

use super::Invalid;
use std::fmt;

/// 1 to 100 characters, trimmed, in NFC, no invisible characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonName(String);

impl PersonName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        super::text::clean_name(raw, 100)
            .map(Self)
            .map_err(|err| match err {
                super::text::NameError::Empty => "the name is required".into(),
                super::text::NameError::TooLong { .. } => {
                    "the name must have at most 100 characters".into()
                }
                err => format!("the name is not accepted: {err}").into(),
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(PersonName::parse("  Ada  ").unwrap().as_str(), "Ada");
        assert!(PersonName::parse("").is_err());
        assert!(PersonName::parse(&"x".repeat(101)).is_err());
        assert!(PersonName::parse("a\u{7}b").is_err());
        assert!(PersonName::parse(&"é".repeat(100)).is_ok());
    }
}
