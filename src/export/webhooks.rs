//! The webhook each saved destination keeps on its Mailchimp audience, so that unsubscribes,
//! bounces and address changes reach the ledger as they happen rather than at the next
//! run. Its URL is `{PUBLIC_URL}/hooks/mailchimp/{destination_id}/{secret}`, the secret
//! random per destination and stored sealed: Mailchimp signs nothing, so the URL is the
//! only proof that a call comes from it.
//!
//! A destination's webhook is registered when it is saved, checked (and registered again if
//! Mailchimp lost it) at the start of every run, and deleted when the destination is
//! removed. A registration that fails never stops a save or a run: the next run tries again.

use std::sync::Arc;
use std::time::Duration;

use url::Url;

use crate::export::Engine;
use crate::mailchimp::client::ApiError;
use crate::mailchimp::gateway::Gateway;
use crate::store::destinations::Destination;
use crate::store::webhooks;

/// Where the console's webhook endpoints live, under the public URL.
pub const PATH: &str = "hooks/mailchimp";

/// How long a save or a removal waits for Mailchimp to take or drop the webhook.
pub const WAIT: Duration = Duration::from_secs(15);

/// Why an old address is kept out of the ledger after Mailchimp's `upemail` event.
pub const ADDRESS_CHANGED: &str = "Address changed in Mailchimp";

/// Webhooks are on: the console's public URL, and one registration at a time.
#[derive(Debug, Clone)]
pub struct Hooks {
    pub public_url: Url,
    registering: Arc<tokio::sync::Mutex<()>>,
}

impl Hooks {
    pub fn new(public_url: Url) -> Self {
        Self {
            public_url,
            registering: Arc::default(),
        }
    }

    /// Every webhook URL of a destination starts so, whatever its secret.
    fn prefix(&self, destination_id: i64) -> String {
        let base = crate::mailchimp::join(&self.public_url, &format!("{PATH}/{destination_id}/"));
        base.to_string()
    }

    /// The webhook URL of a destination with this secret.
    pub fn url(&self, destination_id: i64, secret: &str) -> String {
        format!("{}{secret}", self.prefix(destination_id))
    }
}

/// What a check of the destination's webhook found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// Webhooks are off in this console (or the destination is not saved).
    Off,
    /// Mailchimp had it.
    Present,
    /// Mailchimp did not have it: it was added.
    Added,
}

/// Why the webhook could not be checked or registered.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("{0}")]
    Mailchimp(#[from] ApiError),
    #[error("{0}")]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for HookError {
    fn from(err: sqlx::Error) -> Self {
        HookError::Internal(err.into())
    }
}

/// Makes sure Mailchimp has the destination's webhook, exactly once: added when missing,
/// extra copies and those with an older secret deleted.
pub async fn ensure(
    engine: &Engine,
    gateway: &Gateway,
    destination: &Destination,
) -> Result<Checked, HookError> {
    let Some(hooks) = &engine.webhooks else {
        return Ok(Checked::Off);
    };
    if !destination.is_active() {
        return Ok(Checked::Off);
    }
    let _one_at_a_time = hooks.registering.lock().await;
    let pool = engine.db.pool();
    let registration = match webhooks::find(pool, destination.id).await? {
        Some(found) => found,
        None => {
            let sealed = engine.key.seal(&crate::crypto::random_token());
            webhooks::put_secret(pool, destination.id, &sealed).await?;
            webhooks::find(pool, destination.id)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the webhook's secret was not kept"))?
        }
    };
    let secret = engine.key.open(&registration.secret_sealed)?;
    let url = hooks.url(destination.id, &secret);
    let prefix = hooks.prefix(destination.id);
    let list = &destination.audience_id;
    let mut found = gateway.webhooks(list).await?;
    let checked = if found.iter().any(|w| w.url == url) {
        Checked::Present
    } else {
        match gateway.add_webhook(list, &url).await {
            Ok(added) => found.push(added),
            // Added meanwhile by another console on the database: Mailchimp takes one
            // webhook per URL.
            Err(err) if err.kind == crate::mailchimp::client::ErrorKind::Invalid => {
                found = gateway.webhooks(list).await?;
                if !found.iter().any(|w| w.url == url) {
                    return Err(err.into());
                }
            }
            Err(err) => return Err(err.into()),
        }
        Checked::Added
    };
    // Ours is the first with our URL; others of this destination's are left-overs.
    let mut kept: Option<String> = None;
    for webhook in found {
        if webhook.url == url && kept.is_none() {
            kept = Some(webhook.id);
        } else if webhook.url.starts_with(&prefix) {
            gateway.delete_webhook(list, &webhook.id).await?;
        }
    }
    if let Some(id) = kept {
        if registration.webhook_id.as_deref() != Some(id.as_str()) {
            webhooks::set_registered(pool, destination.id, &id).await?;
        }
    }
    if checked == Checked::Added {
        tracing::info!(
            destination_id = destination.id,
            "the audience's webhook was registered"
        );
    }
    Ok(checked)
}

