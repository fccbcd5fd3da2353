use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::sandbox::standalone::RunningSandbox;
use export_destinations::store::destinations;
use export_destinations::store::runs::{self, Run, RunStatus};
use serde_json::Value;

use crate::helpers::{
    Target, TestApp, equals_segment, import_csv, location, saved_destination, spawn_app_with,
};

/// A console whose Mailchimp is a standalone sandbox (reached by API key), so that the
/// sandbox's limits and faults can be set per test.
pub(crate) struct World {
    pub(crate) app: TestApp,
    pub(crate) sandbox: export_destinations::sandbox::Sandbox,
    pub(crate) sandbox_base: String,
    pub(crate) audience: String,
    pub(crate) key: String,
}

pub(crate) async fn world(config: SandboxConfig) -> World {
    world_with(config, |_| {}).await
}

pub(crate) async fn world_with(
    config: SandboxConfig,
    configure: impl FnOnce(&mut export_destinations::Settings) + Send + 'static,
) -> World {
    let running = RunningSandbox::bind(config, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let sandbox = running.sandbox.clone();
    let sandbox_base = format!("http://{}", running.addr);
    tokio::spawn(running.serve(std::future::pending()));
    let (key, audience) = {
        let store = sandbox.store();
        let key = store.api_keys.keys().next().unwrap().clone();
        let audience = store
            .audiences
            .values()
            .find(|a| a.name == "Newsletter subscribers")
            .unwrap()
            .id
            .clone();
        (key, audience)
    };
    let base = sandbox_base.clone();
    let app = spawn_app_with(move |settings| {
        // A real user's setup: Mailchimp reached with an API key, no OAuth app, no sandbox.
        settings.mailchimp = export_destinations::config::MailchimpSettings {
            sandbox: false,
            app: None,
            oauth_base_url: None,
            api_base_template: Some(base.clone()),
        };
        configure(settings);
    })
    .await;
    World {
        app,
        sandbox,
        sandbox_base,
        audience,
        key,
    }
}

pub(crate) async fn import(app: &TestApp, csv: &str) {
    import_csv(&app.state.db, csv).await;
}

pub(crate) async fn segment(app: &TestApp, name: &str, field: &str, value: &str) -> i64 {
    equals_segment(&app.state.db, name, field, value).await
}

pub(crate) async fn refresh(app: &TestApp) {
    export_destinations::segments::refresh(&app.state.db, None)
        .await
        .unwrap();
}

/// A saved destination for the sandbox audience, made through the stores.
pub(crate) async fn destination(w: &World, segment_ids: &[i64], status: &str) -> i64 {
    let owner = w
        .app
        .create_user(
            &format!("owner{}@example.com", segment_ids.len()),
            Role::Administrator,
        )
        .await;
    let target = Target {
        api_base: &w.sandbox_base,
        key: &w.key,
        audience: &w.audience,
        audience_name: "Newsletter subscribers",
    };
    saved_destination(
        &w.app.state.db,
        &w.app.state.secret_key,
        owner,
        "Newsletter",
        target,
        segment_ids,
        status,
    )
    .await
}

/// Queues a run and waits for the console's worker to finish it.
pub(crate) async fn export(w: &World, destination: i64, full: bool) -> Run {
    let mut conn = w.app.state.db.pool().acquire().await.unwrap();
    let (id, _) = runs::enqueue(&mut conn, destination, full, None)
        .await
        .unwrap();
    drop(conn);
    wait(w, id).await
}

pub(crate) async fn wait(w: &World, id: i64) -> Run {
    crate::helpers::finished_run(&w.app.state.db, id).await
}

/// The sandbox audience as (email, status, FNAME, tags).
pub(crate) fn audience(w: &World) -> Vec<(String, String, String, Vec<String>)> {
    let store = w.sandbox.store();
    let list = &store.audiences[&w.audience];
    let mut members: Vec<_> = list
        .members
        .values()
        .map(|m| {
            let mut tags: Vec<String> = list.tag_names(m).into_iter().map(|(_, n)| n).collect();
            tags.sort();
            (
                m.email_address.to_lowercase(),
                m.status.as_str().to_owned(),
                m.merge_fields
                    .get("FNAME")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                tags,
            )
        })
        .collect();
    members.sort();
    members
}

fn writes(w: &World, email: &str) -> u64 {
    let store = w.sandbox.store();
    store.audiences[&w.audience].members[&export_destinations::domain::subscriber_hash(email)]
        .writes
}

const PEOPLE: &str = "CustomerId,FirstName,Email,Country\n\
                      P1,Ada,ada@northwind.io,Germany\n\
                      P2,Bob,bob@fabrikam.io,France\n\
                      P3,Zoë,zoe@northwind.io,Germany\n\
                      P4,Nobody,,Germany\n\
                      P5,Broken,not-an-address,Germany\n\
                      P6,Ada Again,ADA@northwind.io,Germany\n";

#[tokio::test]
async fn a_first_export_puts_segment_members_into_the_audience_tagged_and_reports_bad_rows() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_eq!(
        (
            run.counters.total,
            run.counters.created,
            run.counters.skipped
        ),
        (5, 2, 3)
    );
    let tags = vec!["Germany".to_owned(), "export-destinations".to_owned()];
    assert_eq!(
        audience(&w),
        vec![
            (
                "ada@northwind.io".into(),
                "subscribed".into(),
                "Ada".into(),
                tags.clone()
            ),
            (
                "zoe@northwind.io".into(),
                "subscribed".into(),
                "Zoë".into(),
                tags
            ),
        ]
    );
    // The per-member CSV tells the truth about every member.
    w.app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let csv = w
        .app
        .get(&format!("/admin/export-runs/{}/members.csv", run.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.starts_with("customer_id,email,outcome,title,detail\n"));
    assert!(csv.contains("P1,ada@northwind.io,created,,"));
    assert!(csv.contains("P4,,skipped,No email address,"));
    assert!(csv.contains("P5,not-an-address,skipped,Invalid email address,"));
    assert!(csv.contains(
        "P6,ADA@northwind.io,skipped,Repeated email address,Customer P1 has the same address"
    ));
}

#[tokio::test]
async fn a_second_export_sends_nothing_and_a_changed_member_is_sent() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    let calls_before = w
        .sandbox
        .stats()
        .calls_by_route
        .get("POST /lists/{list_id}")
        .copied()
        .unwrap_or(0);
    let second = export(&w, id, false).await;
    assert_eq!(second.status, RunStatus::Successful);
    assert_eq!(
        (
            second.counters.sent,
            second.counters.unchanged,
            second.counters.tag_changes
        ),
        (0, 2, 0)
    );
    let calls_after = w
        .sandbox
        .stats()
        .calls_by_route
        .get("POST /lists/{list_id}")
        .copied()
        .unwrap_or(0);
    assert_eq!(calls_before, calls_after, "no batch was sent");
    assert_eq!(writes(&w, "ada@northwind.io"), 1);

    import(&w.app, "CustomerId,FirstName\nP1,Augusta\n").await;
    let third = export(&w, id, false).await;
    assert_eq!(
        (
            third.counters.sent,
            third.counters.updated,
            third.counters.unchanged
        ),
        (1, 1, 1)
    );
    assert_eq!(audience(&w)[0].2, "Augusta");
    assert_eq!(
        writes(&w, "zoe@northwind.io"),
        1,
        "the unchanged member was not sent again"
    );

    let full = export(&w, id, true).await;
    assert_eq!(full.counters.sent, 2, "a full resync sends everyone");
}

