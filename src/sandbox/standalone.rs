//! `export-destinations sandbox`: the sandbox as a server of its own, for Mailchimp's
//! client libraries, tests and benchmarks.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::TcpListener;
use url::Url;

use crate::sandbox::config::SandboxConfig;
use crate::sandbox::state::Sandbox;
use crate::sandbox::store::{DEFAULT_ACCOUNT, OAuthClient};

#[derive(Debug, Clone, clap::Args)]
pub struct SandboxArgs {
    /// Address and port to listen on.
    #[arg(long, env = "SANDBOX_BIND", default_value = "127.0.0.1:9090")]
    pub bind: SocketAddr,
    /// The sandbox's external URL (default: http:// + the bound address).
    #[arg(long, env = "SANDBOX_PUBLIC_URL")]
    pub public_url: Option<Url>,
    /// An API key (`<32 hex>-<dc>`) of the default account; repeat for more. None: one is made.
    #[arg(long = "api-key", env = "SANDBOX_API_KEYS", value_delimiter = ',')]
    pub api_keys: Vec<String>,
    /// An OAuth app allowed to connect, as CLIENT_ID:CLIENT_SECRET; repeat for more.
    #[arg(
        long = "oauth-client",
        env = "SANDBOX_OAUTH_CLIENTS",
        value_delimiter = ','
    )]
    pub oauth_clients: Vec<String>,
    /// Requests in flight per credential before 429.
    #[arg(long, env = "SANDBOX_MAX_CONNECTIONS", default_value_t = 10)]
    pub max_connections: usize,
    /// Refuse calls past the connection limit with a bare 403 (no problem document) instead
    /// of 429, as Mailchimp has under heavy load.
    #[arg(long, env = "SANDBOX_THROTTLE_AS_BARE_403")]
    pub throttle_as_bare_403: bool,
    /// Modelled milliseconds per API call.
    #[arg(long, env = "SANDBOX_LATENCY_MS", default_value_t = 0)]
    pub latency_ms: u64,
    /// Modelled microseconds per member in a batch call.
    #[arg(long, env = "SANDBOX_PER_MEMBER_US", default_value_t = 0)]
    pub per_member_us: u64,
    /// Share of API calls (0 to 1) that fail with 500, 503 or 429, or hang.
    #[arg(long, env = "SANDBOX_FAULT_RATE", default_value_t = 0.0)]
    pub fault_rate: f64,
    /// How long a hanging call holds its answer, in milliseconds.
    #[arg(long, env = "SANDBOX_HANG_MS", default_value_t = 130_000)]
    pub hang_ms: u64,
    /// Seed for audience ids and the fault sequence.
    #[arg(long, env = "SANDBOX_SEED", default_value_t = 1)]
    pub seed: u64,
    /// Keep the state in this JSON file between runs.
    #[arg(long, env = "SANDBOX_STATE_FILE")]
    pub state_file: Option<PathBuf>,
}

