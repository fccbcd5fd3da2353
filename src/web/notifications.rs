//! System > Notifications (Administrators): where failure alerts go (a webhook, people by
//! email), from how many failed members a destination's successful run alerts, a test
//! of each channel, and every delivery try with its answer.
//!
//! Secrets go one way: the webhook's secret is shown once, when made; the SMTP password
//! is never shown again. Neither is written to the audit log or the server's log.

use askama::Template;
use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tower_sessions::Session;

use crate::alerts::TestResult;
use crate::alerts::email::{self, SmtpInput, SmtpServer, TlsMode};
use crate::alerts::webhook::WebhookUrl;
use crate::auth::session;
use crate::domain::Role;
use crate::domain::text::excerpt;
use crate::domain::{EmailAddress, Invalid};
use crate::state::AppState;
use crate::store::alerts::{self as store, PasswordChange};
use crate::store::audit;
use crate::web::current_user::require;
use crate::web::page::{Nav, PageContext, render};
use crate::web::pairs::Pairs;
use crate::web::{AppError, format};

const PATH: &str = "/system/notifications";

/// The most failed members a threshold can name.
const MAX_THRESHOLD: i64 = 1_000_000;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(PATH, get(show).post(save))
        .route("/system/notifications/webhook/secret", post(new_secret))
        .route("/system/notifications/webhook/test", post(test_webhook))
        .route("/system/notifications/email/test", post(test_email))
        .route_layer(axum::middleware::from_fn_with_state(
            Role::Administrator,
            require,
        ))
}

/// The webhook form as typed (or as saved).
struct WebhookForm {
    enabled: bool,
    url: String,
}

/// The email form as typed (or as saved); never a password.
struct EmailForm {
    enabled: bool,
    host: String,
    port: String,
    tls: String,
    username: String,
    from: String,
    extra: String,
    recipient_ids: Vec<i64>,
}

struct ThresholdRow {
    id: i64,
    name: String,
    value: String,
}

struct AttemptRow {
    at: String,
    delivery_id: i64,
    run_id: Option<i64>,
    pull_id: Option<i64>,
    event: &'static str,
    channel: &'static str,
    target: String,
    attempt: i64,
    code: String,
    detail: String,
    outcome: &'static str,
}

struct UserChoice {
    id: i64,
    email: String,
    name: String,
}

/// What a test send came to, for the page.
struct TestReport {
    channel: &'static str,
    results: Vec<TestResult>,
    problem: Option<String>,
}

#[derive(Template)]
#[template(path = "system/notifications.html")]
struct NotificationsPage {
    ctx: PageContext,
    /// When an undelivered alert is tried again, in a sentence.
    retry_text: String,
    webhook: WebhookForm,
    /// When the webhook's secret was made; None: it has none yet.
    secret_made: Option<String>,
    /// A secret just made: shown this once.
    new_secret: Option<String>,
    email: EmailForm,
    password_set: bool,
    tls_modes: Vec<(&'static str, &'static str)>,
    users: Vec<UserChoice>,
    thresholds: Vec<ThresholdRow>,
    default_threshold: i64,
    attempts: Vec<AttemptRow>,
    /// Problems with what was just sent, and the form they belong to.
    errors: Vec<String>,
    test: Option<TestReport>,
}

/// Replaces what the page shows as saved by what was just typed into one form.
#[derive(Default)]
struct Typed {
    webhook: Option<WebhookForm>,
    email: Option<EmailForm>,
    thresholds: Option<Vec<ThresholdRow>>,
    errors: Vec<String>,
    new_secret: Option<String>,
    test: Option<TestReport>,
}

