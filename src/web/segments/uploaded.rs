//! Static segments: a CSV of customer IDs, the first column, a header line optional.

use super::*;

#[derive(Template)]
#[template(path = "data/static_segment_form.html")]
struct StaticFormPage {
    ctx: PageContext,
}

pub(super) async fn static_form(ctx: PageContext) -> Result<Response, AppError> {
    Ok(render(&StaticFormPage {
        ctx: ctx.at(Nav::Segments),
    })?
    .into_response())
}

/// A static segment from a CSV of customer IDs: the first column, a header line optional.
pub(super) async fn create_static(
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