#[tokio::test]
async fn a_member_who_leaves_a_segment_loses_its_tag_but_stays_owned() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    import(&w.app, "CustomerId,Country\nP3,France\n").await;
    refresh(&w.app).await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful);
    assert_eq!(run.counters.tag_changes, 1, "{run:?}");
    let members = audience(&w);
    assert_eq!(members[1].0, "zoe@northwind.io");
    assert_eq!(
        members[1].3,
        vec!["export-destinations".to_owned()],
        "Germany tag removed"
    );
    assert_eq!(
        members[0].3,
        vec!["Germany".to_owned(), "export-destinations".to_owned()]
    );
}

/// Calls the sandbox answered on each route since `before`.
pub(crate) fn calls_since(
    w: &World,
    before: &std::collections::BTreeMap<String, u64>,
) -> std::collections::BTreeMap<String, u64> {
    w.sandbox
        .stats()
        .calls_by_route
        .into_iter()
        .map(|(route, n)| {
            let was = before.get(&route).copied().unwrap_or(0);
            (route, n - was)
        })
        .filter(|(_, n)| *n > 0)
        .collect()
}

pub(crate) fn routes(w: &World) -> std::collections::BTreeMap<String, u64> {
    w.sandbox.stats().calls_by_route.into_iter().collect()
}

