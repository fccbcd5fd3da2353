use std::time::{Duration, Instant};

use export_destinations::sandbox::SandboxConfig;
use reqwest::Method;
use serde_json::json;

use crate::helpers::{Auth, spawn_with};

#[tokio::test]
async fn the_call_past_the_connection_limit_gets_429() {
    let sb = spawn_with(SandboxConfig {
        max_connections: 2,
        latency: Duration::from_millis(600),
        ..SandboxConfig::default()
    })
    .await;
    let calls = (0..5).map(|_| sb.get("/ping"));
    let results = futures::future::join_all(calls).await;
    let refused: Vec<_> = results
        .iter()
        .filter(|(status, _)| *status == 429)
        .collect();
    assert_eq!(refused.len(), 3, "{results:?}");
    assert_eq!(refused[0].1["title"], "Too Many Requests");
    assert!(
        refused[0].1["detail"]
            .as_str()
            .unwrap()
            .contains("2 simultaneous connections")
    );
    let stats = sb.sandbox.stats();
    assert_eq!(stats.rejected_429, 3);
    assert_eq!(stats.peak_in_flight, 2);
}

#[tokio::test]
async fn with_throttling_as_bare_403_the_call_past_the_limit_gets_403_without_a_problem() {
    let sb = spawn_with(SandboxConfig {
        max_connections: 1,
        throttle_as_bare_403: true,
        latency: Duration::from_millis(600),
        ..SandboxConfig::default()
    })
    .await;
    let calls = (0..3).map(|_| async {
        let response = sb
            .http
            .get(format!("{}/3.0/ping", sb.base))
            .basic_auth("anystring", Some(&sb.key))
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let kind = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, kind, response.text().await.unwrap())
    });
    let results = futures::future::join_all(calls).await;
    let refused: Vec<_> = results
        .iter()
        .filter(|(status, ..)| *status == 403)
        .collect();
    assert_eq!(refused.len(), 2, "{results:?}");
    for (_, kind, body) in &refused {
        assert!(!kind.contains("json"), "no problem document: {kind}");
        assert!(!body.contains("\"title\""), "{body}");
    }
    assert!(
        refused.iter().any(|(_, _, body)| body.is_empty())
            && refused.iter().any(|(_, _, body)| body.contains("<html>")),
        "an empty body and a proxy's page: {results:?}"
    );
    let stats = sb.sandbox.stats();
    assert_eq!((stats.rejected_403, stats.rejected_429), (2, 0));
}

#[tokio::test]
async fn each_credential_has_its_own_connection_limit() {
    let sb = spawn_with(SandboxConfig {
        max_connections: 1,
        latency: Duration::from_millis(400),
        ..SandboxConfig::default()
    })
    .await;
    let other = sb
        .sandbox
        .store()
        .issue_api_key(export_destinations::sandbox::store::DEFAULT_ACCOUNT);
    let other = Auth::Key(other);
    let (a, b) = tokio::join!(
        sb.get("/ping"),
        sb.call_as(&other, Method::GET, "/ping", None)
    );
    assert_eq!((a.0.as_u16(), b.0.as_u16()), (200, 200));
}

#[tokio::test]
async fn calls_take_the_modelled_time_per_call_and_per_member() {
    let sb = spawn_with(SandboxConfig {
        latency: Duration::from_millis(50),
        per_member: Duration::from_millis(2),
        ..SandboxConfig::default()
    })
    .await;
    let members: Vec<_> = (0..100)
        .map(|i| json!({ "email_address": format!("p{i}@northwind.io"), "status": "subscribed" }))
        .collect();
    let started = Instant::now();
    sb.batch(json!(members), false).await;
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    let busy = sb.sandbox.stats().modelled_busy_ms;
    assert!((busy - 250.0).abs() < 0.01, "{busy}");
}

async fn statuses_for_seed(seed: u64) -> Vec<u16> {
    let sb = spawn_with(SandboxConfig {
        fault_rate: 0.3,
        seed,
        hang: Duration::from_millis(10),
        ..SandboxConfig::default()
    })
    .await;
    let mut statuses = Vec::new();
    for _ in 0..60 {
        statuses.push(sb.get("/ping").await.0.as_u16());
    }
    statuses
}

#[tokio::test]
async fn faults_are_injected_at_the_configured_rate_reproducibly_by_seed() {
    let first = statuses_for_seed(7).await;
    let again = statuses_for_seed(7).await;
    assert_eq!(first, again, "the same seed gives the same faults");
    let failed = first.iter().filter(|s| **s != 200).count();
    assert!(
        (5..=35).contains(&failed),
        "about 30% of 60 calls should fail, {failed} did"
    );
    for expected in [500, 503, 429] {
        assert!(
            first.contains(&expected),
            "{expected} never injected: {first:?}"
        );
    }
    assert_ne!(
        first,
        statuses_for_seed(8).await,
        "another seed, other faults"
    );
}

#[tokio::test]
async fn a_hanging_call_outlasts_the_clients_timeout_but_its_work_is_done() {
    let sb = spawn_with(SandboxConfig {
        fault_rate: 1.0,
        seed: 3,
        hang: Duration::from_secs(5),
        ..SandboxConfig::default()
    })
    .await;
    // With every call faulty, find the seed's first hang by trying until one times out.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let mut timed_out = false;
    for i in 0..20 {
        let email = format!("h{i}@northwind.io");
        let result = client
            .post(format!("{}/3.0/lists/{}", sb.base, sb.newsletter))
            .basic_auth("x", Some(&sb.key))
            .json(&json!({ "members": [{ "email_address": email, "status": "subscribed" }] }))
            .send()
            .await;
        if let Err(err) = result {
            assert!(err.is_timeout());
            timed_out = true;
            let store = sb.sandbox.store();
            let audience = &store.audiences[&sb.newsletter];
            assert!(
                audience
                    .members
                    .contains_key(&export_destinations::domain::subscriber_hash(&email))
            );
            break;
        }
    }
    assert!(timed_out, "a hang was injected within 20 calls");
}
