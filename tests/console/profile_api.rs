//! The profile API as a pipeline uses it: PUT one profile, POST many (a JSON array or
//! NDJSON), DELETE one; what is refused, row by row or whole; what Viewers get; several
//! writes to one customer at once.

use export_destinations::domain::{FieldType, Role};
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::{fields, profiles, segments};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{assert_problem, call, fields_of, raw, token};
use crate::helpers::{TestApp, import_csv, spawn_app};
use crate::world::{self, destination, export, refresh, segment, world};

const NDJSON: Option<&str> = Some("application/x-ndjson");
const JSON: Option<&str> = Some("application/json");

/// A stored profile's fields, or None when there is no profile.
async fn stored(app: &TestApp, customer_id: &str) -> Option<Value> {
    profiles::find_by_customer(app.state.db.pool(), customer_id)
        .await
        .unwrap()
        .map(|p| serde_json::from_str(&p.attributes).unwrap())
}

async fn put(app: &TestApp, token: &str, customer_id: &str, body: Value) -> (u16, Value) {
    call(
        app,
        Method::PUT,
        &format!("/api/v1/profiles/{customer_id}"),
        Some(token),
        Some(body),
    )
    .await
}

async fn post(app: &TestApp, token: &str, content_type: Option<&str>, body: String) -> Value {
    let got = raw(
        app,
        Method::POST,
        "/api/v1/profiles",
        Some(token),
        content_type,
        body.into_bytes(),
    )
    .await;
    assert_eq!(got.0, 200, "{}", got.2);
    got.2
}

/// (place, customer ID, outcome, reason) of each row of a bulk write's answer.
fn rows(answer: &Value) -> Vec<(i64, String, String, String)> {
    answer["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let place = r["index"].as_i64().or(r["line"].as_i64()).unwrap();
            let text = |key: &str| r[key].as_str().unwrap_or_default().to_owned();
            (place, text("customer_id"), text("outcome"), text("reason"))
        })
        .collect()
}

#[tokio::test]
async fn a_put_creates_then_updates_then_finds_nothing_to_change_and_null_clears_one_field() {
    let app = spawn_app().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let ada =
        json!({ "FirstName": "Ada", "Email": " Ada@Northwind.io ", "Age": 36, "OptIn": true });
    let (status, created) = put(&app, &ci, "C1", ada).await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["outcome"], "created");
    assert_eq!(created["customer_id"], "C1");
    assert_eq!(created["fields"]["Age"], 36);
    assert_eq!(created["fields"]["OptIn"], true);
    let catalogue = fields::as_catalogue(&fields::list(app.state.db.pool()).await.unwrap());
    assert_eq!(
        catalogue["Email"],
        FieldType::Email,
        "typed as an import types"
    );
    assert_eq!(catalogue["Age"], FieldType::Number);
    assert_eq!(catalogue["OptIn"], FieldType::Boolean);
    let profile = profiles::find_by_customer(app.state.db.pool(), "C1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(profile.email_key.as_deref(), Some("ada@northwind.io"));

    let (status, updated) = put(&app, &ci, "C1", json!({ "Age": "37" })).await;
    assert_eq!((status, &updated["outcome"]), (200, &json!("updated")));
    assert_eq!(
        updated["fields"]["FirstName"], "Ada",
        "fields not sent are kept"
    );
    assert_eq!(updated["fields"]["Age"], 37);
    let (status, same) = put(&app, &ci, "C1", json!({ "Age": 37, "FirstName": "Ada" })).await;
    assert_eq!((status, &same["outcome"]), (200, &json!("unchanged")));

    let (status, cleared) = put(&app, &ci, "C1", json!({ "FirstName": null })).await;
    assert_eq!((status, &cleared["outcome"]), (200, &json!("updated")));
    assert!(cleared["fields"].get("FirstName").is_none(), "{cleared}");
    let now = stored(&app, "C1").await.unwrap();
    assert!(now.get("FirstName").is_none(), "{now}");
    assert_eq!(
        (&now["Age"], &now["Email"], &now["OptIn"]),
        (&json!(37), &json!("Ada@Northwind.io"), &json!(true)),
        "the other fields are kept"
    );

    // A value its field's type does not take is refused, naming the field; nothing changes.
    let (status, refused) = put(&app, &ci, "C1", json!({ "Age": "old", "FirstName": "Eve" })).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(fields_of(&refused), ["Age"]);
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("\"old\" is not a number"),
        "{refused}"
    );
    let (status, refused) = put(&app, &ci, "C1", json!({ "Address": { "city": "Berlin" } })).await;
    assert_eq!(status, 422, "{refused}");
    assert_eq!(fields_of(&refused), ["Address"]);
    let (status, refused) = put(&app, &ci, "C1", json!({ "customer_id": "C2", "Age": 1 })).await;
    assert_eq!(
        (status, fields_of(&refused)),
        (422, vec!["customer_id".into()])
    );
    assert_eq!(
        stored(&app, "C1").await.unwrap(),
        now,
        "nothing was written"
    );
    assert_eq!(stored(&app, "C2").await, None);
    let long_id = "x".repeat(201);
    let (status, refused) = put(&app, &ci, &long_id, json!({ "Age": 1 })).await;
    assert_eq!(status, 422, "{refused}");
    assert!(
        refused["detail"]
            .as_str()
            .unwrap()
            .contains("200 characters")
    );
}

