use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::store::{api_tokens, users};
use serde_json::{Value, json};

use crate::helpers::{TestApp, spawn_app};
use crate::wizard::{audience, seed};

async fn token(app: &TestApp, email: &str, role: Role) -> String {
    let id = app.create_user(email, role).await;
    api_tokens::create(app.state.db.pool(), id, "tests")
        .await
        .unwrap()
}

async fn call(
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

fn sandbox_key(app: &TestApp) -> String {
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
async fn calls_without_a_valid_token_get_401_problem_json() {
    let app = spawn_app().await;
    let (status, body) = call(&app, reqwest::Method::GET, "/api/v1/segments", None, None).await;
    assert_eq!(status, 401);
    assert_eq!(body["title"], "Unauthorized");
    let (status, _) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/segments",
        Some("edt_wrong"),
        None,
    )
    .await;
    assert_eq!(status, 401);
    let valid = token(&app, "viewer@example.com", Role::Viewer).await;
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/segments",
            Some(&valid),
            None
        )
        .await
        .0,
        200
    );
    let user = users::find_by_email(
        app.state.db.pool(),
        &export_destinations::domain::EmailAddress::parse("viewer@example.com").unwrap(),
    )
    .await
    .unwrap()
    .unwrap();
    users::set_deactivated(app.state.db.pool(), user.id, Some(1))
        .await
        .unwrap();
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/segments",
            Some(&valid),
            None
        )
        .await
        .0,
        401,
        "a deactivated user's token stops working"
    );
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
    let mut finished = Value::Null;
    for _ in 0..200 {
        let (_, run) = call(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/runs/{run_id}"),
            Some(&admin),
            None,
        )
        .await;
        if run["finished_at"].is_number() {
            finished = run;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

#[tokio::test]
async fn bad_bodies_get_400_or_422_naming_the_fields() {
    let app = spawn_app().await;
    seed(&app).await;
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let response = reqwest::Client::new()
        .post(app.url("/api/v1/destinations"))
        .bearer_auth(&admin)
        .header("content-type", "application/json")
        .body("{ nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/problem+json")
    );
    let (status, problem) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some(json!({ "display_name": "", "consent": false, "audience_id": "bad id", "api_key": "x", "email_field": "Nope", "segment_ids": [] })),
    )
    .await;
    assert_eq!(status, 422);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for expected in [
        "display_name",
        "consent",
        "audience_id",
        "api_key",
        "email_field",
        "segment_ids",
    ] {
        assert!(
            fields.contains(&expected),
            "{expected} missing from {fields:?}"
        );
    }
    let (status, problem) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some(json!({ "display_name": "x", "consent": true, "audience_id": "0000000000", "api_key": sandbox_key(&app), "email_field": "EmailAddress", "segment_ids": [1] })),
    )
    .await;
    assert_eq!(status, 422);
    assert_eq!(problem["errors"][0]["field"], "audience_id");
    assert!(
        export_destinations::store::destinations::list(app.state.db.pool())
            .await
            .unwrap()
            .is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn tokens_carry_their_users_role() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let viewer = token(&app, "viewer@example.com", Role::Viewer).await;
    let contributor = token(&app, "contributor@example.com", Role::Contributor).await;
    let body = json!({ "display_name": "x", "consent": true, "audience_id": "a1b2c3d4e5", "api_key": sandbox_key(&app), "email_field": "EmailAddress", "segment_ids": [segment] });
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/destinations",
            Some(&viewer),
            Some(body.clone())
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/destinations",
            Some(&contributor),
            Some(body)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        call(
            &app,
            reqwest::Method::POST,
            "/api/v1/segments/refresh",
            Some(&viewer),
            None
        )
        .await
        .0,
        403
    );
    let (status, refreshed) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/segments/refresh",
        Some(&contributor),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(refreshed["segments"][0]["member_count"], 2);
}

/// Every property of `value` is declared by `schema` with a fitting type.
fn conforms(doc: &Value, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    let ok = match (schema.get("type").and_then(Value::as_str), value) {
        (_, Value::Null) => {
            schema.get("nullable") == Some(&Value::Bool(true)) || schema.get("type").is_none()
        }
        (None, _) => true,
        (Some("object"), Value::Object(_))
        | (Some("array"), Value::Array(_))
        | (Some("string"), Value::String(_)) => true,
        (Some("integer"), Value::Number(n)) => n.is_i64(),
        (Some("boolean"), Value::Bool(_)) => true,
        _ => false,
    };
    if !ok {
        errors.push(format!("{at}: {value} does not fit {schema}"));
        return;
    }
    match value {
        Value::Object(map) => {
            if let Some(props) = schema.get("properties").and_then(Value::as_object) {
                for (k, v) in map {
                    match props.get(k) {
                        Some(s) => conforms(doc, s, v, &format!("{at}.{k}"), errors),
                        None => errors.push(format!("{at}.{k} is not in the description")),
                    }
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    conforms(doc, s, v, &format!("{at}[{i}]"), errors);
                }
            }
        }
        _ => {}
    }
}

