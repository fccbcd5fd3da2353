//! `/api/v1/segments/…`: read one segment, and create, change or delete rules segments
//! (Contributors and Administrators) through the path the rule builder's page takes, with
//! its checks and its refusals, each named by the field at fault.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};

use crate::api::extract::{self, ApiBody, ApiJson, PathId};
use crate::api::models::SegmentOut;
use crate::api::{ApiUser, Contributor, FieldError, Problem};
use crate::domain::segment_rules::{Condition, Match, Operator, RulePart, SegmentRules};
use crate::segments::define::{self, DeleteError, SaveError, SegmentRefusal};
use crate::state::AppState;
use crate::store::fields;
use crate::store::segments::{self, Definition};

/// A new rules segment. Fields other than these are refused.
#[derive(Deserialize, ToSchema)]
pub struct NewSegment {
    #[schema(required, value_type = String, min_length = 1, max_length = 100)]
    name: Option<String>,
    /// Whether all conditions must hold or any one; unset: all.
    #[serde(rename = "match")]
    #[schema(value_type = Option<Match>)]
    match_: Option<Match>,
    #[schema(required, value_type = Vec<ConditionIn>, min_items = 1, max_items = 100)]
    conditions: Option<Vec<Value>>,
}

impl ApiBody for NewSegment {
    const FIELDS: &'static [&'static str] = &["name", "match", "conditions"];
}

/// A change of a rules segment: what is sent replaces what it had (`conditions` as a
/// whole); what is not sent stays.
#[derive(Deserialize, ToSchema)]
pub struct SegmentChange {
    #[schema(value_type = Option<String>, min_length = 1, max_length = 100)]
    name: Option<String>,
    #[serde(rename = "match")]
    #[schema(value_type = Option<Match>)]
    match_: Option<Match>,
    #[schema(value_type = Option<Vec<ConditionIn>>, min_items = 1, max_items = 100)]
    conditions: Option<Vec<Value>>,
}

impl ApiBody for SegmentChange {
    const FIELDS: &'static [&'static str] = &["name", "match", "conditions"];
}

/// One condition: `{"field": "Country", "operator": "equals", "value": "Germany"}`. The
/// field is a profile field; its type decides the operators it takes and how the value
/// reads (a number, a date YYYY-MM-DD, true or false). `is_empty` and `is_not_empty` take
/// no value.
#[derive(Deserialize, ToSchema)]
#[schema(as = SegmentConditionIn)]
pub struct ConditionIn {
    #[schema(required, value_type = String)]
    field: Option<String>,
    #[schema(required, value_type = Operator)]
    operator: Option<Operator>,
    value: Option<ConditionValue>,
}

impl ApiBody for ConditionIn {
    const FIELDS: &'static [&'static str] = &["field", "operator", "value"];
    const TAKER: &'static str = "a condition";
}

impl ConditionIn {
    /// The condition as the rule builder's row `index` reads it.
    fn condition(self, index: usize) -> Result<Condition, FieldError> {
        let Some(op) = self.operator else {
            return Err(FieldError {
                field: format!("conditions[{index}].operator"),
                message: format!("Condition {}: choose an operator.", index + 1),
            });
        };
        let value = self.value.map(|v| v.0).unwrap_or_default();
        Ok(Condition::new(self.field.unwrap_or_default(), op, &value))
    }
}

/// A condition's value: a text, or a number or true/false written as JSON (kept as text).
pub struct ConditionValue(String);

impl<'de> Deserialize<'de> for ConditionValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match Value::deserialize(deserializer)? {
            Value::String(text) => Ok(Self(text)),
            Value::Number(number) => Ok(Self(number.to_string())),
            Value::Bool(truth) => Ok(Self(truth.to_string())),
            _ => Err(D::Error::custom(
                "a condition's value is a text, a number or true/false",
            )),
        }
    }
}

impl utoipa::PartialSchema for ConditionValue {
    fn schema() -> RefOr<Schema> {
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::String))
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean))
            .description(Some(
                "What the field is compared with: a text, or a number or true/false as JSON.",
            ))
            .into()
    }
}

impl ToSchema for ConditionValue {}

/// The conditions of a body, each read as a body is: what is not a condition is refused by
/// its place (`conditions[1].operator`).
fn conditions(items: Vec<Value>) -> Result<Vec<Condition>, Problem> {
    let mut errors = Vec::new();
    let mut conditions = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match extract::item::<ConditionIn>(item, &format!("conditions[{i}]")) {
            Ok(asked) => match asked.condition(i) {
                Ok(condition) => conditions.push(condition),
                Err(error) => errors.push(error),
            },
            Err(at_fault) => errors.extend(at_fault),
        }
    }
    if errors.is_empty() {
        Ok(conditions)
    } else {
        Err(Problem::invalid(errors))
    }
}

/// A refusal of the save, as the field at fault in the request.
fn field_error(refusal: &SegmentRefusal) -> FieldError {
    let field = match refusal {
        SegmentRefusal::Name(_) => "name".to_owned(),
        SegmentRefusal::Rules(error) => match (error.condition, error.part) {
            (Some(i), RulePart::Field) => format!("conditions[{i}].field"),
            (Some(i), RulePart::Operator) => format!("conditions[{i}].operator"),
            (Some(i), RulePart::Value) => format!("conditions[{i}].value"),
            _ => "conditions".to_owned(),
        },
    };
    FieldError {
        field,
        message: refusal.to_string(),
    }
}

fn conflict(detail: String) -> Problem {
    Problem::new(StatusCode::CONFLICT, "Conflict", detail)
}

