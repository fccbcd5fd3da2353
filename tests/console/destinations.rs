use export_destinations::domain::Role;
use export_destinations::sandbox::store::DEFAULT_ACCOUNT;
use export_destinations::store::{audit, destinations};

use crate::helpers::{PASSWORD, location, spawn_app};
use crate::wizard::{self, audience, authenticate, connect, consent, id_of, seed};

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
    assert_eq!(location(&saved), "/admin/export-destinations");
    let list = app.get_html("/admin/export-destinations").await;
    assert!(list.contains("Saving does not run an export"));
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
    assert_eq!(response.status(), 422);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Data privacy and compliance: select I agree to continue.")
    );
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
    assert_eq!(again.status(), 422);
    assert!(
        again
            .text()
            .await
            .unwrap()
            .contains("a destination named “Taken” already exists")
    );
}

#[tokio::test]
async fn a_forged_missing_or_replayed_state_is_refused() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "States", &audience(&app, "Customers")).await;
    let callback = consent(&app, &setup, "allow", DEFAULT_ACCOUNT).await;
    let forged = callback.replace("state=", "state=forged");
    let response = app.client.get(&forged).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("This sign-in to Mailchimp cannot be used")
    );
    // The forged attempt used up the pending state: even the real callback is now refused.
    assert_eq!(
        app.client.get(&callback).send().await.unwrap().status(),
        400
    );

    let callback = consent(&app, &setup, "allow", DEFAULT_ACCOUNT).await;
    let missing = callback.split("&state=").next().unwrap().to_owned();
    let response = app.client.get(&missing).send().await.unwrap();
    assert_eq!(response.status(), 400);

    let callback = consent(&app, &setup, "allow", DEFAULT_ACCOUNT).await;
    assert_eq!(
        app.client.get(&callback).send().await.unwrap().status(),
        303
    );
    let replayed = app.client.get(&callback).send().await.unwrap();
    assert_eq!(replayed.status(), 400, "a state works once");
}

#[tokio::test]
async fn another_persons_callback_state_is_worthless() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Mine", &audience(&app, "Customers")).await;
    let callback = consent(&app, &setup, "allow", DEFAULT_ACCOUNT).await;
    let mallory = app.another_client();
    mallory
        .signed_in_as("mallory@example.com", Role::Administrator)
        .await;
    let response = mallory.client.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        !destinations::find(app.state.db.pool(), id_of(&setup))
            .await
            .unwrap()
            .unwrap()
            .is_authenticated()
    );
}

#[tokio::test]
async fn denied_consent_leaves_the_destination_unconnected_with_a_clear_page() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Denied", &audience(&app, "Customers")).await;
    let callback = consent(&app, &setup, "deny", DEFAULT_ACCOUNT).await;
    let response = app.client.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 400);
    let html = response.text().await.unwrap();
    assert!(html.contains("Mailchimp access was not granted"));
    assert!(html.contains(&format!("href=\"{setup}\"")));
    assert!(
        !destinations::find(app.state.db.pool(), id_of(&setup))
            .await
            .unwrap()
            .unwrap()
            .is_authenticated()
    );
}

#[tokio::test]
async fn an_unknown_audience_is_reported_and_no_credential_kept() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Nowhere", "0000000000").await;
    let response = authenticate(&app, &setup).await;
    assert_eq!(response.status(), 404);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("Mailchimp has no audience with this ID")
    );
    let stored = destinations::find(app.state.db.pool(), id_of(&setup))
        .await
        .unwrap()
        .unwrap();
    assert!(stored.credential.is_none());
}

#[tokio::test]
async fn an_account_that_cannot_see_the_audience_is_reported() {
    let app = spawn_app().await;
    let other = app
        .state
        .sandbox
        .clone()
        .unwrap()
        .store()
        .add_account("Another Company");
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Wrong account", &audience(&app, "Customers")).await;
    let callback = consent(&app, &setup, "allow", &other).await;
    let response = app.client.get(&callback).send().await.unwrap();
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("This Mailchimp account cannot use the audience")
    );
}

