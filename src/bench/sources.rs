//! `export-destinations bench sources`: a table of N customers in PostgreSQL and in MariaDB,
//! and the same customers as a CSV file served over loopback HTTP, pulled into a fresh
//! console database: a full pull, an incremental pull after 1 % of the rows changed, and a
//! pull of the unchanged file. Prints rows per second, seconds and peak memory.

use std::time::Instant;

use sqlx::Connection;

use crate::cli::BenchSourcesArgs;
use crate::sources::pull::{self, PullRequest, Trigger};
use crate::sources::{SourceSpec, Sources, spec::SourceInput};
use crate::store::sources::PullRow;

pub async fn sources(args: BenchSourcesArgs) -> anyhow::Result<()> {
    if args.postgres_url.is_none() && args.mysql_url.is_none() {
        anyhow::bail!(
            "give --postgres-url and/or --mysql-url: servers whose user may create databases \
             (.ci/pg-start and .ci/mariadb-start start private ones)"
        );
    }
    println!("bench sources: {} rows", args.profiles);
    if let Some(server) = &args.postgres_url {
        let url = fresh_database(server, true).await?;
        fill_postgres(&url, args.profiles).await?;
        bench_database(
            &args,
            "postgres",
            &url,
            "SELECT id, email AS \"Email\", first_name AS \"FirstName\", \
             city AS \"City\", age AS \"Age\", updated_at FROM customers",
            || async {
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql(
                    "UPDATE customers SET city = 'Changed', updated_at = now() WHERE n % 100 = 0",
                )
                .execute(&mut conn)
                .await?;
                Ok(())
            },
        )
        .await?;
    }
    if let Some(server) = &args.mysql_url {
        let url = fresh_database(server, false).await?;
        fill_mysql(&url, args.profiles).await?;
        bench_database(
            &args,
            "mysql",
            &url,
            "SELECT id, email AS Email, first_name AS FirstName, \
             city AS City, age AS Age, updated_at FROM customers",
            || async {
                let mut conn = sqlx::MySqlConnection::connect(&url).await?;
                sqlx::raw_sql(
                    "UPDATE customers SET city = 'Changed', updated_at = NOW(6) WHERE n % 100 = 0",
                )
                .execute(&mut conn)
                .await?;
                Ok(())
            },
        )
        .await?;
    }
    bench_csv(&args).await
}

async fn fresh_database(server: &str, postgres: bool) -> anyhow::Result<String> {
    let name = format!(
        "bench_{}",
        &crate::crypto::random_token()[..10].to_lowercase()
    )
    .replace('-', "_");
    if postgres {
        let mut conn = sqlx::PgConnection::connect(server).await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
    } else {
        let mut conn = sqlx::MySqlConnection::connect(server).await?;
        sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut conn)
            .await?;
    }
    let mut url = url::Url::parse(server)?;
    url.set_path(&name);
    Ok(url.to_string())
}

