//! Failure alerts as stored: the settings (one row), who gets alert emails, each
//! destination's threshold, and every delivery with its attempts. Deliveries are claimed
//! under a lease like runs, so two consoles on one database never send the same alert.

use std::collections::HashMap;

use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::db::now_millis;

/// A successful run alerts when at least this many members failed, unless the
/// administrator set another number for its destination.
pub const DEFAULT_FAILED_MEMBERS: i64 = 1;

/// The alert settings as stored; secrets stay sealed.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub webhook_enabled: bool,
    pub webhook_url: Option<String>,
    pub webhook_secret_sealed: Option<String>,
    pub webhook_secret_at: Option<i64>,
    pub email_enabled: bool,
    pub smtp_host: Option<String>,
    pub smtp_port: Option<i64>,
    /// `none`, `starttls` or `tls`.
    pub smtp_tls: String,
    pub smtp_username: Option<String>,
    pub smtp_password_sealed: Option<String>,
    pub smtp_from: Option<String>,
    /// Addresses beside the console's users, one a line.
    pub extra_recipients: String,
}

pub async fn load<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Settings> {
    sqlx::query(
        "SELECT webhook_enabled, webhook_url, webhook_secret_sealed, webhook_secret_at, email_enabled, \
         smtp_host, smtp_port, smtp_tls, smtp_username, smtp_password_sealed, smtp_from, extra_recipients \
         FROM alert_settings WHERE id = 1",
    )
    .try_map(|row: AnyRow| {
        Ok(Settings {
            webhook_enabled: row.try_get::<i64, _>("webhook_enabled")? != 0,
            webhook_url: row.try_get("webhook_url")?,
            webhook_secret_sealed: row.try_get("webhook_secret_sealed")?,
            webhook_secret_at: row.try_get("webhook_secret_at")?,
            email_enabled: row.try_get::<i64, _>("email_enabled")? != 0,
            smtp_host: row.try_get("smtp_host")?,
            smtp_port: row.try_get("smtp_port")?,
            smtp_tls: row.try_get("smtp_tls")?,
            smtp_username: row.try_get("smtp_username")?,
            smtp_password_sealed: row.try_get("smtp_password_sealed")?,
            smtp_from: row.try_get("smtp_from")?,
            extra_recipients: row.try_get("extra_recipients")?,
        })
    })
    .fetch_one(db)
    .await
}

/// Saves the webhook; `secret_sealed` replaces the secret when given.
pub async fn save_webhook<'e>(
    db: impl Executor<'e, Database = Any>,
    enabled: bool,
    url: Option<&str>,
    secret_sealed: Option<&str>,
    by: i64,
) -> sqlx::Result<()> {
    let now = now_millis();
    super::execute(
        db,
        "UPDATE alert_settings SET webhook_enabled = $1, webhook_url = $2, \
         webhook_secret_sealed = COALESCE($3, webhook_secret_sealed), \
         webhook_secret_at = CASE WHEN $3 IS NULL THEN webhook_secret_at ELSE $4 END, \
         updated_at = $4, updated_by = $5 WHERE id = 1",
        &[
            i64::from(enabled).into(),
            url.into(),
            secret_sealed.into(),
            now.into(),
            by.into(),
        ],
    )
    .await
}

/// What becomes of the saved SMTP password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PasswordChange {
    Keep,
    /// The new password, sealed.
    Set(String),
    Remove,
}

/// The email settings to save (the password apart).
pub struct Smtp<'a> {
    pub enabled: bool,
    pub host: Option<&'a str>,
    pub port: Option<i64>,
    pub tls: &'a str,
    pub username: Option<&'a str>,
    pub from: Option<&'a str>,
    pub extra_recipients: &'a str,
}

