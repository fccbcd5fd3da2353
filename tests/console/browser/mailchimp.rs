//! The Mailchimp set-up clicked through, and an export watched to its end.

use fantoccini::Locator;

use super::kit::*;
use crate::helpers::{PASSWORD, spawn_app};

#[tokio::test]
#[ignore = "needs Chromium and chromedriver; run with --ignored"]
async fn an_administrator_clicks_through_the_whole_mailchimp_set_up() {
    let app = spawn_app().await;
    crate::wizard::seed(&app).await;
    let audience = crate::wizard::audience(&app, "Newsletter subscribers");
    let (_driver, browser) = administrator_browser(&app, "ada@example.com").await;

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

    // Data matching starts from what the field names say: no empty row nobody asked for.
    assert_eq!(value_of(&browser, "email_field").await, "EmailAddress");
    assert_eq!(value_of(&browser, "map_tag_0").await, "FNAME");
    assert_eq!(value_of(&browser, "map_field_0").await, "FirstName");
    assert_eq!(value_of(&browser, "map_tag_1").await, "LNAME");
    assert_eq!(value_of(&browser, "map_field_1").await, "LastName");
    assert!(
        browser
            .find(Locator::Css("select[name=map_tag_2]"))
            .await
            .is_err()
    );
    click(&browser, "input[name=segment]").await;
    wait_for_text(
        &browser,
        "#segment-total",
        "1 segment(s) chosen: up to 2 profiles.",
    )
    .await;
    click(&browser, "input[name=new_member_status][value=pending]").await;

    // Add attribute reloads the page and keeps every choice.
    click_button(&browser, "Add attribute").await;
    browser
        .wait()
        .for_element(Locator::Css("select[name=map_tag_2]"))
        .await
        .unwrap();
    assert_choices_kept(&browser).await;
    select(&browser, "map_field_2", "Country").await;

    // A merge field the audience lacks: the tag Mailchimp will use is shown as the name is
    // typed, and creating it keeps every choice too.
    fill(&browser, "new_field_name", "Loyalty tier").await;
    wait_for_text(&browser, "#new-field-tag-shown", "LOYALTYTIE").await;
    screenshot(&browser, "15-new-merge-field").await;
    click_button(&browser, "Create it in Mailchimp").await;
    wait_for_text(&browser, "#notice", "Created the merge field LOYALTYTIE").await;
    assert_choices_kept(&browser).await;
    assert_eq!(value_of(&browser, "map_field_2").await, "Country");
    assert_eq!(value_of(&browser, "map_tag_3").await, "LOYALTYTIE");
    select(&browser, "map_tag_2", "LOYALTYTIE").await;
    click(&browser, "button[value='remove_attribute:3']").await;
    browser
        .wait()
        .for_element(Locator::Css("#configure"))
        .await
        .unwrap();
    assert!(
        browser
            .find(Locator::Css("select[name=map_tag_3]"))
            .await
            .is_err()
    );
    assert_choices_kept(&browser).await;
    screenshot(&browser, "16-data-matching").await;

    // Enter in Display name saves (it does not press a row's Remove).
    // The set-up ends on the preview of the first export, computed in the background.
    press_enter_in(&browser, "display_name").await;
    wait_for_path_where(&browser, "the preview", |path| path.ends_with("/preview")).await;
    wait_for_text(&browser, "p.flash", "Nothing is exported yet").await;
    wait_for_text(&browser, "#preview-counts", "To create").await;
    screenshot(&browser, "17-first-export-preview").await;
    browser
        .find(Locator::LinkText("← Export destinations"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_path(&browser, "/admin/export-destinations").await;
    let row = text_of(&browser, "#destinations tbody tr").await;
    assert!(
        row.contains("Newsletter export") && row.contains("Newsletter subscribers"),
        "{row}"
    );
    screenshot(&browser, "17-destination-saved").await;

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
    screenshot(&browser, "18-remove").await;
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
    // Two Germans Mailchimp cannot take: one without an address, one with a broken one.
    crate::helpers::import_csv(
        &app.state.db,
        "CustomerId,FirstName,LastName,EmailAddress,Country\n\
         P4,No,Address,,Germany\n\
         P5,Bad,Address,not-an-address,Germany\n",
    )
    .await;
    export_destinations::segments::refresh(&app.state.db, None)
        .await
        .unwrap();
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
    // When the run ends the page shows its times and its skipped members by reason.
    wait_for_text(&browser, "#run-reasons", "No address").await;
    assert_eq!(text_of(&browser, "#run-status").await, "Successful");
    assert_eq!(text_of(&browser, "#run-created").await, "2");
    assert_eq!(text_of(&browser, "#run-skipped").await, "2");
    assert_eq!(text_of(&browser, "#run-total").await, "4");
    assert!(
        text_of(&browser, "#run-reasons")
            .await
            .contains("Invalid address")
    );
    assert!(browser.find(Locator::Css("#run-took")).await.is_ok());
    assert!(browser.find(Locator::Css("#run-left-row")).await.is_err());
    screenshot(&browser, "18-export-run").await;
    browser
        .find(Locator::LinkText("Download per-member results (CSV)"))
        .await
        .unwrap();
    // Each reason's link gives exactly its members.
    let links = browser
        .find_all(Locator::Css("#run-reasons a"))
        .await
        .unwrap();
    assert_eq!(links.len(), 2);
    for link in links {
        let href = link.attr("href").await.unwrap().unwrap();
        let csv = app.get(&href).await.text().await.unwrap();
        let members: Vec<&str> = csv.lines().skip(1).collect();
        assert_eq!(members.len(), 1, "{href}: {csv}");
    }
    // Export again, then Full resync, from the finished run's page.
    let first_run = browser.current_url().await.unwrap();
    click_button(&browser, "Export again").await;
    wait_for_path_where(&browser, "the next run", |path| {
        path.starts_with("/admin/export-runs/") && path != first_run.path()
    })
    .await;
    wait_for_text(&browser, "#run-status", "Successful").await;
    wait_for_text(&browser, "#run-unchanged", "2").await;
    click_button(&browser, "Full resync").await;
    wait_for_text(&browser, "p.lead", "full resync").await;
    wait_for_text(&browser, "#run-status", "Successful").await;
    wait_for_text(&browser, "#run-reasons", "No address").await;
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

/// The choices made on the configure page before a reload are all still made.
async fn assert_choices_kept(browser: &fantoccini::Client) {
    assert_eq!(value_of(browser, "display_name").await, "Newsletter export");
    assert_eq!(value_of(browser, "email_field").await, "EmailAddress");
    assert_eq!(value_of(browser, "map_field_0").await, "FirstName");
    assert_eq!(value_of(browser, "map_field_1").await, "LastName");
    let segment = browser
        .find(Locator::Css("input[name=segment]"))
        .await
        .unwrap();
    assert_eq!(
        segment.prop("checked").await.unwrap().as_deref(),
        Some("true")
    );
    let pending = browser
        .find(Locator::Css("input[name=new_member_status][value=pending]"))
        .await
        .unwrap();
    assert_eq!(
        pending.prop("checked").await.unwrap().as_deref(),
        Some("true")
    );
}

#[tokio::test]
#[ignore = "needs Chromium and chromedriver; run with --ignored"]
async fn a_removal_clean_up_has_a_run_page_kept_after_the_destination_is_gone() {
    let (app, _, id) = crate::wizard::set_up().await;
    // A draft beside it, to be discarded: Discard asks first.
    let draft = crate::wizard::connect(
        &app,
        "Half done",
        &crate::wizard::audience(&app, "Customers"),
    )
    .await;
    let exported = app
        .post_form(
            "/admin/export-destinations",
            &format!("/admin/export-destinations/{id}/export"),
            &[],
        )
        .await;
    let run_id: i64 = crate::helpers::location(&exported)
        .rsplit('/')
        .next()
        .unwrap()
        .parse()
        .unwrap();
    crate::helpers::finished_run(&app.state.db, run_id).await;

    let (_driver, browser) = start_browser().await;
    // The draft's owner is ada: sign the browser in as her.
    sign_in_existing(&app, &browser, "ada@example.com").await;

    browser.goto(&app.url(&draft)).await.unwrap();
    click(&browser, "a#discard").await;
    wait_for_text(&browser, "h1", "Discard the set-up “Half done”?").await;
    screenshot(&browser, "21-discard-asks").await;
    click_button(&browser, "Keep it").await;
    wait_for_path(&browser, &draft).await;
    click(&browser, "a#discard").await;
    wait_for_text(&browser, "h1", "Discard the set-up").await;
    click_button(&browser, "Discard").await;
    wait_for_text(&browser, "p.flash", "Discarded the draft “Half done”.").await;

    // Remove with the tags taken off: the clean-up's own page follows it to its end.
    browser
        .find(Locator::LinkText("Remove"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_for_text(&browser, "h1", "Remove “Newsletter export”?").await;
    click(&browser, "input[name=in_mailchimp][value=remove_tags]").await;
    click_button(&browser, "Remove").await;
    wait_for_text(&browser, "h1", "Removal clean-up (tags taken off) of").await;
    wait_for_text(&browser, "#run-status", "Successful").await;
    wait_for_text(&browser, "#run-message", "tags taken off in Mailchimp").await;
    let title = text_of(&browser, "h1").await;
    assert!(title.contains("Newsletter export (removed #"), "{title}");
    assert!(browser.find(Locator::Css("#export-again")).await.is_err());
    screenshot(&browser, "22-clean-up-run").await;
    let cleanup = browser.current_url().await.unwrap().path().to_owned();

    // After the destination is gone the run stays in System > Status.
    browser.goto(&app.url("/system/status")).await.unwrap();
    let link = browser
        .find(Locator::Css(&format!("a[href='{cleanup}']")))
        .await
        .expect("System > Status lists the clean-up");
    link.click().await.unwrap();
    wait_for_path(&browser, &cleanup).await;
    browser
        .goto(&app.url("/admin/export-destinations"))
        .await
        .unwrap();
    assert!(browser.find(Locator::Css("#destinations")).await.is_err());
    browser.close().await.unwrap();
}
