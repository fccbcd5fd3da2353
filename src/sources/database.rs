//! Reading a PostgreSQL or MySQL/MariaDB source. The person's query is read inside another
//! one that turns every column into text (as a CSV cell is), so the import's typing applies
//! unchanged; it runs as one prepared statement (one statement only) in a read-only
//! transaction with a statement timeout, and its rows stream: memory stays flat whatever
//! the source's size.

use std::time::Duration;

use futures::TryStreamExt;
use sqlx::mysql::{MySql, MySqlConnectOptions, MySqlConnection};
use sqlx::postgres::{PgConnectOptions, PgConnection, Postgres};
use sqlx::{Column, ConnectOptions, Connection, Executor, Row, TypeInfo};
use tokio::sync::{mpsc, oneshot};

use super::{Opened, SourceError, SourceKind, SourceSpec, Sources};
use crate::domain::Invalid;
use crate::profiles::import::Records;

/// Incremental pulls read again the rows changed this long before the last watermark: a
/// row committed late with an earlier changed-at value is still read.
pub const WATERMARK_MARGIN_SECONDS: i64 = 300;
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Rows read ahead of the writer.
const AHEAD: usize = 2_048;

/// One connection to a source database.
enum Conn {
    Postgres(PgConnection),
    Mysql(MySqlConnection),
}

/// A column of the query: its name and its database type.
#[derive(Debug, Clone)]
struct QueryColumn {
    name: String,
    type_name: String,
}

/// The query's columns (connecting, and describing the query without running it).
pub async fn columns(sources: &Sources, spec: &SourceSpec) -> Result<Vec<String>, SourceError> {
    let mut conn = connect(sources, spec).await?;
    let columns = describe(&mut conn, spec).await?;
    close(conn).await;
    Ok(columns.into_iter().map(|c| c.name).collect())
}

/// Opens the source's rows (those changed since `since`, less the margin, when given).
pub async fn open(
    sources: &Sources,
    spec: &SourceSpec,
    since: Option<&str>,
    limit: Option<u64>,
) -> Result<Opened, SourceError> {
    let mut conn = connect(sources, spec).await?;
    let columns = describe(&mut conn, spec).await?;
    let changed_at = match &spec.changed_at_column {
        Some(name) => Some(
            columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(name))
                .ok_or_else(|| {
                    SourceError::new(format!(
                        "The query returns no column named {name:?} for the changed-at time; it returns {}.",
                        names(&columns)
                    ))
                })?,
        ),
        None => None,
    };
    let sql = wrapped(
        spec,
        &columns,
        changed_at.filter(|_| since.is_some()),
        limit,
    );
    let (sender, receiver) = mpsc::channel(AHEAD);
    let (watermark_sender, watermark) = oneshot::channel();
    let since = since.map(str::to_owned);
    tokio::spawn(async move {
        let highest = match conn {
            Conn::Postgres(conn) => stream::<Postgres>(conn, sql, since, changed_at, sender).await,
            Conn::Mysql(conn) => stream::<MySql>(conn, sql, since, changed_at, sender).await,
        };
        let _ = watermark_sender.send(highest);
    });
    Ok(Opened {
        columns: columns.iter().map(|c| c.name.clone()).collect(),
        records: Box::new(DbRecords {
            columns: columns.into_iter().map(|c| c.name).collect(),
            rows: receiver,
            row: 0,
            bytes: 0,
        }),
        watermark: Some(watermark),
        etag: None,
        last_modified: None,
    })
}

