//! Data > Sources: databases and CSV files at a URL that profiles are pulled from. Everyone
//! sees them; Contributors pull now; Administrators add, edit and delete them. The form's
//! **Test connection** and **Preview rows** read the source without saving anything, and
//! keep everything typed (passwords sealed in the form, never shown again).

use askama::Template;
use axum::Form;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use tower_sessions::Session;

use crate::auth::session;
use crate::sources::pull::{self, NotStarted, PullRequest, Trigger};
use crate::sources::spec::{Credentials, SourceInput};
use crate::sources::{Sample, SaveError, SourceKind, SourceSpec};
use crate::state::AppState;
use crate::store::Record;
use crate::store::audit::Actor;
use crate::store::sources::{self as store, PullRow, SourceRow};
use crate::web::AppError;
use crate::web::format;
use crate::web::found::Found;
use crate::web::page::{Nav, PageContext, render};
use crate::web::pairs::Pairs;
use crate::web::pairs::StartForm;

/// Rows a preview shows.
const PREVIEW_ROWS: u64 = 20;

/// What every signed-in person may see, and Pull now (checked per handler).
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/data/sources", get(list))
        .route("/data/sources/{id}", get(show))
        .route("/data/sources/{id}/pull", post(pull_now))
        .route("/data/pulls/{id}", get(pull_page))
}

/// What only administrators may do.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/data/sources/new", get(new_form).post(submit))
        .route("/data/sources/{id}/edit", get(edit_form).post(submit))
        .route(
            "/data/sources/{id}/delete",
            get(confirm_delete).post(delete),
        )
}

struct ListRow {
    source: SourceRow,
    kind: &'static str,
    profiles: String,
    last: Option<PullView>,
}

#[derive(Template)]
#[template(path = "data/sources.html")]
struct ListPage {
    ctx: PageContext,
    rows: Vec<ListRow>,
}

async fn list(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let pool = state.db.pool();
    let latest = store::latest_pulls(pool).await?;
    let mut rows = Vec::new();
    for source in store::list(pool).await? {
        let last = latest
            .iter()
            .find(|p| p.source_id == source.id)
            .map(PullView::of);
        rows.push(ListRow {
            kind: kind_label(&source.kind),
            profiles: format::count(store::profile_count(pool, source.id).await?),
            last,
            source,
        });
    }
    Ok(render(&ListPage {
        ctx: ctx.at(Nav::Sources),
        rows,
    })?
    .into_response())
}

fn kind_label(kind: &str) -> &'static str {
    SourceKind::parse(kind).map_or("unknown", SourceKind::label)
}

/// A pull as pages show it.
pub struct PullView {
    pub pull: PullRow,
    pub started: String,
    pub took: String,
    pub counts: format::RowCountsShown,
    pub status: &'static str,
}

impl PullView {
    fn of(pull: &PullRow) -> Self {
        let took = match pull.finished_at {
            Some(end) => format::duration(end - pull.started_at),
            None => String::new(),
        };
        Self {
            started: format::timestamp(pull.started_at),
            took,
            counts: pull.counts().into(),
            status: match pull.status.as_str() {
                "running" => "Pulling",
                "succeeded" if pull.rejected > 0 => "Succeeded with rejected rows",
                "succeeded" => "Succeeded",
                "unchanged" => "Unchanged (the file was not modified)",
                "interrupted" => "Interrupted",
                _ => "Failed",
            },
            pull: pull.clone(),
        }
    }
}

#[derive(Template)]
#[template(path = "data/source.html")]
struct SourcePage {
    ctx: PageContext,
    source: SourceRow,
    kind: &'static str,
    profiles: String,
    field_types: String,
    pulls: Vec<PullView>,
    running: Option<i64>,
}

async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(source): Found<SourceRow>,
) -> Result<Response, AppError> {
    let (pool, id) = (state.db.pool(), source.id);
    let pulls: Vec<PullView> = store::pulls_of(pool, id, 20)
        .await?
        .into_iter()
        .map(|p| PullView::of(&state.sources.live.current(p)))
        .collect();
    let running = pulls
        .iter()
        .find(|p| p.pull.status == "running")
        .map(|p| p.pull.id);
    let types: std::collections::BTreeMap<String, String> =
        serde_json::from_str(&source.field_types).unwrap_or_default();
    Ok(render(&SourcePage {
        ctx: ctx.at(Nav::Sources),
        kind: kind_label(&source.kind),
        profiles: format::count(store::profile_count(pool, id).await?),
        field_types: types
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", "),
        pulls,
        running,
        source,
    })?
    .into_response())
}

