//! `/hooks/mailchimp/{destination_id}/{secret}`: where Mailchimp tells the console of
//! unsubscribes, bounces, profile and address changes in a destination's audience. Machine
//! to machine: no session and no CSRF token, but the URL's secret (compared in constant
//! time); a wrong secret or an unknown destination is a 404, as a URL that does not exist.
//! Mailchimp checks the URL with a GET (answered 200) and posts each event as a form.

use std::collections::HashMap;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::domain::MemberStatus;
use crate::export::webhooks::{ADDRESS_CHANGED, PATH};
use crate::state::AppState;
use crate::store::destinations::Destination;
use crate::store::webhooks::{self, Event};

/// Mailchimp's events are a few hundred bytes; a profile with many merge fields a few KiB.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;

pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            &format!("/{PATH}/{{destination_id}}/{{secret}}"),
            get(probe).post(event),
        )
        .layer(DefaultBodyLimit::max(MAX_EVENT_BYTES))
}

fn plain(status: StatusCode, text: &'static str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        text,
    )
        .into_response()
}

fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "Not found.\n")
}

/// The destination whose webhook URL this is, if the secret is right.
async fn authorised(
    state: &AppState,
    destination_id: &str,
    secret: &str,
) -> Result<Option<Destination>, Response> {
    let Ok(id) = destination_id.parse::<i64>() else {
        return Ok(None);
    };
    if secret.is_empty() || secret.len() > 200 {
        return Ok(None);
    }
    let pool = state.db.pool();
    let failed = |err: sqlx::Error| {
        tracing::error!(error = %err, "reading a webhook's destination");
        plain(StatusCode::SERVICE_UNAVAILABLE, "Try again later.\n")
    };
    let Some(registration) = webhooks::find(pool, id).await.map_err(failed)? else {
        return Ok(None);
    };
    let Ok(expected) = state.secret_key.open(&registration.secret_sealed) else {
        return Ok(None);
    };
    if !crate::crypto::constant_time_eq(&expected, secret) {
        return Ok(None);
    }
    let destination = crate::store::destinations::find(pool, id)
        .await
        .map_err(failed)?;
    Ok(destination.filter(|d| d.is_active() || d.is_removing()))
}

/// Mailchimp's check of the URL, when the webhook is created (and anyone's, with the
/// secret).
async fn probe(
    State(state): State<AppState>,
    Path((destination_id, secret)): Path<(String, String)>,
) -> Response {
    match authorised(&state, &destination_id, &secret).await {
        Ok(Some(_)) => plain(StatusCode::OK, "OK\n"),
        Ok(None) => not_found(),
        Err(response) => response,
    }
}

async fn event(
    State(state): State<AppState>,
    Path((destination_id, secret)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let destination = match authorised(&state, &destination_id, &secret).await {
        Ok(Some(destination)) => destination,
        Ok(None) => return not_found(),
        Err(response) => return response,
    };
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    if form_type.as_deref() != Some("application/x-www-form-urlencoded") {
        return plain(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Send the event as application/x-www-form-urlencoded.\n",
        );
    }
    let mut fields: HashMap<String, String> = HashMap::new();
    for (key, value) in url::form_urlencoded::parse(&body) {
        fields.entry(key.into_owned()).or_insert(value.into_owned());
    }
    let field = |name: &str| fields.get(name).map(|v| v.trim()).filter(|v| !v.is_empty());
    if let Some(list) = field("data[list_id]") {
        if list != destination.audience_id {
            tracing::warn!(
                destination_id = destination.id,
                "a webhook event for another audience was ignored"
            );
            return plain(StatusCode::OK, "Ignored: another audience.\n");
        }
    }
    let kind = field("type").unwrap_or_default();
    let address = match kind {
        "unsubscribe" | "cleaned" | "profile" => field("data[email]"),
        "upemail" => field("data[old_email]"),
        // Not asked for: nothing to do.
        _ => return plain(StatusCode::OK, "Ignored.\n"),
    };
    let Some(address) = address else {
        return plain(StatusCode::BAD_REQUEST, "The event names no address.\n");
    };
    let email_hash = crate::domain::subscriber_hash(address);
    let fired_at: String = field("fired_at")
        .unwrap_or_default()
        .chars()
        .take(32)
        .collect();
    match apply(&state, &destination, kind, &email_hash, &fired_at, &fields).await {
        Ok(applied) => {
            tracing::info!(
                destination_id = destination.id,
                kind,
                applied,
                "a Mailchimp webhook event was received"
            );
            plain(StatusCode::OK, "OK\n")
        }
        Err(err) => {
            tracing::error!(destination_id = destination.id, kind, error = %err, "recording a Mailchimp webhook event");
            // Mailchimp tries a failed call again later.
            plain(StatusCode::SERVICE_UNAVAILABLE, "Try again later.\n")
        }
    }
}

/// Records the event, and what it changes in the ledger, in one transaction:
/// - `unsubscribe`, `cleaned`: the member's status, so the next run sends it with that status
///   (never subscribes it again) and, should it leave the audience, keeps it out for good;
/// - `profile`: nothing to send back; its status if the event gives one;
/// - `upemail`: the old address is kept out for good (the contact lives on under the new
///   one in Mailchimp; sending the old address again would make a second contact of it).
///   The profile keeps its old address until someone changes it; the next export after
///   that updates the contact under its new address.
async fn apply(
    state: &AppState,
    destination: &Destination,
    kind: &str,
    email_hash: &str,
    fired_at: &str,
    fields: &HashMap<String, String>,
) -> anyhow::Result<bool> {
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    let id = destination.id;
    let applied = match kind {
        "unsubscribe" => webhooks::set_status(&mut tx, id, email_hash, "unsubscribed").await?,
        "cleaned" => webhooks::set_status(&mut tx, id, email_hash, "cleaned").await?,
        "profile" => {
            let status = fields
                .get("data[status]")
                .and_then(|s| s.trim().parse::<MemberStatus>().ok())
                .filter(|s| *s != MemberStatus::Archived);
            match status {
                Some(status) => {
                    webhooks::set_status(&mut tx, id, email_hash, status.as_str()).await?
                }
                None => false,
            }
        }
        "upemail" => {
            webhooks::keep_out_old_address(&mut tx, id, email_hash, ADDRESS_CHANGED).await?
        }
        _ => false,
    };
    let event = Event {
        kind,
        email_hash,
        fired_at,
        applied,
    };
    webhooks::record(&mut tx, id, &event).await?;
    tx.commit().await?;
    Ok(applied)
}
