//! A running sandbox: its configuration, its state behind one lock, its limits and its
//! webhook outbox; saved to a file when one is configured.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use url::Url;

use crate::sandbox::audience::Audience;
use crate::sandbox::clock;
use crate::sandbox::config::SandboxConfig;
use crate::sandbox::limits::{Limits, Stats};
use crate::sandbox::problem::MailchimpProblem;
use crate::sandbox::store::{self, Store};
use crate::sandbox::webhooks::{self, Delivery, Event, MemberChange, Outbox, Source};

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
    limits: Arc<Limits>,
    /// Proves that a form post on the sandbox's pages came from those pages.
    page_token: String,
    /// Webhook calls waiting to be made, and those made.
    outbox: Outbox,
}

impl Sandbox {
    pub fn new(config: SandboxConfig, base_url: Url) -> anyhow::Result<Self> {
        let now = clock::now();
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
        let base_url = if base_url.path().ends_with('/') {
            base_url
        } else {
            let mut url = base_url;
            url.set_path(&format!("{}/", url.path()));
            url
        };
        Ok(Self {
            inner: Arc::new(Inner {
                limits: Arc::new(Limits::new(&config)),
                config,
                base_url,
                store: Mutex::new(store),
                page_token: crate::crypto::random_token(),
                outbox: Outbox::default(),
            }),
        })
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

    /// The limits the Marketing API's calls pass through.
    pub(super) fn limits(&self) -> Arc<Limits> {
        self.inner.limits.clone()
    }

    /// Spends the modelled time of a call that handles `members` members.
    pub async fn work(&self, members: usize) {
        self.inner.limits.work(members).await;
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

impl Sandbox {
    /// Calls every webhook of the audience that wants these events from this source.
    pub fn fire(&self, list_id: &str, source: Source, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let outgoing = {
            let store = self.store();
            let Some(audience) = store.audiences.get(list_id) else {
                return;
            };
            webhooks::outgoing(&audience.webhooks, list_id, source, &events)
        };
        self.inner.outbox.send(outgoing);
    }

    /// Whether some webhook of the audience hears this source (so that a write need not
    /// work out its events when none would be sent).
    pub fn heard(audience: &Audience, source: Source) -> bool {
        audience
            .webhooks
            .iter()
            .any(|w| source.heard_by(&w.sources))
    }

    /// Every delivery tried so far (for tests).
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.inner.outbox.deliveries()
    }

    /// A change made outside the API, by the contact (`Source::User`) or by a user of the
    /// account (`Source::Admin`): applied, then told to the audience's webhooks.
    pub fn change_member(
        &self,
        list_id: &str,
        email: &str,
        change: MemberChange,
        source: Source,
    ) -> Result<(), MailchimpProblem> {
        let now = clock::now();
        let event = {
            let mut store = self.store();
            let audience = store
                .audiences
                .get_mut(list_id)
                .ok_or_else(MailchimpProblem::not_found)?;
            audience.change_member(email, change, &now)?
        };
        self.inner.limits.note_write();
        self.fire(list_id, source, vec![event]);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
