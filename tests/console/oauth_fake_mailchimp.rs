//! Authenticate with Mailchimp against a fake Mailchimp (wiremock): the answers a stateful
//! sandbox cannot easily give.

use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use export_destinations::domain::Role;
use export_destinations::store::destinations;

use crate::helpers::{TestApp, assert_refused, location};
use crate::wizard::{connect, id_of};

async fn app_for(mock: &MockServer) -> TestApp {
    let base: url::Url = mock.uri().parse().unwrap();
    crate::helpers::spawn_app_with(move |settings| {
        settings.mailchimp = export_destinations::config::MailchimpSettings {
            sandbox: false,
            app: Some(export_destinations::mailchimp::OAuthApp {
                client_id: "cid".into(),
                client_secret: "csecret".into(),
            }),
            oauth_base_url: Some(base.clone()),
            api_base_template: Some(base.as_str().trim_end_matches('/').to_owned()),
        };
    })
    .await
}

/// Authenticate, then come back as Mailchimp would with `code`.
async fn round_trip(app: &TestApp, mock: &MockServer) -> reqwest::Response {
    let setup = connect(app, "Real Mailchimp", "a1b2c3d4e5").await;
    let id = id_of(&setup);
    let response = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/authenticate"),
            &[],
        )
        .await;
    let authorize: url::Url = location(&response).parse().unwrap();
    assert!(
        authorize
            .as_str()
            .starts_with(&format!("{}/oauth2/authorize", mock.uri()))
    );
    let state = authorize
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .into_owned();
    app.client
        .get(app.url(&format!(
            "/oauth/mailchimp/callback?code=the-code&state={state}"
        )))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_token_response_without_token_type_is_accepted_and_metadata_names_the_api() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "tok-1", "expires_in": 0, "scope": null}),
        ))
        .expect(1)
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/oauth2/metadata"))
        .and(header("authorization", "OAuth tok-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "dc": "us6", "api_endpoint": mock.uri(), "accountname": "Northwind", "login": {"login_email": "a@northwind.io"}
        })))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/3.0/lists/a1b2c3d4e5"))
        .and(header("authorization", "Bearer tok-1"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
            "id": "a1b2c3d4e5", "name": "Northwind news", "stats": {"member_count": 1234}
        })))
        .mount(&mock)
        .await;
    let app = app_for(&mock).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let response = round_trip(&app, &mock).await;
    assert_eq!(response.status(), 303);
    let page = app.get_html(&location(&response)).await;
    assert!(page.contains("✓ Connected to Northwind"), "{page}");
    assert!(page.contains("“Northwind news”, 1234 subscribed members"));
    let token_request = &mock.received_requests().await.unwrap()[0];
    let body = String::from_utf8_lossy(&token_request.body);
    assert!(
        body.contains("client_secret=csecret") && body.contains("code=the-code"),
        "credentials in the form body: {body}"
    );
}

#[tokio::test]
async fn mailchimp_failing_during_the_audience_check_gets_a_clear_page_and_stores_nothing() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(ResponseTemplate::new(200).set_body_json(
            serde_json::json!({"access_token": "tok-2", "expires_in": 0, "scope": null}),
        ))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/oauth2/metadata"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"dc": "us6", "api_endpoint": mock.uri(), "accountname": "Northwind"})))
        .mount(&mock)
        .await;
    Mock::given(method("GET"))
        .and(path("/3.0/lists/a1b2c3d4e5"))
        .respond_with(ResponseTemplate::new(503).set_body_json(serde_json::json!({
            "type": "x", "title": "Service Unavailable", "status": 503, "detail": "Try later.", "instance": "i"
        })))
        .mount(&mock)
        .await;
    let app = app_for(&mock).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let response = round_trip(&app, &mock).await;
    assert_eq!(response.status(), 502);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Mailchimp could not be reached")
            && html.contains("Service Unavailable: Try later.")
    );
    let stored = &destinations::list(app.state.db.pool()).await.unwrap()[0];
    assert!(stored.credential.is_none());
}

#[tokio::test]
async fn a_refused_code_exchange_gets_a_clear_page() {
    let mock = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/oauth2/token"))
        .respond_with(
            ResponseTemplate::new(400).set_body_json(serde_json::json!({"error": "invalid_grant"})),
        )
        .mount(&mock)
        .await;
    let app = app_for(&mock).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let response = round_trip(&app, &mock).await;
    assert_refused(response, 502, "Mailchimp did not complete the sign-in").await;
}

#[tokio::test]
async fn the_csp_lets_the_authenticate_form_go_on_to_mailchimp() {
    let mock = MockServer::start().await;
    let app = app_for(&mock).await;
    let response = app.get("/healthz").await;
    let csp = response.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        csp.contains(&format!("form-action 'self' {}", mock.uri())),
        "{csp}"
    );
}
