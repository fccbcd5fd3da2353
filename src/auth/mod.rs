//! Who is asking: password hashing, password-check throttling, typed session data and the
//! session store. The request-side checks (the signed-in user, roles, CSRF) are under `web`.

pub mod password;
pub mod session;
pub mod session_store;
pub mod throttle;

pub use password::PasswordHasher;
