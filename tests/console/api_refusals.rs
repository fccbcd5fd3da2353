//! What the API refuses, and how: problem+json naming the field, before anything is
//! written or sent.

use export_destinations::domain::Role;
use serde_json::json;

use crate::api::{a_valid_destination, assert_problem, call, fields_of, raw, sandbox_key, token};
use crate::helpers::spawn_app;
use crate::wizard::seed;

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
    crate::helpers::assert_no_destination(&app).await;
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
    crate::helpers::assert_no_destination(&app).await;
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
    crate::helpers::assert_no_destination(&app).await;

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
    crate::helpers::assert_no_destination(&app).await;
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