async fn fill_postgres(url: &str, rows: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = sqlx::PgConnection::connect(url).await?;
    sqlx::raw_sql(&format!(
        "CREATE TABLE customers (n bigint, id text PRIMARY KEY, email text, first_name text, city text, \
           age int, updated_at timestamptz NOT NULL); \
         INSERT INTO customers SELECT i, 'C' || i, 'c' || i || '@northwind.io', 'First' || (i % 997), \
           (ARRAY['Berlin','Paris','Rome','Madrid','Vienna'])[1 + i % 5], 18 + i % 60, \
           now() - ({rows} - i) * interval '1 second' FROM generate_series(1, {rows}) i; \
         CREATE INDEX customers_updated ON customers (updated_at); ANALYZE customers;"
    ))
    .execute(&mut conn)
    .await?;
    println!(
        "postgres: table of {rows} rows made in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn fill_mysql(url: &str, rows: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = sqlx::MySqlConnection::connect(url).await?;
    sqlx::raw_sql(&format!(
        "CREATE TABLE customers (n BIGINT, id VARCHAR(20) PRIMARY KEY, email VARCHAR(100), first_name VARCHAR(50), \
           city VARCHAR(20), age INT, updated_at DATETIME(6) NOT NULL, INDEX (updated_at)); \
         INSERT INTO customers SELECT seq, CONCAT('C', seq), CONCAT('c', seq, '@northwind.io'), \
           CONCAT('First', seq % 997), ELT(1 + seq % 5, 'Berlin','Paris','Rome','Madrid','Vienna'), 18 + seq % 60, \
           NOW(6) - INTERVAL ({rows} - seq) SECOND FROM seq_1_to_{rows};"
    ))
    .execute(&mut conn)
    .await?;
    println!(
        "mysql: table of {rows} rows made in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// A fresh console database and what pulls need.
async fn console(args: &BenchSourcesArgs, dir: &std::path::Path) -> anyhow::Result<Sources> {
    let db = crate::config::DbArgs {
        database_url: args.database_url.clone(),
        data_dir: dir.to_path_buf(),
    }
    .connect()
    .await?;
    Ok(Sources {
        db,
        key: crate::crypto::SecretKey::generate(),
        reach: crate::sources::reach::Reach::default(),
        statement_timeout: std::time::Duration::from_secs(600),
        live: Default::default(),
    })
}

async fn saved(sources: &Sources, input: SourceInput) -> anyhow::Result<i64> {
    let spec: SourceSpec = input.parse(None).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let user: i64 =
        match sqlx::query_scalar("SELECT id FROM users WHERE email = 'bench@example.com'")
            .fetch_optional(sources.db.pool())
            .await?
        {
            Some(id) => id,
            None => {
                sqlx::query_scalar(
                    "INSERT INTO users (email, name, role, password_hash, created_at, updated_at) \
                 VALUES ('bench@example.com', 'Bench', $1, 'none', 0, 0) RETURNING id",
                )
                .bind(crate::domain::Role::Administrator.as_str())
                .fetch_one(sources.db.pool())
                .await?
            }
        };
    let actor = crate::store::audit::Actor {
        user_id: user,
        email: "bench@example.com",
    };
    crate::sources::save(sources, None, &spec, &actor)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))
}

async fn timed_pull(sources: &Sources, source: i64, what: &str) -> anyhow::Result<PullRow> {
    let started = Instant::now();
    let pull = pull::run(
        sources,
        PullRequest {
            source_id: source,
            full: false,
            trigger: Trigger::Cli,
            by: None,
        },
    )
    .await?
    .map_err(|e| anyhow::anyhow!("not started: {e:?}"))?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "  {what}: {} ({} pull) in {seconds:.2} s = {:.0} rows/s; {}; peak RSS {}",
        pull.status,
        pull.mode,
        pull.rows_read as f64 / seconds.max(0.001),
        pull.counts(),
        super::mib(super::peak_rss_mib()),
    );
    if pull.status == "failed" {
        anyhow::bail!("the pull failed: {:?}", pull.error);
    }
    Ok(pull)
}

async fn bench_database<F, Fut>(
    args: &BenchSourcesArgs,
    kind: &str,
    url: &str,
    query: &str,
    change: F,
) -> anyhow::Result<()>
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let dir = tempfile::tempdir()?;
    let sources = console(args, dir.path()).await?;
    println!(
        "{kind} source, console on {:?} (peak RSS before: {})",
        sources.db.backend(),
        super::mib(super::peak_rss_mib())
    );
    let source = saved(
        &sources,
        SourceInput {
            name: format!("Bench {kind}"),
            kind: kind.into(),
            url: url.into(),
            query: query.into(),
            id_column: "id".into(),
            changed_at_column: "updated_at".into(),
            ..SourceInput::default()
        },
    )
    .await?;
    timed_pull(&sources, source, "full pull").await?;
    change().await?;
    timed_pull(&sources, source, "incremental pull, 1 % changed").await?;
    timed_pull(&sources, source, "incremental pull, nothing changed").await?;
    Ok(())
}

async fn bench_csv(args: &BenchSourcesArgs) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("customers.csv");
    {
        let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
        writeln!(file, "CustomerId,Email,FirstName,City,Age")?;
        for i in 1..=args.profiles {
            writeln!(
                file,
                "C{i},c{i}@northwind.io,First{},Berlin,{}",
                i % 997,
                18 + i % 60
            )?;
        }
    }
    let body = std::sync::Arc::new(std::fs::read(&path)?);
    let etag = format!("\"{}\"", body.len());
    let app = axum::Router::new().route(
        "/customers.csv",
        axum::routing::get(move |headers: axum::http::HeaderMap| {
            let (body, etag) = (body.clone(), etag.clone());
            async move {
                use axum::response::IntoResponse;
                if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(etag.as_str())
                {
                    return (axum::http::StatusCode::NOT_MODIFIED, [("etag", etag)])
                        .into_response();
                }
                ([("etag", etag)], body.as_ref().clone()).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = crate::background::AbortOnDrop(tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    }));
    let sources = console(args, dir.path()).await?;
    println!(
        "csv_url source ({:.0} MiB file over loopback HTTP)",
        std::fs::metadata(&path)?.len() as f64 / 1048576.0
    );
    let source = saved(
        &sources,
        SourceInput {
            name: "Bench file".into(),
            kind: "csv_url".into(),
            url: format!("http://{addr}/customers.csv"),
            ..SourceInput::default()
        },
    )
    .await?;
    timed_pull(&sources, source, "full pull").await?;
    timed_pull(&sources, source, "unchanged file").await?;
    drop(server);
    Ok(())
}
