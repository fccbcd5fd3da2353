//! The database: one pool reaching SQLite or PostgreSQL through `sqlx::Any`, portable SQL
//! with `$N` placeholders, and one migrations folder per backend.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Context, bail};
use sqlx::ConnectOptions;
use sqlx::any::{AnyConnectOptions, AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Executor};

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A checked `sqlite:` or `postgres:` URL.
#[derive(Debug, Clone)]
pub struct DatabaseUrl {
    url: String,
    backend: Backend,
}

impl DatabaseUrl {
    pub fn parse(url: &str) -> anyhow::Result<Self> {
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            bail!("the database URL must start with sqlite: or postgres:");
        };
        let mut url = url.to_owned();
        if backend == Backend::Sqlite && !url.contains("mode=") && !url.contains(":memory:") {
            url.push_str(if url.contains('?') {
                "&mode=rwc"
            } else {
                "?mode=rwc"
            });
        }
        Ok(Self { url, backend })
    }

    /// A SQLite file, created when missing.
    pub fn sqlite_file(path: &Path) -> Self {
        Self {
            url: format!("sqlite://{}?mode=rwc", path.display()),
            backend: Backend::Sqlite,
        }
    }

    pub fn as_str(&self) -> &str {
        &self.url
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn is_sqlite(&self) -> bool {
        self.backend == Backend::Sqlite
    }

    /// The SQLite file this URL names, if any.
    pub fn sqlite_path(&self) -> Option<&Path> {
        if self.backend != Backend::Sqlite {
            return None;
        }
        let rest = self
            .url
            .trim_start_matches("sqlite:")
            .trim_start_matches("//");
        let path = rest.split('?').next().unwrap_or(rest);
        (!path.is_empty() && path != ":memory:").then(|| Path::new(path))
    }
}

/// The pool every store module uses, and which backend it reaches.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

impl Db {
    pub async fn connect(url: &DatabaseUrl) -> anyhow::Result<Self> {
        install_default_drivers();
        if let Some(dir) = url.sqlite_path().and_then(Path::parent) {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating the folder {}", dir.display()))?;
            }
        }
        if let Some(path) = url
            .sqlite_path()
            .filter(|_| url.as_str().contains("mode=rwc"))
        {
            create_private_file(path)?;
        }
        let backend = url.backend();
        let max = if backend == Backend::Sqlite { 8 } else { 16 };
        let pool = AnyPoolOptions::new()
            .max_connections(max)
            .acquire_timeout(Duration::from_secs(30))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers work while an export writes; busy_timeout makes
                        // writers queue instead of failing.
                        conn.execute(
                            "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; \
                             PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 10000;",
                        )
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(
                // A segment refresh scans every profile in one statement: that is not slow.
                AnyConnectOptions::from_str(url.as_str())?
                    .log_slow_statements(log::LevelFilter::Warn, Duration::from_secs(60)),
            )
            .await
            .context("connecting to the database")?;
        Ok(Self { pool, backend })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        match self.backend {
            Backend::Sqlite => sqlx::migrate!("migrations/sqlite").run(&self.pool).await,
            Backend::Postgres => sqlx::migrate!("migrations/postgres").run(&self.pool).await,
        }
        .context("running database migrations")
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Refreshes the planner's statistics after a bulk change: PostgreSQL plans badly on
    /// stale statistics; SQLite's planner needs none for the console's indexed queries.
    pub async fn analyze(&self, tables: &[&str]) -> anyhow::Result<()> {
        match self.backend {
            Backend::Postgres => {
                for table in tables {
                    sqlx::query(&format!("ANALYZE {table}"))
                        .execute(&self.pool)
                        .await?;
                }
            }
            Backend::Sqlite => {}
        }
        Ok(())
    }

    /// True when the database answers a trivial query.
    pub async fn is_ready(&self) -> bool {
        sqlx::query("SELECT 1").execute(&self.pool).await.is_ok()
    }
}

/// Creates a missing SQLite database file empty and readable by its owner only (0600,
/// whatever the umask), before SQLite opens it: SQLite then gives its `-wal` and `-shm`
/// files the database file's permissions. An existing file is left as its owner set it.
fn create_private_file(path: &Path) -> anyhow::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(_file) => {
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
                    .with_context(|| format!("restricting {}", path.display()))?;
            }
            Ok(())
        }
        Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(err) => {
            Err(anyhow::Error::new(err)
                .context(format!("creating the database {}", path.display())))
        }
    }
}

impl FromStr for DatabaseUrl {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Milliseconds since the Unix epoch: the portable timestamp stored in every table.
pub fn now_millis() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp_nanos() as i64 / 1_000_000
}

/// Starts a transaction that will write. On SQLite it takes the write lock at once
/// (`BEGIN IMMEDIATE`): a transaction that reads and then writes would otherwise fail with
/// "database is locked" the moment another connection had written in between; this way
/// writers wait their turn (up to the busy timeout) instead.
pub async fn begin_write(pool: &AnyPool) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Any>> {
    if pool
        .connect_options()
        .database_url
        .scheme()
        .starts_with("sqlite")
    {
        pool.begin_with("BEGIN IMMEDIATE").await
    } else {
        pool.begin().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls_get_create_mode_and_a_path() {
        let url = DatabaseUrl::parse("sqlite://data/x.db").unwrap();
        assert_eq!(url.as_str(), "sqlite://data/x.db?mode=rwc");
        assert_eq!(url.sqlite_path(), Some(Path::new("data/x.db")));
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn a_new_sqlite_database_and_its_wal_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new.db");
        let db = Db::connect(&DatabaseUrl::sqlite_file(&path)).await.unwrap();
        db.migrate().await.unwrap();
        for name in ["new.db", "new.db-wal", "new.db-shm"] {
            let meta =
                std::fs::metadata(dir.path().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{name}");
        }
    }

    #[test]
    fn postgres_urls_are_taken_as_given() {
        let url = DatabaseUrl::parse("postgres://a:b@h:5432/d").unwrap();
        assert_eq!(url.backend(), Backend::Postgres);
        assert_eq!(url.sqlite_path(), None);
    }
}
