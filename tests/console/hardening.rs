//! Careless and hostile input on the pages: bounded fields, names that look alike, too many
//! columns, fields that can be deleted, and form values that do not name a segment.

use export_destinations::domain::Role;
use export_destinations::store::{destinations, fields, imports, segments};

use crate::helpers::{TestApp, assert_refused, csrf_token, location, spawn_app};
use crate::wizard::{self, seed};

/// A rules segment on Country from the page, as a Contributor would save it.
async fn save_segment(app: &TestApp, name: &str) -> reqwest::Response {
    app.post_form(
        "/data/segments/new",
        "/data/segments/new",
        &[
            ("name", name),
            ("match", "all"),
            ("field_0", "Country"),
            ("op_0", "equals"),
            ("value_0", "Germany"),
            ("action", "save"),
        ],
    )
    .await
}

#[tokio::test]
async fn an_over_long_field_is_refused_before_anything_reads_it_and_never_echoed() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let huge = "Q".repeat(200_000);
    for (page, path, field) in [
        ("/admin/users", "/admin/users", "name"),
        ("/data/segments/new", "/data/segments/new", "name"),
        (
            "/admin/export-destinations/mailchimp/new",
            "/admin/export-destinations/mailchimp",
            "display_name",
        ),
        ("/account/password", "/account/password", "current"),
    ] {
        let before = app.state.hasher.verifications();
        let response = app.post_form(page, path, &[(field, huge.as_str())]).await;
        assert_eq!(response.status(), 422, "{path}");
        let body = response.text().await.unwrap();
        assert!(body.len() < 20_000, "{path}: a {} byte answer", body.len());
        assert!(!body.contains("QQQQQQQQQQ"), "{path} echoes the value");
        assert!(body.contains(&format!(
            "The field “{field}” holds more than 1000 characters"
        )));
        assert_eq!(
            app.state.hasher.verifications(),
            before,
            "nothing past the check ran"
        );
    }
    // A body past the form limit is refused too, with its own message.
    let token = csrf_token(&app.get_html("/admin/users").await);
    let too_big = "Q".repeat(300 * 1024);
    let response = app
        .post_raw(
            "/admin/users",
            &[("csrf_token", &token), ("name", &too_big)],
        )
        .await;
    assert_eq!(response.status(), 413);
    assert!(response.text().await.unwrap().len() < 20_000);
}

#[tokio::test]
async fn the_upload_forms_text_fields_and_file_name_are_bounded_and_nothing_is_stored() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let huge = "Z".repeat(2 * 1024 * 1024);
    let response = app
        .upload_profiles("people.csv", "CustomerId,Email\nP1,a@b.io\n", &huge)
        .await;
    assert_eq!(response.status(), 400);
    let body = response.text().await.unwrap();
    assert!(
        body.len() < 20_000 && !body.contains("ZZZZZZZZZZ"),
        "{}",
        body.len()
    );
    assert!(body.contains("The field “id_column” holds more than"));
    let long_name = format!("{}.csv", "n".repeat(300));
    let response = app
        .upload_profiles(&long_name, "CustomerId,Email\nP1,a@b.io\n", "")
        .await;
    assert_refused(response, 400, "longer than 255 characters").await;
    assert!(
        imports::recent(app.state.db.pool(), 10)
            .await
            .unwrap()
            .is_empty(),
        "no import report was stored"
    );
    // The same through a named ID column that is only long, not huge: the report repeats
    // a short excerpt of it.
    let named = "C".repeat(100);
    let html = {
        let response = app
            .upload_profiles("people.csv", "CustomerId,Email\nP1,a@b.io\n", &named)
            .await;
        app.finished_import(response).await
    };
    assert!(html.contains("There is no column named"), "{html}");
    assert!(
        !html.contains(&named),
        "the report repeats at most an excerpt"
    );
}

