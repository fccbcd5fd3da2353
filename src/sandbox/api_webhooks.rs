//! An audience's webhooks: list, add (after checking that the URL answers), read, change
//! and delete.

use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sandbox::json::{self, ApiJson, OnList};
use crate::sandbox::problem::MailchimpProblem;
use crate::sandbox::state::Sandbox;
use crate::sandbox::webhooks::{Events, Sources, Webhook, probe};

pub fn router() -> Router<Sandbox> {
    Router::new()
        .route(
            "/lists/{list_id}/webhooks",
            get(list_webhooks).post(add_webhook),
        )
        .route(
            "/lists/{list_id}/webhooks/{webhook_id}",
            get(get_webhook)
                .patch(update_webhook)
                .delete(delete_webhook),
        )
}

fn webhook_json(list_id: &str, webhook: &Webhook) -> Value {
    json!({
        "id": webhook.id,
        "url": webhook.url,
        "events": webhook.events,
        "sources": webhook.sources,
        "list_id": list_id,
        "_links": [],
    })
}

async fn list_webhooks(call: OnList) -> Result<Json<Value>, MailchimpProblem> {
    call.audience(0, |audience| {
        let webhooks: Vec<Value> = audience
            .webhooks
            .iter()
            .map(|w| webhook_json(&audience.id, w))
            .collect();
        let total_items = webhooks.len();
        Ok(Json(json::collection(
            audience,
            "webhooks",
            webhooks,
            total_items,
        )))
    })
    .await
}

#[derive(Deserialize)]
struct NewWebhook {
    url: Option<String>,
    #[serde(default)]
    events: Events,
    #[serde(default)]
    sources: Sources,
}

/// An http(s) URL with a host, as Mailchimp takes for a webhook.
fn check_url(raw: Option<&str>) -> Result<String, MailchimpProblem> {
    let raw = raw.map(str::trim).unwrap_or_default();
    if raw.is_empty() {
        return Err(MailchimpProblem::field(
            "url",
            "This value should not be blank.",
        ));
    }
    match url::Url::parse(raw) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
            Ok(raw.to_owned())
        }
        _ => Err(MailchimpProblem::field("url", "Please enter a valid URL.")),
    }
}

async fn add_webhook(
    call: OnList,
    ApiJson(body): ApiJson<NewWebhook>,
) -> Result<Json<Value>, MailchimpProblem> {
    let url = check_url(body.url.as_deref())?;
    let (sandbox, caller, list_id) = (&call.sandbox, &call.account_id, &call.list_id);
    let taken = |sandbox: &Sandbox| -> Result<(), MailchimpProblem> {
        let mut store = sandbox.store();
        let audience = store.audience_mut(caller, list_id)?;
        if audience.webhooks.iter().any(|w| w.url == url) {
            return Err(MailchimpProblem::field(
                "url",
                "A webhook with this URL already exists for this audience.",
            ));
        }
        Ok(())
    };
    taken(sandbox)?;
    sandbox.work(0).await;
    // Mailchimp checks that the URL answers before it keeps the webhook.
    probe(&url).await?;
    taken(sandbox)?;
    let mut store = sandbox.store();
    let id = store.random_hex(5);
    let audience = store.audience_mut(caller, list_id)?;
    let webhook = Webhook {
        id,
        url,
        events: body.events,
        sources: body.sources,
    };
    let answer = webhook_json(&audience.id, &webhook);
    audience.webhooks.push(webhook);
    Ok(Json(answer))
}

async fn get_webhook(call: OnList) -> Result<Json<Value>, MailchimpProblem> {
    call.audience(0, |audience| {
        let webhook = audience
            .webhooks
            .iter()
            .find(|w| w.id == call.param("webhook_id"))
            .ok_or_else(MailchimpProblem::not_found)?;
        Ok(Json(webhook_json(&audience.id, webhook)))
    })
    .await
}

#[derive(Deserialize)]
struct WebhookChange {
    url: Option<String>,
    events: Option<Events>,
    sources: Option<Sources>,
}

async fn update_webhook(
    call: OnList,
    ApiJson(body): ApiJson<WebhookChange>,
) -> Result<Json<Value>, MailchimpProblem> {
    let url = body
        .url
        .as_deref()
        .map(|u| check_url(Some(u)))
        .transpose()?;
    call.sandbox.work(0).await;
    if let Some(url) = &url {
        probe(url).await?;
    }
    let mut store = call.sandbox.store();
    let audience = store.audience_mut(&call.account_id, &call.list_id)?;
    let list = audience.id.clone();
    let webhook = audience
        .webhooks
        .iter_mut()
        .find(|w| w.id == call.param("webhook_id"))
        .ok_or_else(MailchimpProblem::not_found)?;
    if let Some(url) = url {
        webhook.url = url;
    }
    if let Some(events) = body.events {
        webhook.events = events;
    }
    if let Some(sources) = body.sources {
        webhook.sources = sources;
    }
    Ok(Json(webhook_json(&list, webhook)))
}

async fn delete_webhook(call: OnList) -> Result<StatusCode, MailchimpProblem> {
    call.audience(0, |audience| {
        let before = audience.webhooks.len();
        audience
            .webhooks
            .retain(|w| w.id != call.param("webhook_id"));
        if audience.webhooks.len() == before {
            return Err(MailchimpProblem::not_found());
        }
        Ok(StatusCode::NO_CONTENT)
    })
    .await
}
