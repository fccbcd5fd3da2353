//! Crash safety, proven: a console process is killed with SIGKILL in the middle of a
//! 100,000-member export against a sandbox process, started again, and the run finishes with
//! the audience exactly right; no batch the console had acknowledged is sent again.

use std::process::Stdio;
use std::time::Duration;

use export_destinations::config::DbArgs;
use export_destinations::domain::Role;
use export_destinations::store::{api_tokens, users};
use rand::Rng;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::helpers::{poll_until, wait_until};

const MEMBERS: usize = 100_000;
const KEY: &str = "0123456789abcdef0123456789abcdef-us1";

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn binary() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_export-destinations"));
    command
        .kill_on_drop(true)
        .env_remove("DATABASE_URL")
        .env_remove("SECRET_KEY");
    command
}

async fn start_console(dir: &std::path::Path, port: u16, sandbox: &str) -> Child {
    let child = binary()
        .args(["--bind-addr", &format!("127.0.0.1:{port}"), "--data-dir"])
        .arg(dir)
        .env("MAILCHIMP_CLIENT_ID", "app")
        .env("MAILCHIMP_CLIENT_SECRET", "secret")
        .env("MAILCHIMP_OAUTH_BASE_URL", sandbox)
        .env("MAILCHIMP_API_BASE_URL", sandbox)
        .env("DEMO_DATA", "false")
        .env("EXPORT_LEASE_SECONDS", "3")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let ready = format!("http://127.0.0.1:{port}/readyz");
    wait_until("the console to start", Duration::from_secs(30), || async {
        let answer = reqwest::get(&ready).await.ok()?;
        (answer.status() == 200).then_some(())
    })
    .await;
    child
}

