//! Black-box tests of the console over HTTP, on SQLite by default and on PostgreSQL when
//! TEST_DATABASE_URL is set.

mod browser;
mod csrf;
mod first_admin;
mod health;
mod helpers;
mod roles;
mod sandbox;
mod security;
mod sign_in;
mod users;
