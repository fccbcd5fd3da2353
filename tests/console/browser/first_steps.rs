//! A newcomer's first steps: the first administrator, signing in, importing profiles and
//! building a segment.

use fantoccini::Locator;
use serde_json::json;

use super::kit::*;
use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
#[ignore = "needs Chromium and chromedriver; run with --ignored"]
async fn a_newcomer_creates_the_first_administrator_signs_in_and_sees_export_destinations() {
    let app = spawn_app().await;
    let (_driver, browser) = start_browser().await;

    browser.goto(&app.url("/")).await.unwrap();
    wait_for_path(&browser, "/setup").await;
    fill(&browser, "name", "Ada Lovelace").await;
    fill(&browser, "email", "ada@example.com").await;
    fill(&browser, "password", PASSWORD).await;
    fill(&browser, "password_confirmation", PASSWORD).await;
    screenshot(&browser, "01-first-administrator").await;
    click(&browser, "button[type=submit]").await;
    wait_for_path(&browser, "/admin/export-destinations").await;

    // Sign out, then sign in again through the form.
    browser
        .find(Locator::LinkText("Export destinations"))
        .await
        .unwrap();
    browser
        .find(Locator::XPath("//button[text()='Sign out']"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&browser, "/sign-in").await;
    fill(&browser, "email", "ada@example.com").await;
    fill(&browser, "password", PASSWORD).await;
    screenshot(&browser, "02-sign-in").await;
    click(&browser, "button[type=submit]").await;
    wait_for_path(&browser, "/admin/export-destinations").await;

    let heading = browser
        .find(Locator::Css("main h1"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(heading, "Export destinations");
    let current = browser
        .find(Locator::Css("nav a[aria-current=page]"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(current, "Export destinations");
    let who = browser
        .find(Locator::Css(".topbar .user"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(who, "Ada Lovelace · Administrator");
    // The stylesheet loaded (same origin, allowed by the CSP): the sidebar is laid out.
    let width = browser
        .execute(
            "return getComputedStyle(document.querySelector('nav.sidebar')).width",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(width, json!("220px"));
    screenshot(&browser, "03-export-destinations").await;

    // Change password, from the top bar: shown white on the bar's blue, like Sign out.
    let color = browser
        .execute(
            "return getComputedStyle(document.querySelector('.topbar a.link')).color",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(color, json!("rgb(255, 255, 255)"));
    browser
        .find(Locator::LinkText("Change password"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&browser, "/account/password").await;
    fill(&browser, "current", PASSWORD).await;
    fill(&browser, "new", "a much longer passphrase").await;
    fill(&browser, "confirm", "a much longer passphrase").await;
    click(&browser, "main button[type=submit]").await;
    wait_for_text(&browser, "p.flash", "Your password was changed").await;
    screenshot(&browser, "03b-password-changed").await;
    browser.close().await.unwrap();
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver; run with --ignored"]
async fn a_contributor_imports_profiles_and_builds_a_segment_with_the_rule_builder() {
    let app = spawn_app().await;
    let (_driver, browser) = start_browser().await;
    sign_in(
        &app,
        &browser,
        "grace@example.com",
        export_destinations::domain::Role::Contributor,
    )
    .await;

    // Import a CSV through the upload form.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("customers.csv");
    std::fs::write(
        &csv,
        "CustomerId,FirstName,EmailAddress,Spend,Country\nP1,Ada,ada@northwind.io,1200,Germany\n\
         P2,Bob,bob@fabrikam.io,80,France\nP3,Zoë,zoe@northwind.io,450,Germany\nP4,,no-email,Spain\n",
    )
    .unwrap();
    browser.goto(&app.url("/data/profiles")).await.unwrap();
    browser
        .find(Locator::Css("input[type=file]"))
        .await
        .unwrap()
        .send_keys(&csv.display().to_string())
        .await
        .unwrap();
    screenshot(&browser, "04-profiles-import").await;
    click(&browser, "form[enctype] button[type=submit]").await;
    wait_for_path_where(&browser, "an import report", |path| {
        path.starts_with("/data/imports/")
    })
    .await;
    // Rejected rows make the report a warning; the segments were refreshed as the form
    // asked by default.
    assert_eq!(
        text_of(&browser, "#import-result").await,
        "Imported with rejected rows: 3 created, 0 updated, 1 rejected. The rejected rows are listed below with why; fix them in the file and import it again."
    );
    wait_for_text(
        &browser,
        "#import-segments",
        "Segments: Refreshed 0 segment(s)",
    )
    .await;
    screenshot(&browser, "05-import-report").await;

    // A long import shows its progress live and opens its report when it ends.
    let job = export_destinations::store::import_jobs::create(
        app.state.db.pool(),
        "million.csv",
        64 * 1024 * 1024,
        false,
        None,
    )
    .await
    .unwrap();
    browser
        .goto(&app.url(&format!("/data/import-jobs/{job}")))
        .await
        .unwrap();
    export_destinations::store::import_jobs::progress(
        app.state.db.pool(),
        job,
        250_000,
        16 * 1024 * 1024,
    )
    .await
    .unwrap();
    wait_for_text(&browser, "#job-rows", "250,000").await;
    wait_for_text(&browser, "#job-read", "16,384").await;
    screenshot(&browser, "05b-import-progress").await;
    let report: i64 = sqlx::query_scalar("SELECT MAX(id) FROM profile_imports")
        .fetch_one(app.state.db.pool())
        .await
        .unwrap();
    export_destinations::store::import_jobs::set_phase(
        app.state.db.pool(),
        job,
        export_destinations::store::import_jobs::Phase::Done,
        Some(report),
        None,
    )
    .await
    .unwrap();
    wait_for_path(&browser, &format!("/data/imports/{report}")).await;

    // Build a segment: two conditions, drop one, preview, save.
    browser.goto(&app.url("/data/segments")).await.unwrap();
    browser
        .find(Locator::LinkText("New segment"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&browser, "/data/segments/new").await;
    fill(&browser, "name", "German customers").await;
    select(&browser, "field_0", "Country").await;
    select(&browser, "op_0", "equals").await;
    fill(&browser, "value_0", "germany").await;
    click(&browser, "button[value=add]").await;
    browser
        .wait()
        .for_element(Locator::Css("select[name=field_1]"))
        .await
        .unwrap();
    select(&browser, "field_1", "Spend").await;
    select(&browser, "op_1", "greater_than").await;
    fill(&browser, "value_1", "1000").await;
    click(&browser, "button[value=preview]").await;
    let count = browser
        .wait()
        .for_element(Locator::Css("p.count"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(count, "1 profiles match now.");
    click(&browser, "button[value='remove:1']").await;
    browser
        .wait()
        .for_element(Locator::Css("input[name=value_0]"))
        .await
        .unwrap();
    assert!(
        browser
            .find(Locator::Css("select[name=field_1]"))
            .await
            .is_err(),
        "the second condition is gone"
    );
    click(&browser, "button[value=preview]").await;
    let count = browser
        .wait()
        .for_element(Locator::Css("p.count"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(count, "2 profiles match now.");
    screenshot(&browser, "06-rule-builder").await;
    // Enter in the Name saves (it does not press condition 1's Remove).
    press_enter_in(&browser, "name").await;
    wait_for_path_where(&browser, "the saved segment", |path| {
        path.starts_with("/data/segments/") && path != "/data/segments/new"
    })
    .await;
    assert_eq!(
        text_of(&browser, "p.flash").await,
        "Saved “German customers”; its members are being computed."
    );
    // The page reloads itself until the members are there.
    wait_for_text(&browser, "p.lead", "2 members").await;
    assert!(
        browser
            .find(Locator::Css("#segment-refreshing"))
            .await
            .is_err()
    );
    let members = text_of(&browser, "main table.grid tbody").await;
    assert!(members.contains("P1") && members.contains("P3") && !members.contains("P2"));
    screenshot(&browser, "07-segment").await;
    browser.goto(&app.url("/data/segments")).await.unwrap();
    screenshot(&browser, "08-segments").await;
    // Refresh all runs in the background; its page says how each segment went.
    click(&browser, "form[action='/data/segments/refresh'] button").await;
    wait_for_path(&browser, "/data/segments/refresh").await;
    wait_for_text(&browser, "#refresh-summary", "Refreshed 1 segment(s)").await;
    let row = text_of(&browser, "#refresh-segments tbody tr").await;
    assert!(
        row.contains("German customers") && row.contains("done") && row.contains('2'),
        "{row}"
    );
    screenshot(&browser, "09-segment-refresh").await;
    browser.close().await.unwrap();
}
