//! Export destinations: drafts while being set up, active once saved.

use serde::{Deserialize, Serialize};
use sqlx::any::AnyRow;
use sqlx::{Any, AnyConnection, Executor, Row};

use crate::db::now_millis;
use crate::store::Record;

/// One merge field filled from one profile field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldMapping {
    pub tag: String,
    pub field: String,
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub id: i64,
    pub display_name: String,
    pub stage: Stage,
    pub owner_id: i64,
    pub consent_version: Option<String>,
    pub consent_at: Option<i64>,
    pub audience_id: String,
    /// Which Mailchimp it exports to.
    pub target: crate::domain::destination::Target,
    pub audience_name: Option<String>,
    pub audience_members: Option<i64>,
    /// The credential Mailchimp accepted for the audience, once one has.
    pub credential: Option<StoredCredential>,
    pub export_user_id: Option<i64>,
    pub email_field: Option<String>,
    pub field_mappings: Vec<FieldMapping>,
    pub new_member_status: String,
    /// Changed members are exported continuously, without a person or the schedule.
    pub keep_in_sync: bool,
    pub configured_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Where a destination is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Being set up by its owner; not exported.
    Draft,
    /// Saved: exported on demand and on schedule.
    Active,
    /// Removal was asked for; a clean-up in Mailchimp runs first.
    Removing,
}

/// A destination's way into Mailchimp, as stored.
#[derive(Debug, Clone)]
pub struct StoredCredential {
    pub method: crate::domain::destination::AuthMethod,
    /// The API key or access token, sealed with the console's key.
    pub sealed: String,
    pub api_base: String,
    /// The Mailchimp account, as the set-up page shows it.
    pub account: Option<String>,
    pub authenticated_at: Option<i64>,
}

impl Destination {
    pub fn is_active(&self) -> bool {
        self.stage == Stage::Active
    }

    pub fn is_removing(&self) -> bool {
        self.stage == Stage::Removing
    }

    pub fn is_authenticated(&self) -> bool {
        self.credential.is_some()
    }

    /// Every connect step of the set-up is done: Next may be taken.
    pub fn is_connected(&self) -> bool {
        self.consent_at.is_some() && self.is_authenticated() && self.export_user_id.is_some()
    }
}

const COLUMNS: &str = "id, display_name, status, owner_id, consent_version, consent_at, audience_id, \
    target, audience_name, audience_members, auth_method, credential_sealed, api_base, mailchimp_account, \
    authenticated_at, export_user_id, email_field, field_mappings, new_member_status, configured_at, \
    created_at, updated_at, keep_in_sync";

impl Record for Destination {
    const TABLE: &'static str = "destinations";
    const COLUMNS: &'static str = COLUMNS;
    fn from_row(row: AnyRow) -> sqlx::Result<Self> {
        let status: String = row.try_get("status")?;
        let mappings: String = row.try_get("field_mappings")?;
        Ok(Destination {
            id: row.try_get("id")?,
            display_name: row.try_get("display_name")?,
            stage: match status.as_str() {
                "active" => Stage::Active,
                "removing" => Stage::Removing,
                _ => Stage::Draft,
            },
            owner_id: row.try_get("owner_id")?,
            consent_version: row.try_get("consent_version")?,
            consent_at: row.try_get("consent_at")?,
            audience_id: row.try_get("audience_id")?,
            target: crate::domain::destination::Target::parse(&row.try_get::<String, _>("target")?)
                .unwrap_or_default(),
            audience_name: row.try_get("audience_name")?,
            audience_members: row.try_get("audience_members")?,
            credential: match (
                row.try_get::<Option<String>, _>("credential_sealed")?,
                row.try_get::<Option<String>, _>("api_base")?,
            ) {
                (Some(sealed), Some(api_base)) => Some(StoredCredential {
                    method: crate::domain::destination::AuthMethod::from_stored(
                        &row.try_get::<Option<String>, _>("auth_method")?
                            .unwrap_or_default(),
                    ),
                    sealed,
                    api_base,
                    account: row.try_get("mailchimp_account")?,
                    authenticated_at: row.try_get("authenticated_at")?,
                }),
                _ => None,
            },
            export_user_id: row.try_get("export_user_id")?,
            email_field: row.try_get("email_field")?,
            field_mappings: serde_json::from_str(&mappings).unwrap_or_default(),
            new_member_status: row.try_get("new_member_status")?,
            keep_in_sync: row.try_get::<i64, _>("keep_in_sync")? != 0,
            configured_at: row.try_get("configured_at")?,
            created_at: row.try_get("created_at")?,
            updated_at: row.try_get("updated_at")?,
        })
    }
}

pub async fn list<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<Destination>> {
    super::select(
        db,
        "WHERE removed_at IS NULL ORDER BY lower(display_name), id",
        &[],
    )
    .await
}

pub async fn find<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<Option<Destination>> {
    super::select_one(db, "WHERE id = $1 AND removed_at IS NULL", &[id.into()]).await
}

