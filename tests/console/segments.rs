use std::time::Duration;

use export_destinations::db::Db;
use export_destinations::domain::Role;
use export_destinations::domain::segment_rules::{Condition, Match, Operator, SegmentRules};
use export_destinations::store::segments::{self, Definition, Published};

use crate::helpers::{TestApp, assert_refused, location, spawn_app, wait_until};

const PEOPLE: &str = "CustomerId,Name,Email,Spend,LastPurchase,OptIn,Country\n\
                      P1,Ada,ada@northwind.io,1200,2026-03-01,true,Germany\n\
                      P2,Bob,bob@fabrikam.io,80,2024-05-10,false,France\n\
                      P3,Cy,cy@northwind.io,,2025-09-09,true,\n\
                      P4,Di,di@contoso-post.net,3000,,false,germany\n";

async fn seed(app: &TestApp) {
    export_destinations::profiles::import::import_reader(
        &app.state.db,
        std::io::Cursor::new(PEOPLE.as_bytes().to_vec()),
        "people.csv",
        Default::default(),
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
}

async fn members_of(db: &Db, id: i64) -> Vec<String> {
    segments::members(db.pool(), id, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|m| m.customer_id)
        .collect()
}

#[tokio::test]
async fn every_operator_selects_the_right_profiles_once_stored_and_refreshed() {
    let app = spawn_app().await;
    seed(&app).await;
    use Operator::*;
    let cases: Vec<(&str, Operator, &str, Vec<&str>)> = vec![
        ("Country", Equals, "GERMANY", vec!["P1", "P4"]),
        ("Country", NotEquals, "Germany", vec!["P2", "P3"]),
        ("Email", Contains, "northwind", vec!["P1", "P3"]),
        ("Spend", GreaterThan, "1000", vec!["P1", "P4"]),
        ("Spend", LessThan, "1000", vec!["P2"]),
        ("LastPurchase", Before, "2025-01-01", vec!["P2"]),
        ("LastPurchase", After, "2025-01-01", vec!["P1", "P3"]),
        ("Spend", IsEmpty, "", vec!["P3"]),
        ("LastPurchase", IsNotEmpty, "", vec!["P1", "P2", "P3"]),
        ("OptIn", Equals, "true", vec!["P1", "P3"]),
    ];
    for (field, op, value, expected) in cases {
        let rules = SegmentRules {
            match_: Match::All,
            conditions: vec![Condition {
                field: field.into(),
                op,
                value: value.into(),
            }],
        };
        let name = format!("{field} {} {value}", op.as_str());
        let id = segments::create(app.state.db.pool(), &name, &Definition::Rules(rules))
            .await
            .unwrap();
        export_destinations::segments::refresh(&app.state.db, Some(&[id]))
            .await
            .unwrap();
        assert_eq!(members_of(&app.state.db, id).await, expected, "{name}");
    }
}

#[tokio::test]
async fn readers_see_the_old_membership_until_a_refresh_publishes_the_new_one() {
    let app = spawn_app().await;
    seed(&app).await;
    let db = &app.state.db;
    let rules = SegmentRules {
        match_: Match::Any,
        conditions: vec![Condition {
            field: "Country".into(),
            op: Operator::Equals,
            value: "France".into(),
        }],
    };
    let id = segments::create(db.pool(), "France", &Definition::Rules(rules))
        .await
        .unwrap();
    export_destinations::segments::refresh(db, None)
        .await
        .unwrap();
    assert_eq!(members_of(db, id).await, ["P2"]);

    // A refresh half done: the next generation written, not yet published.
    let segment = segments::find(db.pool(), id).await.unwrap().unwrap();
    let mut conn = db.pool().acquire().await.unwrap();
    segments::write_generation(&mut conn, id, segment.generation + 1, &[1, 3, 4])
        .await
        .unwrap();
    assert_eq!(
        members_of(db, id).await,
        ["P2"],
        "unpublished rows are invisible"
    );
    assert_eq!(
        segments::find(db.pool(), id)
            .await
            .unwrap()
            .unwrap()
            .member_count,
        1
    );

    let published = Published {
        generation: segment.generation + 1,
        member_count: 3,
        unmatched_ids: 0,
        duration_ms: 1,
        as_of: 0,
        basis: String::new(),
        digest: String::new(),
    };
    segments::publish(&mut conn, id, &published).await.unwrap();
    assert_eq!(members_of(db, id).await, ["P1", "P3", "P4"]);
    let old: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM segment_members WHERE segment_id = $1 AND generation = $2",
    )
    .bind(id)
    .bind(segment.generation)
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(
        old, 0,
        "the old generation is gone once the new one is published"
    );
}

