//! Sources: where customers live. A PostgreSQL or MySQL/MariaDB query, or a CSV file at an
//! HTTP(S) URL, read on the schedule (or on demand) through the same typing, checks and
//! writer as a CSV import. A full pull deletes the source's profiles it no longer returns;
//! an incremental pull reads the rows changed since the last one.
//!
//! - [`spec`]: what a person or a pipeline gives (parsed into a [`spec::SourceSpec`] first);
//! - [`reach`]: which addresses a source may name;
//! - [`database`] and [`csv_url`]: reading rows;
//! - [`pull`]: one pull, claimed in the database, from the first row to its report.

pub mod csv_url;
pub mod database;
pub mod pull;
pub mod reach;
pub mod spec;

use std::time::Duration;

use crate::crypto::SecretKey;
use crate::db::Db;
use crate::store::Record;
use crate::store::sources::SourceRow;

pub use spec::{SourceKind, SourceSpec};

/// What reading a source needs, shared by pages, the API, the schedule and the command line.
#[derive(Clone)]
pub struct Sources {
    pub db: Db,
    pub key: SecretKey,
    pub reach: reach::Reach,
    /// How long a source's query may run.
    pub statement_timeout: Duration,
    /// The pulls running in this process and their counts so far.
    pub live: Live,
}

/// Pulls running in this process: pull ID → (source ID, counts so far). On SQLite a pull's
/// transaction holds the database's one write lock until it ends, so its counts and its
/// heartbeat cannot be written while it runs: pages read them from here instead, and a
/// pull that is running here is never taken for a stopped one.
#[derive(Clone, Default)]
pub struct Live(
    std::sync::Arc<
        std::sync::Mutex<std::collections::HashMap<i64, (i64, crate::store::sources::PullCounts)>>,
    >,
);

