//! Sources: a real PostgreSQL and a real MariaDB read through Data > Sources, pulled by the
//! scheduled refresh into the audience (rows inserted, changed and deleted), incremental
//! pulls, a pull that fails part way writing nothing, every bad input on the form, a CSV
//! file at a URL that costs one request when unchanged, one pull at a time, and the API.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::runs::{Run, RunStatus};
use export_destinations::store::sources::{self as store, PullRow};

use crate::helpers::{TestApp, location, spawn_app, wait_until};
use crate::source_dbs::{self, mysql_exec, pg_exec};
use crate::world::{World, audience, destination, segment, world};

const PG_QUERY: &str = "SELECT customer_id, email AS \"Email\", first_name AS \"FirstName\", \
                        country AS \"Country\" FROM customers";

/// Text as the page's escaping writes it.
fn escaped(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&#34;")
        .replace('\'', "&#39;")
}

/// Saves a source through the form; returns its ID.
async fn add_source(app: &TestApp, fields: &[(&str, &str)]) -> i64 {
    let mut form = fields.to_vec();
    form.push(("action", "save"));
    let response = app
        .post_form("/data/sources/new", "/data/sources/new", &form)
        .await;
    let status = response.status();
    let to = location(&response);
    assert_eq!(
        status,
        303,
        "saved: {}",
        if status == 303 {
            String::new()
        } else {
            response.text().await.unwrap()
        }
    );
    to.trim_start_matches("/data/sources/").parse().unwrap()
}

/// A console with an Administrator signed in, and a fresh PostgreSQL database made by
/// `statements`, saved through the form as the source `name` reading `query` (customer ID
/// column `id`): (console, the database's URL, the source's ID).
async fn console_with_pg_source(
    statements: &[&str],
    name: &str,
    query: &str,
) -> (TestApp, String, i64) {
    let app = spawn_app().await;
    let db = source_dbs::postgres().await;
    pg_exec(&db, statements).await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let source = add_source(
        &app,
        &[
            ("kind", "postgres"),
            ("name", name),
            ("url", &db),
            ("query", query),
            ("id_column", "id"),
        ],
    )
    .await;
    (app, db, source)
}

/// Pull now on the source's page, then the pull once it ended.
async fn pull_now(app: &TestApp, source: i64, full: bool) -> PullRow {
    let page = format!("/data/sources/{source}");
    let mut form = Vec::new();
    if full {
        form.push(("full", "yes"));
    }
    let response = app.post_form(&page, &format!("{page}/pull"), &form).await;
    assert_eq!(response.status(), 303);
    let pull: i64 = location(&response)
        .trim_start_matches("/data/pulls/")
        .parse()
        .unwrap();
    ended(app, pull).await
}

async fn ended(app: &TestApp, pull: i64) -> PullRow {
    let db = app.state.db.clone();
    wait_until(
        &format!("pull {pull} to end"),
        Duration::from_secs(60),
        || {
            let db = db.clone();
            async move {
                store::find_pull(db.pool(), pull)
                    .await
                    .unwrap()
                    .filter(|p| p.status != "running")
            }
        },
    )
    .await
}

fn counts(pull: &PullRow) -> (i64, i64, i64, i64, i64, i64) {
    (
        pull.rows_read,
        pull.created,
        pull.updated,
        pull.unchanged,
        pull.rejected,
        pull.deleted,
    )
}

/// The schedule on (daily at 06:00 UTC) and its occurrence on November `day` due: the
/// console pulls every source, refreshes the segments and queues every destination's
/// export; then the destination's run, once it ended.
async fn scheduled_refresh(w: &World, destination: i64, day: u32) -> Run {
    use chrono::TimeZone;
    let pool = w.app.state.db.pool();
    if day == 1 {
        let spec = export_destinations::domain::schedule::ScheduleSpec::parse(
            true,
            "daily",
            &[],
            "06:00",
            "UTC",
        )
        .unwrap();
        export_destinations::store::schedule::save(pool, &spec, 1)
            .await
            .unwrap();
        sqlx::query("UPDATE schedule SET fired_through = $1")
            .bind(
                chrono::Utc
                    .with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                    .unwrap()
                    .timestamp_millis(),
            )
            .execute(pool)
            .await
            .unwrap();
    }
    let due = chrono::Utc
        .with_ymd_and_hms(2026, 11, day, 6, 0, 30)
        .unwrap();
    let refresh = export_destinations::schedule::run_due(&w.app.state.sources, due)
        .await
        .unwrap();
    assert!(refresh.is_some(), "the occurrence of November {day} ran");
    let run: i64 = sqlx::query_scalar("SELECT MAX(id) FROM export_runs WHERE destination_id = $1")
        .bind(destination)
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    crate::world::wait(w, run).await
}

/// Waits until the segment's published membership has `count` members.
async fn members_become(app: &TestApp, segment: i64, count: i64) {
    let db = app.state.db.clone();
    wait_until(
        &format!("segment {segment} to have {count} members"),
        Duration::from_secs(30),
        || {
            let db = db.clone();
            async move {
                let now: i64 =
                    sqlx::query_scalar("SELECT member_count FROM segments WHERE id = $1")
                        .bind(segment)
                        .fetch_one(db.pool())
                        .await
                        .unwrap();
                (now == count).then_some(())
            }
        },
    )
    .await
}

