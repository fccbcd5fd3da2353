//! After the connect steps: data matching and Save, editing, the merge fields a page can
//! create, the million-profile limit, roles, drafts and removal.

use export_destinations::domain::Role;
use export_destinations::store::{audit, destinations};

use crate::helpers::{assert_refused, location, spawn_app};
use crate::wizard::{self, audience, authenticate, connect, id_of, seed};

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
    let response = save_edit(
        &app,
        &page,
        &token,
        segment,
        &[
            ("display_name", "Renamed"),
            ("new_member_status", "pending"),
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
        sealed.iter().all(Option::is_none),
        "no credential left in the database"
    );
    assert!(
        destinations::find(app.state.db.pool(), id)
            .await
            .unwrap()
            .is_none(),
        "the destination is gone"
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
    // Discard asks first: the list and the set-up link to a page that says what is lost.
    let discard = format!("/admin/export-destinations/{id}/discard");
    assert!(list.contains(&format!(r#"href="{discard}">Discard…</a>"#)));
    assert!(
        app.get_html(&setup)
            .await
            .contains(&format!(r#"href="{discard}" id="discard""#))
    );
    let asked = app.get_html(&discard).await;
    assert!(asked.contains("Discard the set-up “Half done”?"), "{asked}");
    assert!(asked.contains("This cannot be undone."));
    assert!(
        destinations::find(app.state.db.pool(), id)
            .await
            .unwrap()
            .is_some()
    );
    let response = app.post_form(&discard, &discard, &[]).await;
    assert_eq!(location(&response), "/admin/export-destinations");
    assert!(
        destinations::find(app.state.db.pool(), id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn creating_a_merge_field_keeps_every_choice_and_adds_its_row() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Tiers", &audience(&app, "Customers")).await;
    authenticate(&app, &setup).await;
    wizard::add_export_user(&app, &setup).await;
    let id = id_of(&setup);
    let configure = format!("/admin/export-destinations/{id}/configure");
    let segment = segment.to_string();
    let response = app
        .post_form(
            &configure,
            &configure,
            &[
                ("display_name", "Tiers renamed"),
                ("email_field", "EmailAddress"),
                ("map_tag_0", "FNAME"),
                ("map_field_0", "FirstName"),
                ("segment", &segment),
                ("new_member_status", "pending"),
                ("new_field_name", "Loyalty tier"),
                ("new_field_kind", "text"),
                ("new_field_tag", ""),
                ("action", "create_merge_field"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let page = response.text().await.unwrap();
    assert!(
        page.contains("Created the merge field LOYALTYTIE (Loyalty tier) in the audience"),
        "{page}"
    );
    // Everything chosen before is still chosen, and the new field has a row.
    assert!(page.contains(r#"value="Tiers renamed""#));
    assert!(page.contains(r#"<option value="EmailAddress" selected>"#));
    assert!(page.contains(r#"<option value="FirstName" selected>"#));
    assert!(page.contains(&format!(r#"value="{segment}" data-members="2" checked"#)));
    assert!(page.contains(r#"value="pending" checked"#));
    assert!(
        page.contains(r#"<option value="LOYALTYTIE" selected>Loyalty tier (LOYALTYTIE)</option>"#)
    );
    // Nothing was saved: the draft keeps its name until Save.
    let stored = destinations::find(app.state.db.pool(), id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stored.display_name, "Tiers");
    let audit = audit::recent(app.state.db.pool(), 50).await.unwrap();
    assert!(audit.iter().any(|e| e.action == "create merge field"));
}

#[tokio::test]
async fn a_new_merge_fields_tag_is_shown_and_a_tag_mailchimp_would_refuse_is_explained() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Tiers", &audience(&app, "Customers")).await;
    authenticate(&app, &setup).await;
    wizard::add_export_user(&app, &setup).await;
    let id = id_of(&setup);
    let configure = format!("/admin/export-destinations/{id}/configure");
    let page = app.get_html(&configure).await;
    assert!(page.contains("A merge tag has at most 10 characters"));
    let response = app
        .post_form(
            &configure,
            &configure,
            &[
                ("display_name", "Tiers"),
                ("new_field_name", "Loyalty tier"),
                ("new_field_kind", "text"),
                ("new_field_tag", "loyalty-tier"),
                ("action", "create_merge_field"),
            ],
        )
        .await;
    let page = assert_refused(
        response,
        422,
        "merge tags are 1 to 10 characters, uppercase letters",
    )
    .await;
    assert!(
        page.contains(r#"name="new_field_name" value="Loyalty tier""#),
        "what was typed is kept"
    );
    let sandbox = app.state.sandbox.clone().unwrap();
    let store = sandbox.store();
    let customers = store
        .audiences
        .values()
        .find(|a| a.name == "Customers")
        .unwrap();
    assert!(
        customers
            .merge_fields
            .iter()
            .all(|f| f.name != "Loyalty tier")
    );
}

#[tokio::test]
async fn data_matching_starts_from_the_fields_whose_names_say_what_they_hold() {
    let app = spawn_app().await;
    seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let setup = connect(&app, "Suggested", &audience(&app, "Customers")).await;
    authenticate(&app, &setup).await;
    wizard::add_export_user(&app, &setup).await;
    let id = id_of(&setup);
    let page = app
        .get_html(&format!("/admin/export-destinations/{id}/configure"))
        .await;
    // One email field: chosen. FirstName and LastName: paired with FNAME and LNAME.
    assert!(
        page.contains(r#"<option value="EmailAddress" selected>"#),
        "{page}"
    );
    assert!(page.contains(r#"name="map_field_0""#) && page.contains(r#"name="map_field_1""#));
    assert!(
        !page.contains(r#"name="map_field_2""#),
        "no empty row nobody asked for"
    );
    assert!(page.contains(r#"<option value="FirstName" selected>"#));
    assert!(page.contains(r#"<option value="LastName" selected>"#));
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

#[tokio::test]
async fn keep_in_sync_is_off_by_default_and_turned_on_from_the_configure_page() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let id = wizard::complete(&app, segment).await;
    let stored = destinations::find(app.state.db.pool(), id)
        .await
        .unwrap()
        .unwrap();
    assert!(!stored.keep_in_sync, "off by default");
    let page = format!("/admin/export-destinations/{id}/edit");
    let html = app.get_html(&page).await;
    assert!(
        html.contains(r#"name="keep_in_sync" value="yes">"#),
        "{html}"
    );
    let token = crate::helpers::csrf_token(&html);
    let fields = [
        ("display_name", stored.display_name.as_str()),
        ("new_member_status", "subscribed"),
        ("keep_in_sync", "yes"),
    ];
    let response = save_edit(&app, &page, &token, segment, &fields).await;
    assert_eq!(response.status(), 303);
    let stored = destinations::find(app.state.db.pool(), id)
        .await
        .unwrap()
        .unwrap();
    assert!(stored.keep_in_sync);
    let html = app.get_html(&page).await;
    assert!(
        html.contains(r#"name="keep_in_sync" value="yes" checked>"#),
        "{html}"
    );
    let audit = audit::recent(app.state.db.pool(), 1).await.unwrap();
    assert!(
        audit[0].details.contains("keep in sync on"),
        "{:?}",
        audit[0].details
    );
}

/// Saves the edit page with the email field, FNAME from FirstName, the one segment, and
/// `fields` (name, status, keep in sync).
async fn save_edit(
    app: &crate::helpers::TestApp,
    page: &str,
    token: &str,
    segment: i64,
    fields: &[(&str, &str)],
) -> reqwest::Response {
    let segment = segment.to_string();
    let mut form = vec![
        ("csrf_token", token),
        ("email_field", "EmailAddress"),
        ("map_tag_0", "FNAME"),
        ("map_field_0", "FirstName"),
        ("segment", segment.as_str()),
        ("action", "save"),
    ];
    form.extend_from_slice(fields);
    app.post_raw(page, &form).await
}
