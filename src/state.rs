//! What every request handler shares: the database, the key, the settings and the ways to
//! Mailchimp. A module of its own so that handlers depend on it, not on the application's
//! assembly (which depends on them).

use std::sync::Arc;

use url::Url;

use crate::auth::PasswordHasher;
use crate::config::Settings;
use crate::crypto::SecretKey;
use crate::db::Db;
use crate::mailchimp::{self, Reach};
use crate::sandbox::Sandbox;

/// Shared by every handler; cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub db: Db,
    pub hasher: PasswordHasher,
    pub secret_key: SecretKey,
    pub settings: Arc<Settings>,
    pub public_url: Url,
    pub mailchimp: Reach,
    /// Calls to Mailchimp (or the sandbox) over HTTP.
    pub mailchimp_client: mailchimp::client::Client,
    /// The built-in sandbox, when it is on (MAILCHIMP_SANDBOX).
    pub sandbox: Option<Sandbox>,
    /// Executes export runs (the worker in this process uses the same engine).
    pub engine: crate::export::Engine,
    /// Sends failure alerts (in the background, and tests from the Notifications page).
    pub alerts: crate::alerts::Sender,
    /// Where `GET /metrics` is served when it has an address of its own.
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Reads database and CSV sources (pages, the API and the schedule share it).
    pub sources: crate::sources::Sources,
}
