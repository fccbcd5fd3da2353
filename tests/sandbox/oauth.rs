use export_destinations::sandbox::store::DEFAULT_ACCOUNT;
use reqwest::Method;

use crate::helpers::{Auth, CLIENT_ID, CLIENT_SECRET, REDIRECT, query, spawn_sandbox};

#[tokio::test]
async fn the_oauth_flow_gives_a_never_expiring_token_that_calls_the_api() {
    let sb = spawn_sandbox().await;
    let back = sb.consent("allow", DEFAULT_ACCOUNT, "state-123").await;
    assert_eq!(back.as_str().split('?').next().unwrap(), REDIRECT);
    assert_eq!(query(&back, "state").as_deref(), Some("state-123"));
    let code = query(&back, "code").unwrap();
    let (status, body) = sb.exchange(&code, CLIENT_SECRET, REDIRECT).await;
    assert_eq!(status, 200);
    assert_eq!(body["expires_in"], 0);
    assert!(body["scope"].is_null());
    let token = body["access_token"].as_str().unwrap();

    let (status, ping) = sb
        .call_as(&Auth::Bearer(token.into()), Method::GET, "/ping", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(ping["health_status"], "Everything's Chimpy!");
}

#[tokio::test]
async fn metadata_names_the_data_centre_and_the_sandbox_api_endpoint() {
    let sb = spawn_sandbox().await;
    let token = sb.token_for(DEFAULT_ACCOUNT).await;
    let response = sb
        .http
        .get(format!("{}/oauth2/metadata", sb.base))
        .header("authorization", format!("OAuth {token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let meta: serde_json::Value = response.json().await.unwrap();
    assert_eq!(meta["dc"], "us1");
    assert_eq!(meta["api_endpoint"], sb.base);
    assert_eq!(meta["accountname"], "Sandbox Marketing");
    assert!(meta["login"]["login_email"].is_string());
    assert!(meta["user_id"].is_number());

    let unknown = sb
        .http
        .get(format!("{}/oauth2/metadata", sb.base))
        .header("authorization", "OAuth nope")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
}

#[tokio::test]
async fn a_code_works_once_only() {
    let sb = spawn_sandbox().await;
    let code = query(&sb.consent("allow", DEFAULT_ACCOUNT, "s").await, "code").unwrap();
    assert_eq!(sb.exchange(&code, CLIENT_SECRET, REDIRECT).await.0, 200);
    let (status, body) = sb.exchange(&code, CLIENT_SECRET, REDIRECT).await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn the_token_call_checks_the_client_secret_and_the_redirect_uri() {
    let sb = spawn_sandbox().await;
    let code = query(&sb.consent("allow", DEFAULT_ACCOUNT, "s").await, "code").unwrap();
    let (status, body) = sb.exchange(&code, "wrong-secret", REDIRECT).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"], "invalid_client");

    let code = query(&sb.consent("allow", DEFAULT_ACCOUNT, "s").await, "code").unwrap();
    let (status, body) = sb
        .exchange(&code, CLIENT_SECRET, "http://127.0.0.1:1/elsewhere")
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "invalid_grant");
}

#[tokio::test]
async fn client_credentials_may_also_come_by_http_basic() {
    let sb = spawn_sandbox().await;
    let code = query(&sb.consent("allow", DEFAULT_ACCOUNT, "s").await, "code").unwrap();
    let response = sb
        .http
        .post(format!("{}/oauth2/token", sb.base))
        .basic_auth(CLIENT_ID, Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn denying_consent_sends_access_denied_back_with_the_state() {
    let sb = spawn_sandbox().await;
    let back = sb.consent("deny", DEFAULT_ACCOUNT, "xyz").await;
    assert_eq!(query(&back, "error").as_deref(), Some("access_denied"));
    assert_eq!(query(&back, "state").as_deref(), Some("xyz"));
    assert_eq!(query(&back, "code"), None);
}

#[tokio::test]
async fn an_unknown_app_gets_an_error_page_and_no_redirect() {
    let sb = spawn_sandbox().await;
    let response = sb
        .http
        .get(format!("{}/oauth2/authorize", sb.base))
        .query(&[
            ("response_type", "code"),
            ("client_id", "nobody"),
            ("redirect_uri", REDIRECT),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("not registered"));
}

#[tokio::test]
async fn a_consent_form_without_the_page_token_is_refused() {
    let sb = spawn_sandbox().await;
    let response = sb
        .http
        .post(format!("{}/oauth2/authorize", sb.base))
        .form(&[
            ("consent_id", "x"),
            ("page_token", "forged"),
            ("account_id", DEFAULT_ACCOUNT),
            ("decision", "allow"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn disconnecting_the_app_revokes_its_tokens() {
    let sb = spawn_sandbox().await;
    let token = sb.token_for(DEFAULT_ACCOUNT).await;
    let auth = Auth::Bearer(token);
    assert_eq!(sb.call_as(&auth, Method::GET, "/ping", None).await.0, 200);
    let page = sb
        .http
        .get(format!("{}/", sb.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        page.contains("Test App"),
        "the account page lists the connected app"
    );
    let response = sb
        .http
        .post(format!("{}/apps/disconnect", sb.base))
        .form(&[
            ("account_id", DEFAULT_ACCOUNT),
            ("client_id", CLIENT_ID),
            (
                "page_token",
                crate::helpers::field(&page, "page_token").as_str(),
            ),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let (status, body) = sb.call_as(&auth, Method::GET, "/ping", None).await;
    assert_eq!(
        crate::helpers::problem_title(status, &body, 401),
        "API Key Invalid"
    );
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let sb = crate::helpers::spawn_with(export_destinations::sandbox::SandboxConfig {
        code_lifetime: std::time::Duration::ZERO,
        ..Default::default()
    })
    .await;
    let code = query(&sb.consent("allow", DEFAULT_ACCOUNT, "s").await, "code").unwrap();
    let (status, body) = sb.exchange(&code, CLIENT_SECRET, REDIRECT).await;
    assert_eq!(status, 400);
    assert_eq!(body["error_description"], "The code has expired.");
}
