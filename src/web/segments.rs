//! Data > Segments: the list with counts and refresh times, the rule builder with a count
//! preview, static segments from a CSV of customer IDs, refresh and delete.

use askama::Template;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::session;
use crate::domain::segment_rules::{Condition, Match, Operator, SegmentName, SegmentRules};
use crate::domain::{FieldType, Invalid};
use crate::segments::{RefreshOutcome, preview_count, refresh};
use crate::state::AppState;
use crate::store::segments::{self, Definition, MemberRow, Segment};
use crate::store::{self as db_store, fields};
use crate::web::current_user::{CurrentUser, require_contributor};
use crate::web::page::{Nav, PageContext, render};
use crate::web::pairs::Pairs;
use crate::web::{AppError, format};

pub fn router() -> Router<AppState> {
    let read = Router::new()
        .route("/data/segments", get(list))
        .route("/data/segments/{id}", get(show));
    let write = Router::new()
        .route("/data/segments/new", get(new_form).post(submit_new))
        .route("/data/segments/{id}/edit", get(edit_form).post(submit_edit))
        .route(
            "/data/segments/{id}/delete",
            get(confirm_delete).post(delete),
        )
        .route("/data/segments/refresh", post(refresh_all))
        .route("/data/segments/{id}/refresh", post(refresh_one))
        .route("/data/segments/new-static", get(static_form))
        .route(
            "/data/segments/static",
            post(create_static).layer(DefaultBodyLimit::max(super::profiles::MAX_UPLOAD_BYTES)),
        )
        .route_layer(axum::middleware::from_fn(require_contributor));
    read.merge(write)
}

struct SegmentRow {
    id: i64,
    name: String,
    kind: &'static str,
    members: i64,
    refreshed: String,
    duration: String,
    unmatched: i64,
}

#[derive(Template)]
#[template(path = "data/segments.html")]
struct SegmentsPage {
    ctx: PageContext,
    rows: Vec<SegmentRow>,
}

fn duration(ms: Option<i64>) -> String {
    ms.map(|ms| {
        if ms < 1000 {
            format!("{ms} ms")
        } else {
            format!("{:.1} s", ms as f64 / 1000.0)
        }
    })
    .unwrap_or_default()
}

async fn list(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let rows = segments::list(state.db.pool())
        .await?
        .into_iter()
        .map(|s| SegmentRow {
            kind: if s.definition == Definition::Static {
                "Static list"
            } else {
                "Rules"
            },
            refreshed: format::optional_timestamp(s.last_refreshed_at),
            duration: duration(s.last_refresh_ms),
            id: s.id,
            name: s.name,
            members: s.member_count,
            unmatched: s.unmatched_ids,
        })
        .collect();
    Ok(render(&SegmentsPage {
        ctx: ctx.at(Nav::Segments),
        rows,
    })?
    .into_response())
}

#[derive(Template)]
#[template(path = "data/segment.html")]
struct SegmentPage {
    ctx: PageContext,
    segment: Segment,
    rules: Vec<String>,
    match_all: bool,
    refreshed: String,
    members: Vec<MemberRow>,
    next: Option<i64>,
}

#[derive(Deserialize)]
struct AfterQuery {
    after: Option<i64>,
}

async fn show(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
    Query(query): Query<AfterQuery>,
) -> Result<Response, AppError> {
    let pool = state.db.pool();
    let segment = segments::find(pool, id).await?.ok_or(AppError::NotFound)?;
    let (rules, match_all) = match &segment.definition {
        Definition::Rules(rules) => (
            rules
                .conditions
                .iter()
                .map(|c| {
                    if c.op.needs_value() {
                        format!("{} {} {}", c.field, c.op.label(), c.value)
                    } else {
                        format!("{} {}", c.field, c.op.label())
                    }
                })
                .collect(),
            rules.match_ == Match::All,
        ),
        Definition::Static => (Vec::new(), true),
    };
    let mut members = segments::members(pool, id, query.after.unwrap_or(0), 51).await?;
    let next = (members.len() > 50)
        .then(|| {
            members.pop();
            members.last().map(|m| m.profile_id)
        })
        .flatten();
    let page = SegmentPage {
        ctx: ctx.at(Nav::Segments),
        refreshed: format::optional_timestamp(segment.last_refreshed_at),
        segment,
        rules,
        match_all,
        members,
        next,
    };
    Ok(render(&page)?.into_response())
}

