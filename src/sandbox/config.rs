//! How a sandbox behaves: its limits, faults, accounts and where it keeps its state.

use std::path::PathBuf;
use std::time::Duration;

use crate::sandbox::store::OAuthClient;

/// How the sandbox behaves; the defaults are an ideal, instant Mailchimp.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// Requests in flight per credential before 429 (Mailchimp: 10).
    pub max_connections: usize,
    /// Refuse calls past the connection limit (and injected throttling faults) with a bare
    /// 403 instead of 429: no problem document, an empty body or a proxy's HTML page, as
    /// Mailchimp has answered under heavy load.
    pub throttle_as_bare_403: bool,
    /// Modelled time of every API call.
    pub latency: Duration,
    /// Modelled extra time per member in a batch call.
    pub per_member: Duration,
    /// Share of API calls that fail (500, 503, 429) or hang.
    pub fault_rate: f64,
    /// How long a hanging call holds its response (past the client's timeout).
    pub hang: Duration,
    /// Seeds audience ids and the fault sequence.
    pub seed: u64,
    /// Data centre named in API keys and metadata.
    pub dc: String,
    /// API keys of the default account.
    pub api_keys: Vec<String>,
    /// OAuth apps allowed to ask for access.
    pub clients: Vec<OAuthClient>,
    /// Where the state is kept between runs (None: in memory only).
    pub state_file: Option<PathBuf>,
    /// How long an OAuth code can be exchanged (Mailchimp's are short-lived).
    pub code_lifetime: Duration,
    /// Where the pages' way back leads (the console that mounts the sandbox), if anywhere.
    pub back_link: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            max_connections: 10,
            throttle_as_bare_403: false,
            latency: Duration::ZERO,
            per_member: Duration::ZERO,
            fault_rate: 0.0,
            hang: Duration::from_secs(130),
            seed: 1,
            dc: "us1".into(),
            api_keys: Vec::new(),
            clients: Vec::new(),
            state_file: None,
            code_lifetime: Duration::from_secs(60),
            back_link: None,
        }
    }
}
