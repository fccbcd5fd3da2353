//! The API's own extractors and fallbacks, so that every refusal is problem+json with a
//! status a client can act on and a detail saying what to change: an ID in the path that
//! is not a number (400), a body that is too large (413), not JSON (415 or 400), not a JSON
//! object or with fields the request does not take (422, naming them), an unknown route
//! (404) or method (405). Bulk profile writes take a JSON array or NDJSON instead, with
//! limits of their own (413 past them).

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::de::{DeserializeOwned, DeserializeSeed, Deserializer, Error as _, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::api::{FieldError, Problem};
use crate::profiles::push;

/// The `{id}` of a route: a whole number, or 400 saying so.
#[derive(Debug, Clone, Copy)]
pub struct PathId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Problem> {
        let Path(raw) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| {
                Problem::new(
                    StatusCode::BAD_REQUEST,
                    "Bad request",
                    format!("The path could not be read: {}", e.body_text()),
                )
            })?;
        raw.parse::<i64>().map(PathId).map_err(|_| {
            let shown: String = raw.chars().take(40).collect();
            Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad request",
                format!(
                    "The ID in the path (“{shown}”) is not an ID: IDs are whole numbers up to {}.",
                    i64::MAX
                ),
            )
        })
    }
}

/// A request body the API takes: a JSON object with these fields and no others.
pub trait ApiBody: DeserializeOwned {
    /// Every field the object may have; any other is refused by name.
    const FIELDS: &'static [&'static str];
    /// True when an empty body (no bytes at all) stands for `{}`.
    const EMPTY_MEANS_DEFAULTS: bool = false;
    /// What takes these fields, as refusals of an unknown field say it.
    const TAKER: &'static str = "this request";
}

/// A JSON object body, read within the console's body limit and checked field by field.
pub struct ApiJson<T>(pub T);

impl<T: ApiBody, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (content_type, bytes) = read_body(request, state, too_large).await?;
        if bytes.is_empty() && T::EMPTY_MEANS_DEFAULTS {
            return parse(Map::new()).map(ApiJson);
        }
        parse(json_object(&content_type, &bytes)?).map(ApiJson)
    }
}

/// A JSON object body whose names are not known in advance (a profile's fields), read
/// within the console's body limit.
pub struct JsonObject(pub Map<String, Value>);

impl<S: Send + Sync> FromRequest<S> for JsonObject {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (content_type, bytes) = read_body(request, state, too_large).await?;
        json_object(&content_type, &bytes).map(JsonObject)
    }
}

/// Where a row of a bulk body came from: its place in a JSON array (from 0) or its line in
/// NDJSON (from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RowAt {
    Index(usize),
    Line(usize),
}

/// The rows of a bulk profile write: a JSON array (`application/json`) or one JSON value a
/// line (`application/x-ndjson`), within [`push::MAX_PUSH_BYTES`] and [`push::MAX_ROWS`]
/// (413 past either: nothing is written). An NDJSON line that is not JSON is a row of its
/// own, refused with why; a JSON array that is not JSON is refused whole (400).
pub struct ProfileRows(pub Vec<BulkRow>);

/// One row of a bulk body: where it came from, and its JSON or why it is not JSON.
pub struct BulkRow {
    pub at: RowAt,
    pub value: Result<Value, String>,
}

impl<S: Send + Sync> FromRequest<S> for ProfileRows {
    type Rejection = Problem;

    async fn from_request(request: Request, state: &S) -> Result<Self, Problem> {
        let (content_type, bytes) = read_body(request, state, push_too_large).await?;
        if is_json_content_type(&content_type) {
            json_array(&bytes).map(ProfileRows)
        } else if is_ndjson_content_type(&content_type) {
            ndjson_lines(&bytes).map(ProfileRows)
        } else {
            Err(Problem::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "Unsupported Media Type",
                "Send the profiles as a JSON array with the header Content-Type: application/json, \
                 or one JSON object a line with Content-Type: application/x-ndjson.",
            ))
        }
    }
}