/// After a save: registers the destination's webhook, waiting [`WAIT`] at most. None
/// when it is registered (or webhooks are off); otherwise why not, for the person who
/// saved.
pub async fn register_after_save(engine: &Engine, destination_id: i64) -> Option<String> {
    engine.webhooks.as_ref()?;
    let destination = match crate::store::destinations::find(engine.db.pool(), destination_id).await
    {
        Ok(Some(destination)) => destination,
        Ok(None) => return None,
        Err(err) => return Some(err.to_string()),
    };
    let gateway = match engine.gateway(&destination) {
        Ok(gateway) => gateway,
        Err(err) => return Some(err.to_string()),
    };
    let outcome = tokio::time::timeout(WAIT, ensure(engine, &gateway, &destination)).await;
    let problem = match outcome {
        Ok(Ok(_)) => return None,
        Ok(Err(err)) => err.to_string(),
        Err(_) => "Mailchimp did not answer in time".to_owned(),
    };
    tracing::warn!(destination_id, error = %problem, "the audience's webhook could not be registered");
    Some(problem)
}

/// Before a destination goes: deletes its webhooks from the audience (the one Mailchimp
/// gave an ID for, and any other with its URL), waiting [`WAIT`] at most. A failure is
/// logged: the endpoint refuses the calls of a removed destination anyway.
pub async fn remove(engine: &Engine, destination: &Destination) {
    let pool = engine.db.pool();
    let registration = match webhooks::find(pool, destination.id).await {
        Ok(Some(registration)) => registration,
        Ok(None) => return,
        Err(err) => {
            tracing::warn!(destination_id = destination.id, error = %err, "reading the destination's webhook");
            return;
        }
    };
    let removal = async {
        let gateway = engine.gateway(destination).map_err(HookError::Internal)?;
        let list = &destination.audience_id;
        let prefix = engine.webhooks.as_ref().map(|h| h.prefix(destination.id));
        let mut ids: Vec<String> = registration.webhook_id.iter().cloned().collect();
        if let Some(prefix) = &prefix {
            for webhook in gateway.webhooks(list).await? {
                if webhook.url.starts_with(prefix.as_str()) && !ids.contains(&webhook.id) {
                    ids.push(webhook.id);
                }
            }
        }
        for id in &ids {
            gateway.delete_webhook(list, id).await?;
        }
        webhooks::clear_registered(pool, destination.id).await?;
        Ok::<_, HookError>(ids.len())
    };
    match tokio::time::timeout(WAIT, removal).await {
        Ok(Ok(removed)) => {
            tracing::info!(
                destination_id = destination.id,
                removed,
                "the audience's webhook was deleted"
            );
        }
        Ok(Err(err)) => {
            tracing::warn!(destination_id = destination.id, error = %err, "the audience's webhook could not be deleted");
        }
        Err(_) => {
            tracing::warn!(
                destination_id = destination.id,
                "the audience's webhook could not be deleted: Mailchimp did not answer in time"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_destinations_url_hangs_off_the_public_url_with_its_secret() {
        let hooks = Hooks::new(Url::parse("https://console.example.com/base/").unwrap());
        assert_eq!(
            hooks.url(7, "s3cret"),
            "https://console.example.com/base/hooks/mailchimp/7/s3cret"
        );
        let hooks = Hooks::new(Url::parse("https://console.example.com").unwrap());
        assert!(hooks.url(12, "x").starts_with(&hooks.prefix(12)));
        assert!(!hooks.url(1, "x").starts_with(&hooks.prefix(12)));
        assert!(!hooks.url(12, "x").starts_with(&hooks.prefix(1)));
    }
}