#[tokio::test]
async fn an_api_key_is_the_alternative_to_oauth() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "By key", &audience(&app, "Customers")).await;
    let id = id_of(&setup);
    let bad = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/api-key"),
            &[("api_key", "nope")],
        )
        .await;
    assert_eq!(bad.status(), 422);
    assert!(
        bad.text()
            .await
            .unwrap()
            .contains("a Mailchimp API key looks like")
    );
    let unknown = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/api-key"),
            &[("api_key", "00000000000000000000000000000000-us1")],
        )
        .await;
    assert_eq!(unknown.status(), 422);
    assert!(
        unknown
            .text()
            .await
            .unwrap()
            .contains("Mailchimp refused the credential")
    );
    let key = app
        .state
        .sandbox
        .clone()
        .unwrap()
        .store()
        .api_keys
        .keys()
        .next()
        .unwrap()
        .clone();
    let ok = app
        .post_form(
            &setup,
            &format!("/admin/export-destinations/{id}/api-key"),
            &[("api_key", key.as_str())],
        )
        .await;
    assert_eq!(ok.status(), 303);
    let stored = destinations::find(app.state.db.pool(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored.credential.as_ref().map(|c| c.method),
        Some(export_destinations::domain::destination::AuthMethod::ApiKey)
    );
    assert_eq!(
        app.state
            .secret_key
            .open(&stored.credential.as_ref().unwrap().sealed)
            .unwrap(),
        key
    );
    assert!(
        !app.get_html(&setup).await.contains(&key),
        "the key is never shown"
    );
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
    assert_eq!(wrong.status(), 422);
    assert!(
        wrong
            .text()
            .await
            .unwrap()
            .contains("That is not your console password.")
    );
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

#[tokio::test]
async fn a_selection_of_more_than_a_million_profiles_cannot_be_saved() {
    let app = spawn_app().await;
    seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let pool = app.state.db.pool();
    let big = |name: &'static str| async move {
        use export_destinations::domain::segment_rules::{
            Condition, Match, Operator, SegmentRules,
        };
        let rules = SegmentRules {
            match_: Match::All,
            conditions: vec![Condition {
                field: "Country".into(),
                op: Operator::IsNotEmpty,
                value: String::new(),
            }],
        };
        export_destinations::store::segments::create(
            pool,
            name,
            &export_destinations::store::segments::Definition::Rules(rules),
        )
        .await
        .unwrap()
    };
    let a = big("Big A").await;
    let b = big("Big B").await;
    // Memberships made in bulk: 600,000 and 400,001 distinct profiles, 1,000,001 together.
    for (segment, from, to) in [(a, 1, 600_000), (b, 600_001, 1_000_001)] {
        sqlx::query(
            "INSERT INTO segment_members (segment_id, generation, profile_id) \
             WITH RECURSIVE n(i) AS (SELECT $2 UNION ALL SELECT i + 1 FROM n WHERE i < $3) SELECT $1, 1, i FROM n",
        )
        .bind(segment)
        .bind(from as i64)
        .bind(to as i64)
        .execute(pool)
        .await
        .unwrap();
        sqlx::query("UPDATE segments SET generation = 1, member_count = $1 WHERE id = $2")
            .bind((to - from + 1) as i64)
            .bind(segment)
            .execute(pool)
            .await
            .unwrap();
    }
    let setup = connect(&app, "Too big", &audience(&app, "Customers")).await;
    authenticate(&app, &setup).await;
    wizard::add_export_user(&app, &setup).await;
    let id = id_of(&setup);
    let refused = wizard::save(&app, id, &[a, b]).await;
    assert_eq!(refused.status(), 422);
    let html = refused.text().await.unwrap();
    assert!(
        html.contains(
            "the selected segments hold 1000001 profiles; at most 1000000 can be exported"
        ),
        "{html}"
    );
    assert!(
        !destinations::find(pool, id)
            .await
            .unwrap()
            .unwrap()
            .is_active()
    );
    assert_eq!(
        wizard::save(&app, id, &[a]).await.status(),
        303,
        "600,000 is fine"
    );
}

