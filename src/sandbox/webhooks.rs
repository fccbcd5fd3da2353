//! An audience's webhooks, kept and called as Mailchimp does: a webhook names the events it
//! wants (subscribe, unsubscribe, profile, cleaned, upemail, campaign) and the sources it
//! hears (a contact's own action, an account user's, the API's). Its URL must answer a
//! GET with 200 when it is created; events are POSTed to it as
//! `application/x-www-form-urlencoded`, in the background, one after another, each with a
//! short timeout. Nothing is signed: the URL is the secret.

use std::sync::Mutex;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sandbox::problem::MailchimpProblem;

/// How long a probe or a delivery may take before the sandbox gives up on it.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The events a webhook is called for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Events {
    #[serde(default)]
    pub subscribe: bool,
    #[serde(default)]
    pub unsubscribe: bool,
    #[serde(default)]
    pub profile: bool,
    #[serde(default)]
    pub cleaned: bool,
    #[serde(default)]
    pub upemail: bool,
    #[serde(default)]
    pub campaign: bool,
}

/// Whose actions a webhook hears about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sources {
    /// The contact's own (an unsubscribe link, a preferences form).
    #[serde(default)]
    pub user: bool,
    /// A user of the account, in Mailchimp's pages.
    #[serde(default)]
    pub admin: bool,
    /// Calls to the Marketing API.
    #[serde(default)]
    pub api: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub events: Events,
    pub sources: Sources,
}

/// Who made a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    User,
    Admin,
    Api,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::User => "user",
            Source::Admin => "admin",
            Source::Api => "api",
        }
    }

    pub(super) fn heard_by(self, sources: &Sources) -> bool {
        match self {
            Source::User => sources.user,
            Source::Admin => sources.admin,
            Source::Api => sources.api,
        }
    }
}

/// One event, with what Mailchimp's form carries for it.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    Subscribe {
        email: String,
        merges: Vec<(String, String)>,
    },
    Unsubscribe {
        email: String,
        merges: Vec<(String, String)>,
    },
    Profile {
        email: String,
        merges: Vec<(String, String)>,
    },
    /// `reason` is `hard` (the address bounced) or `abuse` (a complaint).
    Cleaned { email: String, reason: &'static str },
    Upemail {
        old_email: String,
        new_email: String,
    },
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::Subscribe { .. } => "subscribe",
            Event::Unsubscribe { .. } => "unsubscribe",
            Event::Profile { .. } => "profile",
            Event::Cleaned { .. } => "cleaned",
            Event::Upemail { .. } => "upemail",
        }
    }

    fn wanted_by(&self, events: &Events) -> bool {
        match self {
            Event::Subscribe { .. } => events.subscribe,
            Event::Unsubscribe { .. } => events.unsubscribe,
            Event::Profile { .. } => events.profile,
            Event::Cleaned { .. } => events.cleaned,
            Event::Upemail { .. } => events.upemail,
        }
    }

    /// The form fields Mailchimp posts for the event.
    pub fn form(&self, list_id: &str, fired_at: &str) -> Vec<(String, String)> {
        let mut form = vec![
            ("type".to_owned(), self.kind().to_owned()),
            ("fired_at".to_owned(), fired_at.to_owned()),
            ("data[list_id]".to_owned(), list_id.to_owned()),
        ];
        let mut person = |email: &str, merges: &[(String, String)]| {
            let id = crate::domain::subscriber_hash(email);
            form.push(("data[id]".into(), id[..10].to_owned()));
            form.push(("data[email]".into(), email.to_owned()));
            form.push(("data[email_type]".into(), "html".into()));
            form.push(("data[merges][EMAIL]".into(), email.to_owned()));
            for (tag, value) in merges {
                form.push((format!("data[merges][{tag}]"), value.clone()));
            }
            form.push(("data[ip_opt]".into(), String::new()));
        };
        match self {
            Event::Subscribe { email, merges } | Event::Profile { email, merges } => {
                person(email, merges);
            }
            Event::Unsubscribe { email, merges } => {
                person(email, merges);
                form.push(("data[action]".into(), "unsub".into()));
                form.push(("data[reason]".into(), "manual".into()));
            }
            Event::Cleaned { email, reason } => {
                form.push(("data[email]".into(), email.clone()));
                form.push(("data[reason]".into(), (*reason).to_owned()));
            }
            Event::Upemail {
                old_email,
                new_email,
            } => {
                let new_id = crate::domain::subscriber_hash(new_email);
                form.push(("data[new_id]".into(), new_id[..10].to_owned()));
                form.push(("data[new_email]".into(), new_email.clone()));
                form.push(("data[old_email]".into(), old_email.clone()));
            }
        }
        form
    }
}

/// A change an account user or the contact makes outside the API (the sandbox's pages, or
/// a test standing for the contact).
#[derive(Debug, Clone)]
pub enum MemberChange {
    Unsubscribe,
    /// The person subscribed again through a signup form (opting in themselves, which an
    /// API call may not do for them).
    Subscribe,
    /// Bounced (`abuse: false`) or reported as spam (`abuse: true`).
    Clean {
        abuse: bool,
    },
    /// New values for some merge fields.
    Profile(serde_json::Map<String, Value>),
    /// A new address for the same contact.
    Email(String),
}

/// One delivery tried: to which webhook, what, and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub webhook_id: String,
    pub list_id: String,
    pub kind: &'static str,
    /// The answer's HTTP status; None when there was none (refused, timed out).
    pub status: Option<u16>,
}

