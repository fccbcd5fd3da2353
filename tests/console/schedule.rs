use chrono::{TimeZone, Utc};
use export_destinations::domain::Role;
use export_destinations::domain::schedule::ScheduleSpec;
use export_destinations::store::{runs, schedule};

use crate::helpers::{location, spawn_app};

#[tokio::test]
async fn the_schedule_is_off_by_default_and_only_administrators_change_it() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let page = app.get_html("/system/schedule").await;
    assert!(page.contains("The scheduled refresh is off."));
    assert!(!page.contains("name=\"enabled\" value=\"yes\" checked"));
    let viewer = app.another_client();
    viewer
        .signed_in_as("viewer@example.com", Role::Viewer)
        .await;
    assert_eq!(viewer.get("/system/schedule").await.status(), 403);
    let token = crate::helpers::csrf_token(&viewer.get_html("/system/status").await);
    let response = viewer
        .post_raw(
            "/system/schedule",
            &[
                ("csrf_token", &token),
                ("enabled", "yes"),
                ("frequency", "daily"),
                ("times", "06:00"),
                ("time_zone", "UTC"),
            ],
        )
        .await;
    assert_eq!(response.status(), 403);
}

#[tokio::test]
async fn a_saved_schedule_says_when_it_runs_next_and_bad_ones_say_why() {
    let app = spawn_app().await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let bad = app
        .post_form(
            "/system/schedule",
            "/system/schedule",
            &[
                ("enabled", "yes"),
                ("frequency", "weekly"),
                ("times", "24:00"),
                ("time_zone", "Nowhere/Else"),
            ],
        )
        .await;
    assert_eq!(bad.status(), 422);
    let html = bad.text().await.unwrap();
    assert!(
        html.contains("Days: choose at least one day")
            && html.contains("“24:00”")
            && html.contains("Nowhere/Else")
    );
    let ok = app
        .post_form(
            "/system/schedule",
            "/system/schedule",
            &[
                ("enabled", "yes"),
                ("frequency", "weekly"),
                ("day", "mon"),
                ("day", "fri"),
                ("times", "18:00, 06:00"),
                ("time_zone", "Europe/Berlin"),
            ],
        )
        .await;
    assert_eq!(location(&ok), "/system/schedule");
    let page = app.get_html("/system/schedule").await;
    assert!(
        page.contains("Saved the schedule: weekly at 06:00, 18:00 (Europe/Berlin) on mon, fri."),
        "{page}"
    );
    // The next run reads in the schedule's time zone, at one of its times.
    let next = page.split("Next refresh: ").nth(1).unwrap();
    let next = &next[..next.find('.').unwrap()];
    assert!(
        (next.contains(" 06:00 Europe/Berlin (") || next.contains(" 18:00 Europe/Berlin ("))
            && next.ends_with(" UTC)"),
        "{next}"
    );
    assert!(
        app.get_html("/admin/audit-log")
            .await
            .contains("Scheduled refresh")
    );
}

#[tokio::test]
async fn a_due_occurrence_refreshes_segments_and_queues_every_destination_once() {
    let app = spawn_app().await;
    let segment = crate::wizard::seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let destination = crate::wizard::complete(&app, segment).await;
    let pool = app.state.db.pool();
    let spec = ScheduleSpec::parse(true, "daily", &[], "06:00", "UTC").unwrap();
    schedule::save(pool, &spec, 1).await.unwrap();
    sqlx::query("UPDATE schedule SET fired_through = $1")
        .bind(
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .unwrap()
                .timestamp_millis(),
        )
        .execute(pool)
        .await
        .unwrap();
    let before_six = Utc.with_ymd_and_hms(2026, 11, 1, 5, 59, 0).unwrap();
    assert_eq!(
        export_destinations::schedule::run_due(&app.state.sources, before_six)
            .await
            .unwrap(),
        None
    );
    let after_six = Utc.with_ymd_and_hms(2026, 11, 1, 6, 0, 30).unwrap();
    let refresh = export_destinations::schedule::run_due(&app.state.sources, after_six)
        .await
        .unwrap();
    assert!(refresh.is_some(), "the 06:00 occurrence ran");
    assert_eq!(
        export_destinations::schedule::run_due(&app.state.sources, after_six)
            .await
            .unwrap(),
        None,
        "and only once"
    );
    let runs = runs::for_destination(pool, destination, 10).await.unwrap();
    assert_eq!(runs.len(), 1);
    let record = &schedule::recent_refreshes(pool, 1).await.unwrap()[0];
    assert_eq!(
        (
            record.status.as_str(),
            record.segments_refreshed,
            record.exports_queued
        ),
        ("successful", 1, 1)
    );
    let status = app.get_html("/system/status").await;
    assert!(status.contains("<td>schedule</td><td>successful</td>"));
}

#[tokio::test]
async fn a_destination_still_exporting_gets_a_skipped_run() {
    let app = spawn_app().await;
    let segment = crate::wizard::seed(&app).await;
    app.signed_in_as("ada@example.com", Role::Administrator)
        .await;
    let destination = crate::wizard::complete(&app, segment).await;
    let pool = app.state.db.pool();
    sqlx::query(
        "INSERT INTO export_runs (destination_id, status, created_at, lease_owner, lease_expires_at) VALUES ($1, 'processing', 1, 'busy', $2)",
    )
    .bind(destination)
    .bind(i64::MAX / 2)
    .execute(pool)
    .await
    .unwrap();
    export_destinations::schedule::refresh_and_export(&app.state.sources, "manual", None)
        .await
        .unwrap();
    let record = &schedule::recent_refreshes(pool, 1).await.unwrap()[0];
    assert_eq!((record.exports_queued, record.exports_skipped), (0, 1));
    let latest = &runs::for_destination(pool, destination, 1).await.unwrap()[0];
    assert_eq!(latest.status, runs::RunStatus::Skipped);
}

#[tokio::test]
async fn missed_occurrences_run_once_when_the_console_comes_back() {
    let app = spawn_app().await;
    let admin = app
        .create_user("ada@example.com", Role::Administrator)
        .await;
    let pool = app.state.db.pool();
    let spec = ScheduleSpec::parse(true, "daily", &[], "06:00, 18:00", "UTC").unwrap();
    schedule::save(pool, &spec, admin).await.unwrap();
    sqlx::query("UPDATE schedule SET fired_through = $1")
        .bind(
            Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0)
                .unwrap()
                .timestamp_millis(),
        )
        .execute(pool)
        .await
        .unwrap();
    let three_days_later = Utc.with_ymd_and_hms(2026, 11, 4, 12, 0, 0).unwrap();
    assert!(
        export_destinations::schedule::run_due(&app.state.sources, three_days_later)
            .await
            .unwrap()
            .is_some()
    );
    assert_eq!(
        export_destinations::schedule::run_due(&app.state.sources, three_days_later)
            .await
            .unwrap(),
        None
    );
    assert_eq!(schedule::recent_refreshes(pool, 10).await.unwrap().len(), 1);
}