#[tokio::test]
async fn a_first_export_sends_tags_with_the_upserts_and_makes_no_tag_calls() {
    let w = world(SandboxConfig::default()).await;
    let mut csv = String::from("CustomerId,FirstName,Email,Country\n");
    for i in 0..1200 {
        let country = ["Germany", "France", "Spain"][i % 3];
        csv.push_str(&format!("C{i},N{i},p{i}@northwind.io,{country}\n"));
    }
    import(&w.app, &csv).await;
    let ids = [
        segment(&w.app, "Germany", "Country", "Germany").await,
        segment(&w.app, "France", "Country", "France").await,
        segment(&w.app, "Spain", "Country", "Spain").await,
    ];
    refresh(&w.app).await;
    let id = destination(&w, &ids, "subscribed").await;
    let before = routes(&w);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    let calls = calls_since(&w, &before);
    // ⌈1200 / 500⌉ upserts, no tag call; the fixed reads are merge fields, tags and statuses.
    assert_eq!(calls.get("POST /lists/{list_id}"), Some(&3), "{calls:?}");
    assert!(
        !calls.contains_key("POST /lists/{list_id}/segments/{segment_id}"),
        "{calls:?}"
    );
    assert!(
        !calls.contains_key("POST /lists/{list_id}/segments"),
        "{calls:?}"
    );
    assert_eq!(run.counters.calls, calls.values().sum::<u64>() as i64);
    let members = audience(&w);
    assert_eq!(members.len(), 1200);
    assert!(
        members
            .iter()
            .all(|m| m.3.len() == 2 && m.3.contains(&"export-destinations".to_owned()))
    );
    assert_eq!(run.counters.tag_changes, 2400);
}

#[tokio::test]
async fn a_re_export_that_adds_one_tag_to_one_member_sends_one_call() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    let vip = segment(&w.app, "VIP", "FirstName", "Ada").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    // Ada joins a second exported segment; nothing else changes.
    let pool = w.app.state.db.pool();
    sqlx::query("INSERT INTO destination_segments (destination_id, segment_id) VALUES ($1, $2)")
        .bind(id)
        .bind(vip)
        .execute(pool)
        .await
        .unwrap();
    let writes_before = writes(&w, "ada@northwind.io");
    let before = routes(&w);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    let calls = calls_since(&w, &before);
    assert_eq!(calls.get("POST /lists/{list_id}"), Some(&1), "{calls:?}");
    assert!(
        !calls
            .keys()
            .any(|route| route.contains("segments/{segment_id}")),
        "no tag call: {calls:?}"
    );
    assert_eq!(
        (
            run.counters.sent,
            run.counters.unchanged,
            run.counters.tag_changes
        ),
        (0, 2, 1),
        "its data did not change; one tag was added"
    );
    let ada = audience(&w)
        .into_iter()
        .find(|m| m.0 == "ada@northwind.io")
        .unwrap();
    assert_eq!(ada.3, ["Germany", "VIP", "export-destinations"]);
    assert_eq!(ada.1, "subscribed");
    assert_eq!(
        writes(&w, "ada@northwind.io"),
        writes_before + 1,
        "one upsert carried the tag"
    );
    // The ledger knows: the next export sends nothing.
    let before = routes(&w);
    export(&w, id, false).await;
    let calls = calls_since(&w, &before);
    assert!(!calls.contains_key("POST /lists/{list_id}"), "{calls:?}");
}

