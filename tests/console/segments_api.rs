//! Segments through the automation API: a script defines, changes and deletes rules
//! segments and reads their members once computed, with the rule builder's checks, each
//! refusal naming the field at fault, and the page's refusal of a segment in use.

use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::store::segments::{self, Definition};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{a_valid_destination, assert_problem, call, fields_of, raw, token};
use crate::helpers::{TestApp, import_csv, spawn_app, wait_until};

/// Spend is read as a number, LastOrder as a date, Country as text.
const PEOPLE: &str = "CustomerId,EmailAddress,Country,Spend,LastOrder\n\
                      P1,ada@northwind.io,Germany,1200,2026-03-01\n\
                      P2,bob@fabrikam.io,France,80,2025-11-20\n\
                      P3,zoe@northwind.io,Germany,15,2025-12-24\n\
                      P4,cy@contoso.io,,500,2026-01-15\n";

async fn app_with_people() -> TestApp {
    let app = spawn_app().await;
    import_csv(&app.state.db, PEOPLE).await;
    app
}

/// Segment `id` as `GET /api/v1/segments` lists it once its members are computed (up to
/// 10 s).
async fn computed(app: &TestApp, token: &str, id: i64) -> Value {
    wait_until(
        &format!("segment {id}'s members"),
        Duration::from_secs(10),
        || async {
            let (status, list) =
                call(app, Method::GET, "/api/v1/segments", Some(token), None).await;
            assert_eq!(status, 200, "{list}");
            list["segments"]
                .as_array()
                .and_then(|all| all.iter().find(|s| s["id"] == id).cloned())
                .filter(|s| s["refreshing"] == false && s["last_refreshed_at"].is_number())
        },
    )
    .await
}

async fn post(
    app: &TestApp,
    token: &str,
    body: Value,
) -> (u16, String, Value, reqwest::header::HeaderMap) {
    let path = "/api/v1/segments";
    let body = body.to_string().into_bytes();
    raw(
        app,
        Method::POST,
        path,
        Some(token),
        Some("application/json"),
        body,
    )
    .await
}

async fn patch(
    app: &TestApp,
    token: &str,
    id: i64,
    body: Value,
) -> (u16, String, Value, reqwest::header::HeaderMap) {
    let path = format!("/api/v1/segments/{id}");
    let body = body.to_string().into_bytes();
    raw(
        app,
        Method::PATCH,
        &path,
        Some(token),
        Some("application/json"),
        body,
    )
    .await
}

async fn delete(
    app: &TestApp,
    token: &str,
    id: i64,
) -> (u16, String, Value, reqwest::header::HeaderMap) {
    let path = format!("/api/v1/segments/{id}");
    raw(app, Method::DELETE, &path, Some(token), None, Vec::new()).await
}

fn germany() -> Value {
    json!({ "name": "Germany", "match": "all",
            "conditions": [{ "field": "Country", "operator": "equals", "value": "Germany" }] })
}

async fn segment_names(app: &TestApp) -> Vec<String> {
    segments::list(app.state.db.pool())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.name)
        .collect()
}