async fn page(
    state: &AppState,
    ctx: PageContext,
    typed: Typed,
) -> Result<NotificationsPage, AppError> {
    let pool = state.db.pool();
    let saved = store::load(pool).await?;
    let recipient_ids = store::recipient_ids(pool).await?;
    let users = crate::store::users::list(pool)
        .await?
        .into_iter()
        .filter(|u| u.is_active())
        .map(|u| UserChoice {
            id: u.id,
            email: u.email,
            name: u.name,
        })
        .collect();
    let thresholds = match typed.thresholds {
        Some(rows) => rows,
        None => {
            let set = store::thresholds(pool).await?;
            crate::store::destinations::list(pool)
                .await?
                .into_iter()
                .filter(|d| d.is_active())
                .map(|d| ThresholdRow {
                    value: set
                        .get(&d.id)
                        .copied()
                        .unwrap_or(store::DEFAULT_FAILED_MEMBERS)
                        .to_string(),
                    id: d.id,
                    name: d.display_name,
                })
                .collect()
        }
    };
    let attempts = store::recent_attempts(pool, 50)
        .await?
        .into_iter()
        .map(attempt_row)
        .collect();
    Ok(NotificationsPage {
        ctx: ctx.at(Nav::Notifications),
        retry_text: retry_text(&state.settings.alert_retry_delays),
        webhook: typed.webhook.unwrap_or(WebhookForm {
            enabled: saved.webhook_enabled,
            url: saved.webhook_url.clone().unwrap_or_default(),
        }),
        secret_made: saved
            .webhook_secret_sealed
            .as_ref()
            .map(|_| format::optional_timestamp(saved.webhook_secret_at)),
        new_secret: typed.new_secret,
        email: typed.email.unwrap_or(EmailForm {
            enabled: saved.email_enabled,
            host: saved.smtp_host.clone().unwrap_or_default(),
            port: saved.smtp_port.map(|p| p.to_string()).unwrap_or_default(),
            tls: saved.smtp_tls.clone(),
            username: saved.smtp_username.clone().unwrap_or_default(),
            from: saved.smtp_from.clone().unwrap_or_default(),
            extra: saved.extra_recipients.clone(),
            recipient_ids,
        }),
        password_set: saved.smtp_password_sealed.is_some(),
        tls_modes: TlsMode::ALL
            .iter()
            .map(|m| (m.as_str(), m.label()))
            .collect(),
        users,
        thresholds,
        default_threshold: store::DEFAULT_FAILED_MEMBERS,
        attempts,
        errors: typed.errors,
        test: typed.test,
    })
}

/// "An alert not delivered is tried again after 1 s, then 5 s, then 30 s."
fn retry_text(delays: &[std::time::Duration]) -> String {
    if delays.is_empty() {
        return "An alert not delivered is not tried again.".into();
    }
    let waits: Vec<String> = delays
        .iter()
        .map(|d| {
            let ms = d.as_millis();
            if ms % 1000 == 0 {
                format!("{} s", ms / 1000)
            } else {
                format!("{ms} ms")
            }
        })
        .collect();
    format!(
        "An alert not delivered (no connection, or an answer 5xx or 429) is tried again after {}.",
        waits.join(", then ")
    )
}

fn attempt_row(a: store::Attempt) -> AttemptRow {
    let event = match a.event.as_str() {
        "test" => "Test",
        "run.members_failed" => "Failed members",
        "pull.failed" => "Pull failed",
        _ => "Run failed",
    };
    let channel = if a.channel == "webhook" {
        "Webhook"
    } else {
        "Email"
    };
    let outcome = match a.outcome.as_str() {
        "delivered" => "Delivered",
        "retry" => "Tried again later",
        _ => "Not delivered",
    };
    let detail = match (a.error, a.answer) {
        (Some(error), Some(answer)) => format!("{error} Answer: {answer}"),
        (Some(error), None) => error,
        (None, Some(answer)) => answer,
        (None, None) => String::new(),
    };
    AttemptRow {
        at: format::timestamp(a.at),
        delivery_id: a.delivery_id,
        run_id: a.run_id,
        pull_id: a.pull_id,
        event,
        channel,
        target: a.target,
        attempt: a.attempt,
        code: a.status_code.map(|c| c.to_string()).unwrap_or_default(),
        detail,
        outcome,
    }
}

async fn show(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    Ok(render(&page(&state, ctx, Typed::default()).await?)?.into_response())
}

