//! The API's tokens: refused without one, carrying their user's role, made on the page
//! and by the command line, shown once and revocable; the bearer scheme in any case.

use export_destinations::domain::Role;
use export_destinations::store::users;
use serde_json::json;

use crate::api::{call, sandbox_key, token};
use crate::helpers::spawn_app;
use crate::wizard::seed;

#[tokio::test]
async fn calls_without_a_valid_token_get_401_problem_json() {
    let app = spawn_app().await;
    let (status, body) = call(&app, reqwest::Method::GET, "/api/v1/segments", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["title"], "Unauthorized");
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/segments",
        Some("edt_wrong"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let valid = token(&app, "viewer@example.com", Role::Viewer).await;
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/segments",
            Some(&valid),
            None
        )
        .await
        .0,
        200
    );
    let user = users::find_by_email(
        app.state.db.pool(),
        &export_destinations::domain::EmailAddress::parse("viewer@example.com").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    users::set_deactivated(app.state.db.pool(), user.id, Some(1))
        .await
        .unwrap();
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/segments",
            Some(&valid),
            None
        )
        .await
        .0,
        401,
        "a deactivated user's token stops working"
    );
}

#[tokio::test]
async fn tokens_carry_their_users_role() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let viewer = token(&app, "viewer@example.com", Role::Viewer).await;
    let contributor = token(&app, "contributor@example.com", Role::Contributor).await;
    let body = json!({ "display_name": "x", "consent": true, "audience_id": "a1b2c3d4e5", "api_key": sandbox_key(&app), "email_field": "EmailAddress", "segment_ids": [segment] });
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/destinations",
            Some(&viewer),
            Some(body.clone())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/destinations",
            Some(&contributor),
            Some(body)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/segments/refresh",
            Some(&viewer),
            None
        )
        .await
        .0,
        403
    );
    let (status, refreshed) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/segments/refresh",
        Some(&contributor),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(refreshed["segments"][0]["member_count"], 2);
}

#[tokio::test]
async fn tokens_are_made_on_the_api_tokens_page_shown_once_and_revocable() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let response = app
        .post_form(
            "/admin/api-tokens",
            "/admin/api-tokens",
            &[("name", "CI pipeline")],
        )
        .await;
    let html = response.text().await.unwrap();
    let marker = "id=\"new-token\"";
    assert!(html.contains(marker) && html.contains("it is not shown again"));
    let start = html.find("value=\"edt_").unwrap() + 7;
    let token = html[start..start + html[start..].find('"').unwrap()].to_owned();
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/segments",
            Some(&token),
            None
        )
        .await
        .0,
        200
    );
    let page = app.get_html("/admin/api-tokens").await;
    assert!(!page.contains(&token), "never shown again");
    assert!(page.contains("CI pipeline") && page.contains(&token[..10]));
    let id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    app.post_form(
        "/admin/api-tokens",
        &format!("/admin/api-tokens/{id}/revoke"),
        &[],
    )
    .await;
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/segments",
            Some(&token),
            None
        )
        .await
        .0,
        401
    );
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_optional(app.state.db.pool())
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(!stored.contains(&token[4..]), "only a digest is kept");
}

#[tokio::test]
async fn the_command_line_creates_a_token_that_works() {
    let app = spawn_app().await;
    app.create_user("ops@example.com", Role::Contributor).await;
    let settings = &app.state.settings;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_export-destinations"))
        .args([
            "api-token",
            "create",
            "--email",
            "OPS@example.com",
            "--name",
            "deploy",
            "--database-url",
            settings.database_url.as_str(),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(token.starts_with("edt_"));
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/destinations",
            Some(&token),
            None
        )
        .await
        .0,
        200
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let valid = token(&app, "viewer@example.com", Role::Viewer).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = reqwest::Client::new()
            .get(app.url("/api/v1/segments"))
            .header("authorization", format!("{scheme} {valid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let response = reqwest::Client::new()
        .get(app.url("/api/v1/segments"))
        .header("authorization", format!("Basic {valid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
