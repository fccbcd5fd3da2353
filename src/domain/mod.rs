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