#[tokio::test]
async fn viewers_and_contributors_cannot_set_up_edit_or_remove() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let id = wizard::complete(&app, segment).await;
    for role in [Role::Viewer, Role::Contributor] {
        let other = app.another_client();
        other
            .signed_in_as(&format!("{}@example.com", role.as_str()), role)
            .await;
        let list = other.get_html("/admin/export-destinations").await;
        assert!(
            list.contains("Newsletter export"),
            "{role} sees the destination"
        );
        assert!(
            !list.contains("Set up") && !list.contains("/remove"),
            "{role} gets no admin actions"
        );
        let token = crate::helpers::csrf_token(&list);
        for (path, form) in [
            (
                "/admin/export-destinations/mailchimp".to_owned(),
                vec![
                    ("display_name", "x"),
                    ("consent", "yes"),
                    ("audience_id", "a1b2c3d4e5"),
                ],
            ),
            (
                format!("/admin/export-destinations/{id}/remove"),
                vec![("in_mailchimp", "leave")],
            ),
            (
                format!("/admin/export-destinations/{id}/edit"),
                vec![("action", "save")],
            ),
        ] {
            let mut form = form;
            form.push(("csrf_token", &token));
            assert_eq!(
                other.post_raw(&path, &form).await.status(),
                403,
                "{role} {path}"
            );
        }
        assert_eq!(other.get("/admin/audit-log").await.status(), 403);
    }
    assert_eq!(
        destinations::list(app.state.db.pool()).await.unwrap().len(),
        1
    );
}

