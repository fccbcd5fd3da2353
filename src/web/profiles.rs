//! Data > Profiles: the paged, searchable list, a profile's page, CSV upload and import reports.

use askama::Template;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value;
use std::io::Write;

use crate::domain::Role;
use crate::profiles::{ImportOptions, jobs};
use crate::state::AppState;
use crate::store::import_jobs::{self, ImportJob, Phase};
use crate::store::imports::{self, ImportRecord};
use crate::store::profiles::{self, Cursor, Profile};
use crate::store::segments::Definition;
use crate::store::{Record, fields, segments};
use crate::web::current_user::{CurrentUser, require};
use crate::web::found::Found;
use crate::web::limits::{MAX_FIELD_CHARS, multipart_text};
use crate::web::page::{Nav, PageContext, render};
use crate::web::{AppError, format};

const PAGE_SIZE: i64 = 50;
/// The largest CSV file the upload accepts.
pub const MAX_UPLOAD_BYTES: usize = 1024 * 1024 * 1024;

pub fn router() -> Router<AppState> {
    let read = Router::new()
        .route("/data/profiles", get(list))
        .route("/data/profiles/{id}", get(show))
        .route("/data/imports/{id}", get(report))
        .route("/data/import-jobs/{id}", get(job_page))
        .route("/data/import-jobs/{id}/progress.json", get(job_progress));
    let write = Router::new()
        .route(
            "/data/profiles/import",
            post(upload).layer(DefaultBodyLimit::max(MAX_UPLOAD_BYTES)),
        )
        .route_layer(axum::middleware::from_fn_with_state(
            Role::Contributor,
            require,
        ));
    read.merge(write)
}

struct Row {
    id: i64,
    customer_id: String,
    name: String,
    email: String,
    updated: String,
}

#[derive(Template)]
#[template(path = "data/profiles.html")]
struct ProfilesPage {
    ctx: PageContext,
    total: i64,
    search: String,
    /// The search found profiles by the start of their name.
    by_name: bool,
    rows: Vec<Row>,
    previous: Option<i64>,
    next: Option<i64>,
    imports: Vec<ImportRecord>,
}

#[derive(Deserialize)]
struct ListQuery {
    q: Option<String>,
    after: Option<i64>,
    before: Option<i64>,
}

/// "Ada" looks for a first or a last name starting so; "Ada Love" for first name "Ada…" and
/// last name "Love…". None when the profiles have no name fields.
fn name_search<'a>(
    text: &'a str,
    first: Option<&'a str>,
    last: Option<&'a str>,
) -> Option<profiles::NameSearch<'a>> {
    let mut words = text.splitn(2, char::is_whitespace).map(str::trim);
    let head = words.next().filter(|w| !w.is_empty())?;
    let rest = words.next().filter(|w| !w.is_empty());
    match (first, last, rest) {
        (Some(first), Some(last), Some(rest)) => Some(profiles::NameSearch {
            all_of: vec![(first, head), (last, rest)],
            or: None,
        }),
        (Some(first), Some(last), None) => Some(profiles::NameSearch {
            all_of: vec![(first, head)],
            or: Some((last, head)),
        }),
        (Some(field), None, _) | (None, Some(field), _) => Some(profiles::NameSearch {
            all_of: vec![(field, text.trim())],
            or: None,
        }),
        (None, None, _) => None,
    }
}

fn text(attributes: &serde_json::Map<String, Value>, field: &str) -> String {
    match attributes.get(field) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    }
}