#[tokio::test]
async fn a_bulk_write_rejects_bad_rows_alone_with_their_reasons_and_writes_the_others() {
    let app = spawn_app().await;
    import_csv(&app.state.db, "CustomerId,FirstName,Age\nC0,Zed,50\n").await;
    let ci = token(&app, "ci@example.com", Role::Administrator).await;
    let body = json!([
        { "customer_id": "C1", "FirstName": "Ada", "Age": 36, "Since": "2024-01-02" },
        { "FirstName": "Nobody" },
        { "customer_id": "C2", "Age": "forty" },
        { "customer_id": "C3", "Tags": ["a", "b"] },
        { "customer_id": "x".repeat(201), "FirstName": "Long" },
        { "customer_id": "C4", "FirstName": "y".repeat(10_001) },
        { "customer_id": "C0", "Age": 50 },
        { "customer_id": "C1", "Age": 37 },
        "C5"
    ]);
    let answer = post(&app, &ci, JSON, body.to_string()).await;
    let got = rows(&answer);
    let outcomes: Vec<(i64, &str, &str)> = got
        .iter()
        .map(|(i, id, outcome, _)| (*i, id.as_str(), outcome.as_str()))
        .collect();
    let long_shown = format!("{}…", "x".repeat(40));
    assert_eq!(
        outcomes,
        [
            (0, "C1", "created"),
            (1, "", "rejected"),
            (2, "C2", "rejected"),
            (3, "C3", "rejected"),
            (4, long_shown.as_str(), "rejected"),
            (5, "C4", "rejected"),
            (6, "C0", "unchanged"),
            (7, "C1", "updated"),
            (8, "", "rejected"),
        ]
    );
    let reasons: Vec<&str> = got.iter().map(|r| r.3.as_str()).collect();
    assert_eq!(reasons[1], "The row has no customer_id.");
    assert_eq!(reasons[2], "Age: \"forty\" is not a number.");
    assert!(
        reasons[3].starts_with("Tags: a value is a string"),
        "{}",
        reasons[3]
    );
    assert_eq!(reasons[4], "The customer ID is longer than 200 characters.");
    assert_eq!(
        reasons[5],
        "FirstName: the value is longer than 10000 characters."
    );
    assert!(reasons[8].contains("not a JSON object"), "{}", reasons[8]);
    assert!(answer["results"][0].get("reason").is_none());
    assert_eq!(
        (
            &answer["created"],
            &answer["updated"],
            &answer["unchanged"],
            &answer["rejected"]
        ),
        (&json!(1), &json!(1), &json!(1), &json!(6))
    );
    let c1 = stored(&app, "C1").await.unwrap();
    assert_eq!(
        (&c1["FirstName"], &c1["Age"], &c1["Since"]),
        (&json!("Ada"), &json!(37), &json!("2024-01-02")),
        "the later row was applied after the earlier"
    );
    for missing in ["C2", "C3", "C4"] {
        assert_eq!(stored(&app, missing).await, None, "{missing}");
    }
    let catalogue = fields::as_catalogue(&fields::list(app.state.db.pool()).await.unwrap());
    assert_eq!(catalogue["Since"], FieldType::Date);
    assert!(
        !catalogue.contains_key("Tags"),
        "a rejected row adds no field"
    );

    // NDJSON: one object a line, blank lines skipped, results by line.
    let ndjson = "{\"customer_id\": \"N1\", \"FirstName\": \"Nia\"}\n\n{not json\r\n\
                  {\"customer_id\": \"N2\", \"Age\": 5}\r\n{\"customer_id\": \"C1\", \"Age\": null}\n";
    let answer = post(&app, &ci, NDJSON, ndjson.to_owned()).await;
    let got = rows(&answer);
    let outcomes: Vec<(i64, &str, &str)> = got
        .iter()
        .map(|(i, id, outcome, _)| (*i, id.as_str(), outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (1, "N1", "created"),
            (3, "", "rejected"),
            (4, "N2", "created"),
            (5, "C1", "updated")
        ]
    );
    assert!(got[1].3.starts_with("The line is not JSON"), "{}", got[1].3);
    assert!(answer["results"][0].get("index").is_none());
    assert_eq!(stored(&app, "N2").await.unwrap()["Age"], 5);
    assert!(stored(&app, "C1").await.unwrap().get("Age").is_none());
}

