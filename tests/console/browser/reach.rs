//! Looks and reach: every page readable (text contrast of at least 4.5:1) and usable on a
//! 390-pixel-wide phone, where the navigation folds behind a menu button and no page
//! scrolls sideways.

use fantoccini::Locator;

use super::kit::*;
use crate::helpers::spawn_app;

/// The pages a person visits most, after a set-up and an export.
const PAGES: &[&str] = &[
    "/admin/export-destinations",
    "/data/profiles",
    "/data/segments",
    "/data/segments/new",
    "/data/fields",
    "/admin/users",
    "/system/status",
    "/system/schedule",
    "/admin/audit-log",
    "/admin/api-tokens",
    "/system/notifications",
];

#[tokio::test]
#[ignore = "needs Chromium and chromedriver; run with --ignored"]
async fn every_page_is_readable_and_fits_a_phone() {
    let app = spawn_app().await;
    let segment = crate::wizard::seed(&app).await;
    app.signed_in_as(
        "ada@example.com",
        export_destinations::domain::Role::Administrator,
    )
    .await;
    let id = crate::wizard::complete(&app, segment).await;
    // A draft too: its set-up page has steps not yet available, greyed out.
    let draft = crate::wizard::connect(
        &app,
        "Half done",
        &crate::wizard::audience(&app, "Customers"),
    )
    .await;
    let (_driver, browser) = start_browser().await;
    sign_in(
        &app,
        &browser,
        "grace@example.com",
        export_destinations::domain::Role::Administrator,
    )
    .await;
    let mut pages: Vec<String> = PAGES.iter().map(|p| (*p).to_owned()).collect();
    pages.push(format!("/admin/export-destinations/{id}/edit"));
    pages.push(format!("/admin/export-destinations/{id}/runs"));
    pages.push(format!("/data/segments/{segment}"));
    pages.push(format!("/admin/export-destinations/{id}/preview"));
    let profile: i64 = sqlx::query_scalar("SELECT MIN(id) FROM profiles")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    pages.push(format!("/data/profiles/{profile}/forget"));
    pages.push(draft.clone());
    pages.push("/admin/export-destinations/mailchimp/new".into());
    let (source, pull) = pulled_source(&app).await;
    for page in [
        "/data/sources".to_owned(),
        "/data/sources/new".to_owned(),
        format!("/data/sources/{source}"),
        format!("/data/sources/{source}/edit"),
        format!("/data/pulls/{pull}"),
    ] {
        pages.push(page);
    }

    // At desktop width: readable.
    for page in &pages {
        browser.goto(&app.url(page)).await.unwrap();
        let low = low_contrast_texts(&browser).await;
        assert!(low.is_empty(), "{page}: {low:#?}");
    }
    browser.goto(&app.url(&draft)).await.unwrap();
    screenshot(&browser, "30-draft-steps").await;
    browser
        .goto(&app.url(&format!("/admin/export-destinations/{id}/preview")))
        .await
        .unwrap();
    screenshot(&browser, "31-preview").await;
    browser
        .goto(&app.url("/system/notifications"))
        .await
        .unwrap();
    screenshot(&browser, "32-notifications").await;
    for (page, name) in [
        (format!("/data/sources/{source}"), "33-source"),
        ("/data/sources/new".to_owned(), "34-source-form"),
        (format!("/data/pulls/{pull}"), "35-pull"),
    ] {
        browser.goto(&app.url(&page)).await.unwrap();
        screenshot(&browser, name).await;
    }

    // At 390 pixels: the menu folds away, and nothing scrolls sideways.
    browser.set_window_size(390, 844).await.unwrap();
    for page in &pages {
        browser.goto(&app.url(page)).await.unwrap();
        assert!(
            !scrolls_sideways(&browser).await,
            "{page} scrolls sideways at 390 px"
        );
        let low = low_contrast_texts(&browser).await;
        assert!(low.is_empty(), "{page} at 390 px: {low:#?}");
    }
    browser
        .goto(&app.url("/admin/export-destinations"))
        .await
        .unwrap();
    let nav = browser.find(Locator::Css("nav.sidebar")).await.unwrap();
    assert!(
        !nav.is_displayed().await.unwrap(),
        "the navigation is folded away"
    );
    screenshot(&browser, "31-phone-destinations").await;
    click(&browser, "label.nav-button").await;
    assert!(
        nav.is_displayed().await.unwrap(),
        "the menu button opens it"
    );
    screenshot(&browser, "32-phone-menu").await;
    for (page, name) in [
        (format!("/data/sources/{source}"), "36-phone-source"),
        ("/data/sources/new".to_owned(), "37-phone-source-form"),
    ] {
        browser.goto(&app.url(&page)).await.unwrap();
        screenshot(&browser, name).await;
    }
    browser
        .goto(&app.url("/admin/export-destinations"))
        .await
        .unwrap();
    click(&browser, "label.nav-button").await;
    browser
        .find(Locator::LinkText("Segments"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&browser, "/data/segments").await;
    browser.close().await.unwrap();
}

/// A PostgreSQL source, saved and pulled once: (source, pull).
async fn pulled_source(app: &crate::helpers::TestApp) -> (i64, i64) {
    let db = crate::source_dbs::postgres().await;
    crate::source_dbs::pg_exec(
        &db,
        &[
            "CREATE TABLE customers (id text, email text, first_name text, city text)",
            "INSERT INTO customers SELECT 'R' || i, 'r' || i || '@northwind.io', 'Reader ' || i, 'Lisbon' \
             FROM generate_series(1, 50) i",
        ],
    )
    .await;
    let sources = &app.state.sources;
    let spec = export_destinations::sources::spec::SourceInput {
        name: "Shop database".into(),
        kind: "postgres".into(),
        url: db,
        query: "SELECT id, email AS \"ShopEmail\", first_name AS \"ShopFirstName\", city AS \"ShopCity\" FROM customers"
            .into(),
        id_column: "id".into(),
        ..Default::default()
    }
    .parse(None)
    .unwrap();
    let admin: i64 = sqlx::query_scalar("SELECT MIN(id) FROM users")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    let actor = export_destinations::store::audit::Actor {
        user_id: admin,
        email: "ada@example.com",
    };
    let source = export_destinations::sources::save(sources, None, &spec, &actor)
        .await
        .unwrap();
    let request = export_destinations::sources::pull::PullRequest {
        source_id: source,
        full: false,
        trigger: export_destinations::sources::pull::Trigger::Manual,
        by: None,
    };
    let pull = export_destinations::sources::pull::run(sources, request)
        .await
        .unwrap()
        .unwrap();
    (source, pull.id)
}
