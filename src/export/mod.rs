//! The export engine: plan (segments → member records, bad rows reported), diff against the
//! ledger, execute within Mailchimp's limits (batch upserts that never change an existing
//! member's status, with tag adds and removals overlapping them), with durable progress and a worker that
//! claims runs under a lease.

pub mod changes;
mod cleanup;
mod decide;
pub mod drift;
mod engine;
pub mod forget;
pub mod fresh;
mod ledger_index;
mod pipeline;
mod plan;
pub mod preview;
mod run;
pub mod webhooks;
pub mod worker;

pub use crate::mailchimp::limiter::Limiters;
pub use engine::{Engine, OWNERSHIP_TAG, SandboxApi};
pub use plan::{PlanReader, Record};