/// `application/x-ndjson` or `application/ndjson`, with or without parameters.
fn is_ndjson_content_type(value: &str) -> bool {
    let essence = media_type(value);
    essence == "application/x-ndjson" || essence == "application/ndjson"
}

fn push_too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Payload Too Large",
        format!(
            "The body is larger than a bulk profile write takes ({} bytes at most). Nothing was written: \
             send the profiles in several requests.",
            push::MAX_PUSH_BYTES
        ),
    )
}

fn too_many_rows() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Payload Too Large",
        format!(
            "The body holds more than {} profiles, the most one request takes. Nothing was written: \
             send them in several requests.",
            push::MAX_ROWS
        ),
    )
}

/// A JSON array's elements, read one by one and refused past [`push::MAX_ROWS`] without
/// reading further.
fn json_array(bytes: &[u8]) -> Result<Vec<BulkRow>, Problem> {
    let over = std::cell::Cell::new(false);
    let mut reader = serde_json::Deserializer::from_slice(bytes);
    let read = AtMost {
        max: push::MAX_ROWS,
        over: &over,
    }
    .deserialize(&mut reader)
    .and_then(|rows| reader.end().map(|()| rows));
    match read {
        Ok(rows) => Ok(rows
            .into_iter()
            .enumerate()
            .map(|(i, row)| BulkRow {
                at: RowAt::Index(i),
                value: Ok(row),
            })
            .collect()),
        Err(_) if over.get() => Err(too_many_rows()),
        Err(e) if e.classify() == serde_json::error::Category::Data => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request",
            format!(
                "A JSON array of profiles is expected as the body ([{{\"customer_id\": …, fields…}}, …]): {e}."
            ),
        )),
        Err(e) => Err(not_json(&e)),
    }
}

/// Up to `max` elements of a JSON array; `over` is set when there are more.
struct AtMost<'a> {
    max: usize,
    over: &'a std::cell::Cell<bool>,
}

impl<'de> DeserializeSeed<'de> for AtMost<'_> {
    type Value = Vec<Value>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Vec<Value>, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for AtMost<'_> {
    type Value = Vec<Value>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Value>, A::Error> {
        let mut rows = Vec::new();
        while let Some(row) = seq.next_element::<Value>()? {
            if rows.len() == self.max {
                self.over.set(true);
                return Err(A::Error::custom("too many rows"));
            }
            rows.push(row);
        }
        Ok(rows)
    }
}

/// Each line that is not blank, numbered from 1, as JSON or why it is not; more than
/// [`push::MAX_ROWS`] such lines are refused before any is read.
fn ndjson_lines(bytes: &[u8]) -> Result<Vec<BulkRow>, Problem> {
    let text = std::str::from_utf8(bytes).map_err(|_| {
        Problem::new(
            StatusCode::BAD_REQUEST,
            "Bad request",
            "The body is not UTF-8 text: NDJSON is UTF-8, one JSON object a line.",
        )
    })?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let lines = || {
        text.split('\n')
            .enumerate()
            .map(|(i, line)| (i + 1, line.trim()))
            .filter(|(_, line)| !line.is_empty())
    };
    if lines().count() > push::MAX_ROWS {
        return Err(too_many_rows());
    }
    Ok(lines()
        .map(|(line, text)| {
            let value =
                serde_json::from_str(text).map_err(|e| format!("The line is not JSON: {e}."));
            BulkRow {
                at: RowAt::Line(line),
                value,
            }
        })
        .collect())
}

/// The body's content type (empty when there is none) and bytes; `too_large` answers a
/// body past the route's limit.
async fn read_body<S: Send + Sync>(
    request: Request,
    state: &S,
    too_large: fn() -> Problem,
) -> Result<(String, Bytes), Problem> {
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let bytes = Bytes::from_request(request, state).await.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            Problem::new(
                StatusCode::BAD_REQUEST,
                "Bad request",
                format!("The body could not be read: {}", e.body_text()),
            )
        }
    })?;
    Ok((content_type, bytes))
}

