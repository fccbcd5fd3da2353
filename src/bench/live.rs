//! `bench live`: a destination kept in sync while profiles change through the profile API at
//! a steady rate, against a sandbox process with Mailchimp's limits. It prints how long each
//! change took from the API's answer to the audience holding it (p50, p95, p99), what it
//! cost in calls against the least the changes need, and the console's CPU and memory.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{KEY, api_key_destination, console_settings, mib, owner_and_segments, rss_mib};
use crate::actions::exports::{self, ExportRequest};
use crate::db::now_millis;
use crate::store::destinations::FieldMapping;
use crate::store::runs::{self, RunStatus};

/// Writes that may wait for the console's answer at once.
const IN_FLIGHT: usize = 64;

/// How long the bench waits, after the last write, for every change to arrive.
const DRAIN: Duration = Duration::from_secs(120);

pub async fn live(args: crate::cli::BenchLiveArgs) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let sandbox = args.modelled.sandbox().await?;
    println!(
        "bench live: {} profiles, {} segments, {} changes a second for {} s, sync window {} ms; sandbox: 10 connections, {} ms per call + {} µs per member",
        args.modelled.profiles,
        args.modelled.segments,
        args.rate,
        args.seconds,
        args.window_ms,
        args.modelled.mailchimp.latency_ms,
        args.modelled.mailchimp.per_member_us
    );
    args.modelled.prepare(dir.path()).await?;
    let key = crate::crypto::SecretKey::generate();
    let mut settings = console_settings(
        dir.path(),
        &args.modelled.database_url,
        &key,
        "bench-password-1234",
        4,
    )?;
    settings.sync_window = Duration::from_millis(args.window_ms);
    let window = settings.sync_window;
    let console = crate::app::App::build(settings).await?;
    let console_base = format!("http://{}", console.local_addr());
    let db = console.state().db.clone();
    tokio::spawn(console.run_until_stopped());
    tokio::time::sleep(Duration::from_millis(
        crate::export::changes::CLOCK_MARGIN_MS as u64,
    ))
    .await;
    crate::segments::refresh(&db, None).await?;
    let (owner, segment_ids) = owner_and_segments(&db).await?;
    let mappings = [FieldMapping {
        tag: "FNAME".into(),
        field: "FirstName".into(),
    }];
    let id = api_key_destination(
        &db,
        &key,
        owner,
        "Live",
        (&sandbox.base, KEY, &sandbox.audience),
        &segment_ids,
        &mappings,
    )
    .await?;
    let pool = db.pool();

    // The first export, by the console's own worker.
    let started = Instant::now();
    let request = ExportRequest {
        full: false,
        confirmed: true,
        by: None,
    };
    let queued = exports::queue(&db, id, request)
        .await?
        .map_err(|_| anyhow::anyhow!("the first export was not queued"))?;
    let first = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let run = runs::find(pool, queued.run_id).await?;
        if let Some(run) = run.filter(|r| r.status.is_finished()) {
            break run;
        }
    };
    anyhow::ensure!(
        first.status == RunStatus::Successful,
        "the first export ended {:?}: {:?}",
        first.status,
        first.message
    );
    println!(
        "first export: {} members created in {:.1} s",
        first.counters.created,
        started.elapsed().as_secs_f64()
    );

    // Kept in sync from now on; the changes go to customers the audience holds, each once.
    crate::store::destinations::set_keep_in_sync(pool, id, true).await?;
    let token = crate::store::api_tokens::create(pool, owner, "bench live").await?;
    let wanted = (args.rate * args.seconds) as i64;
    let customers = crate::store::ledger::customers(pool, id, wanted.max(1)).await?;
    anyhow::ensure!(
        !customers.is_empty() || wanted == 0,
        "the first export left no member to change"
    );
    let http = reqwest::Client::new();
    let stats_before = sandbox.stats(&http).await?;
    let cpu_before = cpu_seconds();
    let window_started = now_millis();
    let started = Instant::now();

    // Writes at a steady rate; each acknowledged write waits for its change in the ledger,
    // which the console writes when Mailchimp answered the member's batch.
    let acked: Arc<Mutex<HashMap<String, i64>>> = Arc::default();
    let permits = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut refused = 0usize;
    let mut writes = tokio::task::JoinSet::new();
    if args.rate > 0 {
        // One request every `per_request / rate` seconds: a PUT of one profile, or a POST of
        // several (the bulk endpoint), each profile changed once.
        let per_request = args.per_request.max(1) as usize;
        let every = Duration::from_secs_f64(per_request as f64 / args.rate as f64);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        for (n, group) in customers.chunks(per_request).enumerate() {
            tick.tick().await;
            let permit = permits.clone().acquire_owned().await?;
            let (http, acked, token) = (http.clone(), acked.clone(), token.clone());
            let group: Vec<String> = group.to_vec();
            let request = if per_request == 1 {
                let body = serde_json::json!({ "FirstName": format!("Live {n}") });
                let url = format!("{console_base}/api/v1/profiles/{}", group[0]);
                http.put(url).bearer_auth(token).json(&body)
            } else {
                let body: Vec<serde_json::Value> = group
                    .iter()
                    .map(|c| serde_json::json!({ "customer_id": c, "FirstName": format!("Live {n}") }))
                    .collect();
                let url = format!("{console_base}/api/v1/profiles");
                http.post(url).bearer_auth(token).json(&body)
            };
            writes.spawn(async move {
                let _permit = permit;
                match request.send().await {
                    Ok(answer) if answer.status().is_success() => {
                        let at = now_millis();
                        let mut acked = acked.lock().expect("acked");
                        for customer in group {
                            acked.insert(customer, at);
                        }
                        true
                    }
                    _ => false,
                }
            });
        }
    } else {
        tokio::time::sleep(Duration::from_secs(args.seconds)).await;
    }
    while let Some(done) = writes.join_next().await {
        if !done.unwrap_or(false) {
            refused += 1;
        }
    }
    let writing = started.elapsed();

    // Each change's time from the API's answer to the ledger noting Mailchimp's.
    let mut latencies = Vec::new();
    let mut seen_until = window_started;
    let deadline = Instant::now() + DRAIN;
    loop {
        let written = crate::store::ledger::written_since(pool, id, seen_until - 1).await?;
        {
            let mut acked = acked.lock().expect("acked");
            for (customer, at) in written {
                seen_until = seen_until.max(at);
                if acked.get(&customer).is_some_and(|ack| *ack <= at) {
                    let ack = acked.remove(&customer).unwrap_or(at);
                    latencies.push((at - ack) as f64 / 1000.0);
                }
            }
            if acked.is_empty() || Instant::now() > deadline {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let missing = acked.lock().expect("acked").len();
    // The last run ends before the counts are read.
    tokio::time::sleep(window * 2).await;
    let elapsed = started.elapsed();
    let cpu = cpu_seconds().zip(cpu_before).map(|(a, b)| a - b);
    let stats_after = sandbox.stats(&http).await?;

    latencies.sort_by(|a, b| a.total_cmp(b));
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let changes = latencies.len() + missing;
    println!(
        "{changes} changes written in {:.1} s, {} a request ({refused} requests refused by the API); {} reached the audience, {missing} did not within {} s",
        writing.as_secs_f64(),
        args.per_request.max(1),
        latencies.len(),
        DRAIN.as_secs()
    );
    println!(
        "latency from the API's answer to the audience: p50 {:.2} s, p95 {:.2} s, p99 {:.2} s, max {:.2} s",
        at(0.5),
        at(0.95),
        at(0.99),
        latencies.last().copied().unwrap_or(0.0)
    );

    let minutes = elapsed.as_secs_f64() / 60.0;
    let by_route = |stats: &serde_json::Value| -> HashMap<String, u64> {
        stats["calls_by_route"]
            .as_object()
            .map(|o| {
                o.iter()
                    .map(|(k, v)| (k.clone(), v.as_u64().unwrap_or(0)))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (before, after) = (by_route(&stats_before), by_route(&stats_after));
    let mut routes: Vec<(String, u64)> = after
        .iter()
        .map(|(route, n)| (route.clone(), n - before.get(route).copied().unwrap_or(0)))
        .filter(|(_, n)| *n > 0)
        .collect();
    routes.sort();
    let calls: u64 = routes.iter().map(|(_, n)| n).sum();
    let batches: u64 = routes
        .iter()
        // Batch subscribe is the one POST on an audience itself.
        .filter(|(route, _)| route.starts_with("POST /lists/") && route.matches('/').count() == 2)
        .map(|(_, n)| n)
        .sum();
    let least = (changes as f64 / 500.0).ceil();
    let synced = runs::listed(pool, id, runs::Listed::KeptInSyncSince(window_started)).await?;
    println!(
        "calls: {calls} in {:.1} min = {:.1} a minute; batch upserts {batches} ({:.1} a minute) against ⌈changes / 500⌉ = {least} ({:.1} a minute); other calls {:.1} a minute",
        minutes,
        calls as f64 / minutes,
        batches as f64 / minutes,
        least / minutes,
        (calls - batches) as f64 / minutes
    );
    println!(
        "  {} sync runs ({:.1} a minute); calls by route: {}",
        synced.len(),
        synced.len() as f64 / minutes,
        routes
            .iter()
            .map(|(route, n)| format!("{route} {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    println!(
        "console process: CPU {} over {:.0} s; resident now {}, peak {}",
        cpu.map_or("n/a".into(), |c| format!(
            "{c:.1} s ({:.0} %)",
            c * 100.0 / elapsed.as_secs_f64()
        )),
        elapsed.as_secs_f64(),
        mib(rss_mib("VmRSS:")),
        mib(super::peak_rss_mib())
    );
    Ok(())
}

/// CPU time this process used so far, user and system, in seconds (Linux; 100 ticks a
/// second).
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let user: f64 = fields.get(11)?.parse().ok()?;
    let system: f64 = fields.get(12)?.parse().ok()?;
    Some((user + system) / 100.0)
}