/// A form that was not accepted, shown again as typed with what is wrong.
async fn refused(state: &AppState, ctx: PageContext, typed: Typed) -> Result<Response, AppError> {
    let page = page(state, ctx, typed).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

async fn save(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    pairs: Pairs,
) -> Result<Response, AppError> {
    let pool = state.db.pool();
    let mut errors: Vec<Invalid> = Vec::new();

    let webhook = WebhookForm {
        enabled: pairs.get("webhook_enabled") == "yes",
        url: pairs.get("webhook_url"),
    };
    // An empty URL is allowed while webhook alerts are off (it clears the URL).
    let url = if webhook.url.trim().is_empty() && !webhook.enabled {
        None
    } else {
        WebhookUrl::parse(&webhook.url)
            .map_err(|err| errors.push(err))
            .ok()
    };

    let recipient_ids = recipients(pool, &pairs, &mut errors).await?;
    let (email, server, extra) = email_typed(&pairs, recipient_ids, &mut errors);
    let password = pairs.get("smtp_password");
    let remove_password = pairs.get("remove_password") == "yes";
    if password.chars().count() > 500 {
        errors.push(Invalid::new("SMTP password: at most 500 characters."));
    }

    let (rows, thresholds) = thresholds_typed(pool, &pairs, &mut errors).await?;

    if !errors.is_empty() {
        // Everything typed comes back, but the password (never put in a page).
        let typed = Typed {
            webhook: Some(webhook),
            email: Some(email),
            thresholds: Some(rows),
            errors: errors.into_iter().map(String::from).collect(),
            ..Typed::default()
        };
        return refused(&state, ctx, typed).await;
    }

    let saved = store::load(pool).await?;
    // The first webhook gets its secret now; a later one keeps it.
    let secret =
        (url.is_some() && saved.webhook_secret_sealed.is_none()).then(crate::crypto::random_token);
    let sealed = secret.as_deref().map(|s| state.secret_key.seal(s));
    let change = if remove_password {
        PasswordChange::Remove
    } else if password.is_empty() {
        PasswordChange::Keep
    } else {
        PasswordChange::Set(state.secret_key.seal(&password))
    };
    let extra_text = extra
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let smtp = smtp_row(&email, server.as_ref(), &extra_text);

    let mut tx = crate::db::begin_write(pool).await?;
    store::save_webhook(
        &mut *tx,
        webhook.enabled,
        url.as_ref().map(WebhookUrl::as_str),
        sealed.as_deref(),
        ctx.user.id,
    )
    .await?;
    store::save_email(&mut tx, &smtp, &change, &email.recipient_ids, ctx.user.id).await?;
    let changed = save_thresholds(&mut tx, &thresholds, &rows).await?;
    let details = in_words(&Saved {
        webhook: &webhook,
        url: url.as_ref(),
        new_secret: secret.is_some(),
        email: &email,
        server: server.as_ref(),
        extra: extra.len(),
        password: &change,
        thresholds: &changed,
    });
    note(&mut tx, &ctx, &details).await?;
    tx.commit().await?;
    let saved_message = "Saved the notification settings.";
    match secret {
        // Shown in this answer only: never put in the session, never shown again.
        Some(secret) => {
            let mut ctx = ctx;
            ctx.flash = Some(saved_message.into());
            let typed = Typed {
                new_secret: Some(secret),
                ..Typed::default()
            };
            Ok(render(&page(&state, ctx, typed).await?)?.into_response())
        }
        None => {
            session::set_flash(&session, saved_message).await?;
            Ok(Redirect::to(PATH).into_response())
        }
    }
}

/// The email settings as the store keeps them.
fn smtp_row<'a>(
    email: &'a EmailForm,
    server: Option<&'a SmtpServer>,
    extra_recipients: &'a str,
) -> store::Smtp<'a> {
    store::Smtp {
        enabled: email.enabled,
        host: server.map(|s| s.host.as_str()),
        port: server.map(|s| i64::from(s.port)),
        tls: server.map_or(TlsMode::StartTls, |s| s.tls).as_str(),
        username: server.and_then(|s| s.username.as_deref()),
        from: server.map(|s| s.from.as_str()),
        extra_recipients,
    }
}

