//! Values that cross a trust boundary, parsed once into types that cannot hold bad data.

pub mod destination;
mod email;
pub mod field;
mod member_status;
pub mod password;
mod person_name;
mod role;
pub mod schedule;
pub mod segment_rules;
pub mod text;

pub use email::{EmailAddress, EmailError, subscriber_digest, subscriber_hash};
pub use field::{FieldName, FieldType};
pub use member_status::MemberStatus;
pub use password::{NewPassword, PasswordError};
pub use person_name::PersonName;
pub use role::Role;

/// Why a value that was typed, uploaded or sent was not accepted, in words for the person
/// who sent it (naming the input, what is wrong and, where it helps, an example).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Invalid(String);

impl Invalid {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Several problems as one sentence list.
    pub fn join(all: &[Invalid]) -> String {
        all.iter()
            .map(Invalid::as_str)
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// The same words with a prefix, e.g. the row or condition they came from.
    pub fn within(self, prefix: &str) -> Self {
        Self(format!("{prefix}{}", self.0))
    }
}

impl PartialEq<&str> for Invalid {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl From<&str> for Invalid {
    fn from(message: &str) -> Self {
        Self(message.to_owned())
    }
}

impl From<String> for Invalid {
    fn from(message: String) -> Self {
        Self(message)
    }
}

impl From<Invalid> for String {
    fn from(invalid: Invalid) -> Self {
        invalid.0
    }
}