impl Live {
    fn lock(
        &self,
    ) -> std::sync::MutexGuard<
        '_,
        std::collections::HashMap<i64, (i64, crate::store::sources::PullCounts)>,
    > {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub(crate) fn set(
        &self,
        pull_id: i64,
        source_id: i64,
        counts: crate::store::sources::PullCounts,
    ) {
        self.lock().insert(pull_id, (source_id, counts));
    }

    pub(crate) fn remove(&self, pull_id: i64) {
        self.lock().remove(&pull_id);
    }

    /// The pull of this source running in this process, if any.
    pub fn running(&self, source_id: i64) -> Option<i64> {
        self.lock()
            .iter()
            .find(|(_, (source, _))| *source == source_id)
            .map(|(pull, _)| *pull)
    }

    /// A pull as it stands: its row, with the counts of this process when it runs here.
    pub fn current(
        &self,
        mut pull: crate::store::sources::PullRow,
    ) -> crate::store::sources::PullRow {
        if pull.status == "running" {
            if let Some((_, counts)) = self.lock().get(&pull.id) {
                pull.rows_read = counts.rows_read as i64;
                pull.created = counts.created as i64;
                pull.updated = counts.updated as i64;
                pull.unchanged = counts.unchanged as i64;
                pull.rejected = counts.rejected as i64;
                pull.deleted = counts.deleted as i64;
            }
        }
        pull
    }
}

/// Why a source could not be read: a sentence for the person who set it up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

impl SourceError {
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

/// The columns a source returns, and the first rows as the import would take them.
#[derive(Debug, Clone, Default)]
pub struct Sample {
    pub columns: Vec<String>,
    /// Rows that would be written: customer ID and (field, value) in column order.
    pub rows: Vec<(String, Vec<(String, String)>)>,
    /// Rows that would be rejected: row number, customer ID, and why.
    pub rejected: Vec<(u64, String, String)>,
    /// New fields and the type each would get.
    pub new_fields: Vec<(String, crate::domain::FieldType)>,
}

/// Reads the first `rows` rows of a source and maps them as a pull would, writing nothing.
pub async fn preview(
    sources: &Sources,
    spec: &SourceSpec,
    rows: u64,
) -> Result<Sample, SourceError> {
    let reader = open(sources, spec, None, None, Some(rows))
        .await?
        .ok_or_else(|| SourceError::new("The file was not sent."))?;
    let columns = reader.columns.clone();
    let options = spec.import_options(Some(rows));
    let (mut receiver, parser) =
        crate::profiles::import::start(&sources.db, reader.records, options)
            .await
            .map_err(|e| SourceError::new(format!("The console could not read its fields: {e}")))?;
    let mut sample = Sample {
        columns,
        ..Sample::default()
    };
    use crate::profiles::writer::Message;
    while let Some(message) = receiver.recv().await {
        match message {
            Message::Header { new_fields, .. } => sample.new_fields = new_fields,
            Message::Batch(batch) => {
                for row in batch.rows {
                    let values =
                        serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(
                            &row.attributes,
                        )
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(name, value)| {
                            let shown = match value {
                                serde_json::Value::String(s) => s,
                                serde_json::Value::Null => String::new(),
                                other => other.to_string(),
                            };
                            (name, shown)
                        })
                        .collect();
                    sample.rows.push((row.customer_id, values));
                }
                sample.rejected.extend(
                    batch
                        .rejections
                        .into_iter()
                        .map(|r| (r.line, r.customer_id, r.reason)),
                );
            }
            Message::Failed(reason) => return Err(SourceError::new(reason.as_str())),
        }
    }
    let _ = parser.await;
    Ok(sample)
}

/// Opened rows of a source: its columns, and records for the import's parser.
pub struct Opened {
    pub columns: Vec<String>,
    pub records: Box<dyn crate::profiles::import::Records>,
    /// Resolves, once every row was read, to the highest changed-at value seen (databases).
    pub watermark: Option<tokio::sync::oneshot::Receiver<Option<String>>>,
    /// A CSV file's validators.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// Opens a source for reading: `since` reads only rows changed at or after that value (less
/// the margin); with `validators`, a CSV file that has not changed answers `Ok(None)`;
/// `limit` stops after that many rows.
pub async fn open(
    sources: &Sources,
    spec: &SourceSpec,
    since: Option<&str>,
    validators: Option<(&Option<String>, &Option<String>)>,
    limit: Option<u64>,
) -> Result<Option<Opened>, SourceError> {
    match spec.kind {
        SourceKind::Postgres | SourceKind::Mysql => {
            database::open(sources, spec, since, limit).await.map(Some)
        }
        SourceKind::CsvUrl => csv_url::open(sources, spec, validators).await,
    }
}

/// Connects and reads the columns only: what **Test connection** says.
pub async fn test_connection(sources: &Sources, spec: &SourceSpec) -> Result<String, SourceError> {
    match spec.kind {
        SourceKind::Postgres | SourceKind::Mysql => {
            let columns = database::columns(sources, spec).await?;
            Ok(format!(
                "Connected. The query returns {} columns: {}.",
                columns.len(),
                columns.join(", ")
            ))
        }
        SourceKind::CsvUrl => {
            let opened = csv_url::open(sources, spec, None)
                .await?
                .ok_or_else(|| SourceError::new("The file was not sent."))?;
            Ok(format!(
                "Fetched the file. It has {} columns: {}.",
                opened.columns.len(),
                opened.columns.join(", ")
            ))
        }
    }
}

/// The fields a source with these columns provides: every column but the customer ID.
pub fn fields_of(spec: &SourceSpec, columns: &[String]) -> Vec<String> {
    columns
        .iter()
        .filter(|c| !spec.is_id_column(c, columns))
        .cloned()
        .collect()
}

/// Refuses a field that another source already provides (one owner per field), naming both.
pub async fn check_owners(
    db: &Db,
    source_id: Option<i64>,
    name: &str,
    fields: &[String],
) -> Result<(), SourceError> {
    let others = crate::store::sources::list(db.pool())
        .await
        .map_err(|e| SourceError::new(format!("The sources could not be read: {e}")))?;
    for other in others.iter().filter(|o| Some(o.id) != source_id) {
        if let Some(field) = fields
            .iter()
            .find(|f| other.fields.iter().any(|o| o.eq_ignore_ascii_case(f)))
        {
            return Err(SourceError::new(format!(
                "The field {field:?} is already provided by the source {:?}; a field has one source. \
                 Leave the column out of {name:?}'s query (or rename it with AS), or change {:?}.",
                other.name, other.name
            )));
        }
    }
    Ok(())
}

/// Why a source was not saved.
#[derive(Debug, thiserror::Error)]
pub enum SaveError {
    /// It could not be read, or a field it provides has another source.
    #[error("{0}")]
    Refused(SourceError),
    #[error("A source named {0:?} exists already; choose another name.")]
    NameTaken(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

/// Reads the source's columns (a source that cannot be read is not saved), checks that
/// no other source provides its fields, and saves it; returns its ID. The URL and
/// credentials are sealed; the audit log records who saved which source.
pub async fn save(
    sources: &Sources,
    id: Option<i64>,
    spec: &SourceSpec,
    actor: &crate::store::audit::Actor<'_>,
) -> Result<i64, SaveError> {
    let columns = match spec.kind {
        SourceKind::CsvUrl => {
            let opened = csv_url::open(sources, spec, None)
                .await
                .map_err(SaveError::Refused)?
                .ok_or_else(|| SaveError::Refused(SourceError::new("The file was not sent.")))?;
            crate::profiles::import::id_column(&opened.columns, spec.id_column.as_deref())
                .map_err(|e| SaveError::Refused(SourceError::new(e.as_str())))?;
            opened.columns
        }
        _ => database::columns(sources, spec)
            .await
            .map_err(SaveError::Refused)?,
    };
    let fields = fields_of(spec, &columns);
    check_owners(&sources.db, id, &spec.name, &fields)
        .await
        .map_err(SaveError::Refused)?;
    let id_column = match &spec.id_column {
        Some(column) => column.clone(),
        None => crate::profiles::import::id_column(&columns, None)
            .ok()
            .and_then(|i| columns.get(i).cloned())
            .unwrap_or_default(),
    };
    let url_sealed = sources.key.seal(spec.url.as_str());
    let credentials_sealed = spec.credentials_sealed(&sources.key);
    let field_types = spec.field_types_json();
    let url_shown = spec.url_shown();
    let write = crate::store::sources::SourceWrite {
        name: &spec.name,
        kind: spec.kind.as_str(),
        url_sealed: &url_sealed,
        url_shown: &url_shown,
        credentials_sealed: credentials_sealed.as_deref(),
        query: spec.query.as_deref(),
        id_column: &id_column,
        changed_at_column: spec.changed_at_column.as_deref(),
        field_types: &field_types,
        fields: &fields,
        missing_profiles: spec.missing.as_str(),
        full_every: spec.full_every,
        every_minutes: spec.every_minutes,
    };
    let pool = sources.db.pool();
    let saved = match id {
        Some(id) => crate::store::sources::update(pool, id, &write)
            .await
            .map(|_| id),
        None => crate::store::sources::insert(pool, &write, Some(actor.user_id)).await,
    };
    let id = match saved {
        Ok(id) => id,
        Err(err) if crate::store::is_unique_violation(&err) => {
            return Err(SaveError::NameTaken(spec.name.clone()));
        }
        Err(err) => return Err(anyhow::Error::from(err).into()),
    };
    crate::store::audit::record(
        pool,
        actor,
        "source saved",
        None,
        &spec.name,
        &format!("{} at {url_shown}", spec.kind.label()),
    )
    .await
    .map_err(anyhow::Error::from)?;
    Ok(id)
}

/// Deletes a source with its pulls; its profiles stay. False when there was none.
pub async fn delete(
    db: &Db,
    id: i64,
    actor: &crate::store::audit::Actor<'_>,
) -> anyhow::Result<bool> {
    let Some(source) = SourceRow::find(db.pool(), id).await? else {
        return Ok(false);
    };
    let mut tx = crate::db::begin_write(db.pool()).await?;
    let deleted = crate::store::sources::delete(&mut tx, id).await?;
    crate::store::audit::record(&mut *tx, actor, "source deleted", None, &source.name, "").await?;
    tx.commit().await?;
    Ok(deleted)
}