#[tokio::test]
async fn responses_match_the_served_openapi_description() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let (status, doc) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/openapi.json",
        None,
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.0.3");
    let body = json!({ "display_name": "Spec", "consent": true, "audience_id": audience(&app, "Customers"), "api_key": sandbox_key(&app), "email_field": "EmailAddress", "segment_ids": [segment] });
    let (_, created) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some(body),
    )
    .await;
    let id = created["id"].as_i64().unwrap();
    let (_, run) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/destinations/{id}/runs"),
        Some(&admin),
        None,
    )
    .await;
    let (_, problem) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/destinations/999",
        Some(&admin),
        None,
    )
    .await;
    let responses = [
        (
            "/api/v1/destinations",
            "get",
            "200",
            call(
                &app,
                reqwest::Method::GET,
                "/api/v1/destinations",
                Some(&admin),
                None,
            )
            .await
            .1,
        ),
        ("/api/v1/destinations", "post", "201", created.clone()),
        (
            "/api/v1/destinations/{id}",
            "get",
            "200",
            call(
                &app,
                reqwest::Method::GET,
                &format!("/api/v1/destinations/{id}"),
                Some(&admin),
                None,
            )
            .await
            .1,
        ),
        ("/api/v1/destinations/{id}", "get", "404", problem),
        ("/api/v1/destinations/{id}/runs", "post", "202", run.clone()),
        (
            "/api/v1/runs/{id}",
            "get",
            "200",
            call(
                &app,
                reqwest::Method::GET,
                &format!("/api/v1/runs/{}", run["id"]),
                Some(&admin),
                None,
            )
            .await
            .1,
        ),
        (
            "/api/v1/segments",
            "get",
            "200",
            call(
                &app,
                reqwest::Method::GET,
                "/api/v1/segments",
                Some(&admin),
                None,
            )
            .await
            .1,
        ),
    ];
    let mut errors = Vec::new();
    for (path, method, code, body) in &responses {
        let response = &doc["paths"][path][method]["responses"][code];
        let schema = response["content"]["application/json"]["schema"]
            .as_object()
            .or_else(|| response["content"]["application/problem+json"]["schema"].as_object())
            .unwrap_or_else(|| panic!("{method} {path} {code} is not described"));
        conforms(
            &doc,
            &Value::Object(schema.clone()),
            body,
            &format!("{method} {path} {code}"),
            &mut errors,
        );
    }
    assert!(errors.is_empty(), "{errors:#?}");
}

#[tokio::test]
async fn tokens_are_made_on_the_api_tokens_page_shown_once_and_revocable() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Contributor).await;
    let response = app
        .post_form(
            "/admin/api-tokens",
            "/admin/api-tokens",
            &[("name", "CI pipeline")],
        )
        .await;
    let html = response.text().await.unwrap();
    let marker = "id=\"new-token\"";
    assert!(html.contains(marker) && html.contains("it is not shown again"));
    let start = html.find("value=\"edt_").unwrap() + 7;
    let token = html[start..start + html[start..].find('"').unwrap()].to_owned();
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/segments",
            Some(&token),
            None
        )
        .await
        .0,
        200
    );
    let page = app.get_html("/admin/api-tokens").await;
    assert!(!page.contains(&token), "never shown again");
    assert!(page.contains("CI pipeline") && page.contains(&token[..10]));
    let id: i64 = sqlx::query_scalar("SELECT id FROM api_tokens")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    app.post_form(
        "/admin/api-tokens",
        &format!("/admin/api-tokens/{id}/revoke"),
        &[],
    )
    .await;
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/segments",
            Some(&token),
            None
        )
        .await
        .0,
        401
    );
    let stored: String = sqlx::query_scalar("SELECT token_hash FROM api_tokens")
        .fetch_optional(app.state.db.pool())
        .await
        .unwrap()
        .unwrap_or_default();
    assert!(!stored.contains(&token[4..]), "only a digest is kept");
}

