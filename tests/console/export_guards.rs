//! What an export never does, whatever happens: subscribe an opted-out contact again,
//! end wrong under faults, trip Mailchimp's limit, or start past the profile limit.

use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::runs::RunStatus;

use crate::world::*;

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
async fn a_value_mailchimp_would_refuse_is_reported_per_member_and_never_sent() {
    let w = world(SandboxConfig::default()).await;
    let long = "L".repeat(300);
    import(
        &w.app,
        &format!(
            "CustomerId,FirstName,Email,Country\n\
             P1,Ada,ada@northwind.io,Germany\n\
             P2,{long},long@northwind.io,Germany\n\
             P3,Zoë,zoe@northwind.io,Germany\n"
        ),
    )
    .await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful);
    assert_eq!(
        (run.counters.created, run.counters.failed),
        (2, 1),
        "the rest of the batch goes on"
    );
    let (outcome, title, detail): (String, String, String) = sqlx::query_as(
        "SELECT outcome, title, detail FROM export_results WHERE run_id = $1 AND customer_id = 'P2'",
    )
    .bind(run.id)
    .fetch_one(w.app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(
        (outcome.as_str(), title.as_str()),
        ("failed", "Invalid merge field value")
    );
    assert_eq!(
        detail,
        "FNAME takes at most 255 characters and this value has 300; not sent (Mailchimp would refuse the member)."
    );
    let members: Vec<String> = audience(&w).into_iter().map(|m| m.0).collect();
    assert_eq!(members, ["ada@northwind.io", "zoe@northwind.io"]);
    w.app.signed_in_as("viewer@example.com", Role::Viewer).await;
    let page = w
        .app
        .get_html(&format!("/admin/export-runs/{}", run.id))
        .await;
    assert!(page.contains("A merge-field value Mailchimp would refuse (not sent)"));
}
