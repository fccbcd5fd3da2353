//! export-destinations: a self-hosted console that exports segments of unified customer
//! profiles into Mailchimp audiences.

pub mod actions;
pub mod alerts;
pub mod api;
pub mod app;
pub mod auth;
pub mod background;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod connect;
pub mod crypto;
pub mod db;
pub mod domain;
pub mod export;
pub mod mailchimp;
pub mod matching;
pub mod memory;
pub mod metrics;
pub mod profiles;
pub mod sandbox;
pub mod schedule;
pub mod segments;
pub mod sources;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod web;

pub use app::App;
pub use config::Settings;
