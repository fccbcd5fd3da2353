//! The automation API (`/api/v1`): JSON for scripts and CI pipelines, authenticated by
//! personal API tokens (`Authorization: Bearer edt_…`) that carry their user's role. No
//! session and no cookies, so no CSRF; errors are problem+json naming the field at fault.

mod destinations;
mod extract;
pub mod models;
mod openapi;
mod profiles;
mod segments;
mod sources;

use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::map_response;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Serialize;
use utoipa::ToSchema;

use crate::domain::Role;
use crate::state::AppState;
use crate::store::{api_tokens, fields, runs, users};
use extract::PathId;
use models::{RefreshOut, RefreshedSegment, RunOut, SegmentList, SegmentOut};

/// Everything under `/api/v1`, with its own fallbacks: nothing there answers in anything
/// but problem+json.
pub fn router(state: AppState) -> Router {
    let api = Router::new()
        .route("/openapi.json", get(openapi::document))
        .route(
            "/destinations",
            get(destinations::list).post(destinations::create),
        )
        .route(
            "/destinations/{id}",
            get(destinations::show).patch(destinations::change),
        )
        .route("/destinations/{id}/runs", post(destinations::start_run))
        .route("/destinations/{id}/preview", post(destinations::preview))
        .route("/runs/{id}", get(run))
        .route("/runs/{id}/members.csv", get(members_csv))
        .route("/sources", get(sources::list).post(sources::create))
        .route("/sources/{id}/pulls", post(sources::start_pull))
        .route("/pulls/{id}", get(sources::show_pull))
        .route("/segments", get(list_segments).post(segments::create))
        .route(
            "/segments/{id}",
            get(segments::show)
                .patch(segments::change)
                .delete(segments::delete),
        )
        .route("/segments/refresh", post(refresh_segments))
        .route(
            "/profiles",
            post(profiles::push_profiles)
                .layer(DefaultBodyLimit::max(crate::profiles::push::MAX_PUSH_BYTES)),
        )
        .route(
            "/profiles/{customer_id}",
            put(profiles::put_profile).delete(profiles::delete_profile),
        )
        .route(
            "/profiles/{customer_id}/forget",
            post(profiles::forget_customer),
        )
        .fallback(extract::no_such_route)
        .method_not_allowed_fallback(extract::method_not_allowed)
        .layer(map_response(extract::problem_json_errors))
        .with_state(state);
    Router::new().nest("/api/v1", api)
}

/// An API error: `application/problem+json`, with the field at fault when there is one.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    kind: &'static str,
    title: String,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<FieldError>,
    /// With a 409 for a first export: the preview whose problems are to be confirmed.
    #[serde(skip_serializing_if = "Option::is_none")]
    preview: Option<Box<crate::export::preview::Preview>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl Problem {
    pub fn new(status: StatusCode, title: &str, detail: impl Into<String>) -> Self {
        Self {
            kind: "about:blank",
            title: title.into(),
            status: status.as_u16(),
            detail: detail.into(),
            errors: Vec::new(),
            preview: None,
        }
    }

    /// 422 naming each field at fault.
    pub fn invalid(errors: Vec<FieldError>) -> Self {
        Self::invalid_because("Some fields are not right; see errors.", errors)
    }

    /// 422 naming each field at fault, with a detail of its own.
    pub fn invalid_because(detail: impl Into<String>, errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::new(StatusCode::UNPROCESSABLE_ENTITY, "Invalid request", detail)
        }
    }

    /// 409: a first export whose preview found members Mailchimp would refuse waits for
    /// `"confirm": true`.
    pub fn unconfirmed(preview: Box<crate::export::preview::Preview>) -> Self {
        let detail = format!(
            "This is the destination's first export and its last preview found {} member(s) Mailchimp would refuse. Look at `preview`, then send the request again with \"confirm\": true to export anyway.",
            preview.fail
        );
        Self {
            preview: Some(preview),
            ..Self::new(StatusCode::CONFLICT, "Confirm the first export", detail)
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Not Found",
            "There is no such resource.",
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(&self)).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}

impl From<sqlx::Error> for Problem {
    fn from(err: sqlx::Error) -> Self {
        tracing::error!(error = %err, "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "The request could not be completed.",
        )
    }
}

impl From<anyhow::Error> for Problem {
    fn from(err: anyhow::Error) -> Self {
        tracing::error!(error = format!("{err:#}"), "API request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            "The request could not be completed.",
        )
    }
}

/// The account behind a token, checked active on every call.
#[derive(Debug, Clone)]
pub struct ApiUser {
    pub id: i64,
    pub email: String,
    pub role: Role,
}

impl ApiUser {
    pub fn require(&self, role: Role) -> Result<(), Problem> {
        if self.role.allows(role) {
            Ok(())
        } else {
            Err(Problem::new(
                StatusCode::FORBIDDEN,
                "Forbidden",
                format!(
                    "This needs the {role} role; the token's user is {}.",
                    self.role
                ),
            ))
        }
    }
}

