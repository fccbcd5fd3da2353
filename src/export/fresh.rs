//! What a run reads of its audience before it sends, kept between runs while it is fresh, so
//! that a destination kept in sync pays for what changed rather than for every run:
//!
//! - the merge fields and the tags by name (and the webhook's check) are read again after
//!   [`FRESH_FOR`], when the destination's settings changed, when the audience check (at
//!   most once a minute, `drift::CHECK_EVERY`) counts other merge fields, when a tag its
//!   segments send is not among them, and after a run that did not end clean;
//! - the statuses of the members whose status is not the new-member status are read whole
//!   once (and every [`WHOLE_EVERY`]). After that a run kept in sync sends with them as
//!   kept, with no read, unless something says a status changed in Mailchimp: the audience
//!   check counts other numbers of members by status than the runs since explain, or
//!   Mailchimp refuses to subscribe a member ("Member In Compliance State"). Then, and
//!   before a member whose kept status is not the new-member status is sent (sending it
//!   back could undo a re-subscription), the run reads only the members changed since the
//!   last read (`since_last_changed`), and the ledger notes the statuses that changed.
//!
//! So no member is sent an older status than Mailchimp's: a member kept as opted out is
//! sent only after a read of what changed, and one who opted out since is refused by
//! Mailchimp rather than subscribed, read, and sent again with the status read.
//!
//! They live in this console's memory: after a restart, or on another console, the first run
//! reads them again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::db::Db;
use crate::domain::MemberStatus;
use crate::export::plan::Hash;
use crate::mailchimp::client::{ApiError, MergeField};
use crate::mailchimp::gateway::{AudienceCheck, Gateway};
use crate::store::destinations::Destination;

/// Members a page of Mailchimp's members list holds.
const PAGE: usize = 1000;

/// How long the merge fields, the tags and the webhook's check are reused (the audience
/// check, once a minute, says sooner when the merge fields changed).
pub const FRESH_FOR: Duration = Duration::from_secs(15 * 60);

/// How often the statuses are read whole even when only changes were read in between (a
/// member archived in Mailchimp is not among the changes, for one).
pub const WHOLE_EVERY: Duration = Duration::from_secs(3600);

/// A change Mailchimp noted may show in its lists a little after one it noted later: each
/// read of changes starts this much before the latest change the last one saw.
const CHANGE_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(2);

/// After a whole read, the first read of changes starts this much before it, in case
/// Mailchimp's clock is behind the console's. Not more: every member sent since is read
/// again, and at a hundred changes a second a minute of them is more than a whole read.
const CLOCK_MARGIN: chrono::TimeDelta = chrono::TimeDelta::seconds(10);

/// The reads kept, by destination.
#[derive(Clone, Default)]
pub struct Fresh {
    inner: Arc<Mutex<Kept>>,
}

#[derive(Default)]
struct Kept {
    reads: HashMap<i64, Reads>,
    statuses: HashMap<i64, Statuses>,
    counted: HashMap<i64, Counted>,
}

/// What the last audience check of a destination counted, and the run that made it.
#[derive(Clone, Copy)]
struct Counted {
    by_status: [i64; 4],
    merge_field_count: Option<i64>,
    run_id: i64,
}

/// The merge fields and tags of a destination's audience.
#[derive(Clone)]
pub struct Reads {
    pub merge_fields: Vec<MergeField>,
    /// The audience's tags by name (a removal needs the tag's ID).
    pub tag_ids: HashMap<String, u64>,
    /// The destination's audience and the time its settings were saved when read.
    settings: (String, i64),
    /// The audience's number of merge fields the last check counted when read.
    merge_field_count: Option<i64>,
    at: Instant,
}

/// The statuses of a destination's audience members that are not the new-member status.
struct Statuses {
    audience_id: String,
    except: MemberStatus,
    whole_at: Instant,
    /// The next read of changes reads the members that changed after this (ISO 8601).
    since: String,
    /// Something says a status changed in Mailchimp since the last read.
    stale: bool,
    members: HashMap<Hash, MemberStatus>,
}