fn tags(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

fn member<'a>(
    members: &'a [(String, String, String, Vec<String>)],
    email: &str,
) -> Option<&'a (String, String, String, Vec<String>)> {
    members.iter().find(|m| m.0 == email)
}

#[tokio::test]
async fn a_postgres_table_reaches_the_audience_at_each_scheduled_refresh_with_no_one_acting() {
    let w = world(SandboxConfig::default()).await;
    let db = source_dbs::postgres().await;
    pg_exec(
        &db,
        &[
            "CREATE TABLE customers (customer_id text PRIMARY KEY, email text, first_name text, country text)",
            "INSERT INTO customers SELECT 'C' || i, 'c' || i || '@northwind.io', 'F' || i, \
             CASE WHEN i % 2 = 1 THEN 'Germany' ELSE 'France' END FROM generate_series(1, 40) i",
        ],
    )
    .await;
    w.app
        .signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let source = add_source(
        &w.app,
        &[
            ("kind", "postgres"),
            ("name", "Shop database"),
            ("url", &db),
            ("query", PG_QUERY),
            ("id_column", "customer_id"),
        ],
    )
    .await;
    let page = w.app.get_html(&format!("/data/sources/{source}")).await;
    assert!(page.contains("Email, FirstName, Country"), "{page}");
    assert!(
        !page.contains(":app@") && !page.contains("app:app"),
        "the password is never shown: {page}"
    );
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    let id = destination(&w, &[germany], "subscribed").await;

    let first = scheduled_refresh(&w, id, 1).await;
    assert_eq!(first.status, RunStatus::Successful, "{:?}", first.message);
    let pulls = store::pulls_of(w.app.state.db.pool(), source, 5)
        .await
        .unwrap();
    assert_eq!(counts(&pulls[0]), (40, 40, 0, 0, 0, 0));
    assert_eq!(
        (pulls[0].mode.as_str(), pulls[0].trigger_kind.as_str()),
        ("full", "schedule")
    );
    let members = audience(&w);
    assert_eq!(members.len(), 20, "the Germans: {members:?}");
    assert_eq!(
        member(&members, "c3@northwind.io").map(|m| (m.2.as_str(), m.3.clone())),
        Some(("F3", tags(&["Germany", "export-destinations"])))
    );

    // The shop inserts, changes and deletes customers; nobody touches the console.
    pg_exec(
        &db,
        &[
            "INSERT INTO customers VALUES ('C41', 'c41@northwind.io', 'Newcomer', 'Germany')",
            "UPDATE customers SET first_name = 'Changed' WHERE customer_id = 'C3'",
            "DELETE FROM customers WHERE customer_id = 'C5'",
        ],
    )
    .await;
    let second = scheduled_refresh(&w, id, 2).await;
    assert_eq!(second.status, RunStatus::Successful, "{:?}", second.message);
    let pulls = store::pulls_of(w.app.state.db.pool(), source, 5)
        .await
        .unwrap();
    assert_eq!(
        counts(&pulls[0]),
        (40, 1, 1, 38, 0, 1),
        "read, created, updated, unchanged, rejected, deleted"
    );
    let members = audience(&w);
    assert_eq!(
        member(&members, "c41@northwind.io").map(|m| (m.2.as_str(), m.3.clone())),
        Some(("Newcomer", tags(&["Germany", "export-destinations"]))),
        "an inserted row is created"
    );
    assert_eq!(
        member(&members, "c3@northwind.io").map(|m| m.2.as_str()),
        Some("Changed"),
        "a changed row is updated"
    );
    assert_eq!(
        member(&members, "c5@northwind.io").map(|m| m.3.clone()),
        Some(tags(&["export-destinations"])),
        "a deleted row is a leaver: its segment's tag comes off"
    );
    let gone = export_destinations::store::profiles::find_by_customer(w.app.state.db.pool(), "C5")
        .await
        .unwrap();
    assert!(gone.is_none(), "the deleted customer's profile is gone");

    // System > Status shows the chain's steps.
    let status = w.app.get_html("/system/status").await;
    assert!(status.contains("Sources pulled"), "{status}");
}