pub(super) struct Outgoing {
    webhook_id: String,
    list_id: String,
    kind: &'static str,
    url: String,
    form: Vec<(String, String)>,
}

/// The deliveries waiting to be sent, and those tried.
#[derive(Default)]
pub(super) struct Outbox {
    queue: Mutex<Option<tokio::sync::mpsc::UnboundedSender<Outgoing>>>,
    log: std::sync::Arc<Mutex<Vec<Delivery>>>,
}

/// An HTTP client that follows no redirect and waits [`CALL_TIMEOUT`] at most.
fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(CALL_TIMEOUT)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("MailChimp")
        .build()
        .expect("an HTTP client")
}

/// The host of a URL, for logs (a webhook's URL can hold a secret).
fn host_of(url: &str) -> String {
    url::Url::parse(url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_default()
}

/// The calls that tell `events` to the webhooks (of the audience `list_id`) that want them
/// from this source.
pub(super) fn outgoing(
    webhooks: &[Webhook],
    list_id: &str,
    source: Source,
    events: &[Event],
) -> Vec<Outgoing> {
    let fired_at = fired_at_now();
    webhooks
        .iter()
        .filter(|w| source.heard_by(&w.sources))
        .flat_map(|w| {
            events
                .iter()
                .filter(|e| e.wanted_by(&w.events))
                .map(|e| Outgoing {
                    webhook_id: w.id.clone(),
                    list_id: list_id.to_owned(),
                    kind: e.kind(),
                    url: w.url.clone(),
                    form: e.form(list_id, &fired_at),
                })
        })
        .collect()
}

impl Outbox {
    /// Every delivery tried so far.
    pub(super) fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub(super) fn send(&self, outgoing: Vec<Outgoing>) {
        if outgoing.is_empty() {
            return;
        }
        let mut queue = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        if queue.as_ref().is_none_or(|q| q.is_closed()) {
            let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                tracing::warn!("no runtime to call the audience's webhooks from");
                return;
            };
            let (sender, receiver) = tokio::sync::mpsc::unbounded_channel();
            runtime.spawn(deliver(receiver, self.log.clone()));
            *queue = Some(sender);
        }
        if let Some(queue) = queue.as_ref() {
            for item in outgoing {
                let _ = queue.send(item);
            }
        }
    }
}

/// Sends the deliveries one after another, in the order the changes were made.
async fn deliver(
    mut receiver: tokio::sync::mpsc::UnboundedReceiver<Outgoing>,
    log: std::sync::Arc<Mutex<Vec<Delivery>>>,
) {
    let client = http();
    while let Some(item) = receiver.recv().await {
        let status = match client.post(&item.url).form(&item.form).send().await {
            Ok(response) => Some(response.status().as_u16()),
            Err(err) => {
                tracing::warn!(host = %host_of(&item.url), error = %err.without_url(), "a webhook delivery failed");
                None
            }
        };
        tracing::debug!(webhook_id = %item.webhook_id, kind = item.kind, ?status, "webhook called");
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(Delivery {
                webhook_id: item.webhook_id,
                list_id: item.list_id,
                kind: item.kind,
                status,
            });
    }
}

/// Mailchimp's check of a new webhook's URL: a GET that must answer 200.
pub async fn probe(url: &str) -> Result<(), MailchimpProblem> {
    let status = match http().get(url).send().await {
        Ok(response) => response.status().as_u16().to_string(),
        Err(err) if err.is_timeout() => "timeout".to_owned(),
        Err(_) => "0".to_owned(),
    };
    if status == "200" {
        return Ok(());
    }
    Err(MailchimpProblem::field(
        "url",
        format!(
            "We couldn't verify the URL is working. Please double check and try again. HTTP Code: {status}"
        ),
    ))
}

/// Now, as webhooks carry it: "2026-12-03 12:11:04" (UTC).
fn fired_at_now() -> String {
    let now = time::OffsetDateTime::now_utc();
    let format = time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    now.format(&format).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unsubscribe_is_posted_with_mailchimps_fields() {
        let event = Event::Unsubscribe {
            email: "ada@northwind.io".into(),
            merges: vec![("FNAME".into(), "Ada".into())],
        };
        let form = event.form("abc123", "2026-12-03 12:11:04");
        let get = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str());
        assert_eq!(get("type"), Some("unsubscribe"));
        assert_eq!(get("fired_at"), Some("2026-12-03 12:11:04"));
        assert_eq!(get("data[email]"), Some("ada@northwind.io"));
        assert_eq!(get("data[list_id]"), Some("abc123"));
        assert_eq!(get("data[merges][FNAME]"), Some("Ada"));
        assert_eq!(get("data[action]"), Some("unsub"));
        let moved = Event::Upemail {
            old_email: "ada@northwind.io".into(),
            new_email: "ada@contoso.io".into(),
        }
        .form("abc123", "2026-12-03 12:11:04");
        assert!(moved.contains(&("data[old_email]".into(), "ada@northwind.io".into())));
        assert!(moved.contains(&("data[new_email]".into(), "ada@contoso.io".into())));
    }

    #[test]
    fn a_webhook_hears_only_its_sources_and_events() {
        let sources = Sources {
            user: true,
            admin: true,
            api: false,
        };
        assert!(Source::User.heard_by(&sources));
        assert!(!Source::Api.heard_by(&sources));
        let events = Events {
            unsubscribe: true,
            ..Events::default()
        };
        let cleaned = Event::Cleaned {
            email: "a@b.io".into(),
            reason: "hard",
        };
        assert!(!cleaned.wanted_by(&events));
    }
}
