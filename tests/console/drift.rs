//! The ledger notices when the audience changed behind the console: members archived or
//! deleted in Mailchimp, an audience emptied. One small call tells; a repair reads the
//! audience and sends the missing members again, never re-subscribing anyone who opted out
//! and never retrying an address deleted for good.

use export_destinations::domain::subscriber_hash;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::runs::{Run, RunStatus};

use crate::world::{
    World, audience, calls_since, destination, export, import, refresh, routes, segment, world,
};

/// `n` people in Germany, exported once; returns the world and the destination.
async fn exported(n: usize) -> (World, i64) {
    let w = world(SandboxConfig::default()).await;
    let mut csv = String::from("CustomerId,FirstName,Email,Country\n");
    for i in 0..n {
        csv.push_str(&format!("C{i},N{i},p{i}@northwind.io,Germany\n"));
    }
    import(&w.app, &csv).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    assert_eq!(run.counters.created, n as i64);
    (w, id)
}

/// Calls the sandbox answers for one member, as Mailchimp's own site or a person would.
async fn member_call(w: &World, method: reqwest::Method, email: &str, suffix: &str) -> u16 {
    let url = format!(
        "{}/3.0/lists/{}/members/{}{suffix}",
        w.sandbox_base,
        w.audience,
        subscriber_hash(email)
    );
    let mut request = reqwest::Client::new()
        .request(method.clone(), url)
        .basic_auth("x", Some(&w.key));
    if method == reqwest::Method::PATCH {
        request = request.json(&serde_json::json!({ "status": "unsubscribed" }));
    }
    request.send().await.unwrap().status().as_u16()
}

fn status_of(w: &World, email: &str) -> Option<String> {
    audience(w).into_iter().find(|m| m.0 == email).map(|m| m.1)
}

async fn run_page(w: &World, run: &Run) -> String {
    w.app
        .get_html(&format!("/admin/export-runs/{}", run.id))
        .await
}

#[tokio::test]
async fn an_audience_emptied_behind_the_console_is_restored_by_the_next_ordinary_run() {
    let (w, id) = exported(30).await;
    w.app
        .signed_in_as(
            "viewer@example.com",
            export_destinations::domain::Role::Viewer,
        )
        .await;
    {
        let mut store = w.sandbox.store();
        let list = store.audiences.get_mut(&w.audience).unwrap();
        list.members.clear();
        for tag in list.segments.values_mut() {
            tag.members.clear();
        }
    }
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    assert_eq!(run.repair_missing, Some(30));
    assert_eq!((run.counters.created, run.counters.unchanged), (30, 0));
    let members = audience(&w);
    assert_eq!(members.len(), 30);
    let tags = vec!["Germany".to_owned(), "export-destinations".to_owned()];
    assert!(
        members.iter().all(|m| m.1 == "subscribed" && m.3 == tags),
        "{members:?}"
    );
    let page = run_page(&w, &run).await;
    assert!(page.contains(r#"id="run-repair""#), "{page}");
    assert!(page.contains("30 members this console had sent were missing"));

    // Nothing drifted since: the check is one call, and nothing is read or sent.
    let before = routes(&w);
    let quiet = export(&w, id, false).await;
    let calls = calls_since(&w, &before);
    assert_eq!(quiet.repair_missing, None);
    assert_eq!((quiet.counters.sent, quiet.counters.unchanged), (0, 30));
    assert_eq!(calls.get("GET /lists/{list_id}"), Some(&1), "{calls:?}");
    assert_eq!(calls.get("GET /lists/{list_id}/members"), None, "{calls:?}");
    assert!(!run_page(&w, &quiet).await.contains(r#"id="run-repair""#));
}

#[tokio::test]
async fn archived_members_come_back_but_an_opted_out_or_forgotten_one_does_not() {
    let (w, id) = exported(20).await;
    w.app
        .signed_in_as(
            "viewer@example.com",
            export_destinations::domain::Role::Viewer,
        )
        .await;
    // p0 unsubscribes; the next export learns it (and sends it back unchanged).
    assert_eq!(
        member_call(&w, reqwest::Method::PATCH, "p0@northwind.io", "").await,
        200
    );
    let learned = export(&w, id, true).await;
    assert_eq!(learned.status, RunStatus::Successful, "{learned:?}");
    assert_eq!(
        status_of(&w, "p0@northwind.io").as_deref(),
        Some("unsubscribed")
    );

    // Behind the console: ten members archived, p0 archived too, p19 deleted for good.
    for i in 0..=10 {
        let email = format!("p{i}@northwind.io");
        assert_eq!(
            member_call(&w, reqwest::Method::DELETE, &email, "").await,
            204
        );
    }
    assert_eq!(
        member_call(
            &w,
            reqwest::Method::POST,
            "p19@northwind.io",
            "/actions/delete-permanent"
        )
        .await,
        204
    );

    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    assert_eq!(run.repair_missing, Some(12), "ten archived, p0 and p19");
    for i in 1..=10 {
        assert_eq!(
            status_of(&w, &format!("p{i}@northwind.io")).as_deref(),
            Some("subscribed"),
            "p{i} is back"
        );
    }
    assert_eq!(
        status_of(&w, "p0@northwind.io").as_deref(),
        Some("archived"),
        "an opted-out member is never added back"
    );
    assert_eq!(
        status_of(&w, "p19@northwind.io"),
        None,
        "a forgotten address stays gone"
    );
    let back = audience(&w)
        .into_iter()
        .find(|m| m.0 == "p5@northwind.io")
        .unwrap();
    assert_eq!(back.3, ["Germany", "export-destinations"], "with its tags");
    let csv = w
        .app
        .get(&format!("/admin/export-runs/{}/members.csv", run.id))
        .await
        .text()
        .await
        .unwrap();
    assert!(
        csv.contains("C19,p19@northwind.io,skipped,Forgotten Email Not Subscribed"),
        "{csv}"
    );
    assert!(
        csv.contains("C0,p0@northwind.io,skipped,\"Opted out, then left the audience\""),
        "{csv}"
    );
    let page = run_page(&w, &run).await;
    assert!(page.contains("12 members this console had sent were missing"));

    // The next run repairs nothing and retries neither p0 nor p19.
    let before = routes(&w);
    let next = export(&w, id, false).await;
    let calls = calls_since(&w, &before);
    assert_eq!(next.repair_missing, None);
    assert_eq!(next.counters.sent, 0);
    assert_eq!(calls.get("POST /lists/{list_id}"), None, "{calls:?}");
    assert_eq!(calls.get("GET /lists/{list_id}/members"), None, "{calls:?}");
}
