//! Mailchimp's webhooks: a destination keeps one on its audience, and opt-outs, bounces and
//! address changes made in Mailchimp reach the ledger as they happen, so the next run never
//! subscribes anyone again nor recreates an address its contact left.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use export_destinations::config::WebhookSetting;
use export_destinations::domain::{Role, subscriber_hash};
use export_destinations::sandbox::SandboxConfig;
use export_destinations::sandbox::webhooks::{MemberChange, Source};
use export_destinations::store::runs::RunStatus;
use serde_json::{Value, json};

use crate::helpers::{TestApp, wait_until};
use crate::world::*;

/// A console with webhooks on, its public URL its own address (the sandbox reaches it).
async fn hooked_world() -> World {
    world_with(SandboxConfig::default(), |settings| {
        settings.mailchimp_webhooks = WebhookSetting::On;
    })
    .await
}

/// PEOPLE imported, the Germany segment, a saved destination for it, exported once.
async fn exported(w: &World) -> i64 {
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(w, &[germany], "subscribed").await;
    let run = export(w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_eq!(run.counters.created, 2, "Ada and Zoë");
    id
}

/// The webhooks of the World's audience, as (id, url, events, sources).
fn webhooks(w: &World) -> Vec<(String, String, Value, Value)> {
    let store = w.sandbox.store();
    store.audiences[&w.audience]
        .webhooks
        .iter()
        .map(|h| {
            (
                h.id.clone(),
                h.url.clone(),
                serde_json::to_value(h.events).unwrap(),
                serde_json::to_value(h.sources).unwrap(),
            )
        })
        .collect()
}

/// The one webhook of the console's destination, its URL checked.
fn console_webhook(w: &World, destination: i64) -> (String, String) {
    let hooks = webhooks(w);
    assert_eq!(hooks.len(), 1, "exactly one webhook: {hooks:?}");
    let (id, url, events, sources) = hooks.into_iter().next().unwrap();
    let prefix = format!("{}/hooks/mailchimp/{destination}/", w.app.base);
    assert!(url.starts_with(&prefix), "{url} under {prefix}");
    assert!(url.len() > prefix.len() + 20, "a long random secret: {url}");
    assert_eq!(
        events,
        json!({ "subscribe": false, "unsubscribe": true, "profile": true, "cleaned": true,
                "upemail": true, "campaign": false })
    );
    assert_eq!(
        sources,
        json!({ "user": true, "admin": true, "api": false })
    );
    (id, url)
}

/// The ledger's (status, permanent skip) for an address.
async fn ledger(app: &TestApp, destination: i64, email: &str) -> Option<(String, Option<String>)> {
    sqlx::query_as(
        "SELECT status, permanent_skip FROM export_ledger WHERE destination_id = $1 AND email_hash = $2",
    )
    .bind(destination)
    .bind(subscriber_hash(email))
    .fetch_optional(app.state.db.pool())
    .await
    .unwrap()
}

/// Waits until the ledger's entry for `email` is `status` (and permanent skip `skip`).
async fn ledger_becomes(
    w: &World,
    destination: i64,
    email: &str,
    status: &str,
    skip: Option<&str>,
) {
    wait_until(
        &format!("{email} to be {status} in the ledger"),
        Duration::from_secs(10),
        || async {
            let now = ledger(&w.app, destination, email).await;
            (now.as_ref().map(|(s, k)| (s.as_str(), k.as_deref())) == Some((status, skip)))
                .then_some(())
        },
    )
    .await;
}

/// The events the console recorded: (kind, email hash, applied).
async fn events(app: &TestApp, destination: i64) -> Vec<(String, String, i64)> {
    sqlx::query_as(
        "SELECT kind, email_hash, applied FROM webhook_events WHERE destination_id = $1 ORDER BY id",
    )
    .bind(destination)
    .fetch_all(app.state.db.pool())
    .await
    .unwrap()
}

async fn members_csv(w: &World, run_id: i64) -> String {
    w.app
        .get(&format!("/admin/export-runs/{run_id}/members.csv"))
        .await
        .text()
        .await
        .unwrap()
}

fn status_in_sandbox(w: &World, email: &str) -> Option<String> {
    let store = w.sandbox.store();
    store.audiences[&w.audience]
        .members
        .get(&subscriber_hash(email))
        .map(|m| m.status.as_str().to_owned())
}

#[tokio::test]
async fn an_unsubscribe_in_mailchimp_reaches_the_ledger_and_the_next_run_keeps_it() {
    let w = hooked_world().await;
    let id = exported(&w).await;
    console_webhook(&w, id);
    assert_eq!(
        ledger(&w.app, id, "ada@northwind.io").await.unwrap().0,
        "subscribed"
    );

    // Ada follows the unsubscribe link of a campaign.
    w.unsubscribes("ada@northwind.io");
    ledger_becomes(&w, id, "ada@northwind.io", "unsubscribed", None).await;
    let recorded = events(&w.app, id).await;
    assert_eq!(
        recorded,
        vec![(
            "unsubscribe".to_owned(),
            subscriber_hash("ada@northwind.io"),
            1
        )]
    );
    // Only the subscriber hash is kept of the event.
    let raw: Vec<(String, String)> =
        sqlx::query_as("SELECT email_hash, fired_at FROM webhook_events")
            .fetch_all(w.app.state.db.pool())
            .await
            .unwrap();
    assert!(
        raw.iter()
            .all(|(h, f)| !h.contains('@') && !f.contains('@')),
        "{raw:?}"
    );

    // Her name changes: the next run sends her, unsubscribed, and Mailchimp takes it.
    import(&w.app, "CustomerId,FirstName\nP1,Augusta\n").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_eq!(
        (
            run.counters.sent,
            run.counters.updated,
            run.counters.created
        ),
        (1, 1, 0)
    );
    assert_eq!(
        (run.counters.skipped, run.counters.failed),
        (3, 0),
        "no address, an invalid one and a repeated one, as before; nothing else"
    );
    let ada = audience(&w)
        .into_iter()
        .find(|m| m.0 == "ada@northwind.io")
        .unwrap();
    assert_eq!(
        (ada.1.as_str(), ada.2.as_str()),
        ("unsubscribed", "Augusta")
    );
    w.app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let csv = members_csv(&w, run.id).await;
    assert!(csv.contains("P1,ada@northwind.io,updated"), "{csv}");
    assert!(
        !csv.contains("Compliance"),
        "nothing Mailchimp refuses was sent: {csv}"
    );
    assert_eq!(
        ledger(&w.app, id, "ada@northwind.io").await.unwrap().0,
        "unsubscribed"
    );
    // The webhook was checked, not added again.
    console_webhook(&w, id);
    let stats = w.sandbox.stats();
    assert_eq!(
        stats.calls_by_route.get("POST /lists/{list_id}/webhooks"),
        Some(&1)
    );
    assert_eq!(
        stats.calls_by_route.get("GET /lists/{list_id}/webhooks"),
        Some(&2)
    );

    // System > Status says what came in.
    let html = w.app.get_html("/system/status").await;
    assert!(
        html.contains("1 unsubscribes, 0 cleaned, 0 profile changes and 0 address changes received by webhook since"),
        "{html}"
    );
}

#[tokio::test]
async fn a_contact_who_unsubscribed_then_was_deleted_in_mailchimp_is_never_subscribed_again() {
    let w = hooked_world().await;
    let id = exported(&w).await;
    w.unsubscribes("ada@northwind.io");
    ledger_becomes(&w, id, "ada@northwind.io", "unsubscribed", None).await;
    // Someone then archives her in Mailchimp: she leaves the audience before any run saw
    // her unsubscribe. Only the webhook told the console she had opted out.
    let archived = reqwest::Client::new()
        .delete(format!(
            "{}/3.0/lists/{}/members/{}",
            w.sandbox_base,
            w.audience,
            subscriber_hash("ada@northwind.io")
        ))
        .basic_auth("x", Some(&w.key))
        .send()
        .await
        .unwrap();
    assert_eq!(archived.status(), 204);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_eq!(run.counters.created, 0, "she is not added back");
    assert_eq!(
        status_in_sandbox(&w, "ada@northwind.io").as_deref(),
        Some("archived")
    );
    w.app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let csv = members_csv(&w, run.id).await;
    assert!(
        csv.contains("P1,ada@northwind.io,skipped,\"Opted out, then left the audience\""),
        "{csv}"
    );
}

#[tokio::test]
async fn bounces_and_address_changes_are_kept_and_the_old_address_is_not_recreated() {
    let w = hooked_world().await;
    let id = exported(&w).await;
    // An account user marks Zoë as bounced on the sandbox's own page.
    let bounced = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(format!(
            "{}/audiences/{}/members/{}",
            w.sandbox_base,
            w.audience,
            subscriber_hash("zoe@northwind.io")
        ))
        .form(&[("action", "clean"), ("page_token", w.sandbox.page_token())])
        .send()
        .await
        .unwrap();
    assert_eq!(bounced.status(), 303);
    ledger_becomes(&w, id, "zoe@northwind.io", "cleaned", None).await;
    // Ada changes her address in her profile preferences.
    w.sandbox
        .change_member(
            &w.audience,
            "ada@northwind.io",
            MemberChange::Email("augusta@northwind.io".into()),
            Source::User,
        )
        .unwrap();
    ledger_becomes(
        &w,
        id,
        "ada@northwind.io",
        "subscribed",
        Some("Address changed in Mailchimp"),
    )
    .await;
    let kinds: Vec<String> = events(&w.app, id).await.into_iter().map(|e| e.0).collect();
    assert_eq!(kinds, ["cleaned", "upemail"]);

    // Both change in the console's data too: Zoë is sent (cleaned, which Mailchimp takes),
    // Ada's old address is not sent at all.
    import(&w.app, "CustomerId,FirstName\nP1,Augusta\nP3,Zoé\n").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_eq!(
        (
            run.counters.created,
            run.counters.updated,
            run.counters.failed
        ),
        (0, 1, 0)
    );
    assert_eq!(
        status_in_sandbox(&w, "zoe@northwind.io").as_deref(),
        Some("cleaned")
    );
    assert_eq!(
        status_in_sandbox(&w, "ada@northwind.io"),
        None,
        "not recreated"
    );
    assert_eq!(
        status_in_sandbox(&w, "augusta@northwind.io").as_deref(),
        Some("subscribed")
    );
    w.app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let csv = members_csv(&w, run.id).await;
    assert!(csv.contains("P3,zoe@northwind.io,updated"), "{csv}");
    assert!(
        csv.contains("P1,ada@northwind.io,skipped,Address changed in Mailchimp"),
        "{csv}"
    );
    assert!(!csv.contains("Compliance"), "{csv}");

    // Once the profile has the new address, the contact is updated under it.
    import(&w.app, "CustomerId,Email\nP1,augusta@northwind.io\n").await;
    let run = export(&w, id, false).await;
    assert_eq!((run.counters.created, run.counters.updated), (0, 1));
    let augusta = audience(&w)
        .into_iter()
        .find(|m| m.0 == "augusta@northwind.io")
        .unwrap();
    assert_eq!(
        (augusta.1.as_str(), augusta.2.as_str()),
        ("subscribed", "Augusta")
    );
}

#[tokio::test]
async fn the_endpoint_answers_the_probe_and_nothing_without_the_right_secret() {
    let w = hooked_world().await;
    let id = exported(&w).await;
    let (_, url) = console_webhook(&w, id);
    let client = reqwest::Client::new();
    assert_eq!(
        client.get(&url).send().await.unwrap().status(),
        200,
        "Mailchimp's probe"
    );
    let secret = url.rsplit('/').next().unwrap().to_owned();
    let mut wrong = secret.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == 'A' { 'B' } else { 'A' });
    let unsubscribe = [
        ("type", "unsubscribe"),
        ("fired_at", "2026-12-03 12:11:04"),
        ("data[email]", "ada@northwind.io"),
        ("data[list_id]", w.audience.as_str()),
    ];
    for path in [
        format!("/hooks/mailchimp/{id}/{wrong}"),
        format!("/hooks/mailchimp/{id}/"),
        format!("/hooks/mailchimp/{}/{secret}", id + 1),
        format!("/hooks/mailchimp/x{id}/{secret}"),
    ] {
        let got = client.get(w.app.url(&path)).send().await.unwrap();
        assert_eq!(got.status(), 404, "GET {path}");
        let posted = client
            .post(w.app.url(&path))
            .form(&unsubscribe)
            .send()
            .await
            .unwrap();
        assert_eq!(posted.status(), 404, "POST {path}");
    }
    assert!(events(&w.app, id).await.is_empty());
    assert_eq!(
        ledger(&w.app, id, "ada@northwind.io").await.unwrap().0,
        "subscribed"
    );

    // Only forms, and small ones; events for another audience or not asked for change nothing.
    let json = client
        .post(&url)
        .json(&json!({ "type": "unsubscribe" }))
        .send()
        .await
        .unwrap();
    assert_eq!(json.status(), 415);
    let note = "x".repeat(70_000);
    let huge = client
        .post(&url)
        .form(&[("type", "profile"), ("data[merges][NOTE]", note.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(huge.status(), 413);
    let elsewhere = [
        ("type", "unsubscribe"),
        ("data[email]", "ada@northwind.io"),
        ("data[list_id]", "another"),
    ];
    let subscribe = [("type", "subscribe"), ("data[email]", "ada@northwind.io")];
    for form in [&elsewhere[..], &subscribe[..]] {
        let answer = client.post(&url).form(form).send().await.unwrap();
        assert_eq!(answer.status(), 200);
    }
    assert!(events(&w.app, id).await.is_empty());
    assert_eq!(
        ledger(&w.app, id, "ada@northwind.io").await.unwrap().0,
        "subscribed"
    );

    // Mailchimp's own call, as it posts it.
    let answer = client.post(&url).form(&unsubscribe).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(
        ledger(&w.app, id, "ada@northwind.io").await.unwrap().0,
        "unsubscribed"
    );
}

#[tokio::test]
async fn the_webhook_is_registered_on_save_once_and_deleted_with_the_destination() {
    let w = hooked_world().await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    // Saved through the API: registered at once, before any run.
    let token = crate::api::token(&w.app, "ci@example.com", Role::Administrator).await;
    let (status, created) = crate::api::call(
        &w.app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&token),
        Some(json!({
            "display_name": "Newsletter", "consent": true, "audience_id": w.audience,
            "api_key": w.key, "email_field": "Email",
            "merge_fields": [{ "tag": "FNAME", "field": "FirstName" }], "segment_ids": [germany]
        })),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let (first_id, url) = console_webhook(&w, id);
    for _ in 0..2 {
        let run = export(&w, id, false).await;
        assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    }
    assert_eq!(
        console_webhook(&w, id).0,
        first_id,
        "the same webhook, not another"
    );
    let posts = |w: &World| {
        w.sandbox
            .stats()
            .calls_by_route
            .get("POST /lists/{list_id}/webhooks")
            .copied()
    };
    assert_eq!(posts(&w), Some(1));

    // Deleted in Mailchimp by someone: the next run adds it again, with the same URL.
    w.sandbox
        .store()
        .audiences
        .get_mut(&w.audience)
        .unwrap()
        .webhooks
        .clear();
    export(&w, id, false).await;
    let (again, same_url) = console_webhook(&w, id);
    assert_ne!(again, first_id);
    assert_eq!(same_url, url);
    assert_eq!(posts(&w), Some(2));

    // Removing the destination deletes it, and its URL answers no more.
    w.app
        .signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let page = format!("/admin/export-destinations/{id}/remove");
    let removed = w
        .app
        .post_form(&page, &page, &[("in_mailchimp", "leave")])
        .await;
    assert_eq!(removed.status(), 303);
    assert!(webhooks(&w).is_empty(), "{:?}", webhooks(&w));
    let probe = reqwest::Client::new().get(&url).send().await.unwrap();
    assert_eq!(probe.status(), 404);
}

#[tokio::test]
async fn changes_made_through_the_api_are_not_sent_to_the_console() {
    let w = hooked_world().await;
    let id = exported(&w).await;
    let (console_hook, _) = console_webhook(&w, id);
    // Another receiver that hears the API only.
    let received: Arc<Mutex<Vec<String>>> = Arc::default();
    let kept = received.clone();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::get(|| async { "ok" }).post(move |body: String| {
            let kept = kept.clone();
            async move {
                kept.lock().unwrap().push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver_url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, receiver).await });
    let client = reqwest::Client::new();
    let added = client
        .post(format!(
            "{}/3.0/lists/{}/webhooks",
            w.sandbox_base, w.audience
        ))
        .basic_auth("x", Some(&w.key))
        .json(&json!({
            "url": receiver_url,
            "events": { "unsubscribe": true },
            "sources": { "user": false, "admin": false, "api": true }
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200, "{}", added.text().await.unwrap());

    // A program unsubscribes Ada through the API.
    let patched = client
        .patch(format!(
            "{}/3.0/lists/{}/members/{}",
            w.sandbox_base,
            w.audience,
            subscriber_hash("ada@northwind.io")
        ))
        .basic_auth("x", Some(&w.key))
        .json(&json!({ "status": "unsubscribed" }))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    wait_until(
        "the API's event to reach its receiver",
        Duration::from_secs(10),
        || async { (!received.lock().unwrap().is_empty()).then_some(()) },
    )
    .await;
    let body = received.lock().unwrap()[0].clone();
    assert!(body.contains("type=unsubscribe"), "{body}");
    assert!(
        body.contains("data%5Bemail%5D=ada%40northwind.io"),
        "{body}"
    );
    // Deliveries go out one after another in order: the console's would have come first.
    let deliveries = w.sandbox.deliveries();
    assert!(
        deliveries.iter().all(|d| d.webhook_id != console_hook),
        "{deliveries:?}"
    );
    assert!(events(&w.app, id).await.is_empty());
    assert_eq!(
        ledger(&w.app, id, "ada@northwind.io").await.unwrap().0,
        "subscribed"
    );

    // Zoë unsubscribes herself: the console hears it, the API's receiver does not.
    w.unsubscribes("zoe@northwind.io");
    ledger_becomes(&w, id, "zoe@northwind.io", "unsubscribed", None).await;
    wait_until(
        "the console's delivery to be logged",
        Duration::from_secs(10),
        || async {
            w.sandbox
                .deliveries()
                .iter()
                .any(|d| {
                    d.webhook_id == console_hook && d.kind == "unsubscribe" && d.status == Some(200)
                })
                .then_some(())
        },
    )
    .await;
    assert_eq!(
        received.lock().unwrap().len(),
        1,
        "the API's receiver heard nothing of it"
    );
}

#[tokio::test]
async fn mailchimp_refuses_a_webhook_whose_url_does_not_answer_and_one_url_twice() {
    let w = hooked_world().await;
    let id = exported(&w).await;
    let (_, url) = console_webhook(&w, id);
    let client = reqwest::Client::new();
    let add = |url: String| {
        client
            .post(format!("{}/3.0/lists/{}/webhooks", w.sandbox_base, w.audience))
            .basic_auth("x", Some(&w.key))
            .json(&json!({ "url": url, "events": { "unsubscribe": true }, "sources": { "user": true } }))
            .send()
    };
    let refused = add(format!(
        "{}/hooks/mailchimp/{id}/not-the-secret",
        w.app.base
    ))
    .await
    .unwrap();
    assert_eq!(refused.status(), 400);
    let body = refused.text().await.unwrap();
    assert!(
        body.contains("We couldn't verify the URL is working") && body.contains("HTTP Code: 404"),
        "{body}"
    );
    let twice = add(url).await.unwrap();
    assert_eq!(twice.status(), 400);
    assert!(twice.text().await.unwrap().contains("already exists"));
    assert_eq!(webhooks(&w).len(), 1);
}

#[tokio::test]
async fn with_webhooks_off_nothing_is_registered() {
    // The test console's public URL is a loopback address: off unless asked for.
    let w = world(SandboxConfig::default()).await;
    let id = exported(&w).await;
    assert!(webhooks(&w).is_empty());
    let stats = w.sandbox.stats();
    assert!(
        !stats
            .calls_by_route
            .keys()
            .any(|route| route.contains("webhooks")),
        "{:?}",
        stats.calls_by_route
    );
    let none: Option<(String,)> =
        sqlx::query_as("SELECT secret_sealed FROM mailchimp_webhooks WHERE destination_id = $1")
            .bind(id)
            .fetch_optional(w.app.state.db.pool())
            .await
            .unwrap();
    assert!(none.is_none());
}
