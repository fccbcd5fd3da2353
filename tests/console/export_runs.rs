//! Export runs as people and programs start them: queued from the page (a second request
//! skipped), canceled, refused to viewers, run from the command line, resumed after a
//! worker died, Export all, and two workers never claiming one run.

use std::time::Duration;

use export_destinations::domain::Role;
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::runs::{self, RunStatus};

use serde_json::Value;

use crate::helpers::{location, wait_until};
use crate::world::{
    PEOPLE, audience, destination, export, import, refresh, segment, wait, world, world_with,
    writes,
};

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
    assert!(list.contains(&format!(r#"<a href="{run_page}">Successful</a>"#)));
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
    wait_until(
        "the run to send members",
        Duration::from_secs(10),
        || async {
            let run = runs::find(w.app.state.db.pool(), run_id).await.unwrap()?;
            (run.counters.sent > 0).then_some(())
        },
    )
    .await;
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

#[tokio::test]
async fn a_finished_runs_page_groups_skips_by_reason_with_their_csv_and_offers_the_next_export() {
    let w = world(SandboxConfig::default()).await;
    let people = format!("{PEOPLE}P7,Fake,someone@example.com,Germany\n");
    import(&w.app, &people).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    w.app
        .signed_in_as("carol@example.com", Role::Contributor)
        .await;
    let path = format!("/admin/export-runs/{}", run.id);
    let page = w.app.get_html(&path).await;

    // Each reason once, with its count and a link to exactly its members.
    for (label, title) in [
        ("No address", "No email address"),
        ("Invalid address", "Invalid email address"),
        ("Repeated address (exported once)", "Repeated email address"),
        (
            "Refused by Mailchimp as fake or invalid",
            "Invalid Resource",
        ),
    ] {
        assert_eq!(
            page.matches(&format!("<td>{label}</td>")).count(),
            1,
            "{label}: {page}"
        );
        let link = format!(
            "{path}/members.csv?outcome=skipped&#38;title={}",
            title.replace(' ', "+")
        );
        assert!(page.contains(&link), "{link}: {page}");
        let csv = w
            .app
            .get(&link.replace("&#38;", "&"))
            .await
            .text()
            .await
            .unwrap();
        let lines: Vec<&str> = csv.lines().skip(1).collect();
        assert_eq!(lines.len(), 1, "{title}: {csv}");
        assert!(lines[0].contains(title), "{csv}");
    }
    assert!(page.contains(r#"<td class="num">1</td>"#));

    // When it ran, how long it took, how fast; nothing left to wait for or cancel.
    for id in ["run-started", "run-ended", "run-took", "run-average"] {
        assert!(page.contains(&format!(r#"id="{id}""#)), "{id}");
    }
    assert!(!page.contains("Time left"));
    assert!(!page.contains("id=\"cancel-form\""));
    assert!(!page.contains("Cancel requested"));

    // The list shows the last run's counts beside its status, linked to the run; History
    // links each run's CSV.
    let list = w.app.get_html("/admin/export-destinations").await;
    assert!(
        list.contains(&format!(r#"<a href="{path}">Successful</a>"#)),
        "{list}"
    );
    assert!(list.contains("2 created · 4 skipped · 0 failed"), "{list}");
    let history = w
        .app
        .get_html(&format!("/admin/export-destinations/{id}/runs"))
        .await;
    assert!(history.contains(&format!(
        r#"<a href="{path}/members.csv" class="csv">CSV</a>"#
    )));

    // Export again and Full resync are buttons of the finished run's page.
    assert!(page.contains(r#"id="export-again""#) && page.contains(r#"id="full-resync""#));
    let again = w
        .app
        .post_form(
            &path,
            &format!("/admin/export-destinations/{id}/export"),
            &[("full", "yes")],
        )
        .await;
    let next = location(&again);
    let next_id: i64 = next.rsplit('/').next().unwrap().parse().unwrap();
    let resync = wait(&w, next_id).await;
    assert!(resync.full_resync, "Full resync queued a full run");

    // A viewer sees the results but not the buttons.
    let viewer = w.app.another_client();
    viewer.signed_in_as("vera@example.com", Role::Viewer).await;
    let seen = viewer.get_html(&path).await;
    assert!(seen.contains("Skipped and failed members, by reason"));
    assert!(!seen.contains(r#"id="export-again""#));
}
