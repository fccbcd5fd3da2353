use export_destinations::domain::Role;

use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let app = spawn_app().await;
    app.create_user("ada@example.com", Role::Administrator)
        .await;
    for path in ["/sign-in", "/no-such-page", "/static/app.css", "/healthz"] {
        let response = app.get(path).await;
        let headers = response.headers();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{path}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{path}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert!(headers.contains_key("referrer-policy"), "{path}");
    }
}

#[tokio::test]
async fn unknown_pages_get_a_404_page() {
    let app = spawn_app().await;
    let response = app.get("/no-such-page").await;
    assert_eq!(response.status(), 404);
    assert!(response.text().await.unwrap().contains("Page not found"));
}

#[tokio::test]
async fn oversized_request_bodies_are_refused() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let huge = "x".repeat(2 * 1024 * 1024);
    let response = app
        .client
        .post(app.url("/admin/users"))
        .form(&[("name", huge.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn markup_in_a_user_name_is_shown_as_text() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    app.post_form(
        "/admin/users",
        "/admin/users",
        &[
            ("name", "<script>alert(1)</script>"),
            ("email", "x@example.com"),
            ("role", "viewer"),
            ("password", PASSWORD),
        ],
    )
    .await;
    let html = app.get_html("/admin/users").await;
    assert!(!html.contains("<script>alert(1)</script>"));
    assert!(
        html.contains("&#60;script&#62;alert(1)&#60;/script&#62;")
            || html.contains("&lt;script&gt;")
    );
}

#[tokio::test]
async fn static_assets_are_served_from_the_console_itself() {
    let app = spawn_app().await;
    let css = app.get("/static/app.css").await;
    assert_eq!(css.status(), 200);
    assert!(
        css.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/css")
    );
    let html = app.get_html("/setup").await;
    assert!(
        !html.contains("https://"),
        "nothing is loaded from another site"
    );
}

#[tokio::test]
async fn every_static_file_a_template_names_is_served() {
    fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, found);
            } else {
                let text = std::fs::read_to_string(&path).unwrap();
                for piece in text.split("/static/").skip(1) {
                    let name: String = piece
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-')
                        .collect();
                    found.push(name);
                }
            }
        }
    }
    let mut files = Vec::new();
    walk(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/templates")),
        &mut files,
    );
    files.sort();
    files.dedup();
    assert!(files.contains(&"destinations.js".to_owned()), "{files:?}");
    let app = spawn_app().await;
    for file in files.iter().filter(|f| *f != "sandbox.css") {
        assert_eq!(
            app.get(&format!("/static/{file}")).await.status(),
            200,
            "{file}"
        );
    }
    assert_eq!(app.get("/sandbox/static/sandbox.css").await.status(), 200);
}

/// The database (with its -wal and -shm files) and the sandbox's state hold credentials
/// and personal data: readable by their owner only, whatever the umask.
#[cfg(unix)]
#[tokio::test]
async fn the_database_and_sandbox_files_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    // A fresh data folder, which the console creates, with the database in it.
    let app = crate::helpers::spawn_app_with(|settings| {
        settings.data_dir = settings.data_dir.join("data");
        if settings.database_url.is_sqlite() {
            settings.database_url = export_destinations::db::DatabaseUrl::sqlite_file(
                &settings.data_dir.join("console.db"),
            );
        }
    })
    .await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let mode = |path: &std::path::Path| {
        std::fs::metadata(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .permissions()
            .mode()
            & 0o777
    };
    let settings = &app.state.settings;
    assert_eq!(mode(&settings.data_dir), 0o700, "the data folder");
    if let Some(db) = settings.database_url.sqlite_path() {
        assert_eq!(mode(db), 0o600, "{}", db.display());
        let mut companions = 0;
        for suffix in ["-wal", "-shm"] {
            let path = std::path::PathBuf::from(format!("{}{suffix}", db.display()));
            if path.exists() {
                companions += 1;
                assert_eq!(mode(&path), 0o600, "{}", path.display());
            }
        }
        assert_eq!(companions, 2, "the console runs SQLite in WAL mode");
    }
    let sandbox = app.state.sandbox.clone().unwrap();
    sandbox.save().unwrap();
    assert_eq!(mode(&settings.data_dir.join("sandbox.json")), 0o600);
}
