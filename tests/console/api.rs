use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::store::api_tokens;
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::wizard::{audience, seed};

pub(crate) async fn token(app: &TestApp, email: &str, role: Role) -> String {
    let id = app.create_user(email, role).await;
    api_tokens::create(app.state.db.pool(), id, "tests")
        .await
        .unwrap()
}

pub(crate) async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = reqwest::Client::new().request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Waits (up to 10 s) for run `run_id` to end, reading it through the API as a script would.
async fn run_finished_via_api(app: &TestApp, token: &str, run_id: i64) -> Value {
    crate::helpers::wait_until("the run to end", Duration::from_secs(10), || async {
        let (_, run) = call(
            app,
            reqwest::Method::GET,
            &format!("/api/v1/runs/{run_id}"),
            Some(token),
            None,
        )
        .await;
        run["finished_at"].is_number().then_some(run)
    })
    .await
}

pub(crate) fn sandbox_key(app: &TestApp) -> String {
    app.state
        .sandbox
        .clone()
        .unwrap()
        .store()
        .api_keys
        .keys()
        .next()
        .unwrap()
        .clone()
}

#[tokio::test]
async fn a_script_creates_a_destination_runs_an_export_and_reads_the_results() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let body = json!({
        "display_name": "From CI", "consent": true, "audience_id": audience(&app, "Newsletter subscribers"),
        "api_key": sandbox_key(&app), "email_field": "EmailAddress",
        "merge_fields": [{ "tag": "FNAME", "field": "FirstName" }], "segment_ids": [segment], "new_member_status": "subscribed"
    });
    let (status, destination) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{destination}");
    assert_eq!(destination["audience_name"], "Newsletter subscribers");
    let id = destination["id"].as_i64().unwrap();
    let (_, list) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/destinations",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(list["destinations"][0]["display_name"], "From CI");

    let (status, run) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/destinations/{id}/runs"),
        Some(&admin),
        Some(json!({ "full": false })),
    )
    .await;
    assert_eq!(status, 202);
    let run_id = run["id"].as_i64().unwrap();
    let finished = run_finished_via_api(&app, &admin, run_id).await;
    assert_eq!(finished["status"], "Successful", "{finished}");
    assert_eq!(finished["counts"]["created"], 2);
    let csv = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/runs/{run_id}/members.csv")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        csv.starts_with("customer_id,email,outcome,title,detail")
            && csv.contains("P1,ada@northwind.io,created")
    );
    let log = export_destinations::store::audit::recent(app.state.db.pool(), 10)
        .await
        .unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "consent" && e.details.contains("(API)")),
        "the same records as the wizard"
    );
}