#[tokio::test]
async fn more_than_ten_thousand_rows_are_refused_whole_and_ten_thousand_are_written() {
    let app = spawn_app().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let line = |i: usize| format!("{{\"customer_id\": \"P{i}\", \"Visits\": {i}}}");
    let too_many: Vec<String> = (0..10_001).map(line).collect();
    let bodies = [
        (JSON, format!("[{}]", too_many.join(","))),
        (NDJSON, too_many.join("\n")),
    ];
    for (content_type, body) in bodies {
        let got = raw(
            &app,
            Method::POST,
            "/api/v1/profiles",
            Some(&ci),
            content_type,
            body.into_bytes(),
        )
        .await;
        assert_problem(&format!("10,001 rows as {content_type:?}"), &got, 413);
        assert!(
            got.2["detail"].as_str().unwrap().contains("10000"),
            "{}",
            got.2
        );
    }
    let over_bytes = format!(
        "[{{\"customer_id\": \"P1\", \"Note\": \"{}\"}}]",
        "z".repeat(33 * 1024 * 1024)
    );
    let got = raw(
        &app,
        Method::POST,
        "/api/v1/profiles",
        Some(&ci),
        JSON,
        over_bytes.into_bytes(),
    )
    .await;
    assert_problem("a body over 32 MiB", &got, 413);
    assert!(got.2["detail"].as_str().unwrap().contains("33554432"));
    assert_eq!(profiles::count(app.state.db.pool()).await.unwrap(), 0);

    let answer = post(&app, &ci, NDJSON, too_many[..10_000].join("\n")).await;
    assert_eq!(answer["created"], 10_000, "the limit itself is taken");
    assert_eq!(profiles::count(app.state.db.pool()).await.unwrap(), 10_000);
}