#[tokio::test]
async fn a_file_with_too_many_columns_imports_nothing_and_creates_no_field() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let columns: Vec<String> = (0..100_000).map(|i| format!("c{i}")).collect();
    let csv = format!(
        "CustomerId,{}\nP1,{}\n",
        columns.join(","),
        vec!["x"; columns.len()].join(",")
    );
    let html = app.import_report("wide.csv", csv).await;
    assert!(
        html.contains("the console keeps at most 500 fields"),
        "{}",
        &html[..html.len().min(3000)]
    );
    assert!(html.len() < 50_000, "the report is short: {}", html.len());
    assert_eq!(fields::count(app.state.db.pool()).await.unwrap(), 0);
    // Within the limit, counting the fields already there.
    let first: Vec<String> = (0..400).map(|i| format!("a{i}")).collect();
    let csv = format!(
        "CustomerId,{}\nP1,{}\n",
        first.join(","),
        vec!["1"; 400].join(",")
    );
    app.import_report("first.csv", csv).await;
    assert_eq!(fields::count(app.state.db.pool()).await.unwrap(), 400);
    let more: Vec<String> = (0..101).map(|i| format!("b{i}")).collect();
    let csv = format!(
        "CustomerId,{}\nP2,{}\n",
        more.join(","),
        vec!["1"; 101].join(",")
    );
    let html = app.import_report("more.csv", csv).await;
    assert!(
        html.contains("would add 101 fields to the 400 there are"),
        "{html}"
    );
    assert_eq!(fields::count(app.state.db.pool()).await.unwrap(), 400);
}

#[tokio::test]
async fn an_administrator_deletes_an_unused_field_and_its_values_but_never_one_in_use() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let admin = app.another_client();
    admin
        .signed_in_as("ada@example.com", Role::Administrator)
        .await;
    wizard::complete(&admin, segment).await;
    crate::helpers::TestApp::import_report(
        &admin,
        "extra.csv",
        "CustomerId,Shoe size,Quote \"x\"\nP1,42,hi\n",
    )
    .await;
    let pool = app.state.db.pool();
    let all = fields::list(pool).await.unwrap();
    let id_of = |name: &str| all.iter().find(|f| f.name == name).unwrap().id;

    let page = admin.get_html("/data/fields").await;
    assert!(
        page.contains("segment “Germany”"),
        "Country is used: {page}"
    );
    assert!(page.contains("destination “Newsletter export”"));
    assert!(page.contains(&format!(
        "href=\"/data/fields/{}/delete\"",
        id_of("Shoe size")
    )));
    assert!(!page.contains(&format!(
        "href=\"/data/fields/{}/delete\"",
        id_of("Country")
    )));

    // In use: refused, with the reason.
    let path = format!("/data/fields/{}/delete", id_of("Country"));
    let refused = admin.post_form("/data/fields", &path, &[]).await;
    assert_eq!(refused.status(), 409);
    assert!(refused.text().await.unwrap().contains("segment “Germany”"));

    // A Viewer sees the list but cannot delete.
    let viewer = app.another_client();
    viewer.signed_in_as("vic@example.com", Role::Viewer).await;
    assert!(!viewer.get_html("/data/fields").await.contains("/delete\""));
    let path = format!("/data/fields/{}/delete", id_of("Shoe size"));
    assert_eq!(
        viewer.post_form("/data/fields", &path, &[]).await.status(),
        403
    );

    for name in ["Shoe size", "Quote \"x\""] {
        let path = format!("/data/fields/{}/delete", id_of(name));
        let done = admin.post_form(&path, &path, &[]).await;
        assert_eq!(location(&done), "/data/fields");
    }
    let names: Vec<String> = fields::list(pool)
        .await
        .unwrap()
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(
        !names
            .iter()
            .any(|n| n == "Shoe size" || n.starts_with("Quote")),
        "{names:?}"
    );
    let (attributes,): (String,) =
        sqlx::query_as("SELECT attributes FROM profiles WHERE customer_id = 'P1'")
            .fetch_one(pool)
            .await
            .unwrap();
    assert!(
        !attributes.contains("Shoe size") && !attributes.contains("Quote"),
        "{attributes}"
    );
    assert!(
        attributes.contains("Ada"),
        "other values stay: {attributes}"
    );
    assert!(
        admin
            .get_html("/admin/audit-log")
            .await
            .contains("deleted field")
    );
}