async fn connect(sources: &Sources, spec: &SourceSpec) -> Result<Conn, SourceError> {
    let default_port = match spec.kind {
        SourceKind::Mysql => 3306,
        _ => 5432,
    };
    sources.reach.check(&spec.url, default_port).await?;
    let timeout = sources.statement_timeout;
    let connecting = async {
        match spec.kind {
            SourceKind::Mysql => {
                let mut url = spec.url.clone();
                if url.scheme() == "mariadb" {
                    let _ = url.set_scheme("mysql");
                }
                let options = url
                    .as_str()
                    .parse::<MySqlConnectOptions>()
                    .map_err(|e| describe_error(&e))?
                    .disable_statement_logging();
                let mut conn = MySqlConnection::connect_with(&options)
                    .await
                    .map_err(|e| describe_error(&e))?;
                conn.execute("SET time_zone = '+00:00'")
                    .await
                    .map_err(|e| describe_error(&e))?;
                // MariaDB's limit in seconds, or MySQL's in milliseconds (SELECTs only).
                let seconds = timeout.as_secs().max(1);
                if conn
                    .execute(format!("SET SESSION max_statement_time = {seconds}").as_str())
                    .await
                    .is_err()
                {
                    let _ = conn
                        .execute(
                            format!("SET SESSION max_execution_time = {}", seconds * 1000).as_str(),
                        )
                        .await;
                }
                conn.execute("START TRANSACTION READ ONLY")
                    .await
                    .map_err(|e| describe_error(&e))?;
                Ok(Conn::Mysql(conn))
            }
            _ => {
                let options = spec
                    .url
                    .as_str()
                    .parse::<PgConnectOptions>()
                    .map_err(|e| describe_error(&e))?
                    .application_name("export-destinations")
                    .disable_statement_logging();
                let mut conn = PgConnection::connect_with(&options)
                    .await
                    .map_err(|e| describe_error(&e))?;
                let setup = format!(
                    "SET statement_timeout = {}; SET TIME ZONE 'UTC'; SET datestyle = 'ISO, YMD'; \
                     START TRANSACTION READ ONLY",
                    timeout.as_millis().max(1)
                );
                conn.execute(setup.as_str())
                    .await
                    .map_err(|e| describe_error(&e))?;
                Ok(Conn::Postgres(conn))
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            SourceError::new(format!(
                "The database at {} did not answer within {} seconds.",
                spec.url_shown(),
                CONNECT_TIMEOUT.as_secs()
            ))
        })?
}

async fn close(conn: Conn) {
    match conn {
        Conn::Postgres(conn) => {
            let _ = conn.close().await;
        }
        Conn::Mysql(conn) => {
            let _ = conn.close().await;
        }
    }
}

/// The query's columns, checked: each named once, and the customer ID among them.
/// The columns a described query returns: name and database type.
fn query_columns<DB: sqlx::Database>(described: sqlx::Describe<DB>) -> Vec<QueryColumn> {
    described
        .columns()
        .iter()
        .map(|c| QueryColumn {
            name: c.name().to_owned(),
            type_name: c.type_info().name().to_owned(),
        })
        .collect()
}

async fn describe(conn: &mut Conn, spec: &SourceSpec) -> Result<Vec<QueryColumn>, SourceError> {
    let query = spec.query.as_deref().unwrap_or_default();
    let sql = format!("SELECT * FROM ({query}) AS q");
    let columns: Vec<QueryColumn> = match conn {
        Conn::Postgres(conn) => {
            query_columns(conn.describe(&sql).await.map_err(|e| describe_error(&e))?)
        }
        Conn::Mysql(conn) => {
            query_columns(conn.describe(&sql).await.map_err(|e| describe_error(&e))?)
        }
    };
    if columns.is_empty() {
        return Err(SourceError::new("The query returns no columns."));
    }
    for (i, column) in columns.iter().enumerate() {
        if columns[..i]
            .iter()
            .any(|c| c.name.eq_ignore_ascii_case(&column.name))
        {
            return Err(SourceError::new(format!(
                "The query returns the column {:?} twice; give one of them another name with AS.",
                column.name
            )));
        }
    }
    if let Some(id) = &spec.id_column {
        if !columns.iter().any(|c| c.name.eq_ignore_ascii_case(id)) {
            return Err(SourceError::new(format!(
                "The query returns no column named {id:?} for the customer ID; it returns {}.",
                names(&columns)
            )));
        }
    }
    Ok(columns)
}

fn names(columns: &[QueryColumn]) -> String {
    columns
        .iter()
        .map(|c| c.name.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The person's query inside one that returns every column as text, optionally only the
/// rows changed since a bound value (`$1` / `?`), at most `limit` rows.
fn wrapped(
    spec: &SourceSpec,
    columns: &[QueryColumn],
    changed_at: Option<usize>,
    limit: Option<u64>,
) -> String {
    let query = spec.query.as_deref().unwrap_or_default();
    let postgres = spec.kind == SourceKind::Postgres;
    let quote = |name: &str| {
        if postgres {
            format!("q.\"{}\"", name.replace('"', "\"\""))
        } else {
            format!("q.`{}`", name.replace('`', "``"))
        }
    };
    let select = columns
        .iter()
        .map(|c| {
            if postgres {
                format!("{}::text", quote(&c.name))
            } else {
                format!("CAST({} AS CHAR)", quote(&c.name))
            }
        })
        .collect::<Vec<_>>()
        .join(", ");
    let mut sql = format!("SELECT {select} FROM ({query}) AS q");
    if let Some(index) = changed_at {
        let column = &columns[index];
        sql.push_str(" WHERE ");
        sql.push_str(&since_condition(
            postgres,
            &quote(&column.name),
            &column.type_name,
        ));
    }
    if let Some(limit) = limit {
        sql.push_str(&format!(" LIMIT {limit}"));
    }
    sql
}

/// `column >= the bound watermark`, less the margin for times, by the column's type.
fn since_condition(postgres: bool, column: &str, type_name: &str) -> String {
    let upper = type_name.to_ascii_uppercase();
    let margin = WATERMARK_MARGIN_SECONDS;
    let is_time = upper.contains("TIMESTAMP") || upper.contains("DATE");
    let is_number = [
        "INT", "NUMERIC", "DECIMAL", "FLOAT", "DOUBLE", "REAL", "SERIAL",
    ]
    .iter()
    .any(|n| upper.contains(n));
    match (postgres, is_time, is_number) {
        (true, true, _) => format!(
            "{column} >= CAST($1 AS {}) - INTERVAL '{margin} seconds'",
            upper.to_ascii_lowercase()
        ),
        (true, false, true) => format!("{column} >= CAST($1 AS numeric)"),
        (true, false, false) => format!("{column}::text >= $1"),
        (false, true, _) => {
            format!("{column} >= CAST(? AS DATETIME(6)) - INTERVAL {margin} SECOND")
        }
        (false, false, true) => format!("{column} >= CAST(? AS DECIMAL(65, 10))"),
        (false, false, false) => format!("CAST({column} AS CHAR) >= ?"),
    }
}

/// Streams the rows to the parser; returns the highest changed-at value read.
async fn stream<DB>(
    mut conn: DB::Connection,
    sql: String,
    since: Option<String>,
    changed_at: Option<usize>,
    out: mpsc::Sender<Result<Vec<Option<String>>, String>>,
) -> Option<String>
where
    DB: sqlx::Database,
    for<'c> &'c mut DB::Connection: Executor<'c, Database = DB>,
    for<'q> <DB as sqlx::Database>::Arguments<'q>: sqlx::IntoArguments<'q, DB>,
    for<'q> String: sqlx::Encode<'q, DB> + sqlx::Type<DB>,
    for<'r> String: sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let mut highest: Option<String> = None;
    let read = async {
        let mut query = sqlx::query::<DB>(&sql);
        if let Some(since) = since {
            query = query.bind(since);
        }
        let mut rows = query.fetch(&mut conn);
        while let Some(row) = rows.try_next().await? {
            let mut cells = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                cells.push(row.try_get::<Option<String>, usize>(i)?);
            }
            if let Some(value) = changed_at.and_then(|i| cells[i].as_deref()) {
                if highest.as_deref().is_none_or(|h| later(value, h)) {
                    highest = Some(value.to_owned());
                }
            }
            if out.send(Ok(cells)).await.is_err() {
                // The writer stopped: it failed and said why.
                break;
            }
        }
        Ok::<_, sqlx::Error>(())
    };
    let result = read.await;
    if let Err(err) = result {
        let _ = out.send(Err(describe_error(&err).0)).await;
        highest = None;
    }
    let _ = conn.execute("ROLLBACK").await;
    let _ = conn.close().await;
    highest
}

/// Whether changed-at value `a` comes after `b` (numbers as numbers, times as text: the
/// database writes them all in one format).
fn later(a: &str, b: &str) -> bool {
    match (a.trim().parse::<f64>(), b.trim().parse::<f64>()) {
        (Ok(a), Ok(b)) => a > b,
        _ => a > b,
    }
}

/// A database's error as a sentence for the person who set the source up.
fn describe_error(err: &sqlx::Error) -> SourceError {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            let message = db.message();
            let said = match code.as_str() {
                // PostgreSQL: invalid password / authorization; MySQL: access denied.
                "28P01" | "28000" | "1045" => "The database refused the user name or password",
                "3D000" | "1049" => "The database does not exist",
                "42601" | "1064" => "The query has a syntax error",
                "42P01" | "1146" => "The query names a table that does not exist",
                "42703" | "1054" => "The query names a column that does not exist",
                "42501" | "1142" => "The database user may not read this",
                "57014" | "1969" | "3024" => {
                    "The query ran longer than SOURCE_STATEMENT_TIMEOUT allows"
                }
                _ => "The database refused the query",
            };
            SourceError::new(format!("{said}: {message}"))
        }
        sqlx::Error::Io(io) => SourceError::new(format!(
            "The database could not be reached: {io}. Check the host and port, and that the console's network may reach it."
        )),
        sqlx::Error::Tls(tls) => SourceError::new(format!("The TLS connection failed: {tls}.")),
        sqlx::Error::Configuration(e) => {
            SourceError::new(format!("The connection URL is not right: {e}."))
        }
        sqlx::Error::PoolTimedOut => SourceError::new("The database did not answer in time."),
        other => SourceError::new(format!("The database could not be read: {other}.")),
    }
}

