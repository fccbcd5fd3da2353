//! Keep in sync: a profile written through the API reaches the audience, changed, within
//! seconds, with no person and no schedule; a profile that leaves a segment loses its tag.

use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::runs::{self, Run, RunStatus};
use reqwest::Method;
use serde_json::{Value, json};

use crate::api::{call, token};
use crate::helpers::{TestApp, wait_until};
use crate::world::{self, World, destination, export, refresh, segment};

#[tokio::test]
async fn a_destination_kept_in_sync_exports_each_change_with_no_one_acting() {
    let s = exported().await;
    let (w, id) = (&s.w, s.id);
    assert_eq!(s.first_name("ada@northwind.io"), "Ada");

    // Off (the default): a change waits for a person or the schedule.
    s.put(&w.app, "P1", json!({ "FirstName": "Adele" })).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        s.first_name("ada@northwind.io"),
        "Ada",
        "not kept in sync yet"
    );

    let body = s.keep_in_sync(true).await;
    assert_eq!(body["keep_in_sync"], true);
    wait_until(
        "the waiting change to reach Mailchimp",
        Duration::from_secs(20),
        || async { (s.first_name("ada@northwind.io") == "Adele").then_some(()) },
    )
    .await;

    // A change made now arrives within seconds; one that leaves the segment takes its tag off.
    s.put(&w.app, "P1", json!({ "FirstName": "Ada Lovelace" }))
        .await;
    s.put(&w.app, "P3", json!({ "Country": "France" })).await;
    wait_until(
        "both changes to reach Mailchimp",
        Duration::from_secs(20),
        || async {
            (s.first_name("ada@northwind.io") == "Ada Lovelace"
                && s.member("zoe@northwind.io")
                    .is_some_and(|m| !m.3.contains(&"Germany".to_string())))
            .then_some(())
        },
    )
    .await;

    // Nothing changed: nothing more is queued, and neither for a write to a profile in
    // none of its segments. (A change that came while a run was queued gets a run of its
    // own, even when the first already sent it.)
    s.synced().await;
    let pool = w.app.state.db.pool();
    let before = runs::for_destination(pool, id, 100).await.unwrap().len();
    s.put(&w.app, "P2", json!({ "FirstName": "Bob B." })).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    let after = runs::for_destination(pool, id, 100).await.unwrap();
    assert_eq!(after.len(), before, "no run without a change");
    assert!(
        after.iter().all(|r| r.status != RunStatus::Skipped),
        "no skipped runs pile up"
    );

    // The history lists what people asked for; the syncs are one entry, an hour a row.
    assert!(
        after.iter().any(|r| r.kept_in_sync),
        "the console queued the syncs itself"
    );
    w.app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let html = w
        .app
        .get_html(&format!("/admin/export-destinations/{id}/runs"))
        .await;
    assert!(html.contains(r#"id="kept-in-sync""#), "{html}");
    assert!(
        html.contains("Each change is exported within seconds"),
        "{html}"
    );
    for run in &after {
        let row = format!(r#"<a href="/admin/export-runs/{0}">#{0}</a>"#, run.id);
        assert_eq!(
            html.contains(&row),
            !run.kept_in_sync,
            "run {}: {html}",
            run.id
        );
    }
}

#[tokio::test]
async fn a_status_changed_in_mailchimp_between_syncs_is_never_sent_back_older_and_off_stops_it() {
    let s = exported().await;
    let (w, id) = (&s.w, s.id);
    s.keep_in_sync(true).await;
    s.put(&w.app, "P3", json!({ "FirstName": "Zoe" })).await;
    let first = s.synced().await;
    assert!(first.kept_in_sync);
    assert_eq!(s.first_name("zoe@northwind.io"), "Zoe");
    // The settings were just saved (keep in sync on): merge fields and tags, and a batch.
    assert_eq!(first.counters.calls, 3, "{:?}", first.counters);
    // The next pays for what changed: one batch (the audience check, merge fields, tags and
    // statuses read before are fresh).
    s.put(&w.app, "P3", json!({ "FirstName": "Zoé" })).await;
    let next = s.synced().await;
    assert_eq!(next.counters.calls, 1, "{:?}", next.counters);
    assert_eq!(s.first_name("zoe@northwind.io"), "Zoé");

    // Between two syncs Ada unsubscribes in Mailchimp (no webhook tells the console); then
    // her profile changes.
    w.unsubscribes("ada@northwind.io");
    s.put(&w.app, "P1", json!({ "FirstName": "Augusta" })).await;
    let second = s.synced().await;
    assert!(second.kept_in_sync);
    assert_eq!(second.status, RunStatus::Successful, "{:?}", second.message);
    let ada = s.member("ada@northwind.io").unwrap();
    assert_eq!(
        (ada.1.as_str(), ada.2.as_str()),
        ("unsubscribed", "Augusta"),
        "her new name arrives and she stays unsubscribed (not refused, not subscribed again)"
    );
    assert_eq!(second.counters.failed, 0);
    assert_eq!(second.counters.updated, 1, "{:?}", second.counters);
    // Mailchimp refused to subscribe her; the sync read the members changed since the
    // statuses were read, and sent her again as unsubscribed: three calls.
    assert_eq!(second.counters.calls, 3, "{:?}", second.counters);
    let pool = w.app.state.db.pool();
    assert_eq!(
        ledger_status(&s, "P1").await,
        "unsubscribed",
        "the ledger knows"
    );

    // Her next change goes out as unsubscribed after a read of what changed since (she is
    // kept as opted out, and may have subscribed again meanwhile): two calls.
    s.put(&w.app, "P1", json!({ "FirstName": "Ada" })).await;
    let third = s.synced().await;
    assert_eq!(third.counters.calls, 2, "{:?}", third.counters);
    let ada = s.member("ada@northwind.io").unwrap();
    assert_eq!((ada.1.as_str(), ada.2.as_str()), ("unsubscribed", "Ada"));

    // She subscribes again through a Mailchimp form; her next change keeps her subscribed.
    w.subscribes_again("ada@northwind.io");
    s.put(&w.app, "P1", json!({ "FirstName": "Ada L." })).await;
    let fourth = s.synced().await;
    assert_eq!(fourth.counters.calls, 2, "{:?}", fourth.counters);
    let ada = s.member("ada@northwind.io").unwrap();
    assert_eq!((ada.1.as_str(), ada.2.as_str()), ("subscribed", "Ada L."));
    assert_eq!(ledger_status(&s, "P1").await, "subscribed");

    // Zoe unsubscribes in Mailchimp and her profile does not change. The audience check
    // (at most once a minute; the last one is made older here) counts one more unsubscribed
    // member than the runs explain, so the next sync reads what changed and the ledger
    // learns it: the check, the read of changes, Ada's batch.
    w.unsubscribes("zoe@northwind.io");
    sqlx::query(
        "UPDATE audience_checks SET checked_at = checked_at - 120000 WHERE destination_id = $1",
    )
    .bind(id)
    .execute(pool)
    .await
    .unwrap();
    s.put(&w.app, "P1", json!({ "FirstName": "Ada" })).await;
    let fifth = s.synced().await;
    assert_eq!(fifth.counters.calls, 3, "{:?}", fifth.counters);
    assert_eq!(ledger_status(&s, "P3").await, "unsubscribed");

    // A merge field is added in Mailchimp: the next check counts one more, so the sync reads
    // the merge fields and tags again (the check, both reads, the batch).
    crate::preview::merge_field(
        w,
        json!({"name": "Shoe size", "type": "number", "tag": "SHOE"}),
    )
    .await;
    sqlx::query(
        "UPDATE audience_checks SET checked_at = checked_at - 120000 WHERE destination_id = $1",
    )
    .bind(id)
    .execute(pool)
    .await
    .unwrap();
    let before = world::routes(w);
    s.put(&w.app, "P1", json!({ "FirstName": "Ada B." })).await;
    let sixth = s.synced().await;
    assert_eq!(sixth.counters.calls, 4, "{:?}", sixth.counters);
    let read = world::calls_since(w, &before);
    assert_eq!(
        read.get("GET /lists/{list_id}/merge-fields"),
        Some(&1),
        "{read:?}"
    );

    // Off: a change waits again.
    s.keep_in_sync(false).await;
    let before = runs::for_destination(pool, id, 100).await.unwrap().len();
    s.put(&w.app, "P3", json!({ "FirstName": "Zoë" })).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        runs::for_destination(pool, id, 100).await.unwrap().len(),
        before
    );
    assert_eq!(s.first_name("zoe@northwind.io"), "Zoé", "not sent");
}

#[tokio::test]
async fn after_a_failed_sync_the_next_waits_instead_of_failing_on_every_change() {
    let s = exported().await;
    let (w, id) = (&s.w, s.id);
    s.keep_in_sync(true).await;
    // Failure alerts go to a webhook.
    let receiver = crate::receivers::WebhookReceiver::start(&[]).await;
    let admin = w.app.another_client();
    admin
        .signed_in_as("dana@example.com", Role::Administrator)
        .await;
    let threshold = format!("threshold_{id}");
    crate::notifications::webhook_on(&admin, &receiver.url, &[(&threshold, "1")]).await;

    // Mailchimp no longer takes the destination's credential.
    {
        let mut store = w.sandbox.store();
        store.tokens.clear();
        store.api_keys.clear();
    }
    s.put(&w.app, "P1", json!({ "FirstName": "Augusta" })).await;
    let pool = w.app.state.db.pool();
    let failed = s.sync_in(RunStatus::Failure).await;
    assert!(failed.message.is_some(), "it says why");
    // Its failure alert goes out as any run's.
    let got = crate::notifications::wait_for_requests(&receiver, 1).await;
    let body = got[0].json();
    assert_eq!(body["event"], "run.failed", "{body}");
    assert_eq!(body["run"]["id"], failed.id, "{body}");
    let before = runs::for_destination(pool, id, 100).await.unwrap().len();
    s.put(&w.app, "P1", json!({ "FirstName": "Ada" })).await;
    s.put(&w.app, "P1", json!({ "FirstName": "Augusta Ada" }))
        .await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        runs::for_destination(pool, id, 100).await.unwrap().len(),
        before,
        "no run for a minute after a failure"
    );
    assert_eq!(receiver.received().len(), 1, "one alert, not one a change");
}