#[tokio::test]
async fn the_command_line_creates_a_token_that_works() {
    let app = spawn_app().await;
    app.create_user("ops@example.com", Role::Contributor).await;
    let settings = &app.state.settings;
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_export-destinations"))
        .args([
            "api-token",
            "create",
            "--email",
            "OPS@example.com",
            "--name",
            "deploy",
            "--database-url",
            settings.database_url.as_str(),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(token.starts_with("edt_"));
    assert_eq!(
        call(
            &app,
            reqwest::Method::GET,
            "/api/v1/destinations",
            Some(&token),
            None
        )
        .await
        .0,
        200
    );
}

/// A raw request to the API: (status, content type, body as JSON when it is JSON, headers).
async fn raw(
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

fn fields_of(problem: &Value) -> Vec<String> {
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
fn assert_problem(what: &str, got: &(u16, String, Value, reqwest::header::HeaderMap), status: u16) {
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

fn a_valid_destination(app: &TestApp, segment: i64) -> Value {
    json!({
        "display_name": "From CI", "consent": true, "audience_id": audience(app, "Newsletter subscribers"),
        "api_key": sandbox_key(app), "email_field": "EmailAddress",
        "merge_fields": [{ "tag": "FNAME", "field": "FirstName" }], "segment_ids": [segment]
    })
}

#[tokio::test]
async fn a_segment_listed_twice_is_a_422_naming_the_field_not_a_500() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let mut body = a_valid_destination(&app, segment);
    body["segment_ids"] = json!([segment, segment]);
    let got = raw(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some("application/json"),
        body.to_string().into_bytes(),
    )
    .await;
    assert_problem("segment twice", &got, 422);
    assert_eq!(fields_of(&got.2), ["segment_ids"]);
    assert!(
        got.2["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains(&segment.to_string())
    );
    assert!(
        export_destinations::store::destinations::list(app.state.db.pool())
            .await
            .unwrap()
            .is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn every_refusal_of_the_api_is_problem_json() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let json = Some("application/json");
    let get = reqwest::Method::GET;
    let post = reqwest::Method::POST;
    for path in [
        "/api/v1/destinations/abc",
        "/api/v1/runs/99999999999999999999",
        "/api/v1/runs/1.5/members.csv",
        "/api/v1/destinations/%20/runs",
    ] {
        let method = if path.ends_with("/runs") {
            post.clone()
        } else {
            get.clone()
        };
        let got = raw(&app, method, path, Some(&admin), None, Vec::new()).await;
        assert_problem(path, &got, 400);
        assert!(
            got.2["detail"].as_str().unwrap().contains("ID"),
            "{path}: {}",
            got.2
        );
    }
    for path in ["/api/v1/nothing-here", "/api/v1", "/api/v1/runs/1/nope"] {
        assert_problem(
            path,
            &raw(&app, get.clone(), path, Some(&admin), None, Vec::new()).await,
            404,
        );
    }
    let got = raw(
        &app,
        reqwest::Method::DELETE,
        "/api/v1/destinations",
        Some(&admin),
        None,
        Vec::new(),
    )
    .await;
    assert_problem("DELETE /destinations", &got, 405);
    let allow = got.3["allow"].to_str().unwrap();
    assert!(allow.contains("GET") && allow.contains("POST"), "{allow}");
    assert_problem(
        "PUT /segments/refresh",
        &raw(
            &app,
            reqwest::Method::PUT,
            "/api/v1/segments/refresh",
            Some(&admin),
            json,
            b"{}".to_vec(),
        )
        .await,
        405,
    );

    // Too large, whatever the route.
    let huge = format!("{{\"display_name\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)).into_bytes();
    let got = raw(
        &app,
        post.clone(),
        "/api/v1/destinations",
        Some(&admin),
        json,
        huge.clone(),
    )
    .await;
    assert_problem("a 2 MiB body", &got, 413);
    let got = raw(
        &app,
        post.clone(),
        "/api/v1/destinations/1/runs",
        Some(&admin),
        json,
        huge,
    )
    .await;
    assert_problem("a 2 MiB run body", &got, 413);

    // Not JSON by its content type.
    let body = a_valid_destination(&app, segment).to_string().into_bytes();
    for content_type in [
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
        None,
    ] {
        let got = raw(
            &app,
            post.clone(),
            "/api/v1/destinations",
            Some(&admin),
            content_type,
            body.clone(),
        )
        .await;
        assert_problem(&format!("content type {content_type:?}"), &got, 415);
        assert!(
            got.2["detail"]
                .as_str()
                .unwrap()
                .contains("application/json")
        );
    }
    // JSON with parameters is JSON.
    let got = raw(
        &app,
        post.clone(),
        "/api/v1/destinations",
        Some(&admin),
        Some("application/json; charset=utf-8"),
        body,
    )
    .await;
    assert_eq!(got.0, 201, "{}", got.2);
    // Not even JSON.
    let got = raw(
        &app,
        post.clone(),
        "/api/v1/destinations/1/runs",
        Some(&admin),
        json,
        b"{ nope".to_vec(),
    )
    .await;
    assert_problem("broken JSON", &got, 400);
    assert!(
        export_destinations::store::runs::recent(app.state.db.pool(), 10)
            .await
            .unwrap()
            .is_empty(),
        "no run was queued by a refused request"
    );
}

#[tokio::test]
async fn the_bearer_scheme_is_case_insensitive() {
    let app = spawn_app().await;
    let valid = token(&app, "viewer@example.com", Role::Viewer).await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let response = reqwest::Client::new()
            .get(app.url("/api/v1/segments"))
            .header("authorization", format!("{scheme} {valid}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{scheme}");
    }
    let response = reqwest::Client::new()
        .get(app.url("/api/v1/segments"))
        .header("authorization", format!("Basic {valid}"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}

#[tokio::test]
async fn bodies_must_be_json_objects_with_only_the_fields_a_request_takes() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let json = Some("application/json");
    let post = reqwest::Method::POST;
    for body in ["[]", "\"x\"", "3", "null", "true"] {
        for path in ["/api/v1/destinations", "/api/v1/destinations/1/runs"] {
            let got = raw(&app, post.clone(), path, Some(&admin), json, body.into()).await;
            assert_problem(&format!("{body} to {path}"), &got, 422);
            assert!(
                got.2["detail"].as_str().unwrap().contains("JSON object"),
                "{body} to {path}: {}",
                got.2
            );
        }
    }
    let mut body = a_valid_destination(&app, segment);
    body["colour"] = json!(1);
    body["size"] = json!("L");
    let got = raw(
        &app,
        post.clone(),
        "/api/v1/destinations",
        Some(&admin),
        json,
        body.to_string().into(),
    )
    .await;
    assert_problem("unknown fields", &got, 422);
    assert_eq!(fields_of(&got.2), ["colour", "size"]);
    assert!(got.2["detail"].as_str().unwrap().contains("colour"));
    // Inside a merge field too.
    let mut body = a_valid_destination(&app, segment);
    body["merge_fields"] = json!([{ "tag": "FNAME", "field": "FirstName", "colour": 1 }]);
    let got = raw(
        &app,
        post.clone(),
        "/api/v1/destinations",
        Some(&admin),
        json,
        body.to_string().into(),
    )
    .await;
    assert_problem("unknown field in merge_fields", &got, 422);
    assert_eq!(fields_of(&got.2), ["merge_fields"]);
    assert!(
        got.2["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("colour")
    );
    // A field of the wrong type is named.
    let mut body = a_valid_destination(&app, segment);
    body["segment_ids"] = json!("all");
    let got = raw(
        &app,
        post.clone(),
        "/api/v1/destinations",
        Some(&admin),
        json,
        body.to_string().into(),
    )
    .await;
    assert_problem("segment_ids of the wrong type", &got, 422);
    assert_eq!(fields_of(&got.2), ["segment_ids"]);
    assert!(
        export_destinations::store::destinations::list(app.state.db.pool())
            .await
            .unwrap()
            .is_empty(),
        "nothing was created"
    );

    // The runs endpoint: {"full": true} and no body at all are fine; anything else named.
    let (status, created) = call(
        &app,
        post.clone(),
        "/api/v1/destinations",
        Some(&admin),
        Some(a_valid_destination(&app, segment)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let runs = format!("/api/v1/destinations/{}/runs", created["id"]);
    let got = raw(
        &app,
        post.clone(),
        &runs,
        Some(&admin),
        json,
        br#"{"full": true, "colour": 1}"#.to_vec(),
    )
    .await;
    assert_problem("unknown run field", &got, 422);
    assert_eq!(fields_of(&got.2), ["colour"]);
    let got = raw(
        &app,
        post.clone(),
        &runs,
        Some(&admin),
        json,
        br#"{"full": "yes"}"#.to_vec(),
    )
    .await;
    assert_problem("full of the wrong type", &got, 422);
    assert_eq!(fields_of(&got.2), ["full"]);
    let got = raw(&app, post.clone(), &runs, Some(&admin), None, Vec::new()).await;
    assert_eq!(got.0, 202, "an empty body queues a run: {}", got.2);
    assert_eq!(got.2["full"], false);
    let got = raw(
        &app,
        post.clone(),
        &runs,
        Some(&admin),
        json,
        br#"{"full": true}"#.to_vec(),
    )
    .await;
    assert_eq!(got.0, 202, "{}", got.2);
    assert_eq!(got.2["full"], true);
}

#[tokio::test]
async fn merge_tags_are_checked_against_mailchimps_rule_before_anything_is_sent() {
    let app = spawn_app().await;
    let segment = seed(&app).await;
    let admin = token(&app, "ci@example.com", Role::Administrator).await;
    let sandbox = app.state.sandbox.clone().unwrap();
    let calls_before = sandbox.stats().calls;
    for (tag, says) in [
        ("first name", "1 to 10 characters"),
        ("FIRSTNAME_TOO_LONG", "1 to 10 characters"),
        ("*|FNAME|*", "1 to 10 characters"),
        ("", "give the merge tag"),
        ("fname", "capitals: FNAME"),
    ] {
        let mut body = a_valid_destination(&app, segment);
        body["merge_fields"] = json!([{ "tag": tag, "field": "FirstName" }]);
        let (status, problem) = call(
            &app,
            reqwest::Method::POST,
            "/api/v1/destinations",
            Some(&admin),
            Some(body),
        )
        .await;
        assert_eq!(status, 422, "{tag:?}: {problem}");
        assert_eq!(
            fields_of(&problem),
            ["merge_fields[0].tag"],
            "{tag:?}: {problem}"
        );
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains(says),
            "{tag:?}: {problem}"
        );
    }
    let mut body = a_valid_destination(&app, segment);
    body["merge_fields"] =
        json!([{ "tag": "FNAME", "field": "FirstName" }, { "tag": "FNAME", "field": "LastName" }]);
    let (status, problem) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some(body),
    )
    .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(fields_of(&problem), ["merge_fields[1].tag"]);
    assert_eq!(
        sandbox.stats().calls,
        calls_before,
        "nothing reached Mailchimp"
    );
    assert!(
        export_destinations::store::destinations::list(app.state.db.pool())
            .await
            .unwrap()
            .is_empty()
    );
    let mut body = a_valid_destination(&app, segment);
    body["merge_fields"] =
        json!([{ "tag": "FNAME", "field": "FirstName" }, { "tag": "LNAME", "field": "LastName" }]);
    let (status, created) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some(body),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["merge_fields"][1]["tag"], "LNAME");
}

#[tokio::test]
async fn the_openapi_description_lists_the_new_refusals() {
    let app = spawn_app().await;
    let (_, doc) = call(
        &app,
        reqwest::Method::GET,
        "/api/v1/openapi.json",
        None,
        None,
    )
    .await;
    for (path, method, codes) in [
        (
            "/api/v1/destinations",
            "post",
            &["400", "413", "415", "422"][..],
        ),
        (
            "/api/v1/destinations/{id}/runs",
            "post",
            &["400", "404", "413", "415", "422"][..],
        ),
        ("/api/v1/destinations/{id}", "get", &["400", "404"][..]),
        ("/api/v1/runs/{id}", "get", &["400", "404"][..]),
        (
            "/api/v1/runs/{id}/members.csv",
            "get",
            &["400", "401", "404"][..],
        ),
    ] {
        for code in codes {
            assert!(
                doc["paths"][path][method]["responses"][code]["content"]["application/problem+json"].is_object(),
                "{method} {path} {code}"
            );
        }
    }
    assert!(doc["components"]["responses"]["MethodNotAllowed"].is_object());
    assert_eq!(
        doc["components"]["schemas"]["MergeField"]["properties"]["tag"]["maxLength"],
        10
    );
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
    let (status, created) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some(a_valid_destination(&app, segment)),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let (_, run) = call(
        &app,
        reqwest::Method::POST,
        &format!("/api/v1/destinations/{}/runs", created["id"]),
        Some(&admin),
        None,
    )
    .await;
    let run_id = run["id"].as_i64().unwrap();
    for _ in 0..200 {
        let (_, run) = call(
            &app,
            reqwest::Method::GET,
            &format!("/api/v1/runs/{run_id}"),
            Some(&admin),
            None,
        )
        .await;
        if run["finished_at"].is_number() {
            assert_eq!(run["status"], "Successful", "{run}");
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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

    let (status, made) = call(
        &app,
        reqwest::Method::POST,
        "/api/v1/destinations",
        Some(&admin),
        Some(a_valid_destination(&app, segment)),
    )
    .await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["mailchimp"], "sandbox");
    let html_row = {
        app.signed_in_as("viewer@example.com", Role::Viewer).await;
        app.get_html("/admin/export-destinations").await
    };
    assert!(html_row.contains(r#"<td class="target">Built-in sandbox</td>"#));
}