#[tokio::test]
async fn names_are_stored_in_nfc_and_invisible_characters_are_refused() {
    let app = spawn_app().await;
    seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    assert_eq!(save_segment(&app, "Demo export").await.status(), 303);
    let lookalike = save_segment(&app, "Demo\u{200b} export").await;
    assert_eq!(lookalike.status(), 422);
    let html = lookalike.text().await.unwrap();
    assert!(html.contains("U+200B (zero-width space)"), "{html}");
    for bad in ["\u{feff}Demo", "Demo \u{202e}tropxe"] {
        assert_eq!(save_segment(&app, bad).await.status(), 422, "{bad:?}");
    }
    // "Café" typed with a combining accent is the same name as with "é".
    assert_eq!(save_segment(&app, "Cafe\u{301}").await.status(), 303);
    let again = save_segment(&app, "Café").await;
    assert_eq!(again.status(), 422);
    assert!(again.text().await.unwrap().contains("already exists"));
    let names: Vec<String> = segments::list(app.state.db.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect();
    assert!(names.contains(&"Café".to_owned()), "{names:?}");

    // Display names and people's names follow the same rule.
    let response = app
        .post_form(
            "/admin/export-destinations/mailchimp/new",
            "/admin/export-destinations/mailchimp",
            &[
                ("display_name", "Newsletter\u{200b}"),
                ("consent", "yes"),
                ("audience_id", "a1b2c3d4e5"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("U+200B"));
    let response = app
        .post_form(
            "/admin/users",
            "/admin/users",
            &[
                ("name", "Mallory\u{202e}"),
                ("email", "mallory@example.com"),
                ("role", "viewer"),
                ("password", "a long enough password"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("U+202E"));
}

#[tokio::test]
async fn the_edit_form_with_a_segment_twice_or_unknown_says_so_and_keeps_the_choices() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let id = wizard::complete(&app, segment).await;
    let page = format!("/admin/export-destinations/{id}/edit");
    let segment = segment.to_string();
    for (values, expected) in [
        (
            vec![segment.as_str(), segment.as_str()],
            "a segment is chosen more than once",
        ),
        (
            vec![segment.as_str(), "987654"],
            "segment 987654 does not exist",
        ),
        (vec![segment.as_str(), "abc"], "is not one of this console"),
    ] {
        let token = csrf_token(&app.get_html(&page).await);
        let mut form = vec![
            ("csrf_token", token.as_str()),
            ("display_name", "Renamed"),
            ("email_field", "EmailAddress"),
            ("map_tag_0", "FNAME"),
            ("map_field_0", "FirstName"),
            ("new_member_status", "pending"),
            ("action", "save"),
        ];
        for value in &values {
            form.push(("segment", value));
        }
        let response = app.post_raw(&page, &form).await;
        assert_eq!(response.status(), 422, "{values:?}");
        let html = response.text().await.unwrap();
        assert!(
            html.contains(&format!("Segments: {expected}")) || html.contains(expected),
            "{html}"
        );
        assert!(html.contains("value=\"Renamed\""), "what was typed is kept");
        let stored = destinations::find(app.state.db.pool(), id)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(stored.display_name, "Newsletter export", "nothing saved");
    }
}

#[tokio::test]
async fn a_cell_over_ten_thousand_characters_rejects_its_row_only() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let csv = format!(
        "CustomerId,Note\nP1,{}\nP2,{}\n",
        "n".repeat(10_000),
        "m".repeat(10_001)
    );
    let html = app.import_report("notes.csv", csv).await;
    assert!(
        html.contains("Note: the value is longer than 10000 characters."),
        "{}",
        &html[..html.len().min(4000)]
    );
    assert!(!html.contains(&"m".repeat(100)));
    let (count,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM profiles")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(count, 1, "the row within the limit is imported");
}

#[tokio::test]
async fn api_token_names_follow_the_name_rules() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let response = app
        .post_form(
            "/admin/api-tokens",
            "/admin/api-tokens",
            &[("name", "CI\u{2066}pipeline")],
        )
        .await;
    assert_eq!(response.status(), 422);
    assert!(response.text().await.unwrap().contains("U+2066"));
}
