//! The brief's set-up, step by step: name, consent, Connect, the export user and the
//! checks on each step.

use export_destinations::domain::Role;
use export_destinations::store::{audit, destinations};

use crate::helpers::{PASSWORD, assert_refused, location, spawn_app};
use crate::wizard::{self, audience, authenticate, connect, id_of, seed};

#[tokio::test]
async fn an_administrator_completes_every_step_of_the_brief_against_the_sandbox() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;

    let list = app.get_html("/admin/export-destinations").await;
    assert!(
        list.contains("Add destination")
            && list.contains("href=\"/admin/export-destinations/mailchimp/new\"")
    );
    let new = app
        .get_html("/admin/export-destinations/mailchimp/new")
        .await;
    assert!(new.contains("Data privacy and compliance") && new.contains("I agree"));
    assert!(
        new.contains("<button type=\"button\" disabled id=\"next\">"),
        "Next waits for every step"
    );

    let setup = connect(
        &app,
        "Newsletter export",
        &audience(&app, "Newsletter subscribers"),
    )
    .await;
    let page = app.get_html(&setup).await;
    assert!(page.contains("Authenticate with Mailchimp") && page.contains("disabled id=\"next\""));

    let back = authenticate(&app, &setup).await;
    assert_eq!(location(&back), setup);
    let page = app.get_html(&setup).await;
    assert!(page.contains("✓ Connected to Sandbox Marketing"), "{page}");
    assert!(page.contains("audience “Newsletter subscribers”"));
    assert!(
        page.contains("disabled id=\"next\""),
        "the export user is still missing"
    );

    assert_eq!(wizard::add_export_user(&app, &setup).await.status(), 303);
    let page = app.get_html(&setup).await;
    assert!(page.contains("✓ ada is the export user."));
    let id = id_of(&setup);
    assert!(page.contains(&format!(
        "href=\"/admin/export-destinations/{id}/configure\" id=\"next\""
    )));

    let configure = app
        .get_html(&format!("/admin/export-destinations/{id}/configure"))
        .await;
    assert!(configure.contains("Data matching") && configure.contains("Add attribute"));
    assert!(
        configure.contains("First Name (FNAME)"),
        "merge fields come from the audience"
    );
    assert!(configure.contains("Germany <span class=\"muted\">(2 profiles)</span>"));
    let saved = wizard::save(&app, id, &[segment]).await;
    // The set-up ends on the preview of the first export; nothing is exported yet.
    let preview = format!("/admin/export-destinations/{id}/preview");
    assert_eq!(location(&saved), preview);
    assert!(
        app.get_html(&preview)
            .await
            .contains("Nothing is exported yet: here is what the first export would do.")
    );
    let list = app.get_html("/admin/export-destinations").await;
    assert!(list.contains("<td>Newsletter export</td>") && list.contains("Newsletter subscribers"));

    let stored = destinations::find(app.state.db.pool(), id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.is_active());
    assert_eq!(stored.email_field.as_deref(), Some("EmailAddress"));
    assert_eq!(stored.field_mappings.len(), 2);
    assert_eq!(
        destinations::segment_ids(app.state.db.pool(), id)
            .await
            .unwrap(),
        [segment]
    );
    let actions: Vec<String> = audit::recent(app.state.db.pool(), 50)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    for expected in ["consent", "connect", "authenticate", "export user", "save"] {
        assert!(
            actions.contains(&expected.to_owned()),
            "{expected} missing from {actions:?}"
        );
    }
    let consent = &audit::recent(app.state.db.pool(), 50)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.action == "consent")
        .unwrap();
    assert_eq!(consent.user_email, "ada@example.com");
    assert!(
        consent
            .details
            .contains(export_destinations::domain::destination::CONSENT_VERSION)
    );
}

#[tokio::test]
async fn the_access_token_is_stored_encrypted_and_never_shown() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Secret check", &audience(&app, "Customers")).await;
    authenticate(&app, &setup).await;
    let stored = destinations::find(app.state.db.pool(), id_of(&setup))
        .await
        .unwrap()
        .unwrap();
    let sealed = stored.credential.unwrap().sealed;
    let token = app.state.secret_key.open(&sealed).unwrap();
    let sandbox = app.state.sandbox.clone().unwrap();
    assert!(
        sandbox.store().tokens.contains_key(&token),
        "the sealed value opens to the real token"
    );
    assert!(!sealed.contains(&token));
    let page = app.get_html(&setup).await;
    assert!(!page.contains(&token));
}