#[tokio::test]
async fn a_script_defines_a_segment_changes_its_rules_and_deletes_it() {
    let app = app_with_people().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let body = json!({ "name": "Big spenders of 2026", "match": "all", "conditions": [
        { "field": "Spend", "operator": "greater_than", "value": 100 },
        { "field": "LastOrder", "operator": "after", "value": "2026-01-01" } ] });
    let (status, _, created, headers) = post(&app, &ci, body).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    assert_eq!(
        headers["location"],
        format!("/api/v1/segments/{id}").as_str()
    );
    assert_eq!(created["kind"], "rules");
    assert_eq!(created["match"], "all");
    assert_eq!(
        created["conditions"][0],
        json!({ "field": "Spend", "operator": "greater_than", "value": "100" })
    );
    let segment = computed(&app, &ci, id).await;
    assert_eq!(segment["member_count"], 2, "P1 and P4: {segment}");
    let (status, one) = call(
        &app,
        Method::GET,
        &format!("/api/v1/segments/{id}"),
        Some(&ci),
        None,
    )
    .await;
    assert_eq!((status, &one["member_count"]), (200, &json!(2)), "{one}");

    // Any of two conditions, one of them taking no value.
    let rules = json!({ "match": "any", "conditions": [
        { "field": "Country", "operator": "is_empty" },
        { "field": "EmailAddress", "operator": "contains", "value": "FABRIKAM" } ] });
    let (status, _, changed, _) = patch(&app, &ci, id, rules).await;
    assert_eq!(status, 200, "{changed}");
    assert_eq!(changed["name"], "Big spenders of 2026", "the name stays");
    assert_eq!(
        computed(&app, &ci, id).await["member_count"],
        2,
        "P2 and P4"
    );
    let (status, _, renamed, _) = patch(
        &app,
        &ci,
        id,
        json!({ "name": "Fabrikam or no country", "match": "all" }),
    )
    .await;
    assert_eq!(status, 200, "{renamed}");
    assert_eq!(
        renamed["conditions"].as_array().unwrap().len(),
        2,
        "the conditions stay"
    );
    assert_eq!(
        computed(&app, &ci, id).await["member_count"],
        0,
        "all of them: nobody"
    );

    let (status, _, body, _) = delete(&app, &ci, id).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::String(String::new()));
    let (status, _) = call(
        &app,
        Method::GET,
        &format!("/api/v1/segments/{id}"),
        Some(&ci),
        None,
    )
    .await;
    assert_eq!(status, 404);
    assert!(segment_names(&app).await.is_empty());
    let gone = delete(&app, &ci, id).await;
    assert_problem("deleting it again", &gone, 404);
}