/// Saves the email settings and who gets alert emails, in one transaction.
pub async fn save_email(
    conn: &mut AnyConnection,
    smtp: &Smtp<'_>,
    password: &PasswordChange,
    recipient_ids: &[i64],
    by: i64,
) -> sqlx::Result<()> {
    let (password_mode, sealed) = match password {
        PasswordChange::Keep => ("keep", None),
        PasswordChange::Set(sealed) => ("set", Some(sealed.as_str())),
        PasswordChange::Remove => ("remove", None),
    };
    sqlx::query(
        "UPDATE alert_settings SET email_enabled = $1, smtp_host = $2, smtp_port = $3, smtp_tls = $4, \
         smtp_username = $5, smtp_from = $6, extra_recipients = $7, \
         smtp_password_sealed = CASE $8 WHEN 'keep' THEN smtp_password_sealed WHEN 'set' THEN $9 ELSE NULL END, \
         updated_at = $10, updated_by = $11 WHERE id = 1",
    )
    .bind(i64::from(smtp.enabled))
    .bind(smtp.host)
    .bind(smtp.port)
    .bind(smtp.tls)
    .bind(smtp.username)
    .bind(smtp.from)
    .bind(smtp.extra_recipients)
    .bind(password_mode)
    .bind(sealed)
    .bind(now_millis())
    .bind(by)
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM alert_recipients")
        .execute(&mut *conn)
        .await?;
    for id in recipient_ids {
        sqlx::query("INSERT INTO alert_recipients (user_id) VALUES ($1)")
            .bind(id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}

/// The users chosen to get alert emails (active or not).
pub async fn recipient_ids<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar("SELECT user_id FROM alert_recipients ORDER BY user_id")
        .fetch_all(db)
        .await
}

/// The addresses of the chosen users whose accounts are active.
pub async fn active_recipient_emails<'e>(
    db: impl Executor<'e, Database = Any>,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT u.email FROM alert_recipients r JOIN users u ON u.id = r.user_id \
         WHERE u.deactivated_at IS NULL ORDER BY u.email",
    )
    .fetch_all(db)
    .await
}

/// Every destination's threshold that differs from the default.
pub async fn thresholds<'e>(
    db: impl Executor<'e, Database = Any>,
) -> sqlx::Result<HashMap<i64, i64>> {
    let rows: Vec<(i64, i64)> =
        sqlx::query_as("SELECT destination_id, failed_members FROM alert_thresholds")
            .fetch_all(db)
            .await?;
    Ok(rows.into_iter().collect())
}

/// The number of failed members from which a successful run of the destination alerts
/// (0: never).
pub async fn threshold<'e>(
    db: impl Executor<'e, Database = Any>,
    destination_id: i64,
) -> sqlx::Result<i64> {
    let set: Option<i64> =
        sqlx::query_scalar("SELECT failed_members FROM alert_thresholds WHERE destination_id = $1")
            .bind(destination_id)
            .fetch_optional(db)
            .await?;
    Ok(set.unwrap_or(DEFAULT_FAILED_MEMBERS))
}

pub async fn set_threshold(
    conn: &mut AnyConnection,
    destination_id: i64,
    failed_members: i64,
) -> sqlx::Result<()> {
    sqlx::query("DELETE FROM alert_thresholds WHERE destination_id = $1")
        .bind(destination_id)
        .execute(&mut *conn)
        .await?;
    super::execute(
        &mut *conn,
        "INSERT INTO alert_thresholds (destination_id, failed_members) VALUES ($1, $2)",
        &[destination_id.into(), failed_members.into()],
    )
    .await
}

/// One alert to send to one target.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: i64,
    pub run_id: Option<i64>,
    /// Set instead of the run for an alert about a source's pull.
    pub pull_id: Option<i64>,
    pub event: String,
    pub channel: String,
    pub target: String,
    /// Tries so far, this one included once claimed.
    pub attempts: i64,
}

const DELIVERY_COLUMNS: &str = "id, run_id, pull_id, event, channel, target, attempts";

fn delivery_from_row(row: AnyRow) -> sqlx::Result<Delivery> {
    Ok(Delivery {
        id: row.try_get("id")?,
        run_id: row.try_get("run_id")?,
        pull_id: row.try_get("pull_id")?,
        event: row.try_get("event")?,
        channel: row.try_get("channel")?,
        target: row.try_get("target")?,
        attempts: row.try_get("attempts")?,
    })
}

/// Queues an alert of a run to one target; a second queueing of the same alert is a
/// no-op. True when it was queued.
/// What an alert is about.
#[derive(Debug, Clone, Copy)]
pub enum About {
    Run(i64),
    Pull(i64),
}

