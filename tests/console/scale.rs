//! Exports side by side: a console runs several runs at once, destinations on one Mailchimp
//! account share its 10 connections fairly, and on PostgreSQL several console processes share
//! each account's connections (and survive one of them being killed).

use std::process::Stdio;
use std::time::Duration;

use export_destinations::crypto::SecretKey;
use export_destinations::db::Db;
use export_destinations::domain::{EmailAddress, NewPassword, PersonName, Role};
use export_destinations::sandbox::standalone::RunningSandbox;
use export_destinations::sandbox::{Sandbox, SandboxConfig};
use export_destinations::store::runs::{self, Run, RunStatus};
use export_destinations::store::{api_tokens, users};
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::helpers::{
    Target, equals_segment, fresh_database_url, import_csv, saved_destination, spawn_app_with,
    wait_until,
};

/// Profiles: `gold` of them in segment Gold, the rest in Silver.
fn people(total: usize, gold: usize) -> String {
    let mut csv = String::from("CustomerId,FirstName,Email,Tier\n");
    for i in 0..total {
        let tier = if i < gold { "Gold" } else { "Silver" };
        csv.push_str(&format!("C{i},N{i},p{i}@northwind.io,{tier}\n"));
    }
    csv
}

/// A sandbox on its own port with a second company beside the default one, an audience more
/// on the default account, and an audience on the second: (sandbox, base URL, audiences
/// as (account key, audience id)).
async fn two_accounts(config: SandboxConfig) -> (Sandbox, String, Vec<(String, String)>) {
    let running = RunningSandbox::bind(config, "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let sandbox = running.sandbox.clone();
    let base = format!("http://{}", running.addr);
    tokio::spawn(running.serve(std::future::pending()));
    let audiences = {
        let mut store = sandbox.store();
        let (key_a, account_a) = store
            .api_keys
            .iter()
            .next()
            .map(|(k, a)| (k.clone(), a.clone()))
            .unwrap();
        let first = store
            .audiences
            .values()
            .find(|a| a.name == "Newsletter subscribers")
            .unwrap()
            .id
            .clone();
        let now = "2026-12-02T00:00:00+00:00";
        let second = store.create_audience(&account_a, "Loyalty", now);
        let account_b = store.add_account("Another Company");
        let key_b = store.issue_api_key(&account_b);
        let third = store.create_audience(&account_b, "Another newsletter", now);
        vec![(key_a.clone(), first), (key_a, second), (key_b, third)]
    };
    (sandbox, base, audiences)
}

async fn tiered_segments(db: &Db) -> (i64, i64) {
    let gold = equals_segment(db, "Gold", "Tier", "Gold").await;
    let silver = equals_segment(db, "Silver", "Tier", "Silver").await;
    export_destinations::segments::refresh(db, None)
        .await
        .unwrap();
    (gold, silver)
}

/// A saved destination on `audience`, reached with `key`.
async fn destination(
    db: &Db,
    secret: &SecretKey,
    owner: i64,
    api_base: &str,
    (key, audience): &(String, String),
    segment_ids: &[i64],
) -> i64 {
    let target = Target {
        api_base,
        key,
        audience,
        audience_name: audience,
    };
    let name = format!("To {audience}");
    saved_destination(db, secret, owner, &name, target, segment_ids, "subscribed").await
}

async fn finished(db: &Db, id: i64, within: Duration) -> Run {
    crate::helpers::wait_until(&format!("run {id} to end"), within, || async {
        runs::find(db.pool(), id)
            .await
            .unwrap()
            .filter(|run| run.status.is_finished())
    })
    .await
}

/// Every member of the audience, with exactly the expected tags and first name: members
/// `0..count` carry `tags(i)`.
fn assert_audience(
    sandbox: &Sandbox,
    audience: &str,
    count: usize,
    tags: impl Fn(usize) -> Vec<&'static str>,
) {
    let store = sandbox.store();
    let list = &store.audiences[audience];
    assert_eq!(list.members.len(), count, "members of {audience}");
    for member in list.members.values() {
        let i: usize = member
            .email_address
            .trim_start_matches('p')
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let mut have: Vec<String> = list.tag_names(member).into_iter().map(|(_, n)| n).collect();
        have.sort();
        let mut want: Vec<&str> = tags(i);
        want.push("export-destinations");
        want.sort();
        assert_eq!(have, want, "{} in {audience}", member.email_address);
        assert_eq!(member.merge_fields["FNAME"], format!("N{i}"));
        assert_eq!(member.status.as_str(), "subscribed");
    }
}

fn tier(i: usize, gold: usize) -> Vec<&'static str> {
    vec![if i < gold { "Gold" } else { "Silver" }]
}

