//! The rule builder: condition rows kept as typed across every reload, the count
//! preview, and saving a segment (refreshed at once) through the path the API takes too.

use super::*;

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
    fn parse(pairs: Pairs) -> Self {
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
                Ok(op) => conditions.push(Condition::new(row.field.clone(), op, &row.value)),
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

pub(super) async fn new_form(
    State(state): State<AppState>,
    ctx: PageContext,
) -> Result<Response, AppError> {
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

pub(super) async fn edit_form(
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

/// The rule builder's buttons: add or remove a row, preview the count, or save.
pub(super) async fn submit(
    State(state): State<AppState>,
    ctx: PageContext,
    session: Session,
    id: Option<Path<i64>>,
    pairs: Pairs,
) -> Result<Response, AppError> {
    let id = id.map(|Path(id)| id);
    if let Some(id) = id {
        segments::find(state.db.pool(), id)
            .await?
            .ok_or(AppError::NotFound)?;
    }
    let mut form = BuilderForm::parse(pairs);
    let action_url = action_url(id);
    if form.action == "add" {
        form.rows.push(blank_row());
        return Ok(
            render(&builder(&state, ctx, action_url, form, Vec::new(), None).await?)?
                .into_response(),
        );
    }
    if crate::web::pairs::remove_row(&form.action, "remove:", &mut form.rows) {
        return Ok(
            render(&builder(&state, ctx, action_url, form, Vec::new(), None).await?)?
                .into_response(),
        );
    }
    let rules = match form.rules() {
        Ok(rules) => rules,
        Err(errors) => return invalid(&state, ctx, action_url, form, errors).await,
    };
    if form.action == "save" {
        return save(state, ctx, session, id, form, rules).await;
    }
    let catalogue = fields::as_catalogue(&fields::list(state.db.pool()).await?);
    let compiled = match rules.compile(&catalogue) {
        Ok(compiled) => compiled,
        Err(errors) => {
            let errors = errors.into_iter().map(String::from).collect();
            return invalid(&state, ctx, action_url, form, errors).await;
        }
    };
    let count = preview_count(&state.db, compiled).await?;
    Ok(
        render(&builder(&state, ctx, action_url, form, Vec::new(), Some(count)).await?)?
            .into_response(),
    )
}

/// Save: the same path as the API's, refreshed in the background; refusals are shown on
/// the form as typed.
async fn save(
    state: AppState,
    ctx: PageContext,
    session: Session,
    id: Option<i64>,
    form: BuilderForm,
    rules: SegmentRules,
) -> Result<Response, AppError> {
    let user_id = ctx.user.id;
    let saved = match define::save_rules(&state.db, user_id, id, &form.name, rules).await {
        Ok(saved) => saved,
        Err(define::SaveError::Refused(refusals)) => {
            let errors = refusals.iter().map(ToString::to_string).collect();
            return invalid(&state, ctx, action_url(id), form, errors).await;
        }
        Err(define::SaveError::NotFound) => return Err(AppError::NotFound),
        Err(err @ define::SaveError::Static(_)) => {
            return Err(AppError::BadRequest(err.to_string()));
        }
        Err(define::SaveError::Database(err)) => return Err(err.into()),
    };
    session::set_flash(
        &session,
        format!("Saved “{}”; its members are being computed.", saved.name),
    )
    .await?;
    Ok(Redirect::to(&format!("/data/segments/{}", saved.id)).into_response())
}

/// Where the form posts: the new segment's or the edited one's.
fn action_url(id: Option<i64>) -> String {
    id.map_or("/data/segments/new".to_owned(), |id| {
        format!("/data/segments/{id}/edit")
    })
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
