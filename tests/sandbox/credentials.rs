use reqwest::Method;

use crate::helpers::{Auth, problem_title, spawn_sandbox};

#[tokio::test]
async fn a_call_without_credentials_gets_401_api_key_missing() {
    let sb = spawn_sandbox().await;
    let (status, body) = sb.call_as(&Auth::None, Method::GET, "/ping", None).await;
    assert_eq!(problem_title(status, &body, 401), "API Key Missing");
}

#[tokio::test]
async fn an_unknown_api_key_gets_401_api_key_invalid() {
    let sb = spawn_sandbox().await;
    let auth = Auth::Key("00000000000000000000000000000000-us1".into());
    let (status, body) = sb.call_as(&auth, Method::GET, "/ping", None).await;
    assert_eq!(problem_title(status, &body, 401), "API Key Invalid");
}

#[tokio::test]
async fn errors_are_problem_json() {
    let sb = spawn_sandbox().await;
    let response = sb
        .http
        .get(format!("{}/3.0/lists/nonexistent", sb.base))
        .basic_auth("x", Some(&sb.key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(
        problem_title(reqwest::StatusCode::NOT_FOUND, &body, 404),
        "Resource Not Found"
    );
}

#[tokio::test]
async fn another_accounts_audience_is_forbidden() {
    let sb = spawn_sandbox().await;
    let (other_key, other_list) = {
        let mut store = sb.sandbox.store();
        let account = store.add_account("Another Company");
        let key = store.issue_api_key(&account);
        let list = store.create_audience(&account, "Their list", "2026-01-01T00:00:00+00:00");
        (key, list)
    };
    let (status, body) = sb.get(&format!("/lists/{other_list}")).await;
    assert_eq!(problem_title(status, &body, 403), "Forbidden");
    let (status, _) = sb
        .call_as(
            &Auth::Key(other_key),
            Method::GET,
            &format!("/lists/{other_list}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "the owner can read it");
    let (_, lists) = sb.get("/lists").await;
    assert_eq!(
        lists["total_items"], 2,
        "each account sees only its own audiences"
    );
}

#[tokio::test]
async fn oauth_tokens_of_another_account_cannot_see_this_audience() {
    let sb = spawn_sandbox().await;
    let other = sb.sandbox.store().add_account("Another Company");
    let token = sb.token_for(&other).await;
    let (status, body) = sb
        .call_as(
            &Auth::Bearer(token),
            Method::GET,
            &format!("/lists/{}", sb.newsletter),
            None,
        )
        .await;
    assert_eq!(problem_title(status, &body, 403), "Forbidden");
}