impl SandboxArgs {
    pub fn into_config(self) -> anyhow::Result<SandboxConfig> {
        if !(0.0..=1.0).contains(&self.fault_rate) {
            bail!(
                "--fault-rate must be between 0 and 1, got {}",
                self.fault_rate
            );
        }
        if self.max_connections == 0 {
            bail!("--max-connections must be at least 1");
        }
        for key in &self.api_keys {
            check_api_key(key)?;
        }
        let clients = self
            .oauth_clients
            .iter()
            .map(|raw| {
                let (id, secret) = raw
                    .split_once(':')
                    .filter(|(id, secret)| !id.is_empty() && !secret.is_empty())
                    .with_context(|| {
                        format!("--oauth-client must be CLIENT_ID:CLIENT_SECRET, got {raw:?}")
                    })?;
                Ok(OAuthClient {
                    client_id: id.to_owned(),
                    client_secret: secret.to_owned(),
                    name: id.to_owned(),
                    redirect_uri: None,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let dc = self
            .api_keys
            .first()
            .and_then(|k| k.rsplit_once('-').map(|(_, dc)| dc.to_owned()))
            .unwrap_or_else(|| "us1".into());
        Ok(SandboxConfig {
            max_connections: self.max_connections,
            throttle_as_bare_403: self.throttle_as_bare_403,
            latency: Duration::from_millis(self.latency_ms),
            per_member: Duration::from_micros(self.per_member_us),
            fault_rate: self.fault_rate,
            hang: Duration::from_millis(self.hang_ms),
            seed: self.seed,
            dc,
            api_keys: self.api_keys,
            clients,
            state_file: self.state_file,
            ..SandboxConfig::default()
        })
    }
}

/// Mailchimp's API key shape: 32 hex digits, a dash, a data centre.
pub fn check_api_key(key: &str) -> anyhow::Result<()> {
    let valid = key.split_once('-').is_some_and(|(hex, dc)| {
        hex.len() == 32
            && hex.chars().all(|c| c.is_ascii_hexdigit())
            && !dc.is_empty()
            && dc.chars().all(|c| c.is_ascii_alphanumeric())
    });
    if !valid {
        bail!(
            "an API key looks like <32 hex digits>-<data centre>, e.g. 0123456789abcdef0123456789abcdef-us1"
        );
    }
    Ok(())
}

/// A sandbox bound to a port, ready to serve.
pub struct RunningSandbox {
    pub sandbox: Sandbox,
    pub addr: SocketAddr,
    listener: TcpListener,
}

impl RunningSandbox {
    pub async fn bind(
        config: SandboxConfig,
        bind: SocketAddr,
        public_url: Option<Url>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(bind)
            .await
            .with_context(|| format!("listening on {bind}"))?;
        let addr = listener.local_addr()?;
        let base = match public_url {
            Some(url) => url,
            None => Url::parse(&format!("http://{addr}/"))?,
        };
        let sandbox = Sandbox::new(config, base)?;
        {
            let mut store = sandbox.store();
            if !store
                .api_keys
                .values()
                .any(|owner| owner == DEFAULT_ACCOUNT)
            {
                store.issue_api_key(DEFAULT_ACCOUNT);
            }
        }
        Ok(Self {
            sandbox,
            addr,
            listener,
        })
    }

    /// Serves until `shutdown` completes, then saves the state (if a file is configured).
    pub async fn serve(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let autosave = tokio::spawn(self.sandbox.clone().autosave());
        let router = self
            .sandbox
            .router()
            .layer(tower_http::trace::TraceLayer::new_for_http());
        let served = axum::serve(self.listener, router)
            .with_graceful_shutdown(shutdown)
            .await;
        autosave.abort();
        self.sandbox.save()?;
        served.context("serving the sandbox")
    }

    /// Prints what a person needs to use the sandbox.
    pub fn announce(&self) {
        let store = self.sandbox.store();
        let base = self.sandbox.base_url().as_str().trim_end_matches('/');
        println!("Sandbox Mailchimp on {base}/  (pages), {base}/3.0 (API), {base}/oauth2 (OAuth)");
        for (key, owner) in &store.api_keys {
            if owner == DEFAULT_ACCOUNT {
                println!("API key: {key}");
            }
        }
        for audience in store
            .audiences
            .values()
            .filter(|a| a.account_id == DEFAULT_ACCOUNT)
        {
            println!("Audience {:?}: {}", audience.name, audience.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_keys_must_have_mailchimps_shape() {
        assert!(check_api_key("0123456789abcdef0123456789abcdef-us6").is_ok());
        assert!(check_api_key("0123456789abcdef-us6").is_err());
        assert!(check_api_key("0123456789abcdef0123456789abcdef").is_err());
        assert!(check_api_key("0123456789abcdef0123456789abcdeg-us6").is_err());
    }
}

#[cfg(test)]
mod cli_tests {
    use clap::Parser;

    use crate::cli::{Cli, Command};

    fn config(args: &[&str]) -> anyhow::Result<crate::sandbox::config::SandboxConfig> {
        let mut argv = vec!["export-destinations", "sandbox"];
        argv.extend_from_slice(args);
        match Cli::try_parse_from(argv)?.into_command() {
            Command::Sandbox(args) => args.into_config(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn the_sandbox_command_takes_its_limits_and_faults_from_flags() {
        let config = config(&[
            "--api-key",
            "0123456789abcdef0123456789abcdef-us6",
            "--oauth-client",
            "app:secret",
            "--max-connections",
            "10",
            "--latency-ms",
            "150",
            "--per-member-us",
            "1000",
            "--fault-rate",
            "0.05",
            "--seed",
            "9",
        ])
        .unwrap();
        assert_eq!(config.dc, "us6");
        assert_eq!(config.latency.as_millis(), 150);
        assert_eq!(config.per_member.as_micros(), 1000);
        assert_eq!(config.clients[0].client_id, "app");
        assert_eq!(config.seed, 9);
        assert!(!config.throttle_as_bare_403, "429s unless asked");
        let bare = self::config(&["--max-connections", "2", "--throttle-as-bare-403"]).unwrap();
        assert!(bare.throttle_as_bare_403);
        assert_eq!(bare.max_connections, 2);
    }

    #[test]
    fn bad_sandbox_flags_are_refused_with_a_reason() {
        assert!(
            config(&["--fault-rate", "1.5"])
                .unwrap_err()
                .to_string()
                .contains("between 0 and 1")
        );
        assert!(
            config(&["--api-key", "short-us1"])
                .unwrap_err()
                .to_string()
                .contains("32 hex")
        );
        assert!(
            config(&["--oauth-client", "no-secret"])
                .unwrap_err()
                .to_string()
                .contains("CLIENT_ID:CLIENT_SECRET")
        );
        assert!(config(&["--max-connections", "0"]).is_err());
    }
}
