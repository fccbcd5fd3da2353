use export_destinations::domain::Role;
use export_destinations::sandbox::store::DEFAULT_ACCOUNT;

use crate::helpers::{assert_refused, spawn_app};

#[tokio::test]
async fn with_no_mailchimp_app_configured_the_console_serves_the_sandbox() {
    let app = spawn_app().await;
    assert!(app.state.mailchimp.offers_sandbox());
    assert_eq!(
        app.state.mailchimp.default_target(),
        export_destinations::domain::destination::Target::Sandbox,
        "with no OAuth app, new destinations start on the sandbox"
    );
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
    let endpoints = app.state.mailchimp.sandbox.as_ref().unwrap();
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
            (
                "client_id",
                endpoints.app.as_ref().unwrap().client_id.as_str(),
            ),
            ("redirect_uri", endpoints.redirect_uri.as_str()),
            ("state", "s"),
        ])
        .send()
        .await
        .unwrap();
    assert_refused(consent, 200, "allow export-destinations to access").await;
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
async fn a_configured_mailchimp_app_sits_beside_the_sandbox_which_a_setting_turns_off() {
    let app_settings = |settings: &mut export_destinations::config::Settings| {
        settings.mailchimp.app = Some(export_destinations::mailchimp::OAuthApp {
            client_id: "123".into(),
            client_secret: "secret".into(),
        });
    };
    let both = crate::helpers::spawn_app_with(app_settings).await;
    assert!(both.state.sandbox.is_some());
    assert_eq!(
        both.state.mailchimp.mailchimp.authorize_url().as_str(),
        "https://login.mailchimp.com/oauth2/authorize"
    );
    assert_eq!(
        both.state.mailchimp.default_target(),
        export_destinations::domain::destination::Target::Mailchimp,
        "with an OAuth app, new destinations start on Mailchimp"
    );
    both.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = both
        .get_html("/admin/export-destinations/mailchimp/new")
        .await;
    assert!(setup.contains(r#"value="mailchimp" checked"#), "{setup}");
    assert!(setup.contains(r#"value="sandbox">"#));

    let only_mailchimp = crate::helpers::spawn_app_with(move |settings| {
        app_settings(settings);
        settings.mailchimp.sandbox = false;
    })
    .await;
    assert!(only_mailchimp.state.sandbox.is_none());
    assert_eq!(only_mailchimp.get("/sandbox/").await.status(), 404);
    only_mailchimp
        .signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let html = only_mailchimp.get_html("/admin/export-destinations").await;
    assert!(!html.contains("built-in Mailchimp sandbox"));
    let setup = only_mailchimp
        .get_html("/admin/export-destinations/mailchimp/new")
        .await;
    assert!(!setup.contains(r#"name="mailchimp""#), "no choice to make");
    assert!(setup.contains("Exports go to Mailchimp."));
}

/// The sandbox's pages stand for the console's Mailchimp account: people signed in may look
/// at audiences and members, but only administrators see its credentials or change it.
#[tokio::test]
async fn only_administrators_see_the_sandboxs_credentials_or_change_it() {
    let app = spawn_app().await;
    let segment = crate::wizard::seed(&app).await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    crate::wizard::complete(&app, segment).await;
    let sandbox = app.state.sandbox.clone().unwrap();
    let key = sandbox.store().api_keys.keys().next().unwrap().clone();
    let endpoints = app.state.mailchimp.sandbox.clone().unwrap();
    let client_id = endpoints.app.as_ref().unwrap().client_id.clone();
    let tokens = || {
        sandbox
            .store()
            .tokens
            .values()
            .filter(|t| t.client_id == client_id)
            .count()
    };
    assert_eq!(tokens(), 1, "the set-up connected the console's app");
    let disconnect = [
        ("account_id", DEFAULT_ACCOUNT),
        ("client_id", client_id.as_str()),
        ("page_token", sandbox.page_token()),
    ];

    for (email, role) in [
        ("viewer@example.com", Role::Viewer),
        ("contributor@example.com", Role::Contributor),
    ] {
        let person = app.another_client();
        person.signed_in_as(email, role).await;
        let html = person.get_html("/sandbox/").await;
        assert!(html.contains("Newsletter subscribers"), "{role}");
        assert!(!html.contains(&key), "{role} sees no API key");
        assert!(!html.contains("Disconnect"), "{role} gets no Disconnect");
        assert!(!html.contains(sandbox.page_token()), "{role}");
        assert!(html.contains("shown to the console's administrators"));
        let audience = crate::wizard::audience(&app, "Newsletter subscribers");
        let members = person
            .get_html(&format!("/sandbox/audiences/{audience}"))
            .await;
        assert!(
            members.contains("Newsletter subscribers"),
            "{role} sees the audience"
        );
        // Even with the sandbox's own form token, no change.
        let response = person
            .post_raw("/sandbox/apps/disconnect", &disconnect)
            .await;
        assert_eq!(response.status(), 403, "{role} cannot disconnect");
        assert_eq!(tokens(), 1, "{role}: the console's app stays connected");
        let consent = person
            .client
            .get(person.url("/sandbox/oauth2/authorize"))
            .query(&[
                ("response_type", "code"),
                ("client_id", client_id.as_str()),
                ("redirect_uri", endpoints.redirect_uri.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(consent.status(), 403, "{role}: the consent page is set-up");
        let answer = person
            .post_raw(
                "/sandbox/oauth2/authorize",
                &[
                    ("consent_id", "x"),
                    ("page_token", sandbox.page_token()),
                    ("decision", "allow"),
                ],
            )
            .await;
        assert_eq!(answer.status(), 403, "{role}");
    }

    // The administrator sees the key and the connected app, and can disconnect it.
    let html = app.get_html("/sandbox/").await;
    assert!(html.contains(&key));
    assert!(html.contains("Disconnect"));
    let response = app.post_raw("/sandbox/apps/disconnect", &disconnect).await;
    assert_eq!(response.status(), 303);
    assert_eq!(tokens(), 0);
    // Programs with credentials still use the sandbox's API without a console session.
    let ping = reqwest::Client::new()
        .get(app.url("/sandbox/3.0/ping"))
        .basic_auth("x", Some(&key))
        .send()
        .await
        .unwrap();
    assert_eq!(ping.status(), 200);
}

#[tokio::test]
async fn the_built_in_sandbox_keeps_its_state_in_data_sandbox_json() {
    let app = spawn_app().await;
    let sandbox = app.state.sandbox.clone().expect("the built-in sandbox");
    let (key, list) = {
        let store = sandbox.store();
        let key = store.api_keys.keys().next().unwrap().clone();
        let list = store
            .audiences
            .values()
            .find(|a| a.name == "Newsletter subscribers")
            .unwrap()
            .id
            .clone();
        (key, list)
    };
    let written = app
        .client
        .post(app.url(&format!("/sandbox/3.0/lists/{list}")))
        .basic_auth("x", Some(key))
        .json(&serde_json::json!({ "members": [{ "email_address": "kept@northwind.io", "status": "subscribed" }] }))
        .send()
        .await
        .unwrap();
    assert_eq!(written.status(), 200);
    let path = app.state.settings.data_dir.join("sandbox.json");
    crate::helpers::wait_until(
        "the member to be saved in sandbox.json",
        std::time::Duration::from_secs(6),
        || async {
            std::fs::read_to_string(&path)
                .unwrap_or_default()
                .contains("kept@northwind.io")
                .then_some(())
        },
    )
    .await;
    // A console started on the same folder finds it again.
    let restored = export_destinations::sandbox::Sandbox::new(
        export_destinations::sandbox::SandboxConfig {
            state_file: Some(path),
            ..Default::default()
        },
        url::Url::parse("http://127.0.0.1:1/").unwrap(),
    )
    .unwrap();
    let store = restored.store();
    assert!(
        store.audiences[&list]
            .members
            .values()
            .any(|m| m.email_address == "kept@northwind.io")
    );
}