/// A body sent as JSON that holds a JSON object: 415, 400 or 422 saying what is wrong.
fn json_object(content_type: &str, bytes: &[u8]) -> Result<Map<String, Value>, Problem> {
    if !is_json_content_type(content_type) {
        return Err(Problem::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Unsupported Media Type",
            "Send the body as JSON, with the header Content-Type: application/json.",
        ));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| not_json(&e))?;
    match value {
        Value::Object(object) => Ok(object),
        value => Err(Problem::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid request",
            format!(
                "A JSON object is expected as the body ({{\"name\": value, …}}); this body is {}.",
                kind_of(&value)
            ),
        )),
    }
}

fn not_json(err: &serde_json::Error) -> Problem {
    Problem::new(
        StatusCode::BAD_REQUEST,
        "Bad request",
        format!("The body is not valid JSON: {err}."),
    )
}

/// `application/json`, or any `application/…+json`, with or without parameters.
fn is_json_content_type(value: &str) -> bool {
    let essence = media_type(value);
    essence == "application/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// A Content-Type's media type, without its parameters, in lower case.
fn media_type(value: &str) -> String {
    value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Unknown fields are named; a field of the wrong type is named with serde's reason.
fn parse<T: ApiBody>(object: Map<String, Value>) -> Result<T, Problem> {
    let unknown = unknown_fields::<T>(&object, "");
    if !unknown.is_empty() {
        let names = unknown
            .iter()
            .map(|e| format!("“{}”", e.field))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(Problem::invalid_because(
            format!("The body has fields this request does not take: {names}."),
            unknown,
        ));
    }
    typed(object, "").map_err(Problem::invalid)
}

/// An object inside a body (an item of a list, at `at`, e.g. `conditions[1]`), read as the
/// body is: each field at fault named under `at` (`conditions[1].value`).
pub fn item<T: ApiBody>(value: Value, at: &str) -> Result<T, Vec<FieldError>> {
    let Value::Object(object) = value else {
        return Err(vec![FieldError {
            field: at.to_owned(),
            message: format!(
                "A JSON object is expected here ({{{}}}); this is {}.",
                T::FIELDS.join(", "),
                kind_of(&value)
            ),
        }]);
    };
    let prefix = format!("{at}.");
    let unknown = unknown_fields::<T>(&object, &prefix);
    if !unknown.is_empty() {
        return Err(unknown);
    }
    typed(object, &prefix)
}

/// Each field `T` does not take, named under `prefix`.
fn unknown_fields<T: ApiBody>(object: &Map<String, Value>, prefix: &str) -> Vec<FieldError> {
    object
        .keys()
        .filter(|k| !T::FIELDS.contains(&k.as_str()))
        .map(|k| FieldError {
            field: format!("{prefix}{k}"),
            message: format!(
                "Unknown field: {} takes only {}.",
                T::TAKER,
                T::FIELDS.join(", ")
            ),
        })
        .collect()
}

/// The object as a `T`; when it is not one, each field at fault, named under `prefix`.
fn typed<T: ApiBody>(object: Map<String, Value>, prefix: &str) -> Result<T, Vec<FieldError>> {
    match T::deserialize(Value::Object(object.clone())) {
        Ok(value) => Ok(value),
        Err(whole) => {
            // Every field of an API body is optional, so each can be tried alone: the
            // ones that fail alone are the ones at fault.
            let mut errors: Vec<FieldError> = object
                .into_iter()
                .filter_map(|(k, v)| {
                    let alone = Value::Object(Map::from_iter([(k.clone(), v)]));
                    T::deserialize(alone).err().map(|e| FieldError {
                        field: format!("{prefix}{k}"),
                        message: e.to_string(),
                    })
                })
                .collect();
            if errors.is_empty() {
                let field = prefix.strip_suffix('.').unwrap_or("body").to_owned();
                errors.push(FieldError {
                    field,
                    message: whole.to_string(),
                });
            }
            Err(errors)
        }
    }
}

pub fn too_large() -> Problem {
    Problem::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "Payload Too Large",
        format!(
            "The body is larger than the API accepts ({} bytes at most).",
            crate::config::MAX_BODY_BYTES
        ),
    )
}

/// No route under `/api/v1` has this path.
pub async fn no_such_route(uri: Uri) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        "Not Found",
        format!(
            "The API has no endpoint {}; /api/v1/openapi.json lists them.",
            uri.path()
        ),
    )
}