/// Mailchimp's limit with some latency, so that runs take long enough to overlap.
fn slow_sandbox(latency_ms: u64, per_member_us: u64) -> SandboxConfig {
    SandboxConfig {
        max_connections: 10,
        latency: Duration::from_millis(latency_ms),
        per_member: Duration::from_micros(per_member_us),
        ..SandboxConfig::default()
    }
}

#[tokio::test]
async fn export_all_runs_destinations_side_by_side_and_one_account_is_shared_fairly() {
    const TOTAL: usize = 16_000;
    const GOLD: usize = 500;
    let (sandbox, base, audiences) = two_accounts(slow_sandbox(150, 300)).await;
    let app = spawn_app_with(|s| s.export_workers = 4).await;
    let db = app.state.db.clone();
    import_csv(&db, &people(TOTAL, GOLD)).await;
    let (gold, silver) = tiered_segments(&db).await;
    let owner = app
        .create_user("owner@example.com", Role::Administrator)
        .await;
    let secret = app.state.secret_key.clone();
    // A large run and a small one on one account, and one on another account.
    let large = destination(&db, &secret, owner, &base, &audiences[0], &[gold, silver]).await;
    let small = destination(&db, &secret, owner, &base, &audiences[1], &[gold]).await;
    let other = destination(&db, &secret, owner, &base, &audiences[2], &[gold, silver]).await;

    app.signed_in_as("contributor@example.com", Role::Contributor)
        .await;
    let response = app
        .post_form(
            "/admin/export-destinations",
            "/admin/export-destinations/export-all",
            &[],
        )
        .await;
    assert_eq!(response.status(), 303);
    let mut done = Vec::new();
    for id in [large, small, other] {
        let run = runs::for_destination(db.pool(), id, 1)
            .await
            .unwrap()
            .remove(0);
        done.push(finished(&db, run.id, Duration::from_secs(120)).await);
    }
    for run in &done {
        assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    }
    let (large, small, other) = (&done[0], &done[1], &done[2]);
    // Side by side: the other account's run started before the large one ended.
    assert!(
        other.started_at.unwrap() < large.finished_at.unwrap()
            && large.started_at.unwrap() < other.finished_at.unwrap(),
        "runs on two accounts overlap: {large:?} {other:?}"
    );
    // Fair: the small run, queued after the large one on the same account, was not kept
    // waiting for it.
    assert!(
        small.finished_at.unwrap() < large.finished_at.unwrap(),
        "the small run ended before the large one: {small:?} {large:?}"
    );
    let stats = sandbox.stats();
    assert_eq!(stats.rejected_429, 0, "{stats:?}");
    assert!(stats.peak_in_flight <= 10, "{stats:?}");
    assert_audience(&sandbox, &audiences[0].1, TOTAL, |i| tier(i, GOLD));
    assert_audience(&sandbox, &audiences[1].1, GOLD, |i| tier(i, GOLD));
    assert_audience(&sandbox, &audiences[2].1, TOTAL, |i| tier(i, GOLD));
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_export-destinations"));
    command
        .kill_on_drop(true)
        .env_remove("DATABASE_URL")
        .env_remove("SECRET_KEY");
    command
}