/// One condition row as the form shows it (values kept as typed).
struct RuleRow {
    field: String,
    op: String,
    value: String,
}

#[derive(Template)]
#[template(path = "data/segment_form.html")]
struct RuleBuilderPage {
    ctx: PageContext,
    action: String,
    name: String,
    match_any: bool,
    rows: Vec<RuleRow>,
    fields: Vec<(String, FieldType)>,
    operators: [Operator; 9],
    errors: Vec<String>,
    preview: Option<usize>,
}

async fn builder(
    state: &AppState,
    ctx: PageContext,
    action: String,
    form: BuilderForm,
    errors: Vec<String>,
    preview: Option<usize>,
) -> Result<RuleBuilderPage, AppError> {
    let fields = fields::list(state.db.pool())
        .await?
        .into_iter()
        .map(|f| (f.name, f.field_type))
        .collect();
    Ok(RuleBuilderPage {
        ctx: ctx.at(Nav::Segments),
        action,
        name: form.name,
        match_any: form.match_any,
        rows: form.rows,
        fields,
        operators: Operator::ALL,
        errors,
        preview,
    })
}

/// The rule builder's fields: `name`, `match`, and `field_N`/`op_N`/`value_N` per row.
struct BuilderForm {
    name: String,
    match_any: bool,
    rows: Vec<RuleRow>,
    action: String,
}

impl BuilderForm {
    fn parse(pairs: Vec<(String, String)>) -> Self {
        let pairs = Pairs::new(pairs);
        let rows = pairs
            .rows("field_")
            .into_iter()
            .map(|i| RuleRow {
                field: pairs.get(&format!("field_{i}")),
                op: pairs.get(&format!("op_{i}")),
                value: pairs.get(&format!("value_{i}")),
            })
            .collect();
        Self {
            name: pairs.get("name"),
            match_any: pairs.get("match") == "any",
            rows,
            action: pairs.get("action"),
        }
    }

    fn from_rules(name: &str, rules: &SegmentRules) -> Self {
        Self {
            name: name.to_owned(),
            match_any: rules.match_ == Match::Any,
            rows: rules
                .conditions
                .iter()
                .map(|c| RuleRow {
                    field: c.field.clone(),
                    op: c.op.as_str().into(),
                    value: c.value.clone(),
                })
                .collect(),
            action: String::new(),
        }
    }

    fn rules(&self) -> Result<SegmentRules, Vec<String>> {
        let mut errors = Vec::new();
        let mut conditions = Vec::new();
        for (i, row) in self.rows.iter().enumerate() {
            match row.op.parse::<Operator>() {
                Ok(op) => conditions.push(Condition {
                    field: row.field.clone(),
                    op,
                    value: row.value.trim().to_owned(),
                }),
                Err(_) => errors.push(format!("Condition {}: choose an operator.", i + 1)),
            }
        }
        if errors.is_empty() {
            Ok(SegmentRules {
                match_: if self.match_any {
                    Match::Any
                } else {
                    Match::All
                },
                conditions,
            })
        } else {
            Err(errors)
        }
    }
}

fn blank_row() -> RuleRow {
    RuleRow {
        field: String::new(),
        op: Operator::Equals.as_str().into(),
        value: String::new(),
    }
}

async fn new_form(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    let form = BuilderForm {
        name: String::new(),
        match_any: false,
        rows: vec![blank_row()],
        action: String::new(),
    };
    let page = builder(
        &state,
        ctx,
        "/data/segments/new".into(),
        form,
        Vec::new(),
        None,
    )
    .await?;
    Ok(render(&page)?.into_response())
}

async fn edit_form(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let segment = segments::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    let Definition::Rules(rules) = &segment.definition else {
        return Err(AppError::BadRequest(
            "A static segment is changed by uploading its list again.".into(),
        ));
    };
    let form = BuilderForm::from_rules(&segment.name, rules);
    let page = builder(
        &state,
        ctx,
        format!("/data/segments/{id}/edit"),
        form,
        Vec::new(),
        None,
    )
    .await?;
    Ok(render(&page)?.into_response())
}

async fn submit_new(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    submit(state, ctx, session, None, BuilderForm::parse(pairs)).await
}

async fn submit_edit(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    Path(id): Path<i64>,
    Form(pairs): Form<Vec<(String, String)>>,
) -> Result<Response, AppError> {
    segments::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    submit(state, ctx, session, Some(id), BuilderForm::parse(pairs)).await
}