#[tokio::test]
async fn a_member_who_left_a_segment_loses_the_tag_with_no_upsert() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    // A tag someone set by hand in Mailchimp.
    {
        let now = "2026-12-01T00:00:00+00:00";
        let mut store = w.sandbox.store();
        store.next_segment_id += 1;
        let tag = store.next_segment_id;
        let list = store.audiences.get_mut(&w.audience).unwrap();
        list.create_segment(tag, "Met at fair", now).unwrap();
        assert!(list.set_tag(tag, "zoe@northwind.io", true, now));
    }
    import(&w.app, "CustomerId,Country\nP3,France\n").await;
    refresh(&w.app).await;
    let writes_before = writes(&w, "zoe@northwind.io");
    let before = routes(&w);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful);
    let calls = calls_since(&w, &before);
    assert_eq!(
        calls.get("POST /lists/{list_id}/segments/{segment_id}"),
        Some(&1),
        "{calls:?}"
    );
    assert!(
        !calls.contains_key("POST /lists/{list_id}"),
        "no upsert: {calls:?}"
    );
    assert_eq!(writes(&w, "zoe@northwind.io"), writes_before);
    let zoe = audience(&w)
        .into_iter()
        .find(|m| m.0 == "zoe@northwind.io")
        .unwrap();
    assert_eq!(
        zoe.3,
        ["Met at fair", "export-destinations"],
        "the Germany tag went; a tag set by someone else stays"
    );
}

#[tokio::test]
async fn tags_past_the_first_thousand_of_the_audience_are_found_not_made_again() {
    let w = world(SandboxConfig::default()).await;
    // An audience with 1,000 other tags; "Germany" is the 1,001st, on the second page.
    let client = reqwest::Client::new();
    for name in (0..1000)
        .map(|i| format!("Campaign {i}"))
        .chain(["Germany".to_owned()])
    {
        let created = client
            .post(format!(
                "{}/3.0/lists/{}/segments",
                w.sandbox_base, w.audience
            ))
            .basic_auth("x", Some(&w.key))
            .json(&serde_json::json!({ "name": name, "static_segment": [] }))
            .send()
            .await
            .unwrap();
        assert!(created.status().is_success(), "{name}");
    }
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    let members = audience(&w);
    assert_eq!(
        members[0].3,
        vec!["Germany".to_owned(), "export-destinations".to_owned()]
    );
    let store = w.sandbox.store();
    let list = store
        .audiences
        .values()
        .find(|a| a.id == w.audience)
        .unwrap();
    let named_germany = list
        .segments
        .values()
        .filter(|s| s.name == "Germany")
        .count();
    assert_eq!(named_germany, 1, "the existing tag is used, not made again");
}

