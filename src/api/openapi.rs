//! The API's own description, OpenAPI 3.0, served at `/api/v1/openapi.json`.

use axum::Json;
use serde_json::{Value, json};

pub async fn document() -> Json<Value> {
    Json(description())
}

pub fn description() -> Value {
    let problem = json!({ "$ref": "#/components/schemas/Problem" });
    let errors = |codes: &[&str]| -> Value {
        let mut map = serde_json::Map::new();
        for code in codes {
            map.insert((*code).into(), json!({ "description": "An error", "content": { "application/problem+json": { "schema": problem } } }));
        }
        Value::Object(map)
    };
    let with = |ok_code: &str, schema: Value, codes: &[&str]| -> Value {
        let mut responses = errors(codes);
        responses.as_object_mut().unwrap().insert(
            ok_code.into(),
            json!({ "description": "OK", "content": { "application/json": { "schema": schema } } }),
        );
        responses
    };
    let id_param =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }]);
    json!({
        "openapi": "3.0.3",
        "info": { "title": "export-destinations automation API", "version": "1" },
        "components": {
            "securitySchemes": { "token": { "type": "http", "scheme": "bearer", "description": "A personal API token (Admin > API tokens)." } },
            "schemas": {
                "Problem": {
                    "type": "object", "required": ["type", "title", "status", "detail"],
                    "properties": {
                        "type": { "type": "string" }, "title": { "type": "string" }, "status": { "type": "integer" },
                        "detail": { "type": "string" },
                        "errors": { "type": "array", "items": { "type": "object", "properties": { "field": { "type": "string" }, "message": { "type": "string" } } } }
                    }
                },
                "MergeField": { "type": "object", "required": ["tag", "field"], "properties": { "tag": { "type": "string" }, "field": { "type": "string" } } },
                "Destination": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "integer" }, "display_name": { "type": "string" }, "type": { "type": "string", "enum": ["mailchimp"] },
                        "status": { "type": "string", "enum": ["active", "draft", "removing"] },
                        "audience_id": { "type": "string" }, "audience_name": { "type": "string", "nullable": true },
                        "email_field": { "type": "string", "nullable": true },
                        "merge_fields": { "type": "array", "items": { "$ref": "#/components/schemas/MergeField" } },
                        "segment_ids": { "type": "array", "items": { "type": "integer" } },
                        "new_member_status": { "type": "string", "enum": ["subscribed", "pending"] },
                        "created_at": { "type": "integer", "description": "ms since the Unix epoch" }
                    }
                },
                "NewDestination": {
                    "type": "object",
                    "required": ["display_name", "consent", "audience_id", "api_key", "email_field", "segment_ids"],
                    "properties": {
                        "display_name": { "type": "string", "maxLength": 100 },
                        "consent": { "type": "boolean", "description": "true: you agree to the data-privacy notice" },
                        "audience_id": { "type": "string" }, "api_key": { "type": "string" },
                        "email_field": { "type": "string" },
                        "merge_fields": { "type": "array", "items": { "$ref": "#/components/schemas/MergeField" } },
                        "segment_ids": { "type": "array", "items": { "type": "integer" } },
                        "new_member_status": { "type": "string", "enum": ["subscribed", "pending"] }
                    }
                },
                "Run": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "integer" }, "destination_id": { "type": "integer" },
                        "status": { "type": "string", "enum": ["Queued", "Processing", "Successful", "Skipped", "Failure", "Canceled"] },
                        "full": { "type": "boolean" }, "created_at": { "type": "integer" },
                        "started_at": { "type": "integer", "nullable": true }, "finished_at": { "type": "integer", "nullable": true },
                        "counts": { "type": "object", "properties": {
                            "total": { "type": "integer" }, "sent": { "type": "integer" }, "created": { "type": "integer" },
                            "updated": { "type": "integer" }, "unchanged": { "type": "integer" }, "skipped": { "type": "integer" },
                            "failed": { "type": "integer" }, "tag_changes": { "type": "integer" } } },
                        "message": { "type": "string", "nullable": true }
                    }
                },
                "Segment": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "integer" }, "name": { "type": "string" }, "member_count": { "type": "integer" },
                        "last_refreshed_at": { "type": "integer", "nullable": true }, "kind": { "type": "string", "enum": ["rules", "static"] }
                    }
                }
            }
        },
        "security": [{ "token": [] }],
        "paths": {
            "/api/v1/destinations": {
                "get": { "summary": "Saved destinations", "responses": with("200", json!({ "type": "object", "properties": { "destinations": { "type": "array", "items": { "$ref": "#/components/schemas/Destination" } } } }), &["401"]) },
                "post": {
                    "summary": "Create a Mailchimp destination with an API key (Administrators)",
                    "requestBody": { "required": true, "content": { "application/json": { "schema": { "$ref": "#/components/schemas/NewDestination" } } } },
                    "responses": with("201", json!({ "$ref": "#/components/schemas/Destination" }), &["400", "401", "403", "422"])
                }
            },
            "/api/v1/destinations/{id}": {
                "get": { "summary": "One destination", "parameters": id_param, "responses": with("200", json!({ "$ref": "#/components/schemas/Destination" }), &["401", "404"]) }
            },
            "/api/v1/destinations/{id}/runs": {
                "post": {
                    "summary": "Queue an export (Contributors and Administrators)", "parameters": id_param,
                    "requestBody": { "content": { "application/json": { "schema": { "type": "object", "properties": { "full": { "type": "boolean" } } } } } },
                    "responses": with("202", json!({ "$ref": "#/components/schemas/Run" }), &["400", "401", "403", "404"])
                }
            },
            "/api/v1/runs/{id}": {
                "get": { "summary": "A run and its counts", "parameters": id_param, "responses": with("200", json!({ "$ref": "#/components/schemas/Run" }), &["401", "404"]) }
            },
            "/api/v1/runs/{id}/members.csv": {
                "get": { "summary": "Per-member results as CSV", "parameters": id_param,
                         "responses": { "200": { "description": "customer_id,email,outcome,title,detail", "content": { "text/csv": { "schema": { "type": "string" } } } } } }
            },
            "/api/v1/segments": {
                "get": { "summary": "Segments", "responses": with("200", json!({ "type": "object", "properties": { "segments": { "type": "array", "items": { "$ref": "#/components/schemas/Segment" } } } }), &["401"]) }
            },
            "/api/v1/segments/refresh": {
                "post": { "summary": "Refresh every segment (Contributors and Administrators)",
                          "responses": with("200", json!({ "type": "object", "properties": { "profiles_scanned": { "type": "integer" }, "duration_ms": { "type": "integer" }, "segments": { "type": "array", "items": { "type": "object" } } } }), &["401", "403"]) }
            }
        }
    })
}
