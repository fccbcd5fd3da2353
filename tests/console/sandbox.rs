use export_destinations::domain::Role;

use crate::helpers::spawn_app;

#[tokio::test]
async fn with_no_mailchimp_app_configured_the_console_serves_the_sandbox() {
    let app = spawn_app().await;
    assert!(app.state.mailchimp.is_sandbox);
    let sandbox = app.state.sandbox.clone().expect("the built-in sandbox");
    let anonymous = app.get("/sandbox/").await;
    assert_eq!(
        anonymous.status(),
        303,
        "its pages show members: only for people signed in"
    );
    assert!(crate::helpers::location(&anonymous).starts_with("/sign-in"));
    assert_eq!(app.get("/sandbox/inspect/stats.json").await.status(), 303);
    app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let html = app.get_html("/sandbox/").await;
    assert!(html.contains("Sandbox Mailchimp"));
    assert!(html.contains("Newsletter subscribers"));
    assert!(
        html.contains("/sandbox/audiences/"),
        "links stay under the sandbox's prefix"
    );

    let key = sandbox.store().api_keys.keys().next().unwrap().clone();
    let ping = app
        .client
        .get(app.url("/sandbox/3.0/ping"))
        .basic_auth("x", Some(key))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
}

#[tokio::test]
async fn the_console_reaches_its_sandbox_through_mailchimp_shaped_urls() {
    let app = spawn_app().await;
    let endpoints = &app.state.mailchimp;
    assert_eq!(
        endpoints.token_url().as_str(),
        app.url("/sandbox/oauth2/token")
    );
    assert_eq!(
        endpoints.redirect_uri.as_str(),
        app.url("/oauth/mailchimp/callback")
    );
    let key = "0123456789abcdef0123456789abcdef-us1";
    assert_eq!(
        endpoints.api_base_for_key(key).unwrap(),
        app.url("/sandbox")
    );
    // The sandbox accepts the console's own app at the consent page (shown to people
    // signed in to the console, who are the ones sent there).
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let consent = app
        .client
        .get(app.url("/sandbox/oauth2/authorize"))
        .query(&[
            ("response_type", "code"),
            ("client_id", endpoints.app.client_id.as_str()),
            ("redirect_uri", endpoints.redirect_uri.as_str()),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(consent.status(), 200);
    assert!(
        consent
            .text()
            .await
            .unwrap()
            .contains("allow export-destinations to access")
    );
}

#[tokio::test]
async fn the_export_destinations_page_says_plainly_that_mailchimp_is_the_sandbox() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Viewer).await;
    let html = app.get_html("/admin/export-destinations").await;
    assert!(html.contains("built-in Mailchimp sandbox"));
    assert!(html.contains("href=\"/sandbox/\""));
}

#[tokio::test]
async fn a_configured_mailchimp_app_replaces_the_sandbox() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.mailchimp.app = Some(export_destinations::mailchimp::OAuthApp {
            client_id: "123".into(),
            client_secret: "secret".into(),
        });
    })
    .await;
    assert!(app.state.sandbox.is_none());
    assert_eq!(
        app.state.mailchimp.authorize_url().as_str(),
        "https://login.mailchimp.com/oauth2/authorize"
    );
    assert_eq!(app.get("/sandbox/").await.status(), 404);
    app.signed_in_as("ada@example.com", Role::Viewer).await;
    let html = app.get_html("/admin/export-destinations").await;
    assert!(!html.contains("built-in Mailchimp sandbox"));
}
