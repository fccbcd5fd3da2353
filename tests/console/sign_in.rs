use export_destinations::domain::Role;

use crate::helpers::{MAX_FAILURES, PASSWORD, location, new_client, spawn_app};

#[tokio::test]
async fn the_right_password_signs_in_and_lands_on_export_destinations() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    let response = app.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/admin/export-destinations");
    let html = app.get_html("/admin/export-destinations").await;
    assert!(html.contains("<h1>Export destinations</h1>"));
    assert!(html.contains("Sign out"));
}

#[tokio::test]
async fn a_wrong_password_or_unknown_address_gets_the_same_message_and_no_session() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    for (email, password) in [
        ("ada@example.com", "wrong password!"),
        ("nobody@example.com", PASSWORD),
    ] {
        let response = app.sign_in(email, password).await;
        assert_eq!(response.status(), 401);
        let html = response.text().await.unwrap();
        assert!(html.contains("The email address or password is not right."));
    }
    let page = app.get("/admin/export-destinations").await;
    assert_eq!(page.status(), 303);
    assert!(location(&page).starts_with("/sign-in"));
}

#[tokio::test]
async fn repeated_failures_pause_sign_in_even_with_the_right_password() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    for attempt in 1..MAX_FAILURES {
        let response = app.sign_in("ada@example.com", "wrong password!").await;
        assert_eq!(response.status(), 401, "attempt {attempt}");
    }
    let last = app.sign_in("ada@example.com", "wrong password!").await;
    assert_eq!(last.status(), 429);
    assert!(
        last.text()
            .await
            .unwrap()
            .contains("Too many failed sign-in attempts")
    );
    let right = app.sign_in("ada@example.com", PASSWORD).await;
    assert_eq!(right.status(), 429);
    let html = right.text().await.unwrap();
    assert!(html.contains("try again in 15 minutes"), "{html}");
    assert_eq!(app.get("/admin/export-destinations").await.status(), 303);
}

#[tokio::test]
async fn a_pause_on_one_account_leaves_other_accounts_alone() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    app.create_user("bob@example.com", Role::Viewer).await;
    for _ in 0..MAX_FAILURES {
        app.sign_in("ada@example.com", "wrong password!").await;
    }
    assert_eq!(app.sign_in("bob@example.com", PASSWORD).await.status(), 303);
}

#[tokio::test]
async fn signing_out_ends_the_session() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Viewer).await;
    let response = app
        .post_form("/admin/export-destinations", "/sign-out", &[])
        .await;
    assert_eq!(response.status(), 303);
    assert_eq!(location(&response), "/sign-in");
    let page = app.get("/admin/export-destinations").await;
    assert_eq!(page.status(), 303);
}

#[tokio::test]
async fn the_session_id_changes_at_sign_in_and_the_old_one_grants_nothing() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    app.get_html("/sign-in").await;
    let before = app
        .session_cookie()
        .expect("an anonymous session for the form's token");
    assert_eq!(app.sign_in("ada@example.com", PASSWORD).await.status(), 303);
    let after = app.session_cookie().unwrap();
    assert_ne!(before, after);
    // A fixated (pre-sign-in) session id is worth nothing after sign-in.
    let attacker = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let response = attacker
        .get(app.url("/admin/export-destinations"))
        .header("cookie", format!("export_destinations_session={before}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    assert!(location(&response).starts_with("/sign-in"));
}

#[tokio::test]
async fn the_session_cookie_is_http_only_and_same_site_lax() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    let response = app.get("/sign-in").await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    assert!(cookie.contains("SameSite=Lax"), "{cookie}");
    assert!(
        !cookie.contains("Secure"),
        "plain http must not mark cookies Secure: {cookie}"
    );
}

#[tokio::test]
async fn an_https_public_url_makes_the_session_cookie_secure() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.public_url = Some("https://console.example.com/".parse().unwrap());
    })
    .await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    let response = app.get("/sign-in").await;
    let cookie = response.headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.contains("Secure"), "{cookie}");
    assert!(response.headers().contains_key("strict-transport-security"));
}

#[tokio::test]
async fn sign_in_returns_to_the_page_asked_for_but_never_to_another_site() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    let redirect = app.get("/admin/users").await;
    assert_eq!(location(&redirect), "/sign-in?next=%2Fadmin%2Fusers");
    let response = app
        .post_form(
            "/sign-in",
            "/sign-in",
            &[
                ("email", "ada@example.com"),
                ("password", PASSWORD),
                ("next", "/admin/users"),
            ],
        )
        .await;
    assert_eq!(location(&response), "/admin/users");

    let (client, _) = new_client();
    let token = crate::helpers::csrf_token(
        &client
            .get(app.url("/sign-in"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let response = client
        .post(app.url("/sign-in"))
        .form(&[
            ("email", "ada@example.com"),
            ("password", PASSWORD),
            ("next", "//evil.example/"),
            ("csrf_token", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&response), "/admin/export-destinations");
}

#[tokio::test]
async fn a_deactivated_account_cannot_sign_in() {
    let app = spawn_app().await;
    let id = app.create_user("gone@example.com", Role::Contributor).await;
    export_destinations::store::users::set_deactivated(app.state.db.pool(), id, Some(1))
        .await
        .unwrap();
    let response = app.sign_in("gone@example.com", PASSWORD).await;
    assert_eq!(response.status(), 403);
    assert!(response.text().await.unwrap().contains("deactivated"));
}