#[tokio::test]
async fn a_deleted_profile_leaves_its_segment_at_once_and_the_export_takes_its_tag_off() {
    let w = world(SandboxConfig::default()).await;
    world::import(&w.app, world::PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    let tags_of = |email: &str| {
        world::audience(&w)
            .into_iter()
            .find(|m| m.0 == email)
            .map(|m| m.3)
    };
    let both = vec!["Germany".to_string(), "export-destinations".to_string()];
    assert_eq!(tags_of("zoe@northwind.io"), Some(both));

    let ci = token(&w.app, "ci@example.com", Role::Contributor).await;
    let pool = w.app.state.db.pool();
    let before = segments::find(pool, germany).await.unwrap().unwrap();
    let path = "/api/v1/profiles/P3";
    let (status, body) = call(&w.app, Method::DELETE, path, Some(&ci), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(stored(&w.app, "P3").await, None);
    let again = raw(&w.app, Method::DELETE, path, Some(&ci), None, Vec::new()).await;
    assert_problem("deleting it again", &again, 404);
    let followed = segments::find(pool, germany).await.unwrap().unwrap();
    assert_eq!(
        followed.member_count,
        before.member_count - 1,
        "the profile left its segment with the delete, no refresh needed"
    );
    refresh(&w.app).await;
    let after = segments::find(pool, germany).await.unwrap().unwrap();
    assert_eq!(
        after.member_count, followed.member_count,
        "a refresh agrees"
    );

    export(&w, id, false).await;
    assert_eq!(
        tags_of("zoe@northwind.io"),
        Some(vec!["export-destinations".to_string()]),
        "a leaver loses its segment's tag"
    );
}

#[tokio::test]
async fn viewers_get_403_and_write_nothing() {
    let app = spawn_app().await;
    import_csv(&app.state.db, "CustomerId,FirstName\nC1,Ada\n").await;
    let viewer = token(&app, "viewer@example.com", Role::Viewer).await;
    let attempts = [
        (
            Method::PUT,
            "/api/v1/profiles/C1",
            JSON,
            r#"{"FirstName": "Eve"}"#,
        ),
        (
            Method::POST,
            "/api/v1/profiles",
            JSON,
            r#"[{"customer_id": "C2"}]"#,
        ),
        (Method::DELETE, "/api/v1/profiles/C1", None, ""),
    ];
    for (method, path, content_type, body) in attempts {
        let what = format!("{method} {path}");
        let got = raw(&app, method, path, Some(&viewer), content_type, body.into()).await;
        assert_problem(&what, &got, 403);
        assert!(got.2["detail"].as_str().unwrap().contains("Contributor"));
    }
    assert_eq!(stored(&app, "C1").await.unwrap()["FirstName"], "Ada");
    assert_eq!(stored(&app, "C2").await, None);
    let got = raw(
        &app,
        Method::PUT,
        "/api/v1/profiles/C1",
        None,
        JSON,
        b"{}".to_vec(),
    )
    .await;
    assert_problem("no token", &got, 401);
}

#[tokio::test]
async fn bodies_that_are_not_what_a_profile_write_takes_are_problems() {
    let app = spawn_app().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let cases: [(Method, &str, Option<&str>, &str, u16); 8] = [
        (
            Method::PUT,
            "/api/v1/profiles/C1",
            Some("text/plain"),
            r#"{"A": 1}"#,
            415,
        ),
        (Method::PUT, "/api/v1/profiles/C1", None, r#"{"A": 1}"#, 415),
        (Method::PUT, "/api/v1/profiles/C1", JSON, r#"{"A": "#, 400),
        (
            Method::PUT,
            "/api/v1/profiles/C1",
            JSON,
            r#"[{"A": 1}]"#,
            422,
        ),
        (
            Method::POST,
            "/api/v1/profiles",
            Some("text/csv"),
            "customer_id\nC1\n",
            415,
        ),
        (
            Method::POST,
            "/api/v1/profiles",
            JSON,
            r#"[{"customer_id": "C1"},"#,
            400,
        ),
        (
            Method::POST,
            "/api/v1/profiles",
            JSON,
            r#"{"customer_id": "C1"}"#,
            422,
        ),
        (Method::GET, "/api/v1/profiles/C1", None, "", 405),
    ];
    for (method, path, content_type, body, status) in cases {
        let what = format!("{method} {path} {content_type:?} {body}");
        let got = raw(&app, method, path, Some(&ci), content_type, body.into()).await;
        assert_problem(&what, &got, status);
    }
    assert_eq!(profiles::count(app.state.db.pool()).await.unwrap(), 0);
}

/// Eight writes to one customer at once, each with a field of its own: every field is
/// there at the end, and exactly one write says it created the profile.
#[tokio::test]
async fn eight_writes_to_one_customer_at_once_lose_nothing() {
    let app = spawn_app().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let writes = (1..=8).map(|i| {
        let (app, ci) = (&app, &ci);
        async move { put(app, ci, "C1", json!({ format!("F{i}"): format!("v{i}") })).await }
    });
    let answers = futures::future::join_all(writes).await;
    let statuses: Vec<u16> = answers.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 201).count(),
        1,
        "{answers:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 200 || *s == 201),
        "{answers:?}"
    );
    let profile = stored(&app, "C1").await.unwrap();
    for i in 1..=8 {
        assert_eq!(profile[format!("F{i}")], format!("v{i}"), "{profile}");
    }
}

#[tokio::test]
async fn profile_answers_match_the_served_openapi_description() {
    let app = spawn_app().await;
    let ci = token(&app, "ci@example.com", Role::Contributor).await;
    let (_, doc) = call(&app, Method::GET, "/api/v1/openapi.json", None, None).await;
    let (_, created) = put(&app, &ci, "C1", json!({ "Name": "Ada", "Age": 3 })).await;
    let (_, updated) = put(&app, &ci, "C1", json!({ "Age": 4 })).await;
    let (_, refused) = put(&app, &ci, "C1", json!({ "Age": "four" })).await;
    let bulk = json!([{ "customer_id": "C2", "Age": 1 }, { "Age": 2 }]).to_string();
    let pushed = post(&app, &ci, JSON, bulk).await;
    let lines = post(&app, &ci, NDJSON, "{\"customer_id\": \"C3\"}\n".into()).await;
    let (_, missing) = call(
        &app,
        Method::DELETE,
        "/api/v1/profiles/nobody",
        Some(&ci),
        None,
    )
    .await;
    let answers = [
        ("/api/v1/profiles/{customer_id}", "put", "201", created),
        ("/api/v1/profiles/{customer_id}", "put", "200", updated),
        ("/api/v1/profiles/{customer_id}", "put", "422", refused),
        ("/api/v1/profiles", "post", "200", pushed),
        ("/api/v1/profiles", "post", "200", lines),
        ("/api/v1/profiles/{customer_id}", "delete", "404", missing),
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
            "/api/v1/profiles",
            "post",
            &["400", "403", "413", "415", "422"][..],
        ),
        (
            "/api/v1/profiles/{customer_id}",
            "put",
            &["400", "403", "413", "415", "422"][..],
        ),
        (
            "/api/v1/profiles/{customer_id}",
            "delete",
            &["403", "404"][..],
        ),
    ] {
        for code in codes {
            assert!(
                doc["paths"][path][method]["responses"][code]["content"]["application/problem+json"]
                    .is_object(),
                "{method} {path} {code}"
            );
        }
    }
    let post_body = &doc["paths"]["/api/v1/profiles"]["post"]["requestBody"]["content"];
    assert!(post_body["application/x-ndjson"].is_object(), "{post_body}");
}
