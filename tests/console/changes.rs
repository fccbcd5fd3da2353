//! Re-exports that read only the profiles changed since the destination's last complete
//! export, and the cases that make a run read the whole plan again.

use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::runs::{Run, RunStatus};
use export_destinations::store::{marks, segments};

use crate::world::{
    World, audience, calls_since, destination, export, import, refresh, routes, segment, world,
};

/// 200 people, odd ones in Germany and even ones in France; P201 has no valid address,
/// P202 and P203 repeat the addresses of P010 and P020.
fn people() -> String {
    let mut csv = String::from("CustomerId,FirstName,Email,Country\n");
    for i in 1..=200 {
        let country = if i % 2 == 1 { "Germany" } else { "France" };
        csv.push_str(&format!("P{i:03},F{i:03},p{i:03}@northwind.io,{country}\n"));
    }
    csv.push_str("P201,Broken,not-an-address,Germany\n");
    csv.push_str("P202,Second Ten,P010@NORTHWIND.IO,Germany\n");
    csv.push_str("P203,Second Twenty,p020@northwind.io,Germany\n");
    csv
}

/// Makes every profile written so far look written an hour ago, as if imported well before
/// the segments' refresh: a re-export's starting point keeps a minute's margin for clocks
/// before the refresh, and would otherwise take in profiles written in the test's first
/// second.
async fn age_profiles(w: &World) {
    sqlx::query("UPDATE profiles SET updated_at = updated_at - 3600000")
        .execute(w.app.state.db.pool())
        .await
        .unwrap();
}

async fn results_of(w: &World, run: &Run) -> i64 {
    sqlx::query_scalar("SELECT COUNT(*) FROM export_results WHERE run_id = $1")
        .bind(run.id)
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap()
}

/// A member of the audience: (status, FNAME, tags).
fn member(w: &World, email: &str) -> (String, String, Vec<String>) {
    let members = audience(w);
    let (_, status, name, tags) = members
        .into_iter()
        .find(|m| m.0 == email)
        .unwrap_or_else(|| panic!("{email} is not in the audience"));
    (status, name, tags)
}