/// The rule builder's buttons: add or remove a row, preview the count, or save.
async fn submit(
    state: AppState,
    ctx: PageContext,
    session: Session,
    id: Option<i64>,
    mut form: BuilderForm,
) -> Result<Response, AppError> {
    let action_url = id.map_or("/data/segments/new".to_owned(), |id| {
        format!("/data/segments/{id}/edit")
    });
    if form.action == "add" {
        form.rows.push(blank_row());
        return Ok(
            render(&builder(&state, ctx, action_url, form, Vec::new(), None).await?)?
                .into_response(),
        );
    }
    if let Some(index) = form
        .action
        .strip_prefix("remove:")
        .and_then(|n| n.parse::<usize>().ok())
    {
        if index < form.rows.len() {
            form.rows.remove(index);
        }
        return Ok(
            render(&builder(&state, ctx, action_url, form, Vec::new(), None).await?)?
                .into_response(),
        );
    }
    let rules = match form.rules() {
        Ok(rules) => rules,
        Err(errors) => return invalid(&state, ctx, action_url, form, errors).await,
    };
    let catalogue = fields::as_catalogue(&fields::list(state.db.pool()).await?);
    let compiled = match rules.compile(&catalogue) {
        Ok(compiled) => compiled,
        Err(errors) => {
            let errors = errors.into_iter().map(String::from).collect();
            return invalid(&state, ctx, action_url, form, errors).await;
        }
    };
    let count = preview_count(&state.db, compiled).await?;
    if form.action != "save" {
        return Ok(render(
            &builder(&state, ctx, action_url, form, Vec::new(), Some(count)).await?,
        )?
        .into_response());
    }
    let name = match SegmentName::parse(&form.name) {
        Ok(name) => name,
        Err(message) => {
            return invalid(&state, ctx, action_url, form, vec![message.into()]).await;
        }
    };
    let definition = Definition::Rules(rules);
    let saved = match id {
        Some(id) => segments::update(state.db.pool(), id, name.as_str(), &definition)
            .await
            .map(|_| id),
        None => segments::create(state.db.pool(), name.as_str(), &definition).await,
    };
    let id = match saved {
        Ok(id) => id,
        Err(err) if db_store::is_unique_violation(&err) => {
            return invalid(
                &state,
                ctx,
                action_url,
                form,
                vec![format!("Name: a segment named “{name}” already exists.")],
            )
            .await;
        }
        Err(err) => return Err(err.into()),
    };
    let report = refresh(&state.db, Some(&[id])).await?;
    let members = report.segments.iter().find_map(|(_, o)| match o {
        RefreshOutcome::Refreshed { members, .. } => Some(*members),
        RefreshOutcome::Invalid(_) => None,
    });
    tracing::info!(user_id = ctx.user.id, segment_id = id, "segment saved");
    session::set_flash(
        &session,
        format!(
            "Saved “{name}” and refreshed it: {} members.",
            members.unwrap_or(0)
        ),
    )
    .await?;
    Ok(Redirect::to(&format!("/data/segments/{id}")).into_response())
}