/// The path exists but not with this method (axum adds the `Allow` header).
pub async fn method_not_allowed(method: Method, uri: Uri) -> Problem {
    Problem::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "Method Not Allowed",
        format!(
            "{} does not take {method}; the Allow header lists the methods it takes.",
            uri.path()
        ),
    )
}

/// A safety net behind the extractors: whatever still answers an error in another form
/// (an extractor rejection this module does not wrap) is turned into problem+json with
/// the same status and headers.
pub async fn problem_json_errors(response: Response) -> Response {
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/problem+json"));
    if !(status.is_client_error() || status.is_server_error()) || is_problem {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|t| !t.trim().is_empty() && !status.is_server_error());
    let title = status.canonical_reason().unwrap_or("Error");
    let detail = text.unwrap_or_else(|| format!("The request was refused: {title}."));
    parts.headers.remove(header::CONTENT_LENGTH);
    let mut problem = Problem::new(status, title, detail).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE {
            problem.headers_mut().insert(name.clone(), value.clone());
        }
    }
    problem
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    struct Example {
        name: Option<String>,
        #[serde(default)]
        count: i64,
    }

    impl ApiBody for Example {
        const FIELDS: &'static [&'static str] = &["name", "count"];
    }

    fn object(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn json_content_types() {
        assert!(is_json_content_type("application/json"));
        assert!(is_json_content_type("Application/JSON; charset=utf-8"));
        assert!(is_json_content_type("application/merge-patch+json"));
        assert!(!is_json_content_type("text/plain"));
        assert!(!is_json_content_type("application/x-www-form-urlencoded"));
    }

    #[test]
    fn every_unknown_field_is_named() {
        let err = parse::<Example>(object(serde_json::json!({
            "name": "x", "colour": 1, "size": 2
        })))
        .unwrap_err();
        let fields: Vec<&str> = err.errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["colour", "size"]);
        assert!(err.detail.contains("colour") && err.detail.contains("size"));
    }

    #[test]
    fn an_item_of_a_list_is_read_as_a_body_is_with_its_place_named() {
        let err =
            item::<Example>(serde_json::json!({ "count": "many", "x": 1 }), "rows[2]").unwrap_err();
        assert_eq!(err.len(), 1);
        assert_eq!(err[0].field, "rows[2].x");
        assert!(err[0].message.contains("name, count"), "{}", err[0].message);
        let err = item::<Example>(serde_json::json!({ "count": "many" }), "rows[2]").unwrap_err();
        assert_eq!(err[0].field, "rows[2].count");
        let err = item::<Example>(serde_json::json!("x"), "rows[0]").unwrap_err();
        assert_eq!(err[0].field, "rows[0]");
        assert!(err[0].message.contains("a string"), "{}", err[0].message);
        let ok = item::<Example>(serde_json::json!({ "name": "x" }), "rows[0]").unwrap();
        assert_eq!(ok.name.as_deref(), Some("x"));
    }

    #[test]
    fn a_field_of_the_wrong_type_is_named() {
        let err = parse::<Example>(object(serde_json::json!({ "name": "x", "count": "many" })))
            .unwrap_err();
        assert_eq!(err.status, 422);
        assert_eq!(err.errors.len(), 1);
        assert_eq!(err.errors[0].field, "count");
        let ok = parse::<Example>(object(serde_json::json!({ "name": "x", "count": 3 }))).unwrap();
        assert_eq!((ok.name.as_deref(), ok.count), (Some("x"), 3));
    }
}