#[tokio::test]
async fn a_refresh_drops_profiles_that_left_the_segment() {
    let app = spawn_app().await;
    seed(&app).await;
    let db = &app.state.db;
    let rules = SegmentRules {
        match_: Match::All,
        conditions: vec![Condition {
            field: "OptIn".into(),
            op: Operator::Equals,
            value: "true".into(),
        }],
    };
    let id = segments::create(db.pool(), "Opted in", &Definition::Rules(rules))
        .await
        .unwrap();
    export_destinations::segments::refresh(db, None)
        .await
        .unwrap();
    assert_eq!(members_of(db, id).await, ["P1", "P3"]);
    export_destinations::profiles::import::import_reader(
        db,
        std::io::Cursor::new(b"CustomerId,OptIn\nP1,false\nP2,true\n".to_vec()),
        "change.csv",
        Default::default(),
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
    export_destinations::segments::refresh(db, None)
        .await
        .unwrap();
    assert_eq!(members_of(db, id).await, ["P2", "P3"]);
    let segment = segments::find(db.pool(), id).await.unwrap().unwrap();
    assert_eq!(segment.member_count, 2);
    assert!(segment.last_refreshed_at.is_some() && segment.last_refresh_ms.is_some());
}

#[tokio::test]
async fn the_rule_builder_previews_the_count_and_saves_a_refreshed_segment() {
    let app = spawn_app().await;
    seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let form = |action: &'static str| {
        vec![
            ("name", "Big spenders"),
            ("match", "all"),
            ("field_0", "Spend"),
            ("op_0", "greater_than"),
            ("value_0", "100"),
            ("action", action),
        ]
    };
    let preview = app
        .post_form("/data/segments/new", "/data/segments/new", &form("preview"))
        .await;
    assert_refused(preview, 200, "2 profiles match now.").await;

    let added = app
        .post_form("/data/segments/new", "/data/segments/new", &form("add"))
        .await;
    let html = added.text().await.unwrap();
    assert!(html.contains("name=\"field_1\""), "a second condition row");

    let saved = app
        .post_form("/data/segments/new", "/data/segments/new", &form("save"))
        .await;
    assert_eq!(saved.status(), 303);
    // Saving returns at once; the segment's page follows its refresh to the members.
    let segment_page = location(&saved);
    let page = app.get_html(&segment_page).await;
    assert!(
        page.contains("Saved “Big spenders”; its members are being computed."),
        "{page}"
    );
    let page = wait_until(
        "the members to be computed",
        Duration::from_secs(30),
        || async {
            let page = app.get_html(&segment_page).await;
            (!page.contains(r#"id="segment-refreshing""#)).then_some(page)
        },
    )
    .await;
    assert!(page.contains(">P1<") && page.contains(">P4<") && !page.contains(">P2<"));
    let list = app.get_html("/data/segments").await;
    assert!(list.contains("Big spenders") && list.contains("<td>2</td>"));
}

#[tokio::test]
async fn the_rule_builder_explains_what_is_wrong_and_saves_nothing() {
    let app = spawn_app().await;
    seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let response = app
        .post_form(
            "/data/segments/new",
            "/data/segments/new",
            &[
                ("name", "Broken"),
                ("match", "any"),
                ("field_0", "Spend"),
                ("op_0", "before"),
                ("value_0", "2020-01-01"),
                ("field_1", "LastPurchase"),
                ("op_1", "after"),
                ("value_1", "last week"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(response.status(), 422);
    let html = response.text().await.unwrap();
    assert!(
        html.contains("Condition 1: number fields cannot use “is before”."),
        "{html}"
    );
    assert!(
        html.contains("Condition 2: &#34;last week&#34; is not a date (YYYY-MM-DD)."),
        "{html}"
    );
    assert!(
        html.contains("value=\"last week\""),
        "what was typed is kept"
    );
    assert!(
        segments::list(app.state.db.pool())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn a_segment_name_is_unique() {
    let app = spawn_app().await;
    seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let form = [
        ("name", "Twice"),
        ("match", "all"),
        ("field_0", "Name"),
        ("op_0", "is_not_empty"),
        ("value_0", ""),
        ("action", "save"),
    ];
    assert_eq!(
        app.post_form("/data/segments/new", "/data/segments/new", &form)
            .await
            .status(),
        303
    );
    let again = app
        .post_form("/data/segments/new", "/data/segments/new", &form)
        .await;
    assert_refused(again, 422, "a segment named “Twice” already exists").await;
}

#[tokio::test]
async fn a_static_segment_lists_customer_ids_and_reports_those_without_a_profile() {
    let app = spawn_app().await;
    seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let token = crate::helpers::csrf_token(&app.get_html("/data/segments/new-static").await);
    let form = reqwest::multipart::Form::new()
        .text("name", "VIP list")
        .part(
            "file",
            reqwest::multipart::Part::bytes(b"CustomerId\nP2\nP4\nP99\n".to_vec())
                .file_name("vip.csv"),
        );
    let response = app
        .client
        .post(app.url(&format!("/data/segments/static?csrf_token={token}")))
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    let page = app.get_html(&location(&response)).await;
    assert!(
        page.contains("Created “VIP list”: 2 members; 1 listed IDs have no profile."),
        "{page}"
    );
    assert!(page.contains(">P2<") && page.contains(">P4<"));
}

#[tokio::test]
async fn a_segment_can_be_edited_and_deleted() {
    let app = spawn_app().await;
    seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let form = [
        ("name", "France"),
        ("match", "all"),
        ("field_0", "Country"),
        ("op_0", "equals"),
        ("value_0", "France"),
        ("action", "save"),
    ];
    let saved = app
        .post_form("/data/segments/new", "/data/segments/new", &form)
        .await;
    let path = location(&saved);
    let edit = format!("{path}/edit");
    let edited = [
        ("name", "Germany"),
        ("match", "all"),
        ("field_0", "Country"),
        ("op_0", "equals"),
        ("value_0", "Germany"),
        ("action", "save"),
    ];
    let response = app.post_form(&edit, &edit, &edited).await;
    assert_eq!(response.status(), 303);
    let page = computed(&app, &path).await;
    assert!(page.contains("<h1>Germany</h1>") && page.contains(">P1<") && page.contains(">P4<"));
    let confirm = app.get_html(&format!("{path}/delete")).await;
    assert!(confirm.contains("Delete “Germany”?") && confirm.contains("cannot be undone"));
    let deleted = app
        .post_form(&format!("{path}/delete"), &format!("{path}/delete"), &[])
        .await;
    assert_eq!(location(&deleted), "/data/segments");
    assert_eq!(app.get(&path).await.status(), 404);
}

#[tokio::test]
async fn viewers_see_segments_but_cannot_change_or_refresh_them() {
    let app = spawn_app().await;
    seed(&app).await;
    app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let html = app.get_html("/data/segments").await;
    assert!(!html.contains("New segment"));
    assert_eq!(app.get("/data/segments/new").await.status(), 403);
    let token = crate::helpers::csrf_token(&html);
    let response = app
        .post_raw("/data/segments/refresh", &[("csrf_token", &token)])
        .await;
    assert_eq!(response.status(), 403);
    let response = app
        .post_raw(
            "/data/segments/new",
            &[("csrf_token", &token), ("name", "x"), ("action", "save")],
        )
        .await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn refresh_all_updates_counts_from_the_segments_page() {
    let app = spawn_app().await;
    seed(&app).await;
    let rules = SegmentRules {
        match_: Match::All,
        conditions: vec![Condition {
            field: "Name".into(),
            op: Operator::IsNotEmpty,
            value: String::new(),
        }],
    };
    segments::create(app.state.db.pool(), "Everyone", &Definition::Rules(rules))
        .await
        .unwrap();
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let response = app
        .post_form("/data/segments", "/data/segments/refresh", &[])
        .await;
    // The refresh runs in the background; its page follows it segment by segment.
    assert_eq!(location(&response), "/data/segments/refresh");
    let done = wait_until("the refresh to end", Duration::from_secs(30), || async {
        let page = app.get_html("/data/segments/refresh").await;
        page.contains(r#"id="refresh-summary""#).then_some(page)
    })
    .await;
    assert!(done.contains("Refreshed 1 segment(s)"), "{done}");
    assert!(done.contains(r#"<td class="state">done</td>"#), "{done}");
    assert!(done.contains(r#"<td class="num members">4</td>"#), "{done}");
    let progress: serde_json::Value = app
        .get("/data/segments/refresh.json")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(progress["running"], false);
    assert_eq!(progress["scanned"], 4);
    assert_eq!(progress["segments"][0]["name"], "Everyone");
    let html = app.get_html("/data/segments").await;
    assert!(html.contains("<td>4</td>"));
}

#[tokio::test]
async fn a_refresh_in_progress_shows_each_segments_state() {
    let app = spawn_app().await;
    app.signed_in_as("vera@example.com", Role::Viewer).await;
    let empty = app.get_html("/data/segments/refresh").await;
    assert!(empty.contains("No refresh has run since the console started."));
    // Viewers may watch but not start one.
    let token = crate::helpers::csrf_token(&app.get_html("/data/segments").await);
    let refused = app
        .post_raw("/data/segments/refresh", &[("csrf_token", token.as_str())])
        .await;
    assert_eq!(refused.status(), 403);
}

/// A segment's page once the members of its saved rules are computed.
async fn computed(app: &TestApp, path: &str) -> String {
    wait_until(
        "the members to be computed",
        Duration::from_secs(30),
        || async {
            let page = app.get_html(path).await;
            (!page.contains(r#"id="segment-refreshing""#)).then_some(page)
        },
    )
    .await
}