/// Starts a draft with its name, consent and audience; a taken name is a unique violation.
pub async fn create_draft<'e>(
    db: impl Executor<'e, Database = Any>,
    display_name: &str,
    audience_id: &str,
    target: crate::domain::destination::Target,
    owner_id: i64,
    consent_version: &str,
) -> sqlx::Result<i64> {
    let now = now_millis();
    sqlx::query_scalar(
        "INSERT INTO destinations (display_name, kind, status, owner_id, consent_version, consent_at, consent_by, \
         audience_id, target, created_at, updated_at) \
         VALUES ($1, 'mailchimp', 'draft', $2, $3, $4, $2, $5, $6, $4, $4) RETURNING id",
    )
    .bind(display_name)
    .bind(owner_id)
    .bind(consent_version)
    .bind(now)
    .bind(audience_id)
    .bind(target.as_str())
    .fetch_one(db)
    .await
}

/// Changes a draft's name, audience and Mailchimp (a new audience or Mailchimp drops any
/// authentication made for the old one).
pub async fn update_connect<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    display_name: &str,
    audience_id: &str,
    target: crate::domain::destination::Target,
    user_id: i64,
    consent_version: &str,
) -> sqlx::Result<()> {
    let now = now_millis();
    super::execute(db, "UPDATE destinations SET display_name = $1, consent_version = $2, consent_at = $3, consent_by = $4, \
         credential_sealed = CASE WHEN audience_id = $5 AND target = $7 THEN credential_sealed ELSE NULL END, \
         api_base = CASE WHEN audience_id = $5 AND target = $7 THEN api_base ELSE NULL END, \
         audience_id = $5, target = $7, updated_at = $3 WHERE id = $6", &[display_name.into(), consent_version.into(), now.into(), user_id.into(), audience_id.into(), id.into(), target.as_str().into()]).await
}

/// What authenticating with Mailchimp found.
pub struct Authentication<'a> {
    pub method: &'a str,
    pub credential_sealed: &'a str,
    pub api_base: &'a str,
    pub account: &'a str,
    pub audience_name: &'a str,
    pub audience_members: i64,
    pub by: i64,
}

pub async fn set_authentication<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    auth: &Authentication<'_>,
) -> sqlx::Result<()> {
    let now = now_millis();
    super::execute(db, "UPDATE destinations SET auth_method = $1, credential_sealed = $2, api_base = $3, mailchimp_account = $4, \
         audience_name = $5, audience_members = $6, authenticated_at = $7, authenticated_by = $8, updated_at = $7 \
         WHERE id = $9", &[auth.method.into(), auth.credential_sealed.into(), auth.api_base.into(), auth.account.into(), auth.audience_name.into(), auth.audience_members.into(), now.into(), auth.by.into(), id.into()]).await
}

pub async fn set_export_user<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    user_id: i64,
) -> sqlx::Result<()> {
    let now = now_millis();
    super::execute(db, "UPDATE destinations SET export_user_id = $1, export_user_at = $2, updated_at = $2 WHERE id = $3", &[user_id.into(), now.into(), id.into()]).await
}

/// The data matching and segments of a destination; saving makes a draft active.
pub struct Configuration<'a> {
    pub display_name: &'a str,
    pub email_field: &'a str,
    pub field_mappings: &'a [FieldMapping],
    pub segment_ids: &'a [i64],
    pub new_member_status: &'a str,
    pub keep_in_sync: bool,
}

pub async fn save_configuration(
    conn: &mut AnyConnection,
    id: i64,
    config: &Configuration<'_>,
) -> sqlx::Result<()> {
    let now = now_millis();
    sqlx::query(
        "UPDATE destinations SET display_name = $1, email_field = $2, field_mappings = $3, new_member_status = $4, \
         status = 'active', configured_at = COALESCE(configured_at, $5), updated_at = $5, keep_in_sync = $7 \
         WHERE id = $6",
    )
    .bind(config.display_name)
    .bind(config.email_field)
    .bind(serde_json::to_string(config.field_mappings).unwrap_or_else(|_| "[]".into()))
    .bind(config.new_member_status)
    .bind(now)
    .bind(id)
    .bind(i64::from(config.keep_in_sync))
    .execute(&mut *conn)
    .await?;
    sqlx::query("DELETE FROM destination_segments WHERE destination_id = $1")
        .bind(id)
        .execute(&mut *conn)
        .await?;
    for segment_id in config.segment_ids {
        sqlx::query(
            "INSERT INTO destination_segments (destination_id, segment_id) VALUES ($1, $2)",
        )
        .bind(id)
        .bind(*segment_id)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub async fn segment_ids<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT segment_id FROM destination_segments WHERE destination_id = $1 ORDER BY segment_id",
    )
    .bind(id)
    .fetch_all(db)
    .await
}