async fn invalid(
    state: &AppState,
    ctx: PageContext,
    action_url: String,
    form: BuilderForm,
    errors: Vec<String>,
) -> Result<Response, AppError> {
    let page = builder(state, ctx, action_url, form, errors, None).await?;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

#[derive(Template)]
#[template(path = "data/segment_delete.html")]
struct DeletePage {
    ctx: PageContext,
    segment: Segment,
}

async fn confirm_delete(
    State(state): State<AppState>,
    ctx: PageContext,
    Path(id): Path<i64>,
) -> Result<Response, AppError> {
    let segment = segments::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    Ok(render(&DeletePage {
        ctx: ctx.at(Nav::Segments),
        segment,
    })?
    .into_response())
}

async fn delete(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    let segment = segments::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    segments::delete(&mut tx, id).await?;
    tx.commit().await?;
    tracing::info!(user_id = user.id, segment_id = id, "segment deleted");
    session::set_flash(&session, format!("Deleted “{}”.", segment.name)).await?;
    Ok(Redirect::to("/data/segments"))
}

async fn refresh_all(
    State(state): State<AppState>,
    session: Session,
) -> Result<Redirect, AppError> {
    let report = refresh(&state.db, None).await?;
    session::set_flash(&session, summary(&report)).await?;
    Ok(Redirect::to("/data/segments"))
}

async fn refresh_one(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    segments::find(state.db.pool(), id)
        .await?
        .ok_or(AppError::NotFound)?;
    let report = refresh(&state.db, Some(&[id])).await?;
    session::set_flash(&session, summary(&report)).await?;
    Ok(Redirect::to("/data/segments"))
}

fn summary(report: &crate::segments::RefreshReport) -> String {
    let invalid: Vec<String> = report
        .segments
        .iter()
        .filter_map(|(name, o)| match o {
            RefreshOutcome::Invalid(errors) => Some(format!(
                "“{name}” was not refreshed: {}",
                Invalid::join(errors)
            )),
            RefreshOutcome::Refreshed { .. } => None,
        })
        .collect();
    let done = report.segments.len() - invalid.len();
    let mut text = format!(
        "Refreshed {done} segment(s) in {}.",
        duration(Some(report.duration_ms))
    );
    for line in invalid {
        text.push(' ');
        text.push_str(&line);
    }
    text
}

#[derive(Template)]
#[template(path = "data/static_segment_form.html")]
struct StaticFormPage {
    ctx: PageContext,
}

async fn static_form(ctx: PageContext) -> Result<Response, AppError> {
    Ok(render(&StaticFormPage {
        ctx: ctx.at(Nav::Segments),
    })?
    .into_response())
}

/// A static segment from a CSV of customer IDs: the first column, a header line optional.
async fn create_static(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    mut form: Multipart,
) -> Result<Response, AppError> {
    let bad = |m: String| AppError::BadRequest(m);
    let mut name = String::new();
    let mut content = Vec::new();
    while let Some(mut field) = form
        .next_field()
        .await
        .map_err(|e| bad(format!("The upload could not be read: {e}")))?
    {
        match field.name() {
            Some("name") => {
                name = crate::web::limits::multipart_text(&mut field, 1_000)
                    .await
                    .map_err(bad)?
            }
            Some("file") => {
                content = field
                    .bytes()
                    .await
                    .map_err(|e| bad(e.to_string()))?
                    .to_vec()
            }
            _ => {}
        }
    }
    let name = SegmentName::parse(&name).map_err(|e| bad(e.into()))?;
    let ids = customer_ids(&content).map_err(bad)?;
    if ids.is_empty() {
        return Err(bad("The file lists no customer IDs.".into()));
    }
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    let id = match segments::create(&mut *tx, name.as_str(), &Definition::Static).await {
        Ok(id) => id,
        Err(err) if db_store::is_unique_violation(&err) => {
            return Err(bad(format!("A segment named “{name}” already exists.")));
        }
        Err(err) => return Err(err.into()),
    };
    segments::set_static_ids(&mut tx, id, &ids).await?;
    tx.commit().await?;
    let report = refresh(&state.db, Some(&[id])).await?;
    tracing::info!(
        user_id = user.id,
        segment_id = id,
        ids = ids.len(),
        "static segment created"
    );
    let message = match report.segments.first() {
        Some((
            _,
            RefreshOutcome::Refreshed {
                members,
                unmatched_ids,
                ..
            },
        )) if *unmatched_ids > 0 => {
            format!(
                "Created “{name}”: {members} members; {unmatched_ids} listed IDs have no profile."
            )
        }
        Some((_, RefreshOutcome::Refreshed { members, .. })) => {
            format!("Created “{name}”: {members} members.")
        }
        _ => format!("Created “{name}”."),
    };
    session::set_flash(&session, message).await?;
    Ok(Redirect::to(&format!("/data/segments/{id}")).into_response())
}

/// Customer IDs from the first column of a CSV; a first line naming the column is skipped.
fn customer_ids(content: &[u8]) -> Result<Vec<String>, String> {
    let text =
        std::str::from_utf8(content).map_err(|_| "The file is not UTF-8 text.".to_owned())?;
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(text.as_bytes());
    let mut ids = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| format!("The file is not valid CSV: {e}"))?;
        let id = record
            .get(0)
            .unwrap_or_default()
            .trim()
            .trim_start_matches('\u{feff}')
            .trim()
            .to_owned();
        let looks_like_header =
            i == 0 && ["customerid", "customer_id", "id"].contains(&id.to_lowercase().as_str());
        if !id.is_empty() && !looks_like_header {
            ids.push(id);
        }
    }
    Ok(ids)
}
