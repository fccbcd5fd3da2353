//! Which Mailchimp a destination uses: the real one reached with an API key even when no
//! OAuth app is configured, the built-in sandbox as a visible choice beside it, and the
//! sandbox's state kept across a restart.

use std::sync::Arc;

use export_destinations::crypto::SecretKey;
use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::sandbox::store::DEFAULT_ACCOUNT;
use export_destinations::store::runs::{self, Run, RunStatus};

use crate::helpers::{
    PASSWORD, TestApp, fresh_database_url, location, spawn_stoppable, test_settings,
};
use crate::wizard;
use crate::world::{audience, export, world_with};

/// Queues a run of `destination` on `app` and waits for it to end.
async fn run_export(app: &TestApp, destination: i64) -> Run {
    let mut conn = app.state.db.pool().acquire().await.unwrap();
    let (id, _) = runs::enqueue(&mut conn, destination, false, None)
        .await
        .unwrap();
    drop(conn);
    crate::helpers::finished_run(&app.state.db, id).await
}

fn built_in_emails(app: &TestApp, audience_name: &str) -> Vec<String> {
    let sandbox = app.state.sandbox.clone().expect("the built-in sandbox");
    let store = sandbox.store();
    let list = store
        .audiences
        .values()
        .find(|a| a.name == audience_name)
        .unwrap();
    let mut emails: Vec<String> = list
        .members
        .values()
        .map(|m| m.email_address.clone())
        .collect();
    emails.sort();
    emails
}