#[tokio::test]
async fn unsubscribed_and_cleaned_contacts_are_never_subscribed_again() {
    let w = world(SandboxConfig::default()).await;
    // Already in the audience before the console's first export.
    {
        let client = reqwest::Client::new();
        let body = serde_json::json!({ "members": [
            { "email_address": "ada@northwind.io", "status": "unsubscribed" },
            { "email_address": "zoe@northwind.io", "status": "cleaned" }
        ]});
        client
            .post(format!("{}/3.0/lists/{}", w.sandbox_base, w.audience))
            .basic_auth("x", Some(&w.key))
            .json(&body)
            .send()
            .await
            .unwrap();
    }
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful);
    let members = audience(&w);
    assert_eq!(members[0].1, "unsubscribed");
    assert_eq!(members[1].1, "cleaned");
    assert_eq!(
        members[0].2, "Ada",
        "their fields are kept up to date, their status is not touched"
    );

    // Someone unsubscribes after being exported: the next export reads the status Mailchimp
    // has and sends that, so their fields stay up to date and they stay unsubscribed.
    let w2 = world(SandboxConfig::default()).await;
    import(&w2.app, PEOPLE).await;
    let germany = segment(&w2.app, "Germany", "Country", "Germany").await;
    refresh(&w2.app).await;
    let id = destination(&w2, &[germany], "subscribed").await;
    export(&w2, id, false).await;
    {
        let mut store = w2.sandbox.store();
        let list = store.audiences.get_mut(&w2.audience).unwrap();
        let member = list
            .members
            .get_mut(&export_destinations::domain::subscriber_hash(
                "ada@northwind.io",
            ))
            .unwrap();
        member.status = export_destinations::sandbox::status::MemberStatus::Unsubscribed;
    }
    import(&w2.app, "CustomerId,FirstName\nP1,Augusta\n").await;
    let run = export(&w2, id, false).await;
    assert_eq!(run.status, RunStatus::Successful);
    let ada = audience(&w2)
        .into_iter()
        .find(|m| m.0 == "ada@northwind.io")
        .unwrap();
    assert_eq!(ada.1, "unsubscribed", "never subscribed again");
    assert_eq!(ada.2, "Augusta", "their fields are kept up to date");
    assert_eq!((run.counters.sent, run.counters.skipped), (1, 3));
    w2.app
        .signed_in_as("viewer@example.com", Role::Viewer)
        .await;
    let csv = w2
        .app
        .get(&format!("/admin/export-runs/{}/members.csv", run.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(csv.contains("P1,ada@northwind.io,updated"), "{csv}");
    // And when Mailchimp itself refuses a contact for good, it is never tried again.
    {
        let mut store = w2.sandbox.store();
        let list = store.audiences.get_mut(&w2.audience).unwrap();
        list.forgotten
            .insert(export_destinations::domain::subscriber_hash(
                "zoe@northwind.io",
            ));
        list.members
            .remove(&export_destinations::domain::subscriber_hash(
                "zoe@northwind.io",
            ));
    }
    import(&w2.app, "CustomerId,FirstName\nP3,Zoé\n").await;
    let run = export(&w2, id, false).await;
    assert_eq!(run.counters.skipped, 3 + 1);
    import(&w2.app, "CustomerId,FirstName\nP3,Zoe\n").await;
    let calls_before = w2.sandbox.stats().calls;
    let run = export(&w2, id, false).await;
    assert_eq!(run.counters.sent, 0, "not retried");
    assert!(
        w2.sandbox.stats().calls - calls_before <= 3,
        "only the fixed reads"
    );
    let csv = w2
        .app
        .get(&format!("/admin/export-runs/{}/members.csv", run.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains("P3,zoe@northwind.io,skipped,Forgotten Email Not Subscribed"),
        "{csv}"
    );
}

#[tokio::test]
async fn new_members_get_the_destinations_status() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "pending").await;
    export(&w, id, false).await;
    assert!(audience(&w).iter().all(|m| m.1 == "pending"));
}

#[tokio::test]
async fn with_faults_injected_the_audience_still_ends_exactly_right() {
    let w = world(SandboxConfig {
        // Tags travel with the upserts, so a run makes few calls: enough faults to matter.
        fault_rate: 0.2,
        seed: 3,
        hang: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    let mut csv = String::from("CustomerId,FirstName,Email,Country\n");
    for i in 0..10000 {
        csv.push_str(&format!(
            "C{i},Name{i},person{i}@northwind.io,{}\n",
            if i % 3 == 0 { "Germany" } else { "France" }
        ));
    }
    import(&w.app, &csv).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    let france = segment(&w.app, "France", "Country", "France").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany, france], "subscribed").await;
    let mut run = export(&w, id, false).await;
    // A call that failed after every retry leaves its members for the next export.
    for _ in 0..3 {
        if run.counters.failed == 0 && run.status == RunStatus::Successful {
            break;
        }
        run = export(&w, id, false).await;
    }
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert!(
        w.sandbox.stats().faults_injected > 0,
        "faults were injected"
    );
    let members = audience(&w);
    assert_eq!(members.len(), 10000);
    for (email, status, _, tags) in &members {
        let i: usize = email
            .trim_start_matches("person")
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let expected = if i % 3 == 0 { "Germany" } else { "France" };
        assert_eq!(status, "subscribed");
        assert_eq!(
            tags,
            &vec![expected.to_owned(), "export-destinations".to_owned()],
            "{email}"
        );
    }
}

