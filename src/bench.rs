//! `export-destinations bench data`: import and refresh at scale, on a fresh database,
//! with the figures BENCHMARKS.md records.

use std::path::Path;
use std::time::Instant;

use crate::cli::BenchDataArgs;
use crate::profiles::{ImportOptions, demo, import_file};
use crate::segments::{RefreshOutcome, refresh};
use crate::store::profiles::{self, Cursor};
use crate::store::segments::{self, Definition};

/// Peak resident memory of this process so far, in MiB (Linux; None elsewhere).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
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
        outcome.totals.rows_read,
        seconds,
        outcome.totals.rows_read as f64 / seconds,
        outcome.totals.created,
        outcome.totals.rejected
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
        "refresh again (replacing every membership): {:.2} s",
        started.elapsed().as_secs_f64()
    );

    page_timings(&db).await?;
    drop(db);
    cleanup(dir.path());
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
    ] {
        let mut times = Vec::new();
        for _ in 0..21 {
            let started = Instant::now();
            match run {
                0 => drop(profiles::page(pool, None, Cursor::First, 51).await?),
                1 => drop(profiles::page(pool, None, Cursor::After(deep - 1), 51).await?),
                2 => drop(profiles::page(pool, Some("ada.lovelace1"), Cursor::First, 51).await?),
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
