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
    let mut csv_responses = errors(&["400", "401", "404"]);
    csv_responses.as_object_mut().unwrap().insert(
        "200".into(),
        json!({ "description": "customer_id,email,outcome,title,detail", "content": { "text/csv": { "schema": { "type": "string" } } } }),
    );
    let id_param =
        json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }]);
    json!({
        "openapi": "3.0.3",
        "info": {
            "title": "export-destinations automation API", "version": "1",
            "description": "Every error is application/problem+json (see Problem), naming the field at fault in errors when there is one. \
                Besides the responses listed per operation: a path the API does not have answers 404, and a method a path does not take answers 405 with an Allow header (components.responses). \
                Request bodies are JSON objects sent with Content-Type: application/json (415 otherwise), at most 1 MiB (413); fields an operation does not take are refused (422)."
        },
        "components": {
            "responses": {
                "NotFound": { "description": "No such path under /api/v1", "content": { "application/problem+json": { "schema": problem } } },
                "MethodNotAllowed": { "description": "The path does not take this method; Allow lists those it takes", "content": { "application/problem+json": { "schema": problem } } }
            },
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
                "MergeField": {
                    "type": "object", "required": ["tag", "field"], "additionalProperties": false,
                    "properties": {
                        "tag": { "type": "string", "pattern": "^[A-Z0-9_]{1,10}$", "maxLength": 10, "description": "A Mailchimp merge tag: 1 to 10 uppercase letters, digits or underscores" },
                        "field": { "type": "string", "description": "A profile field" }
                    }
                },
                "Destination": {
                    "type": "object",
                    "properties": {
                        "id": { "type": "integer" }, "display_name": { "type": "string" }, "type": { "type": "string", "enum": ["mailchimp"] },
                        "status": { "type": "string", "enum": ["active", "draft", "removing"] },
                        "mailchimp": { "type": "string", "enum": ["mailchimp", "sandbox"], "description": "which Mailchimp: the real one or the console's built-in sandbox" },
                        "audience_id": { "type": "string" }, "audience_name": { "type": "string", "nullable": true },
                        "email_field": { "type": "string", "nullable": true },
                        "merge_fields": { "type": "array", "items": { "$ref": "#/components/schemas/MergeField" } },
                        "segment_ids": { "type": "array", "items": { "type": "integer" } },
                        "new_member_status": { "type": "string", "enum": ["subscribed", "pending"] },
                        "created_at": { "type": "integer", "description": "ms since the Unix epoch" }
                    }
                },
                "NewDestination": {
                    "type": "object", "additionalProperties": false,
                    "required": ["display_name", "consent", "audience_id", "api_key", "email_field", "segment_ids"],
                    "properties": {
                        "display_name": { "type": "string", "maxLength": 100 },
                        "consent": { "type": "boolean", "description": "true: you agree to the data-privacy notice" },
                        "audience_id": { "type": "string" }, "api_key": { "type": "string" },
                        "mailchimp": { "type": "string", "enum": ["mailchimp", "sandbox"], "description": "which Mailchimp the key is for; unset: the built-in sandbox when it is on and no Mailchimp OAuth app is configured, otherwise Mailchimp" },
                        "email_field": { "type": "string" },
                        "merge_fields": { "type": "array", "items": { "$ref": "#/components/schemas/MergeField" } },
                        "segment_ids": { "type": "array", "items": { "type": "integer" }, "uniqueItems": true, "minItems": 1, "maxItems": 1000 },
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
                        "message": { "type": "string", "nullable": true },
                        "repair_missing": { "type": "integer", "nullable": true, "description": "set when the run found its audience changed in Mailchimp: how many members this console had sent were missing" }
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
                    "responses": with("201", json!({ "$ref": "#/components/schemas/Destination" }), &["400", "401", "403", "413", "415", "422"])
                }
            },
            "/api/v1/destinations/{id}": {
                "get": { "summary": "One destination", "parameters": id_param, "responses": with("200", json!({ "$ref": "#/components/schemas/Destination" }), &["400", "401", "404"]) }
            },
            "/api/v1/destinations/{id}/runs": {
                "post": {
                    "summary": "Queue an export (Contributors and Administrators)", "parameters": id_param,
                    "requestBody": { "description": "Optional: no body queues an ordinary run", "content": { "application/json": { "schema": { "type": "object", "additionalProperties": false, "properties": { "full": { "type": "boolean" } } } } } },
                    "responses": with("202", json!({ "$ref": "#/components/schemas/Run" }), &["400", "401", "403", "404", "413", "415", "422"])
                }
            },
            "/api/v1/runs/{id}": {
                "get": { "summary": "A run and its counts", "parameters": id_param, "responses": with("200", json!({ "$ref": "#/components/schemas/Run" }), &["400", "401", "404"]) }
            },
            "/api/v1/runs/{id}/members.csv": {
                "get": { "summary": "Per-member results as CSV (cells a spreadsheet would run as a formula start with ')", "parameters": id_param,
                         "responses": csv_responses }
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