#[tokio::test]
async fn editing_changes_name_matching_segments_and_status() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let id = wizard::complete(&app, segment).await;
    let page = format!("/admin/export-destinations/{id}/edit");
    let html = app.get_html(&page).await;
    assert!(html.contains("Changing the audience means a new destination"));
    let token = crate::helpers::csrf_token(&html);
    let segment = segment.to_string();
    let response = app
        .post_raw(
            &page,
            &[
                ("csrf_token", &token),
                ("display_name", "Renamed"),
                ("email_field", "EmailAddress"),
                ("map_tag_0", "FNAME"),
                ("map_field_0", "FirstName"),
                ("segment", &segment),
                ("new_member_status", "pending"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(response.status(), 303);
    let stored = destinations::find(app.state.db.pool(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.display_name, "Renamed");
    assert_eq!(stored.new_member_status, "pending");
    assert_eq!(stored.field_mappings.len(), 1);
    let actions: Vec<String> = audit::recent(app.state.db.pool(), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions[0], "edit");
}

#[tokio::test]
async fn removing_a_destination_asks_first_and_destroys_its_credential() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let id = wizard::complete(&app, segment).await;
    let confirm = app
        .get_html(&format!("/admin/export-destinations/{id}/remove"))
        .await;
    assert!(confirm.contains("Remove “Newsletter export”?"));
    assert!(
        confirm.contains("Leave the audience's members as they are")
            || confirm.contains("Leave the audience&#39;s members as they are")
    );
    let response = app
        .post_form(
            &format!("/admin/export-destinations/{id}/remove"),
            &format!("/admin/export-destinations/{id}/remove"),
            &[("in_mailchimp", "leave")],
        )
        .await;
    assert_eq!(location(&response), "/admin/export-destinations");
    let sealed: Vec<Option<String>> =
        sqlx::query_scalar("SELECT credential_sealed FROM destinations")
            .fetch_all(app.state.db.pool())
            .await
            .unwrap();
    assert!(
        sealed.is_empty(),
        "no destination row, no credential left in the database"
    );
    assert!(
        app.get_html("/admin/export-destinations")
            .await
            .contains("Removed “Newsletter export”")
    );
    let log = app.get_html("/admin/audit-log").await;
    assert!(log.contains("<td>remove</td>") && log.contains("Newsletter export"));
}

#[tokio::test]
async fn a_draft_can_be_resumed_and_discarded() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Half done", &audience(&app, "Customers")).await;
    let list = app.get_html("/admin/export-destinations").await;
    assert!(list.contains(&format!("href=\"{setup}\">Resume</a>")));
    let id = id_of(&setup);
    let response = app
        .post_form(
            "/admin/export-destinations",
            &format!("/admin/export-destinations/{id}/discard"),
            &[],
        )
        .await;
    assert_eq!(location(&response), "/admin/export-destinations");
    assert!(
        destinations::find(app.state.db.pool(), id)
            .await
            .unwrap()
            .is_none()
    );
}

mod against_a_fake_mailchimp {
    use wiremock::matchers::{header, method, path};
    use wiremock::{Mock, MockServer, ResponseTemplate};

    use super::*;
    use crate::helpers::TestApp;

    async fn app_for(mock: &MockServer) -> TestApp {
        let base: url::Url = mock.uri().parse().unwrap();
        crate::helpers::spawn_app_with(move |settings| {
            settings.mailchimp = export_destinations::config::MailchimpSettings {
                sandbox: false,
                app: Some(export_destinations::mailchimp::OAuthApp {
                    client_id: "cid".into(),
                    client_secret: "csecret".into(),
                }),
                oauth_base_url: Some(base.clone()),
                api_base_template: Some(base.as_str().trim_end_matches('/').to_owned()),
            };
        })
        .await
    }

    /// Authenticate, then come back as Mailchimp would with `code`.
    async fn round_trip(app: &TestApp, mock: &MockServer) -> reqwest::Response {
        let setup = connect(app, "Real Mailchimp", "a1b2c3d4e5").await;
        let id = id_of(&setup);
        let response = app
            .post_form(
                &setup,
                &format!("/admin/export-destinations/{id}/authenticate"),
                &[],
            )
            .await;
        let authorize: url::Url = location(&response).parse().unwrap();
        assert!(
            authorize
                .as_str()
                .starts_with(&format!("{}/oauth2/authorize", mock.uri()))
        );
        let state = authorize
            .query_pairs()
            .find(|(k, _)| k == "state")
            .unwrap()
            .1
            .into_owned();
        app.client
            .get(app.url(&format!(
                "/oauth/mailchimp/callback?code=the-code&state={state}"
            )))
            .send()
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn a_token_response_without_token_type_is_accepted_and_metadata_names_the_api() {
        let mock = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth2/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": "tok-1", "expires_in": 0, "scope": null}),
            ))
            .expect(1)
            .mount(&mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/oauth2/metadata"))
            .and(header("authorization", "OAuth tok-1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "dc": "us6", "api_endpoint": mock.uri(), "accountname": "Northwind", "login": {"login_email": "a@northwind.io"}
            })))
            .mount(&mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/3.0/lists/a1b2c3d4e5"))
            .and(header("authorization", "Bearer tok-1"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({
                "id": "a1b2c3d4e5", "name": "Northwind news", "stats": {"member_count": 1234}
            })))
            .mount(&mock)
            .await;
        let app = app_for(&mock).await;
        app.signed_in_as("ada@example.com", Role::Administrator)
            .await;
        let response = round_trip(&app, &mock).await;
        assert_eq!(response.status(), 303);
        let page = app.get_html(&location(&response)).await;
        assert!(page.contains("✓ Connected to Northwind"), "{page}");
        assert!(page.contains("“Northwind news”, 1234 subscribed members"));
        let token_request = &mock.received_requests().await.unwrap()[0];
        let body = String::from_utf8_lossy(&token_request.body);
        assert!(
            body.contains("client_secret=csecret") && body.contains("code=the-code"),
            "credentials in the form body: {body}"
        );
    }

    #[tokio::test]
    async fn mailchimp_failing_during_the_audience_check_gets_a_clear_page_and_stores_nothing() {
        let mock = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth2/token"))
            .respond_with(ResponseTemplate::new(200).set_body_json(
                serde_json::json!({"access_token": "tok-2", "expires_in": 0, "scope": null}),
            ))
            .mount(&mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/oauth2/metadata"))
            .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"dc": "us6", "api_endpoint": mock.uri(), "accountname": "Northwind"})))
            .mount(&mock)
            .await;
        Mock::given(method("GET"))
            .and(path("/3.0/lists/a1b2c3d4e5"))
            .respond_with(ResponseTemplate::new(503).set_body_json(serde_json::json!({
                "type": "x", "title": "Service Unavailable", "status": 503, "detail": "Try later.", "instance": "i"
            })))
            .mount(&mock)
            .await;
        let app = app_for(&mock).await;
        app.signed_in_as("ada@example.com", Role::Administrator)
            .await;
        let response = round_trip(&app, &mock).await;
        assert_eq!(response.status(), 502);
        let html = response.text().await.unwrap();
        assert!(
            html.contains("Mailchimp could not be reached")
                && html.contains("Service Unavailable: Try later.")
        );
        let stored = &destinations::list(app.state.db.pool()).await.unwrap()[0];
        assert!(stored.credential.is_none());
    }

    #[tokio::test]
    async fn a_refused_code_exchange_gets_a_clear_page() {
        let mock = MockServer::start().await;
        Mock::given(method("POST"))
            .and(path("/oauth2/token"))
            .respond_with(
                ResponseTemplate::new(400)
                    .set_body_json(serde_json::json!({"error": "invalid_grant"})),
            )
            .mount(&mock)
            .await;
        let app = app_for(&mock).await;
        app.signed_in_as("ada@example.com", Role::Administrator)
            .await;
        let response = round_trip(&app, &mock).await;
        assert_eq!(response.status(), 502);
        assert!(
            response
                .text()
                .await
                .unwrap()
                .contains("Mailchimp did not complete the sign-in")
        );
    }

    #[tokio::test]
    async fn the_csp_lets_the_authenticate_form_go_on_to_mailchimp() {
        let mock = MockServer::start().await;
        let app = app_for(&mock).await;
        let response = app.get("/healthz").await;
        let csp = response.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains(&format!("form-action 'self' {}", mock.uri())),
            "{csp}"
        );
    }
}