pub async fn queue(
    conn: &mut AnyConnection,
    about: About,
    event: &str,
    channel: &str,
    target: &str,
) -> sqlx::Result<bool> {
    let now = now_millis();
    let (column, id) = match about {
        About::Run(id) => ("run_id", id),
        About::Pull(id) => ("pull_id", id),
    };
    let done = sqlx::query(&format!(
        "INSERT INTO alert_deliveries ({column}, event, channel, target, status, next_attempt_at, created_at) \
         VALUES ($1, $2, $3, $4, 'pending', $5, $5) ON CONFLICT DO NOTHING"
    ))
    .bind(id)
    .bind(event)
    .bind(channel)
    .bind(target)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// A test alert, sent at once by the page (never by the background sender).
pub async fn insert_test<'e>(
    db: impl Executor<'e, Database = Any>,
    channel: &str,
    target: &str,
) -> sqlx::Result<i64> {
    let now = now_millis();
    sqlx::query_scalar(
        "INSERT INTO alert_deliveries (run_id, event, channel, target, status, attempts, next_attempt_at, created_at) \
         VALUES (NULL, 'test', $1, $2, 'test', 1, $3, $3) RETURNING id",
    )
    .bind(channel)
    .bind(target)
    .bind(now)
    .fetch_one(db)
    .await
}

/// Whether any delivery is due: a read, so that an idle sender's polling never takes
/// SQLite's write lock from an export.
pub async fn any_due<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<bool> {
    let now = now_millis();
    let due: Option<i64> = sqlx::query_scalar(
        "SELECT id FROM alert_deliveries WHERE status = 'pending' AND next_attempt_at <= $1 \
         AND (lease_expires_at IS NULL OR lease_expires_at < $1) LIMIT 1",
    )
    .bind(now)
    .fetch_optional(db)
    .await?;
    Ok(due.is_some())
}

/// Claims the delivery due first (one never tried, or whose next try is due, or whose
/// sender stopped and left its lease to run out), counting the try.
pub async fn claim_due<'e>(
    db: impl Executor<'e, Database = Any>,
    owner: &str,
    lease_ms: i64,
) -> sqlx::Result<Option<Delivery>> {
    let now = now_millis();
    // The outer condition repeats the inner one: of two senders racing for a delivery, the
    // second re-checks it after the first's update and claims nothing.
    sqlx::query(&format!(
        "UPDATE alert_deliveries SET lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1 \
         WHERE id = (SELECT id FROM alert_deliveries WHERE status = 'pending' AND next_attempt_at <= $3 \
                       AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
                     ORDER BY next_attempt_at, id LIMIT 1) \
           AND status = 'pending' AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
         RETURNING {DELIVERY_COLUMNS}"
    ))
    .bind(owner)
    .bind(now + lease_ms)
    .bind(now)
    .try_map(delivery_from_row)
    .fetch_optional(db)
    .await
}

/// Gives up a sender's leases at once (at shutdown), so the next start sends what it left.
pub async fn release<'e>(db: impl Executor<'e, Database = Any>, owner: &str) -> sqlx::Result<()> {
    super::execute(
        db,
        "UPDATE alert_deliveries SET lease_owner = NULL, lease_expires_at = NULL \
         WHERE lease_owner = $1 AND status = 'pending'",
        &[owner.into()],
    )
    .await
}

/// What one try was answered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Answer {
    /// The HTTP status, or the SMTP reply code.
    pub status_code: Option<i64>,
    /// Why there was no (good) answer, in words.
    pub error: Option<String>,
    /// At most 500 characters of what was answered.
    pub excerpt: Option<String>,
}

/// How a try ended for its delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Delivered,
    /// Tried again at this time (milliseconds since the epoch).
    RetryAt(i64),
    /// Not tried again.
    Failed,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Delivered => "delivered",
            Outcome::RetryAt(_) => "retry",
            Outcome::Failed => "failed",
        }
    }
}