#[tokio::test]
async fn a_mariadb_source_pulls_only_what_changed_and_a_full_pull_finds_deletions() {
    let app = spawn_app().await;
    let db = source_dbs::mysql().await;
    mysql_exec(
        &db,
        &[
            "CREATE TABLE customers (id VARCHAR(20) PRIMARY KEY, email VARCHAR(200), age INT, \
             spend DECIMAL(10,2), joined DATE, vip TINYINT(1), note VARCHAR(50), updated_at DATETIME(6) NOT NULL)",
            "INSERT INTO customers VALUES \
             ('M1', 'm1@northwind.io', 31, 12.50, '2024-01-05', 1, '7', NOW(6) - INTERVAL 5 DAY), \
             ('M2', 'm2@northwind.io', 42, 0.00, '2023-11-30', 0, 'forty', NOW(6) - INTERVAL 4 DAY), \
             ('M3', 'm3@northwind.io', NULL, 7.25, NULL, 0, '3', NOW(6) - INTERVAL 3 DAY), \
             ('M4', 'm4@northwind.io', 55, 99.99, '2020-02-29', 1, '9', NOW(6) - INTERVAL 2 DAY)",
        ],
    )
    .await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let source = add_source(
        &app,
        &[
            ("kind", "mysql"),
            ("name", "Shop (MariaDB)"),
            ("url", &db),
            (
                "query",
                "SELECT id, email AS Email, age AS Age, spend AS Spend, joined AS Joined, \
                 vip AS Vip, note AS Note, updated_at FROM customers",
            ),
            ("id_column", "id"),
            ("changed_at_column", "updated_at"),
            ("field_types", "Note=number"),
            ("full_every", "2"),
        ],
    )
    .await;
    let first = pull_now(&app, source, false).await;
    assert_eq!(first.status, "succeeded", "{:?}", first.error);
    assert_eq!(first.mode, "full", "the first pull reads everything");
    let report = app
        .get_html(&format!("/data/imports/{}", first.import_id.unwrap()))
        .await;
    assert_eq!(
        counts(&first),
        (4, 3, 0, 0, 1, 0),
        "M2's Note is not a number: rejected alone: {report}"
    );
    assert!(report.contains("M2") && report.contains("Note"), "{report}");
    let profile = export_destinations::store::profiles::find_by_customer(app.state.db.pool(), "M1")
        .await
        .unwrap()
        .unwrap();
    let attributes: serde_json::Value = serde_json::from_str(&profile.attributes).unwrap();
    assert_eq!(attributes["Age"], serde_json::json!(31));
    assert_eq!(attributes["Spend"], serde_json::json!(12.5));
    assert_eq!(attributes["Joined"], serde_json::json!("2024-01-05"));
    assert_eq!(attributes["Email"], serde_json::json!("m1@northwind.io"));

    // One row changes: an incremental pull reads it and the newest unchanged one (within
    // the margin of the last watermark), not the whole table.
    mysql_exec(
        &db,
        &["UPDATE customers SET age = 32, updated_at = NOW(6) WHERE id = 'M1'"],
    )
    .await;
    let second = pull_now(&app, source, false).await;
    assert_eq!(second.mode, "incremental");
    assert_eq!(counts(&second), (2, 0, 1, 1, 0, 0), "{second:?}");

    // A deletion is found by the next full pull (here every second pull is full).
    mysql_exec(&db, &["DELETE FROM customers WHERE id = 'M4'"]).await;
    let third = pull_now(&app, source, false).await;
    assert_eq!(third.mode, "incremental", "{third:?}");
    assert_eq!(third.deleted, 0, "an incremental pull cannot see deletions");
    let fourth = pull_now(&app, source, false).await;
    assert_eq!(fourth.mode, "full", "after two incremental pulls");
    assert_eq!(fourth.deleted, 1);
    assert!(
        export_destinations::store::profiles::find_by_customer(app.state.db.pool(), "M4")
            .await
            .unwrap()
            .is_none()
    );
    // Full, on request.
    let fifth = pull_now(&app, source, true).await;
    assert_eq!((fifth.mode.as_str(), fifth.unchanged), ("full", 2));
    let page = app.get_html(&format!("/data/pulls/{}", fifth.id)).await;
    assert!(page.contains("Unchanged"), "{page}");
}