#[tokio::test]
async fn with_ten_connections_and_latency_the_exporter_never_trips_a_429() {
    let w = world(SandboxConfig {
        max_connections: 10,
        latency: Duration::from_millis(40),
        per_member: Duration::from_micros(20),
        ..SandboxConfig::default()
    })
    .await;
    let mut csv = String::from("CustomerId,FirstName,Email,Country\n");
    for i in 0..6000 {
        csv.push_str(&format!(
            "C{i},N{i},p{i}@northwind.io,{}\n",
            ["Germany", "France", "Spain"][i % 3]
        ));
    }
    import(&w.app, &csv).await;
    let a = segment(&w.app, "Germany", "Country", "Germany").await;
    let b = segment(&w.app, "France", "Country", "France").await;
    let c = segment(&w.app, "Spain", "Country", "Spain").await;
    refresh(&w.app).await;
    let id = destination(&w, &[a, b, c], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful);
    assert_eq!(run.counters.created, 6000);
    let stats = w.sandbox.stats();
    assert_eq!(stats.rejected_429, 0, "{stats:?}");
    assert!(
        stats.peak_in_flight > 1 && stats.peak_in_flight <= 10,
        "calls ran side by side within the limit: {}",
        stats.peak_in_flight
    );
}

#[tokio::test]
async fn a_run_over_a_million_profiles_fails_before_sending_anything() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let pool = w.app.state.db.pool();
    let big = segment(&w.app, "Big", "Country", "Germany").await;
    sqlx::query(
        "INSERT INTO segment_members (segment_id, generation, profile_id) \
         WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000001) SELECT $1, 1, i FROM n",
    )
    .bind(big)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("UPDATE segments SET generation = 1 WHERE id = $1")
        .bind(big)
        .execute(pool)
        .await
        .unwrap();
    let id = destination(&w, &[big], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Failure);
    assert!(
        run.message
            .unwrap()
            .contains("hold 1000001 profiles; at most 1000000")
    );
    assert!(
        !w.sandbox
            .stats()
            .calls_by_route
            .contains_key("POST /lists/{list_id}"),
        "nothing was sent"
    );
}