#[tokio::test]
async fn a_merge_field_the_audience_lacks_can_be_created_from_the_configure_page() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Tiers", &audience(&app, "Customers")).await;
    authenticate(&app, &setup).await;
    wizard::add_export_user(&app, &setup).await;
    let id = id_of(&setup);
    let configure = format!("/admin/export-destinations/{id}/configure");
    let response = app
        .post_form(
            &configure,
            &format!("/admin/export-destinations/{id}/merge-fields"),
            &[("name", "Loyalty tier"), ("kind", "text")],
        )
        .await;
    assert_eq!(location(&response), configure);
    let page = app.get_html(&configure).await;
    assert!(
        page.contains("Created the merge field LOYALTYTIE (Loyalty tier) in the audience."),
        "{page}"
    );
    assert!(
        page.contains("Loyalty tier (LOYALTYTIE)"),
        "it is offered for Add attribute"
    );
}

#[tokio::test]
async fn the_setup_page_of_a_saved_destination_does_not_offer_another_audience() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let id = wizard::complete(&app, segment).await;
    let page = app
        .get_html(&format!("/admin/export-destinations/{id}/setup"))
        .await;
    assert!(page.contains("Changing the audience or the Mailchimp means a new destination"));
    assert!(page.contains(r#"<span id="target">Built-in sandbox</span>"#));
    assert!(!page.contains("name=\"audience_id\""));
    assert!(!page.contains("name=\"mailchimp\""));
    assert!(page.contains("Authenticate again"));
}

/// The set-up page and the API share one merge-tag rule (Mailchimp's); a segment ticked
/// twice by a hand-made form is one choice, not a server error.
#[tokio::test]
async fn the_configure_page_refuses_a_merge_tag_mailchimp_would_not_take() {
    let app = spawn_app().await;
    let segment = wizard::seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = wizard::connect(
        &app,
        "Newsletter export",
        &wizard::audience(&app, "Newsletter subscribers"),
    )
    .await;
    assert_eq!(wizard::authenticate(&app, &setup).await.status(), 303);
    assert_eq!(wizard::add_export_user(&app, &setup).await.status(), 303);
    let id = wizard::id_of(&setup);
    let page = format!("/admin/export-destinations/{id}/configure");
    let segment = segment.to_string();
    let post = |tag: &'static str| {
        let app = &app;
        let page = page.clone();
        let segment = segment.clone();
        async move {
            let token = crate::helpers::csrf_token(&app.get_html(&page).await);
            let form = [
                ("csrf_token", token.as_str()),
                ("display_name", "Newsletter export"),
                ("email_field", "EmailAddress"),
                ("map_tag_0", tag),
                ("map_field_0", "FirstName"),
                ("new_member_status", "subscribed"),
                ("segment", segment.as_str()),
                ("action", "save"),
            ];
            app.post_raw(&page, &form).await
        }
    };
    let response = post("FIRST NAME").await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(html.contains("1 to 10 characters"), "{html}");
    let saved = export_destinations::store::destinations::find(app.state.db.pool(), id)
        .await
        .unwrap()
        .unwrap();
    assert!(!saved.is_active(), "nothing was saved");

    let response = post("FNAME").await;
    assert_eq!(response.status(), 303, "{}", response.text().await.unwrap());
    assert_eq!(
        export_destinations::store::destinations::segment_ids(app.state.db.pool(), id)
            .await
            .unwrap(),
        [segment.parse::<i64>().unwrap()]
    );
}
