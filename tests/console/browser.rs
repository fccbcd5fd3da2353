//! Real-browser tests in headless Chromium through chromedriver. They need
//! `/usr/bin/chromium` and `/usr/bin/chromedriver`, so they are ignored by a plain
//! `cargo test` and run by `cargo test -- --ignored` (as `.ci/run` does).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::helpers::{PASSWORD, spawn_app};

/// A chromedriver process, killed on drop.
struct Driver {
    child: Child,
    port: u16,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_browser() -> (Driver, Client) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("/usr/bin/chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver is installed (apt-get install chromium chromium-driver)");
    let profile = tempfile::tempdir().unwrap();
    let driver = Driver {
        child,
        port,
        _profile: profile,
    };
    let url = format!("http://127.0.0.1:{}", driver.port);
    for _ in 0..100 {
        if reqwest::get(format!("{url}/status")).await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut capabilities = serde_json::Map::new();
    capabilities.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,900",
                format!("--user-data-dir={}", driver._profile.path().display()),
            ]
        }),
    );
    let client = ClientBuilder::new(HttpConnector::new())
        .capabilities(capabilities)
        .connect(&url)
        .await
        .expect("a Chromium session");
    (driver, client)
}

fn screenshot_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(format!("{name}.png"))
}

async fn screenshot(browser: &Client, name: &str) {
    let png = browser.screenshot().await.unwrap();
    std::fs::write(screenshot_path(name), png).unwrap();
}

async fn fill(browser: &Client, name: &str, value: &str) {
    browser
        .find(Locator::Css(&format!("[name=\"{name}\"]")))
        .await
        .unwrap()
        .send_keys(value)
        .await
        .unwrap();
}

