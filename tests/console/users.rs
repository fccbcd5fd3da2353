use export_destinations::domain::Role;
use export_destinations::store::users;

use crate::helpers::{PASSWORD, csrf_token, location, spawn_app};

#[tokio::test]
async fn an_administrator_adds_a_user_who_can_then_sign_in() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let response = app
        .post_form(
            "/admin/users",
            "/admin/users",
            &[
                ("name", "Grace Hopper"),
                ("email", "grace@example.com"),
                ("role", "contributor"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let html = app.get_html("/admin/users").await;
    assert!(html.contains("Grace Hopper can now sign in as Contributor."));
    assert!(html.contains("grace@example.com"));

    let grace = app.another_client();
    assert_eq!(
        grace.sign_in("grace@example.com", PASSWORD).await.status(),
        303
    );
    assert_eq!(
        grace.get("/admin/users").await.status(),
        403,
        "a Contributor is no administrator"
    );
}

#[tokio::test]
async fn an_address_that_already_has_an_account_is_refused_clearly() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let response = app
        .post_form(
            "/admin/users",
            "/admin/users",
            &[
                ("name", "Ada Again"),
                ("email", "ADA@example.com"),
                ("role", "viewer"),
                ("password", PASSWORD),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("ada@example.com already has an account."));
    assert!(
        html.contains("value=\"Ada Again\""),
        "the form keeps what was typed"
    );
    assert_eq!(users::count(app.state.db.pool()).await.unwrap(), 1);
}

#[tokio::test]
async fn bad_user_details_are_each_explained() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let response = app
        .post_form(
            "/admin/users",
            "/admin/users",
            &[
                ("name", " "),
                ("email", "a@b"),
                ("role", "owner"),
                ("password", "short"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("Name: the name is required."));
    assert!(html.contains("Email: the part after @ is not a domain name"));
    assert!(html.contains("Role: choose Administrator, Contributor or Viewer."));
    assert!(html.contains("Initial password: the password must have at least 10 characters."));
}

#[tokio::test]
async fn an_administrator_changes_a_role() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let bob = app.create_user("bob@example.com", Role::Viewer).await;
    let response = app
        .post_form(
            "/admin/users",
            &format!("/admin/users/{bob}/role"),
            &[("role", "contributor")],
        )
        .await;
    assert_eq!(location(&response), "/admin/users");
    let stored = users::find_by_id(app.state.db.pool(), bob)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.role, Role::Contributor);
    assert!(
        app.get_html("/admin/users")
            .await
            .contains("bob is now Contributor.")
    );
}

#[tokio::test]
async fn administrators_cannot_demote_or_deactivate_themselves() {
    let app = spawn_app().await;
    let me = app
        .signed_in_as("ada@example.com", Role::Administrator)
        .await;
    app.post_form(
        "/admin/users",
        &format!("/admin/users/{me}/role"),
        &[("role", "viewer")],
    )
    .await;
    assert!(
        app.get_html("/admin/users")
            .await
            .contains("You cannot change your own role")
    );
    app.post_form(
        "/admin/users",
        &format!("/admin/users/{me}/deactivate"),
        &[],
    )
    .await;
    assert!(
        app.get_html("/admin/users")
            .await
            .contains("You cannot deactivate your own account.")
    );
    let stored = users::find_by_id(app.state.db.pool(), me)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.role, Role::Administrator);
    assert!(stored.is_active());
}

#[tokio::test]
async fn deactivating_a_user_ends_their_session_and_reactivating_lets_them_back() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let bob_client = app.another_client();
    let bob = bob_client
        .signed_in_as("bob@example.com", Role::Contributor)
        .await;
    assert_eq!(
        bob_client.get("/admin/export-destinations").await.status(),
        200
    );

    app.post_form(
        "/admin/users",
        &format!("/admin/users/{bob}/deactivate"),
        &[],
    )
    .await;
    let response = bob_client.get("/admin/export-destinations").await;
    assert_eq!(
        response.status(),
        303,
        "a deactivated user's session ends at once"
    );
    assert_eq!(
        bob_client
            .sign_in("bob@example.com", PASSWORD)
            .await
            .status(),
        403
    );

    app.post_form(
        "/admin/users",
        &format!("/admin/users/{bob}/reactivate"),
        &[],
    )
    .await;
    assert_eq!(
        bob_client
            .sign_in("bob@example.com", PASSWORD)
            .await
            .status(),
        303
    );
}

#[tokio::test]
async fn two_administrators_demoting_each_other_at_once_leave_one_administrator() {
    let ada = spawn_app().await;
    let ada_id = ada
        .signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let bob = ada.another_client();
    let bob_id = bob
        .signed_in_as("bob@example.com", Role::Administrator)
        .await;
    let demote_bob = format!("/admin/users/{bob_id}/role");
    let demote_ada = format!("/admin/users/{ada_id}/role");
    for round in 0..8 {
        // Both pages are open; both administrators press the button at the same moment.
        let ada_token = csrf_token(&ada.get_html("/admin/users").await);
        let bob_token = csrf_token(&bob.get_html("/admin/users").await);
        let ada_form = [("role", "viewer"), ("csrf_token", ada_token.as_str())];
        let bob_form = [("role", "viewer"), ("csrf_token", bob_token.as_str())];
        let (by_ada, by_bob) = tokio::join!(
            ada.post_raw(&demote_bob, &ada_form),
            bob.post_raw(&demote_ada, &bob_form),
        );
        for answer in [by_ada, by_bob] {
            let status = answer.status();
            assert!(status == 303 || status == 403, "round {round}: {status}");
        }
        let admins = users::count_other_active_admins(ada.state.db.pool(), 0)
            .await
            .unwrap();
        assert_eq!(
            admins, 1,
            "round {round}: exactly one administrator is left"
        );
        for id in [ada_id, bob_id] {
            users::set_role(ada.state.db.pool(), id, Role::Administrator)
                .await
                .unwrap();
        }
    }
}
