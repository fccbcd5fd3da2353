//! The built-in Mailchimp sandbox: a real HTTP server that speaks Mailchimp's OAuth and a
//! subset of the Marketing API 3.0 with Mailchimp's rules, limits and faults. The console
//! reaches it exactly as it reaches Mailchimp, through base URLs.

mod api_lists;
mod api_members;
mod api_segments;
mod api_webhooks;
pub mod audience;
mod json;
mod limits;
mod oauth;
mod pages;
mod partial;
pub mod problem;
pub mod standalone;
pub mod status;
pub mod store;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::middleware::from_fn_with_state;
use rand::SeedableRng;
use rand::rngs::StdRng;
use url::Url;

pub use limits::Stats;
pub use pages::PageAccess;
use store::{OAuthClient, Store};

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

/// A running sandbox's shared state. Cheap to clone.
#[derive(Clone)]
pub struct Sandbox {
    inner: Arc<Inner>,
}

struct Inner {
    config: SandboxConfig,
    /// The sandbox's own external address, e.g. `http://127.0.0.1:9090/` or
    /// `http://127.0.0.1:8080/sandbox/`: metadata's `api_endpoint` and page links use it.
    base_url: Url,
    store: Mutex<Store>,
    limits: limits::Limits,
    /// Proves that a form post on the sandbox's pages came from those pages.
    page_token: String,
    /// Webhook calls waiting to be made, and those made.
    outbox: webhooks::Outbox,
}

impl Sandbox {
    pub fn new(config: SandboxConfig, base_url: Url) -> anyhow::Result<Self> {
        let now = json::now();
        let mut store = match &config.state_file {
            Some(path) if path.exists() => {
                let text = std::fs::read_to_string(path)?;
                serde_json::from_str(&text)
                    .map_err(|e| anyhow::anyhow!("sandbox state {}: {e}", path.display()))?
            }
            _ => Store::demo(config.seed, &config.dc, &now),
        };
        for key in &config.api_keys {
            store
                .api_keys
                .insert(key.clone(), store::DEFAULT_ACCOUNT.into());
        }
        for client in &config.clients {
            store.register_client(client.clone());
        }
        let faults = StdRng::seed_from_u64(config.seed);
        let base_url = if base_url.path().ends_with('/') {
            base_url
        } else {
            let mut url = base_url;
            url.set_path(&format!("{}/", url.path()));
            url
        };
        Ok(Self {
            inner: Arc::new(Inner {
                limits: limits::Limits::new(faults),
                config,
                base_url,
                store: Mutex::new(store),
                page_token: crate::crypto::random_token(),
                outbox: webhooks::Outbox::default(),
            }),
        })
    }

    /// The HTTP routes: OAuth, the Marketing API under `/3.0`, and the sandbox's pages.
    pub fn router(&self) -> Router {
        let api = api_lists::router()
            .merge(api_members::router())
            .merge(api_segments::router())
            .merge(api_webhooks::router())
            .layer(axum::middleware::from_fn(partial::only_the_fields_asked))
            .layer(from_fn_with_state(self.clone(), limits::limit_and_fault));
        Router::new()
            .nest("/3.0", api)
            .merge(oauth::router())
            .merge(pages::router())
            .with_state(self.clone())
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    pub fn base_url(&self) -> &Url {
        &self.inner.base_url
    }

    /// The path prefix of the sandbox's pages, without a trailing slash ("" at the root).
    pub fn base_path(&self) -> String {
        self.inner.base_url.path().trim_end_matches('/').to_owned()
    }

    /// Locks the state; every change happens under this lock, so each request is atomic.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.inner
            .store
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn page_token(&self) -> &str {
        &self.inner.page_token
    }

    pub fn stats(&self) -> Stats {
        self.inner.limits.stats()
    }

    /// Writes the state to the configured file, if any (atomically: temp file + rename),
    /// readable by its owner only: it holds the API keys and OAuth tokens.
    pub fn save(&self) -> anyhow::Result<()> {
        use std::io::Write;
        let Some(path) = &self.inner.config.state_file else {
            return Ok(());
        };
        let json = serde_json::to_vec(&*self.store())?;
        let temp = path.with_extension("tmp");
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&temp)?;
        // A temp file left by an older version keeps its mode on open: set it anyway.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        }
        file.write_all(&json)?;
        file.sync_all()?;
        drop(file);
        std::fs::rename(&temp, path)?;
        Ok(())
    }

    /// Saves the state every few seconds while it changes; runs until the task is dropped.
    pub async fn autosave(self) {
        if self.inner.config.state_file.is_none() {
            return;
        }
        let mut last = self.inner.limits.writes();
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let now = self.inner.limits.writes();
            if now != last {
                last = now;
                if let Err(err) = self.save() {
                    tracing::warn!(error = %err, "saving the sandbox state");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The sandbox stands for another company's service: of the console it uses only the
    /// subscriber hash (Mailchimp's own definition) and the crypto helpers.
    #[test]
    fn the_sandbox_borrows_nothing_from_the_console_but_the_subscriber_hash_and_crypto() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/sandbox");
        let mut files = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let text = std::fs::read_to_string(&path).unwrap();
            // Tests may drive the sandbox through the console's command line.
            let code = text.split("#[cfg(test)]").next().unwrap_or_default();
            for (n, line) in code.lines().enumerate() {
                for (at, _) in line.match_indices("crate::") {
                    let used = &line[at + "crate::".len()..];
                    let allowed = ["sandbox", "domain::subscriber_hash", "crypto::"]
                        .iter()
                        .any(|p| used.starts_with(p));
                    assert!(allowed, "{}:{}: {}", path.display(), n + 1, line.trim());
                }
            }
            files += 1;
        }
        assert!(files >= 10, "the sandbox's files were read");
    }

    #[cfg(unix)]
    #[test]
    fn the_saved_state_is_readable_by_its_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sandbox.json");
        let config = SandboxConfig {
            state_file: Some(path.clone()),
            ..SandboxConfig::default()
        };
        let sandbox = Sandbox::new(config, Url::parse("http://127.0.0.1:1/").unwrap()).unwrap();
        sandbox.save().unwrap();
        let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert!(std::fs::read_to_string(&path).unwrap().contains("api_keys"));
        // A world-readable file from an older version is replaced by a private one, and a
        // leftover temp file does not pass its mode on.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let temp = path.with_extension("tmp");
        std::fs::write(&temp, "").unwrap();
        std::fs::set_permissions(&temp, std::fs::Permissions::from_mode(0o644)).unwrap();
        sandbox.save().unwrap();
        assert_eq!(mode(&path), 0o600);
    }
}