/// Saves the thresholds that changed; says each change ("Weekly: 10 → 25") for the audit.
async fn save_thresholds(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    thresholds: &[(i64, i64)],
    rows: &[ThresholdRow],
) -> Result<Vec<String>, AppError> {
    let before = store::thresholds(&mut **tx).await?;
    let mut changed = Vec::new();
    for (id, n) in thresholds {
        let was = before
            .get(id)
            .copied()
            .unwrap_or(store::DEFAULT_FAILED_MEMBERS);
        if was != *n {
            store::set_threshold(tx, *id, *n).await?;
            let name = rows
                .iter()
                .find(|r| r.id == *id)
                .map_or("", |r| r.name.as_str());
            changed.push(format!("{name}: {was} → {n}"));
        }
    }
    Ok(changed)
}

/// The email settings as typed, with the SMTP server and the other addresses they name
/// (none where they do not read; `errors` says why).
fn email_typed(
    pairs: &Pairs,
    recipient_ids: Vec<i64>,
    errors: &mut Vec<Invalid>,
) -> (EmailForm, Option<SmtpServer>, Vec<EmailAddress>) {
    let email = EmailForm {
        enabled: pairs.get("email_enabled") == "yes",
        host: pairs.get("smtp_host"),
        port: pairs.get("smtp_port"),
        tls: pairs.get("smtp_tls"),
        username: pairs.get("smtp_username"),
        from: pairs.get("smtp_from"),
        extra: pairs.get("extra_recipients"),
        recipient_ids,
    };
    let nothing_typed = [&email.host, &email.port, &email.username, &email.from]
        .iter()
        .all(|v| v.trim().is_empty());
    // Nothing typed and email off: the SMTP settings are cleared.
    let server = if nothing_typed && !email.enabled {
        None
    } else {
        SmtpServer::parse(&SmtpInput {
            host: &email.host,
            port: &email.port,
            tls: &email.tls,
            username: &email.username,
            from: &email.from,
        })
        .map_err(|problems| errors.extend(problems))
        .ok()
    };
    let extra = email::parse_addresses(&email.extra)
        .map_err(|problems| errors.extend(problems))
        .unwrap_or_default();
    if email.enabled && email.recipient_ids.is_empty() && extra.is_empty() {
        errors.push(Invalid::new(
            "Recipients: choose at least one user or type another address, or turn email alerts off.",
        ));
    }
    (email, server, extra)
}

/// The users chosen as recipients: each an active user of the console.
async fn recipients(
    pool: &sqlx::AnyPool,
    pairs: &Pairs,
    errors: &mut Vec<Invalid>,
) -> Result<Vec<i64>, AppError> {
    let active: Vec<i64> = crate::store::users::list(pool)
        .await?
        .into_iter()
        .filter(|u| u.is_active())
        .map(|u| u.id)
        .collect();
    let mut recipient_ids = Vec::new();
    for raw in pairs.all("recipient") {
        match raw.parse::<i64>() {
            Ok(id) if active.contains(&id) => {
                if !recipient_ids.contains(&id) {
                    recipient_ids.push(id);
                }
            }
            _ => errors.push(Invalid::new(format!(
                "Recipients: “{}” is not an active user of this console.",
                excerpt(raw)
            ))),
        }
    }
    Ok(recipient_ids)
}

/// Each saved destination's failed-members threshold as typed, and those that are numbers
/// in range.
async fn thresholds_typed(
    pool: &sqlx::AnyPool,
    pairs: &Pairs,
    errors: &mut Vec<Invalid>,
) -> Result<(Vec<ThresholdRow>, Vec<(i64, i64)>), AppError> {
    let destinations: Vec<_> = crate::store::destinations::list(pool)
        .await?
        .into_iter()
        .filter(|d| d.is_active())
        .collect();
    let mut rows = Vec::new();
    let mut thresholds = Vec::new();
    for d in destinations {
        let raw = pairs.get(&format!("threshold_{}", d.id));
        match raw.trim().parse::<i64>() {
            Ok(n) if (0..=MAX_THRESHOLD).contains(&n) => thresholds.push((d.id, n)),
            _ => errors.push(Invalid::new(format!(
                "Failed members for {}: “{}” is not a number from 0 (no alert for failed members) to {}.",
                d.display_name,
                excerpt(&raw),
                format::count(MAX_THRESHOLD)
            ))),
        }
        rows.push(ThresholdRow {
            id: d.id,
            name: d.display_name,
            value: raw,
        });
    }
    Ok((rows, thresholds))
}

