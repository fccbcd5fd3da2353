//! Refresh: one scan of all profiles evaluates every rules segment; each segment's new
//! membership is written under a new generation and then published in one short
//! transaction. Readers never see a half-written membership.

use std::time::Instant;

use futures::TryStreamExt;
use serde_json::{Map, Value};
use sqlx::Row;
use tokio::sync::Mutex;

use crate::db::Db;
use crate::domain::segment_rules::{CompiledRules, SegmentRules};
use crate::store::fields;
use crate::store::segments::{self, Definition, Published, Segment};

/// One refresh at a time per process: two would write the same generation.
static REFRESHING: Mutex<()> = Mutex::const_new(());

/// Evaluates rules over every profile in one pass; returns the matching profile ids of
/// each rule set, in profile order.
pub async fn scan(db: &Db, rules: &[CompiledRules]) -> anyhow::Result<(Vec<Vec<i64>>, u64)> {
    let mut matches = vec![Vec::new(); rules.len()];
    let mut scanned = 0u64;
    let mut rows = sqlx::query("SELECT id, attributes FROM profiles ORDER BY id").fetch(db.pool());
    while let Some(row) = rows.try_next().await? {
        scanned += 1;
        let id: i64 = row.try_get(0)?;
        let text: String = row.try_get(1)?;
        let attributes: Map<String, Value> = serde_json::from_str(&text).unwrap_or_default();
        for (rule, found) in rules.iter().zip(matches.iter_mut()) {
            if rule.matches(&attributes) {
                found.push(id);
            }
        }
    }
    Ok((matches, scanned))
}

/// How many profiles match rules now (the rule builder's count preview).
pub async fn preview_count(
    db: &Db,
    rules: &SegmentRules,
) -> anyhow::Result<Result<usize, Vec<String>>> {
    let catalogue = fields::as_catalogue(&fields::list(db.pool()).await?);
    let compiled = match rules.compile(&catalogue) {
        Ok(compiled) => compiled,
        Err(errors) => return Ok(Err(errors)),
    };
    let (matches, _) = scan(db, &[compiled]).await?;
    Ok(Ok(matches[0].len()))
}

/// What happened to one segment.
#[derive(Debug, Clone)]
pub enum RefreshOutcome {
    Refreshed {
        members: i64,
        unmatched_ids: i64,
        duration_ms: i64,
    },
    /// The rules no longer fit the catalogue; the old membership stays.
    Invalid(Vec<String>),
}

#[derive(Debug, Clone)]
pub struct RefreshReport {
    pub profiles_scanned: u64,
    pub segments: Vec<(String, RefreshOutcome)>,
    pub duration_ms: i64,
}

/// Refreshes the given segments (all when `only` is None).
pub async fn refresh(db: &Db, only: Option<&[i64]>) -> anyhow::Result<RefreshReport> {
    let _one_at_a_time = REFRESHING.lock().await;
    let started = Instant::now();
    let all = segments::list(db.pool()).await?;
    let chosen: Vec<Segment> = all
        .into_iter()
        .filter(|s| only.is_none_or(|ids| ids.contains(&s.id)))
        .collect();
    let catalogue = fields::as_catalogue(&fields::list(db.pool()).await?);
    let mut outcomes = Vec::new();
    let mut rule_segments = Vec::new();
    let mut compiled = Vec::new();
    for segment in &chosen {
        if let Definition::Rules(rules) = &segment.definition {
            match rules.compile(&catalogue) {
                Ok(c) => {
                    rule_segments.push(segment);
                    compiled.push(c);
                }
                Err(errors) => {
                    outcomes.push((segment.name.clone(), RefreshOutcome::Invalid(errors)))
                }
            }
        }
    }
    let scan_started = Instant::now();
    let (matches, scanned) = if compiled.is_empty() {
        (Vec::new(), 0)
    } else {
        scan(db, &compiled).await?
    };
    let scan_ms = scan_started.elapsed().as_millis() as i64;
    for (segment, members) in rule_segments.iter().zip(matches) {
        let written = Instant::now();
        publish(
            db,
            segment,
            &members,
            0,
            scan_ms + written.elapsed().as_millis() as i64,
        )
        .await?;
        let duration_ms = scan_ms + written.elapsed().as_millis() as i64;
        outcomes.push((
            segment.name.clone(),
            RefreshOutcome::Refreshed {
                members: members.len() as i64,
                unmatched_ids: 0,
                duration_ms,
            },
        ));
    }
    for segment in chosen.iter().filter(|s| s.definition == Definition::Static) {
        let written = Instant::now();
        let (members, unmatched) = segments::static_members(db.pool(), segment.id).await?;
        publish(db, segment, &members, unmatched, 0).await?;
        let duration_ms = written.elapsed().as_millis() as i64;
        outcomes.push((
            segment.name.clone(),
            RefreshOutcome::Refreshed {
                members: members.len() as i64,
                unmatched_ids: unmatched,
                duration_ms,
            },
        ));
    }
    db.analyze(&["segment_members"]).await?;
    Ok(RefreshReport {
        profiles_scanned: scanned,
        segments: outcomes,
        duration_ms: started.elapsed().as_millis() as i64,
    })
}

async fn publish(
    db: &Db,
    segment: &Segment,
    members: &[i64],
    unmatched: i64,
    elapsed_ms: i64,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let generation = segment.generation + 1;
    let mut tx = crate::db::begin_write(db.pool()).await?;
    segments::write_generation(&mut tx, segment.id, generation, members).await?;
    tx.commit().await?;
    let mut tx = crate::db::begin_write(db.pool()).await?;
    let published = Published {
        generation,
        member_count: members.len() as i64,
        unmatched_ids: unmatched,
        duration_ms: elapsed_ms + started.elapsed().as_millis() as i64,
    };
    segments::publish(&mut tx, segment.id, &published).await?;
    tx.commit().await?;
    Ok(())
}
