//! The API's served OpenAPI description, held against what the API answers.

use export_destinations::domain::Role;
use serde_json::{Value, json};

use crate::api::{call, sandbox_key, token};
use crate::helpers::spawn_app;
use crate::wizard::{audience, seed};

/// Every property of `value` is declared by `schema` with a fitting type (OpenAPI 3.1: a
/// type or a list of types, `null` among them for what may be absent; `oneOf` alternatives;
/// `enum` values).
pub(crate) fn conforms(
    doc: &Value,
    schema: &Value,
    value: &Value,
    at: &str,
    errors: &mut Vec<String>,
) {
    let schema = match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    if let Some(choices) = schema.get("oneOf").and_then(Value::as_array) {
        let fits = choices.iter().any(|choice| {
            let mut inner = Vec::new();
            conforms(doc, choice, value, at, &mut inner);
            inner.is_empty()
        });
        if !fits {
            errors.push(format!("{at}: {value} fits none of {schema}"));
        }
        return;
    }
    let types: Vec<&str> = match schema.get("type") {
        Some(Value::String(t)) => vec![t.as_str()],
        Some(Value::Array(ts)) => ts.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    let fits = |t: &str| match (t, value) {
        ("null", Value::Null)
        | ("object", Value::Object(_))
        | ("array", Value::Array(_))
        | ("string", Value::String(_))
        | ("boolean", Value::Bool(_)) => true,
        ("integer", Value::Number(n)) => n.is_i64() || n.is_u64(),
        ("number", Value::Number(_)) => true,
        _ => false,
    };
    let ok = (types.is_empty() || types.iter().any(|t| fits(t)))
        && schema
            .get("enum")
            .and_then(Value::as_array)
            .is_none_or(|values| values.contains(value));
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
    assert_eq!(doc["openapi"], "3.1.0");
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