/// How current the statuses a run sends with must be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Read whole (a person, the schedule or a full resync sees the audience as it is).
    Whole,
    /// As kept, unless something says a status changed since (a run kept in sync).
    Kept,
    /// The changes since the last read, read now.
    Current,
}

/// What a status read found.
pub struct StatusRead {
    /// Every member whose status is not the new-member status.
    pub members: HashMap<Hash, MemberStatus>,
    /// The members read (all of them after a whole read), as (address, status).
    pub read: Vec<(String, MemberStatus)>,
    /// Only the members changed since the last read were read (or none: kept as they were).
    pub changes_only: bool,
    /// They were read now, whole or the changes since the last read.
    pub current: bool,
}

impl Fresh {
    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The merge fields and tags read less than [`FRESH_FOR`] ago for the destination as it
    /// is now, holding every tag in `tags`, while the audience checks count as many merge
    /// fields as when they were read.
    pub fn reads(&self, destination: &Destination, tags: &[String]) -> Option<Reads> {
        let kept = self.kept();
        let reads = kept.reads.get(&destination.id)?;
        let counted = kept
            .counted
            .get(&destination.id)
            .map(|c| c.merge_field_count);
        let fresh = reads.at.elapsed() < FRESH_FOR
            && reads.settings == settings_of(destination)
            && counted.is_none_or(|count| count == reads.merge_field_count)
            && tags.iter().all(|t| reads.tag_ids.contains_key(t));
        fresh.then(|| reads.clone())
    }

    /// Notes what an audience check found (made by the run `run_id`): the statuses kept
    /// become stale when the numbers of members by status moved other than the runs since
    /// explain (they only add members with the new-member status), and the merge fields
    /// when their number moved.
    pub async fn counted(
        &self,
        db: &Db,
        destination: &Destination,
        new_status: MemberStatus,
        found: &AudienceCheck,
        run_id: i64,
    ) -> sqlx::Result<()> {
        let before = self.kept().counted.get(&destination.id).copied();
        let moved = match before {
            Some(before) => {
                let created =
                    crate::store::drift::created_since(db.pool(), destination.id, before.run_id)
                        .await?;
                let mut expected = before.by_status;
                expected[AudienceCheck::bucket(new_status)] += created;
                expected != found.by_status
            }
            None => false,
        };
        let mut kept = self.kept();
        if moved {
            if let Some(statuses) = kept.statuses.get_mut(&destination.id) {
                tracing::debug!(
                    destination_id = destination.id,
                    "member statuses changed in Mailchimp: the next run reads the changes"
                );
                statuses.stale = true;
            }
        }
        kept.counted.insert(
            destination.id,
            Counted {
                by_status: found.by_status,
                merge_field_count: found.merge_field_count,
                run_id,
            },
        );
        Ok(())
    }

    /// A status changed in Mailchimp (a refusal said so): the next read of statuses reads
    /// the changes.
    pub fn statuses_changed(&self, destination_id: i64) {
        if let Some(statuses) = self.kept().statuses.get_mut(&destination_id) {
            statuses.stale = true;
        }
    }

    pub fn keep_reads(
        &self,
        destination: &Destination,
        merge_fields: Vec<MergeField>,
        tag_ids: HashMap<String, u64>,
    ) {
        let mut kept = self.kept();
        let merge_field_count = kept
            .counted
            .get(&destination.id)
            .and_then(|c| c.merge_field_count);
        let reads = Reads {
            merge_fields,
            tag_ids,
            settings: settings_of(destination),
            merge_field_count,
            at: Instant::now(),
        };
        kept.reads.insert(destination.id, reads);
    }

    /// The next run reads the merge fields and tags again.
    pub fn forget_reads(&self, destination_id: i64) {
        self.kept().reads.remove(&destination_id);
    }

    /// Everything kept of a destination goes (it was removed).
    pub fn forget(&self, destination_id: i64) {
        let mut kept = self.kept();
        kept.reads.remove(&destination_id);
        kept.statuses.remove(&destination_id);
        kept.counted.remove(&destination_id);
    }

