//! Forget a customer: the profile and its traces leave the console, the member is deleted
//! for good in every audience it was exported to (at once, or by the next run when
//! Mailchimp does not take it), and the address is never sent again.

use export_destinations::domain::{Role, subscriber_hash};
use export_destinations::sandbox::SandboxConfig;
use export_destinations::store::{profiles, runs::RunStatus};

use crate::api::{call, token};
use crate::helpers::TestApp;
use crate::world::*;

fn in_audience(w: &World, email: &str) -> bool {
    w.sandbox.store().audiences[&w.audience]
        .members
        .contains_key(&subscriber_hash(email))
}

fn erased_in_audience(w: &World, email: &str) -> bool {
    w.sandbox.store().audiences[&w.audience]
        .forgotten
        .contains(&subscriber_hash(email))
}

/// Every text the console's database holds in these tables, joined.
async fn stored_text(app: &TestApp, sql: &str) -> String {
    let rows: Vec<String> = sqlx::query_scalar(sql)
        .fetch_all(app.state.db.pool())
        .await
        .unwrap();
    rows.join("\n")
}

async fn profile_id(app: &TestApp, customer_id: &str) -> i64 {
    profiles::find_by_customer(app.state.db.pool(), customer_id)
        .await
        .unwrap()
        .unwrap()
        .id
}