fn tags(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn a_re_export_reads_only_what_changed_and_leaves_the_audience_as_a_full_read_would() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, &people()).await;
    age_profiles(&w).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    let france = segment(&w.app, "France", "Country", "France").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany, france], "subscribed").await;
    let first = export(&w, id, false).await;
    assert_eq!(first.status, RunStatus::Successful, "{:?}", first.message);
    assert_eq!(first.changes_since, None, "a first export reads everything");
    let titles: Vec<(String, String)> = sqlx::query_as(
        "SELECT title, detail FROM export_results WHERE run_id = $1 AND outcome = 'skipped' LIMIT 5",
    )
    .bind(first.id)
    .fetch_all(w.app.state.db.pool())
    .await
    .unwrap();
    assert_eq!(
        (first.counters.created, first.counters.skipped),
        (200, 3),
        "{titles:?}"
    );
    assert!(results_of(&w, &first).await > 200);

    // Nothing changed: nothing is read, nothing is sent.
    let before = routes(&w);
    let quiet = export(&w, id, false).await;
    assert_eq!(quiet.status, RunStatus::Successful);
    assert!(quiet.changes_since.is_some(), "{quiet:?}");
    let rows: Vec<(String, String, String)> =
        sqlx::query_as("SELECT customer_id, outcome, title FROM export_results WHERE run_id = $1")
            .bind(quiet.id)
            .fetch_all(w.app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(results_of(&w, &quiet).await, 0, "{rows:?}");
    assert_eq!((quiet.counters.sent, quiet.counters.tag_changes), (0, 0));
    assert_eq!(quiet.counters.total, first.counters.total);
    let calls = calls_since(&w, &before);
    assert!(
        !calls.contains_key("POST /lists/{list_id}"),
        "no batch was sent: {calls:?}"
    );

    import(
        &w.app,
        "CustomerId,FirstName,Email,Country\n\
         P001,Changed,p001@northwind.io,Germany\n\
         P002,F002,p002@northwind.io,Germany\n\
         P003,F003,p003@northwind.io,Spain\n\
         P004,F004,p004-new@northwind.io,France\n\
         P005,F005,p150@northwind.io,Germany\n\
         P010,F010,p010@northwind.io,Spain\n\
         P020,F020,p020-moved@northwind.io,France\n\
         P201,Mended,p201@northwind.io,Germany\n\
         P204,Newcomer,p204@northwind.io,France\n",
    )
    .await;
    refresh(&w.app).await;
    let before = routes(&w);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert!(
        run.changes_since.is_some(),
        "only changes were read: {run:?}"
    );
    assert_eq!(run.counters.failed, 0);
    let read = results_of(&w, &run).await;
    assert!(
        read <= 15,
        "results only for the profiles read again, not all 203: {read}"
    );
    let calls = calls_since(&w, &before);
    assert_eq!(
        calls.get("POST /lists/{list_id}"),
        Some(&1),
        "one batch carries every change: {calls:?}"
    );

    let g = ["Germany", "export-destinations"];
    let f = ["France", "export-destinations"];
    let ours = ["export-destinations"];
    assert_eq!(member(&w, "p001@northwind.io").1, "Changed");
    assert_eq!(member(&w, "p002@northwind.io").2, tags(&g), "moved segment");
    assert_eq!(member(&w, "p003@northwind.io").2, tags(&ours), "left both");
    assert_eq!(
        member(&w, "p004@northwind.io").2,
        tags(&ours),
        "old address"
    );
    assert_eq!(member(&w, "p004-new@northwind.io").2, tags(&f));
    // P005 took P150's address: it is first, so the address carries its data and tags.
    assert_eq!(
        member(&w, "p150@northwind.io"),
        ("subscribed".into(), "F005".into(), tags(&g)),
        "P150's France tag went with it"
    );
    assert_eq!(member(&w, "p005@northwind.io").2, tags(&ours));
    // P010 left: the next profile with its address (P202) takes it over.
    assert_eq!(member(&w, "p010@northwind.io").1, "Second Ten");
    assert_eq!(member(&w, "p010@northwind.io").2, tags(&g));
    assert_eq!(member(&w, "p020@northwind.io").1, "Second Twenty");
    assert_eq!(member(&w, "p020-moved@northwind.io").2, tags(&f));
    assert_eq!(member(&w, "p201@northwind.io").1, "Mended");
    assert_eq!(member(&w, "p204@northwind.io").2, tags(&f));

    // A run that reads the whole plan finds nothing left to do.
    marks::clear(w.app.state.db.pool(), id).await.unwrap();
    let whole = export(&w, id, false).await;
    assert_eq!(whole.changes_since, None);
    assert_eq!(
        (
            whole.counters.sent,
            whole.counters.tag_changes,
            whole.counters.failed
        ),
        (0, 0, 0),
        "{whole:?}"
    );
    assert_eq!(whole.counters.total, run.counters.total);
    assert_eq!(
        whole.counters.skipped, 1,
        "only P150 is skipped, as a repeat of P005's new address"
    );
}

#[tokio::test]
async fn changed_settings_segment_rules_or_a_full_resync_read_everything_again() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, &people()).await;
    age_profiles(&w).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    assert!(export(&w, id, false).await.changes_since.is_some());

    let full = export(&w, id, true).await;
    assert_eq!(full.changes_since, None, "a full resync reads everything");
    // 100 Germans and the two whose addresses are those of French P010 and P020.
    assert_eq!(full.counters.sent, 102, "{full:?}");
    assert!(export(&w, id, false).await.changes_since.is_some());

    // New rules for the segment: every profile may be in or out now.
    use export_destinations::domain::segment_rules::{Condition, Match, Operator, SegmentRules};
    let rules = SegmentRules {
        match_: Match::Any,
        conditions: vec![
            Condition {
                field: "Country".into(),
                op: Operator::Equals,
                value: "Germany".into(),
            },
            Condition {
                field: "Country".into(),
                op: Operator::Equals,
                value: "France".into(),
            },
        ],
    };
    let pool = w.app.state.db.pool();
    segments::update(
        pool,
        germany,
        "Germany",
        &segments::Definition::Rules(rules),
    )
    .await
    .unwrap();
    refresh(&w.app).await;
    let run = export(&w, id, false).await;
    assert_eq!(run.changes_since, None, "{run:?}");
    assert_eq!(
        (run.counters.created, run.counters.updated),
        (98, 2),
        "the French joined; P010 and P020 take their addresses back from P202 and P203"
    );

    // A renamed segment is a renamed tag.
    segments::update(
        pool,
        germany,
        "Deutschland",
        &segments::find(pool, germany)
            .await
            .unwrap()
            .unwrap()
            .definition,
    )
    .await
    .unwrap();
    let run = export(&w, id, false).await;
    assert_eq!(run.changes_since, None);
    assert!(
        member(&w, "p001@northwind.io")
            .2
            .contains(&"Deutschland".to_owned())
    );
}