#[tokio::test]
#[ignore = "slow (two processes, 100,000 members): bash .ci/run runs it"]
async fn a_console_killed_mid_export_resumes_and_the_audience_ends_exactly_right() {
    let dir = tempfile::tempdir().unwrap();
    // The sandbox process, with some latency so that the export takes a while.
    let sandbox_port = free_port();
    let sandbox_url = format!("http://127.0.0.1:{sandbox_port}");
    let mut sandbox = binary()
        .args([
            "sandbox",
            "--bind",
            &format!("127.0.0.1:{sandbox_port}"),
            "--api-key",
            KEY,
            // About 250 ms a batch of 500: with tags in the batch, the export makes ~200
            // calls, some five seconds of work, so the kill lands while it is processing.
            "--latency-ms",
            "150",
            "--per-member-us",
            "200",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(sandbox.stdout.take().unwrap()).lines();
    let mut audience = String::new();
    while let Some(line) = lines.next_line().await.unwrap() {
        if let Some(id) = line.strip_prefix("Audience \"Newsletter subscribers\": ") {
            audience = id.trim().to_owned();
            break;
        }
    }
    assert!(!audience.is_empty(), "the sandbox printed its audiences");

    // Profiles and two segments, through the library on the console's own database.
    let csv = dir.path().join("people.csv");
    let mut text = String::from("CustomerId,FirstName,Email,Country\n");
    for i in 0..MEMBERS {
        text.push_str(&format!(
            "C{i},N{i},p{i}@northwind.io,{}\n",
            if i % 2 == 0 { "Germany" } else { "France" }
        ));
    }
    std::fs::write(&csv, text).unwrap();
    let db = DbArgs {
        database_url: None,
        data_dir: dir.path().to_path_buf(),
    }
    .connect()
    .await
    .unwrap();
    export_destinations::profiles::import_file(
        &db,
        &csv,
        "people.csv",
        Default::default(),
        None,
        &|_, _| {},
    )
    .await
    .unwrap();
    let mut ids = Vec::new();
    for country in ["Germany", "France"] {
        ids.push(crate::helpers::equals_segment(&db, country, "Country", country).await);
    }
    export_destinations::segments::refresh(&db, None)
        .await
        .unwrap();
    let hasher =
        export_destinations::auth::PasswordHasher::new(export_destinations::config::HashCost {
            memory_kib: 64,
            iterations: 1,
        })
        .unwrap();
    let hash = hasher
        .hash(
            &export_destinations::domain::NewPassword::parse("correct horse battery".into())
                .unwrap(),
        )
        .await
        .unwrap();
    let email = export_destinations::domain::EmailAddress::parse("ops@example.com").unwrap();
    let name = export_destinations::domain::PersonName::parse("Ops").unwrap();
    let admin = users::insert(
        db.pool(),
        users::NewUser {
            email: &email,
            name: &name,
            role: Role::Administrator,
            password_hash: &hash,
        },
    )
    .await
    .unwrap();
    let token = api_tokens::create(db.pool(), admin, "crash test")
        .await
        .unwrap();
    db.pool().close().await;

    // A console process; the export set up and started through the API.
    let port = free_port();
    let mut console = start_console(dir.path(), port, &sandbox_url).await;
    let api = |path: &str| format!("http://127.0.0.1:{port}/api/v1{path}");
    let http = reqwest::Client::new();
    let created: Value = http
        .post(api("/destinations"))
        .bearer_auth(&token)
        .json(&json!({ "display_name": "Crash", "consent": true, "audience_id": audience, "api_key": KEY,
                       "email_field": "Email", "merge_fields": [{ "tag": "FNAME", "field": "FirstName" }], "segment_ids": ids }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let destination = created["id"]
        .as_i64()
        .unwrap_or_else(|| panic!("{created}"));
    let run: Value = http
        .post(api(&format!("/destinations/{destination}/runs")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let run_id = run["id"].as_i64().unwrap();

    // Kill it at a random point once members are being sent.
    let run_now = || async {
        let answer = http
            .get(api(&format!("/runs/{run_id}")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        answer.json::<Value>().await.unwrap()
    };
    let sending = poll_until(Duration::from_secs(120), || async {
        let run = run_now().await;
        (run["counts"]["sent"].as_i64().unwrap_or(0) > 0).then_some(())
    })
    .await;
    assert!(
        sending.is_some(),
        "the export never started: {}",
        run_now().await
    );
    let delay = rand::thread_rng().gen_range(0..1500);
    println!("killing the console {delay} ms after the first acknowledged batch");
    tokio::time::sleep(Duration::from_millis(delay)).await;
    console.start_kill().unwrap();
    console.wait().await.unwrap();
    let before: Value = {
        let db = DbArgs {
            database_url: None,
            data_dir: dir.path().to_path_buf(),
        }
        .connect()
        .await
        .unwrap();
        let run = export_destinations::store::runs::find(db.pool(), run_id)
            .await
            .unwrap()
            .unwrap();
        db.pool().close().await;
        json!({ "status": run.status.label(), "sent": run.counters.sent })
    };
    println!("at the kill: {before}");
    assert_eq!(
        before["status"], "Processing",
        "the kill landed while the run was processing: {before}"
    );
    let sent_at_kill = before["sent"].as_i64().unwrap();
    assert!(
        sent_at_kill > 0 && sent_at_kill < MEMBERS as i64,
        "part way through: {before}"
    );

    // Started again, a worker takes the run over once the dead one's lease expires.
    let mut console = start_console(dir.path(), port, &sandbox_url).await;
    let finished = poll_until(Duration::from_secs(600), || async {
        let run = run_now().await;
        run["finished_at"].is_number().then_some(run)
    })
    .await
    .unwrap_or_else(|| panic!("the run never finished"));
    assert_eq!(finished["status"], "Successful", "{finished}");

    // The audience is exactly right, and Mailchimp saw acknowledged batches once.
    let view: Value = http
        .get(format!(
            "{sandbox_url}/inspect/lists/{audience}/members.json"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let members = view["members"].as_array().unwrap();
    assert_eq!(members.len(), MEMBERS);
    let mut resent = 0;
    for member in members {
        let email = member["email_address"].as_str().unwrap();
        let i: usize = email
            .trim_start_matches('p')
            .split('@')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let country = if i % 2 == 0 { "Germany" } else { "France" };
        let mut tags: Vec<&str> = member["tags"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(Value::as_str)
            .collect();
        tags.sort();
        let mut expected = vec![country, "export-destinations"];
        expected.sort();
        assert_eq!(tags, expected, "{email}");
        assert_eq!(member["status"], "subscribed");
        assert_eq!(member["merge_fields"]["FNAME"], format!("N{i}"));
        if member["writes"].as_u64().unwrap() > 1 {
            resent += 1;
        }
    }
    // Only batches in flight at the kill (never acknowledged) may have been sent again.
    assert!(resent <= 10 * 500, "{resent} members were sent twice");
    println!("members sent twice (in flight at the kill): {resent}");
    console.start_kill().unwrap();
    sandbox.start_kill().unwrap();
}
