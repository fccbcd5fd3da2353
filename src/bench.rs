//! `export-destinations bench data`: import and refresh at scale, on a fresh database,
//! with the figures BENCHMARKS.md records.

use std::path::Path;
use std::time::Instant;

use crate::cli::BenchDataArgs;
use crate::profiles::{ImportOptions, demo, import_file};
use crate::segments::{RefreshOutcome, refresh};
use crate::store::profiles::{self, Cursor};
use crate::store::segments::{self, Definition};

mod export;
mod live;
mod scale;
mod sources;
pub use export::export;
pub use live::live;
pub use scale::scale;
pub use sources::sources;

/// The modelled sandbox's API key.
pub(crate) const KEY: &str = "0123456789abcdef0123456789abcdef-us1";

/// A sandbox process with Mailchimp's limits (10 connections) and a modelled time per call
/// and per member; it stops with this value.
pub(crate) struct ModelledSandbox {
    _process: tokio::process::Child,
    pub base: String,
    pub audience: String,
}

impl ModelledSandbox {
    pub(crate) async fn start(latency_ms: u64, per_member_us: u64) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let base = format!("http://127.0.0.1:{port}");
        let mut process = tokio::process::Command::new(std::env::current_exe()?)
            .args(["sandbox", "--bind", &format!("127.0.0.1:{port}")])
            .args(["--api-key", KEY, "--max-connections", "10"])
            .args(["--latency-ms", &latency_ms.to_string()])
            .args(["--per-member-us", &per_member_us.to_string()])
            .env("RUST_LOG", "warn")
            .kill_on_drop(true)
            .stdout(std::process::Stdio::piped())
            .spawn()?;
        let stdout = process.stdout.take().expect("piped");
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut audience = String::new();
        while let Some(line) = lines.next_line().await? {
            if let Some(id) = line.strip_prefix("Audience \"Newsletter subscribers\": ") {
                audience = id.trim().to_owned();
                break;
            }
        }
        anyhow::ensure!(!audience.is_empty(), "the sandbox did not start");
        Ok(Self {
            _process: process,
            base,
            audience,
        })
    }

    /// The sandbox's counters: calls, calls by route, modelled busy time, 429s.
    pub(crate) async fn stats(&self, http: &reqwest::Client) -> anyhow::Result<serde_json::Value> {
        let url = format!("{}/inspect/stats.json", self.base);
        Ok(http.get(url).send().await?.json().await?)
    }
}

impl crate::cli::ModelledBench {
    /// Its sandbox process.
    pub(crate) async fn sandbox(&self) -> anyhow::Result<ModelledSandbox> {
        ModelledSandbox::start(self.mailchimp.latency_ms, self.mailchimp.per_member_us).await
    }

    /// Its demo profiles, prepared by another process (so that this one's memory is the
    /// console's).
    pub(crate) async fn prepare(&self, dir: &Path) -> anyhow::Result<()> {
        prepare_demo_profiles(dir, self.profiles, self.segments, &self.database_url).await
    }
}

/// Peak resident memory of this process so far, in MiB (Linux; None elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    rss_mib("VmHWM:")
}

/// A line of this process's memory status (`VmHWM:` peak, `VmRSS:` now), in MiB.
fn rss_mib(key: &str) -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn mib(value: Option<f64>) -> String {
    value.map_or("n/a".into(), |v| format!("{v:.0} MiB"))
}