async fn list(
    State(state): State<AppState>,
    ctx: PageContext,
    Query(query): Query<ListQuery>,
) -> Result<Response, AppError> {
    let pool = state.db.pool();
    let search = query.q.as_deref().map(str::trim).filter(|q| !q.is_empty());
    let cursor = match (query.after, query.before) {
        (Some(after), _) => Cursor::After(after),
        (None, Some(before)) => Cursor::Before(before),
        _ => Cursor::First,
    };
    // Which profile fields hold first and last names (as Data matching pairs them).
    let catalogue: Vec<(String, crate::domain::FieldType)> = fields::list(pool)
        .await?
        .into_iter()
        .map(|f| (f.name, f.field_type))
        .collect();
    let first_field = crate::matching::field_for("FNAME", &catalogue);
    let last_field = crate::matching::field_for("LNAME", &catalogue);
    // One more than a page tells whether there is a next one. A search is a customer ID or
    // email prefix (indexed); when nothing starts so, the start of a name.
    let mut found = profiles::page(pool, search, cursor, PAGE_SIZE + 1).await?;
    let mut by_name = false;
    if let (Some(text), true) = (search, found.is_empty()) {
        if let Some(name) = name_search(text, first_field.as_deref(), last_field.as_deref()) {
            found = profiles::page_by_name(pool, &name, cursor, PAGE_SIZE + 1).await?;
            by_name = true;
        }
    }
    let more = found.len() as i64 > PAGE_SIZE;
    if more {
        match cursor {
            Cursor::Before(_) => {
                found.remove(0);
            }
            _ => {
                found.pop();
            }
        }
    }
    let rows: Vec<Row> = found
        .into_iter()
        .map(|p| {
            let attributes: serde_json::Map<String, Value> =
                serde_json::from_str(&p.attributes).unwrap_or_default();
            let name = format!(
                "{} {}",
                first_field
                    .as_deref()
                    .map(|f| text(&attributes, f))
                    .unwrap_or_default(),
                last_field
                    .as_deref()
                    .map(|f| text(&attributes, f))
                    .unwrap_or_default()
            )
            .trim()
            .to_owned();
            Row {
                id: p.id,
                customer_id: p.customer_id,
                name,
                email: p.email_key.unwrap_or_default(),
                updated: format::timestamp(p.updated_at),
            }
        })
        .collect();
    let (previous, next) = match cursor {
        Cursor::First => (None, more.then(|| rows.last().map(|r| r.id)).flatten()),
        Cursor::After(_) => (
            rows.first().map(|r| r.id),
            more.then(|| rows.last().map(|r| r.id)).flatten(),
        ),
        Cursor::Before(_) => (
            more.then(|| rows.first().map(|r| r.id)).flatten(),
            rows.last().map(|r| r.id),
        ),
    };
    let page = ProfilesPage {
        ctx: ctx.at(Nav::Profiles),
        total: profiles::count(pool).await?,
        search: search.unwrap_or_default().to_owned(),
        by_name,
        rows,
        previous,
        next,
        imports: imports::recent(pool, 5).await?,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Template)]
#[template(path = "data/profile.html")]
struct ProfilePage {
    ctx: PageContext,
    id: i64,
    customer_id: String,
    values: Vec<(String, String, String)>,
    segments: Vec<String>,
    created: String,
    updated: String,
}

async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(profile): Found<Profile>,
) -> Result<Response, AppError> {
    let (pool, id) = (state.db.pool(), profile.id);
    let attributes: serde_json::Map<String, Value> =
        serde_json::from_str(&profile.attributes).unwrap_or_default();
    let values = fields::list(pool)
        .await?
        .into_iter()
        .map(|f| {
            let value = text(&attributes, &f.name);
            (f.name, f.field_type.to_string(), value)
        })
        .collect();
    let page = ProfilePage {
        ctx: ctx.at(Nav::Profiles),
        id,
        customer_id: profile.customer_id,
        values,
        segments: segments::of_profile(pool, id).await?,
        created: format::timestamp(profile.created_at),
        updated: format::timestamp(profile.updated_at),
    };
    Ok(render(&page)?.into_response())
}

/// The longest file name an upload may have (most file systems' limit).
const MAX_FILE_NAME_CHARS: usize = 255;

/// Streams the uploaded file to a temporary file, then imports it.
async fn upload(
    State(state): State<AppState>,
    user: CurrentUser,
    mut form: Multipart,
) -> Result<Response, AppError> {
    let mut file = tempfile::NamedTempFile::new().map_err(anyhow::Error::from)?;
    let mut file_name = None;
    let mut options = ImportOptions::default();
    let mut refresh_segments = false;
    let bad = |message: String| AppError::BadRequest(message);
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("The upload could not be read: {e}")))?
    {
        match field.name() {
            Some("file") => {
                let name = field.file_name().unwrap_or("upload.csv");
                if name.chars().count() > MAX_FILE_NAME_CHARS {
                    return Err(bad(format!(
                        "The file's name is longer than {MAX_FILE_NAME_CHARS} characters; rename it and upload it again."
                    )));
                }
                file_name = Some(name.to_owned());
                while let Some(chunk) = field
                    .chunk()
                    .await
                    .map_err(|e| bad(format!("The upload could not be read: {e}")))?
                {
                    file.write_all(&chunk).map_err(anyhow::Error::from)?;
                }
            }
            Some("types") => {
                let value = multipart_text(&mut field, MAX_FIELD_CHARS)
                    .await
                    .map_err(bad)?;
                options.types = crate::domain::field::parse_types(&value).map_err(bad)?;
            }
            Some("refresh_segments") => {
                let value = multipart_text(&mut field, 10).await.map_err(bad)?;
                refresh_segments = value == "yes";
            }
            Some("id_column") => {
                let value = multipart_text(&mut field, 100).await.map_err(bad)?;
                options.id_column = Some(value.trim().to_owned()).filter(|v| !v.is_empty());
            }
            _ => {}
        }
    }
    let Some(file_name) = file_name else {
        return Err(bad("Choose a CSV file to import.".into()));
    };
    file.flush().map_err(anyhow::Error::from)?;
    let upload = jobs::Upload {
        file,
        file_name,
        options,
        imported_by: Some(user.id),
        refresh_segments,
    };
    let id = jobs::start(&state.db, upload).await?;
    tracing::info!(user_id = user.id, job_id = id, "import started");
    Ok(Redirect::to(&format!("/data/import-jobs/{id}")).into_response())
}

