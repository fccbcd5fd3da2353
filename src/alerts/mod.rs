//! Failure alerts: when a run ends in Failure, or Successful with at least its
//! destination's threshold of failed members, the console tells a webhook and chosen people
//! by email.
//!
//! The run's end queues one delivery per target in the transaction that finishes the run
//! (so no alert is lost between the two, and finishing never waits for a webhook or a mail
//! server). A sender in each console claims due deliveries under a lease, tries each, records
//! every try and its answer, and tries again later after connection errors, 5xx and 429
//! (other refusals would be the same again). A console that stops leaves its deliveries to
//! the next start, or to another console on the same database.

pub mod email;
pub mod webhook;

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sqlx::AnyConnection;
use url::Url;

use crate::crypto::SecretKey;
use crate::db::{Db, now_millis};
use crate::store::Record;
use crate::store::alerts::{self as store, Answer, Delivery, Outcome};
use crate::store::runs::{self, Run, RunStatus};

/// What an alert tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// The run ended in Failure.
    RunFailed,
    /// The run was Successful, but at least the destination's threshold of members failed.
    MembersFailed,
    /// A source's pull failed (it wrote nothing).
    PullFailed,
    /// Sent from the Notifications page to check the settings.
    Test,
}

impl Event {
    pub fn as_str(self) -> &'static str {
        match self {
            Event::RunFailed => "run.failed",
            Event::MembersFailed => "run.members_failed",
            Event::PullFailed => "pull.failed",
            Event::Test => "test",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "run.members_failed" => Event::MembersFailed,
            "pull.failed" => Event::PullFailed,
            "test" => Event::Test,
            _ => Event::RunFailed,
        }
    }

    /// What happened, as an alert's first words.
    pub fn label(self) -> &'static str {
        match self {
            Event::RunFailed => "Export failed",
            Event::MembersFailed => "Export had failed members",
            Event::PullFailed => "Pull failed",
            Event::Test => "Test alert",
        }
    }

    /// Whether a run, finished with `threshold` set for its destination, alerts.
    pub fn of_run(run: &Run, threshold: i64) -> Option<Self> {
        match run.status {
            RunStatus::Failure => Some(Event::RunFailed),
            RunStatus::Successful if threshold > 0 && run.counters.failed >= threshold => {
                Some(Event::MembersFailed)
            }
            _ => None,
        }
    }
}