#[tokio::test]
async fn a_pull_that_fails_part_way_writes_nothing() {
    let app = spawn_app().await;
    let db = source_dbs::postgres().await;
    pg_exec(
        &db,
        &[
            "CREATE TABLE customers (n int PRIMARY KEY, email text)",
            "INSERT INTO customers SELECT i, 'p' || i || '@northwind.io' FROM generate_series(1, 3000) i",
        ],
    )
    .await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    // The query fails on its 2,500th row, after 2,499 rows were read and written.
    let source = add_source(
        &app,
        &[
            ("kind", "postgres"),
            ("name", "Breaks"),
            ("url", &db),
            (
                "query",
                "SELECT 'P' || n AS customer_id, email AS \"Email\", 10 / (2500 - n) AS \"Ratio\" FROM customers",
            ),
            ("id_column", "customer_id"),
        ],
    )
    .await;
    let pull = pull_now(&app, source, false).await;
    assert_eq!(pull.status, "failed");
    let error = pull.error.clone().unwrap_or_default();
    assert!(error.contains("division by zero"), "{error}");
    assert!(
        error.starts_with("Row 2500:"),
        "2,499 rows were read (and 2,000 written in the pull's transaction) first: {error}"
    );
    assert!(
        error.contains("Nothing of this pull was written"),
        "{error}"
    );
    let profiles = export_destinations::store::profiles::count(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(profiles, 0, "nothing of a failed pull is published");
    let page = app.get_html(&format!("/data/pulls/{}", pull.id)).await;
    assert!(page.contains("nothing of this pull was written"), "{page}");
}

#[tokio::test]
async fn every_bad_input_on_the_form_is_named_and_everything_typed_is_kept() {
    let app = spawn_app().await;
    let db = source_dbs::postgres().await;
    pg_exec(
        &db,
        &["CREATE TABLE customers (id text, email text, name text)"],
    )
    .await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let wrong_password = {
        let mut url = url::Url::parse(&db).unwrap();
        url.set_password(Some("not-the-password")).unwrap();
        url.to_string()
    };
    let unknown_host = {
        let mut url = url::Url::parse(&db).unwrap();
        url.set_host(Some("no-such-host.invalid")).unwrap();
        url.to_string()
    };
    let good = "SELECT id, email AS \"Email\" FROM customers";
    for (url, query, id_column, action, says) in [
        (
            wrong_password.as_str(),
            good,
            "id",
            "test",
            "refused the user name or password",
        ),
        (unknown_host.as_str(), good, "id", "test", "is unknown"),
        (
            db.as_str(),
            "SELEC id FROM customers",
            "id",
            "test",
            "syntax error",
        ),
        (
            db.as_str(),
            good,
            "customer",
            "preview",
            "no column named &#34;customer&#34;",
        ),
        (
            db.as_str(),
            "SELECT id, email, name AS email FROM customers",
            "id",
            "save",
            "twice",
        ),
        (
            db.as_str(),
            "SELECT id FROM nowhere",
            "id",
            "save",
            "table that does not exist",
        ),
        (
            "file:///etc/passwd",
            good,
            "id",
            "test",
            "starts with postgres://",
        ),
        (
            "postgres://u:p@169.254.169.254:5432/x",
            good,
            "id",
            "test",
            "link-local",
        ),
    ] {
        let response = app
            .post_form(
                "/data/sources/new",
                "/data/sources/new",
                &[
                    ("kind", "postgres"),
                    ("name", "Typed name"),
                    ("url", url),
                    ("query", query),
                    ("id_column", id_column),
                    ("action", action),
                ],
            )
            .await;
        assert_eq!(response.status(), 422, "{url} {query}");
        let html = response.text().await.unwrap();
        let said = html.replace("&quot;", "&#34;");
        assert!(said.contains(says), "{says}: {html}");
        assert!(html.contains("value=\"Typed name\""), "the name is kept");
        assert!(html.contains(&escaped(query)), "the query is kept: {html}");
        assert!(
            !html.contains("not-the-password") && !html.contains(":app@"),
            "no password is rendered"
        );
    }
    assert!(store::list(app.state.db.pool()).await.unwrap().is_empty());

    // Test connection and Preview rows work on a good source.
    pg_exec(
        &db,
        &["INSERT INTO customers VALUES ('A1', 'a1@northwind.io', 'Ann'), ('', 'x@northwind.io', 'No ID')"],
    )
    .await;
    let preview = app
        .post_form(
            "/data/sources/new",
            "/data/sources/new",
            &[
                ("kind", "postgres"),
                ("name", "Shop"),
                ("url", &db),
                (
                    "query",
                    "SELECT id, email AS \"Email\", name AS \"Name\" FROM customers",
                ),
                ("id_column", "id"),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(preview.status(), 200);
    let html = preview.text().await.unwrap();
    assert!(html.contains("A1") && html.contains("Name: Ann"), "{html}");
    assert!(html.contains("The customer ID is empty"), "{html}");
    assert!(
        html.contains("placeholder=\"kept\"")
            && !html.contains("name=\"secret_sealed\" value=\"\""),
        "the password typed in the URL is kept, sealed, for the next press: {html}"
    );

    // A field another source already provides is refused at Save, naming both.
    add_source(
        &app,
        &[
            ("kind", "postgres"),
            ("name", "CRM"),
            ("url", &db),
            ("query", "SELECT id, email AS \"Email\" FROM customers"),
            ("id_column", "id"),
        ],
    )
    .await;
    let twice = app
        .post_form(
            "/data/sources/new",
            "/data/sources/new",
            &[
                ("kind", "postgres"),
                ("name", "Shop"),
                ("url", &db),
                (
                    "query",
                    "SELECT id, email AS \"Email\", name FROM customers",
                ),
                ("id_column", "id"),
                ("action", "save"),
            ],
        )
        .await;
    assert_eq!(twice.status(), 422);
    let html = twice.text().await.unwrap().replace("&quot;", "&#34;");
    assert!(
        html.contains("&#34;Email&#34; is already provided by the source &#34;CRM&#34;")
            && html.contains("&#34;Shop&#34;"),
        "{html}"
    );
}

#[tokio::test]
async fn an_unchanged_csv_file_costs_one_request_and_its_credentials_are_sent() {
    let requests = Arc::new(AtomicUsize::new(0));
    let body = Arc::new(std::sync::Mutex::new(String::from(
        "CustomerId,Email,City\nK1,k1@northwind.io,Berlin\nK2,k2@northwind.io,Paris\n",
    )));
    let server = {
        use axum::http::{HeaderMap, StatusCode};
        let (requests, body) = (requests.clone(), body.clone());
        let app = axum::Router::new().route(
            "/customers.csv",
            axum::routing::get(move |headers: HeaderMap| {
                let (requests, body) = (requests.clone(), body.clone());
                async move {
                    requests.fetch_add(1, Ordering::SeqCst);
                    if headers.get("authorization").and_then(|v| v.to_str().ok())
                        != Some("Bearer s3cret")
                    {
                        return (StatusCode::UNAUTHORIZED, HeaderMap::new(), String::new());
                    }
                    let text = body.lock().unwrap().clone();
                    let etag = format!("\"{}\"", text.len());
                    let mut out = HeaderMap::new();
                    out.insert("etag", etag.parse().unwrap());
                    if headers.get("if-none-match").and_then(|v| v.to_str().ok()) == Some(&etag) {
                        return (StatusCode::NOT_MODIFIED, out, String::new());
                    }
                    (StatusCode::OK, out, text)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/customers.csv")
    };
    let app = spawn_app().await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let refused = app
        .post_form(
            "/data/sources/new",
            "/data/sources/new",
            &[
                ("kind", "csv_url"),
                ("name", "Export file"),
                ("url", &server),
                ("action", "test"),
            ],
        )
        .await;
    crate::helpers::assert_refused(refused, 422, "check the credentials").await;
    let source = add_source(
        &app,
        &[
            ("kind", "csv_url"),
            ("name", "Export file"),
            ("url", &server),
            ("auth", "bearer"),
            ("token", "s3cret"),
        ],
    )
    .await;
    let berlin = crate::world::segment(&app, "Berlin", "City", "Berlin").await;
    let before = requests.load(Ordering::SeqCst);
    let first = pull_now(&app, source, false).await;
    assert_eq!(counts(&first), (2, 2, 0, 0, 0, 0), "{first:?}");
    // A pull that changed anything refreshes the segments when it ends.
    members_become(&app, berlin, 1).await;
    assert_eq!(requests.load(Ordering::SeqCst), before + 1);
    let second = pull_now(&app, source, false).await;
    assert_eq!(second.status, "unchanged", "{second:?}");
    assert_eq!(
        requests.load(Ordering::SeqCst),
        before + 2,
        "an unchanged file costs one request"
    );
    *body.lock().unwrap() = "CustomerId,Email,City\nK1,k1@northwind.io,Rome\n".into();
    let third = pull_now(&app, source, false).await;
    assert_eq!(
        counts(&third),
        (1, 0, 1, 0, 0, 1),
        "K2 left the file: {third:?}"
    );
    let page = app.get_html(&format!("/data/sources/{source}/edit")).await;
    assert!(!page.contains("s3cret"), "the token is never shown");
}

#[tokio::test]
async fn pull_requests_sent_at_once_start_one_pull_and_the_api_follows_it() {
    let app = spawn_app().await;
    let db = source_dbs::postgres().await;
    pg_exec(
        &db,
        &[
            "CREATE TABLE customers (id text, email text)",
            "INSERT INTO customers SELECT 'Q' || i, 'q' || i || '@northwind.io' FROM generate_series(1, 20000) i",
        ],
    )
    .await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let token = crate::api::token(&app, "pipeline@example.com", Role::Administrator).await;
    let api = |path: &str| app.url(&format!("/api/v1{path}"));
    let created = app
        .client
        .post(api("/sources"))
        .bearer_auth(&token)
        .json(&serde_json::json!({
            "name": "Shop", "kind": "postgres", "url": db,
            "query": "SELECT id, email AS \"Email\" FROM customers", "id_column": "id",
            "missing_profiles": "keep"
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let source: serde_json::Value = created.json().await.unwrap();
    assert_eq!(source["fields"], serde_json::json!(["Email"]));
    assert!(
        !source.to_string().contains(":app@"),
        "the URL comes back without its password: {source}"
    );
    let id = source["id"].as_i64().unwrap();

    let answers = futures::future::join_all((0..8).map(|_| {
        app.client
            .post(api(&format!("/sources/{id}/pulls")))
            .bearer_auth(&token)
            .send()
    }))
    .await;
    let statuses: Vec<u16> = answers
        .iter()
        .map(|a| a.as_ref().unwrap().status().as_u16())
        .collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        1,
        "one pull starts: {statuses:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{statuses:?}"
    );
    let pull_id: i64 = sqlx::query_scalar("SELECT MAX(id) FROM source_pulls")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let pulls: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM source_pulls")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(pulls, 1);
    let done = ended(&app, pull_id).await;
    assert_eq!(done.created, 20_000);
    let followed: serde_json::Value = app
        .client
        .get(api(&format!("/pulls/{pull_id}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(followed["status"], "succeeded");
    assert_eq!(followed["created"], 20_000);

    // A Viewer may list sources but not add one.
    let viewer = crate::api::token(&app, "viewer@example.com", Role::Viewer).await;
    let listed = app
        .client
        .get(api("/sources"))
        .bearer_auth(&viewer)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.status(), 200);
    let refused = app
        .client
        .post(api("/sources"))
        .bearer_auth(&viewer)
        .json(&serde_json::json!({"name": "x", "kind": "postgres", "url": db}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    let invalid = app
        .client
        .post(api("/sources"))
        .bearer_auth(&token)
        .json(&serde_json::json!({"name": "x", "kind": "oracle", "url": db}))
        .send()
        .await
        .unwrap();
    let body =
        crate::helpers::assert_refused(invalid, 422, "choose postgres, mysql or csv_url").await;
    assert!(body.contains("\"field\":\"kind\""), "{body}");
}

#[tokio::test]
async fn a_full_pull_that_returns_no_rows_deletes_nothing() {
    let (app, db, source) = console_with_pg_source(
        &[
            "CREATE TABLE customers (id text, email text)",
            "INSERT INTO customers VALUES ('E1', 'e1@northwind.io'), ('E2', 'e2@northwind.io')",
        ],
        "Shop",
        "SELECT id, email AS \"Email\" FROM customers",
    )
    .await;
    assert_eq!(pull_now(&app, source, false).await.created, 2);
    pg_exec(&db, &["TRUNCATE customers"]).await;
    let empty = pull_now(&app, source, false).await;
    assert_eq!(empty.status, "failed");
    assert!(
        empty
            .error
            .unwrap_or_default()
            .contains("nothing was deleted"),
        "an empty answer is taken for a broken query"
    );
    assert_eq!(
        export_destinations::store::profiles::count(app.state.db.pool())
            .await
            .unwrap(),
        2
    );
}

#[tokio::test]
async fn sources_pull_on_their_own_interval_share_customers_and_a_stopped_pull_is_marked_interrupted()
 {
    let app = spawn_app().await;
    let db = source_dbs::postgres().await;
    pg_exec(
        &db,
        &[
            "CREATE TABLE customers (id text, email text)",
            "CREATE TABLE loyalty (id text, tier text)",
            "INSERT INTO customers VALUES ('S1', 's1@northwind.io'), ('S2', 's2@northwind.io')",
            "INSERT INTO loyalty VALUES ('S1', 'gold'), ('S2', 'silver')",
        ],
    )
    .await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let shop = add_source(
        &app,
        &[
            ("kind", "postgres"),
            ("name", "Shop"),
            ("url", &db),
            ("query", "SELECT id, email AS \"Email\" FROM customers"),
            ("id_column", "id"),
            ("every_minutes", "5"),
        ],
    )
    .await;
    let loyalty = add_source(
        &app,
        &[
            ("kind", "postgres"),
            ("name", "Loyalty"),
            ("url", &db),
            ("query", "SELECT id, tier AS \"Tier\" FROM loyalty"),
            ("id_column", "id"),
        ],
    )
    .await;

    // Only the shop has an interval of its own: due at once, then not for 5 minutes.
    let sources = &app.state.sources;
    let now = export_destinations::db::now_millis();
    let due = export_destinations::schedule::pull_due_sources(sources, now)
        .await
        .unwrap();
    assert_eq!(due, 1);
    assert_eq!(
        export_destinations::schedule::pull_due_sources(sources, now)
            .await
            .unwrap(),
        0,
        "not due again yet"
    );
    assert_eq!(
        export_destinations::schedule::pull_due_sources(sources, now + 6 * 60_000)
            .await
            .unwrap(),
        1
    );
    let pulls = store::pulls_of(app.state.db.pool(), shop, 5).await.unwrap();
    assert_eq!(pulls.len(), 2);
    assert!(pulls.iter().all(|p| p.trigger_kind == "every"), "{pulls:?}");

    // Two sources join on the customer ID; a customer who leaves one keeps the other's fields.
    assert_eq!(pull_now(&app, loyalty, false).await.updated, 2);
    pg_exec(&db, &["DELETE FROM loyalty WHERE id = 'S2'"]).await;
    let pull = pull_now(&app, loyalty, false).await;
    assert_eq!(pull.deleted, 0, "the shop still provides S2");
    let s2 = export_destinations::store::profiles::find_by_customer(app.state.db.pool(), "S2")
        .await
        .unwrap()
        .expect("S2 stays");
    let attributes: serde_json::Value = serde_json::from_str(&s2.attributes).unwrap();
    assert_eq!(
        attributes.get("Tier"),
        None,
        "the loyalty field is gone: {attributes}"
    );
    assert_eq!(attributes["Email"], "s2@northwind.io");

    // A pull whose console stopped beating is marked interrupted when the source is pulled next.
    let stale = export_destinations::db::now_millis() - 3 * 60_000;
    sqlx::query(
        "INSERT INTO source_pulls (source_id, mode, trigger_kind, status, started_at, heartbeat_at) \
         VALUES ($1, 'full', 'manual', 'running', $2, $2)",
    )
    .bind(shop)
    .bind(stale)
    .execute(app.state.db.pool())
    .await
    .unwrap();
    let next = pull_now(&app, shop, false).await;
    assert_eq!(next.status, "succeeded");
    let interrupted: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM source_pulls WHERE source_id = $1 AND status = 'interrupted'",
    )
    .bind(shop)
    .fetch_one(app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(interrupted, 1);
}

#[tokio::test]
async fn a_failed_pull_raises_the_failure_alerts_an_export_would() {
    let app = spawn_app().await;
    let db = source_dbs::postgres().await;
    pg_exec(
        &db,
        &[
            "CREATE TABLE customers (id text, email text)",
            "INSERT INTO customers VALUES ('A1', 'a1@northwind.io')",
        ],
    )
    .await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let receiver = crate::receivers::WebhookReceiver::start(&[]).await;
    let secret = crate::notifications::webhook_on(&app, &receiver.url, &[]).await;
    let source = add_source(
        &app,
        &[
            ("kind", "postgres"),
            ("name", "Shop"),
            ("url", &db),
            ("query", "SELECT id, email AS \"Email\" FROM customers"),
            ("id_column", "id"),
        ],
    )
    .await;
    assert_eq!(pull_now(&app, source, false).await.status, "succeeded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(receiver.received().is_empty(), "a good pull alerts no one");

    pg_exec(&db, &["DROP TABLE customers"]).await;
    let failed = pull_now(&app, source, false).await;
    assert_eq!(failed.status, "failed");
    let got = crate::notifications::wait_for_requests(&receiver, 1).await;
    let request = &got[0];
    let timestamp = request.header("x-export-destinations-timestamp");
    assert_eq!(
        request.header("x-export-destinations-signature"),
        crate::notifications::expected_signature(&secret, &timestamp, &request.body)
    );
    let body = request.json();
    assert_eq!(body["event"], "pull.failed");
    assert_eq!(body["source"]["name"], "Shop");
    assert_eq!(body["pull"]["id"], failed.id);
    assert!(
        body["pull"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("does not exist"),
        "{body}"
    );
    assert_eq!(
        body["link"],
        format!("{}/data/pulls/{}", app.base, failed.id)
    );
    let page = app.get_html("/system/notifications").await;
    assert!(
        page.contains(&format!(
            "<a href=\"/data/pulls/{}\">Pull {}</a>",
            failed.id, failed.id
        )) && page.contains("Pull failed"),
        "{page}"
    );
}

#[tokio::test]
async fn a_running_pull_shows_its_counts_as_they_grow() {
    // Rows after the 600th come slowly: the pull is still running with 500 or 1,000 rows
    // written (the table is read in the order it was written).
    let (app, _, source) = console_with_pg_source(
        &[
            "CREATE TABLE customers (n int, email text)",
            "INSERT INTO customers SELECT i, 'g' || i || '@northwind.io' FROM generate_series(1, 1500) i",
        ],
        "Slow shop",
        "SELECT 'G' || n AS id, email AS \"Email\", \
                 CASE WHEN n > 600 THEN pg_sleep(0.004)::text END AS \"Slow\" FROM customers",
    )
    .await;
    let page = format!("/data/sources/{source}");
    let response = app.post_form(&page, &format!("{page}/pull"), &[]).await;
    let pull: i64 = location(&response)
        .trim_start_matches("/data/pulls/")
        .parse()
        .unwrap();
    let shown = wait_until(
        "the pull page to show rows read while it runs",
        Duration::from_secs(20),
        || {
            let app = &app;
            async move {
                let html = app.get_html(&format!("/data/pulls/{pull}")).await;
                let read = html
                    .split("<dt>Rows read</dt><dd>")
                    .nth(1)
                    .and_then(|rest| rest.split('<').next())
                    .unwrap_or_default()
                    .to_owned();
                (html.contains("Pulling…") && (read == "500" || read == "1,000")).then_some(html)
            }
        },
    )
    .await;
    assert!(
        shown.contains("http-equiv=\"refresh\""),
        "the page follows the pull"
    );
    let done = ended(&app, pull).await;
    assert_eq!((done.status.as_str(), done.created), ("succeeded", 1500));
}

#[tokio::test]
async fn a_query_runs_read_only_and_within_the_statement_timeout() {
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.source_statement_timeout = Duration::from_secs(1);
    })
    .await;
    let db = source_dbs::postgres().await;
    pg_exec(
        &db,
        &[
            "CREATE TABLE customers (id text, email text)",
            "INSERT INTO customers VALUES ('W1', 'w1@northwind.io')",
            "CREATE SEQUENCE counter",
        ],
    )
    .await;
    app.signed_in_as("admin@example.com", Role::Administrator)
        .await;
    // A query that would write (here, advance a sequence) is refused by the read-only
    // transaction; one that nests a DELETE is refused by the database before it runs.
    let writes = app
        .post_form(
            "/data/sources/new",
            "/data/sources/new",
            &[
                ("kind", "postgres"),
                ("name", "Sneaky"),
                ("url", &db),
                (
                    "query",
                    "SELECT id, email AS \"Email\", nextval('counter') AS \"N\" FROM customers",
                ),
                ("id_column", "id"),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(writes.status(), 422);
    let html = writes.text().await.unwrap();
    assert!(html.contains("read-only transaction"), "{html}");
    let deletes = app
        .post_form(
            "/data/sources/new",
            "/data/sources/new",
            &[
                ("kind", "postgres"),
                ("name", "Sneaky"),
                ("url", &db),
                (
                    "query",
                    "WITH gone AS (DELETE FROM customers RETURNING id, email) SELECT * FROM gone",
                ),
                ("id_column", "id"),
                ("action", "preview"),
            ],
        )
        .await;
    assert_eq!(deletes.status(), 422);
    let left: i64 = {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&db).await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM customers")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    };
    assert_eq!(left, 1, "nothing was deleted in the source");

    // A query slower than SOURCE_STATEMENT_TIMEOUT is stopped, and its pull writes nothing.
    let source = add_source(
        &app,
        &[
            ("kind", "postgres"),
            ("name", "Slow"),
            ("url", &db),
            (
                "query",
                "SELECT id, email AS \"Email\", pg_sleep(3)::text AS \"Nap\" FROM customers",
            ),
            ("id_column", "id"),
        ],
    )
    .await;
    let pull = pull_now(&app, source, false).await;
    assert_eq!(pull.status, "failed");
    assert!(
        pull.error
            .as_deref()
            .unwrap_or_default()
            .contains("ran longer than SOURCE_STATEMENT_TIMEOUT allows"),
        "{pull:?}"
    );
}

#[tokio::test]
async fn two_consoles_on_one_database_never_pull_one_source_twice() {
    let (app, _, source) = console_with_pg_source(
        &[
            "CREATE TABLE customers (id text, email text)",
            "INSERT INTO customers SELECT 'T' || i, 't' || i || '@northwind.io' FROM generate_series(1, 5000) i",
        ],
        "Shop",
        // The read takes a second or more, so the second console's claim surely comes while
        // the first pull is under way (one after the other, two pulls would be right).
        "SELECT id, email AS \"Email\" FROM customers CROSS JOIN (SELECT pg_sleep(1.5)) AS slow",
    )
    .await;
    // A second console on the same database (its own process state, its own pulls).
    let dir = Arc::new(tempfile::tempdir().unwrap());
    let mut settings =
        crate::helpers::test_settings(dir.path(), app.state.settings.database_url.clone());
    settings.secret_key = Some(app.state.secret_key.clone());
    let (other, stop, stopped) = crate::helpers::spawn_stoppable(dir, settings).await;
    let request = export_destinations::sources::pull::PullRequest {
        source_id: source,
        full: false,
        trigger: export_destinations::sources::pull::Trigger::Schedule,
        by: None,
    };
    let (here, there) = tokio::join!(
        export_destinations::sources::pull::start(&app.state.sources, request),
        export_destinations::sources::pull::start(&other.state.sources, request),
    );
    let started = [here.unwrap(), there.unwrap()];
    assert_eq!(
        started.iter().filter(|s| s.is_ok()).count(),
        1,
        "one console pulls, the other is told it is under way: {started:?}"
    );
    let pull = started
        .iter()
        .find_map(|s| s.as_ref().ok().copied())
        .unwrap();
    assert_eq!(ended(&app, pull).await.created, 5000);
    let pulls: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM source_pulls")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(pulls, 1);
    let _ = stop.send(());
    let _ = stopped.await;
}

#[tokio::test]
async fn everyone_sees_sources_contributors_pull_and_only_administrators_change_them() {
    let (app, _, source) = console_with_pg_source(
        &[
            "CREATE TABLE customers (id text, email text)",
            "INSERT INTO customers VALUES ('V1', 'v1@northwind.io')",
        ],
        "Shop",
        "SELECT id, email AS \"Email\" FROM customers",
    )
    .await;
    let page = format!("/data/sources/{source}");

    let viewer = app.another_client();
    viewer
        .signed_in_as("viewer@example.com", Role::Viewer)
        .await;
    let list = viewer.get_html("/data/sources").await;
    assert!(
        list.contains("Shop") && !list.contains("Add a source"),
        "{list}"
    );
    let shown = viewer.get_html(&page).await;
    assert!(
        !shown.contains("Pull now") && !shown.contains("/edit"),
        "{shown}"
    );
    assert_eq!(viewer.get("/data/sources/new").await.status(), 403);
    let token = crate::helpers::csrf_token(&shown);
    let refused = viewer
        .post_raw(&format!("{page}/pull"), &[("csrf_token", &token)])
        .await;
    assert_eq!(refused.status(), 403, "a Viewer cannot pull");

    let contributor = app.another_client();
    contributor
        .signed_in_as("contributor@example.com", Role::Contributor)
        .await;
    let shown = contributor.get_html(&page).await;
    assert!(
        shown.contains("Pull now") && !shown.contains("/edit\""),
        "{shown}"
    );
    assert_eq!(pull_now(&contributor, source, false).await.created, 1);
    assert_eq!(contributor.get(&format!("{page}/edit")).await.status(), 403);
    let token = crate::helpers::csrf_token(&shown);
    let refused = contributor
        .post_raw(&format!("{page}/delete"), &[("csrf_token", &token)])
        .await;
    assert_eq!(
        refused.status(),
        403,
        "a Contributor cannot delete a source"
    );
    let no_token = app.post_raw(&format!("{page}/delete"), &[]).await;
    assert_eq!(no_token.status(), 403, "every form needs its CSRF token");
    assert_eq!(store::list(app.state.db.pool()).await.unwrap().len(), 1);
}
