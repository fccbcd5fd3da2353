//! export-destinations: a self-hosted console that exports segments of unified customer
//! profiles into Mailchimp audiences.
//!
//! The layers, top down: `web` (pages), `api` (JSON), `commands` and `schedule` take requests
//! and call `actions`, where each thing a person can do is written once; `actions` calls the
//! export engine (`export`), profiles, segments and sources; those call `mailchimp` (every
//! Marketing API call goes through its gateway) and `store` (the console's tables); `domain`
//! holds the types every layer parses into. Nothing calls back up.
//!
//! The path of one export, a file a step:
//! 1. `web/destinations/runs.rs` (the Export button), `api/destinations.rs`, `commands.rs` or
//!    `schedule.rs` ask `actions/exports.rs` to queue it (a first export with problems asks first).
//! 2. `store/runs.rs` records the run; `export/worker.rs` claims it under a lease and hands
//!    it to `export/run.rs` (a removal's clean-up to `export/cleanup.rs`).
//! 3. `export/run.rs` makes the small reads (`export/drift.rs`, merge fields, tags), opens the
//!    plan (`export/plan.rs`, or only what changed: `export/changes.rs`) and loads the ledger's
//!    index (`export/ledger_index.rs`).
//! 4. `export/pipeline.rs` sorts each member by `export/decide.rs` (the decision a preview,
//!    `export/preview.rs`, counts too) and sends batches through `mailchimp/gateway.rs`.
//! 5. `export/pipeline/answers.rs` records each answer: ledger rows (`store/ledger.rs`),
//!    per-member results and counts, in one transaction.

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
pub mod live;
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
