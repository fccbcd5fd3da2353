//! Who is asking: password hashing, typed session data, the signed-in user, roles and CSRF.

pub mod csrf;
pub mod current_user;
pub mod password;
pub mod session;
pub mod session_store;
pub mod throttle;

pub use current_user::{CurrentUser, require_administrator, require_contributor, require_sign_in};
pub use password::PasswordHasher;