#[tokio::test]
async fn a_forgotten_customer_is_deleted_for_good_in_mailchimp_and_gone_from_the_console() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    // A later import with a row the console rejected: the report names the customer.
    import(
        &w.app,
        "CustomerId,Age\nP2,31\nP3,40\nP4,22\nP5,50\nP6,60\nP20,1\nP21,2\nP22,3\nP23,4\nP1,old\n",
    )
    .await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    // A list of customer IDs that names her.
    let listed = {
        use export_destinations::store::segments::{self, Definition};
        let pool = w.app.state.db.pool();
        let id = segments::create(pool, "Listed", &Definition::Static)
            .await
            .unwrap();
        let mut conn = pool.acquire().await.unwrap();
        segments::set_static_ids(&mut conn, id, &["P1".into(), "P2".into()])
            .await
            .unwrap();
        id
    };
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful);
    assert!(in_audience(&w, "ada@northwind.io"));
    let contacts_before = w.sandbox.store().audiences[&w.audience].members.len();
    let rejections = stored_text(&w.app, "SELECT rejections FROM profile_imports").await;
    assert!(rejections.contains("\"P1\""), "{rejections}");
    let members_before: i64 = sqlx::query_scalar("SELECT member_count FROM segments WHERE id = $1")
        .bind(germany)
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();

    // The administrator confirms on the profile's page.
    w.app
        .signed_in_as("dpo@example.com", Role::Administrator)
        .await;
    let ada = profile_id(&w.app, "P1").await;
    let profile_page = w.app.get_html(&format!("/data/profiles/{ada}")).await;
    assert!(profile_page.contains("Forget this customer…"));
    let confirm = format!("/data/profiles/{ada}/forget");
    let page = w.app.get_html(&confirm).await;
    assert!(page.contains("Forget customer P1?"));
    assert!(
        page.contains("deleted for good in the Mailchimp audience of Newsletter"),
        "{page}"
    );
    let response = w.app.post_form(&confirm, &confirm, &[]).await;
    assert_eq!(response.status(), 200);
    let done = response.text().await.unwrap();
    assert!(done.contains("Customer P1 is forgotten"));
    assert!(done.contains("class=\"erasure-deleted\""), "{done}");
    assert!(done.contains("Deleted for good in Mailchimp."));

    // In Mailchimp: deleted for good (not archived), one contact fewer.
    assert!(!in_audience(&w, "ada@northwind.io"));
    assert!(erased_in_audience(&w, "ada@northwind.io"));
    assert_eq!(
        w.sandbox.store().audiences[&w.audience].members.len(),
        contacts_before - 1
    );
    // In the console: no profile, no results, no rejected row, no address anywhere.
    let pool = w.app.state.db.pool();
    assert!(
        profiles::find_by_customer(pool, "P1")
            .await
            .unwrap()
            .is_none()
    );
    let results = stored_text(
        &w.app,
        "SELECT customer_id || ' ' || email FROM export_results",
    )
    .await;
    assert!(
        results.contains("P5"),
        "other customers' results stay: {results}"
    );
    // P6 is another customer with the same address: their own rows stay theirs.
    assert!(
        results.lines().all(|row| !row.starts_with("P1 ")
            && (row.starts_with("P6 ") || !row.to_lowercase().contains("ada@"))),
        "{results}"
    );
    let rejections = stored_text(&w.app, "SELECT rejections FROM profile_imports").await;
    assert!(!rejections.contains("\"P1\""), "{rejections}");
    let ledger = stored_text(
        &w.app,
        "SELECT email_hash || ' ' || customer_id || ' ' || email || ' ' || status || ' ' || \
         COALESCE(permanent_skip, '') FROM export_ledger",
    )
    .await;
    assert!(
        !ledger.to_lowercase().contains("ada@northwind.io"),
        "{ledger}"
    );
    assert!(
        ledger.contains(&format!(
            "{}   forgotten Forgotten on request",
            subscriber_hash("ada@northwind.io")
        )),
        "only the hash is kept: {ledger}"
    );
    let members_after: i64 = sqlx::query_scalar("SELECT member_count FROM segments WHERE id = $1")
        .bind(germany)
        .fetch_one(pool)
        .await
        .unwrap();
    assert_eq!(members_after, members_before - 1);
    let listed_ids: Vec<String> =
        sqlx::query_scalar("SELECT customer_id FROM segment_static_ids WHERE segment_id = $1")
            .bind(listed)
            .fetch_all(pool)
            .await
            .unwrap();
    assert_eq!(listed_ids, ["P2"], "she leaves the lists that named her");
    let audit = stored_text(
        &w.app,
        "SELECT action || ' ' || user_email || ' ' || subject || ' ' || details FROM audit_log",
    )
    .await;
    assert!(
        audit.contains("forget dpo@example.com a customer"),
        "{audit}"
    );
    assert!(
        !audit.to_lowercase().contains("ada@northwind.io"),
        "{audit}"
    );

    // The same address comes back in a later import: it is not sent, and Mailchimp is not
    // even asked (it would refuse it anyway).
    import(
        &w.app,
        "CustomerId,FirstName,Email,Country\nP1,Ada,ada@northwind.io,Germany\n",
    )
    .await;
    refresh(&w.app).await;
    let before = routes(&w);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert_eq!(
        run.repair_missing, None,
        "the deletion is not taken for drift"
    );
    // P6 (who shares the address, and now comes first) is kept out as forgotten, and the
    // new P1 as its repeat: neither is sent.
    let outcomes: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT customer_id, outcome, title FROM export_results WHERE run_id = $1 \
         AND customer_id IN ('P1', 'P6') ORDER BY customer_id",
    )
    .bind(run.id)
    .fetch_all(pool)
    .await
    .unwrap();
    let row = |c: &str, o: &str, t: &str| (c.to_owned(), o.to_owned(), t.to_owned());
    assert_eq!(
        outcomes,
        vec![
            row("P1", "skipped", "Repeated email address"),
            row("P6", "skipped", "Forgotten on request"),
        ]
    );
    assert_eq!(run.counters.failed, 0);
    assert!(
        !calls_since(&w, &before)
            .keys()
            .any(|route| route.starts_with("POST")),
        "nothing was sent: {:?}",
        calls_since(&w, &before)
    );
}