/// Each refusal of a create, with the field it names.
fn refused_creates() -> Vec<(&'static str, Value, &'static [&'static str])> {
    let country =
        |value: Value| json!({ "field": "Country", "operator": "equals", "value": value });
    let ok = country(json!("Germany"));
    let with = |conditions: Value| json!({ "name": "New", "conditions": conditions });
    vec![
        (
            "empty name",
            json!({ "name": " ", "conditions": [ok] }),
            &["name"][..],
        ),
        ("no name", json!({ "conditions": [ok] }), &["name"]),
        (
            "a long name",
            json!({ "name": "n".repeat(101), "conditions": [ok] }),
            &["name"],
        ),
        (
            "a taken name",
            json!({ "name": "Germany", "conditions": [ok] }),
            &["name"],
        ),
        ("no conditions", with(json!([])), &["conditions"]),
        (
            "conditions missing",
            json!({ "name": "New" }),
            &["conditions"],
        ),
        (
            "too many conditions",
            with(Value::Array(vec![ok.clone(); 101])),
            &["conditions"],
        ),
        (
            "an unknown field",
            with(json!([ok, { "field": "Shoe", "operator": "equals", "value": "1" }])),
            &["conditions[1].field"],
        ),
        (
            "an operator misspelt",
            with(json!([{ "field": "Country", "operator": "gt", "value": "1" }])),
            &["conditions[0].operator"],
        ),
        (
            "no operator",
            with(json!([{ "field": "Country", "value": "1" }])),
            &["conditions[0].operator"],
        ),
        (
            "greater_than on text",
            with(json!([{ "field": "Country", "operator": "greater_than", "value": "1" }])),
            &["conditions[0].operator"],
        ),
        (
            "before on a number",
            with(json!([{ "field": "Spend", "operator": "before", "value": "2026-01-01" }])),
            &["conditions[0].operator"],
        ),
        (
            "contains on a date",
            with(json!([{ "field": "LastOrder", "operator": "contains", "value": "2026" }])),
            &["conditions[0].operator"],
        ),
        (
            "not a number",
            with(json!([ok, { "field": "Spend", "operator": "less_than", "value": "lots" }])),
            &["conditions[1].value"],
        ),
        (
            "not a date",
            with(json!([{ "field": "LastOrder", "operator": "after", "value": "yesterday" }])),
            &["conditions[0].value"],
        ),
        (
            "no value",
            with(json!([{ "field": "Country", "operator": "not_equals" }])),
            &["conditions[0].value"],
        ),
        (
            "a list as value",
            with(json!([country(json!(["Germany"]))])),
            &["conditions[0].value"],
        ),
        (
            "a condition that is not an object",
            with(json!(["Country = Germany"])),
            &["conditions[0]"],
        ),
        (
            "a condition with a field it does not take",
            with(json!([{ "field": "Country", "operator": "is_empty", "colour": "red" }])),
            &["conditions[0].colour"],
        ),
        (
            "conditions not a list",
            with(json!({ "field": "Country" })),
            &["conditions"],
        ),
        (
            "match neither all nor any",
            json!({ "name": "New", "match": "some", "conditions": [ok] }),
            &["match"],
        ),
        (
            "a field the body does not take",
            json!({ "name": "New", "kind": "static", "conditions": [ok] }),
            &["kind"],
        ),
        (
            "a bad name and a bad value at once",
            json!({ "name": "", "conditions": [ok, { "field": "Spend", "operator": "greater_than", "value": "x" }] }),
            &["name", "conditions[1].value"],
        ),
    ]
}

#[tokio::test]
async fn each_refusal_names_the_field_at_fault_and_saves_nothing() {
    let app = app_with_people().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    assert_eq!(post(&app, &ci, germany()).await.0, 201);
    for (what, body, fields) in refused_creates() {
        let got = post(&app, &ci, body).await;
        assert_problem(what, &got, 422);
        assert_eq!(fields_of(&got.2), fields, "{what}: {}", got.2);
        let messages = got.2["errors"].as_array().unwrap();
        assert!(
            messages
                .iter()
                .all(|e| !e["message"].as_str().unwrap().is_empty()),
            "{what}: {}",
            got.2
        );
    }
    let taken = post(
        &app,
        &ci,
        json!({ "name": "Germany", "conditions": germany()["conditions"] }),
    )
    .await;
    assert!(
        taken.2["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("already exists"),
        "{}",
        taken.2
    );
    let number = post(&app, &ci, json!({ "name": "New", "conditions": [{ "field": "Spend", "operator": "less_than", "value": "lots" }] })).await;
    assert!(
        number.2["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("not a number"),
        "{}",
        number.2
    );

    // Bodies that are not JSON objects get the extractor's answers.
    let not_json = raw(
        &app,
        Method::POST,
        "/api/v1/segments",
        Some(&ci),
        Some("text/plain"),
        germany().to_string().into_bytes(),
    )
    .await;
    assert_problem("text/plain", &not_json, 415);
    let broken = raw(
        &app,
        Method::POST,
        "/api/v1/segments",
        Some(&ci),
        Some("application/json"),
        b"{ nope".to_vec(),
    )
    .await;
    assert_problem("broken JSON", &broken, 400);
    let list = post(&app, &ci, json!([germany()])).await;
    assert_problem("an array", &list, 422);
    assert_eq!(
        segment_names(&app).await,
        ["Germany"],
        "nothing else was saved"
    );
}

#[tokio::test]
async fn a_change_is_checked_as_a_create_and_a_static_list_has_no_rules_to_change() {
    let app = app_with_people().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let (_, _, first, _) = post(&app, &ci, germany()).await;
    let mut france = germany();
    france["name"] = json!("France");
    france["conditions"][0]["value"] = json!("France");
    let (_, _, second, _) = post(&app, &ci, france).await;
    let id = second["id"].as_i64().unwrap();
    for (what, body, fields) in [
        ("a taken name", json!({ "name": "Germany" }), &["name"][..]),
        ("an empty name", json!({ "name": "" }), &["name"]),
        (
            "no conditions",
            json!({ "conditions": [] }),
            &["conditions"],
        ),
        (
            "before on text",
            json!({ "conditions": [{ "field": "Country", "operator": "before", "value": "2026-01-01" }] }),
            &["conditions[0].operator"],
        ),
        (
            "a field it does not take",
            json!({ "rules": [] }),
            &["rules"],
        ),
    ] {
        let got = patch(&app, &ci, id, body).await;
        assert_problem(what, &got, 422);
        assert_eq!(fields_of(&got.2), fields, "{what}: {}", got.2);
    }
    let unchanged = computed(&app, &ci, id).await;
    assert_eq!(
        (&unchanged["name"], &unchanged["member_count"]),
        (&json!("France"), &json!(1))
    );
    assert_eq!(
        computed(&app, &ci, first["id"].as_i64().unwrap()).await["member_count"],
        2
    );

    assert_problem(
        "no such segment",
        &patch(&app, &ci, 9999, json!({ "name": "X" })).await,
        404,
    );
    let not_an_id = raw(
        &app,
        Method::PATCH,
        "/api/v1/segments/abc",
        Some(&ci),
        Some("application/json"),
        b"{}".to_vec(),
    )
    .await;
    assert_problem("not an ID", &not_an_id, 400);

    let pool = app.state.db.pool();
    let list = segments::create(pool, "VIP list", &Definition::Static)
        .await
        .unwrap();
    let mut conn = pool.acquire().await.unwrap();
    segments::set_static_ids(&mut conn, list, &["P1".into()])
        .await
        .unwrap();
    drop(conn);
    let got = patch(&app, &ci, list, json!({ "name": "VIPs" })).await;
    assert_problem("a static list", &got, 409);
    assert!(
        got.2["detail"].as_str().unwrap().contains("static"),
        "{}",
        got.2
    );
    let (_, shown) = call(
        &app,
        Method::GET,
        &format!("/api/v1/segments/{list}"),
        Some(&ci),
        None,
    )
    .await;
    assert_eq!(
        (&shown["name"], &shown["kind"], &shown["conditions"]),
        (&json!("VIP list"), &json!("static"), &Value::Null)
    );
    // The rule builder's Save takes the same path: it does not turn the list into rules.
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let edit = format!("/data/segments/{list}/edit");
    let form = [
        ("name", "VIPs"),
        ("field_0", "Country"),
        ("op_0", "equals"),
        ("value_0", "Germany"),
        ("action", "save"),
    ];
    let posted = app.post_form("/data/segments", &edit, &form).await;
    crate::helpers::assert_refused(posted, 400, "static segment").await;
    let kept = segments::find(pool, list).await.unwrap().unwrap();
    assert_eq!(
        (kept.name.as_str(), kept.definition),
        ("VIP list", Definition::Static)
    );
}

#[tokio::test]
async fn viewers_read_segments_but_cannot_define_change_or_delete_them() {
    let app = app_with_people().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let viewer = token(&app, "viewer@example.com", Role::Viewer).await;
    let (_, _, made, _) = post(&app, &ci, germany()).await;
    let id = made["id"].as_i64().unwrap();
    let mut other = germany();
    other["name"] = json!("Mine");
    assert_problem("a viewer's create", &post(&app, &viewer, other).await, 403);
    assert_problem(
        "a viewer's change",
        &patch(&app, &viewer, id, json!({ "name": "Renamed" })).await,
        403,
    );
    assert_problem("a viewer's delete", &delete(&app, &viewer, id).await, 403);
    let (status, shown) = call(
        &app,
        Method::GET,
        &format!("/api/v1/segments/{id}"),
        Some(&viewer),
        None,
    )
    .await;
    assert_eq!((status, &shown["name"]), (200, &json!("Germany")));
    assert_eq!(segment_names(&app).await, ["Germany"]);
    let administrator = token(&app, "admin@example.com", Role::Administrator).await;
    assert_eq!(
        delete(&app, &administrator, id).await.0,
        204,
        "Administrators may"
    );
}

#[tokio::test]
async fn a_segment_a_destination_exports_is_not_deleted_by_the_api_or_the_page() {
    let app = spawn_app().await;
    let segment = crate::wizard::seed(&app).await;
    let admin = token(&app, "admin@example.com", Role::Administrator).await;
    let (status, destination) = call(
        &app,
        Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some(a_valid_destination(&app, segment)),
    )
    .await;
    assert_eq!(status, 201, "{destination}");
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let got = delete(&app, &ci, segment).await;
    assert_problem("a segment in use", &got, 409);
    let detail = got.2["detail"].as_str().unwrap();
    assert!(
        detail.contains("“Germany”") && detail.contains("“From CI”"),
        "{detail}"
    );
    assert_eq!(segment_names(&app).await, ["Germany"]);

    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let path = format!("/data/segments/{segment}/delete");
    let confirm = app.get(&path).await;
    crate::helpers::assert_refused(confirm, 409, "From CI").await;
    let posted = app.post_form("/data/segments", &path, &[]).await;
    crate::helpers::assert_refused(posted, 409, "From CI").await;
    assert_eq!(segment_names(&app).await, ["Germany"]);
    let (_, shown) = call(
        &app,
        Method::GET,
        &format!("/api/v1/destinations/{}", destination["id"]),
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(
        shown["segment_ids"],
        json!([segment]),
        "the destination still exports it"
    );
}

#[tokio::test]
async fn segment_answers_match_the_served_openapi_description() {
    let app = app_with_people().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let (_, doc) = call(&app, Method::GET, "/api/v1/openapi.json", None, None).await;
    let (_, _, created, _) = post(&app, &ci, germany()).await;
    let id = created["id"].as_i64().unwrap();
    let (_, _, changed, _) = patch(&app, &ci, id, json!({ "match": "any" })).await;
    let (_, one) = call(
        &app,
        Method::GET,
        &format!("/api/v1/segments/{id}"),
        Some(&ci),
        None,
    )
    .await;
    computed(&app, &ci, id).await;
    let (_, list) = call(&app, Method::GET, "/api/v1/segments", Some(&ci), None).await;
    let (_, _, refused, _) = post(&app, &ci, json!({ "name": "" })).await;
    let answers = [
        ("/api/v1/segments", "post", "201", created),
        ("/api/v1/segments", "post", "422", refused),
        ("/api/v1/segments", "get", "200", list),
        ("/api/v1/segments/{id}", "get", "200", one),
        ("/api/v1/segments/{id}", "patch", "200", changed),
    ];
    let mut errors = Vec::new();
    for (path, method, code, body) in &answers {
        let response = &doc["paths"][path][method]["responses"][code];
        let schema = response["content"]["application/json"]["schema"]
            .as_object()
            .or_else(|| response["content"]["application/problem+json"]["schema"].as_object())
            .unwrap_or_else(|| panic!("{method} {path} {code} is not described"));
        let at = format!("{method} {path} {code}");
        crate::api_description::conforms(
            &doc,
            &Value::Object(schema.clone()),
            body,
            &at,
            &mut errors,
        );
    }
    assert!(errors.is_empty(), "{errors:#?}");
    for (path, method, codes) in [
        (
            "/api/v1/segments",
            "post",
            &["400", "401", "403", "413", "415", "422"][..],
        ),
        (
            "/api/v1/segments/{id}",
            "patch",
            &["400", "401", "403", "404", "409", "413", "415", "422"][..],
        ),
        (
            "/api/v1/segments/{id}",
            "delete",
            &["400", "401", "403", "404", "409"][..],
        ),
        ("/api/v1/segments/{id}", "get", &["400", "401", "404"][..]),
    ] {
        for code in codes {
            assert!(
                doc["paths"][path][method]["responses"][code]["content"]["application/problem+json"].is_object(),
                "{method} {path} {code}"
            );
        }
    }
    let delete = &doc["paths"]["/api/v1/segments/{id}"]["delete"]["responses"];
    assert!(delete["204"].is_object(), "{delete}");
    assert!(
        doc["paths"]["/api/v1/segments"]["post"]["responses"]["201"]["headers"]["Location"]
            .is_object()
    );
    let operators = &doc["components"]["schemas"]["SegmentOperator"]["enum"];
    assert_eq!(operators.as_array().map(Vec::len), Some(9), "{operators}");
}