/// The webhook's JSON body.
#[derive(Debug, Clone, Serialize)]
pub struct Payload {
    pub event: &'static str,
    /// True only for a test sent from the Notifications page.
    pub test: bool,
    /// An export's alert: its destination and run.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub destination: Option<DestinationRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<RunReport>,
    /// A pull's alert (`pull.failed`): its source and pull.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pull: Option<PullReport>,
    /// The run's or pull's page in the console (for a test, the Notifications page).
    pub link: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct SourceRef {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PullReport {
    pub id: i64,
    /// `full` or `incremental`.
    pub mode: String,
    /// `failed`.
    pub status: String,
    pub error: Option<String>,
    /// RFC 3339, UTC.
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub rows_read: i64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DestinationRef {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    pub id: i64,
    /// `export`, `full_resync`, `remove_tags` or `archive_members`.
    pub kind: &'static str,
    /// `failure` or `successful`.
    pub status: &'static str,
    pub message: Option<String>,
    /// RFC 3339, UTC.
    pub started_at: Option<String>,
    pub ended_at: Option<String>,
    pub counts: Counts,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct Counts {
    pub created: i64,
    pub updated: i64,
    pub unchanged: i64,
    pub skipped: i64,
    pub failed: i64,
}

fn rfc3339(millis: i64) -> Option<String> {
    let at =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000).ok()?;
    at.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

impl Payload {
    pub fn of_run(event: Event, run: &Run, destination_name: &str, public_url: &Url) -> Self {
        let kind = match (run.kind, run.full_resync) {
            (runs::RunKind::Export, true) => "full_resync",
            (kind, _) => kind.as_str(),
        };
        Self {
            event: event.as_str(),
            test: false,
            source: None,
            pull: None,
            destination: Some(DestinationRef {
                id: run.destination_id,
                name: destination_name.to_owned(),
            }),
            run: Some(RunReport {
                id: run.id,
                kind,
                status: run.status.as_str(),
                message: run.message.clone(),
                started_at: run.started_at.and_then(rfc3339),
                ended_at: run.finished_at.and_then(rfc3339),
                counts: Counts {
                    created: run.counters.created,
                    updated: run.counters.updated,
                    unchanged: run.counters.unchanged,
                    skipped: run.counters.skipped,
                    failed: run.counters.failed,
                },
            }),
            link: crate::mailchimp::join(public_url, &format!("admin/export-runs/{}", run.id))
                .to_string(),
        }
    }

    /// A failed pull's alert.
    pub fn of_pull(
        pull: &crate::store::sources::PullRow,
        source_name: &str,
        public_url: &Url,
    ) -> Self {
        Self {
            event: Event::PullFailed.as_str(),
            test: false,
            destination: None,
            run: None,
            source: Some(SourceRef {
                id: pull.source_id,
                name: source_name.to_owned(),
            }),
            pull: Some(PullReport {
                id: pull.id,
                mode: pull.mode.clone(),
                status: pull.status.clone(),
                error: pull.error.clone(),
                started_at: rfc3339(pull.started_at),
                ended_at: pull.finished_at.and_then(rfc3339),
                rows_read: pull.rows_read,
            }),
            link: crate::mailchimp::join(public_url, &format!("data/pulls/{}", pull.id))
                .to_string(),
        }
    }

    /// A test alert: the shape of a real one, marked as a test in every way a receiver
    /// might look (the event, `test`, the names and the message).
    pub fn test(public_url: &Url) -> Self {
        let now = rfc3339(now_millis());
        Self {
            event: Event::Test.as_str(),
            test: true,
            source: None,
            pull: None,
            destination: Some(DestinationRef {
                id: 0,
                name: "Test destination".into(),
            }),
            run: Some(RunReport {
                id: 0,
                kind: "export",
                status: RunStatus::Failure.as_str(),
                message: Some(
                    "This is a test alert sent from System > Notifications; no export failed."
                        .into(),
                ),
                started_at: now.clone(),
                ended_at: now,
                counts: Counts::default(),
            }),
            link: crate::mailchimp::join(public_url, "system/notifications").to_string(),
        }
    }

    fn event(&self) -> Event {
        Event::parse(self.event)
    }

    /// Whose alert it is: the destination's or the source's name.
    fn subject_name(&self) -> &str {
        self.destination
            .as_ref()
            .map(|d| d.name.as_str())
            .or(self.source.as_ref().map(|s| s.name.as_str()))
            .unwrap_or_default()
    }

    /// The email's subject: "Export failed: Newsletter".
    pub fn subject(&self) -> String {
        match self.event() {
            Event::Test => "Test alert from the export-destinations console".to_owned(),
            event => format!("{}: {}", event.label(), self.subject_name()),
        }
    }

    /// The email's plain text.
    pub fn text(&self) -> String {
        if let Some(pull) = &self.pull {
            return format!(
                "The {} pull of the source “{}” failed; it wrote nothing, and the profiles stay as they were.\n\n\
                 Error: {}\nStarted: {}\nEnded: {}\nRows read before it stopped: {}\n\nThe pull's page: {}\n",
                pull.mode,
                self.subject_name(),
                pull.error.as_deref().unwrap_or("none given"),
                pull.started_at.as_deref().unwrap_or("not started"),
                pull.ended_at.as_deref().unwrap_or("not ended"),
                pull.rows_read,
                self.link
            );
        }
        let Some(run) = &self.run else {
            return self.link.clone();
        };
        let name = self.subject_name();
        let counts = &run.counts;
        let opening = match self.event() {
            Event::Test => "This is a test alert sent from System > Notifications of the \
                            export-destinations console. No export failed."
                .to_owned(),
            Event::RunFailed | Event::PullFailed => {
                format!("The export to “{name}” ended in Failure.")
            }
            Event::MembersFailed => format!(
                "The export to “{name}” ended Successful, but {} of its members failed.",
                counts.failed
            ),
        };
        let mut text = format!("{opening}\n\n");
        if let Some(message) = &run.message {
            text.push_str(&format!("Message: {message}\n"));
        }
        text.push_str(&format!(
            "Started: {}\nEnded: {}\n\nCreated: {}\nUpdated: {}\nUnchanged: {}\nSkipped: {}\nFailed: {}\n\n",
            run.started_at.as_deref().unwrap_or("not started"),
            run.ended_at.as_deref().unwrap_or("not ended"),
            counts.created,
            counts.updated,
            counts.unchanged,
            counts.skipped,
            counts.failed,
        ));
        let open = if self.test {
            "Alert settings"
        } else {
            "The run's page"
        };
        text.push_str(&format!("{open}: {}\n", self.link));
        text
    }
}

/// Queues the alerts a just-finished run calls for, on the connection (or transaction)
/// that finished it. Returns how many deliveries were queued.
pub async fn queue_for_run(conn: &mut AnyConnection, run_id: i64) -> sqlx::Result<usize> {
    let Some(run) = runs::find(&mut *conn, run_id).await? else {
        return Ok(0);
    };
    let threshold = store::threshold(&mut *conn, run.destination_id).await?;
    let Some(event) = Event::of_run(&run, threshold) else {
        return Ok(0);
    };
    let queued = queue_to_every_channel(conn, store::About::Run(run.id), event).await?;
    if queued > 0 {
        tracing::info!(
            run_id,
            event = event.as_str(),
            queued,
            "failure alerts queued"
        );
    }
    Ok(queued)
}

/// Queues a failed pull's alerts, on the connection (or transaction) that finished it.
pub async fn queue_for_pull(conn: &mut AnyConnection, pull_id: i64) -> sqlx::Result<usize> {
    let queued =
        queue_to_every_channel(conn, store::About::Pull(pull_id), Event::PullFailed).await?;
    if queued > 0 {
        tracing::info!(pull_id, queued, "failure alerts queued");
    }
    Ok(queued)
}

/// One delivery per channel that is on and target it has: how many were queued.
async fn queue_to_every_channel(
    conn: &mut AnyConnection,
    about: store::About,
    event: Event,
) -> sqlx::Result<usize> {
    let settings = store::load(&mut *conn).await?;
    let mut queued = 0;
    if let (true, Some(url), Some(_)) = (
        settings.webhook_enabled,
        &settings.webhook_url,
        &settings.webhook_secret_sealed,
    ) {
        queued += usize::from(store::queue(conn, about, event.as_str(), "webhook", url).await?);
    }
    if settings.email_enabled && settings.smtp_host.is_some() && settings.smtp_from.is_some() {
        for address in recipients(conn, &settings).await? {
            queued +=
                usize::from(store::queue(conn, about, event.as_str(), "email", &address).await?);
        }
    }
    Ok(queued)
}

/// Who gets alert emails now: the chosen users whose accounts are active, and the other
/// addresses, each once.
pub async fn recipients(
    conn: &mut AnyConnection,
    settings: &store::Settings,
) -> sqlx::Result<Vec<String>> {
    let mut all = store::active_recipient_emails(&mut *conn).await?;
    if let Ok(extra) = email::parse_addresses(&settings.extra_recipients) {
        for address in extra {
            if !all.iter().any(|a| a == address.as_str()) {
                all.push(address.as_str().to_owned());
            }
        }
    }
    Ok(all)
}

/// How long a sender holds a delivery it claimed (longer than any one try takes).
const LEASE_MS: i64 = 60_000;
/// How often an idle sender looks for due deliveries.
const POLL: Duration = Duration::from_millis(250);

/// Sends queued alerts, and test alerts from the page. Cheap to clone.
#[derive(Clone)]
pub struct Sender {
    db: Db,
    key: SecretKey,
    public_url: Url,
    http: reqwest::Client,
    retry_delays: Arc<Vec<Duration>>,
    owner: String,
}

/// What a try came to, whichever the channel.
struct Tried {
    answer: Answer,
    delivered: bool,
    retry: bool,
}

impl Sender {
    pub fn new(db: Db, key: SecretKey, public_url: Url, retry_delays: Vec<Duration>) -> Self {
        Self {
            db,
            key,
            public_url,
            http: webhook::client(),
            retry_delays: Arc::new(retry_delays),
            owner: format!("alerts-{}", &crate::crypto::random_token()[..12]),
        }
    }

    /// Sends due alerts until the process stops.
    pub async fn run(self) {
        loop {
            match self.send_next().await {
                Ok(Some(_)) => continue,
                Ok(None) => tokio::time::sleep(POLL).await,
                Err(err) => {
                    tracing::error!(error = format!("{err:#}"), "the alert sender hit an error");
                    tokio::time::sleep(Duration::from_secs(2)).await;
                }
            }
        }
    }

    /// Gives up this sender's claims (at shutdown): the next start sends what is left.
    pub async fn release(&self) {
        if let Err(err) = store::release(self.db.pool(), &self.owner).await {
            tracing::warn!(error = %err, "releasing the alert sender's deliveries");
        }
    }

    /// Claims and tries one due delivery; its id, or None when none was due.
    pub async fn send_next(&self) -> anyhow::Result<Option<i64>> {
        let pool = self.db.pool();
        if !store::any_due(pool).await? {
            return Ok(None);
        }
        let Some(delivery) = store::claim_due(pool, &self.owner, LEASE_MS).await? else {
            return Ok(None);
        };
        let tried = self.try_delivery(&delivery).await?;
        let outcome = if tried.delivered {
            Outcome::Delivered
        } else {
            match self.retry_delays.get(delivery.attempts as usize - 1) {
                Some(delay) if tried.retry => {
                    Outcome::RetryAt(now_millis() + delay.as_millis() as i64)
                }
                _ => Outcome::Failed,
            }
        };
        let mut tx = crate::db::begin_write(pool).await?;
        let mine =
            store::record_attempt(&mut tx, &delivery, &self.owner, &tried.answer, outcome).await?;
        tx.commit().await?;
        if !mine {
            tracing::warn!(
                delivery_id = delivery.id,
                "an alert's lease ran out while it was sent"
            );
        }
        match outcome {
            Outcome::Delivered => tracing::info!(
                delivery_id = delivery.id,
                channel = %delivery.channel,
                attempt = delivery.attempts,
                "alert delivered"
            ),
            _ => tracing::warn!(
                delivery_id = delivery.id,
                channel = %delivery.channel,
                attempt = delivery.attempts,
                code = tried.answer.status_code,
                error = tried.answer.error.as_deref().unwrap_or_default(),
                retry = matches!(outcome, Outcome::RetryAt(_)),
                "alert not delivered"
            ),
        }
        Ok(Some(delivery.id))
    }

    async fn try_delivery(&self, delivery: &Delivery) -> anyhow::Result<Tried> {
        let pool = self.db.pool();
        let settings = store::load(pool).await?;
        let Some(payload) = self.payload(delivery).await? else {
            return Ok(not_sent("The run or pull of this alert no longer exists."));
        };
        match delivery.channel.as_str() {
            "webhook" => {
                let (true, Some(url), Some(sealed)) = (
                    settings.webhook_enabled,
                    settings.webhook_url.as_deref(),
                    settings.webhook_secret_sealed.as_deref(),
                ) else {
                    return Ok(not_sent(
                        "Webhook alerts were turned off before this alert was sent.",
                    ));
                };
                if url != delivery.target {
                    return Ok(not_sent(
                        "The webhook URL changed before this alert was sent.",
                    ));
                }
                let secret = self.key.open(sealed)?;
                Ok(self.post(delivery.id, &secret, url, &payload).await)
            }
            _ => {
                let Some(server) = smtp_server(&settings).filter(|_| settings.email_enabled) else {
                    return Ok(not_sent(
                        "Email alerts were turned off before this alert was sent.",
                    ));
                };
                let password = self.smtp_password(&settings)?;
                Ok(self
                    .mail(&server, password.as_ref(), &delivery.target, &payload)
                    .await)
            }
        }
    }

    /// What the delivery tells: about its run, or about its pull.
    async fn payload(&self, delivery: &Delivery) -> anyhow::Result<Option<Payload>> {
        let pool = self.db.pool();
        if let Some(pull_id) = delivery.pull_id {
            let Some(pull) = crate::store::sources::find_pull(pool, pull_id).await? else {
                return Ok(None);
            };
            let name = crate::store::sources::SourceRow::find(pool, pull.source_id)
                .await?
                .map_or_else(|| "(deleted source)".to_owned(), |s| s.name);
            return Ok(Some(Payload::of_pull(&pull, &name, &self.public_url)));
        }
        let run = match delivery.run_id {
            Some(id) => runs::find(pool, id).await?,
            None => None,
        };
        let Some(run) = run else {
            return Ok(None);
        };
        let name = crate::store::destinations::name_of(pool, run.destination_id)
            .await?
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "(removed destination)".into());
        Ok(Some(Payload::of_run(
            Event::parse(&delivery.event),
            &run,
            &name,
            &self.public_url,
        )))
    }

    async fn post(&self, delivery_id: i64, secret: &str, url: &str, payload: &Payload) -> Tried {
        let body = serde_json::to_string(payload).expect("the payload serializes");
        let posted =
            webhook::post(&self.http, url, secret, delivery_id, payload.event, &body).await;
        Tried {
            answer: posted.answer,
            delivered: posted.delivered,
            retry: posted.retry,
        }
    }

    async fn mail(
        &self,
        server: &email::SmtpServer,
        password: Option<&email::SmtpPassword>,
        to: &str,
        payload: &Payload,
    ) -> Tried {
        let sent = email::send(server, password, to, &payload.subject(), &payload.text()).await;
        Tried {
            answer: sent.answer,
            delivered: sent.delivered,
            retry: sent.retry,
        }
    }

    fn smtp_password(
        &self,
        settings: &store::Settings,
    ) -> anyhow::Result<Option<email::SmtpPassword>> {
        settings
            .smtp_password_sealed
            .as_deref()
            .map(|sealed| self.key.open(sealed).map(email::SmtpPassword))
            .transpose()
    }

    /// Posts a test alert to the saved webhook at once, records the try, and says what
    /// the webhook answered.
    pub async fn test_webhook(&self) -> anyhow::Result<Result<TestResult, String>> {
        let pool = self.db.pool();
        let settings = store::load(pool).await?;
        let (Some(url), Some(sealed)) = (
            settings.webhook_url.as_deref(),
            settings.webhook_secret_sealed.as_deref(),
        ) else {
            return Ok(Err("Save a webhook URL first.".into()));
        };
        let secret = self.key.open(sealed)?;
        let id = store::insert_test(pool, "webhook", url).await?;
        let tried = self
            .post(id, &secret, url, &Payload::test(&self.public_url))
            .await;
        self.record_test(id, &tried).await?;
        Ok(Ok(TestResult::of(url, &tried)))
    }

    /// Mails a test alert to every recipient at once, records each try, and says what the
    /// SMTP server replied.
    pub async fn test_email(&self) -> anyhow::Result<Result<Vec<TestResult>, String>> {
        let pool = self.db.pool();
        let settings = store::load(pool).await?;
        let Some(server) = smtp_server(&settings) else {
            return Ok(Err("Save the SMTP settings first.".into()));
        };
        let mut conn = pool.acquire().await?;
        let to = recipients(&mut conn, &settings).await?;
        drop(conn);
        if to.is_empty() {
            return Ok(Err(
                "Choose at least one recipient (a user or another address) and save first.".into(),
            ));
        }
        let password = self.smtp_password(&settings)?;
        let payload = Payload::test(&self.public_url);
        let mut results = Vec::new();
        for address in to {
            let id = store::insert_test(pool, "email", &address).await?;
            let tried = self
                .mail(&server, password.as_ref(), &address, &payload)
                .await;
            self.record_test(id, &tried).await?;
            results.push(TestResult::of(&address, &tried));
        }
        Ok(Ok(results))
    }

    async fn record_test(&self, id: i64, tried: &Tried) -> anyhow::Result<()> {
        let mut conn = self.db.pool().acquire().await?;
        store::record_test(&mut conn, id, &tried.answer, tried.delivered).await?;
        Ok(())
    }
}

/// A try that was not made, and is not made again.
fn not_sent(why: &str) -> Tried {
    Tried {
        answer: Answer {
            error: Some(why.to_owned()),
            ..Answer::default()
        },
        delivered: false,
        retry: false,
    }
}

/// The saved SMTP server, if the settings name a whole one.
pub fn smtp_server(settings: &store::Settings) -> Option<email::SmtpServer> {
    let port = settings
        .smtp_port
        .map(|p| p.to_string())
        .unwrap_or_default();
    email::SmtpServer::parse(&email::SmtpInput {
        host: settings.smtp_host.as_deref()?,
        port: &port,
        tls: &settings.smtp_tls,
        username: settings.smtp_username.as_deref().unwrap_or_default(),
        from: settings.smtp_from.as_deref()?,
    })
    .ok()
}

/// What a test alert came to, for the page.
#[derive(Debug, Clone)]
pub struct TestResult {
    pub target: String,
    pub delivered: bool,
    pub status_code: Option<i64>,
    /// The error, or what was answered.
    pub detail: String,
}

impl TestResult {
    fn of(target: &str, tried: &Tried) -> Self {
        let detail = match (&tried.answer.error, &tried.answer.excerpt) {
            (Some(error), Some(answer)) => format!("{error} It said: {answer}"),
            (Some(error), None) => error.clone(),
            (None, Some(answer)) => answer.clone(),
            (None, None) => String::new(),
        };
        Self {
            target: target.to_owned(),
            delivered: tried.delivered,
            status_code: tried.answer.status_code,
            detail,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::runs::{Counters, RunKind};

    fn run(status: RunStatus, failed: i64) -> Run {
        Run {
            id: 7,
            destination_id: 3,
            kind: RunKind::Export,
            status,
            full_resync: false,
            created_at: 1_764_000_000_000,
            started_at: Some(1_764_000_000_000),
            finished_at: Some(1_764_000_060_000),
            cancel_requested: false,
            counters: Counters {
                created: 2,
                skipped: 1,
                failed,
                ..Counters::default()
            },
            message: Some("Mailchimp refused the credential".into()),
            changes_since: None,
            repair_missing: None,
            kept_in_sync: false,
        }
    }

    #[test]
    fn failures_always_alert_and_failed_members_from_the_threshold_on() {
        assert_eq!(
            Event::of_run(&run(RunStatus::Failure, 0), 0),
            Some(Event::RunFailed)
        );
        assert_eq!(Event::of_run(&run(RunStatus::Successful, 0), 1), None);
        assert_eq!(
            Event::of_run(&run(RunStatus::Successful, 1), 1),
            Some(Event::MembersFailed)
        );
        assert_eq!(Event::of_run(&run(RunStatus::Successful, 2), 3), None);
        assert_eq!(Event::of_run(&run(RunStatus::Successful, 900), 0), None);
        assert_eq!(Event::of_run(&run(RunStatus::Canceled, 5), 1), None);
    }

    #[test]
    fn the_payload_names_the_run_its_counts_and_its_page() {
        let base = Url::parse("https://console.example.com/base/").unwrap();
        let payload = Payload::of_run(
            Event::RunFailed,
            &run(RunStatus::Failure, 4),
            "Newsletter",
            &base,
        );
        let json = serde_json::to_value(&payload).unwrap();
        assert_eq!(json["event"], "run.failed");
        assert_eq!(json["test"], false);
        assert_eq!(json["destination"]["name"], "Newsletter");
        assert_eq!(json["run"]["status"], "failure");
        assert_eq!(json["run"]["counts"]["failed"], 4);
        assert_eq!(json["run"]["started_at"], "2025-11-24T16:00:00Z");
        assert_eq!(
            json["link"],
            "https://console.example.com/base/admin/export-runs/7"
        );
        assert_eq!(payload.subject(), "Export failed: Newsletter");
        let text = payload.text();
        assert!(text.contains("Failed: 4"), "{text}");
        assert!(text.contains("Message: Mailchimp refused the credential"));
        assert!(text.contains("https://console.example.com/base/admin/export-runs/7"));
    }
}
