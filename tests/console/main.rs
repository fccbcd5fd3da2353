//! Black-box tests of the console over HTTP, on SQLite by default and on PostgreSQL when
//! TEST_DATABASE_URL is set.

mod account;
mod api;
mod api_description;
mod api_refusals;
mod api_tokens;
mod authenticate;
mod browser;
mod changes;
mod crash;
mod csrf;
mod destinations;
mod destinations_edit;
mod drift;
mod export_guards;
mod export_runs;
mod exports;
mod first_admin;
mod hardening;
mod health;
mod helpers;
mod oauth_fake_mailchimp;
mod profiles;
mod reach;
mod removal;
mod retries;
mod roles;
mod sandbox;
mod scale;
mod schedule;
mod security;
mod segments;
mod sign_in;
mod users;
mod wizard;
mod world;
