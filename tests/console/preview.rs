//! Preview: what an export would do, computed without writing to Mailchimp, and equal to
//! what the export that follows does.

use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::destinations::{self, Configuration, FieldMapping};
use export_destinations::store::runs::{self, RunStatus};
use serde_json::{Value, json};

use crate::api::{call, token};
use crate::helpers::{PASSWORD, location, wait_until};
use crate::world::*;

/// Adds merge fields to the sandbox audience, as its owner would in Mailchimp.
pub(crate) async fn merge_field(w: &World, body: Value) {
    let response = reqwest::Client::new()
        .post(format!(
            "{}/3.0/lists/{}/merge-fields",
            w.sandbox_base, w.audience
        ))
        .basic_auth("x", Some(&w.key))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

/// SCORE (a number), JOINED (a date) and CITY (required text), besides FNAME.
async fn typed_fields(w: &World) {
    merge_field(
        w,
        json!({"name": "Score", "type": "number", "tag": "SCORE"}),
    )
    .await;
    merge_field(
        w,
        json!({"name": "Joined", "type": "date", "tag": "JOINED"}),
    )
    .await;
    merge_field(
        w,
        json!({"name": "City", "type": "text", "tag": "CITY", "required": true}),
    )
    .await;
}

/// Members already in the audience before the console's first export.
async fn subscribe(w: &World, members: Value) {
    let response = reqwest::Client::new()
        .post(format!("{}/3.0/lists/{}", w.sandbox_base, w.audience))
        .basic_auth("x", Some(&w.key))
        .json(&json!({ "members": members, "update_existing": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Maps FNAME, SCORE, JOINED and CITY from the profile fields of the same meaning.
async fn map_all(w: &World, id: i64, segments: &[i64]) {
    let mappings = [
        ("FNAME", "FirstName"),
        ("SCORE", "Score"),
        ("JOINED", "Joined"),
        ("CITY", "City"),
    ]
    .map(|(tag, field)| FieldMapping {
        tag: tag.into(),
        field: field.into(),
    });
    let config = Configuration {
        display_name: "Newsletter",
        email_field: "Email",
        field_mappings: &mappings,
        segment_ids: segments,
        new_member_status: "subscribed",
        keep_in_sync: false,
    };
    let mut conn = w.app.state.db.pool().acquire().await.unwrap();
    destinations::save_configuration(&mut conn, id, &config)
        .await
        .unwrap();
}

fn long_name() -> String {
    "L".repeat(300)
}

fn people(ada_city: &str, bob_country: &str, long: &str, with_eve: bool) -> String {
    let mut csv = format!(
        "CustomerId,FirstName,Email,Country,Score,Joined,City\n\
         P1,Ada,ada@northwind.io,Germany,10,2026-01-05,{ada_city}\n\
         P2,Bob,bob@fabrikam.io,{bob_country},7,01/31/2026,Paris\n\
         P3,Zoë,zoe@northwind.io,Germany,3,2026-02-01,Hamburg\n\
         P4,Nobody,,Germany,1,2026-01-01,Bonn\n\
         P5,Broken,not-an-address,Germany,1,2026-01-01,Bonn\n\
         P6,Ada Again,ADA@northwind.io,Germany,1,2026-01-01,Bonn\n\
         P7,{long},long@northwind.io,Germany,1,2026-01-01,Bonn\n\
         P8,Count,count@northwind.io,Germany,lots,2026-01-01,Bonn\n\
         P9,Dora,dora@northwind.io,Germany,2,31/01/2026,Bonn\n\
         P10,Nell,nell@northwind.io,Germany,2,2026-01-01,\n"
    );
    if with_eve {
        csv.push_str("P11,Eve,eve@northwind.io,Germany,5,2026-03-01,Köln\n");
    }
    csv
}

/// The preview through the API, as a script would ask for it.
async fn preview(w: &World, token: &str, id: i64) -> Value {
    let (status, body) = call(
        &w.app,
        reqwest::Method::POST,
        &format!("/api/v1/destinations/{id}/preview"),
        Some(token),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn routes_written(w: &World, before: &std::collections::BTreeMap<String, u64>) -> Vec<String> {
    calls_since(w, before)
        .into_keys()
        .filter(|route| !route.starts_with("GET"))
        .collect()
}

/// Asserts that a run did exactly what its preview said.
fn assert_run_as_previewed(p: &Value, run: &runs::Run) {
    let c = run.counters;
    let n = |key: &str| p[key].as_i64().unwrap();
    assert_eq!(
        (c.created, c.updated, c.unchanged, c.skipped, c.failed),
        (
            n("create"),
            n("update"),
            n("unchanged"),
            n("skip"),
            n("fail")
        ),
        "created, updated, unchanged, skipped, failed; preview: {p:#}"
    );
    assert_eq!(c.total, n("profiles"));
    assert_eq!(c.tag_changes, n("tags_added") + n("tags_removed"), "{p:#}");
}

fn contacts(w: &World) -> usize {
    w.sandbox.store().audiences[&w.audience].members.len()
}

fn reasons(p: &Value, key: &str) -> Vec<(String, i64)> {
    p[key]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["title"].as_str().unwrap().to_owned(),
                r["members"].as_i64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn the_preview_says_what_the_following_runs_do_and_writes_nothing() {
    let w = world(SandboxConfig::default()).await;
    typed_fields(&w).await;
    subscribe(
        &w,
        json!([
            { "email_address": "bob@fabrikam.io", "status": "subscribed", "merge_fields": {"CITY": "Paris"} },
            { "email_address": "zoe@northwind.io", "status": "unsubscribed", "merge_fields": {"CITY": "Hamburg"} },
            { "email_address": "someone.else@contoso.io", "status": "subscribed", "merge_fields": {"CITY": "Rome"} }
        ]),
    )
    .await;
    // Scores are kept as text here (some say "lots"): Mailchimp's number field refuses those.
    export_destinations::store::fields::add(
        w.app.state.db.pool(),
        "Score",
        export_destinations::domain::FieldType::Text,
    )
    .await
    .unwrap();
    import(&w.app, &people("Berlin", "Germany", &long_name(), false)).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    let berlin = segment(&w.app, "Berlin", "City", "Berlin").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany, berlin], "subscribed").await;
    map_all(&w, id, &[germany, berlin]).await;
    let token = token(&w.app, "scripts@example.com", Role::Contributor).await;

    // The first export.
    let before = routes(&w);
    let p = preview(&w, &token, id).await;
    assert!(
        routes_written(&w, &before).is_empty(),
        "the preview only reads"
    );
    assert_eq!(contacts(&w), 3, "the preview added nobody");
    assert_eq!(p["profiles"], 10, "{p:#}");
    assert_eq!(p["audience_contacts"], 3);
    assert_eq!(
        (&p["create"], &p["update"], &p["skip"], &p["fail"]),
        (&json!(1), &json!(2), &json!(3), &json!(4)),
        "Ada is new; Bob and Zoë are in the audience; {p:#}"
    );
    let problems = reasons(&p, "problems");
    let says = |needle: &str| problems.iter().any(|(t, n)| t.contains(needle) && *n == 1);
    assert!(
        says("FNAME takes at most 255 characters and this value has 300"),
        "{problems:?}"
    );
    assert!(
        says("SCORE is a number field and “lots” is not a number"),
        "{problems:?}"
    );
    assert!(
        says("JOINED is a date field and “31/01/2026”"),
        "{problems:?}"
    );
    assert!(
        says("CITY (City) is required in this audience"),
        "{problems:?}"
    );
    assert_eq!(
        reasons(&p, "skipped"),
        vec![
            ("Invalid email address".to_owned(), 1),
            ("No email address".to_owned(), 1),
            ("Repeated email address".to_owned(), 1),
        ]
    );
    let tags: Vec<(String, i64, i64)> = p["tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["tag"].as_str().unwrap().to_owned(),
                t["add"].as_i64().unwrap(),
                t["remove"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        tags,
        vec![
            ("Berlin".to_owned(), 1, 0),
            ("Germany".to_owned(), 3, 0),
            ("export-destinations".to_owned(), 3, 0),
        ]
    );
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_run_as_previewed(&p, &run);
    assert_eq!(contacts(&w) as i64, 3 + p["create"].as_i64().unwrap());

    // Nothing changed: the preview says nothing would be sent, and nothing is.
    let p = preview(&w, &token, id).await;
    assert_eq!((&p["create"], &p["update"]), (&json!(0), &json!(0)));
    assert_eq!(
        p["write_calls"], 1,
        "the four refused members are tried again, in one batch: {p:#}"
    );
    let run = export(&w, id, false).await;
    assert_run_as_previewed(&p, &run);

    // Ada moves to Munich (she leaves the Berlin segment), Bob to France (he leaves every
    // segment), the long name is mended and Eve arrives.
    import(&w.app, &people("Munich", "France", "Lou", true)).await;
    refresh(&w.app).await;
    let before = routes(&w);
    let p = preview(&w, &token, id).await;
    assert!(routes_written(&w, &before).is_empty());
    assert_eq!(
        (&p["create"], &p["update"], &p["fail"]),
        (&json!(2), &json!(1), &json!(3)),
        "Lou and Eve are new, Ada changed; {p:#}"
    );
    assert!(
        p["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tag"] == "Berlin" && t["remove"] == 1),
        "Ada loses the Berlin tag: {p:#}"
    );
    assert!(
        p["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["tag"] == "Germany" && t["remove"] == 1),
        "Bob left every segment and loses the Germany tag: {p:#}"
    );
    let run = export(&w, id, false).await;
    assert_run_as_previewed(&p, &run);

    // A full resync sends every member's data again; its preview says so.
    let (status, p) = call(
        &w.app,
        reqwest::Method::POST,
        &format!("/api/v1/destinations/{id}/preview"),
        Some(&token),
        Some(json!({ "full": true })),
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(p["full_resync"], true);
    let run = export(&w, id, true).await;
    assert_run_as_previewed(&p, &run);

    // Every value mended: a complete export, after which a run reads only what changed.
    import(
        &w.app,
        "CustomerId,Score,Joined,City\nP8,8,2026-01-01,Bonn\nP9,2,2026-01-31,Bonn\nP10,2,2026-01-01,Bonn\n",
    )
    .await;
    refresh(&w.app).await;
    let p = preview(&w, &token, id).await;
    assert_eq!(p["fail"], 0, "{p:#}");
    let run = export(&w, id, false).await;
    assert_run_as_previewed(&p, &run);
    assert_eq!(run.counters.failed, 0);
    // Eve's first name changes. The preview reads what the run reads: only her profile (the
    // profiles not read are unchanged, the three skipped last time among them), and the
    // ledger for who is in the audience, whose members it does not read.
    tokio::time::sleep(std::time::Duration::from_millis(
        export_destinations::export::changes::CLOCK_MARGIN_MS as u64 + 50,
    ))
    .await;
    import(&w.app, "CustomerId,FirstName\nP11,Evelyn\n").await;
    let before = routes(&w);
    let p = preview(&w, &token, id).await;
    let read: Vec<String> = calls_since(&w, &before).into_keys().collect();
    assert!(
        !read.iter().any(|route| route.contains("/members")),
        "the audience's members are not read: {read:?}"
    );
    let run = export(&w, id, false).await;
    assert!(run.changes_since.is_some(), "only what changed was read");
    assert_run_as_previewed(&p, &run);
    let n = |key: &str| p[key].as_i64().unwrap();
    assert_eq!(
        (n("update"), n("unchanged") + n("skip")),
        (1, n("profiles") - 1),
        "Eve's data changes; every other profile is as the last export left it: {p:#}"
    );

    // Members archived behind the console: the audience check says so, and the preview reads
    // the audience whole, as the run repairs the ledger; both say the same again.
    let archived = reqwest::Client::new()
        .delete(format!(
            "{}/3.0/lists/{}/members/{}",
            w.sandbox_base,
            w.audience,
            export_destinations::domain::subscriber_hash("eve@northwind.io")
        ))
        .basic_auth("x", Some(&w.key))
        .send()
        .await
        .unwrap();
    assert_eq!(archived.status(), 204);
    let before = routes(&w);
    let p = preview(&w, &token, id).await;
    assert!(
        calls_since(&w, &before)
            .keys()
            .any(|route| route.contains("/members")),
        "the audience is read whole"
    );
    assert_eq!(p["create"], 1, "Eve comes back: {p:#}");
    let run = export(&w, id, false).await;
    assert_run_as_previewed(&p, &run);
}

/// An audience that requires CITY, the people imported, a Germany segment, and a saved
/// destination exporting it whose mapping does not fill CITY: (world, segment, destination).
async fn city_required() -> (World, i64, i64) {
    let w = world(SandboxConfig::default()).await;
    merge_field(
        &w,
        json!({"name": "City", "type": "text", "tag": "CITY", "required": true}),
    )
    .await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    (w, germany, id)
}

#[tokio::test]
async fn the_set_up_ends_on_the_preview_and_a_first_export_with_problems_asks_first() {
    let (w, germany, id) = city_required().await;
    // A draft through its connect steps, then the Data matching page's Save.
    sqlx::query("UPDATE destinations SET status = 'draft' WHERE id = $1")
        .bind(id)
        .execute(w.app.state.db.pool())
        .await
        .unwrap();
    // The draft's owner (made with the destination) finishes it.
    let response = w.app.sign_in("owner1@example.com", PASSWORD).await;
    assert_eq!(response.status(), 303);
    let configure = format!("/admin/export-destinations/{id}/configure");
    let response = w
        .app
        .post_form(
            &configure,
            &configure,
            &[
                ("display_name", "Newsletter"),
                ("email_field", "Email"),
                ("map_tag_0", "FNAME"),
                ("map_field_0", "FirstName"),
                ("segment", &germany.to_string()),
                ("new_member_status", "subscribed"),
                ("action", "save"),
            ],
        )
        .await;
    let preview_page = format!("/admin/export-destinations/{id}/preview");
    assert_eq!(
        location(&response),
        preview_page,
        "the set-up ends on the preview"
    );
    let html = w.app.get_html(&preview_page).await;
    assert!(html.contains("Nothing is exported yet"), "{html}");
    let html = wait_until("the preview", Duration::from_secs(20), || async {
        let html = w.app.get_html(&preview_page).await;
        html.contains("id=\"preview-create\"").then_some(html)
    })
    .await;
    assert!(html.contains("No export has run yet: this is what the first one would do."));
    assert!(
        html.contains(
            "CITY (City) is required in this audience and the member has no value for it"
        ),
        "the audience requires CITY and the mapping does not fill it"
    );
    assert!(html.contains("Export anyway"));
    assert_eq!(contacts(&w), 0, "nothing was written");

    // Export, without confirming: the preview again, and no run.
    let response = w
        .app
        .post_form(
            &preview_page,
            &format!("/admin/export-destinations/{id}/export"),
            &[],
        )
        .await;
    assert_eq!(response.status(), 409);
    let html = response.text().await.unwrap();
    assert!(html.contains("This first export would leave members out."));
    assert!(
        runs::for_destination(w.app.state.db.pool(), id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Confirmed: it runs, and the refused members are reported as the preview said.
    let response = w
        .app
        .post_form(
            &preview_page,
            &format!("/admin/export-destinations/{id}/export"),
            &[("confirm", "yes")],
        )
        .await;
    assert!(location(&response).starts_with("/admin/export-runs/"));
    let run = runs::for_destination(w.app.state.db.pool(), id, 1)
        .await
        .unwrap()
        .remove(0);
    let run = wait(&w, run.id).await;
    assert_eq!(run.counters.failed, 2, "Ada and Zoë have no city");

    // A preview lasts until the settings change: an edit's Save drops it.
    let response = w
        .app
        .post_form(
            &configure,
            &configure,
            &[
                ("display_name", "Newsletter"),
                ("email_field", "Email"),
                ("segment", &germany.to_string()),
                ("new_member_status", "subscribed"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(location(&response), "/admin/export-destinations");
    assert!(
        w.app
            .get_html(&preview_page)
            .await
            .contains("No preview yet.")
    );

    // Later exports are not asked about again.
    let response = w
        .app
        .post_form(
            &preview_page,
            &format!("/admin/export-destinations/{id}/export"),
            &[],
        )
        .await;
    assert!(location(&response).starts_with("/admin/export-runs/"));
}

#[tokio::test]
async fn previews_are_for_contributors_and_say_why_they_could_not_be_made() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let viewer = token(&w.app, "viewer@example.com", Role::Viewer).await;
    let (status, _) = call(
        &w.app,
        reqwest::Method::POST,
        &format!("/api/v1/destinations/{id}/preview"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &w.app,
        reqwest::Method::POST,
        "/api/v1/destinations/999/preview",
        Some(&token(&w.app, "c@example.com", Role::Contributor).await),
        None,
    )
    .await;
    assert_eq!(status, 404);

    // The audience is gone in Mailchimp: the preview says so, on the API and the page.
    w.sandbox.store().audiences.remove(&w.audience);
    let contributor = token(&w.app, "c2@example.com", Role::Contributor).await;
    let (status, body) = call(
        &w.app,
        reqwest::Method::POST,
        &format!("/api/v1/destinations/{id}/preview"),
        Some(&contributor),
        None,
    )
    .await;
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["title"], "Mailchimp could not be read");
    assert!(
        body["detail"].as_str().unwrap().contains("audience"),
        "{body}"
    );
    w.app
        .signed_in_as("viewer2@example.com", Role::Viewer)
        .await;
    let html = w
        .app
        .get_html(&format!("/admin/export-destinations/{id}/preview"))
        .await;
    assert!(html.contains("The preview could not be computed"), "{html}");
    assert!(!html.contains("Compute again"), "viewers only look");
}

#[tokio::test]
async fn previews_asked_for_at_once_are_computed_once() {
    // Mailchimp answers slowly: the first preview is still computing when the others ask.
    let w = world(SandboxConfig {
        latency: Duration::from_millis(500),
        ..SandboxConfig::default()
    })
    .await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    w.app
        .signed_in_as("ed@example.com", Role::Contributor)
        .await;
    let page = format!("/admin/export-destinations/{id}/preview");
    let token = crate::helpers::csrf_token(&w.app.get_html(&page).await);
    let before = routes(&w);
    let form = [("csrf_token", token.as_str())];
    let answers = futures::future::join_all((0..6).map(|_| w.app.post_raw(&page, &form))).await;
    assert!(answers.iter().all(|r| r.status() == 303));
    wait_until("the preview", Duration::from_secs(20), || async {
        let html = w.app.get_html(&page).await;
        html.contains("id=\"preview-create\"").then_some(())
    })
    .await;
    assert_eq!(
        calls_since(&w, &before).get("GET /lists/{list_id}/merge-fields"),
        Some(&1),
        "one preview was computed for the six requests: {:?}",
        calls_since(&w, &before)
    );
}

#[tokio::test]
async fn the_api_asks_for_the_same_confirmation_before_a_first_export_with_problems() {
    let (w, _, id) = city_required().await;
    let token = token(&w.app, "scripts@example.com", Role::Contributor).await;
    let runs_path = format!("/api/v1/destinations/{id}/runs");

    // The audience requires CITY and the mapping does not fill it.
    let p = preview(&w, &token, id).await;
    assert_eq!(p["fail"], 2, "Ada and Zoë have no city: {p:#}");

    let (status, body) = call(
        &w.app,
        reqwest::Method::POST,
        &runs_path,
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["title"], "Confirm the first export");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("\"confirm\": true"),
        "the refusal says how to go on: {body}"
    );
    assert_eq!(
        body["preview"], p,
        "the answer carries the preview to confirm"
    );
    assert!(
        runs::for_destination(w.app.state.db.pool(), id, 10)
            .await
            .unwrap()
            .is_empty(),
        "no run was queued"
    );

    let (status, body) = call(
        &w.app,
        reqwest::Method::POST,
        &runs_path,
        Some(&token),
        Some(json!({ "confirm": true })),
    )
    .await;
    assert_eq!(status, 202, "{body}");
    let run = wait(&w, body["id"].as_i64().unwrap()).await;
    assert_eq!(run.counters.failed, 2);

    // Later exports are not asked about again.
    let (status, body) = call(
        &w.app,
        reqwest::Method::POST,
        &runs_path,
        Some(&token),
        None,
    )
    .await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn a_value_emptied_in_a_profile_is_emptied_in_mailchimp_unless_the_field_is_required() {
    let w = world(SandboxConfig::default()).await;
    typed_fields(&w).await;
    import(
        &w.app,
        "CustomerId,FirstName,Email,Country,Score,Joined,City\n\
         P1,Ada,ada@northwind.io,Germany,10,2026-01-05,Berlin\n\
         P3,Zoë,zoe@northwind.io,Germany,3,2026-02-01,Hamburg\n",
    )
    .await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    map_all(&w, id, &[germany]).await;
    assert_eq!(export(&w, id, false).await.counters.created, 2);
    let merge = |email: &str, tag: &str| {
        let store = w.sandbox.store();
        let list = &store.audiences[&w.audience];
        let member = list
            .members
            .values()
            .find(|m| m.email_address == email)
            .unwrap();
        member.merge_fields.get(tag).cloned().unwrap_or(Value::Null)
    };
    assert_eq!(merge("ada@northwind.io", "JOINED"), json!("2026-01-05"));

    // Ada's first name, score, date and city are emptied in her profile.
    let token = token(&w.app, "scripts@example.com", Role::Contributor).await;
    let (status, body) = call(
        &w.app,
        reqwest::Method::PUT,
        "/api/v1/profiles/P1",
        Some(&token),
        Some(json!({ "FirstName": "", "Score": null, "Joined": null, "City": "" })),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let p = preview(&w, &token, id).await;
    assert_eq!(
        (&p["update"], &p["unchanged"]),
        (&json!(1), &json!(1)),
        "{p:#}"
    );
    let run = export(&w, id, false).await;
    assert_run_as_previewed(&p, &run);
    assert_eq!(run.counters.failed, 0, "{run:?}");
    for tag in ["FNAME", "SCORE", "JOINED"] {
        assert_eq!(merge("ada@northwind.io", tag), json!(""), "{tag} emptied");
    }
    // CITY is required: Mailchimp would refuse her with it empty, so it keeps its value.
    assert_eq!(merge("ada@northwind.io", "CITY"), json!("Berlin"));
    assert_eq!(merge("zoe@northwind.io", "JOINED"), json!("2026-02-01"));

    // Nothing changed since: nothing is sent again.
    let again = export(&w, id, false).await;
    assert_eq!(
        (again.counters.updated, again.counters.unchanged),
        (0, 2),
        "{again:?}"
    );
}