/// A raw request to the API: (status, content type, body as JSON when it is JSON, headers).
pub(crate) async fn raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    token: Option<&str>,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, String, Value, reqwest::header::HeaderMap) {
    let mut request = reqwest::Client::new().request(method, app.url(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    let response = request.body(body).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = response.text().await.unwrap();
    (
        status,
        content_type,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
        headers,
    )
}

pub(crate) fn fields_of(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// A problem+json answer with this status, a title and a detail.
pub(crate) fn assert_problem(
    what: &str,
    got: &(u16, String, Value, reqwest::header::HeaderMap),
    status: u16,
) {
    let (code, content_type, body, _) = got;
    assert_eq!(*code, status, "{what}: {body}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "{what}: content type {content_type:?}, body {body}"
    );
    assert_eq!(body["status"], status, "{what}: {body}");
    assert!(
        body["title"].is_string() && !body["detail"].as_str().unwrap_or_default().is_empty(),
        "{what}: {body}"
    );
}

pub(crate) fn a_valid_destination(app: &TestApp, segment: i64) -> Value {
    json!({
        "display_name": "From CI", "consent": true, "audience_id": audience(app, "Newsletter subscribers"),
        "api_key": sandbox_key(app), "email_field": "EmailAddress",
        "merge_fields": [{ "tag": "FNAME", "field": "FirstName" }], "segment_ids": [segment]
    })
}

#[tokio::test]
async fn member_csvs_neutralise_cells_a_spreadsheet_would_run() {
    let app = spawn_app().await;
    let people = "CustomerId,FirstName,LastName,EmailAddress,Country\n\
                  \"=HYPERLINK(\"\"http://x\"\",\"\"y\"\")\",Ada,Lovelace,ada@northwind.io,Germany\n\
                  +1,Bob,Brown,bob@northwind.io,Germany\n\
                  -2,Cy,Cole,cy@northwind.io,Germany\n\
                  @SUM(A1),Di,Dane,di@northwind.io,Germany\n\
                  P5,Ed,Eve,ed@northwind.io,Germany\n";
    export_destinations::profiles::import::import_reader(
        &app.state.db,
        std::io::Cursor::new(people.as_bytes().to_vec()),
        "people.csv",
        Default::default(),
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
    use export_destinations::domain::segment_rules::{Condition, Match, Operator, SegmentRules};
    let rules = SegmentRules {
        match_: Match::All,
        conditions: vec![Condition {
            field: "Country".into(),
            op: Operator::Equals,
            value: "Germany".into(),
        }],
    };
    let segment = export_destinations::store::segments::create(
        app.state.db.pool(),
        "Germany",
        &export_destinations::store::segments::Definition::Rules(rules),
    )
    .await
    .unwrap();
    export_destinations::segments::refresh(&app.state.db, None)
        .await
        .unwrap();
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let created = created_destination(&app, &admin, segment).await;
    let (_, run) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/destinations/{}/runs", created["id"]),
        Some(&admin),
        None,
    )
    .await;
    let run_id = run["id"].as_i64().unwrap();
    let run = run_finished_via_api(&app, &admin, run_id).await;
    assert_eq!(run["status"], "Successful", "{run}");
    let from_api = reqwest::Client::new()
        .get(app.url(&format!("/api/v1/runs/{run_id}/members.csv")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let response = app
        .get(&format!("/admin/export-runs/{run_id}/members.csv"))
        .await;
    assert_eq!(response.status(), 200);
    let from_page = response.text().await.unwrap();
    for csv in [&from_api, &from_page] {
        let mut reader = csv::Reader::from_reader(csv.as_bytes());
        let ids: Vec<String> = reader.records().map(|r| r.unwrap()[0].to_owned()).collect();
        assert_eq!(ids.len(), 5, "{csv}");
        for expected in [
            "'=HYPERLINK(\"http://x\",\"y\")",
            "'+1",
            "'-2",
            "'@SUM(A1)",
            "P5",
        ] {
            assert!(ids.iter().any(|id| id == expected), "{expected} in {ids:?}");
        }
        assert!(
            !ids.iter().any(|id| id.starts_with(['=', '+', '-', '@'])),
            "{ids:?}"
        );
    }
}

/// `mailchimp` says which Mailchimp a key is for; unset, the console's default (the
/// built-in sandbox here, with no OAuth app); anything else is a 422 naming the field.
#[tokio::test]
async fn the_mailchimp_field_chooses_the_built_in_sandbox_or_mailchimp() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let mut body = a_valid_destination(&app, segment);
    body["mailchimp"] = json!("elsewhere");
    let got = raw(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await;
    assert_problem("unknown mailchimp", &got, 422);
    assert_eq!(fields_of(&got.2), ["mailchimp"]);

    let made = created_destination(&app, &admin, segment).await;
    assert_eq!(made["mailchimp"], "sandbox");
    let html_row = {
        app.signed_in_as("viewer@example.com", Role::Viewer).await;
        app.get_html("/admin/export-destinations").await
    };
    assert!(html_row.contains(r#"<td class="target">Built-in sandbox</td>"#));
}

#[tokio::test]
async fn patch_changes_what_the_configure_page_changes_and_checks_it_the_same_way() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let france = crate::helpers::equals_segment(&app.state.db, "France", "Country", "France").await;
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let created = created_destination(&app, &admin, segment).await;
    let path = format!("/api/v1/destinations/{}", created["id"]);

    let change = json!({
        "display_name": "Renamed", "segment_ids": [segment, france], "new_member_status": "pending"
    });
    let (status, changed) = call(
        &app,
        reqwest::Method::PATCH,
        &path,
        Some(&admin),
        Some(change),
    )
    .await;
    assert_eq!(status, 200, "{changed}");
    let (_, shown) = call(&app, reqwest::Method::GET, &path, Some(&admin), None).await;
    for body in [&changed, &shown] {
        assert_eq!(body["display_name"], "Renamed", "{body}");
        assert_eq!(body["segment_ids"], json!([segment, france]), "{body}");
        assert_eq!(body["new_member_status"], "pending", "{body}");
        assert_eq!(
            body["email_field"], "EmailAddress",
            "left out, kept: {body}"
        );
        assert_eq!(
            body["merge_fields"][0]["tag"], "FNAME",
            "left out, kept: {body}"
        );
    }

    // Refused as the configure page refuses it, naming the field; nothing changes.
    let bad = json!({ "email_field": "NoSuchField", "display_name": "Not kept" });
    let refused = raw(
        &app,
        reqwest::Method::PATCH,
        &path,
        Some(&admin),
        Some("application/json"),
        bad.to_string().into_bytes(),
    )
    .await;
    assert_problem("an unknown email field", &refused, 422);
    assert_eq!(fields_of(&refused.2), ["email_field"]);
    let unknown = raw(
        &app,
        reqwest::Method::PATCH,
        &path,
        Some(&admin),
        Some("application/json"),
        json!({ "audience_id": "other" }).to_string().into_bytes(),
    )
    .await;
    assert_eq!(fields_of(&unknown.2), ["audience_id"], "{:?}", unknown.2);
    let contributor = token(&app, "cy@example.com", Role::Contributor).await;
    let forbidden = raw(
        &app,
        reqwest::Method::PATCH,
        &path,
        Some(&contributor),
        Some("application/json"),
        json!({ "display_name": "Mine" }).to_string().into_bytes(),
    )
    .await;
    assert_problem("a Contributor", &forbidden, 403);
    let (_, shown) = call(&app, reqwest::Method::GET, &path, Some(&admin), None).await;
    assert_eq!(shown["display_name"], "Renamed", "{shown}");
}

/// A destination created through the API (201), as it answers.
async fn created_destination(app: &TestApp, token: &str, segment: i64) -> Value {
    let (status, created) = call(
        app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(token),
        Some(a_valid_destination(app, segment)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    created
}