fn save_refused(err: SaveError) -> Problem {
    match err {
        SaveError::Refused(refusals) => {
            Problem::invalid(refusals.iter().map(field_error).collect())
        }
        SaveError::NotFound => Problem::not_found(),
        err @ SaveError::Static(_) => conflict(err.to_string()),
        SaveError::Database(err) => err.into(),
    }
}

/// Segment `id` as the API shows it.
async fn current(state: &AppState, id: i64) -> Result<SegmentOut, Problem> {
    let pool = state.db.pool();
    let segment = segments::find(pool, id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let catalogue = fields::as_catalogue(&fields::list(pool).await?);
    Ok(SegmentOut::of(&segment, &catalogue))
}

/// One segment: poll it until `refreshing` is false to read the members of its rules as
/// saved.
#[utoipa::path(get, path = "/api/v1/segments/{id}", tag = "segments", params(("id" = i64, Path)),
    responses((status = 200, body = SegmentOut)))]
pub async fn show(
    State(state): State<AppState>,
    _user: ApiUser,
    PathId(id): PathId,
) -> Result<Json<SegmentOut>, Problem> {
    Ok(Json(current(&state, id).await?))
}

/// Create a rules segment (Contributors and Administrators), with the rule builder's checks;
/// its members are computed in the background (`refreshing` until they are).
#[utoipa::path(post, path = "/api/v1/segments", tag = "segments", request_body = NewSegment,
    responses((status = 201, body = SegmentOut,
            headers(("Location" = String, description = "The new segment: /api/v1/segments/{id}"))),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "A field at fault, named in errors: an empty, taken or too long name, \
                no conditions or more than 100, a field that is not a profile field, an operator \
                its type does not take, a value that does not read as its type")))]
pub async fn create(
    State(state): State<AppState>,
    Contributor(user): Contributor,
    ApiJson(input): ApiJson<NewSegment>,
) -> Result<Response, Problem> {
    let rules = SegmentRules {
        match_: input.match_.unwrap_or(Match::All),
        conditions: conditions(input.conditions.unwrap_or_default())?,
    };
    let name = input.name.unwrap_or_default();
    let saved = define::save_rules(&state.db, user.id, None, &name, rules)
        .await
        .map_err(save_refused)?;
    let location = format!("/api/v1/segments/{}", saved.id);
    let created = current(&state, saved.id).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(created),
    )
        .into_response())
}

/// Change a rules segment (Contributors and Administrators): any of its name, match and
/// conditions, with the checks of a create; its members are computed again in the
/// background. A static segment (a list of customer IDs) has no rules to change: 409.
#[utoipa::path(patch, path = "/api/v1/segments/{id}", tag = "segments", params(("id" = i64, Path)),
    request_body = SegmentChange,
    responses((status = 200, body = SegmentOut),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "A static segment: it has no rules to change"),
        (status = 422, body = Problem, content_type = "application/problem+json",
            description = "A field at fault, named in errors, as for a create")))]
pub async fn change(
    State(state): State<AppState>,
    Contributor(user): Contributor,
    PathId(id): PathId,
    ApiJson(input): ApiJson<SegmentChange>,
) -> Result<Json<SegmentOut>, Problem> {
    let segment = segments::find(state.db.pool(), id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let Definition::Rules(before) = segment.definition else {
        return Err(save_refused(SaveError::Static(segment.name)));
    };
    let rules = SegmentRules {
        match_: input.match_.unwrap_or(before.match_),
        conditions: match input.conditions {
            Some(items) => conditions(items)?,
            None => before.conditions,
        },
    };
    let name = input.name.unwrap_or(segment.name);
    let saved = define::save_rules(&state.db, user.id, Some(id), &name, rules)
        .await
        .map_err(save_refused)?;
    Ok(Json(current(&state, saved.id).await?))
}

/// Delete a segment and its members (Contributors and Administrators), as its page does:
/// one that a destination exports is refused (409, naming the destinations).
#[utoipa::path(delete, path = "/api/v1/segments/{id}", tag = "segments", params(("id" = i64, Path)),
    responses((status = 204, description = "Deleted"),
        (status = 409, body = Problem, content_type = "application/problem+json",
            description = "A destination exports the segment; the detail names it")))]
pub async fn delete(
    State(state): State<AppState>,
    Contributor(user): Contributor,
    PathId(id): PathId,
) -> Result<StatusCode, Problem> {
    match define::delete(&state.db, user.id, id).await {
        Ok(_) => Ok(StatusCode::NO_CONTENT),
        Err(DeleteError::NotFound) => Err(Problem::not_found()),
        Err(err @ DeleteError::InUse { .. }) => Err(conflict(err.to_string())),
        Err(DeleteError::Database(err)) => Err(err.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::segment_rules::MAX_CONDITIONS;

    #[test]
    fn numbers_and_booleans_are_values_too() {
        let read = |v: Value| serde_json::from_value::<ConditionValue>(v).map(|c| c.0);
        assert_eq!(read(serde_json::json!("Germany")).unwrap(), "Germany");
        assert_eq!(read(serde_json::json!(1000)).unwrap(), "1000");
        assert_eq!(read(serde_json::json!(12.5)).unwrap(), "12.5");
        assert_eq!(read(serde_json::json!(true)).unwrap(), "true");
        assert!(read(serde_json::json!([1])).is_err());
        assert!(read(serde_json::json!({})).is_err());
    }

    #[test]
    fn the_description_allows_as_many_conditions_as_a_segment_takes() {
        let doc = serde_json::to_value(super::super::openapi::description()).unwrap();
        for schema in ["NewSegment", "SegmentChange"] {
            let conditions = &doc["components"]["schemas"][schema]["properties"]["conditions"];
            assert_eq!(
                conditions["maxItems"], MAX_CONDITIONS,
                "{schema}: {conditions}"
            );
        }
    }
}