pub async fn data(args: BenchDataArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let db_args = crate::config::DbArgs {
        database_url: args.database_url.clone(),
        data_dir: dir.path().to_path_buf(),
    };
    let db = db_args.connect().await?;
    if profiles::count(db.pool()).await? > 0 {
        anyhow::bail!("the benchmark needs an empty database");
    }
    println!(
        "bench data: {} profiles, {} segments, backend {:?}",
        args.profiles,
        args.segments,
        db.backend()
    );

    let csv = dir.path().join("profiles.csv");
    let started = Instant::now();
    demo::write_csv(&csv, args.profiles, args.seed)?;
    let size = std::fs::metadata(&csv)?.len();
    println!(
        "generated CSV: {:.1} MiB in {:.1} s",
        size as f64 / 1048576.0,
        started.elapsed().as_secs_f64()
    );
    let before_import = peak_rss_mib();

    let started = Instant::now();
    let outcome = import_file(
        &db,
        &csv,
        "bench.csv",
        ImportOptions::default(),
        None,
        &|_, _| {},
    )
    .await?;
    let seconds = started.elapsed().as_secs_f64();
    if let Some(error) = &outcome.totals.error {
        anyhow::bail!("the import failed: {error}");
    }
    println!(
        "import: {} rows in {:.2} s = {:.0} rows/s ({} created, {} rejected)",
        outcome.totals.counts.rows_read,
        seconds,
        outcome.totals.counts.rows_read as f64 / seconds,
        outcome.totals.counts.created,
        outcome.totals.counts.rejected
    );
    println!(
        "import memory: peak RSS {} before the import, {} after ({:.1} MiB file)",
        mib(before_import),
        mib(peak_rss_mib()),
        size as f64 / 1048576.0
    );

    for (name, rules) in demo::segment_definitions()
        .into_iter()
        .take(args.segments as usize)
    {
        segments::create(db.pool(), name, &Definition::Rules(rules)).await?;
    }
    let started = Instant::now();
    let report = refresh(&db, None).await?;
    println!(
        "refresh: {} segments over {} profiles in {:.2} s (peak RSS {})",
        report.segments.len(),
        report.profiles_scanned,
        started.elapsed().as_secs_f64(),
        mib(peak_rss_mib())
    );
    for (name, outcome) in &report.segments {
        if let RefreshOutcome::Refreshed { members, .. } = outcome {
            println!("  {members:>9}  {name}");
        }
    }
    let started = Instant::now();
    refresh(&db, None).await?;
    println!(
        "refresh again, no member changed (nothing written): {:.2} s",
        started.elapsed().as_secs_f64()
    );
    // Without the published digests every membership is written again, as after a change.
    sqlx::query("UPDATE segments SET members_digest = ''")
        .execute(db.pool())
        .await?;
    let started = Instant::now();
    refresh(&db, None).await?;
    println!(
        "refresh again, replacing every membership: {:.2} s",
        started.elapsed().as_secs_f64()
    );

    page_timings(&db).await?;
    follow_timings(&db, args.profiles).await?;
    drop(db);
    cleanup(dir.path());
    Ok(())
}

/// Segments following writes, through the profile API's write path: one changed profile
/// at a time (the median of 21), then 10,000 changed profiles in one write; then whether
/// the counts the segments followed to are a refresh's.
async fn follow_timings(db: &crate::db::Db, count: u64) -> anyhow::Result<()> {
    use crate::profiles::push::{Pushed, push};
    let changed = |i: u64, step: u64| Pushed {
        customer_id: format!("C{:07}", (i * step) % count.max(1)),
        values: vec![
            (
                "NewsletterOptIn".into(),
                if i % 2 == 0 { "true" } else { "false" }.into(),
            ),
            ("Age".into(), (18 + i % 60).to_string()),
        ],
    };
    let mut times = Vec::new();
    for i in 0..21 {
        let row = changed(i, 7_919);
        let started = Instant::now();
        push(db, std::slice::from_ref(&row)).await?;
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "one changed profile written, its segments followed: median {:.2} ms (of 21; slowest {:.2} ms)",
        times[10], times[20]
    );
    let many = 10_000.min(count);
    let rows: Vec<Pushed> = (0..many)
        .map(|i| changed(i + 1, (count / many.max(1)).max(1)))
        .collect();
    let started = Instant::now();
    push(db, &rows).await?;
    println!(
        "{many} changed profiles in one write, their segments followed: {:.2} s",
        started.elapsed().as_secs_f64()
    );
    let followed: Vec<(String, i64)> = segments::list(db.pool())
        .await?
        .into_iter()
        .map(|s| (s.name, s.member_count))
        .collect();
    refresh(db, None).await?;
    let refreshed: Vec<(String, i64)> = segments::list(db.pool())
        .await?
        .into_iter()
        .map(|s| (s.name, s.member_count))
        .collect();
    println!(
        "member counts followed = a refresh's: {}",
        if followed == refreshed {
            "yes".to_string()
        } else {
            format!("NO: {followed:?} / {refreshed:?}")
        }
    );
    Ok(())
}