async fn click(browser: &Client, css: &str) {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

async fn select(browser: &Client, name: &str, value: &str) {
    browser
        .find(Locator::Css(&format!("select[name=\"{name}\"]")))
        .await
        .unwrap()
        .select_by_value(value)
        .await
        .unwrap();
}

async fn text_of(browser: &Client, css: &str) -> String {
    browser
        .find(Locator::Css(css))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// Signs a new account with `role` in through the sign-in form.
async fn sign_in(
    app: &crate::helpers::TestApp,
    browser: &Client,
    email: &str,
    role: export_destinations::domain::Role,
) {
    app.create_user(email, role).await;
    browser.goto(&app.url("/sign-in")).await.unwrap();
    fill(browser, "email", email).await;
    fill(browser, "password", PASSWORD).await;
    click(browser, "button[type=submit]").await;
    wait_for_path(browser, "/admin/export-destinations").await;
}

async fn wait_for_path(browser: &Client, path: &str) {
    for _ in 0..100 {
        if browser.current_url().await.unwrap().path() == path {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the browser never reached {path}: {}",
        browser.current_url().await.unwrap()
    );
}

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
    for _ in 0..100 {
        if browser
            .current_url()
            .await
            .unwrap()
            .path()
            .starts_with("/data/imports/")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        text_of(&browser, "p.flash").await,
        "Imported: 3 created, 0 updated, 1 rejected."
    );
    screenshot(&browser, "05-import-report").await;

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
    click(&browser, "button[value=save]").await;
    for _ in 0..100 {
        let path = browser.current_url().await.unwrap().path().to_owned();
        if path.starts_with("/data/segments/") && path != "/data/segments/new" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        text_of(&browser, "p.flash").await,
        "Saved “German customers” and refreshed it: 2 members."
    );
    let members = text_of(&browser, "main table.grid tbody").await;
    assert!(members.contains("P1") && members.contains("P3") && !members.contains("P2"));
    screenshot(&browser, "07-segment").await;
    browser.goto(&app.url("/data/segments")).await.unwrap();
    screenshot(&browser, "08-segments").await;
    browser.close().await.unwrap();
}

async fn click_button(browser: &Client, text: &str) {
    browser
        .find(Locator::XPath(&format!(
            "//button[normalize-space()='{text}'] | //a[normalize-space()='{text}']"
        )))
        .await
        .unwrap_or_else(|e| panic!("no button {text:?}: {e}"))
        .click()
        .await
        .unwrap();
}

async fn wait_for_text(browser: &Client, css: &str, text: &str) {
    for _ in 0..100 {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            if element.text().await.unwrap_or_default().contains(text) {
                return;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "{css} never showed {text:?}: {}",
        browser.source().await.unwrap_or_default()
    );
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver; run with --ignored"]
async fn an_administrator_clicks_through_the_whole_mailchimp_set_up() {
    let app = spawn_app().await;
    crate::wizard::seed(&app).await;
    let audience = crate::wizard::audience(&app, "Newsletter subscribers");
    let (_driver, browser) = start_browser().await;
    sign_in(
        &app,
        &browser,
        "ada@example.com",
        export_destinations::domain::Role::Administrator,
    )
    .await;

    // Admin > Export destinations > Mailchimp > Set up.
    browser
        .goto(&app.url("/admin/export-destinations"))
        .await
        .unwrap();
    screenshot(&browser, "10-destinations-empty").await;
    click_button(&browser, "Set up").await;
    wait_for_path(&browser, "/admin/export-destinations/mailchimp/new").await;
    fill(&browser, "display_name", "Newsletter export").await;
    click(&browser, "input[name=consent]").await;
    fill(&browser, "audience_id", &audience).await;
    screenshot(&browser, "11-connect").await;
    click_button(&browser, "Connect").await;
    wait_for_text(&browser, "#authenticate h2", "Authenticate with Mailchimp").await;

    // Authenticate with Mailchimp: the sandbox's consent page, then back.
    click_button(&browser, "Authenticate with Mailchimp").await;
    wait_for_text(
        &browser,
        "h1",
        "Sandbox Mailchimp: allow export-destinations to access your account?",
    )
    .await;
    screenshot(&browser, "12-mailchimp-consent").await;
    click_button(&browser, "Allow").await;
    wait_for_text(
        &browser,
        "#authenticate .ok",
        "Connected to Sandbox Marketing",
    )
    .await;
    screenshot(&browser, "13-authenticated").await;

    // Add yourself as export user, then Next.
    fill(&browser, "password", PASSWORD).await;
    click_button(&browser, "Add yourself as export user").await;
    wait_for_text(&browser, "#export-user .ok", "is the export user").await;
    screenshot(&browser, "14-export-user").await;
    click(&browser, "a#next").await;
    wait_for_text(&browser, "main h2", "Data matching").await;

    // Data matching, Add attribute, segments with a live total, Save.
    select(&browser, "email_field", "EmailAddress").await;
    select(&browser, "map_tag_0", "FNAME").await;
    select(&browser, "map_field_0", "FirstName").await;
    click_button(&browser, "Add attribute").await;
    browser
        .wait()
        .for_element(Locator::Css("select[name=map_tag_1]"))
        .await
        .unwrap();
    select(&browser, "email_field", "EmailAddress").await;
    select(&browser, "map_tag_1", "LNAME").await;
    select(&browser, "map_field_1", "LastName").await;
    click(&browser, "input[name=segment]").await;
    wait_for_text(
        &browser,
        "#segment-total",
        "1 segment(s) chosen: up to 2 profiles.",
    )
    .await;
    screenshot(&browser, "15-data-matching").await;
    click_button(&browser, "Save").await;
    wait_for_path(&browser, "/admin/export-destinations").await;
    wait_for_text(&browser, "p.flash", "Saving does not run an export").await;
    let row = text_of(&browser, "#destinations tbody tr").await;
    assert!(
        row.contains("Newsletter export") && row.contains("Newsletter subscribers"),
        "{row}"
    );
    screenshot(&browser, "16-destination-saved").await;

    // Edit, then remove.
    browser
        .find(Locator::LinkText("Edit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "main h2", "Data matching").await;
    let name = browser
        .find(Locator::Css("input[name=display_name]"))
        .await
        .unwrap();
    name.clear().await.unwrap();
    name.send_keys("Newsletter (Germany)").await.unwrap();
    click_button(&browser, "Save").await;
    wait_for_text(&browser, "#destinations tbody tr", "Newsletter (Germany)").await;
    browser
        .find(Locator::LinkText("Remove"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "h1", "Remove “Newsletter (Germany)”?").await;
    screenshot(&browser, "17-remove").await;
    click_button(&browser, "Remove").await;
    wait_for_text(&browser, "p.flash", "Removed “Newsletter (Germany)”").await;
    assert!(
        browser.find(Locator::Css("#destinations")).await.is_err(),
        "the list is empty again"
    );
    browser.close().await.unwrap();
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver; run with --ignored"]
async fn a_contributor_starts_an_export_and_watches_it_reach_successful() {
    let app = spawn_app().await;
    let segment = crate::wizard::seed(&app).await;
    app.signed_in_as(
        "ada@example.com",
        export_destinations::domain::Role::Administrator,
    )
    .await;
    crate::wizard::complete(&app, segment).await;
    let (_driver, browser) = start_browser().await;
    sign_in(
        &app,
        &browser,
        "grace@example.com",
        export_destinations::domain::Role::Contributor,
    )
    .await;
    browser
        .goto(&app.url("/admin/export-destinations"))
        .await
        .unwrap();
    click_button(&browser, "Export").await;
    wait_for_text(&browser, "#run-status", "Successful").await;
    assert_eq!(text_of(&browser, "#run-created").await, "2");
    assert_eq!(text_of(&browser, "#run-total").await, "2");
    screenshot(&browser, "18-export-run").await;
    browser
        .find(Locator::LinkText("Download per-member results (CSV)"))
        .await
        .unwrap();
    browser
        .goto(&app.url("/admin/export-destinations"))
        .await
        .unwrap();
    let row = text_of(&browser, "#destinations tbody tr").await;
    assert!(row.contains("Successful"), "{row}");
    screenshot(&browser, "19-destination-exported").await;
    // The members arrived in the sandbox audience, tagged by segment.
    let audience = crate::wizard::audience(&app, "Newsletter subscribers");
    browser
        .goto(&app.url(&format!("/sandbox/audiences/{audience}")))
        .await
        .unwrap();
    let tags = text_of(&browser, "main").await;
    assert!(
        tags.contains("Germany (2)") && tags.contains("export-destinations (2)"),
        "{tags}"
    );
    screenshot(&browser, "20-sandbox-audience").await;
    browser.close().await.unwrap();
}
