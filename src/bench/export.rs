//! `bench export`: a full first export of demo profiles against a sandbox with Mailchimp's
//! limits, the re-exports after it, and two baseline exporters side by side.

use std::time::Instant;

use super::{KEY, api_key_destination, console_settings, mib, peak_rss_mib, rss_mib, sign_in};

/// `bench export`: a sandbox process with Mailchimp's limits (10 connections, latency per
/// call and per member), a fresh database of demo profiles, then a full first export, a
/// re-export with nothing changed, one with 1 % changed, and a naive exporter for contrast.
pub async fn export(args: crate::cli::BenchExportArgs) -> anyhow::Result<()> {
    use crate::export::worker::Worker;
    use crate::export::{Engine, Limiters};
    use crate::store::destinations::FieldMapping;
    use crate::store::runs;

    let dir = tempfile::tempdir()?;
    let sandbox = args.modelled.sandbox().await?;
    let (base, audience) = (sandbox.base.clone(), sandbox.audience.clone());
    println!(
        "bench export: {} profiles, {} segments on {}; sandbox: 10 connections, {} ms per call + {} µs per member",
        args.modelled.profiles,
        args.modelled.segments,
        if args.modelled.database_url.is_some() {
            "the given database"
        } else {
            "a fresh SQLite file"
        },
        args.modelled.mailchimp.latency_ms,
        args.modelled.mailchimp.per_member_us
    );

    // The profiles are prepared by another process, so this one's memory is the console's.
    let started = Instant::now();
    args.modelled.prepare(dir.path()).await?;
    println!(
        "prepared {} profiles in {:.1} s (in another process)",
        args.modelled.profiles,
        started.elapsed().as_secs_f64()
    );

    // The console itself, on that database: pages, worker, everything.
    let key = crate::crypto::SecretKey::generate();
    let password = "bench-password-1234";
    let settings = console_settings(dir.path(), &args.modelled.database_url, &key, password, 4)?;
    let console = crate::app::App::build(settings).await?;
    let console_base = format!("http://{}", console.local_addr());
    let db = console.state().db.clone();
    tokio::spawn(console.run_until_stopped());
    // The scheduled refresh comes after the import, not in its last seconds (which would
    // fall within the clocks' margin and be read again by the first re-export).
    tokio::time::sleep(std::time::Duration::from_millis(
        crate::export::changes::CLOCK_MARGIN_MS as u64,
    ))
    .await;
    let started = Instant::now();
    crate::segments::refresh(&db, None).await?;
    println!(
        "refresh with no member changed: {:.1} s (no new generation written)",
        started.elapsed().as_secs_f64()
    );
    let (owner, segment_ids) = crate::bench::owner_and_segments(&db).await?;
    let mappings = [
        FieldMapping {
            tag: "FNAME".into(),
            field: "FirstName".into(),
        },
        FieldMapping {
            tag: "LNAME".into(),
            field: "LastName".into(),
        },
    ];
    let id = api_key_destination(
        &db,
        &key,
        owner,
        "Bench",
        (&base, KEY, &audience),
        &segment_ids,
        &mappings,
    )
    .await?;
    let engine = Engine {
        db: db.clone(),
        key,
        client: crate::mailchimp::client::Client::new(),
        limiters: Limiters::default(),
        sandbox: Default::default(),
        fresh: Default::default(),
        webhooks: None,
    };
    let worker = Worker::new(engine.clone());
    let destination = crate::store::destinations::find(db.pool(), id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("the destination vanished"))?;
    let preview = || async {
        let started = Instant::now();
        let p = crate::export::preview::compute(&engine, &destination, false)
            .await
            .map_err(|e| anyhow::anyhow!("the preview failed: {e}"))?;
        Ok::<_, anyhow::Error>((p, started.elapsed().as_secs_f64()))
    };
    let http = reqwest::Client::new();
    let stats = || sandbox.stats(&http);
    let current_run = std::sync::Arc::new(std::sync::atomic::AtomicI64::new(0));
    let run_once = |full: bool| {
        let worker = worker.clone();
        let db = db.clone();
        let current_run = current_run.clone();
        async move {
            let mut tx = crate::db::begin_write(db.pool()).await?;
            let (run_id, _) = runs::enqueue(&mut tx, id, full, None).await?;
            current_run.store(run_id, std::sync::atomic::Ordering::Relaxed);
            let run = runs::claim(&mut *tx, run_id, worker.owner(), 60_000)
                .await?
                .expect("claimed");
            tx.commit().await?;
            let started = Instant::now();
            worker.execute_claimed(run).await?;
            let elapsed = started.elapsed().as_secs_f64();
            let run = runs::find(db.pool(), run_id).await?.expect("run");
            Ok::<_, anyhow::Error>((run, elapsed))
        }
    };

    // 1. The full first export, with people watching the console's pages meanwhile.
    // A browser that does not follow redirects: a page that sends it to sign in fails.
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let cookie = sign_in(&browser, &console_base, "bench@example.com", password).await?;
    let load = PageLoad::start(
        &browser,
        &console_base,
        &cookie,
        current_run.clone(),
        args.page_rps,
    );
    println!(
        "console process before the export: {} resident",
        mib(rss_mib("VmRSS:"))
    );
    let (p, preview_seconds) = preview().await?;
    let rss_after_preview = rss_mib("VmRSS:");
    let before = stats().await?;
    let (run, seconds) = run_once(false).await?;
    let after = stats().await?;
    let pages = load.stop().await;
    println!(
        "preview before the first export: {preview_seconds:.1} s; it said create {}, skip {}, refuse {}; \
         the export created {}, skipped {}, failed {}; console resident after it: {}",
        p.create,
        p.skip,
        p.fail,
        run.counters.created,
        run.counters.skipped,
        run.counters.failed,
        mib(rss_after_preview)
    );
    let busy_ms = after["modelled_busy_ms"].as_f64().unwrap_or(0.0)
        - before["modelled_busy_ms"].as_f64().unwrap_or(0.0);
    let calls = after["calls"].as_u64().unwrap_or(0) - before["calls"].as_u64().unwrap_or(0);
    let c = run.counters;
    let members = c.created + c.updated;
    // The least the work needs: one batch upsert per 500 members (their tags travel in the
    // batch), the audience's check, the merge-field and tag lists (one page each), and the
    // status reads (every status but the new-member one and archived, one page each). A
    // first export removes no tag.
    let fixed_reads = 1 + 1 + 1 + 4;
    // Members sent in upserts: those Mailchimp took and those it refused (fake addresses),
    // each with a ledger entry after a first export, and those whose call failed.
    let upserted = crate::store::ledger::count_entries(db.pool(), id).await? + c.failed;
    let minimum = (upserted + 499) / 500 + fixed_reads;
    let first_rate = members as f64 / seconds;
    println!(
        "full export: {:?} in {seconds:.1} s = {first_rate:.0} members/s",
        run.status
    );
    println!(
        "  members {}: created {}, skipped {} (bad or repeated addresses), failed {}; {upserted} upserted",
        c.total, c.created, c.skipped, c.failed
    );
    println!(
        "  calls made {calls} (console counted {}), minimum about {minimum}: {:.3} x",
        c.calls,
        calls as f64 / minimum as f64
    );
    if let (Some(after), Some(before)) = (
        after["calls_by_route"].as_object(),
        before["calls_by_route"].as_object(),
    ) {
        let by_route: Vec<String> = after
            .iter()
            .filter_map(|(route, n)| {
                let n = n.as_u64()? - before.get(route).and_then(|b| b.as_u64()).unwrap_or(0);
                (n > 0).then(|| format!("{route} {n}"))
            })
            .collect();
        println!("  calls by route: {}", by_route.join(", "));
    }
    println!(
        "  ratio to provider ceiling: {:.2} (modelled busy {:.0} s / (10 x {seconds:.1} s))",
        busy_ms / 1000.0 / (10.0 * seconds),
        busy_ms / 1000.0
    );
    println!(
        "  sandbox 429s: {}; peak RSS of the console process: {}",
        after["rejected_429"],
        mib(peak_rss_mib())
    );
    for (name, mut times) in pages {
        times.sort_unstable();
        let at = |q: f64| {
            times
                .get(((times.len() as f64 * q) as usize).min(times.len().saturating_sub(1)))
                .map_or(0.0, |d| d.as_secs_f64() * 1000.0)
        };
        println!(
            "  page under load, {name}: {} requests, p50 {:.1} ms, p99 {:.1} ms",
            times.len(),
            at(0.5),
            at(0.99)
        );
    }

    // 2. Nothing changed.
    let (run, seconds) = run_once(false).await?;
    println!(
        "re-export, nothing changed: {seconds:.1} s ({} unchanged, {} sent; {})",
        run.counters.unchanged,
        run.counters.sent,
        scope(&run)
    );

    // 3. One profile in a hundred changed.
    sqlx::query(match db.backend() {
        crate::db::Backend::Sqlite => "UPDATE profiles SET attributes = json_set(attributes, '$.FirstName', 'Changed'), updated_at = $1 WHERE id % 100 = 0",
        crate::db::Backend::Postgres => "UPDATE profiles SET attributes = jsonb_set(attributes::jsonb, '{FirstName}', '\"Changed\"')::text, updated_at = $1 WHERE id % 100 = 0",
    })
    .bind(crate::db::now_millis())
    .execute(db.pool())
    .await?;
    // The preview reads what the run reads: the ledger and the changed profiles.
    let (p, preview_seconds) = preview().await?;
    let before = stats().await?;
    let (run, seconds) = run_once(false).await?;
    let after = stats().await?;
    println!(
        "preview before the 1 % re-export: {preview_seconds:.1} s (what the run reads: the ledger and the changed profiles); it said update {}, unchanged {}; \
         the re-export updated {}, unchanged {}",
        p.update, p.unchanged, run.counters.updated, run.counters.unchanged
    );
    let calls = after["calls"].as_u64().unwrap_or(0) - before["calls"].as_u64().unwrap_or(0);
    let minimum = (run.counters.sent + 499) / 500 + fixed_reads;
    println!(
        "re-export, 1 % changed: {seconds:.1} s ({} sent, {} unchanged; {}); calls {calls}, minimum {minimum}",
        run.counters.sent,
        run.counters.unchanged,
        scope(&run)
    );
    println!(
        "peak RSS of this process over the whole run: {}",
        mib(peak_rss_mib())
    );

    // 4. A naive exporter: one PUT per member and one tag call per member, 10 at a time.
    let sample = args.naive_sample as usize;
    let started = Instant::now();
    let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(10));
    let mut tasks = Vec::new();
    for i in 0..sample {
        let (http, base, audience, semaphore) = (
            http.clone(),
            base.clone(),
            audience.clone(),
            semaphore.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let _permit = semaphore.acquire().await;
            let email = format!("naive{i}@northwind-mail.com");
            let hash = crate::domain::subscriber_hash(&email);
            let put = serde_json::json!({ "email_address": email, "status_if_new": "subscribed", "merge_fields": { "FNAME": "N" } });
            let _ = http.put(format!("{base}/3.0/lists/{audience}/members/{hash}")).basic_auth("x", Some(KEY)).json(&put).send().await;
            let tags = serde_json::json!({ "tags": [{ "name": "naive", "status": "active" }] });
            let _ = http.post(format!("{base}/3.0/lists/{audience}/members/{hash}/tags")).basic_auth("x", Some(KEY)).json(&tags).send().await;
        }));
    }
    for task in tasks {
        let _ = task.await;
    }
    let naive_rate = sample as f64 / started.elapsed().as_secs_f64();
    println!(
        "naive exporter (one call per member and per tag, 10 at a time): {naive_rate:.0} members/s on {sample} members"
    );
    println!(
        "speed-up of the exporter over the naive one: {:.0} x",
        first_rate / naive_rate
    );

    // 5. A serial batch exporter: 500 members a call with their tags, one call after
    // another, as a plain script on Mailchimp's client library would do it.
    let sample = args.serial_sample as usize;
    let started = Instant::now();
    for (n, part) in (0..sample).collect::<Vec<_>>().chunks(500).enumerate() {
        let members: Vec<serde_json::Value> = part
            .iter()
            .map(|i| {
                serde_json::json!({
                    "email_address": format!("serial{i}@northwind-mail.com"),
                    "status": "subscribed",
                    "merge_fields": { "FNAME": "S" },
                    "tags": ["serial"],
                })
            })
            .collect();
        let answer = http
            .post(format!("{base}/3.0/lists/{audience}"))
            .basic_auth("x", Some(KEY))
            .json(&serde_json::json!({ "members": members, "update_existing": true }))
            .send()
            .await?;
        anyhow::ensure!(
            answer.status().is_success(),
            "serial batch {n} failed: {}",
            answer.status()
        );
        answer.bytes().await?;
    }
    let serial_rate = sample as f64 / started.elapsed().as_secs_f64();
    println!(
        "serial batch exporter (500 a call with tags, one call at a time): {serial_rate:.0} members/s on {sample} members"
    );
    println!(
        "speed-up of the exporter over the serial batch one: {:.1} x",
        first_rate / serial_rate
    );
    drop(sandbox);
    Ok(())
}