/// Median time of the queries behind the profile and segment pages.
async fn page_timings(db: &crate::db::Db) -> anyhow::Result<()> {
    let pool = db.pool();
    let count = profiles::count(pool).await?;
    let last = profiles::page(pool, None, Cursor::Before(i64::MAX), 50).await?;
    let deep = last.first().map(|p| p.id).unwrap_or(0);
    let segment = segments::list(pool).await?.into_iter().next();
    let mut cases: Vec<(&str, Vec<f64>)> = Vec::new();
    for (label, run) in [
        ("profiles: first page", 0),
        ("profiles: last page", 1),
        ("profiles: search", 2),
        ("segment members page", 3),
        ("profiles: name search, a common first name", 4),
        ("profiles: name search, a name nobody has", 5),
    ] {
        let mut times = Vec::new();
        for _ in 0..21 {
            let started = Instant::now();
            match run {
                0 => drop(profiles::page(pool, None, Cursor::First, 51).await?),
                1 => drop(profiles::page(pool, None, Cursor::After(deep - 1), 51).await?),
                2 => drop(profiles::page(pool, Some("ada.lovelace1"), Cursor::First, 51).await?),
                4 | 5 => {
                    let start = if run == 4 { "Ada" } else { "Zzyzx" };
                    let name = profiles::NameSearch {
                        all_of: vec![("FirstName", start)],
                        or: Some(("LastName", start)),
                    };
                    drop(profiles::page_by_name(pool, &name, Cursor::First, 51).await?);
                }
                _ => {
                    if let Some(segment) = &segment {
                        drop(segments::members(pool, segment.id, 0, 51).await?);
                    }
                }
            }
            times.push(started.elapsed().as_secs_f64() * 1000.0);
        }
        times.sort_by(f64::total_cmp);
        cases.push((label, times));
    }
    println!("page queries over {count} profiles (median of 21):");
    for (label, times) in cases {
        println!("  {label}: {:.2} ms", times[times.len() / 2]);
    }
    Ok(())
}

