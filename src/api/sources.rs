//! `/api/v1/sources` and `/api/v1/pulls`: list and add sources (Administrators), pull one
//! now (Contributors and Administrators) and follow the pull. The URL and credentials given
//! are sealed and never answered back.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::extract::{ApiBody, ApiJson, PathId};
use crate::api::{Administrator, ApiUser, Contributor, FieldError, Problem};
use crate::sources::pull::{self, NotStarted, PullRequest, Trigger};
use crate::sources::spec::SourceInput;
use crate::sources::{SaveError, SourceKind};
use crate::state::AppState;
use crate::store::Record;
use crate::store::audit::Actor;
use crate::store::imports::RowCounts;
use crate::store::sources::{self as store, PullRow, SourceRow};

/// A source as the API shows it (its URL without user name or password).
#[derive(Serialize, ToSchema)]
pub struct SourceOut {
    pub id: i64,
    pub name: String,
    /// `postgres`, `mysql` or `csv_url`.
    pub kind: String,
    pub url: String,
    pub query: Option<String>,
    pub id_column: String,
    pub changed_at_column: Option<String>,
    /// The fields this source provides.
    pub fields: Vec<String>,
    pub field_types: BTreeMap<String, String>,
    /// `delete` or `keep`.
    pub missing_profiles: String,
    pub full_every: i64,
    pub every_minutes: Option<i64>,
    /// Profiles it provides.
    pub profiles: i64,
    pub last_pull: Option<PullOut>,
}

#[derive(Serialize, ToSchema)]
pub struct SourceList {
    pub sources: Vec<SourceOut>,
}

/// A pull: running, or how it ended.
#[derive(Serialize, ToSchema)]
pub struct PullOut {
    pub id: i64,
    pub source_id: i64,
    /// `full` or `incremental`.
    pub mode: String,
    /// `manual`, `api`, `schedule`, `every` or `cli`.
    pub trigger: String,
    /// `running`, `succeeded`, `unchanged` (a CSV file not modified), `failed` or `interrupted`.
    pub status: String,
    #[serde(flatten)]
    pub counts: RowCounts,
    pub error: Option<String>,
    /// The report's page (its rejected rows), once written.
    pub report: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

impl PullOut {
    fn of(pull: &PullRow) -> Self {
        Self {
            id: pull.id,
            source_id: pull.source_id,
            mode: pull.mode.clone(),
            trigger: pull.trigger_kind.clone(),
            status: pull.status.clone(),
            counts: pull.counts(),
            error: pull.error.clone(),
            report: pull.import_id.map(|id| format!("/data/imports/{id}")),
            started_at: pull.started_at,
            finished_at: pull.finished_at,
        }
    }
}

async fn source_out(
    pool: &sqlx::AnyPool,
    source: SourceRow,
    last: Option<&PullRow>,
) -> Result<SourceOut, Problem> {
    Ok(SourceOut {
        profiles: store::profile_count(pool, source.id).await?,
        last_pull: last.map(PullOut::of),
        field_types: serde_json::from_str(&source.field_types).unwrap_or_default(),
        id: source.id,
        name: source.name,
        kind: source.kind,
        url: source.url_shown,
        query: source.query,
        id_column: source.id_column,
        changed_at_column: source.changed_at_column,
        fields: source.fields,
        missing_profiles: source.missing_profiles,
        full_every: source.full_every,
        every_minutes: source.every_minutes,
    })
}

/// Sources.
#[utoipa::path(get, path = "/api/v1/sources", tag = "sources",
    responses((status = 200, body = SourceList)))]
pub async fn list(
    State(state): State<AppState>,
    _user: ApiUser,
) -> Result<Json<SourceList>, Problem> {
    let pool = state.db.pool();
    let latest = store::latest_pulls(pool).await?;
    let mut sources = Vec::new();
    for source in store::list(pool).await? {
        let last = latest.iter().find(|p| p.source_id == source.id);
        sources.push(source_out(pool, source, last).await?);
    }
    Ok(Json(SourceList { sources }))
}

/// A file server's credentials: `{"kind": "bearer", "token": …}` or
/// `{"kind": "basic", "user": …, "password": …}`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialsIn {
    /// `none`, `bearer` or `basic`.
    kind: String,
    #[serde(default)]
    token: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
}

/// A new source. A database's user name and password go in its URL.
#[derive(Deserialize, ToSchema)]
pub struct NewSource {
    #[schema(required, value_type = String, max_length = 100)]
    name: Option<String>,
    /// `postgres`, `mysql` or `csv_url`.
    #[schema(required, value_type = String)]
    kind: Option<String>,
    /// `postgres://user:password@host:5432/db`, `mysql://…`, or `https://…/file.csv`.
    #[schema(required, value_type = String)]
    url: Option<String>,
    /// Databases: a SELECT returning one row per customer.
    query: Option<String>,
    /// The column holding the customer ID (required for databases; a CSV file's default
    /// is CustomerId or ID).
    id_column: Option<String>,
    /// Databases: a time or number column that grows when a row changes.
    changed_at_column: Option<String>,
    /// Types for new fields, e.g. `{"Age": "number"}`; others are inferred.
    #[serde(default)]
    field_types: BTreeMap<String, String>,
    /// `delete` (default) or `keep`.
    missing_profiles: Option<String>,
    /// A full pull after this many incremental ones (default 24).
    full_every: Option<i64>,
    /// Also pull every N minutes.
    every_minutes: Option<i64>,
    credentials: Option<CredentialsIn>,
}