/// The report of a new user: with an API key and no OAuth app, the key went to the
/// built-in sandbox and was refused. Now the destination says it is on Mailchimp, the key
/// reaches the configured Mailchimp, and a destination on the sandbox sits beside it.
#[tokio::test]
async fn an_api_key_reaches_the_configured_mailchimp_with_no_oauth_app_beside_the_sandbox() {
    let w = world_with(SandboxConfig::default(), |settings| {
        // The zero-configuration default: the sandbox on, no OAuth app; Mailchimp's
        // address is the standalone sandbox standing in for the real one.
        settings.mailchimp.sandbox = true;
    })
    .await;
    let app = &w.app;
    let segment = wizard::seed(app).await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;

    let new = app
        .get_html("/admin/export-destinations/mailchimp/new")
        .await;
    assert!(
        new.contains(r#"name="mailchimp" value="mailchimp""#),
        "{new}"
    );
    assert!(
        new.contains(r#"value="sandbox" checked"#),
        "with no OAuth app the sandbox is the default choice"
    );
    assert!(
        new.contains("its Audiences page lists each audience's ID"),
        "the audience-ID hint says where the sandbox shows its IDs"
    );
    let connected = app
        .post_form(
            "/admin/export-destinations/mailchimp/new",
            "/admin/export-destinations/mailchimp",
            &[
                ("display_name", "Real audience"),
                ("consent", "yes"),
                ("mailchimp", "mailchimp"),
                ("audience_id", &w.audience),
            ],
        )
        .await;
    assert_eq!(connected.status(), 303);
    let setup = location(&connected);
    let id = wizard::id_of(&setup);

    // OAuth needs an app: the page says so plainly, and a forced request changes nothing.
    let page = app.get_html(&setup).await;
    assert!(
        page.contains(r#"This destination uses <strong class="target">Mailchimp</strong>"#),
        "{page}"
    );
    assert!(page.contains(r#"<button type="button" disabled id="authenticate-unavailable">"#));
    assert!(page.contains("MAILCHIMP_CLIENT_ID"));
    let forced = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/authenticate"),
            &[],
        )
        .await;
    assert_eq!(forced.status(), 409);
    let text = forced.text().await.unwrap();
    assert!(text.contains("none is configured"), "{text}");
    assert!(text.contains("MAILCHIMP_CLIENT_SECRET"), "{text}");

    // The API key goes to the configured Mailchimp, not to the built-in sandbox.
    let keyed = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/api-key"),
            &[("api_key", &w.key)],
        )
        .await;
    assert_eq!(keyed.status(), 303, "{}", keyed.text().await.unwrap());
    assert_eq!(wizard::add_export_user(app, &setup).await.status(), 303);
    assert_eq!(
        wizard::save_named(app, id, "Real audience", &[segment])
            .await
            .status(),
        303
    );
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    assert_eq!(run.counters.sent, 2);
    let real: Vec<String> = audience(&w).into_iter().map(|m| m.0).collect();
    assert_eq!(real, ["ada@northwind.io", "zoe@northwind.io"]);
    assert!(
        !built_in_emails(app, "Newsletter subscribers").contains(&"ada@northwind.io".to_owned()),
        "nothing went to the built-in sandbox"
    );

    // A second destination, on the built-in sandbox, in the same console.
    let on_sandbox = wizard::complete(app, segment).await;
    let run = run_export(app, on_sandbox).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    assert_eq!(
        built_in_emails(app, "Newsletter subscribers"),
        ["ada@northwind.io", "zoe@northwind.io"]
    );
    let list = app.get_html("/admin/export-destinations").await;
    let real_row = list.find("Real audience").unwrap();
    let sandbox_row = list.find("Newsletter export").unwrap();
    let cell_after = |at: usize| {
        let start = at + list[at..].find(r#"<td class="target">"#).unwrap() + 19;
        list[start..start + list[start..].find("</td>").unwrap()].to_owned()
    };
    assert_eq!(cell_after(real_row), "Mailchimp");
    assert_eq!(cell_after(sandbox_row), "Built-in sandbox");
    assert!(list.contains(r#"target="_blank" rel="noopener" id="open-sandbox""#));
}

/// A destination cannot be set up on a sandbox that is off, by the form or the API.
#[tokio::test]
async fn the_sandbox_cannot_be_chosen_when_it_is_off() {
    let w = world_with(SandboxConfig::default(), |_| {}).await;
    let app = &w.app;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let refused = app
        .post_form(
            "/admin/export-destinations/mailchimp/new",
            "/admin/export-destinations/mailchimp",
            &[
                ("display_name", "Try it"),
                ("consent", "yes"),
                ("mailchimp", "sandbox"),
                ("audience_id", "a1b2c3d4e5"),
            ],
        )
        .await;
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(html.contains("MAILCHIMP_SANDBOX=off"), "{html}");
    assert!(html.contains(r#"value="Try it""#), "what was typed is kept");
    crate::helpers::assert_no_destination(app).await;
}

/// The built-in sandbox keeps its audiences, its API key and the console's connection
/// across a restart: the next export finds its members where it left them.
#[tokio::test]
async fn the_built_in_sandbox_survives_a_restart_with_its_audiences_key_and_apps() {
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let database_url = fresh_database_url(dir.path()).await;
    let key = SecretKey::generate();
    let settings = || {
        let mut settings = test_settings(dir.path(), database_url.clone());
        settings.secret_key = Some(key.clone());
        settings
    };
    let (first, stop, stopped) = spawn_stoppable(dir.clone(), settings()).await;
    let segment = wizard::seed(&first).await;
    first
        .signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let id = wizard::complete(&first, segment).await;
    let run = run_export(&first, id).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    assert_eq!(run.counters.sent, 2);
    let (api_key, client_secret) = {
        let sandbox = first.state.sandbox.clone().unwrap();
        let store = sandbox.store();
        let api_key = store
            .api_keys
            .iter()
            .find(|(_, owner)| *owner == DEFAULT_ACCOUNT)
            .unwrap()
            .0
            .clone();
        let secret = store
            .client("export-destinations-console")
            .unwrap()
            .client_secret
            .clone();
        (api_key, secret)
    };
    let audience_id = wizard::audience(&first, "Newsletter subscribers");
    stop.send(()).unwrap();
    stopped.await.unwrap().unwrap();
    drop(first);

    let (second, stop, _stopped) = spawn_stoppable(dir.clone(), settings()).await;
    {
        let sandbox = second.state.sandbox.clone().unwrap();
        let store = sandbox.store();
        assert!(
            store.api_keys.contains_key(&api_key),
            "the same API key works"
        );
        assert_eq!(
            store.api_keys.len(),
            1,
            "no second key was issued at start-up"
        );
        assert_eq!(
            store
                .client("export-destinations-console")
                .unwrap()
                .client_secret,
            client_secret,
            "the console's app registration is the same"
        );
        assert!(
            store
                .tokens
                .values()
                .any(|t| t.client_id == "export-destinations-console"),
            "the console's connection is kept"
        );
    }
    assert_eq!(
        wizard::audience(&second, "Newsletter subscribers"),
        audience_id
    );
    assert_eq!(
        built_in_emails(&second, "Newsletter subscribers"),
        ["ada@northwind.io", "zoe@northwind.io"]
    );
    // The destination's OAuth token still works, and its members are where it left them.
    let run = run_export(&second, id).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    assert_eq!((run.counters.sent, run.counters.unchanged), (0, 2));
    assert_eq!(
        second.sign_in("admin@example.com", PASSWORD).await.status(),
        303
    );
    let html = second.get_html("/sandbox/").await;
    assert!(
        html.contains(r#"id="back-to-console""#),
        "the sandbox's pages lead back to the console"
    );
    stop.send(()).unwrap();
}