async fn start_console(dir: &std::path::Path, database: &str, secret: &str) -> (Child, String) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = binary()
        .args(["--bind-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("DATABASE_URL", database)
        .env("SECRET_KEY", secret)
        .env("DEMO_DATA", "false")
        .env("EXPORT_LEASE_SECONDS", "3")
        .env("EXPORT_WORKERS", "1")
        .env("PASSWORD_HASH_MEMORY_KIB", "64")
        .env("PASSWORD_HASH_ITERATIONS", "1")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let ready = format!("{base}/readyz");
    crate::helpers::wait_until("the console to start", Duration::from_secs(30), || async {
        reqwest::get(&ready)
            .await
            .is_ok_and(|r| r.status() == 200)
            .then_some(())
    })
    .await;
    (child, base)
}

#[tokio::test]
async fn two_consoles_on_one_postgres_share_each_accounts_connections_and_survive_a_kill() {
    if std::env::var_os("TEST_DATABASE_URL").is_none() {
        eprintln!("several consoles share one database on PostgreSQL: set TEST_DATABASE_URL");
        return;
    }
    const TOTAL: usize = 30_000;
    const GOLD: usize = 10_000;
    let (sandbox, base, audiences) = two_accounts(slow_sandbox(400, 400)).await;
    let dir = tempfile::tempdir().unwrap();
    let url = fresh_database_url(dir.path()).await;
    let db = Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let raw_secret = hex::encode(rand::random::<[u8; 32]>());
    let secret = SecretKey::parse(&raw_secret).unwrap();
    import_csv(&db, &people(TOTAL, GOLD)).await;
    let (gold, silver) = tiered_segments(&db).await;
    let hasher =
        export_destinations::auth::PasswordHasher::new(export_destinations::config::HashCost {
            memory_kib: 64,
            iterations: 1,
        })
        .unwrap();
    let hash = hasher
        .hash(&NewPassword::parse("correct horse battery".into()).unwrap())
        .await
        .unwrap();
    let owner = users::insert(
        db.pool(),
        users::NewUser {
            email: &EmailAddress::parse("ops@example.com").unwrap(),
            name: &PersonName::parse("Ops").unwrap(),
            role: Role::Administrator,
            password_hash: &hash,
        },
    )
    .await
    .unwrap();
    let token = api_tokens::create(db.pool(), owner, "scale test")
        .await
        .unwrap();
    let large = destination(&db, &secret, owner, &base, &audiences[0], &[gold, silver]).await;
    let shared = destination(&db, &secret, owner, &base, &audiences[1], &[gold]).await;
    let other = destination(&db, &secret, owner, &base, &audiences[2], &[gold]).await;
    let http = reqwest::Client::new();
    let start = |console: &str, id: i64| {
        let request = http
            .post(format!("{console}/api/v1/destinations/{id}/runs"))
            .bearer_auth(&token);
        async move {
            let run: Value = request.send().await.unwrap().json().await.unwrap();
            run["id"].as_i64().unwrap_or_else(|| panic!("{run}"))
        }
    };
    let sent = |id: i64| {
        let pool = db.pool().clone();
        async move { runs::find(&pool, id).await.unwrap().unwrap().counters.sent }
    };
    let wait_sent = |id: i64| async move {
        wait_until(
            &format!("run {id} to send"),
            Duration::from_secs(60),
            || async { (sent(id).await > 0).then_some(()) },
        )
        .await;
    };

    // Console one (one run at a time) takes the large run.
    let (mut one, one_url) = start_console(dir.path(), url.as_str(), &raw_secret).await;
    let large_run = start(&one_url, large).await;
    wait_sent(large_run).await;
    // Console two takes the next run on the same account, while console one still works:
    // two processes now call one account.
    let (mut two, two_url) = start_console(dir.path(), url.as_str(), &raw_secret).await;
    let shared_run = start(&two_url, shared).await;
    let other_run = start(&two_url, other).await;
    wait_sent(shared_run).await;
    let at_kill = runs::find(db.pool(), large_run).await.unwrap().unwrap();
    assert_eq!(
        at_kill.status,
        RunStatus::Processing,
        "both consoles were exporting to one account when console one was killed: {at_kill:?} {:?}",
        runs::find(db.pool(), shared_run).await.unwrap()
    );
    one.start_kill().unwrap();
    one.wait().await.unwrap();

    // Console two finishes its run, resumes the dead console's, and runs the last.
    for id in [shared_run, large_run, other_run] {
        let run = finished(&db, id, Duration::from_secs(180)).await;
        assert_eq!(run.status, RunStatus::Successful, "{run:?}");
    }
    let stats = sandbox.stats();
    assert_eq!(stats.rejected_429, 0, "no 429 with two consoles: {stats:?}");
    assert!(
        stats.peak_in_flight <= 10,
        "at most 10 calls in flight on one account: {stats:?}"
    );
    assert_audience(&sandbox, &audiences[0].1, TOTAL, |i| tier(i, GOLD));
    assert_audience(&sandbox, &audiences[1].1, GOLD, |i| tier(i, GOLD));
    assert_audience(&sandbox, &audiences[2].1, GOLD, |i| tier(i, GOLD));
    two.start_kill().unwrap();
}
