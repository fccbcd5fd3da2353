//! What every export, clean-up and preview shares: the database, the secret key, the
//! Mailchimp client and the accounts' connection budgets, and a destination's way into its
//! Mailchimp account. How a run ends is said here too. The worker hands runs to
//! [`super::run`] and [`super::cleanup`].

use crate::crypto::SecretKey;
use crate::db::Db;
use crate::domain::destination::{AuthMethod, Target};
use crate::export::plan::Record;
use crate::mailchimp::client::{ApiError, Client, Connection, Credential, ErrorKind};
use crate::mailchimp::gateway::Gateway;
use crate::mailchimp::limiter::Limiters;
use crate::store::destinations::Destination;
use crate::store::results::MemberResult;
use crate::store::runs::RunStatus;

/// Every member this console manages carries this tag, so clean-ups touch only them.
pub const OWNERSHIP_TAG: &str = "export-destinations";

#[derive(Clone)]
pub struct Engine {
    pub db: Db,
    pub key: SecretKey,
    pub client: Client,
    pub limiters: Limiters,
    /// Where this process finds the built-in sandbox, for destinations on it.
    pub sandbox: SandboxApi,
    /// Destinations keep a webhook on their audience (MAILCHIMP_WEBHOOKS): where it calls.
    pub webhooks: Option<crate::export::webhooks::Hooks>,
    /// What runs read of their audiences, kept while fresh.
    pub fresh: crate::export::fresh::Fresh,
}

/// Where destinations on the built-in sandbox are reached from this process.
#[derive(Debug, Clone, Default)]
pub enum SandboxApi {
    /// Not a console (a command run beside one): at the address stored at set-up.
    #[default]
    AsStored,
    /// The console's sandbox is turned off.
    Off,
    /// The console's own sandbox, at its current address (which follows PUBLIC_URL and
    /// the port, whatever they were when the destination was set up).
    At(String),
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub status: RunStatus,
    pub message: Option<String>,
}

pub(crate) fn failure(message: impl Into<String>) -> Outcome {
    Outcome {
        status: RunStatus::Failure,
        message: Some(message.into()),
    }
}

/// A call failure that ends the run (the credential or the audience is unusable).
pub(crate) fn is_fatal(err: &ApiError) -> bool {
    matches!(
        err.kind,
        ErrorKind::Unauthorized | ErrorKind::Forbidden | ErrorKind::NotFound
    )
}

pub(crate) fn fatal_message(err: &ApiError) -> String {
    crate::mailchimp::refusal::Refusal::of(err, "", "").during_run()
}

impl Engine {
    pub fn connection(&self, destination: &Destination) -> anyhow::Result<Connection> {
        let stored = destination
            .credential
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("the destination is not authenticated"))?;
        let secret = self.key.open(&stored.sealed)?;
        let credential = match stored.method {
            AuthMethod::ApiKey => Credential::ApiKey(secret),
            AuthMethod::OAuth => Credential::OAuth(secret),
        };
        let stored = stored.api_base.clone();
        let api_base = match (&self.sandbox, destination.target) {
            (SandboxApi::At(base), Target::Sandbox) => base.clone(),
            (SandboxApi::Off, Target::Sandbox) => anyhow::bail!(
                "the destination is on the built-in sandbox, which is turned off (MAILCHIMP_SANDBOX=off)"
            ),
            _ => stored,
        };
        Ok(Connection {
            api_base,
            credential,
        })
    }

    /// The way into the destination's account for a page a person waits on (see
    /// [`Gateway::for_a_person`]).
    pub fn gateway_for_a_person(&self, destination: &Destination) -> anyhow::Result<Gateway> {
        Ok(Gateway::for_a_person(
            self.client.clone(),
            self.connection(destination)?,
            &self.limiters,
        ))
    }

    /// The typed way into the destination's Mailchimp account, within its connection budget.
    pub fn gateway(&self, destination: &Destination) -> anyhow::Result<Gateway> {
        Ok(Gateway::new(
            self.client.clone(),
            self.connection(destination)?,
            &self.limiters,
        ))
    }
}

pub(crate) fn result_of(
    record: &Record,
    outcome: &'static str,
    title: &str,
    detail: &str,
) -> MemberResult {
    MemberResult {
        customer_id: record.customer_id.clone(),
        email: record.email.clone(),
        outcome,
        title: title.to_owned(),
        detail: detail.to_owned(),
    }
}
