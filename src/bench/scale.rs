//! `bench scale`: **Export all** over several destinations on several Mailchimp accounts,
//! against the modelled minimum of each account's work (the sum if runs went one after
//! another, the largest if accounts proceed side by side), with pages timed at many
//! concurrent clients while the exports run and while nothing runs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cli::BenchScaleArgs;
use crate::sandbox::SandboxConfig;
use crate::sandbox::standalone::RunningSandbox;
use crate::store::destinations::FieldMapping;
use crate::store::runs::{self, Run};

pub async fn scale(args: BenchScaleArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.accounts >= 1 && args.destinations >= args.accounts,
        "--destinations must be at least --accounts, and both at least 1"
    );
    anyhow::ensure!(args.consoles >= 1, "--consoles must be at least 1");
    anyhow::ensure!(
        args.consoles == 1
            || args
                .database_url
                .as_deref()
                .is_some_and(|url| url.starts_with("postgres")),
        "--consoles above 1 needs a PostgreSQL --database-url (consoles share a database)"
    );
    let latency = Duration::from_millis(args.mailchimp.latency_ms);
    let per_member = Duration::from_micros(args.mailchimp.per_member_us);
    let config = SandboxConfig {
        max_connections: 10,
        latency,
        per_member,
        ..SandboxConfig::default()
    };
    let running = RunningSandbox::bind(config, "127.0.0.1:0".parse()?, None).await?;
    let sandbox = running.sandbox.clone();
    let sandbox_base = format!("http://{}", running.addr);
    tokio::spawn(running.serve(std::future::pending()));
    // Destination i is on account i % accounts, each to an audience of its own.
    let plan: Vec<(String, String)> = {
        let mut store = sandbox.store();
        let (first_key, first_account) = store
            .api_keys
            .iter()
            .next()
            .map(|(k, a)| (k.clone(), a.clone()))
            .ok_or_else(|| anyhow::anyhow!("the sandbox has no API key"))?;
        let mut accounts = vec![(first_key, first_account)];
        for n in 1..args.accounts {
            let account = store.add_account(&format!("Company {}", n + 1));
            accounts.push((store.issue_api_key(&account), account));
        }
        (0..args.destinations)
            .map(|i| {
                let (key, account) = &accounts[i % args.accounts];
                let audience = store.create_audience(
                    account,
                    &format!("Audience {}", i + 1),
                    "2026-12-02T00:00:00+00:00",
                );
                (key.clone(), audience)
            })
            .collect()
    };
    println!(
        "bench scale: {} destinations on {} accounts, {} profiles in {} segments each; sandbox: 10 connections, {} ms per call + {} µs per member; {} console(s) of {} workers",
        args.destinations,
        args.accounts,
        args.profiles,
        args.segments,
        args.mailchimp.latency_ms,
        args.mailchimp.per_member_us,
        args.consoles,
        args.workers
    );

    let dir = tempfile::tempdir()?;
    crate::bench::prepare_demo_profiles(
        dir.path(),
        args.profiles,
        args.segments,
        &args.database_url,
    )
    .await?;

    let key = crate::crypto::SecretKey::generate();
    let password = "bench-password-1234";
    // Every console on the same database takes queued runs, and all of them share each
    // account's connections through the database; the first one serves the bench's calls.
    let mut first = None;
    for _ in 0..args.consoles.max(1) {
        let settings = crate::bench::console_settings(
            dir.path(),
            &args.database_url,
            &key,
            password,
            args.workers,
        )?;
        let console = crate::app::App::build(settings).await?;
        first.get_or_insert_with(|| {
            (
                format!("http://{}", console.local_addr()),
                console.state().db.clone(),
            )
        });
        tokio::spawn(console.run_until_stopped());
    }
    let (console_base, db) = first.ok_or_else(|| anyhow::anyhow!("no console started"))?;
    let (owner, segment_ids) = crate::bench::owner_and_segments(&db).await?;
    let mappings = [FieldMapping {
        tag: "FNAME".into(),
        field: "FirstName".into(),
    }];
    let mut ids = Vec::new();
    for (i, (api_key, audience)) in plan.iter().enumerate() {
        let name = format!("Bench {}", i + 1);
        let id = crate::bench::api_key_destination(
            &db,
            &key,
            owner,
            &name,
            (&sandbox_base, api_key, audience),
            &segment_ids,
            &mappings,
        )
        .await?;
        ids.push(id);
    }

    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .pool_max_idle_per_host(256)
        .build()?;
    let mut cookies = Vec::new();
    for _ in 0..4 {
        cookies.push(
            crate::bench::sign_in(&browser, &console_base, "bench@example.com", password).await?,
        );
    }
    let pages = |run: i64| {
        vec![
            ("destinations list", "/admin/export-destinations".to_owned()),
            ("run page", format!("/admin/export-runs/{run}")),
            (
                "run progress",
                format!("/admin/export-runs/{run}/progress.json"),
            ),
        ]
    };

    // Export all, with the most clients watching; then the same clients with nothing running.
    for (round, clients, full) in [(1, args.clients, false), (2, args.few_clients, true)] {
        let queued_at = Instant::now();
        let before = sandbox.stats();
        let mut run_ids = Vec::new();
        for id in &ids {
            let mut conn = db.pool().acquire().await?;
            run_ids.push(runs::enqueue(&mut conn, *id, full, None).await?.0);
        }
        let load = Load::start(
            &browser,
            &console_base,
            &cookies,
            pages(run_ids[0]),
            clients,
        );
        let mut finished: Vec<Run> = Vec::new();
        for run_id in &run_ids {
            loop {
                let run = runs::find(db.pool(), *run_id)
                    .await?
                    .ok_or_else(|| anyhow::anyhow!("run {run_id} is gone"))?;
                if run.status.is_finished() {
                    finished.push(run);
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let wall = queued_at.elapsed().as_secs_f64();
        let during = load.stop().await;
        let after = sandbox.stats();
        // Each account's modelled minimum: every call's latency and every member's time,
        // over its 10 connections.
        let mut per_account = vec![0.0f64; args.accounts];
        for (i, run) in finished.iter().enumerate() {
            let c = &run.counters;
            let members = c.sent + c.failed + c.unchanged.min(c.total);
            let work = c.calls as f64 * latency.as_secs_f64()
                + (c.sent + c.failed) as f64 * per_member.as_secs_f64();
            per_account[i % args.accounts] += work / 10.0;
            println!(
                "  {}: {:?} in {:.1} s, {} members ({} sent), {} calls",
                run.destination_id,
                run.status,
                (run.finished_at.unwrap_or(0) - run.started_at.unwrap_or(0)) as f64 / 1000.0,
                members,
                c.sent,
                c.calls
            );
        }
        let sum: f64 = per_account.iter().sum();
        let largest = per_account.iter().copied().fold(0.0, f64::max);
        println!(
            "round {round} ({}): Export all of {} destinations took {wall:.1} s; modelled minimum per account: sum {sum:.1} s, largest {largest:.1} s; wall / largest {:.2}, wall / sum {:.2}",
            if full { "full resync" } else { "first export" },
            ids.len(),
            wall / largest.max(0.001),
            wall / sum.max(0.001)
        );
        println!(
            "  sandbox 429s: {}; peak calls in flight on one account: {}",
            after.rejected_429 - before.rejected_429,
            after.peak_in_flight
        );
        let idle_load = Load::start(
            &browser,
            &console_base,
            &cookies,
            pages(run_ids[0]),
            clients,
        );
        tokio::time::sleep(Duration::from_secs(args.idle_seconds)).await;
        let idle = idle_load.stop().await;
        for ((name, busy), (_, quiet)) in during.into_iter().zip(idle) {
            let (b50, b99, bn) = quantiles(busy);
            let (q50, q99, qn) = quantiles(quiet);
            println!(
                "  {name} at {clients} clients: during the exports p50 {b50:.1} ms, p99 {b99:.1} ms ({bn} requests); nothing running p50 {q50:.1} ms, p99 {q99:.1} ms ({qn} requests); p99 ratio {:.2}",
                b99 / q99.max(0.001)
            );
        }
    }
    Ok(())
}

fn quantiles(mut times: Vec<Duration>) -> (f64, f64, usize) {
    times.sort_unstable();
    let at = |q: f64| {
        times
            .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
            .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
    };
    (at(0.5), at(0.99), times.len())
}

/// `clients` people each requesting the pages in turn, one request after another, each
/// request timed.
struct Load {
    done: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<Vec<Duration>>>>,
    names: Vec<&'static str>,
}

impl Load {
    fn start(
        http: &reqwest::Client,
        base: &str,
        cookies: &[String],
        pages: Vec<(&'static str, String)>,
        clients: usize,
    ) -> Self {
        let done = Arc::new(AtomicBool::new(false));
        let names = pages.iter().map(|(n, _)| *n).collect();
        let pages = Arc::new(pages);
        let tasks = (0..clients)
            .map(|client| {
                let (http, base, done, pages) =
                    (http.clone(), base.to_owned(), done.clone(), pages.clone());
                let cookie = cookies[client % cookies.len()].clone();
                tokio::spawn(async move {
                    let mut times = vec![Vec::new(); pages.len()];
                    let mut turn = client;
                    while !done.load(Ordering::Relaxed) {
                        let at = turn % pages.len();
                        turn += 1;
                        let started = Instant::now();
                        let ok = match http
                            .get(format!("{base}{}", pages[at].1))
                            .header(reqwest::header::COOKIE, &cookie)
                            .send()
                            .await
                        {
                            Ok(response) => {
                                response.status().is_success() && response.bytes().await.is_ok()
                            }
                            Err(_) => false,
                        };
                        if ok {
                            times[at].push(started.elapsed());
                        } else {
                            tracing::warn!(page = pages[at].0, "a page request failed under load");
                        }
                    }
                    times
                })
            })
            .collect();
        Self { done, tasks, names }
    }

    async fn stop(self) -> Vec<(&'static str, Vec<Duration>)> {
        self.done.store(true, Ordering::Relaxed);
        let mut all: Vec<(&'static str, Vec<Duration>)> =
            self.names.iter().map(|n| (*n, Vec::new())).collect();
        for task in self.tasks {
            if let Ok(times) = task.await {
                for (slot, mut t) in all.iter_mut().zip(times) {
                    slot.1.append(&mut t);
                }
            }
        }
        all
    }
}