/// A steady stream of page requests (the destinations list and the running export's
/// progress, as people watching the console make them), timed one by one.
struct PageLoad {
    done: std::sync::Arc<std::sync::atomic::AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<(&'static str, Vec<std::time::Duration>)>>,
}

impl PageLoad {
    fn start(
        http: &reqwest::Client,
        base: &str,
        cookie: &str,
        run: std::sync::Arc<std::sync::atomic::AtomicI64>,
        per_second: u32,
    ) -> Self {
        use std::sync::atomic::Ordering;
        let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut tasks = Vec::new();
        for name in ["destinations list", "run progress"] {
            let (http, base, cookie, run, done) = (
                http.clone(),
                base.to_owned(),
                cookie.to_owned(),
                run.clone(),
                done.clone(),
            );
            tasks.push(tokio::spawn(async move {
                let mut times = Vec::new();
                let every = std::time::Duration::from_secs_f64(1.0 / f64::from(per_second.max(1)));
                let mut tick = tokio::time::interval(every);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                while !done.load(Ordering::Relaxed) {
                    tick.tick().await;
                    let run = run.load(Ordering::Relaxed);
                    let path = if name == "destinations list" {
                        "/admin/export-destinations".to_owned()
                    } else if run == 0 {
                        continue; // the run is not queued yet
                    } else {
                        format!("/admin/export-runs/{run}/progress.json")
                    };
                    let started = Instant::now();
                    let ok = match http
                        .get(format!("{base}{path}"))
                        .header(reqwest::header::COOKIE, &cookie)
                        .send()
                        .await
                    {
                        Ok(response) => {
                            let ok = response.status().is_success();
                            ok && response.bytes().await.is_ok()
                        }
                        Err(_) => false,
                    };
                    if ok {
                        times.push(started.elapsed());
                    } else {
                        tracing::warn!(path, "a page request failed under load");
                    }
                }
                (name, times)
            }));
        }
        Self { done, tasks }
    }

    async fn stop(self) -> Vec<(&'static str, Vec<std::time::Duration>)> {
        self.done.store(true, std::sync::atomic::Ordering::Relaxed);
        let mut all = Vec::new();
        for task in self.tasks {
            if let Ok(result) = task.await {
                all.push(result);
            }
        }
        all
    }
}

/// Whether a run read the whole plan or only what changed.
fn scope(run: &crate::store::runs::Run) -> &'static str {
    if run.changes_since.is_some() {
        "only changed profiles read"
    } else {
        "whole plan read"
    }
}