/// A database's rows for the import's parser.
struct DbRecords {
    columns: Vec<String>,
    rows: mpsc::Receiver<Result<Vec<Option<String>>, String>>,
    row: u64,
    bytes: u64,
}

impl Records for DbRecords {
    fn header(&mut self) -> Result<Vec<String>, Invalid> {
        Ok(self.columns.clone())
    }

    fn next_record(&mut self) -> Result<Option<(u64, Vec<String>, u64)>, Invalid> {
        match self.rows.blocking_recv() {
            None => Ok(None),
            Some(Err(message)) => Err(Invalid::new(format!(
                "Row {}: {message}. Nothing of this pull was written.",
                self.row + 1
            ))),
            Some(Ok(cells)) => {
                self.row += 1;
                let cells: Vec<String> = cells.into_iter().map(Option::unwrap_or_default).collect();
                self.bytes += cells.iter().map(|c| c.len() as u64 + 1).sum::<u64>();
                Ok(Some((self.row, cells, self.bytes)))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changed_at_values_compare_as_numbers_or_as_the_database_writes_times() {
        assert!(later("10", "9"));
        assert!(later("2026-12-07 10:00:00+00", "2026-12-06 23:59:59+00"));
        assert!(!later("2026-01-01", "2026-01-02"));
    }

    #[test]
    fn the_since_condition_fits_the_columns_type() {
        assert_eq!(
            since_condition(true, "q.\"u\"", "TIMESTAMPTZ"),
            "q.\"u\" >= CAST($1 AS timestamptz) - INTERVAL '300 seconds'"
        );
        assert_eq!(
            since_condition(false, "q.`u`", "BIGINT"),
            "q.`u` >= CAST(? AS DECIMAL(65, 10))"
        );
    }
}
