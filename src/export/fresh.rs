//! What a run reads of its audience before it sends, kept between runs while it is fresh, so
//! that a destination kept in sync pays for what changed rather than for every run:
//!
//! - the merge fields and the tags by name (and the webhook's check) are read again after
//!   [`FRESH_FOR`], when the destination's settings changed, when a tag its segments send is
//!   not among them, and after a run that did not end clean;
//! - the statuses of the members whose status is not the new-member status are read whole
//!   once (and every [`WHOLE_EVERY`]); after that a run reads only the members that changed
//!   since the last read (`since_last_changed`: those the last run sent, and those whose
//!   status changed in Mailchimp), and the ledger notes the statuses that changed.
//!
//! They live in this console's memory: after a restart, or on another console, the first run
//! reads them again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};

use crate::domain::MemberStatus;
use crate::export::plan::Hash;
use crate::mailchimp::client::{ApiError, MergeField};
use crate::mailchimp::gateway::Gateway;
use crate::store::destinations::Destination;

/// Members a page of Mailchimp's members list holds.
const PAGE: usize = 1000;

/// How long the merge fields, the tags and the webhook's check are reused.
pub const FRESH_FOR: Duration = Duration::from_secs(60);

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
}

/// The merge fields and tags of a destination's audience.
#[derive(Clone)]
pub struct Reads {
    pub merge_fields: Vec<MergeField>,
    /// The audience's tags by name (a removal needs the tag's ID).
    pub tag_ids: HashMap<String, u64>,
    /// The destination's audience and the time its settings were saved when read.
    settings: (String, i64),
    at: Instant,
}

/// The statuses of a destination's audience members that are not the new-member status.
struct Statuses {
    audience_id: String,
    except: MemberStatus,
    whole_at: Instant,
    /// The next read of changes reads the members that changed after this (ISO 8601).
    since: String,
    members: HashMap<Hash, MemberStatus>,
}

/// What a status read found.
pub struct StatusRead {
    /// Every member whose status is not the new-member status.
    pub members: HashMap<Hash, MemberStatus>,
    /// The members read (all of them after a whole read), as (address, status).
    pub read: Vec<(String, MemberStatus)>,
    /// Only the members changed since the last read were read.
    pub changes_only: bool,
}

impl Fresh {
    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The merge fields and tags read less than a minute ago for the destination as it is
    /// now, holding every tag in `tags`.
    pub fn reads(&self, destination: &Destination, tags: &[String]) -> Option<Reads> {
        let kept = self.kept();
        let reads = kept.reads.get(&destination.id)?;
        let fresh = reads.at.elapsed() < FRESH_FOR
            && reads.settings == settings_of(destination)
            && tags.iter().all(|t| reads.tag_ids.contains_key(t));
        fresh.then(|| reads.clone())
    }

    pub fn keep_reads(
        &self,
        destination: &Destination,
        merge_fields: Vec<MergeField>,
        tag_ids: HashMap<String, u64>,
    ) {
        let reads = Reads {
            merge_fields,
            tag_ids,
            settings: settings_of(destination),
            at: Instant::now(),
        };
        self.kept().reads.insert(destination.id, reads);
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
    }

    /// The statuses a run sends with: read whole when none are kept for this audience and
    /// new-member status, when the last whole read is older than [`WHOLE_EVERY`], or when
    /// `whole`; otherwise only the members that changed since the last read (one page when
    /// few did: the members the last run sent, and those whose status changed in Mailchimp),
    /// unless they are more than a whole read would read.
    pub async fn statuses(
        &self,
        gateway: &Gateway,
        destination: &Destination,
        except: MemberStatus,
        whole: bool,
    ) -> Result<StatusRead, ApiError> {
        let list = &destination.audience_id;
        let kept = self.kept().statuses.remove(&destination.id).filter(|s| {
            !whole
                && s.audience_id == *list
                && s.except == except
                && s.whole_at.elapsed() < WHOLE_EVERY
        });
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
