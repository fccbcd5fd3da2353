use export_destinations::domain::Role;

use crate::helpers::{PASSWORD, csrf_token, location, spawn_app};

#[tokio::test]
async fn a_new_console_sends_the_first_visitor_to_create_an_administrator() {
    let app = spawn_app().await;
    let root = app.get("/").await;
    assert_eq!(root.status(), 303);
    assert_eq!(location(&root), "/setup");
    let sign_in = app.get("/sign-in").await;
    assert_eq!(location(&sign_in), "/setup");
    let html = app.get_html("/setup").await;
    assert!(html.contains("Create the first administrator"));
}

#[tokio::test]
async fn creating_the_first_administrator_signs_them_in() {
    let app = spawn_app().await;
    let response = app
        .post_form(
            "/setup",
            "/setup",
            &[
                ("name", "Ada Lovelace"),
                ("email", "Ada@Example.com"),
                ("password", PASSWORD),
                ("password_confirmation", PASSWORD),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/admin/export-destinations");
    let html = app.get_html("/admin/export-destinations").await;
    assert!(html.contains("Ada Lovelace · Administrator"));
    assert!(html.contains("first administrator"));
    // The address was stored in its canonical form and the account can sign in again.
    let (other, _) = crate::helpers::new_client();
    let token = csrf_token(
        &other
            .get(app.url("/sign-in"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let again = other
        .post(app.url("/sign-in"))
        .form(&[
            ("email", "ada@example.com"),
            ("password", PASSWORD),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 303);
}

#[tokio::test]
async fn the_first_administrator_page_is_gone_once_any_user_exists() {
    let app = spawn_app().await;
    let token = csrf_token(&app.get_html("/setup").await);
    app.create_user("viewer@example.com", Role::Viewer).await;
    assert_eq!(app.get("/setup").await.status(), 404);
    let response = app
        .post_raw(
            "/setup",
            &[
                ("name", "Mallory"),
                ("email", "mallory@example.com"),
                ("password", PASSWORD),
                ("password_confirmation", PASSWORD),
                ("csrf_token", &token),
            ],
        )
        .await;
    assert_eq!(response.status(), 404);
    assert_eq!(
        export_destinations::store::users::count(app.state.db.pool())
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn bad_first_administrator_details_are_explained_and_nothing_is_created() {
    let app = spawn_app().await;
    let response = app
        .post_form(
            "/setup",
            "/setup",
            &[
                ("name", ""),
                ("email", "not-an-address"),
                ("password", "short"),
                ("password_confirmation", "different"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("Name: the name is required."));
    assert!(html.contains("Email: the email address needs exactly one @."));
    assert!(html.contains("Password: the password must have at least 10 characters."));
    assert!(html.contains("the two passwords are not the same"));
    assert!(html.contains("value=\"not-an-address\""), "input is kept");
    assert_eq!(
        export_destinations::store::users::count(app.state.db.pool())
            .await
            .unwrap(),
        0
    );
}