/// Records a try and what becomes of the delivery; false (and nothing changed) when the
/// delivery is no longer this sender's.
pub async fn record_attempt(
    conn: &mut AnyConnection,
    delivery: &Delivery,
    owner: &str,
    answer: &Answer,
    outcome: Outcome,
) -> sqlx::Result<bool> {
    let (status, next) = match outcome {
        Outcome::Delivered => ("delivered", None),
        Outcome::RetryAt(at) => ("pending", Some(at)),
        Outcome::Failed => ("failed", None),
    };
    let mine = sqlx::query(
        "UPDATE alert_deliveries SET status = $1, next_attempt_at = COALESCE($2, next_attempt_at), \
         lease_owner = NULL, lease_expires_at = NULL \
         WHERE id = $3 AND lease_owner = $4 AND status = 'pending'",
    )
    .bind(status)
    .bind(next)
    .bind(delivery.id)
    .bind(owner)
    .execute(&mut *conn)
    .await?;
    if mine.rows_affected() != 1 {
        return Ok(false);
    }
    insert_attempt(&mut *conn, delivery.id, delivery.attempts, answer, outcome).await?;
    Ok(true)
}

/// Records the one try of a test alert.
pub async fn record_test(
    conn: &mut AnyConnection,
    delivery_id: i64,
    answer: &Answer,
    delivered: bool,
) -> sqlx::Result<()> {
    let outcome = if delivered {
        Outcome::Delivered
    } else {
        Outcome::Failed
    };
    insert_attempt(&mut *conn, delivery_id, 1, answer, outcome).await
}

async fn insert_attempt(
    conn: &mut AnyConnection,
    delivery_id: i64,
    attempt: i64,
    answer: &Answer,
    outcome: Outcome,
) -> sqlx::Result<()> {
    super::execute(&mut *conn, "INSERT INTO alert_attempts (delivery_id, attempt, at, status_code, error, answer, outcome) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)", &[delivery_id.into(), attempt.into(), now_millis().into(), answer.status_code.into(), answer.error.as_deref().into(), answer.excerpt.as_deref().into(), outcome.as_str().into()]).await
}

/// One try, as the Notifications page lists it.
#[derive(Debug, Clone)]
pub struct Attempt {
    pub delivery_id: i64,
    pub run_id: Option<i64>,
    pub pull_id: Option<i64>,
    pub event: String,
    pub channel: String,
    pub target: String,
    pub attempt: i64,
    pub at: i64,
    pub status_code: Option<i64>,
    pub error: Option<String>,
    pub answer: Option<String>,
    /// `delivered`, `retry` or `failed`.
    pub outcome: String,
}

/// The latest tries, newest first.
pub async fn recent_attempts<'e>(
    db: impl Executor<'e, Database = Any>,
    limit: i64,
) -> sqlx::Result<Vec<Attempt>> {
    sqlx::query(
        "SELECT a.delivery_id, d.run_id, d.pull_id, d.event, d.channel, d.target, a.attempt, a.at, a.status_code, \
         a.error, a.answer, a.outcome \
         FROM alert_attempts a JOIN alert_deliveries d ON d.id = a.delivery_id \
         ORDER BY a.id DESC LIMIT $1",
    )
    .bind(limit)
    .try_map(|row: AnyRow| {
        Ok(Attempt {
            delivery_id: row.try_get("delivery_id")?,
            run_id: row.try_get("run_id")?,
            pull_id: row.try_get("pull_id")?,
            event: row.try_get("event")?,
            channel: row.try_get("channel")?,
            target: row.try_get("target")?,
            attempt: row.try_get("attempt")?,
            at: row.try_get("at")?,
            status_code: row.try_get("status_code")?,
            error: row.try_get("error")?,
            answer: row.try_get("answer")?,
            outcome: row.try_get("outcome")?,
        })
    })
    .fetch_all(db)
    .await
}

/// The deliveries of a run: (channel, target, status, attempts).
pub async fn deliveries_of_run<'e>(
    db: impl Executor<'e, Database = Any>,
    run_id: i64,
) -> sqlx::Result<Vec<(String, String, String, i64)>> {
    sqlx::query_as(
        "SELECT channel, target, status, attempts FROM alert_deliveries WHERE run_id = $1 ORDER BY id",
    )
    .bind(run_id)
    .fetch_all(db)
    .await
}
