//! Removing a destination: with its tags taken off, with the members it added archived,
//! and what a canceled or failed clean-up leaves to retry.

use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::destinations;
use export_destinations::store::runs::{self, Run, RunStatus};

use crate::helpers::{TestApp, location};
use crate::world::{
    PEOPLE, World, audience, destination, export, import, refresh, segment, wait, world,
};

pub(crate) async fn remove_with(w: &World, id: i64, choice: &str) {
    w.app
        .signed_in_as("remover@example.com", Role::Administrator)
        .await;
    let page = format!("/admin/export-destinations/{id}/remove");
    let response = w
        .app
        .post_form(&page, &page, &[("in_mailchimp", choice)])
        .await;
    assert!(
        location(&response).starts_with("/admin/export-runs/"),
        "the clean-up's page"
    );
    assert!(removed(w, id).await, "the destination was never removed");
}

/// Waits (up to 30 s) for a destination to be gone.
async fn removed(w: &World, id: i64) -> bool {
    crate::helpers::wait_until(
        "the destination to be gone",
        Duration::from_secs(30),
        || async {
            destinations::find(w.app.state.db.pool(), id)
                .await
                .unwrap()
                .is_none()
                .then_some(true)
        },
    )
    .await
}

#[tokio::test]
async fn removing_with_tags_taken_off_leaves_members_but_not_our_tags() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    remove_with(&w, id, "remove_tags").await;
    let members = audience(&w);
    assert_eq!(members.len(), 2);
    assert!(
        members
            .iter()
            .all(|m| m.1 == "subscribed" && m.3.is_empty()),
        "{members:?}"
    );
    let log = w.app.get_html("/admin/audit-log").await;
    assert!(
        log.contains("4 tags taken off in Mailchimp; 0 could not be; credential deleted"),
        "{log}"
    );
    let credentials: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM destinations WHERE credential_sealed IS NOT NULL")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(credentials, 0, "no credential is left in the database");

    // The clean-up is a run like an export: kept, with its page and result, after the
    // destination is gone; System > Status lists it, and the destination's name is free.
    let cleanup = runs::latest_cleanup(w.app.state.db.pool(), id)
        .await
        .unwrap()
        .expect("the clean-up run is kept");
    let cleanup = wait(&w, cleanup.id).await;
    assert_eq!(cleanup.status, RunStatus::Successful);
    let page = w
        .app
        .get_html(&format!("/admin/export-runs/{}", cleanup.id))
        .await;
    assert!(
        page.contains("Removal clean-up (tags taken off) of Newsletter (removed #"),
        "{page}"
    );
    assert!(page.contains("4 tags taken off in Mailchimp"), "{page}");
    assert!(page.contains(r#"<a href="/system/status">"#));
    assert!(!page.contains(r#"id="export-again""#));
    let status = w.app.get_html("/system/status").await;
    assert!(
        status.contains(&format!(r#"<a href="/admin/export-runs/{}">"#, cleanup.id)),
        "{status}"
    );
    assert!(status.contains("Newsletter (removed #"));
    assert_eq!(
        w.app
            .get(&format!("/admin/export-destinations/{id}/runs"))
            .await
            .status(),
        404
    );
    let owner = w
        .app
        .create_user("second@example.com", Role::Administrator)
        .await;
    let again = destinations::create_draft(
        w.app.state.db.pool(),
        "Newsletter",
        &w.audience,
        export_destinations::domain::destination::Target::Mailchimp,
        owner,
        "2026-11-1",
    )
    .await
    .expect("the name is free for a new destination");
    assert_ne!(again, id);
}

#[tokio::test]
async fn removing_with_archive_archives_only_the_members_this_destination_added() {
    let w = world(SandboxConfig::default()).await;
    // Someone this console never exported.
    let client = reqwest::Client::new();
    let body = serde_json::json!({ "members": [{ "email_address": "other@contoso-post.net", "status": "subscribed" }] });
    client
        .post(format!("{}/3.0/lists/{}", w.sandbox_base, w.audience))
        .basic_auth("x", Some(&w.key))
        .json(&body)
        .send()
        .await
        .unwrap();
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    remove_with(&w, id, "archive_members").await;
    let members = audience(&w);
    let status = |email: &str| members.iter().find(|m| m.0 == email).unwrap().1.clone();
    assert_eq!(status("ada@northwind.io"), "archived");
    assert_eq!(status("zoe@northwind.io"), "archived");
    assert_eq!(
        status("other@contoso-post.net"),
        "subscribed",
        "a contact from elsewhere is not touched"
    );
}

/// Asks for a removal with a clean-up from the page, as `admin`, and returns the clean-up run.
async fn ask_removal(w: &World, admin: &TestApp, id: i64, choice: &str) -> Run {
    let page = format!("/admin/export-destinations/{id}/remove");
    let response = admin
        .post_form(&page, &page, &[("in_mailchimp", choice)])
        .await;
    let run = runs::latest_cleanup(w.app.state.db.pool(), id)
        .await
        .unwrap()
        .expect("a clean-up run is queued");
    assert_eq!(
        location(&response),
        format!("/admin/export-runs/{}", run.id)
    );
    run
}

#[tokio::test]
async fn only_an_administrator_cancels_a_clean_up_and_a_canceled_one_leaves_the_destination_to_retry_or_remove()
 {
    let w = world(SandboxConfig {
        latency: Duration::from_millis(1500),
        ..SandboxConfig::default()
    })
    .await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;

    let admin = w.app.another_client();
    admin
        .signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let contributor = w.app.another_client();
    contributor
        .signed_in_as("carla@example.com", Role::Contributor)
        .await;
    let cleanup = ask_removal(&w, &admin, id, "remove_tags").await;

    // While it runs, the destination is listed as being removed, not hidden.
    let list = contributor.get_html("/admin/export-destinations").await;
    assert!(
        list.contains("Being removed") && list.contains("Newsletter"),
        "{list}"
    );
    let run_page = contributor
        .get_html(&format!("/admin/export-runs/{}", cleanup.id))
        .await;
    assert!(
        !run_page.contains("id=\"cancel-form\""),
        "no Cancel for a Contributor"
    );
    let refused = contributor
        .post_form(
            "/admin/export-destinations",
            &format!("/admin/export-runs/{}/cancel", cleanup.id),
            &[],
        )
        .await;
    assert_eq!(refused.status(), 403);
    assert!(
        !runs::find(w.app.state.db.pool(), cleanup.id)
            .await
            .unwrap()
            .unwrap()
            .cancel_requested
    );
    // A second removal while the clean-up runs is refused with a reason.
    let page = format!("/admin/export-destinations/{id}/remove");
    let html = admin.get_html(&page).await;
    assert!(html.contains("id=\"removal-running\"") && !html.contains("name=\"in_mailchimp\""));
    let again = admin
        .post_form(
            "/admin/export-destinations",
            &page,
            &[("in_mailchimp", "leave")],
        )
        .await;
    assert_eq!(again.status(), 409);

    let canceled = admin
        .post_form(
            &format!("/admin/export-runs/{}", cleanup.id),
            &format!("/admin/export-runs/{}/cancel", cleanup.id),
            &[],
        )
        .await;
    assert_eq!(canceled.status(), 303);
    let run = wait(&w, cleanup.id).await;
    assert_eq!(run.status, RunStatus::Canceled);

    // The destination and its credential are kept, visibly, with the choice to go on.
    let kept = destinations::find(w.app.state.db.pool(), id)
        .await
        .unwrap()
        .expect("a canceled clean-up deletes nothing");
    assert!(kept.is_removing() && kept.credential.is_some());
    let list = admin.get_html("/admin/export-destinations").await;
    assert!(list.contains("Removal stopped"), "{list}");
    assert!(list.contains(&format!("href=\"/admin/export-destinations/{id}/remove\"")));
    let html = admin.get_html(&page).await;
    assert!(html.contains("id=\"removal-stopped\"") && html.contains("name=\"in_mailchimp\""));

    // Removing it without a clean-up now deletes it and its credential.
    let gone = admin
        .post_form(&page, &page, &[("in_mailchimp", "leave")])
        .await;
    assert_eq!(location(&gone), "/admin/export-destinations");
    assert!(
        destinations::find(w.app.state.db.pool(), id)
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn a_failed_clean_up_keeps_the_destination_and_a_retry_finishes_the_removal() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    // Mailchimp stops accepting the destination's key.
    let account = w.sandbox.store().api_keys.remove(&w.key).unwrap();

    let admin = w.app.another_client();
    admin
        .signed_in_as("admin@example.com", Role::Administrator)
        .await;
    let cleanup = ask_removal(&w, &admin, id, "archive_members").await;
    let run = wait(&w, cleanup.id).await;
    assert_eq!(run.status, RunStatus::Failure, "{run:?}");
    let kept = destinations::find(w.app.state.db.pool(), id)
        .await
        .unwrap()
        .expect("a failed clean-up deletes nothing");
    assert!(kept.credential.is_some());
    assert!(
        audience(&w).iter().all(|m| m.1 == "subscribed"),
        "nothing was archived"
    );
    let list = admin.get_html("/admin/export-destinations").await;
    assert!(list.contains("Removal stopped"), "{list}");

    // The key works again: a retry archives the members and removes the destination.
    w.sandbox.store().api_keys.insert(w.key.clone(), account);
    let retry = ask_removal(&w, &admin, id, "archive_members").await;
    assert_ne!(retry.id, cleanup.id);
    // A successful clean-up deletes the destination, and its runs with it.
    assert!(
        removed(&w, id).await,
        "the retried clean-up removed the destination"
    );
    assert!(audience(&w).iter().all(|m| m.1 == "archived"));
    let log = admin.get_html("/admin/audit-log").await;
    assert!(log.contains("2 members archived in Mailchimp"), "{log}");
}
