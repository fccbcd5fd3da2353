//! Writes parsed profiles in one transaction: a file (or a source's pull) is imported
//! whole or not at all, except for the rows it rejects, which are reported. A row that
//! changes nothing is counted unchanged and not written. A source's full pull also deletes,
//! in the same transaction, the profiles of that source it did not return.

use tokio::sync::mpsc;

use crate::db::{Db, now_millis};
use crate::domain::FieldType;
use crate::segments::follow::follow;
use crate::store::imports::Rejection;
use crate::store::imports::RowCounts;
use crate::store::profiles::{self, Outcome, ProfileWrite, Which};
use crate::store::{fields, imports, sources};

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
    pub counts: RowCounts,
    pub rejections: Vec<Rejection>,
    pub new_fields: Vec<(String, FieldType)>,
    pub error: Option<String>,
}

/// Progress as rows and bytes read so far.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Send + Sync);

/// Progress as the counts so far and bytes read.
pub type Counting<'a> = &'a (dyn Fn(&Totals, u64) + Send + Sync);

/// The source a pull writes for.
#[derive(Debug, Clone)]
pub struct SourceLink {
    pub source_id: i64,
    /// Delete the source's profiles that this pull did not return (a full pull of a source
    /// set to delete them).
    pub delete_missing: bool,
    /// The fields the source provides: cleared from a missing profile that another source
    /// also provides, instead of deleting it.
    pub fields: Vec<String>,
}

/// Whose write this is and where its report goes.
pub struct Target<'a> {
    pub file_name: &'a str,
    pub imported_by: Option<i64>,
    pub source: Option<SourceLink>,
}

/// Consumes the parser's messages, then records the import; returns the report's id.
pub async fn write(
    db: &Db,
    messages: mpsc::Receiver<Message>,
    file_name: &str,
    imported_by: Option<i64>,
    progress: Progress<'_>,
) -> anyhow::Result<(i64, Totals)> {
    let target = Target {
        file_name,
        imported_by,
        source: None,
    };
    write_counting(db, messages, target, &|totals, bytes| {
        progress(totals.counts.rows_read, bytes)
    })
    .await
}

/// [`write`], reporting the counts as they grow, for an import or a source's pull.
pub async fn write_counting(
    db: &Db,
    messages: mpsc::Receiver<Message>,
    target: Target<'_>,
    progress: Counting<'_>,
) -> anyhow::Result<(i64, Totals)> {
    // Noted before the transaction starts, removed after it ends: re-exports that read only
    // what changed never take a start later than this write's rows.
    let writing = crate::store::profile_writers::begin(db.pool()).await?;
    let written = write_all(db, messages, &target, progress).await;
    writing.end(db.pool()).await?;
    written
}

/// How one import's batches are written.
struct BatchWrite<'a> {
    db: &'a Db,
    target: &'a Target<'a>,
    /// The file sets the profiles' email key (it has the email field's column).
    sets_email_key: bool,
}

impl BatchWrite<'_> {
    /// Writes a batch's profiles, links them to their source, and counts what it did.
    async fn write(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        batch: Batch,
        seen: &mut Seen,
        totals: &mut Totals,
    ) -> anyhow::Result<()> {
        let outcomes = profiles::write(
            tx,
            self.db.backend(),
            &batch.rows,
            self.sets_email_key,
            now_millis(),
        )
        .await?;
        let changed: Vec<&str> = batch
            .rows
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| **outcome != Outcome::Unchanged)
            .map(|(row, _)| row.customer_id.as_str())
            .collect();
        follow(tx, self.db.backend(), Which::Customers(&changed)).await?;
        for outcome in outcomes {
            match outcome {
                Outcome::Created => totals.counts.created += 1,
                Outcome::Updated => totals.counts.updated += 1,
                Outcome::Unchanged => totals.counts.unchanged += 1,
            }
        }
        if let Some(link) = &self.target.source {
            let ids: Vec<&str> = batch.rows.iter().map(|r| r.customer_id.as_str()).collect();
            for id in sources::link(tx, link.source_id, &ids).await? {
                seen.insert(id);
            }
        }
        totals.counts.rows_read += batch.rows_read;
        totals.counts.rejected += batch.rejections.len() as u64;
        let room = MAX_REJECTIONS_KEPT.saturating_sub(totals.rejections.len());
        totals
            .rejections
            .extend(batch.rejections.into_iter().take(room));
        Ok(())
    }
}

