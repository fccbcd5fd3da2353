use export_destinations::domain::Role;
use export_destinations::store::users;

use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
async fn a_form_without_its_token_is_refused_with_a_clear_page() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let response = app
        .post_raw(
            "/admin/users",
            &[
                ("name", "Eve"),
                ("email", "eve@example.com"),
                ("role", "administrator"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
    let html = response.text().await.unwrap();
    assert!(html.contains("This form could not be accepted"));
    assert!(html.contains("reload the page and try again"));
    assert_eq!(
        users::count(app.state.db.pool()).await.unwrap(),
        1,
        "no user was added"
    );
}

#[tokio::test]
async fn a_form_with_a_forged_token_is_refused() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let response = app
        .post_raw(
            "/admin/users",
            &[
                ("name", "Eve"),
                ("email", "eve@example.com"),
                ("role", "administrator"),
                ("password", PASSWORD),
                ("csrf_token", "forged"),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
    assert_eq!(users::count(app.state.db.pool()).await.unwrap(), 1);
}

#[tokio::test]
async fn signing_out_needs_the_token_too() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Viewer).await;
    let response = app.post_raw("/sign-out", &[]).await;
    assert_eq!(response.status(), 403);
    assert_eq!(
        app.get("/admin/export-destinations").await.status(),
        200,
        "still signed in"
    );
}

#[tokio::test]
async fn the_token_is_accepted_from_a_header() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Viewer).await;
    let token = crate::helpers::csrf_token(&app.get_html("/admin/export-destinations").await);
    let response = app
        .client
        .post(app.url("/sign-out"))
        .header("x-csrf-token", token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
}

#[tokio::test]
async fn the_sign_in_form_itself_needs_a_token() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    let response = app
        .post_raw(
            "/sign-in",
            &[("email", "ada@example.com"), ("password", PASSWORD)],
        )
        .await;
    assert_eq!(response.status(), 403);
}
