//! Real databases for sources to read: a fresh database per test on a PostgreSQL server and
//! on a MariaDB server. Their URLs come from TEST_SOURCE_POSTGRES_URL and
//! TEST_SOURCE_MYSQL_URL (`.ci/run` starts both); unset, this test process starts its own
//! with `.ci/pg-start` and `.ci/mariadb-start` (the Debian packages postgresql and
//! mariadb-server, as root).

use std::sync::OnceLock;

use sqlx::Connection;

fn started(variable: &str, script: &str, port_variable: &str, first_port: u16) -> String {
    if let Ok(url) = std::env::var(variable) {
        return url;
    }
    let mut port = first_port;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
        port += 1;
    }
    let path = format!("{}/.ci/{script}", env!("CARGO_MANIFEST_DIR"));
    let output = std::process::Command::new("bash")
        .arg(&path)
        .env(port_variable, port.to_string())
        .output()
        .unwrap_or_else(|e| panic!("running {path}: {e}"));
    assert!(
        output.status.success(),
        "{variable} is unset and {path} could not start a server (it needs root and the Debian \
         packages postgresql and mariadb-server; .ci/run installs them): {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn postgres_server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| started("TEST_SOURCE_POSTGRES_URL", "pg-start", "PGPORT", 5533))
}

fn mysql_server() -> &'static str {
    static URL: OnceLock<String> = OnceLock::new();
    URL.get_or_init(|| started("TEST_SOURCE_MYSQL_URL", "mariadb-start", "MYPORT", 3407))
}

fn fresh_name() -> String {
    format!(
        "src_{}",
        export_destinations::crypto::random_token()[..12].to_lowercase()
    )
    .replace('-', "_")
}

/// A new, empty PostgreSQL database; its URL (with the user's password).
pub async fn postgres() -> String {
    let server = postgres_server().to_owned();
    let name = fresh_name();
    let mut conn = sqlx::PgConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// A new, empty MariaDB database; its URL (with the user's password).
pub async fn mysql() -> String {
    let server = mysql_server().to_owned();
    let name = fresh_name();
    let mut conn = sqlx::MySqlConnection::connect(&server).await.unwrap();
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .unwrap();
    let mut url = url::Url::parse(&server).unwrap();
    url.set_path(&name);
    url.to_string()
}

/// Runs statements on a PostgreSQL database, one after the other.
pub async fn pg_exec(url: &str, statements: &[&str]) {
    let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
    for statement in statements {
        sqlx::raw_sql(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}

/// Runs statements on a MariaDB database, one after the other.
pub async fn mysql_exec(url: &str, statements: &[&str]) {
    let mut conn = sqlx::MySqlConnection::connect(url).await.unwrap();
    for statement in statements {
        sqlx::raw_sql(statement)
            .execute(&mut conn)
            .await
            .unwrap_or_else(|e| panic!("{statement}: {e}"));
    }
}