async fn pull_now(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Path(id): Path<i64>,
    Form(form): Form<StartForm>,
) -> Result<Response, AppError> {
    if !ctx.user.can_contribute() {
        return Err(AppError::Forbidden);
    }
    let request = PullRequest {
        source_id: id,
        full: form.full(),
        trigger: Trigger::Manual,
        by: Some(ctx.user.id),
    };
    match pull::start(&state.sources, request).await? {
        Ok(pull_id) => Ok(Redirect::to(&format!("/data/pulls/{pull_id}")).into_response()),
        Err(NotStarted::NoSuchSource) => Err(AppError::NotFound),
        Err(NotStarted::Running(running)) => {
            session::set_flash(
                &session,
                "A pull of this source is already under way: here it is.",
            )
            .await?;
            Ok(Redirect::to(&format!("/data/pulls/{running}")).into_response())
        }
    }
}

#[derive(Template)]
#[template(path = "data/pull.html")]
struct PullPage {
    ctx: PageContext,
    view: PullView,
    source: SourceRow,
}

async fn pull_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(pull): Found<PullRow>,
) -> Result<Response, AppError> {
    let pool = state.db.pool();
    let pull = state.sources.live.current(pull);
    let source = SourceRow::find(pool, pull.source_id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(render(&PullPage {
        ctx: ctx.at(Nav::Sources),
        view: PullView::of(&pull),
        source,
    })?
    .into_response())
}

/// The form as typed; secrets travel sealed, never in clear.
#[derive(Default)]
struct Typed {
    kind: String,
    name: String,
    /// Without its password.
    url: String,
    query: String,
    id_column: String,
    changed_at_column: String,
    field_types: String,
    missing_profiles: String,
    full_every: String,
    every_minutes: String,
    auth: String,
    user: String,
    /// The password and token typed so far (sealed), so that a test keeps them.
    secret_sealed: String,
    password_set: bool,
    token_set: bool,
}

#[derive(serde::Serialize, serde::Deserialize, Default)]
struct Secrets {
    password: String,
    token: String,
}

/// What a test or a preview found.
enum Tried {
    Nothing,
    Connected(String),
    Problem(String),
    Sample(Sample),
}

#[derive(Template)]
#[template(path = "data/source_form.html")]
struct FormPage {
    ctx: PageContext,
    /// The source being edited.
    id: Option<i64>,
    typed: Typed,
    errors: Vec<(&'static str, String)>,
    found: Tried,
    kinds: Vec<(&'static str, &'static str, &'static str)>,
}

impl FormPage {
    fn is_error(&self, input: &str) -> bool {
        self.errors.iter().any(|(name, _)| *name == input)
    }

    fn kind_is(&self, kind: &str) -> bool {
        self.typed.kind == kind
    }
}

fn kinds() -> Vec<(&'static str, &'static str, &'static str)> {
    SourceKind::ALL
        .iter()
        .map(|k| (k.as_str(), k.label(), k.example()))
        .collect()
}

async fn new_form(ctx: PageContext) -> Result<Response, AppError> {
    let typed = Typed {
        kind: "postgres".into(),
        missing_profiles: "delete".into(),
        full_every: crate::sources::spec::DEFAULT_FULL_EVERY.to_string(),
        auth: "none".into(),
        ..Typed::default()
    };
    form_page(ctx, None, typed, Vec::new(), Tried::Nothing, StatusCode::OK)
}

async fn edit_form(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let (row, spec) = stored(&state, id).await?;
    let (user, password_set, token_set, auth) = match &spec.credentials {
        Credentials::None => (String::new(), false, false, "none"),
        Credentials::Bearer { .. } => (String::new(), false, true, "bearer"),
        Credentials::Basic { user, .. } => (user.clone(), true, false, "basic"),
    };
    let typed = Typed {
        kind: row.kind.clone(),
        name: row.name.clone(),
        url: without_password(&spec.url),
        query: row.query.clone().unwrap_or_default(),
        id_column: row.id_column.clone(),
        changed_at_column: row.changed_at_column.clone().unwrap_or_default(),
        field_types: spec.field_types_text(),
        missing_profiles: row.missing_profiles.clone(),
        full_every: row.full_every.to_string(),
        every_minutes: row.every_minutes.map(|m| m.to_string()).unwrap_or_default(),
        auth: auth.into(),
        user,
        secret_sealed: String::new(),
        password_set: password_set || spec.url.password().is_some(),
        token_set,
    };
    form_page(
        ctx,
        Some(id),
        typed,
        Vec::new(),
        Tried::Nothing,
        StatusCode::OK,
    )
}

async fn stored(state: &AppState, id: i64) -> Result<(SourceRow, SourceSpec), AppError> {
    let row = SourceRow::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    let spec = SourceSpec::from_row(&row, &state.secret_key)?;
    Ok((row, spec))
}

fn without_password(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_password(None);
    url.to_string()
}

fn form_page(
    ctx: PageContext,
    id: Option<i64>,
    typed: Typed,
    errors: Vec<(&'static str, String)>,
    found: Tried,
    status: StatusCode,
) -> Result<Response, AppError> {
    let page = FormPage {
        ctx: ctx.at(Nav::Sources),
        id,
        typed,
        errors,
        found,
        kinds: kinds(),
    };
    Ok((status, render(&page)?).into_response())
}

/// Test connection, Preview rows or Save: each reads the source; only Save stores it.
async fn submit(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    id: Option<Path<i64>>,
    pairs: Pairs,
) -> Result<Response, AppError> {
    let id = id.map(|Path(id)| id);
    let stored_spec = match id {
        Some(id) => Some(stored(&state, id).await?.1),
        None => None,
    };
    let (typed, input) = read_form(&state, &pairs, stored_spec.as_ref());
    let spec = match input.parse(stored_spec.as_ref()) {
        Ok(spec) => spec,
        Err(errors) => {
            return form_page(
                ctx,
                id,
                typed,
                errors,
                Tried::Nothing,
                StatusCode::UNPROCESSABLE_ENTITY,
            );
        }
    };
    let sources = &state.sources;
    let found = match pairs.get("action").as_str() {
        "test" => match crate::sources::test_connection(sources, &spec).await {
            Ok(said) => Tried::Connected(said),
            Err(err) => Tried::Problem(err.0),
        },
        "preview" => match crate::sources::preview(sources, &spec, PREVIEW_ROWS).await {
            Ok(sample) => Tried::Sample(sample),
            Err(err) => Tried::Problem(err.0),
        },
        _ => {
            let actor = Actor {
                user_id: ctx.user.id,
                email: &ctx.user.email,
            };
            match crate::sources::save(sources, id, &spec, &actor).await {
                Ok(saved) => {
                    session::set_flash(
                        &session,
                        format!(
                            "Saved “{}”. Pull now reads it; the scheduled refresh pulls it before refreshing the segments.",
                            spec.name
                        ),
                    )
                    .await?;
                    return Ok(Redirect::to(&format!("/data/sources/{saved}")).into_response());
                }
                Err(SaveError::Internal(err)) => return Err(err.into()),
                Err(refused) => Tried::Problem(refused.to_string()),
            }
        }
    };
    let status = match found {
        Tried::Problem(_) => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::OK,
    };
    form_page(ctx, id, typed, Vec::new(), found, status)
}

/// The form's inputs, with the secrets taken out of the URL and kept sealed.
fn read_form(state: &AppState, pairs: &Pairs, stored: Option<&SourceSpec>) -> (Typed, SourceInput) {
    let key = &state.secret_key;
    let mut secrets: Secrets = key
        .open(&pairs.get("secret_sealed"))
        .ok()
        .and_then(|json| serde_json::from_str(&json).ok())
        .unwrap_or_default();
    let typed_password = pairs.get("password");
    if !typed_password.is_empty() {
        secrets.password = typed_password;
    }
    let typed_token = pairs.get("token");
    if !typed_token.trim().is_empty() {
        secrets.token = typed_token.trim().to_owned();
    }
    let kind = match stored {
        Some(spec) => spec.kind.as_str().to_owned(),
        None => pairs.get("kind"),
    };
    let database = SourceKind::parse(&kind).is_some_and(SourceKind::is_database);
    let mut url_text = pairs.get("url").trim().to_owned();
    // A password typed in the URL moves to the sealed secrets; the URL shown keeps none.
    if let Ok(mut url) = url::Url::parse(&url_text) {
        if let Some(password) = url.password() {
            secrets.password = percent_decoded(password);
            let _ = url.set_password(None);
            url_text = url.to_string();
        }
    }
    let mut url_for_input = url_text.clone();
    if database {
        if let Ok(mut url) = url::Url::parse(&url_text) {
            let password = if secrets.password.is_empty() {
                // An edit that names the same user keeps the stored password.
                stored
                    .filter(|s| s.url.username() == url.username())
                    .and_then(|s| s.url.password().map(percent_decoded))
                    .unwrap_or_default()
            } else {
                secrets.password.clone()
            };
            if !password.is_empty() {
                let _ = url.set_password(Some(&password));
            }
            url_for_input = url.to_string();
        }
    }
    let auth = pairs.get("auth");
    let typed = Typed {
        kind: kind.clone(),
        name: pairs.get("name"),
        url: url_text,
        query: pairs.get("query"),
        id_column: pairs.get("id_column"),
        changed_at_column: pairs.get("changed_at_column"),
        field_types: pairs.get("field_types"),
        missing_profiles: pairs.get("missing_profiles"),
        full_every: pairs.get("full_every"),
        every_minutes: pairs.get("every_minutes"),
        auth: auth.clone(),
        user: pairs.get("user"),
        secret_sealed: if secrets.password.is_empty() && secrets.token.is_empty() {
            String::new()
        } else {
            key.seal(&serde_json::to_string(&secrets).unwrap_or_default())
        },
        password_set: !secrets.password.is_empty()
            || stored.is_some_and(|s| {
                s.url.password().is_some() || matches!(s.credentials, Credentials::Basic { .. })
            }),
        token_set: !secrets.token.is_empty()
            || stored.is_some_and(|s| matches!(s.credentials, Credentials::Bearer { .. })),
    };
    let input = SourceInput {
        name: typed.name.clone(),
        kind,
        url: if url_for_input.is_empty() {
            String::new()
        } else {
            url_for_input
        },
        auth,
        token: secrets.token.clone(),
        user: typed.user.clone(),
        password: if database {
            String::new()
        } else {
            secrets.password.clone()
        },
        query: typed.query.clone(),
        id_column: typed.id_column.clone(),
        changed_at_column: typed.changed_at_column.clone(),
        field_types: typed.field_types.clone(),
        missing_profiles: typed.missing_profiles.clone(),
        full_every: typed.full_every.clone(),
        every_minutes: typed.every_minutes.clone(),
    };
    (typed, input)
}

fn percent_decoded(raw: &str) -> String {
    url::form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| raw.to_owned())
}

#[derive(Template)]
#[template(path = "data/source_delete.html")]
struct DeletePage {
    ctx: PageContext,
    source: SourceRow,
    profiles: String,
}

async fn confirm_delete(
    State(state): State<AppState>,
    ctx: PageContext,
    Found(source): Found<SourceRow>,
) -> Result<Response, AppError> {
    let profiles = store::profile_count(state.db.pool(), source.id).await?;
    Ok(render(&DeletePage {
        ctx: ctx.at(Nav::Sources),
        profiles: format::count(profiles),
        source,
    })?
    .into_response())
}

async fn delete(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Found(source): Found<SourceRow>,
) -> Result<Response, AppError> {
    let actor = Actor {
        user_id: ctx.user.id,
        email: &ctx.user.email,
    };
    let name = source.name;
    if !crate::sources::delete(&state.db, source.id, &actor).await? {
        return Err(AppError::NotFound);
    }
    session::set_flash(
        &session,
        format!("Deleted the source “{name}”. Its profiles stay until you delete them."),
    )
    .await?;
    Ok(Redirect::to("/data/sources").into_response())
}