#[tokio::test]
async fn two_consoles_on_one_database_never_sync_one_destination_at_once() {
    let s = exported().await;
    let (w, id) = (&s.w, s.id);
    s.keep_in_sync(true).await;

    // A second console on the same database, with its own worker and its own sync loop.
    let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    let mut settings = (*w.app.state.settings).clone();
    settings.data_dir = dir.path().to_path_buf();
    settings.admin = None;
    let (other, stop, stopped) = crate::helpers::spawn_stoppable(dir, settings).await;

    // Changes arrive through both consoles, a few at a time, for two seconds.
    for round in 0..10 {
        tokio::join!(
            s.put(&w.app, "P1", json!({ "FirstName": format!("Ada {round}") })),
            s.put(&other, "P3", json!({ "FirstName": format!("Zoë {round}") })),
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    wait_until(
        "the last changes to reach Mailchimp",
        Duration::from_secs(20),
        || async {
            (s.first_name("ada@northwind.io") == "Ada 9"
                && s.first_name("zoe@northwind.io") == "Zoë 9")
                .then_some(())
        },
    )
    .await;
    s.synced().await;

    let pool = w.app.state.db.pool();
    let mut synced: Vec<Run> = runs::for_destination(pool, id, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.kept_in_sync)
        .collect();
    assert!(synced.len() >= 2, "{synced:?}");
    assert!(
        synced.iter().all(|r| r.status == RunStatus::Successful),
        "no skipped or failed runs: {synced:?}"
    );
    // One at a time: each run started after the one before it ended.
    synced.sort_by_key(|r| r.started_at);
    for pair in synced.windows(2) {
        assert!(
            pair[1].started_at >= pair[0].finished_at,
            "runs {} and {} overlap: {pair:?}",
            pair[0].id,
            pair[1].id
        );
    }
    let _ = stop.send(());
    let _ = stopped.await;
}

#[tokio::test]
async fn a_removed_destination_is_no_longer_kept_in_sync() {
    let s = exported().await;
    let (w, id) = (&s.w, s.id);
    s.keep_in_sync(true).await;
    s.put(&w.app, "P1", json!({ "FirstName": "Augusta" })).await;
    s.synced().await;
    assert_eq!(s.first_name("ada@northwind.io"), "Augusta");

    crate::removal::remove_with(w, id, "remove_tags").await;
    let pool = w.app.state.db.pool();
    let before = runs::for_destination(pool, id, 100).await.unwrap().len();
    s.put(&w.app, "P1", json!({ "FirstName": "Ada" })).await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(
        runs::for_destination(pool, id, 100).await.unwrap().len(),
        before,
        "no run for a removed destination"
    );
    assert_eq!(s.first_name("ada@northwind.io"), "Augusta", "not sent");
}

#[tokio::test]
async fn a_person_who_cancels_a_sync_stops_it_and_is_not_overruled_by_the_next_change() {
    // Every call takes a second, so that a sync is still running when the person looks.
    let s = exported_with(
        SandboxConfig {
            latency: Duration::from_millis(1_000),
            ..SandboxConfig::default()
        },
        |_| {},
    )
    .await;
    let (w, id) = (&s.w, s.id);
    s.keep_in_sync(true).await;
    s.put(&w.app, "P1", json!({ "FirstName": "Augusta" })).await;
    let pool = w.app.state.db.pool();
    let running = s.sync_in(RunStatus::Processing).await;

    // The history links the sync running now; its page cancels it.
    w.app
        .signed_in_as("carol@example.com", Role::Contributor)
        .await;
    let history = format!("/admin/export-destinations/{id}/runs");
    let html = w.app.get_html(&history).await;
    let link = format!(
        r#"Syncing now: <a href="/admin/export-runs/{0}">run #{0}</a>"#,
        running.id
    );
    assert!(html.contains(&link), "{html}");
    let page = format!("/admin/export-runs/{}", running.id);
    let answer = w.app.post_form(&page, &format!("{page}/cancel"), &[]).await;
    assert!(answer.status().is_success() || answer.status().is_redirection());
    let canceled = wait_until("the sync to stop", Duration::from_secs(20), || async {
        runs::find(pool, running.id)
            .await
            .unwrap()
            .filter(|r| r.status.is_finished())
    })
    .await;
    assert_eq!(canceled.status, RunStatus::Canceled);

    // The next change does not start another sync at once.
    let before = runs::for_destination(pool, id, 100).await.unwrap().len();
    s.put(&w.app, "P1", json!({ "FirstName": "Ada" })).await;
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        runs::for_destination(pool, id, 100).await.unwrap().len(),
        before,
        "no sync for a minute after a person canceled one"
    );
    let html = w.app.get_html(&history).await;
    let row = format!(
        r#"<a href="/admin/export-runs/{0}">#{0}</a> Canceled"#,
        running.id
    );
    assert!(html.contains(&row), "{html}");
    assert!(!html.contains("Syncing now"), "{html}");
}

#[tokio::test]
async fn a_console_that_restarts_picks_up_the_changes_made_while_it_was_down() {
    // The test's own console looks for changes once an hour, so a second console on the
    // same database keeps the destination in sync: it is stopped, and started again.
    let s = exported_with(SandboxConfig::default(), |settings| {
        settings.sync_window = Duration::from_secs(3_600);
    })
    .await;
    let w = &s.w;
    s.keep_in_sync(true).await;
    let start = || async {
        let dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
        let mut settings = (*w.app.state.settings).clone();
        settings.data_dir = dir.path().to_path_buf();
        settings.admin = None;
        settings.sync_window = Duration::from_millis(200);
        crate::helpers::spawn_stoppable(dir, settings).await
    };
    let (_syncing, stop, stopped) = start().await;
    s.put(&w.app, "P1", json!({ "FirstName": "Augusta" })).await;
    wait_until(
        "the change to be synced",
        Duration::from_secs(20),
        || async { (s.first_name("ada@northwind.io") == "Augusta").then_some(()) },
    )
    .await;
    s.synced().await;

    // Down: a change waits.
    let _ = stop.send(());
    stopped.await.unwrap().unwrap();
    s.put(&w.app, "P1", json!({ "FirstName": "Ada King" }))
        .await;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    assert_eq!(s.first_name("ada@northwind.io"), "Augusta");

    // Started again: it picks the change up.
    let (_again, stop, stopped) = start().await;
    wait_until(
        "the change made while down to be synced",
        Duration::from_secs(20),
        || async { (s.first_name("ada@northwind.io") == "Ada King").then_some(()) },
    )
    .await;
    let _ = stop.send(());
    let _ = stopped.await;
}

/// The status the ledger notes for a customer's member (who is not refused for good).
async fn ledger_status(s: &Exported, customer: &str) -> String {
    let pool = s.w.app.state.db.pool();
    let rows = export_destinations::store::ledger::rows_of(
        pool,
        s.id,
        export_destinations::store::ledger::Key::Customer,
        &[customer.to_owned()],
    )
    .await
    .unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].permanent_skip, None, "not refused for good");
    rows[0].status.clone()
}