async fn write_all(
    db: &Db,
    mut messages: mpsc::Receiver<Message>,
    target: &Target<'_>,
    progress: Counting<'_>,
) -> anyhow::Result<(i64, Totals)> {
    let (file_name, imported_by) = (target.file_name, target.imported_by);
    let started_at = now_millis();
    let mut totals = Totals::default();
    let mut tx = crate::db::begin_write(db.pool()).await?;
    let mut sets_email_key = false;
    let mut seen = Seen::default();
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
                let bytes_read = batch.bytes_read;
                let write = BatchWrite {
                    db,
                    target,
                    sets_email_key,
                };
                write.write(&mut tx, batch, &mut seen, &mut totals).await?;
                progress(&totals, bytes_read);
            }
            Message::Failed(reason) => {
                tx.rollback().await?;
                let failed = Totals {
                    counts: RowCounts {
                        rows_read: totals.counts.rows_read,
                        ..RowCounts::default()
                    },
                    error: Some(reason.into()),
                    ..Totals::default()
                };
                let id = record(db, file_name, &failed, started_at, imported_by).await?;
                return Ok((id, failed));
            }
        }
    }
    if let Some(link) = target.source.as_ref().filter(|l| l.delete_missing) {
        if totals.counts.rows_read == 0 && sources::has_profiles(&mut tx, link.source_id).await? {
            // An empty answer is far more often a broken query or a truncated table than a
            // source whose every customer left: delete nothing, and say so.
            tx.rollback().await?;
            let failed = Totals {
                error: Some(
                    "The source returned no rows, so nothing was deleted. Check the query and the table; \
                     if the source really holds no customers now, set it to keep missing profiles."
                        .into(),
                ),
                ..Totals::default()
            };
            let id = record(db, file_name, &failed, started_at, imported_by).await?;
            return Ok((id, failed));
        }
        totals.counts.deleted = delete_missing(&mut tx, db.backend(), link, &seen).await?;
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
            counts: totals.counts,
            rejections: &totals.rejections,
            started_at,
            finished_at: now_millis(),
            imported_by,
        },
    )
    .await?)
}

/// Profile row IDs a pull returned, one bit each (a million profiles: 125 KB).
#[derive(Default)]
struct Seen(Vec<u64>);

impl Seen {
    fn insert(&mut self, id: i64) {
        let id = id.max(0) as usize;
        if self.0.len() <= id / 64 {
            self.0.resize(id / 64 + 1, 0);
        }
        self.0[id / 64] |= 1 << (id % 64);
    }

    fn contains(&self, id: i64) -> bool {
        let id = id.max(0) as usize;
        self.0
            .get(id / 64)
            .is_some_and(|w| w & (1 << (id % 64)) != 0)
    }
}

/// Deletes the source's profiles the pull did not return (a profile another source also
/// provides loses only this source's fields); returns how many were deleted.
async fn delete_missing(
    tx: &mut sqlx::AnyConnection,
    backend: crate::db::Backend,
    link: &SourceLink,
    seen: &Seen,
) -> anyhow::Result<u64> {
    let mut deleted = 0;
    let mut after = 0;
    loop {
        let page = sources::linked_page(&mut *tx, link.source_id, after, 5_000).await?;
        let Some(last) = page.last() else { break };
        after = last.0;
        let (shared, alone): (Vec<_>, Vec<_>) = page
            .into_iter()
            .filter(|(id, _)| !seen.contains(*id))
            .partition(|(_, others)| *others > 0);
        let alone: Vec<i64> = alone.into_iter().map(|(id, _)| id).collect();
        deleted += profiles::delete(&mut *tx, &alone).await?;
        let shared: Vec<i64> = shared.into_iter().map(|(id, _)| id).collect();
        for id in &shared {
            sources::unlink(&mut *tx, link.source_id, *id, &link.fields).await?;
        }
        follow(&mut *tx, backend, Which::Profiles(&alone)).await?;
        follow(&mut *tx, backend, Which::Profiles(&shared)).await?;
    }
    Ok(deleted)
}