/// The names of the destinations that export a segment, by name (one being removed exports
/// nothing more and does not count).
pub async fn names_exporting<'e>(
    db: impl Executor<'e, Database = Any>,
    segment_id: i64,
) -> sqlx::Result<Vec<String>> {
    sqlx::query_scalar(
        "SELECT d.display_name FROM destinations d \
         JOIN destination_segments s ON s.destination_id = d.id \
         WHERE s.segment_id = $1 AND d.removed_at IS NULL AND d.status <> 'removing' \
         ORDER BY lower(d.display_name), d.id",
    )
    .bind(segment_id)
    .fetch_all(db)
    .await
}

/// How many distinct profiles the segments hold now (a profile in several counts once).
pub async fn distinct_profiles<'e>(
    db: impl Executor<'e, Database = Any>,
    segment_ids: &[i64],
) -> sqlx::Result<i64> {
    if segment_ids.is_empty() {
        return Ok(0);
    }
    let list = segment_ids
        .iter()
        .map(i64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    sqlx::query_scalar(&format!(
        "SELECT COUNT(DISTINCT m.profile_id) FROM segment_members m JOIN segments s \
         ON s.id = m.segment_id AND s.generation = m.generation WHERE m.segment_id IN ({list})"
    ))
    .fetch_one(db)
    .await
}

/// Hides a destination while its removal clean-up runs.
pub async fn mark_removing<'e>(db: impl Executor<'e, Database = Any>, id: i64) -> sqlx::Result<()> {
    super::execute(
        db,
        "UPDATE destinations SET status = 'removing', updated_at = $1 WHERE id = $2",
        &[now_millis().into(), id.into()],
    )
    .await
}

/// Every destination's name by id, removed ones included (a removed destination's name
/// says so): for pages that list runs.
pub async fn names<'e>(
    db: impl Executor<'e, Database = Any>,
) -> sqlx::Result<std::collections::HashMap<i64, String>> {
    let rows: Vec<(i64, String)> = sqlx::query_as("SELECT id, display_name FROM destinations")
        .fetch_all(db)
        .await?;
    Ok(rows.into_iter().collect())
}

/// Turns keeping the destination in sync on or off (the bench; people use the configure
/// page and the API, which save every setting at once).
pub async fn set_keep_in_sync<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
    on: bool,
) -> sqlx::Result<()> {
    let sql = "UPDATE destinations SET keep_in_sync = $1, updated_at = $2 WHERE id = $3";
    super::execute(
        db,
        sql,
        &[i64::from(on).into(), now_millis().into(), id.into()],
    )
    .await
}

/// The saved destinations kept in sync.
pub async fn kept_in_sync<'e>(db: impl Executor<'e, Database = Any>) -> sqlx::Result<Vec<i64>> {
    sqlx::query_scalar(
        "SELECT id FROM destinations WHERE keep_in_sync = 1 AND status = 'active' ORDER BY id",
    )
    .fetch_all(db)
    .await
}

/// When the members of the destination's segments last changed: a member joined or left
/// (a write, a deletion, a refresh that published other members), or a member's profile
/// was written. Writes to profiles outside its segments leave it.
pub async fn segments_changed_at<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<Option<i64>> {
    sqlx::query_scalar(
        "SELECT MAX(s.members_touched_at) FROM segments s \
         JOIN destination_segments ds ON ds.segment_id = s.id WHERE ds.destination_id = $1",
    )
    .bind(id)
    .fetch_one(db)
    .await
}

/// A destination's name, removed or not.
pub async fn name_of<'e>(
    db: impl Executor<'e, Database = Any>,
    id: i64,
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT display_name FROM destinations WHERE id = $1")
        .bind(id)
        .fetch_optional(db)
        .await
}

/// Removes a saved destination but keeps its runs: the credential, segment choices, ledger,
/// marks, audience checks and webhook (its secret and the events it delivered) go; the row stays, named "… (removed #id)" so that the name is
/// free again, and every lookup but [`names`] and [`name_of`] treats it as gone.
pub async fn retire(conn: &mut AnyConnection, id: i64) -> sqlx::Result<()> {
    for table in [
        "destination_segments",
        "export_ledger",
        "export_repeats",
        "export_marks",
        "audience_checks",
        "export_previews",
        "mailchimp_webhooks",
        "webhook_events",
    ] {
        super::delete_where(conn, table, "destination_id", id).await?;
    }
    super::execute(
        &mut *conn,
        "UPDATE destinations SET removed_at = $1, updated_at = $1, credential_sealed = NULL, \
         display_name = display_name || ' (removed #' || CAST(id AS TEXT) || ')' WHERE id = $2",
        &[now_millis().into(), id.into()],
    )
    .await
}

/// Deletes a draft with its credential and segment choices (a draft has no runs).
pub async fn delete(conn: &mut AnyConnection, id: i64) -> sqlx::Result<()> {
    super::delete_where(conn, "destination_segments", "destination_id", id).await?;
    super::delete_where(conn, "destinations", "id", id).await
}
