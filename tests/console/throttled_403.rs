//! Throttling that Mailchimp answers as a bare 403 (no problem document) is throttling, not
//! a lack of access: the export backs off and ends complete. A 403 that Mailchimp explains
//! still fails the run.

use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::runs::RunStatus;

use crate::helpers::{Target, saved_destination};
use crate::world::*;

const TOKEN: &str = "metrics-token-for-bare-403-0123";

fn countries(n: usize) -> String {
    let mut csv = String::from("CustomerId,FirstName,Email,Country\n");
    for i in 0..n {
        csv.push_str(&format!(
            "C{i},Name{i},person{i}@northwind.io,{}\n",
            ["Germany", "France", "Spain"][i % 3]
        ));
    }
    csv
}

#[tokio::test]
async fn an_export_throttled_with_bare_403s_backs_off_and_ends_complete() {
    // Two connections at a time, and every call past them is refused 403 without a word:
    // the run's reads and batches side by side meet those refusals.
    let w = world_with(
        SandboxConfig {
            max_connections: 2,
            throttle_as_bare_403: true,
            latency: Duration::from_millis(30),
            per_member: Duration::from_micros(20),
            ..SandboxConfig::default()
        },
        |s| s.metrics_token = Some(TOKEN.into()),
    )
    .await;
    import(&w.app, &countries(3000)).await;
    let a = segment(&w.app, "Germany", "Country", "Germany").await;
    let b = segment(&w.app, "France", "Country", "France").await;
    let c = segment(&w.app, "Spain", "Country", "Spain").await;
    refresh(&w.app).await;
    let id = destination(&w, &[a, b, c], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_eq!(run.message, None, "no access problem, no member left out");
    assert_eq!((run.counters.created, run.counters.failed), (3000, 0));
    let stats = w.sandbox.stats();
    assert!(
        stats.rejected_403 > 0,
        "the sandbox refused calls with a bare 403: {stats:?}"
    );
    assert_eq!(stats.rejected_429, 0, "{stats:?}");
    let members = audience(&w);
    assert_eq!(members.len(), 3000);
    for (email, status, name, tags) in &members {
        let i: usize = email
            .trim_start_matches("person")
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(status, "subscribed", "{email}");
        assert_eq!(name, &format!("Name{i}"), "{email}");
        let country = ["Germany", "France", "Spain"][i % 3];
        assert_eq!(
            tags,
            &vec![country.to_owned(), "export-destinations".to_owned()],
            "{email}"
        );
    }
    // The console counted every one of those 403s as throttled.
    let text = w
        .app
        .client
        .get(w.app.url("/metrics"))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let account = export_destinations::mailchimp::client::account_label(&w.sandbox_base, &w.key);
    let prefix = format!(r#"export_destinations_mailchimp_throttled_total{{account="{account}"}}"#);
    let throttled: f64 = text
        .lines()
        .find(|line| line.starts_with(&prefix))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {prefix} in:\n{text}"));
    assert_eq!(throttled, stats.rejected_403 as f64, "{text}");
}

#[tokio::test]
async fn a_403_that_mailchimp_explains_still_fails_the_run_as_no_access() {
    let w = world(SandboxConfig {
        throttle_as_bare_403: true,
        ..SandboxConfig::default()
    })
    .await;
    // An audience of another Mailchimp account: the key may not use it, and the sandbox
    // says so with its problem document.
    let elsewhere = {
        let mut store = w.sandbox.store();
        let other = store.add_account("Other company");
        store.create_audience(&other, "Their audience", "2026-12-01T09:00:00+00:00")
    };
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let owner = w
        .app
        .create_user("owner@example.com", Role::Administrator)
        .await;
    let target = Target {
        api_base: &w.sandbox_base,
        key: &w.key,
        audience: &elsewhere,
        audience_name: "Their audience",
    };
    let id = saved_destination(
        &w.app.state.db,
        &w.app.state.secret_key,
        owner,
        "Theirs",
        target,
        &[germany],
        "subscribed",
    )
    .await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Failure);
    let message = run.message.unwrap_or_default();
    assert!(
        message.starts_with("The Mailchimp account may not use this audience (Forbidden:"),
        "{message}"
    );
    let stats = w.sandbox.stats();
    // The run's first call (the audience check) is refused: not retried, and nothing after it.
    assert_eq!(
        stats.calls_by_route.get("GET /lists/{list_id}"),
        Some(&1),
        "a refusal is not retried: {stats:?}"
    );
    assert_eq!(stats.calls, 1, "{stats:?}");
    assert_eq!(stats.rejected_403, 0, "{stats:?}");
    assert!(
        !stats.calls_by_route.contains_key("POST /lists/{list_id}"),
        "nothing was sent"
    );
    assert!(audience_of(&w, &elsewhere).is_empty());
}

/// The members of any audience of the sandbox.
fn audience_of(w: &World, list: &str) -> Vec<String> {
    let store = w.sandbox.store();
    store.audiences[list]
        .members
        .values()
        .map(|m| m.email_address.clone())
        .collect()
}