#[tokio::test]
async fn connect_without_consent_is_refused_and_creates_nothing() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let response = app
        .post_form(
            "/admin/export-destinations/mailchimp/new",
            "/admin/export-destinations/mailchimp",
            &[
                ("display_name", "No consent"),
                ("audience_id", "a1b2c3d4e5"),
            ],
        )
        .await;
    assert_refused(
        response,
        422,
        "Data privacy and compliance: select I agree to continue.",
    )
    .await;
    assert!(
        destinations::list(app.state.db.pool())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn bad_names_and_audience_ids_are_explained() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let long = "x".repeat(101);
    let response = app
        .post_form(
            "/admin/export-destinations/mailchimp/new",
            "/admin/export-destinations/mailchimp",
            &[
                ("display_name", long.as_str()),
                ("consent", "yes"),
                ("audience_id", "not an id!"),
            ],
        )
        .await;
    let html = response.text().await.unwrap();
    assert!(html.contains("Display name: at most 100 characters."));
    assert!(html.contains("Audience ID: an audience ID is letters and digits only"));
    connect(&app, "Taken", "a1b2c3d4e5").await;
    let again = app
        .post_form(
            "/admin/export-destinations/mailchimp/new",
            "/admin/export-destinations/mailchimp",
            &[
                ("display_name", "Taken"),
                ("consent", "yes"),
                ("audience_id", "a1b2c3d4e5"),
            ],
        )
        .await;
    assert_refused(again, 422, "a destination named “Taken” already exists").await;
}

#[tokio::test]
async fn the_export_user_must_re_enter_their_own_password() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Password", &audience(&app, "Customers")).await;
    let id = id_of(&setup);
    let wrong = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/export-user"),
            &[("password", "not my password")],
        )
        .await;
    assert_refused(wrong, 422, "That is not your console password.").await;
    assert!(
        destinations::find(app.state.db.pool(), id)
            .await
            .unwrap()
            .unwrap()
            .export_user_id
            .is_none()
    );
    let right = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/export-user"),
            &[("password", PASSWORD)],
        )
        .await;
    assert_eq!(right.status(), 303);
}

#[tokio::test]
async fn re_entering_the_password_for_export_user_counts_towards_the_sign_in_limit() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Password", &audience(&app, "Customers")).await;
    let id = id_of(&setup);
    let path = format!("/admin/export-destinations/{id}/export-user");
    for attempt in 1..crate::helpers::MAX_FAILURES {
        let wrong = app
            .post_form(&setup, &path, &[("password", "not my password")])
            .await;
        assert_eq!(wrong.status(), 422, "attempt {attempt}");
    }
    let last = app
        .post_form(&setup, &path, &[("password", "not my password")])
        .await;
    assert_eq!(last.status(), 429);
    let before = app.state.hasher.verifications();
    let right = app
        .post_form(&setup, &path, &[("password", PASSWORD)])
        .await;
    assert_eq!(right.status(), 429, "paused, even for the right password");
    let html = right.text().await.unwrap();
    assert!(html.contains("try again in 15 minutes"), "{html}");
    assert_eq!(app.state.hasher.verifications(), before, "nothing checked");
    assert!(
        destinations::find(app.state.db.pool(), id)
            .await
            .unwrap()
            .unwrap()
            .export_user_id
            .is_none()
    );
    // The same account's sign-in from this address is paused too.
    let browser = app.another_client();
    assert_eq!(
        browser.sign_in("ada@example.com", PASSWORD).await.status(),
        429
    );
}

#[tokio::test]
async fn configure_is_closed_until_every_connect_step_is_done() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Early", &audience(&app, "Customers")).await;
    let id = id_of(&setup);
    let response = app
        .get(&format!("/admin/export-destinations/{id}/configure"))
        .await;
    assert_eq!(location(&response), setup);
}

#[tokio::test]
async fn one_administrators_draft_is_not_found_for_another() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Ada's draft", &audience(&app, "Customers")).await;
    let id = id_of(&setup);
    let grace = app.another_client();
    grace
        .signed_in_as("grace@example.com", Role::Administrator)
        .await;
    assert_eq!(grace.get(&setup).await.status(), 404);
    let token = crate::helpers::csrf_token(&grace.get_html("/admin/export-destinations").await);
    for path in [
        "connect",
        "authenticate",
        "export-user",
        "discard",
        "configure",
    ] {
        let response = grace
            .post_raw(
                &format!("/admin/export-destinations/{id}/{path}"),
                &[("csrf_token", &token), ("password", PASSWORD)],
            )
            .await;
        assert_eq!(response.status(), 404, "{path}");
    }
    assert!(
        !grace
            .get_html("/admin/export-destinations")
            .await
            .contains("Ada&#39;s draft")
    );
    assert!(
        app.get_html("/admin/export-destinations")
            .await
            .contains("Unfinished set-ups")
    );
}

#[tokio::test]
async fn script_in_a_display_name_is_rendered_inert() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let id = wizard::complete(&app, segment).await;
    let page = format!("/admin/export-destinations/{id}/edit");
    let token = crate::helpers::csrf_token(&app.get_html(&page).await);
    let segment = segment.to_string();
    app.post_raw(
        &page,
        &[
            ("csrf_token", &token),
            ("display_name", "<script>alert('x')</script>"),
            ("email_field", "EmailAddress"),
            ("segment", &segment),
            ("new_member_status", "pending"),
            ("action", "save"),
        ],
    )
    .await;
    let list = app.get_html("/admin/export-destinations").await;
    assert!(!list.contains("<script>alert"));
    assert!(list.contains("&#60;script&#62;") || list.contains("&lt;script&gt;"));
}
