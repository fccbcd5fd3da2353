use export_destinations::domain::Role;
use export_destinations::store::users;

use crate::helpers::{PASSWORD, csrf_token, location, spawn_app};

#[tokio::test]
async fn anonymous_visitors_are_sent_to_sign_in() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    for path in [
        "/admin/export-destinations",
        "/admin/users",
        "/data/import-jobs/1",
        "/data/import-jobs/1/progress.json",
        "/data/segments/refresh",
        "/data/segments/refresh.json",
        "/admin/export-destinations/1/discard",
        "/admin/export-runs/1/members.csv?outcome=skipped",
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 303, "{path}");
        assert!(location(&response).starts_with("/sign-in"), "{path}");
    }
}

#[tokio::test]
async fn viewers_and_contributors_get_403_on_admin_pages() {
    for role in [Role::Viewer, Role::Contributor] {
        let app = spawn_app().await;
        app.signed_in_as("someone@example.com", role).await;
        let response = app.get("/admin/users").await;
        assert_eq!(response.status(), 403, "{role}");
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Your role does not allow this")
        );
    }
}

#[tokio::test]
async fn a_viewer_cannot_post_to_admin_routes_even_with_a_valid_token() {
    let app = spawn_app().await;
    let admin = app
        .create_user("ada@example.com", Role::Administrator)
        .await;
    app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let token = csrf_token(&app.get_html("/admin/export-destinations").await);
    let attempts: [(String, Vec<(&str, &str)>); 3] = [
        (
            "/admin/users".into(),
            vec![
                ("name", "Eve"),
                ("email", "eve@example.com"),
                ("role", "administrator"),
                ("password", PASSWORD),
            ],
        ),
        (
            format!("/admin/users/{admin}/role"),
            vec![("role", "viewer")],
        ),
        (format!("/admin/users/{admin}/deactivate"), vec![]),
    ];
    for (path, mut form) in attempts {
        form.push(("csrf_token", &token));
        let response = app.post_raw(&path, &form).await;
        assert_eq!(response.status(), 403, "{path}");
    }
    let ada = users::find_by_id(app.state.db.pool(), admin)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ada.role, Role::Administrator);
    assert!(ada.is_active());
    assert_eq!(users::count(app.state.db.pool()).await.unwrap(), 2);
}

#[tokio::test]
async fn viewers_see_export_destinations_but_no_users_link() {
    let app = spawn_app().await;
    app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let html = app.get_html("/admin/export-destinations").await;
    assert!(html.contains("Export destinations"));
    assert!(!html.contains("href=\"/admin/users\""));
}

#[tokio::test]
async fn administrators_see_the_users_link() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let html = app.get_html("/admin/export-destinations").await;
    assert!(html.contains("href=\"/admin/users\""));
}