impl FromRequestParts<AppState> for ApiUser {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let unauthorized =
            |detail: &str| Problem::new(StatusCode::UNAUTHORIZED, "Unauthorized", detail);
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
            .ok_or_else(|| {
                unauthorized("Send a personal API token as Authorization: Bearer <token>.")
            })?;
        let pool = state.db.pool();
        let user_id = api_tokens::user_of(pool, token)
            .await?
            .ok_or_else(|| unauthorized("The token is unknown or was revoked."))?;
        let user = users::find_by_id(pool, user_id)
            .await?
            .filter(|u| u.is_active())
            .ok_or_else(|| unauthorized("The token's user is deactivated."))?;
        Ok(Self {
            id: user.id,
            email: user.email,
            role: user.role,
        })
    }
}

/// A caller whose token's user has at least the Contributor role (403 otherwise).
pub struct Contributor(pub ApiUser);

/// A caller whose token's user is an Administrator (403 otherwise).
pub struct Administrator(pub ApiUser);

impl FromRequestParts<AppState> for Contributor {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let user = ApiUser::from_request_parts(parts, state).await?;
        user.require(Role::Contributor)?;
        Ok(Self(user))
    }
}

impl FromRequestParts<AppState> for Administrator {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Problem> {
        let user = ApiUser::from_request_parts(parts, state).await?;
        user.require(Role::Administrator)?;
        Ok(Self(user))
    }
}

/// The token of `Bearer <token>`; the scheme's name is case-insensitive (RFC 7235 §2.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// A run and its counts.
#[utoipa::path(get, path = "/api/v1/runs/{id}", tag = "runs", params(("id" = i64, Path)),
    responses((status = 200, body = RunOut)))]
async fn run(
    State(state): State<AppState>,
    _user: ApiUser,
    PathId(id): PathId,
) -> Result<Json<RunOut>, Problem> {
    let run = runs::find(state.db.pool(), id)
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok(Json(RunOut::of(&run)))
}

/// Per-member results as CSV (cells a spreadsheet would run as a formula start with ').
#[utoipa::path(get, path = "/api/v1/runs/{id}/members.csv", tag = "runs", params(("id" = i64, Path)),
    responses((status = 200, body = String, content_type = "text/csv", description = "customer_id,email,outcome,title,detail")))]
async fn members_csv(
    State(state): State<AppState>,
    _user: ApiUser,
    PathId(id): PathId,
) -> Result<Response, Problem> {
    runs::find(state.db.pool(), id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let body = crate::store::results::csv(state.db.pool(), id, &Default::default()).await?;
    Ok(([(header::CONTENT_TYPE, "text/csv; charset=utf-8")], body).into_response())
}

/// Segments, with their rules and whether their members are being computed.
#[utoipa::path(get, path = "/api/v1/segments", tag = "segments",
    responses((status = 200, body = SegmentList)))]
async fn list_segments(
    State(state): State<AppState>,
    _user: ApiUser,
) -> Result<Json<SegmentList>, Problem> {
    let pool = state.db.pool();
    let catalogue = fields::as_catalogue(&fields::list(pool).await?);
    let segments = crate::store::segments::list(pool)
        .await?
        .iter()
        .map(|s| SegmentOut::of(s, &catalogue))
        .collect();
    Ok(Json(SegmentList { segments }))
}

/// Refresh every segment (Contributors and Administrators).
#[utoipa::path(post, path = "/api/v1/segments/refresh", tag = "segments",
    responses((status = 200, body = RefreshOut)))]
async fn refresh_segments(
    State(state): State<AppState>,
    _: Contributor,
) -> Result<Json<RefreshOut>, Problem> {
    let report = crate::segments::refresh(&state.db, None).await?;
    let segments = report
        .segments
        .iter()
        .map(|(name, outcome)| match outcome {
            crate::segments::RefreshOutcome::Refreshed { members, .. } => RefreshedSegment {
                name: name.clone(),
                member_count: Some(*members),
                errors: None,
            },
            crate::segments::RefreshOutcome::Invalid(errors) => RefreshedSegment {
                name: name.clone(),
                member_count: None,
                errors: Some(errors.iter().map(ToString::to_string).collect()),
            },
        })
        .collect();
    Ok(Json(RefreshOut {
        profiles_scanned: report.profiles_scanned,
        duration_ms: report.duration_ms,
        segments,
    }))
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for header in [
            "Bearer edt_x",
            "bearer edt_x",
            "BEARER edt_x",
            "bEaReR   edt_x ",
        ] {
            assert_eq!(bearer_token(header), Some("edt_x"), "{header}");
        }
        assert_eq!(bearer_token("Basic edt_x"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Beareredt_x"), None);
    }
}
