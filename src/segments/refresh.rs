//! Refresh: one scan of all profiles evaluates every rules segment; each segment's new
//! membership is written under a new generation and then published in one short
//! transaction. Readers never see a half-written membership.

use std::collections::HashMap;
use std::time::Instant;

use futures::TryStreamExt;
use serde_json::{Map, Value};
use tokio::sync::Mutex;
use tracing::Instrument;

use crate::db::Db;
use crate::domain::segment_rules::CompiledRules;
use crate::domain::{FieldType, Invalid};
use crate::store::profiles::Which;
use crate::store::segments::{self, Definition, Published, Segment};
use crate::store::{fields, profiles};

use super::progress;

/// One refresh at a time per process: two would write the same generation.
static REFRESHING: Mutex<()> = Mutex::const_new(());

/// Evaluates rules over every profile in one pass; returns the matching profile ids of
/// each rule set, in profile order.
#[tracing::instrument(name = "scan", skip_all, fields(rule_sets = rules.len()))]
pub async fn scan(db: &Db, rules: &[CompiledRules]) -> anyhow::Result<(Vec<Vec<i64>>, u64)> {
    scan_noting(db, rules, &|_| {}).await
}

/// `scan`, telling `noted` how many profiles were read every 10,000.
async fn scan_noting(
    db: &Db,
    rules: &[CompiledRules],
    noted: &(dyn Fn(u64) + Sync),
) -> anyhow::Result<(Vec<Vec<i64>>, u64)> {
    let mut matches = vec![Vec::new(); rules.len()];
    let mut scanned = 0u64;
    let mut rows = profiles::attributes_in_order(db.pool());
    while let Some((id, text)) = rows.try_next().await? {
        scanned += 1;
        if scanned % 10_000 == 0 {
            noted(scanned);
        }
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
pub async fn preview_count(db: &Db, rules: CompiledRules) -> anyhow::Result<usize> {
    let (matches, _) = scan(db, &[rules]).await?;
    Ok(matches[0].len())
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
    Invalid(Vec<Invalid>),
}

#[derive(Debug, Clone)]
pub struct RefreshReport {
    pub profiles_scanned: u64,
    pub segments: Vec<(String, RefreshOutcome)>,
    pub duration_ms: i64,
}

impl RefreshReport {
    /// "Refreshed 3 segment(s) in 1.2 s.", and each segment that could not be refreshed
    /// with why.
    pub fn summary(&self) -> String {
        let invalid: Vec<String> = self
            .segments
            .iter()
            .filter_map(|(name, o)| match o {
                RefreshOutcome::Invalid(errors) => Some(format!(
                    "“{name}” was not refreshed: {}",
                    Invalid::join(errors)
                )),
                RefreshOutcome::Refreshed { .. } => None,
            })
            .collect();
        let done = self.segments.len() - invalid.len();
        let took = if self.duration_ms < 1000 {
            format!("{} ms", self.duration_ms)
        } else {
            format!("{:.1} s", self.duration_ms as f64 / 1000.0)
        };
        let mut text = format!("Refreshed {done} segment(s) in {took}.");
        for line in invalid {
            text.push(' ');
            text.push_str(&line);
        }
        text
    }
}

/// Refreshes the given segments (all when `only` is None).
#[tracing::instrument(name = "refresh", skip_all, fields(segments = ?only))]
pub async fn refresh(db: &Db, only: Option<&[i64]>) -> anyhow::Result<RefreshReport> {
    let _one_at_a_time = REFRESHING.lock().await;
    let refreshed = refresh_locked(db, only).await;
    progress::end(
        db,
        match &refreshed {
            Ok(report) => report.summary(),
            Err(err) => {
                format!("The refresh stopped: {err}. The segments keep their previous members.")
            }
        },
    );
    refreshed
}

/// Refreshes segments in the background (all when `only` is None); the console's refresh
/// board follows it.
pub fn refresh_in_background(db: &Db, user_id: i64, only: Option<Vec<i64>>) {
    let db = db.clone();
    let span = tracing::info_span!("segment refresh", user_id);
    tokio::spawn(
        async move {
            if let Err(err) = refresh(&db, only.as_deref()).await {
                tracing::error!(error = %err, "the segment refresh stopped");
            }
        }
        .instrument(span),
    );
}

async fn refresh_locked(db: &Db, only: Option<&[i64]>) -> anyhow::Result<RefreshReport> {
    let started = Instant::now();
    let all = segments::list(db.pool()).await?;
    let chosen: Vec<Segment> = all
        .into_iter()
        .filter(|s| only.is_none_or(|ids| ids.contains(&s.id)))
        .collect();
    progress::begin(
        db,
        chosen
            .iter()
            .map(|s| progress::SegmentState {
                id: s.id,
                name: s.name.clone(),
                state: "waiting",
                members: None,
                note: None,
            })
            .collect(),
    );
    let catalogue = fields::as_catalogue(&fields::list(db.pool()).await?);
    let mut outcomes = Vec::new();
    let (rule_segments, compiled) = compile_rules(db, &chosen, &catalogue, &mut outcomes);
    let mut changed = false;
    // Every profile write committed before this is in the scan.
    let as_of = crate::store::profile_writers::horizon(db.pool()).await?;
    let scan_started = Instant::now();
    let (matches, scanned) = if compiled.is_empty() {
        (Vec::new(), 0)
    } else {
        let profiles = profiles::count(db.pool()).await?;
        progress::update(db, |board| board.profiles = profiles as u64);
        let noted = |n: u64| progress::update(db, |board| board.scanned = n);
        let scanned = scan_noting(db, &compiled, &noted).await?;
        progress::update(db, |board| board.scanned = scanned.1);
        scanned
    };
    let scan_ms = scan_started.elapsed().as_millis() as i64;
    tracing::debug!(scan_ms, profiles = scanned, "the profiles were scanned");
    // PostgreSQL writes each segment's rows on a connection of its own, a few at once (its
    // server works on them side by side); SQLite has one writer, so one after another.
    let side_by_side = if db.backend() == crate::db::Backend::Postgres {
        3
    } else {
        1
    };
    let mut published: Vec<(bool, i64)> = Vec::with_capacity(rule_segments.len());
    let work: Vec<_> = rule_segments.iter().zip(&matches).collect();
    for batch in work.chunks(side_by_side) {
        let writes = batch.iter().map(|(segment, members)| {
            let basis = rules_basis(segment, &catalogue);
            progress::segment(db, segment.id, "writing", Some(members.len() as i64));
            async move {
                let written = publish_timed(db, segment, members, scan_ms, as_of, basis).await;
                progress::segment(db, segment.id, "done", None);
                written
            }
        });
        published.extend(futures::future::try_join_all(writes).await?);
    }
    for ((segment, members), (segment_changed, written_ms)) in
        rule_segments.iter().zip(&matches).zip(published)
    {
        changed |= segment_changed;
        outcomes.push((
            segment.name.clone(),
            RefreshOutcome::Refreshed {
                members: members.len() as i64,
                unmatched_ids: 0,
                duration_ms: scan_ms + written_ms,
            },
        ));
    }
    for segment in chosen.iter().filter(|s| s.definition == Definition::Static) {
        let (segment_changed, outcome) = refresh_static(db, segment).await?;
        changed |= segment_changed;
        outcomes.push((segment.name.clone(), outcome));
    }
    catch_up(db, as_of).await?;
    if changed {
        let analyzed = Instant::now();
        db.analyze(&["segment_members"]).await?;
        tracing::debug!(
            ms = analyzed.elapsed().as_millis() as u64,
            "segment statistics refreshed"
        );
    }
    Ok(RefreshReport {
        profiles_scanned: scanned,
        segments: outcomes,
        duration_ms: started.elapsed().as_millis() as i64,
    })
}

/// Profile writes that committed while the profiles were read followed into the membership
/// published then, not into the one this refresh computed: they follow again now.
async fn catch_up(db: &Db, as_of: i64) -> anyhow::Result<()> {
    let mut tx = crate::db::begin_write(db.pool()).await?;
    segments::lock_membership(&mut tx, db.backend()).await?;
    let written = profiles::ids_written_since(&mut tx, as_of).await?;
    crate::segments::follow::follow(&mut tx, db.backend(), Which::Profiles(&written)).await?;
    tx.commit().await?;
    Ok(())
}

/// The rules of the chosen rules segments, compiled against the catalogue; a segment whose
/// rules no longer compile (a field was deleted or retyped) is not refreshed, and says why.
fn compile_rules<'a>(
    db: &Db,
    chosen: &'a [Segment],
    catalogue: &HashMap<String, FieldType>,
    outcomes: &mut Vec<(String, RefreshOutcome)>,
) -> (Vec<&'a Segment>, Vec<CompiledRules>) {
    let mut rule_segments = Vec::new();
    let mut compiled = Vec::new();
    for segment in chosen {
        let Definition::Rules(rules) = &segment.definition else {
            continue;
        };
        match rules.compile(catalogue) {
            Ok(c) => {
                rule_segments.push(segment);
                compiled.push(c);
                progress::segment(db, segment.id, "scanning", None);
            }
            Err(errors) => {
                let why = Invalid::join(&errors);
                progress::update(db, |board| {
                    if let Some(s) = board.segments.iter_mut().find(|s| s.id == segment.id) {
                        s.state = "not refreshed";
                        s.note = Some(why);
                    }
                });
                outcomes.push((segment.name.clone(), RefreshOutcome::Invalid(errors)))
            }
        }
    }
    (rule_segments, compiled)
}

/// Publishes a static segment's members (its customer IDs that have a profile); true when
/// they changed.
async fn refresh_static(db: &Db, segment: &Segment) -> anyhow::Result<(bool, RefreshOutcome)> {
    progress::segment(db, segment.id, "writing", None);
    let written = Instant::now();
    let as_of = crate::store::profile_writers::horizon(db.pool()).await?;
    let (members, unmatched) = segments::static_members(db.pool(), segment.id).await?;
    let basis = static_basis(segment);
    let changed = publish(db, segment, &members, unmatched, 0, as_of, basis).await?;
    let duration_ms = written.elapsed().as_millis() as i64;
    progress::segment(db, segment.id, "done", Some(members.len() as i64));
    let outcome = RefreshOutcome::Refreshed {
        members: members.len() as i64,
        unmatched_ids: unmatched,
        duration_ms,
    };
    Ok((changed, outcome))
}

/// MD5 of some byte strings, as hex.
fn digest_hex<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> String {
    use md5::{Digest, Md5};
    let mut digest = Md5::new();
    for part in parts {
        digest.update(part);
        digest.update(b"\0");
    }
    format!("{:032x}", u128::from_be_bytes(digest.finalize().into()))
}

/// What a static segment's membership is computed from: its list, as of its last change.
fn static_basis(segment: &Segment) -> String {
    digest_hex([b"static".as_slice(), &segment.updated_at.to_le_bytes()])
}

/// True when the segment's published members were computed from its definition as it is
/// now (false while a refresh of newly saved rules is still to publish).
pub fn is_current(
    segment: &Segment,
    catalogue: &std::collections::HashMap<String, crate::domain::field::FieldType>,
) -> bool {
    let basis = match segment.definition {
        Definition::Rules(_) => rules_basis(segment, catalogue),
        Definition::Static => static_basis(segment),
    };
    segment.members_basis == basis
}

/// True while a refresh of the segment's definition as saved is still to publish its members
/// (rules that no longer fit the fields cannot be refreshed, so are not waiting for one).
pub fn is_refreshing(
    segment: &Segment,
    catalogue: &std::collections::HashMap<String, crate::domain::field::FieldType>,
) -> bool {
    !is_current(segment, catalogue)
        && matches!(&segment.definition, Definition::Rules(rules) if rules.compile(catalogue).is_ok())
}

/// What a rules segment's membership is computed from: its rules and the types of the
/// fields they name (a field's type decides how its values compare).
fn rules_basis(
    segment: &Segment,
    catalogue: &std::collections::HashMap<String, crate::domain::field::FieldType>,
) -> String {
    let Definition::Rules(rules) = &segment.definition else {
        return String::new();
    };
    let mut types: Vec<String> = rules
        .conditions
        .iter()
        .map(|c| format!("{}={:?}", c.field, catalogue.get(&c.field)))
        .collect();
    types.sort();
    let text = serde_json::to_string(rules).unwrap_or_default();
    digest_hex(std::iter::once(text.as_bytes()).chain(types.iter().map(|t| t.as_bytes())))
}

/// `publish` for a rules segment: whether it changed, and the milliseconds it took.
async fn publish_timed(
    db: &Db,
    segment: &Segment,
    members: &[i64],
    scan_ms: i64,
    as_of: i64,
    basis: String,
) -> anyhow::Result<(bool, i64)> {
    let written = Instant::now();
    let changed = publish(db, segment, members, 0, scan_ms, as_of, basis).await?;
    let written_ms = written.elapsed().as_millis() as i64;
    tracing::debug!(
        segment = %segment.name,
        members = members.len(),
        written_ms,
        "a segment's members were published"
    );
    Ok((changed, written_ms))
}

/// Publishes a segment's members: a new generation when they changed, otherwise only the
/// refresh's time (the members in the database stay as they are).
async fn publish(
    db: &Db,
    segment: &Segment,
    members: &[i64],
    unmatched: i64,
    elapsed_ms: i64,
    as_of: i64,
    basis: String,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let mut bytes = Vec::with_capacity(members.len() * 8);
    for id in members {
        bytes.extend_from_slice(&id.to_le_bytes());
    }
    let digest = digest_hex([bytes.as_slice()]);
    let same = !segment.members_digest.is_empty() && segment.members_digest == digest;
    let generation = if same {
        segment.generation
    } else {
        let generation = segment.generation + 1;
        let mut tx = crate::db::begin_write(db.pool()).await?;
        segments::write_generation(&mut tx, segment.id, generation, members).await?;
        tx.commit().await?;
        generation
    };
    let mut tx = crate::db::begin_write(db.pool()).await?;
    segments::lock_membership(&mut tx, db.backend()).await?;
    let published = Published {
        generation,
        member_count: members.len() as i64,
        unmatched_ids: unmatched,
        duration_ms: elapsed_ms + started.elapsed().as_millis() as i64,
        as_of,
        basis,
        digest,
    };
    segments::publish(&mut tx, segment.id, &published).await?;
    tx.commit().await?;
    Ok(!same)
}