fn cleanup(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

/// Signs in like a browser; returns the session cookie (`name=value`).
pub(crate) async fn sign_in(
    http: &reqwest::Client,
    base: &str,
    email: &str,
    password: &str,
) -> anyhow::Result<String> {
    fn cookie_of(response: &reqwest::Response) -> Option<String> {
        response
            .headers()
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find(|v| v.starts_with("export_destinations_session="))
            .and_then(|v| v.split(';').next())
            .map(str::to_owned)
    }
    let page = http.get(format!("{base}/sign-in")).send().await?;
    // The sign-in form's token goes with the cookie the page set.
    let cookie = page
        .headers()
        .get_all(reqwest::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .collect::<Vec<_>>()
        .join("; ");
    let html = page.text().await?;
    let marker = "name=\"csrf_token\" value=\"";
    let token = html
        .split(marker)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .ok_or_else(|| anyhow::anyhow!("the sign-in page has no CSRF token"))?;
    let answer = http
        .post(format!("{base}/sign-in"))
        .header(reqwest::header::COOKIE, &cookie)
        .form(&[
            ("email", email),
            ("password", password),
            ("csrf_token", token),
        ])
        .send()
        .await?;
    anyhow::ensure!(
        answer.status().is_redirection(),
        "signing in failed: {}",
        answer.status()
    );
    cookie_of(&answer).ok_or_else(|| anyhow::anyhow!("signing in set no session cookie"))
}

/// Demo profiles and segments written into the bench's database by another process, so
/// that this process's memory is the console's alone.
pub(crate) async fn prepare_demo_profiles(
    dir: &Path,
    profiles: u64,
    segments: u8,
    database_url: &Option<String>,
) -> anyhow::Result<()> {
    let prepared = tokio::process::Command::new(std::env::current_exe()?)
        .args(["demo-data", "--seed", "1", "--data-dir"])
        .arg(dir)
        .args(["--profiles", &profiles.to_string()])
        .args(["--segments", &segments.to_string()])
        .args(
            database_url
                .iter()
                .flat_map(|url| ["--database-url", url.as_str()]),
        )
        .env_remove("DATABASE_URL")
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    anyhow::ensure!(
        prepared.success(),
        "the demo profiles could not be prepared"
    );
    Ok(())
}

/// The settings of a bench's console: its database, an administrator to sign in as, the
/// real password-hash cost, no scheduler.
pub(crate) fn console_settings(
    dir: &Path,
    database_url: &Option<String>,
    key: &crate::crypto::SecretKey,
    password: &str,
    export_workers: usize,
) -> anyhow::Result<crate::config::Settings> {
    Ok(crate::config::Settings {
        database_url: crate::config::DbArgs {
            database_url: database_url.clone(),
            data_dir: dir.to_path_buf(),
        }
        .database_url()?,
        data_dir: dir.to_path_buf(),
        demo_data: false,
        scheduler: false,
        export_lease: std::time::Duration::from_secs(60),
        export_workers,
        sync_window: std::time::Duration::from_secs(2),
        bind_addr: "127.0.0.1:0".parse()?,
        public_url: None,
        secret_key: Some(key.clone()),
        admin: Some(crate::config::BootstrapAdmin {
            email: crate::domain::EmailAddress::parse("bench@example.com")
                .map_err(anyhow::Error::msg)?,
            password: crate::domain::NewPassword::parse(password.into())
                .map_err(anyhow::Error::msg)?,
        }),
        session_idle: std::time::Duration::from_secs(3600),
        sign_in_throttle: crate::config::SignInThrottle {
            max_failures: 10,
            account_max_failures: 100,
            lockout: std::time::Duration::from_secs(60),
        },
        hash_cost: crate::config::HashCost {
            memory_kib: 19 * 1024,
            iterations: 2,
        },
        mailchimp: Default::default(),
        metrics_token: None,
        metrics_bind_addr: None,
        alert_retry_delays: vec![std::time::Duration::from_secs(1); 3],
        source_statement_timeout: std::time::Duration::from_secs(300),
        mailchimp_webhooks: crate::config::WebhookSetting::Off,
    })
}

/// The bench's user and every segment's ID.
pub(crate) async fn owner_and_segments(db: &crate::db::Db) -> anyhow::Result<(i64, Vec<i64>)> {
    let owner: i64 = sqlx::query_scalar("SELECT id FROM users WHERE email = 'bench@example.com'")
        .fetch_one(db.pool())
        .await?;
    let segment_ids = segments::list(db.pool())
        .await?
        .into_iter()
        .map(|s| s.id)
        .collect();
    Ok((owner, segment_ids))
}

/// A saved destination reached by API key: `(api_base, api_key, audience)`.
pub(crate) async fn api_key_destination(
    db: &crate::db::Db,
    key: &crate::crypto::SecretKey,
    owner: i64,
    name: &str,
    (api_base, api_key, audience): (&str, &str, &str),
    segment_ids: &[i64],
    mappings: &[crate::store::destinations::FieldMapping],
) -> anyhow::Result<i64> {
    use crate::store::destinations::{self, Authentication, Configuration};
    let id = destinations::create_draft(
        db.pool(),
        name,
        audience,
        crate::domain::destination::Target::Mailchimp,
        owner,
        "bench",
    )
    .await?;
    let sealed = key.seal(api_key);
    let auth = Authentication {
        method: "api_key",
        credential_sealed: &sealed,
        api_base,
        account: "bench",
        audience_name: audience,
        audience_members: 0,
        by: owner,
    };
    destinations::set_authentication(db.pool(), id, &auth).await?;
    destinations::set_export_user(db.pool(), id, owner).await?;
    let config = Configuration {
        display_name: name,
        email_field: "EmailAddress",
        field_mappings: mappings,
        segment_ids,
        new_member_status: "subscribed",
        keep_in_sync: false,
    };
    let mut conn = db.pool().acquire().await?;
    destinations::save_configuration(&mut conn, id, &config).await?;
    Ok(id)
}