/// A console exporting the Germany segment of the demo people, after its first export, with
/// an administrator's and a contributor's API tokens.
struct Exported {
    w: World,
    id: i64,
    admin: String,
    ci: String,
}

async fn exported() -> Exported {
    exported_with(SandboxConfig::default(), |_| {}).await
}

async fn exported_with(
    config: SandboxConfig,
    configure: impl FnOnce(&mut export_destinations::Settings) + Send + 'static,
) -> Exported {
    let w = world::world_with(config, configure).await;
    world::import(&w.app, world::PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    assert_eq!(export(&w, id, false).await.status, RunStatus::Successful);
    let admin = token(&w.app, "admin@example.com", Role::Administrator).await;
    let ci = token(&w.app, "ci@example.com", Role::Contributor).await;
    Exported { w, id, admin, ci }
}

impl Exported {
    /// Turns keep in sync on or off through the API; the destination as it answers.
    async fn keep_in_sync(&self, on: bool) -> Value {
        let path = format!("/api/v1/destinations/{}", self.id);
        let body = json!({ "keep_in_sync": on });
        let (status, answer) = call(
            &self.w.app,
            Method::PATCH,
            &path,
            Some(&self.admin),
            Some(body),
        )
        .await;
        assert_eq!(status, 200, "{answer}");
        answer
    }

    /// Writes a profile through `app`'s profile API, as the contributor.
    async fn put(&self, app: &TestApp, customer: &str, body: Value) {
        let path = format!("/api/v1/profiles/{customer}");
        let (status, answer) = call(app, Method::PUT, &path, Some(&self.ci), Some(body)).await;
        assert_eq!(status, 200, "{answer}");
    }

    /// Waits for a run that keeps the destination in sync to be in `status`; returns it.
    async fn sync_in(&self, status: RunStatus) -> Run {
        let pool = self.w.app.state.db.pool();
        let what = format!("a sync run to be {}", status.as_str());
        wait_until(&what, Duration::from_secs(20), || async {
            runs::for_destination(pool, self.id, 100)
                .await
                .unwrap()
                .into_iter()
                .find(|r| r.kept_in_sync && r.status == status)
        })
        .await
    }

    /// Waits until the latest run came after the latest change, and ended; returns it.
    async fn synced(&self) -> Run {
        let pool = self.w.app.state.db.pool();
        let id = self.id;
        wait_until(
            "the last change's run to end",
            Duration::from_secs(20),
            || async {
                let (in_flight, latest, _) = runs::sync_state(pool, id).await.unwrap();
                let changed =
                    export_destinations::store::destinations::segments_changed_at(pool, id)
                        .await
                        .unwrap()
                        .unwrap_or(0);
                (!in_flight && latest.is_some_and(|queued| queued > changed)).then_some(())
            },
        )
        .await;
        runs::for_destination(pool, id, 1).await.unwrap().remove(0)
    }

    /// The audience's member: (address, status, first name, tags).
    fn member(&self, email: &str) -> Option<(String, String, String, Vec<String>)> {
        world::audience(&self.w).into_iter().find(|m| m.0 == email)
    }

    fn first_name(&self, email: &str) -> String {
        self.member(email).map(|m| m.2).unwrap_or_default()
    }
}
