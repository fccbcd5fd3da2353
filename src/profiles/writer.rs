//! Writes parsed profiles in one transaction: a file is imported whole or not at all,
//! except for the rows it rejects, which are reported.

use tokio::sync::mpsc;

use crate::db::{Db, now_millis};
use crate::domain::FieldType;
use crate::store::imports::Rejection;
use crate::store::profiles::{self, ProfileWrite};
use crate::store::{fields, imports};

/// How many rejected rows a report keeps (the count is always complete).
pub const MAX_REJECTIONS_KEPT: usize = 1000;

/// What a parser hands to the writer.
pub enum Message {
    /// Sent once, first: fields to add to the catalogue, and whether rows carry the
    /// primary email field.
    Header {
        new_fields: Vec<(String, FieldType)>,
        sets_email_key: bool,
    },
    Batch(Batch),
    /// The file cannot be imported: nothing is written.
    Failed(crate::domain::Invalid),
}

/// Up to a few hundred rows with distinct customer IDs, and the rows rejected among them.
#[derive(Default)]
pub struct Batch {
    pub rows: Vec<ProfileWrite>,
    pub rejections: Vec<Rejection>,
    pub rows_read: u64,
    pub bytes_read: u64,
}

#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub rows_read: u64,
    pub created: u64,
    pub updated: u64,
    pub rejected: u64,
    pub rejections: Vec<Rejection>,
    pub new_fields: Vec<(String, FieldType)>,
    pub error: Option<String>,
}

/// Progress as rows and bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// Consumes the parser's messages, then records the import; returns the report's id.
pub async fn write(
    db: &Db,
    messages: mpsc::Receiver<Message>,
    file_name: &str,
    imported_by: Option<i64>,
    progress: Progress<'_>,
) -> anyhow::Result<(i64, Totals)> {
    // Noted before the transaction starts, removed after it ends: re-exports that read only
    // what changed never take a start later than this write's rows.
    let writing = crate::store::profile_writers::begin(db.pool()).await?;
    let written = write_all(db, messages, file_name, imported_by, progress).await;
    writing.end(db.pool()).await?;
    written
}

async fn write_all(
    db: &Db,
    mut messages: mpsc::Receiver<Message>,
    file_name: &str,
    imported_by: Option<i64>,
    progress: Progress<'_>,
) -> anyhow::Result<(i64, Totals)> {
    let started_at = now_millis();
    let mut totals = Totals::default();
    let mut tx = crate::db::begin_write(db.pool()).await?;
    let mut sets_email_key = false;
    while let Some(message) = messages.recv().await {
        match message {
            Message::Header {
                new_fields,
                sets_email_key: sets,
            } => {
                for (name, field_type) in &new_fields {
                    fields::add(&mut *tx, name, *field_type).await?;
                }
                // Another import may have added fields since the file's header was read.
                let count = fields::count(&mut *tx).await?;
                if count > fields::MAX_FIELDS as i64 {
                    tx.rollback().await?;
                    let failed = Totals {
                        error: Some(format!(
                            "Line 1: the console keeps at most {} fields and this file would make {count}. \
                             Nothing was imported: remove columns you do not need, or delete unused fields under Data > Fields.",
                            fields::MAX_FIELDS
                        )),
                        ..Totals::default()
                    };
                    let id = record(db, file_name, &failed, started_at, imported_by).await?;
                    return Ok((id, failed));
                }
                totals.new_fields = new_fields;
                sets_email_key = sets;
            }
            Message::Batch(batch) => {
                let ids: Vec<&str> = batch.rows.iter().map(|r| r.customer_id.as_str()).collect();
                let existing = profiles::existing(&mut tx, &ids).await?;
                profiles::upsert(
                    &mut tx,
                    db.backend(),
                    &batch.rows,
                    sets_email_key,
                    now_millis(),
                )
                .await?;
                totals.updated += existing.len() as u64;
                totals.created += (batch.rows.len() - existing.len()) as u64;
                totals.rows_read += batch.rows_read;
                totals.rejected += batch.rejections.len() as u64;
                let room = MAX_REJECTIONS_KEPT.saturating_sub(totals.rejections.len());
                totals
                    .rejections
                    .extend(batch.rejections.into_iter().take(room));
                progress(totals.rows_read, batch.bytes_read);
            }
            Message::Failed(reason) => {
                tx.rollback().await?;
                let failed = Totals {
                    rows_read: totals.rows_read,
                    error: Some(reason.into()),
                    ..Totals::default()
                };
                let id = record(db, file_name, &failed, started_at, imported_by).await?;
                return Ok((id, failed));
            }
        }
    }
    tx.commit().await?;
    db.analyze(&["profiles"]).await?;
    let id = record(db, file_name, &totals, started_at, imported_by).await?;
    Ok((id, totals))
}

async fn record(
    db: &Db,
    file_name: &str,
    totals: &Totals,
    started_at: i64,
    imported_by: Option<i64>,
) -> anyhow::Result<i64> {
    Ok(imports::insert(
        db.pool(),
        imports::NewImport {
            file_name,
            error: totals.error.as_deref(),
            rows_read: totals.rows_read,
            created: totals.created,
            updated: totals.updated,
            rejected: totals.rejected,
            rejections: &totals.rejections,
            started_at,
            finished_at: now_millis(),
            imported_by,
        },
    )
    .await?)
}
