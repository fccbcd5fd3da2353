//! What an export sends: members, tags and changes, with the fewest calls.

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::runs::RunStatus;

use crate::world::*;

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