/// How far an import job got, as its page polls it.
#[derive(serde::Serialize)]
struct JobProgress {
    phase: &'static str,
    rows_read: i64,
    bytes_read: i64,
    bytes_total: i64,
    /// Where to go once the job is done (the import's report).
    done_url: Option<String>,
}

fn job_progress_of(job: &ImportJob) -> JobProgress {
    JobProgress {
        phase: job.phase.as_str(),
        rows_read: job.rows_read,
        bytes_read: job.bytes_read.min(job.bytes_total),
        bytes_total: job.bytes_total,
        done_url: match (job.phase, job.import_id) {
            (Phase::Done | Phase::Interrupted, Some(id)) => Some(format!("/data/imports/{id}")),
            _ => None,
        },
    }
}

async fn load_job(state: &AppState, id: i64) -> Result<ImportJob, AppError> {
    ImportJob::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)
}

async fn job_progress(
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let job = load_job(&state, id).await?;
    Ok(axum::Json(job_progress_of(&job)).into_response())
}

#[derive(Template)]
#[template(path = "data/import_job.html")]
struct JobPage {
    ctx: PageContext,
    job: ImportJob,
    progress: JobProgress,
    rows: String,
    read: String,
    total: String,
}

/// An import under way: rows and bytes read so far, then the report once it is done.
async fn job_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let job = load_job(&state, id).await?;
    let progress = job_progress_of(&job);
    if let Some(done) = &progress.done_url {
        return Ok(Redirect::to(done).into_response());
    }
    let page = JobPage {
        ctx: ctx.at(Nav::Profiles),
        rows: format::count(job.rows_read),
        read: format::count(progress.bytes_read / 1024),
        total: format::count(job.bytes_total / 1024),
        progress,
        job,
    };
    Ok(render(&page)?.into_response())
}

#[derive(Template)]
#[template(path = "data/import.html")]
struct ImportPage {
    ctx: PageContext,
    import: ImportRecord,
    started: String,
    seconds: String,
    more_rejected: i64,
    /// The background job that made it, when it ran as one.
    job: Option<ImportJob>,
    /// The segments include the import: they follow each write, or were (or are being)
    /// refreshed after it.
    refreshed: bool,
    counts: format::RowCountsShown,
}

async fn report(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(import): Found<ImportRecord>,
) -> Result<Response, AppError> {
    let id = import.id;
    let job = import_jobs::of_import(state.db.pool(), id).await?;
    // Segments follow each import as it is written; only one whose definition changed
    // since its last refresh waits for the next.
    let catalogue = fields::as_catalogue(&fields::list(state.db.pool()).await?);
    let lagging = segments::list(state.db.pool()).await?.iter().any(|s| {
        crate::segments::is_refreshing(s, &catalogue)
            || (s.definition == Definition::Static && !crate::segments::is_current(s, &catalogue))
    });
    let page = ImportPage {
        ctx: ctx.at(Nav::Profiles),
        started: format::timestamp(import.started_at),
        seconds: format!(
            "{:.1}",
            (import.finished_at - import.started_at) as f64 / 1000.0
        ),
        more_rejected: import.counts.rejected as i64 - import.rejections.len() as i64,
        refreshed: job.as_ref().is_some_and(|j| j.refresh_segments) || !lagging,
        job,
        counts: import.counts.into(),
        import,
    };
    Ok(render(&page)?.into_response())
}