    /// The statuses a run sends with: read whole when none are kept for this audience and
    /// new-member status, when the last whole read is older than [`WHOLE_EVERY`], or when
    /// the run needs them whole; as kept when it needs them [`Need::Kept`] and nothing says
    /// one changed; otherwise only the members that changed since the last read (the
    /// members the runs since sent, and those whose status changed in Mailchimp), unless
    /// they are more than a whole read would read.
    pub async fn statuses(
        &self,
        gateway: &Gateway,
        destination: &Destination,
        except: MemberStatus,
        need: Need,
    ) -> Result<StatusRead, ApiError> {
        let list = &destination.audience_id;
        let usable = |s: &Statuses| {
            need != Need::Whole
                && s.audience_id == *list
                && s.except == except
                && s.whole_at.elapsed() < WHOLE_EVERY
        };
        if need == Need::Kept {
            let kept = self.kept();
            let as_kept = kept.statuses.get(&destination.id);
            if let Some(statuses) = as_kept.filter(|s| usable(s) && !s.stale) {
                return Ok(StatusRead {
                    members: statuses.members.clone(),
                    read: Vec::new(),
                    changes_only: true,
                    current: false,
                });
            }
        }
        let kept = self
            .kept()
            .statuses
            .remove(&destination.id)
            .filter(|s| usable(s));
        let mut read = Vec::new();
        let mut changes_only = false;
        let mut statuses = None;
        if let Some(mut kept) = kept {
            // Reading the changes must cost no more than reading the statuses whole (after a
            // big run, the changes are mostly the members it sent).
            let at_most = (kept.members.len() / PAGE + MemberStatus::ALL.len()) * PAGE;
            let mut latest: Option<DateTime<Utc>> = None;
            changes_only = gateway
                .changed_members(list, &kept.since, at_most, |email, status, changed| {
                    read.push((email.to_owned(), status));
                    if let Some(at) = parse(changed) {
                        latest = Some(latest.map_or(at, |l| l.max(at)));
                    }
                })
                .await?;
            if changes_only {
                for (email, status) in &read {
                    let hash = crate::domain::subscriber_digest(email);
                    if *status == except {
                        kept.members.remove(&hash);
                    } else {
                        kept.members.insert(hash, *status);
                    }
                }
                if let Some(next) = latest.map(|l| l - CHANGE_MARGIN) {
                    if parse(&kept.since).is_none_or(|before| next > before) {
                        kept.since = iso(next);
                    }
                }
                kept.stale = false;
                statuses = Some(kept);
            }
        }
        let statuses = match statuses {
            Some(statuses) => statuses,
            None => {
                let started = Utc::now();
                gateway
                    .statuses(list, except, |email, status| {
                        read.push((email.to_owned(), status));
                    })
                    .await?;
                let members = read
                    .iter()
                    .map(|(email, status)| (crate::domain::subscriber_digest(email), *status))
                    .collect();
                Statuses {
                    audience_id: list.clone(),
                    except,
                    whole_at: Instant::now(),
                    since: iso(started - CLOCK_MARGIN),
                    stale: false,
                    members,
                }
            }
        };
        let members = statuses.members.clone();
        self.kept().statuses.insert(destination.id, statuses);
        Ok(StatusRead {
            members,
            read,
            changes_only,
            current: true,
        })
    }
}

fn parse(at: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(at)
        .ok()
        .map(|at| at.with_timezone(&Utc))
}

/// What the kept reads depend on: the audience, and when the destination was last saved.
fn settings_of(destination: &Destination) -> (String, i64) {
    (destination.audience_id.clone(), destination.updated_at)
}

/// A time as Mailchimp writes it.
fn iso(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_written_as_mailchimp_writes_them() {
        let at = DateTime::parse_from_rfc3339("2026-12-07T21:30:05+00:00")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(iso(at), "2026-12-07T21:30:05+00:00");
        assert_eq!(iso(at - CHANGE_MARGIN), "2026-12-07T21:30:03+00:00");
        assert_eq!(parse("2026-12-07T21:30:05+00:00"), Some(at));
    }
}
