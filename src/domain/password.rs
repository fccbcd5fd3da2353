//! A new password as the console accepts it. Debug never shows it.

use std::fmt;

pub const MIN_PASSWORD_CHARS: usize = 10;
pub const MAX_PASSWORD_CHARS: usize = 128;

/// A password someone chose: long enough, not absurdly long. Composition rules are
/// deliberately absent (NIST SP 800-63B): length is what makes a password strong.
#[derive(Clone)]
pub struct NewPassword(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("the password must have at least {MIN_PASSWORD_CHARS} characters")]
    TooShort,
    #[error("the password must have at most {MAX_PASSWORD_CHARS} characters")]
    TooLong,
}

impl NewPassword {
    pub fn parse(raw: String) -> Result<Self, PasswordError> {
        let chars = raw.chars().count();
        if chars < MIN_PASSWORD_CHARS || raw.trim().is_empty() {
            return Err(PasswordError::TooShort);
        }
        if chars > MAX_PASSWORD_CHARS {
            return Err(PasswordError::TooLong);
        }
        Ok(Self(raw))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for NewPassword {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NewPassword(redacted)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_passwords_are_refused() {
        assert_eq!(
            NewPassword::parse("short".into()).unwrap_err(),
            PasswordError::TooShort
        );
        assert_eq!(
            NewPassword::parse(" ".repeat(12)).unwrap_err(),
            PasswordError::TooShort
        );
        assert_eq!(
            NewPassword::parse("x".repeat(129)).unwrap_err(),
            PasswordError::TooLong
        );
        assert!(NewPassword::parse("correct horse battery".into()).is_ok());
    }

    #[test]
    fn debug_hides_the_password() {
        let password = NewPassword::parse("correct horse battery".into()).unwrap();
        assert!(!format!("{password:?}").contains("horse"));
    }
}