/// What a save of the settings set, for the audit log.
struct Saved<'a> {
    webhook: &'a WebhookForm,
    url: Option<&'a WebhookUrl>,
    new_secret: bool,
    email: &'a EmailForm,
    server: Option<&'a SmtpServer>,
    extra: usize,
    password: &'a PasswordChange,
    /// Thresholds changed: "name: before → after".
    thresholds: &'a [String],
}

/// What changed, in words; no secret, and of the webhook's URL only its origin (a path may
/// carry a token).
fn in_words(saved: &Saved<'_>) -> String {
    let mut details = vec![
        format!(
            "Webhook alerts {}, to {}{}",
            if saved.webhook.enabled { "on" } else { "off" },
            saved
                .url
                .map(WebhookUrl::origin)
                .unwrap_or_else(|| "no URL".into()),
            if saved.new_secret {
                ", with a new signing secret"
            } else {
                ""
            }
        ),
        format!(
            "email alerts {}, {}, {} recipient(s), SMTP password {}",
            if saved.email.enabled { "on" } else { "off" },
            saved
                .server
                .map(|s| format!("through {} from {}", s.describe(), s.from.as_str()))
                .unwrap_or_else(|| "no SMTP server".into()),
            saved.email.recipient_ids.len() + saved.extra,
            match saved.password {
                PasswordChange::Keep => "unchanged",
                PasswordChange::Set(_) => "changed",
                PasswordChange::Remove => "removed",
            }
        ),
    ];
    if !saved.thresholds.is_empty() {
        details.push(format!("failed members: {}", saved.thresholds.join(", ")));
    }
    details.join("; ")
}

/// Notes a change of the failure alerts in the audit log.
async fn note(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    ctx: &PageContext,
    details: &str,
) -> Result<(), AppError> {
    let actor = ctx.user.actor();
    audit::record(
        &mut **tx,
        &actor,
        "notifications",
        None,
        "Failure alerts",
        details,
    )
    .await?;
    Ok(())
}

async fn new_secret(
    State(state): State<AppState>,
    mut ctx: PageContext,
) -> Result<Response, AppError> {
    let saved = store::load(state.db.pool()).await?;
    let Some(url) = saved.webhook_url.as_deref() else {
        let typed = Typed {
            errors: vec!["Save a webhook URL first: its secret is made then.".into()],
            ..Typed::default()
        };
        return refused(&state, ctx, typed).await;
    };
    let secret = crate::crypto::random_token();
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    store::save_webhook(
        &mut *tx,
        saved.webhook_enabled,
        Some(url),
        Some(&state.secret_key.seal(&secret)),
        ctx.user.id,
    )
    .await?;
    let details = "A new webhook signing secret was made; the old one no longer signs";
    note(&mut tx, &ctx, details).await?;
    tx.commit().await?;
    ctx.flash = Some("Made a new secret: alerts are signed with it from now on.".into());
    let typed = Typed {
        new_secret: Some(secret),
        ..Typed::default()
    };
    Ok(render(&page(&state, ctx, typed).await?)?.into_response())
}

async fn test_webhook(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Response, AppError> {
    let outcome = state
        .alerts
        .test_webhook()
        .await?
        .map(|result| vec![result]);
    tested(&state, ctx, "webhook", outcome).await
}

async fn test_email(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let outcome = state.alerts.test_email().await?;
    tested(&state, ctx, "email", outcome).await
}

/// The page again, with what a test send came to: each delivery, or why none was tried.
async fn tested(
    state: &AppState,
    ctx: PageContext,
    channel: &'static str,
    outcome: Result<Vec<TestResult>, String>,
) -> Result<Response, AppError> {
    let (results, problem) = match outcome {
        Ok(results) => (results, None),
        Err(problem) => (Vec::new(), Some(problem)),
    };
    let report = TestReport {
        channel,
        results,
        problem,
    };
    let typed = Typed {
        test: Some(report),
        ..Typed::default()
    };
    Ok(render(&page(state, ctx, typed).await?)?.into_response())
}
