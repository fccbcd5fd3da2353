use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::sandbox::standalone::RunningSandbox;
use export_destinations::store::runs::{self, Run, RunStatus};
use serde_json::Value;

use crate::helpers::{
    Target, TestApp, equals_segment, import_csv, saved_destination, spawn_app_with,
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

pub(crate) fn writes(w: &World, email: &str) -> u64 {
    let store = w.sandbox.store();
    store.audiences[&w.audience].members[&export_destinations::domain::subscriber_hash(email)]
        .writes
}

pub(crate) const PEOPLE: &str = "CustomerId,FirstName,Email,Country\n\
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