#[tokio::test]
async fn a_run_that_does_not_end_complete_leaves_no_starting_point() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, &people()).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    let pool = w.app.state.db.pool();
    assert!(marks::find(pool, id).await.unwrap().is_some());
    // The audience is gone: the run fails, and the next one reads everything.
    w.sandbox.store().audiences.remove(&w.audience);
    let failed = export(&w, id, false).await;
    assert_eq!(failed.status, RunStatus::Failure);
    assert!(marks::find(pool, id).await.unwrap().is_none());
}

#[tokio::test]
async fn a_refresh_that_finds_the_same_members_publishes_nothing_new() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, &people()).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let pool = w.app.state.db.pool();
    let first = segments::find(pool, germany).await.unwrap().unwrap();
    refresh(&w.app).await;
    let second = segments::find(pool, germany).await.unwrap().unwrap();
    assert_eq!(
        second.generation, first.generation,
        "same members, same generation"
    );
    assert!(second.last_refreshed_at >= first.last_refreshed_at);
    assert!(second.members_as_of >= first.members_as_of);
    import(&w.app, "CustomerId,Country\nP002,Germany\n").await;
    refresh(&w.app).await;
    let third = segments::find(pool, germany).await.unwrap().unwrap();
    assert_eq!(third.generation, first.generation + 1);
    assert_eq!(third.member_count, 104);
}

#[tokio::test]
async fn an_import_under_way_holds_back_where_the_next_re_export_starts() {
    let w = world(SandboxConfig::default()).await;
    let pool = w.app.state.db.pool();
    use export_destinations::store::profile_writers;
    let writing = profile_writers::begin(pool).await.unwrap();
    let started = export_destinations::db::now_millis();
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(profile_writers::horizon(pool).await.unwrap() <= started);
    writing.end(pool).await.unwrap();
    assert!(profile_writers::horizon(pool).await.unwrap() > started);

    // An import notes itself while it runs and takes its note off when done.
    import(&w.app, &people()).await;
    let notes: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM profile_writers")
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(notes, 0);
}

#[tokio::test]
async fn deleting_a_field_marks_the_profiles_that_had_it_as_changed() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, &people()).await;
    import(&w.app, "CustomerId,Nickname\nP001,Ace\n").await;
    let db = &w.app.state.db;
    let before: i64 =
        sqlx::query_scalar("SELECT updated_at FROM profiles WHERE customer_id = 'P001'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    let untouched: i64 =
        sqlx::query_scalar("SELECT updated_at FROM profiles WHERE customer_id = 'P002'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let fields = export_destinations::store::fields::list(db.pool())
        .await
        .unwrap();
    let nickname = fields.iter().find(|f| f.name == "Nickname").unwrap();
    export_destinations::store::fields::delete(db, nickname)
        .await
        .unwrap();
    let after: i64 =
        sqlx::query_scalar("SELECT updated_at FROM profiles WHERE customer_id = 'P001'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    let still: i64 =
        sqlx::query_scalar("SELECT updated_at FROM profiles WHERE customer_id = 'P002'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert!(after > before, "the profile that had the field changed");
    assert_eq!(still, untouched, "the others did not");
}
