//! Sessions live in the console's database: tower-sessions' sqlx stores, on whichever
//! backend the console runs. A session row is written only when something in it changes,
//! or at most once a minute to extend its idle expiry: a page view that changes nothing
//! only reads, so pages stay fast while an export writes.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::PgPoolOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::{self, ExpiredDeletion, SessionStore};
use tower_sessions_sqlx_store::{PostgresStore, SqliteStore};

use crate::db::{Backend, DatabaseUrl};

/// How far the idle expiry may move before the row is written to extend it.
pub const EXTEND_AFTER: time::Duration = time::Duration::seconds(60);
/// Sessions remembered as last read or written (more are forgotten: the next save writes).
const REMEMBERED: usize = 10_000;

#[derive(Debug, Clone)]
pub struct DbSessionStore {
    backend: Kind,
    /// What each session's row holds, as this console last read or wrote it.
    stored: Arc<Mutex<HashMap<Id, Stored>>>,
    writes: Arc<AtomicU64>,
}

#[derive(Debug, Clone)]
enum Kind {
    Sqlite(SqliteStore),
    Postgres(PostgresStore),
}

#[derive(Debug)]
struct Stored {
    data: HashMap<String, serde_json::Value>,
    expiry: time::OffsetDateTime,
}

impl DbSessionStore {
    fn new(backend: Kind) -> Self {
        Self {
            backend,
            stored: Arc::default(),
            writes: Arc::default(),
        }
    }

    /// Session rows written (created or saved) by this console so far.
    pub fn writes(&self) -> u64 {
        self.writes.load(Ordering::Relaxed)
    }

    fn remember(&self, record: &Record) {
        let mut stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        if stored.len() >= REMEMBERED {
            stored.clear();
        }
        stored.insert(
            record.id,
            Stored {
                data: record.data.clone(),
                expiry: record.expiry_date,
            },
        );
    }

    /// True when the row already holds this record's data and an expiry less than a
    /// minute older than the record's.
    fn unchanged(&self, record: &Record) -> bool {
        let stored = self.stored.lock().unwrap_or_else(|p| p.into_inner());
        stored
            .get(&record.id)
            .is_some_and(|s| s.data == record.data && record.expiry_date - s.expiry < EXTEND_AFTER)
    }

    /// Connects a small pool of its own and creates the session table when missing.
    pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Self> {
        let store = match url.backend() {
            Backend::Sqlite => {
                let options = SqliteConnectOptions::from_str(url.as_str())?
                    .journal_mode(SqliteJournalMode::Wal)
                    .busy_timeout(Duration::from_secs(10))
                    .create_if_missing(true);
                let pool = SqlitePoolOptions::new()
                    .max_connections(4)
                    .connect_with(options)
                    .await?;
                let store = SqliteStore::new(pool);
                store
                    .migrate()
                    .await
                    .context("creating the session table")?;
                Kind::Sqlite(store)
            }
            Backend::Postgres => {
                let pool = PgPoolOptions::new()
                    .max_connections(4)
                    .connect(url.as_str())
                    .await?;
                let store = PostgresStore::new(pool);
                store
                    .migrate()
                    .await
                    .context("creating the session table")?;
                Kind::Postgres(store)
            }
        };
        Ok(Self::new(store))
    }
}

#[async_trait]
impl SessionStore for DbSessionStore {
    async fn create(&self, record: &mut Record) -> session_store::Result<()> {
        match &self.backend {
            Kind::Sqlite(store) => store.create(record).await,
            Kind::Postgres(store) => store.create(record).await,
        }?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.remember(record);
        Ok(())
    }

    async fn save(&self, record: &Record) -> session_store::Result<()> {
        if self.unchanged(record) {
            return Ok(());
        }
        match &self.backend {
            Kind::Sqlite(store) => store.save(record).await,
            Kind::Postgres(store) => store.save(record).await,
        }?;
        self.writes.fetch_add(1, Ordering::Relaxed);
        self.remember(record);
        Ok(())
    }

    async fn load(&self, id: &Id) -> session_store::Result<Option<Record>> {
        let record = match &self.backend {
            Kind::Sqlite(store) => store.load(id).await,
            Kind::Postgres(store) => store.load(id).await,
        }?;
        match &record {
            Some(record) => self.remember(record),
            None => {
                self.stored
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(id);
            }
        }
        Ok(record)
    }

    async fn delete(&self, id: &Id) -> session_store::Result<()> {
        self.stored
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        match &self.backend {
            Kind::Sqlite(store) => store.delete(id).await,
            Kind::Postgres(store) => store.delete(id).await,
        }
    }
}

#[async_trait]
impl ExpiredDeletion for DbSessionStore {
    async fn delete_expired(&self) -> session_store::Result<()> {
        match &self.backend {
            Kind::Sqlite(store) => store.delete_expired().await,
            Kind::Postgres(store) => store.delete_expired().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_row_is_written_when_its_data_changes_or_its_expiry_moved_a_minute() {
        let dir = tempfile::tempdir().unwrap();
        let url = DatabaseUrl::sqlite_file(&dir.path().join("s.db"));
        let store = DbSessionStore::connect(&url).await.unwrap();
        let now = time::OffsetDateTime::now_utc();
        let mut record = Record {
            id: Id::default(),
            data: HashMap::from([("a".to_owned(), serde_json::json!(1))]),
            expiry_date: now + time::Duration::hours(1),
        };
        store.create(&mut record).await.unwrap();
        assert_eq!(store.writes(), 1);
        // Read back, then saved with the same data and an expiry 30 s later: no write.
        let loaded = store.load(&record.id).await.unwrap().unwrap();
        let mut same = loaded.clone();
        same.expiry_date += time::Duration::seconds(30);
        store.save(&same).await.unwrap();
        assert_eq!(store.writes(), 1);
        // A minute later, the expiry is extended.
        same.expiry_date += time::Duration::seconds(31);
        store.save(&same).await.unwrap();
        assert_eq!(store.writes(), 2);
        // Changed data is written at once.
        let mut changed = same.clone();
        changed.data.insert("b".into(), serde_json::json!(2));
        store.save(&changed).await.unwrap();
        assert_eq!(store.writes(), 3);
        let stored = store.load(&record.id).await.unwrap().unwrap();
        assert_eq!(stored.data, changed.data);
    }
}