impl ApiBody for NewSource {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "kind",
        "url",
        "query",
        "id_column",
        "changed_at_column",
        "field_types",
        "missing_profiles",
        "full_every",
        "every_minutes",
        "credentials",
    ];
}

impl NewSource {
    fn input(self) -> SourceInput {
        let credentials = self.credentials.unwrap_or(CredentialsIn {
            kind: "none".into(),
            token: String::new(),
            user: String::new(),
            password: String::new(),
        });
        SourceInput {
            name: self.name.unwrap_or_default(),
            kind: self.kind.unwrap_or_default(),
            url: self.url.unwrap_or_default(),
            auth: credentials.kind,
            token: credentials.token,
            user: credentials.user,
            password: credentials.password,
            query: self.query.unwrap_or_default(),
            id_column: self.id_column.unwrap_or_default(),
            changed_at_column: self.changed_at_column.unwrap_or_default(),
            field_types: self
                .field_types
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join("\n"),
            missing_profiles: self.missing_profiles.unwrap_or_default(),
            full_every: self.full_every.map(|n| n.to_string()).unwrap_or_default(),
            every_minutes: self
                .every_minutes
                .map(|n| n.to_string())
                .unwrap_or_default(),
        }
    }
}

/// Add a source (Administrators). It is read before it is saved: its columns must include
/// the customer ID, and no field it provides may have another source.
#[utoipa::path(post, path = "/api/v1/sources", tag = "sources", request_body = NewSource,
    responses((status = 201, body = SourceOut),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    Administrator(user): Administrator,
    ApiJson(body): ApiJson<NewSource>,
) -> Result<Response, Problem> {
    let spec = body.input().parse(None).map_err(|errors| {
        Problem::invalid(
            errors
                .into_iter()
                .map(|(field, message)| FieldError {
                    field: match field {
                        "auth" | "token" | "user" => {
                            format!("credentials.{field}").replace(".auth", ".kind")
                        }
                        other => other.to_owned(),
                    },
                    message,
                })
                .collect(),
        )
    })?;
    let actor = Actor {
        user_id: user.id,
        email: &user.email,
    };
    let id = match crate::sources::save(&state.sources, None, &spec, &actor).await {
        Ok(id) => id,
        Err(SaveError::Refused(refused)) => {
            return Err(Problem::invalid_because(
                refused.0.clone(),
                vec![FieldError {
                    field: if spec.kind == SourceKind::CsvUrl {
                        "url"
                    } else {
                        "query"
                    }
                    .into(),
                    message: refused.0,
                }],
            ));
        }
        Err(taken @ SaveError::NameTaken(_)) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "Conflict",
                taken.to_string(),
            ));
        }
        Err(SaveError::Internal(err)) => return Err(err.into()),
    };
    let pool = state.db.pool();
    let source = SourceRow::find(pool, id)
        .await?
        .ok_or_else(Problem::not_found)?;
    let out = source_out(pool, source, None).await?;
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/sources/{id}"))],
        Json(out),
    )
        .into_response())
}

/// Optional: no body pulls as due (incremental when the source allows it).
#[derive(Deserialize, ToSchema)]
pub struct PullRequestIn {
    /// A full pull even when an incremental one is due.
    #[serde(default)]
    full: bool,
}

impl ApiBody for PullRequestIn {
    const FIELDS: &'static [&'static str] = &["full"];
    const EMPTY_MEANS_DEFAULTS: bool = true;
}

/// Pull a source now (Contributors and Administrators); the pull runs in the background.
/// A pull already under way answers 409 naming it.
#[utoipa::path(post, path = "/api/v1/sources/{id}/pulls", tag = "sources", params(("id" = i64, Path)),
    request_body(content = Option<PullRequestIn>, description = "Optional: no body pulls as due"),
    responses((status = 202, body = PullOut),
        (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn start_pull(
    State(state): State<AppState>,
    Contributor(user): Contributor,
    PathId(id): PathId,
    ApiJson(request): ApiJson<PullRequestIn>,
) -> Result<Response, Problem> {
    let request = PullRequest {
        source_id: id,
        full: request.full,
        trigger: Trigger::Api,
        by: Some(user.id),
    };
    let pull_id = match pull::start(&state.sources, request).await? {
        Ok(pull_id) => pull_id,
        Err(NotStarted::NoSuchSource) => return Err(Problem::not_found()),
        Err(NotStarted::Running(running)) => {
            return Err(Problem::new(
                StatusCode::CONFLICT,
                "Conflict",
                format!(
                    "Pull {running} of this source is under way: follow it at /api/v1/pulls/{running}."
                ),
            ));
        }
    };
    let pull = store::find_pull(state.db.pool(), pull_id)
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok((
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/v1/pulls/{pull_id}"))],
        Json(PullOut::of(&pull)),
    )
        .into_response())
}

/// A pull and its counts.
#[utoipa::path(get, path = "/api/v1/pulls/{id}", tag = "sources", params(("id" = i64, Path)),
    responses((status = 200, body = PullOut)))]
pub async fn show_pull(
    State(state): State<AppState>,
    _user: ApiUser,
    PathId(id): PathId,
) -> Result<Json<PullOut>, Problem> {
    let pull = store::find_pull(state.db.pool(), id)
        .await?
        .ok_or_else(Problem::not_found)?;
    Ok(Json(PullOut::of(&state.sources.live.current(pull))))
}
