//! Changing one's own password.

use export_destinations::domain::Role;

use crate::helpers::{MAX_FAILURES, PASSWORD, spawn_app};

const NEW: &str = "a much longer passphrase";

#[tokio::test]
async fn a_viewer_changes_their_password_and_their_other_sessions_end() {
    let app = spawn_app().await;
    app.signed_in_as("vic@example.com", Role::Viewer).await;
    // The same person signed in on another computer.
    let elsewhere = app.another_client();
    assert_eq!(
        elsewhere
            .sign_in("vic@example.com", PASSWORD)
            .await
            .status(),
        303
    );
    assert_eq!(elsewhere.get("/data/profiles").await.status(), 200);

    let page = app.get_html("/data/profiles").await;
    assert!(
        page.contains("href=\"/account/password\""),
        "linked from every page"
    );
    let before = app.session_cookie().unwrap();
    let done = app
        .post_form(
            "/account/password",
            "/account/password",
            &[("current", PASSWORD), ("new", NEW), ("confirm", NEW)],
        )
        .await;
    assert_eq!(done.status(), 303);
    let page = app.get_html("/account/password").await;
    assert!(page.contains("Your password was changed"), "{page}");
    assert_ne!(app.session_cookie().unwrap(), before, "a new session id");
    assert_eq!(
        app.get("/data/profiles").await.status(),
        200,
        "still signed in here"
    );

    // The other computer is signed out on its next request.
    let there = elsewhere.get("/data/profiles").await;
    assert_eq!(there.status(), 303);
    assert!(
        there.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/sign-in")
    );

    // The old password no longer works; the new one does.
    let fresh = app.another_client();
    assert_eq!(
        fresh.sign_in("vic@example.com", PASSWORD).await.status(),
        401
    );
    assert_eq!(fresh.sign_in("vic@example.com", NEW).await.status(), 303);
}

#[tokio::test]
async fn a_wrong_current_password_or_a_bad_new_one_changes_nothing_and_says_why() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let wrong = app
        .post_form(
            "/account/password",
            "/account/password",
            &[
                ("current", "not my password!"),
                ("new", NEW),
                ("confirm", NEW),
            ],
        )
        .await;
    assert_eq!(wrong.status(), 422);
    let html = wrong.text().await.unwrap();
    assert!(
        html.contains("Current password: this is not your password."),
        "{html}"
    );

    let bad = app
        .post_form(
            "/account/password",
            "/account/password",
            &[
                ("current", PASSWORD),
                ("new", "short"),
                ("confirm", "other"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 422);
    let html = bad.text().await.unwrap();
    assert!(
        html.contains("New password: the password must have at least 10 characters."),
        "{html}"
    );
    assert!(html.contains("the two new passwords differ"), "{html}");
    assert!(
        !html.contains("short"),
        "a password typed is never shown back"
    );

    // Nothing changed: the old password still signs in; no audit record.
    let fresh = app.another_client();
    assert_eq!(
        fresh.sign_in("ada@example.com", PASSWORD).await.status(),
        303
    );
    let log = app.get_html("/admin/audit-log").await;
    assert!(!log.contains("changed password"));
}

#[tokio::test]
async fn changing_a_password_needs_the_forms_csrf_token_and_is_audited() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let forged = app
        .post_raw(
            "/account/password",
            &[("current", PASSWORD), ("new", NEW), ("confirm", NEW)],
        )
        .await;
    assert_eq!(forged.status(), 403);
    let fresh = app.another_client();
    assert_eq!(
        fresh.sign_in("ada@example.com", PASSWORD).await.status(),
        303
    );

    let done = app
        .post_form(
            "/account/password",
            "/account/password",
            &[("current", PASSWORD), ("new", NEW), ("confirm", NEW)],
        )
        .await;
    assert_eq!(done.status(), 303);
    let log = app.get_html("/admin/audit-log").await;
    assert!(log.contains("changed password"), "{log}");
}

#[tokio::test]
async fn guessing_the_current_password_is_throttled_like_sign_in_even_in_parallel() {
    let app = spawn_app().await;
    app.signed_in_as("vic@example.com", Role::Viewer).await;
    let token = crate::helpers::csrf_token(&app.get_html("/account/password").await);
    let before = app.state.hasher.verifications();
    let guesses = (0..20).map(|i| {
        let client = app.client.clone();
        let url = app.url("/account/password");
        let token = token.clone();
        tokio::spawn(async move {
            let guess = format!("guess number {i}");
            client
                .post(url)
                .form(&[
                    ("current", guess.as_str()),
                    ("new", NEW),
                    ("confirm", NEW),
                    ("csrf_token", &token),
                ])
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        })
    });
    let statuses: Vec<u16> = futures::future::join_all(guesses)
        .await
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert!(
        app.state.hasher.verifications() - before <= u64::from(MAX_FAILURES),
        "at most {MAX_FAILURES} passwords checked: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 422 || *s == 429),
        "{statuses:?}"
    );
    // Paused now: even the right current password changes nothing.
    let right = app
        .post_form(
            "/account/password",
            "/account/password",
            &[("current", PASSWORD), ("new", NEW), ("confirm", NEW)],
        )
        .await;
    assert_eq!(right.status(), 429);
    assert!(right.text().await.unwrap().contains("try again in"));
    let fresh = app.another_client();
    assert_eq!(
        fresh.sign_in("vic@example.com", NEW).await.status(),
        429,
        "sign-in from this address is paused as well"
    );
}
