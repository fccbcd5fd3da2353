//! Remove a destination: at once when Mailchimp is left as it is; otherwise after a clean-up
//! run (its tags taken off, or the members it added archived), after which the destination
//! and its credential go. Its queued and running exports are canceled first.

use crate::export::Engine;
use crate::store::audit::{self, Actor};
use crate::store::destinations::{self, Destination};
use crate::store::runs::{self, RunKind};

/// What happens in Mailchimp when a destination is removed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InMailchimp {
    /// Members stay as they are; the destination goes now.
    Leave,
    /// Its tags come off the members it tagged, then it goes.
    RemoveTags,
    /// The members it added are archived, then it goes.
    ArchiveMembers,
}

impl InMailchimp {
    /// The form's value: `leave`, `remove_tags` or `archive_members`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "leave" => Some(Self::Leave),
            "remove_tags" => Some(Self::RemoveTags),
            "archive_members" => Some(Self::ArchiveMembers),
            _ => None,
        }
    }

    fn cleanup(self) -> Option<RunKind> {
        match self {
            Self::Leave => None,
            Self::RemoveTags => Some(RunKind::RemoveTags),
            Self::ArchiveMembers => Some(RunKind::ArchiveMembers),
        }
    }
}

/// What a removal did.
#[derive(Debug, PartialEq, Eq)]
pub enum Removed {
    /// The destination and its credential are gone.
    Now,
    /// A clean-up run is queued; the destination goes when it ends.
    AfterCleanup { run_id: i64, kind: RunKind },
}

/// What a clean-up of this kind does, for people.
pub fn cleanup_words(kind: RunKind) -> &'static str {
    if kind == RunKind::RemoveTags {
        "taking its tags off the members"
    } else {
        "archiving the members it added"
    }
}

/// Removes a destination (the caller has checked the person may, and that no clean-up of
/// it is running).
pub async fn remove(
    engine: &Engine,
    destination: &Destination,
    how: InMailchimp,
    actor: &Actor<'_>,
) -> anyhow::Result<Removed> {
    let user_id = actor.user_id;
    let pool = engine.db.pool();
    let id = destination.id;
    runs::cancel_all(pool, id).await?;
    if how == InMailchimp::Leave {
        // Mailchimp stops calling the console for a destination that is gone.
        crate::export::webhooks::remove(engine, destination).await;
    }
    let mut tx = crate::db::begin_write(pool).await?;
    let (removed, details) = match how.cleanup() {
        None => {
            destinations::retire(&mut tx, id).await?;
            let details = "members left as they are in Mailchimp; credential deleted";
            (Removed::Now, details.to_owned())
        }
        Some(kind) => {
            destinations::mark_removing(&mut *tx, id).await?;
            let run_id = runs::enqueue_cleanup(&mut tx, id, kind, user_id).await?;
            let details = format!("clean-up queued: {}", cleanup_words(kind));
            (Removed::AfterCleanup { run_id, kind }, details)
        }
    };
    let name = &destination.display_name;
    audit::record(&mut *tx, actor, "remove", Some(id), name, &details).await?;
    tx.commit().await?;
    tracing::info!(
        user_id,
        destination_id = id,
        "destination removal requested"
    );
    Ok(removed)
}
