//! The Mailchimp client's retry policy, against a fake Mailchimp.

use std::time::{Duration, Instant};

use export_destinations::mailchimp::client::{Client, Connection, Credential, ErrorKind};
use export_destinations::mailchimp::limiter::{AccountLimit, with_retries};
use reqwest::Method;
use serde_json::Value;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn connection(mock: &MockServer) -> Connection {
    Connection {
        api_base: mock.uri(),
        credential: Credential::ApiKey("0123456789abcdef0123456789abcdef-us1".into()),
    }
}

#[tokio::test]
async fn a_429_is_retried_after_the_time_mailchimp_asks_for() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/3.0/ping"))
        .respond_with(
            ResponseTemplate::new(429)
                .insert_header("retry-after", "1")
                .set_body_json(serde_json::json!({"title": "Too Many Requests"})),
        )
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/3.0/ping"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"health_status": "Everything's Chimpy!"})),
        )
        .mount(&mock)
        .await;
    let client = Client::new();
    let connection = connection(&mock);
    let started = Instant::now();
    let (answer, attempts) = with_retries(&AccountLimit::new(10), || {
        client.call::<Value>(&connection, Method::GET, "/ping", None)
    })
    .await
    .unwrap();
    assert_eq!(answer["health_status"], "Everything's Chimpy!");
    assert_eq!(attempts, 2);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "waited as asked: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn server_errors_are_retried_and_a_bad_request_never_is() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/3.0/ping"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/3.0/ping"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({})))
        .mount(&mock)
        .await;
    Mock::given(method("POST"))
        .and(path("/3.0/lists/x"))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(serde_json::json!({"title": "Invalid Resource", "detail": "bad"})),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let client = Client::new();
    let connection = connection(&mock);
    let semaphore = AccountLimit::new(10);
    let (_, attempts) = with_retries(&semaphore, || {
        client.call::<Value>(&connection, Method::GET, "/ping", None)
    })
    .await
    .unwrap();
    assert_eq!(attempts, 3);
    let body = serde_json::json!({});
    let err = with_retries(&semaphore, || {
        client.call::<Value>(&connection, Method::POST, "/lists/x", Some(&body))
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Invalid);
    assert_eq!(err.title, "Invalid Resource");
}

/// Under heavy load Mailchimp has answered a bare 403 (no problem document) where it means
/// 429: such an answer is retried, whatever its body, like a 429.
#[tokio::test]
async fn a_bare_403_is_throttling_and_is_retried() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/3.0/ping"))
        .respond_with(ResponseTemplate::new(403))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/3.0/ping"))
        .respond_with(ResponseTemplate::new(403).set_body_raw(
            "<html><body><h1>403 Forbidden</h1></body></html>",
            "text/html",
        ))
        .up_to_n_times(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/3.0/ping"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(serde_json::json!({"health_status": "Everything's Chimpy!"})),
        )
        .mount(&mock)
        .await;
    let client = Client::new();
    let connection = connection(&mock);
    let limit = AccountLimit::new(10);
    let (answer, attempts) = with_retries(&limit, || {
        client.call::<Value>(&connection, Method::GET, "/ping", None)
    })
    .await
    .unwrap();
    assert_eq!(answer["health_status"], "Everything's Chimpy!");
    assert_eq!(attempts, 3, "both bare 403s were retried");
    assert_eq!(limit.current(), 8, "each took a slot away, as a 429 does");
}

/// A 403 that Mailchimp explains with its problem document is a refusal: never retried.
#[tokio::test]
async fn a_403_with_mailchimps_problem_document_is_a_refusal_and_never_retried() {
    let mock = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/3.0/lists/x"))
        .respond_with(
            ResponseTemplate::new(403).set_body_raw(
                serde_json::json!({
                    "type": "https://mailchimp.com/developer/marketing/docs/errors/",
                    "title": "Forbidden",
                    "status": 403,
                    "detail": "You don't have permission to access this resource.",
                    "instance": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
                })
                .to_string(),
                "application/problem+json",
            ),
        )
        .expect(1)
        .mount(&mock)
        .await;
    let client = Client::new();
    let connection = connection(&mock);
    let limit = AccountLimit::new(10);
    let err = with_retries(&limit, || {
        client.call::<Value>(&connection, Method::GET, "/lists/x", None)
    })
    .await
    .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Forbidden);
    assert_eq!(err.title, "Forbidden");
    assert_eq!(limit.current(), 10, "no slot was taken away");
}