#[tokio::test]
async fn export_from_the_page_queues_a_run_and_a_second_request_is_skipped() {
    let w = world(SandboxConfig {
        latency: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    w.app
        .signed_in_as("contributor@example.com", Role::Contributor)
        .await;
    let response = w
        .app
        .post_form(
            "/admin/export-destinations",
            &format!("/admin/export-destinations/{id}/export"),
            &[],
        )
        .await;
    let run_page = location(&response);
    assert!(run_page.starts_with("/admin/export-runs/"));
    let again = w
        .app
        .post_form(
            "/admin/export-destinations",
            &format!("/admin/export-destinations/{id}/export"),
            &[],
        )
        .await;
    let second = location(&again);
    let second_id: i64 = second.rsplit('/').next().unwrap().parse().unwrap();
    let skipped = runs::find(w.app.state.db.pool(), second_id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        skipped.status,
        RunStatus::Skipped,
        "one run per destination at a time"
    );
    let first_id: i64 = run_page.rsplit('/').next().unwrap().parse().unwrap();
    let done = wait(&w, first_id).await;
    assert_eq!(done.status, RunStatus::Successful);
    let page = w.app.get_html(&run_page).await;
    assert!(page.contains("Successful"));
    let progress: Value = w
        .app
        .get(&format!("{run_page}/progress.json"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(progress["created"], 2);
    assert_eq!(progress["finished"], true);
    let history = w
        .app
        .get_html(&format!("/admin/export-destinations/{id}/runs"))
        .await;
    assert!(history.contains("Successful") && history.contains("Skipped"));
    let list = w.app.get_html("/admin/export-destinations").await;
    assert!(list.contains("<td>Successful</td>"));
}

#[tokio::test]
async fn viewers_cannot_start_or_cancel_exports() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    w.app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let list = w.app.get_html("/admin/export-destinations").await;
    assert!(!list.contains("/export\""), "no Export button for a Viewer");
    let token = crate::helpers::csrf_token(&list);
    assert_eq!(
        w.app
            .post_raw(
                &format!("/admin/export-destinations/{id}/export"),
                &[("csrf_token", &token)]
            )
            .await
            .status(),
        403
    );
    assert_eq!(
        w.app
            .post_raw(
                "/admin/export-destinations/export-all",
                &[("csrf_token", &token)]
            )
            .await
            .status(),
        403
    );
    let runs = runs::for_destination(w.app.state.db.pool(), id, 10)
        .await
        .unwrap();
    assert!(runs.is_empty());
}

#[tokio::test]
async fn a_queued_run_can_be_canceled_and_a_running_one_stops_between_calls() {
    let w = world(SandboxConfig {
        latency: Duration::from_millis(300),
        ..SandboxConfig::default()
    })
    .await;
    let mut csv = String::from("CustomerId,FirstName,Email,Country\n");
    for i in 0..20000 {
        csv.push_str(&format!("C{i},N{i},p{i}@northwind.io,Germany\n"));
    }
    import(&w.app, &csv).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let mut conn = w.app.state.db.pool().acquire().await.unwrap();
    let (run_id, _) = runs::enqueue(&mut conn, id, false, None).await.unwrap();
    drop(conn);
    // Let it start, then cancel.
    for _ in 0..200 {
        if runs::find(w.app.state.db.pool(), run_id)
            .await
            .unwrap()
            .unwrap()
            .counters
            .sent
            > 0
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    runs::request_cancel(w.app.state.db.pool(), run_id)
        .await
        .unwrap();
    let run = wait(&w, run_id).await;
    assert_eq!(run.status, RunStatus::Canceled);
    let in_audience = audience(&w).len() as i64;
    assert!(
        in_audience > 0 && in_audience < 20000,
        "stopped part way: {in_audience}"
    );
    assert_eq!(
        run.counters.sent, in_audience,
        "the counts match what Mailchimp has"
    );
    // The next export completes the rest without sending the first part again.
    let next = export(&w, id, false).await;
    assert_eq!(next.status, RunStatus::Successful);
    assert_eq!(next.counters.unchanged, in_audience);
    assert_eq!(audience(&w).len(), 20000);
}

#[tokio::test]
async fn the_command_line_runs_an_export_with_the_same_engine() {
    let w = world_with(SandboxConfig::default(), |s| s.secret_key = None).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    destination(&w, &[germany], "subscribed").await;
    let settings = &w.app.state.settings;
    // Asynchronously: the sandbox answering the command lives in this test's runtime.
    let run = |name: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_export-destinations"))
            .args(["export", "run", name, "--data-dir"])
            .arg(&settings.data_dir)
            .args(["--database-url", settings.database_url.as_str()])
            .env_remove("SECRET_KEY")
            .output()
    };
    let output = run("Newsletter").await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(
            "Successful: 5 members; 2 sent (2 created, 0 updated), 0 unchanged, 3 skipped, 0 failed"
        ),
        "{stdout}"
    );
    assert_eq!(audience(&w).len(), 2);
    let missing = run("Nope").await.unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("there is no saved destination named \"Nope\"")
    );
}

#[tokio::test]
async fn a_run_whose_worker_died_is_resumed_and_sends_nothing_twice() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let first = export(&w, id, false).await;
    assert_eq!(first.counters.created, 2);
    // A run claimed by a worker that then died: its lease has run out.
    import(&w.app, "CustomerId,FirstName\nP1,Augusta\n").await;
    let pool = w.app.state.db.pool();
    let mut conn = pool.acquire().await.unwrap();
    let (run_id, _) = runs::enqueue(&mut conn, id, false, None).await.unwrap();
    drop(conn);
    sqlx::query("UPDATE export_runs SET status = 'processing', lease_owner = 'dead', lease_expires_at = 1, started_at = 1 WHERE id = $1")
        .bind(run_id)
        .execute(pool)
        .await
        .unwrap();
    let run = wait(&w, run_id).await;
    assert_eq!(
        run.status,
        RunStatus::Successful,
        "another worker took it over"
    );
    assert_eq!((run.counters.sent, run.counters.unchanged), (1, 1));
    assert_eq!(
        writes(&w, "zoe@northwind.io"),
        1,
        "what Mailchimp acknowledged before is not sent again"
    );
}