#[tokio::test]
async fn a_deletion_mailchimp_does_not_take_is_made_by_the_next_run() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    let admin = token(&w.app, "dpo@example.com", Role::Administrator).await;
    let contributor = token(&w.app, "c@example.com", Role::Contributor).await;
    let (status, _) = call(
        &w.app,
        reqwest::Method::POST,
        "/api/v1/profiles/P3/forget",
        Some(&contributor),
        None,
    )
    .await;
    assert_eq!(status, 403, "only administrators forget");
    assert!(in_audience(&w, "zoe@northwind.io"));

    // Mailchimp refuses the credential for a while.
    let key = w.key.clone();
    let account = w.sandbox.store().api_keys.remove(&key).unwrap();
    let (status, body) = call(
        &w.app,
        reqwest::Method::POST,
        "/api/v1/profiles/P3/forget",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["customer_id"], "P3");
    let erasure = &body["erasures"][0];
    assert_eq!(erasure["destination"], "Newsletter");
    assert_eq!(erasure["outcome"], "pending", "{body}");
    assert!(
        erasure["detail"]
            .as_str()
            .unwrap()
            .contains("the destination's next run makes it"),
        "{body}"
    );
    assert!(in_audience(&w, "zoe@northwind.io"), "not yet");
    let (status, _) = call(
        &w.app,
        reqwest::Method::POST,
        "/api/v1/profiles/P3/forget",
        Some(&admin),
        None,
    )
    .await;
    assert_eq!(status, 404, "the profile is already gone");

    // The credential works again: the next run deletes the member first.
    w.sandbox.store().api_keys.insert(key, account);
    let run = export(&w, id, false).await;
    assert_eq!(run.status, RunStatus::Successful, "{:?}", run.message);
    assert!(!in_audience(&w, "zoe@northwind.io"));
    assert!(erased_in_audience(&w, "zoe@northwind.io"));
    let pending: i64 =
        sqlx::query_scalar("SELECT COUNT(*) FROM export_ledger WHERE erase_pending = 1")
            .fetch_one(w.app.state.db.pool())
            .await
            .unwrap();
    assert_eq!(pending, 0);
    assert_eq!(run.repair_missing, None);
}

#[tokio::test]
async fn the_command_line_forgets_a_customer_as_the_page_does() {
    let w = world_with(SandboxConfig::default(), |s| s.secret_key = None).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    w.app
        .create_user("dpo@example.com", Role::Administrator)
        .await;
    w.app.create_user("ed@example.com", Role::Contributor).await;
    let settings = &w.app.state.settings;
    let forget = |customer: &str, by: &str| {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_export-destinations"))
            .args(["forget", customer, "--by", by, "--data-dir"])
            .arg(&settings.data_dir)
            .args(["--database-url", settings.database_url.as_str()])
            .env_remove("SECRET_KEY")
            .output()
    };
    let refused = forget("P1", "ed@example.com").await.unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("only an administrator may forget a customer")
    );
    assert!(in_audience(&w, "ada@northwind.io"));
    let output = forget("P1", "dpo@example.com").await.unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("Forgot customer P1"), "{stdout}");
    assert!(
        stdout.contains("Newsletter: Deleted for good in Mailchimp."),
        "{stdout}"
    );
    assert!(erased_in_audience(&w, "ada@northwind.io"));
    let unknown = forget("P404", "dpo@example.com").await.unwrap();
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr)
            .contains("there is no profile with customer ID \"P404\"")
    );
}

#[tokio::test]
async fn requests_to_forget_one_customer_at_once_forget_them_once() {
    let w = world(SandboxConfig::default()).await;
    import(&w.app, PEOPLE).await;
    let germany = segment(&w.app, "Germany", "Country", "Germany").await;
    refresh(&w.app).await;
    let id = destination(&w, &[germany], "subscribed").await;
    export(&w, id, false).await;
    let admin = token(&w.app, "dpo@example.com", Role::Administrator).await;
    let answers = futures::future::join_all((0..6).map(|_| {
        call(
            &w.app,
            reqwest::Method::POST,
            "/api/v1/profiles/P1/forget",
            Some(&admin),
            None,
        )
    }))
    .await;
    let mut statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 404, 404, 404, 404, 404], "{answers:?}");
    let forgotten = answers.iter().find(|(status, _)| *status == 200).unwrap();
    assert_eq!(forgotten.1["erasures"][0]["outcome"], "deleted");
    assert!(erased_in_audience(&w, "ada@northwind.io"));
    let audited: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = 'forget'")
        .fetch_one(w.app.state.db.pool())
        .await
        .unwrap();
    assert_eq!(audited, 1);
}