async fn remove_with(w: &World, id: i64, choice: &str) {
    w.app
        .signed_in_as("remover@example.com", Role::Administrator)
        .await;
    let page = format!("/admin/export-destinations/{id}/remove");
    let response = w
        .app
        .post_form(&page, &page, &[("in_mailchimp", choice)])
        .await;
    assert_eq!(location(&response), "/admin/export-destinations");
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
    let credentials: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM destinations")
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(credentials, 0);
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

#[tokio::test]
async fn export_all_queues_every_saved_destination() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    w.app
        .signed_in_as("contributor@example.com", Role::Contributor)
        .await;
    let response = w
        .app
        .post_form(
            "/admin/export-destinations",
            "/admin/export-destinations/export-all",
            &[],
        )
        .await;
    assert_eq!(location(&response), "/admin/export-destinations");
    assert!(
        w.app
            .get_html("/admin/export-destinations")
            .await
            .contains("Queued 1 export(s).")
    );
    let run = runs::for_destination(w.app.state.db.pool(), id, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(wait(&w, run.id).await.status, RunStatus::Successful);
    assert_eq!(audience(&w).len(), 2);
}

#[tokio::test]
async fn two_workers_never_claim_the_same_run() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let pool = w.app.state.db.pool();
    // A run stuck with an expired lease, so that claiming is a race between the two.
    let mut conn = pool.acquire().await.unwrap();
    let (run_id, _) = runs::enqueue(&mut conn, id, false, None).await.unwrap();
    drop(conn);
    for round in 0..20 {
        sqlx::query("UPDATE export_runs SET status = 'processing', lease_owner = 'dead', lease_expires_at = 1 WHERE id = $1")
            .bind(run_id)
            .execute(pool)
            .await
            .unwrap();
        let (a, b) = tokio::join!(
            runs::claim_next(pool, "a", 600_000),
            runs::claim_next(pool, "b", 600_000)
        );
        let claimed = [a.unwrap(), b.unwrap()]
            .into_iter()
            .flatten()
            .filter(|r| r.id == run_id)
            .count();
        assert!(
            claimed <= 1,
            "round {round}: both workers claimed run {run_id}"
        );
    }
}

/// Asks for a removal with a clean-up from the page, as `admin`, and returns the clean-up run.
async fn ask_removal(w: &World, admin: &TestApp, id: i64, choice: &str) -> Run {
    let page = format!("/admin/export-destinations/{id}/remove");
    let response = admin
        .post_form(&page, &page, &[("in_mailchimp", choice)])
        .await;
    assert_eq!(location(&response), "/admin/export-destinations");
    runs::latest_cleanup(w.app.state.db.pool(), id)
        .await
        .unwrap()
        .expect("a clean-up run is queued")
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
    assert!(kept.removing && kept.credential_sealed.is_some());
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
    assert!(kept.credential_sealed.is_some());
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
