//! A run's first call: is the audience still what the ledger says? Members can be archived
//! or deleted in Mailchimp, an audience emptied, a credential pointed at another account,
//! and a ledger trusted blindly would report them "unchanged" for ever.
//!
//! The check is one small read of the audience (its identity and its number of contacts),
//! made at most once a minute ([`CHECK_EVERY`]) for runs that follow each other closely.
//! Since the last check the audience can only have grown by what the runs since created,
//! unless someone removed members: fewer contacts than that, or another audience under the
//! same ID, and the run reads the audience's members (1,000 a page, two fields each) and
//! repairs the ledger. Members that are gone are forgotten, so the run sends them again;
//! those the ledger knew as unsubscribed or cleaned are kept out for good (never
//! re-subscribed), and a permanently deleted address is refused by Mailchimp when sent and
//! then never tried again, as any refusal for good.

use std::collections::HashMap;

use crate::db::{Db, now_millis};
use crate::domain::MemberStatus;
use crate::export::plan::{Hash, hash_of};
use crate::mailchimp::client::ApiError;
use crate::mailchimp::gateway::{AudienceCheck, Gateway};
use crate::store::destinations::Destination;
use crate::store::drift::{self, Check};
use crate::store::runs;

/// Why a member the ledger knew as opted out is not sent again once gone from the audience.
pub const KEPT_OUT: &str = "Opted out, then left the audience";

/// What a repair did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Repair {
    /// The ledger's members that were missing from the audience.
    pub missing: i64,
    /// Of those, the ones sent again (the others had opted out).
    pub resent: i64,
}

/// What a run's check found: the audience as read (when it was read, at most once a
/// minute) and the ledger's repair (when the audience drifted).
#[derive(Debug, Default)]
pub struct Checked {
    pub found: Option<AudienceCheck>,
    pub repair: Option<Repair>,
}

/// Why the check could not be made.
#[derive(Debug)]
pub enum DriftError {
    /// Mailchimp could not be read (the run decides what that means).
    Mailchimp(ApiError),
    /// The console's own database failed.
    Internal(anyhow::Error),
}

impl From<sqlx::Error> for DriftError {
    fn from(err: sqlx::Error) -> Self {
        DriftError::Internal(err.into())
    }
}

impl From<ApiError> for DriftError {
    fn from(err: ApiError) -> Self {
        DriftError::Mailchimp(err)
    }
}

/// How often a destination's audience is checked: runs less than this apart (a destination
/// kept in sync) share a check, unless `whole` (a full resync) asks for one.
pub const CHECK_EVERY: std::time::Duration = std::time::Duration::from_secs(60);

/// Whether the audience `found` now changed behind the console since the check `before`
/// (the last one kept): another audience under the same ID, or fewer contacts than that
/// check saw plus what the runs since created. With no check, the ledger's size is the floor.
/// A run's check and a preview both decide by it.
pub async fn drifted(
    db: &Db,
    destination: &Destination,
    before: Option<Check>,
    found: &AudienceCheck,
) -> sqlx::Result<bool> {
    let pool = db.pool();
    Ok(match before {
        Some(before) if before.audience_id == destination.audience_id => {
            let expected =
                before.contacts + drift::created_since(pool, destination.id, before.run_id).await?;
            before.date_created != found.date_created || found.contacts < expected
        }
        _ => found.contacts < drift::ledger_members(pool, destination.id).await?,
    })
}

/// Checks the audience against the ledger and repairs the ledger if members went missing.
#[tracing::instrument(name = "audience check", skip_all, fields(destination_id = destination.id, run_id = run_id))]
pub async fn check(
    db: &Db,
    gateway: &Gateway,
    destination: &Destination,
    run_id: i64,
    whole: bool,
) -> Result<Checked, DriftError> {
    let pool = db.pool();
    let list = &destination.audience_id;
    let before = drift::find(pool, destination.id).await?;
    let recent = before.as_ref().is_some_and(|(check, checked_at)| {
        check.audience_id == *list && now_millis() - checked_at < CHECK_EVERY.as_millis() as i64
    });
    if recent && !whole {
        return Ok(Checked::default());
    }
    let found = gateway.audience_check(list).await?;
    let drifted = drifted(db, destination, before.map(|(check, _)| check), &found).await?;
    let mut conn = crate::db::begin_write(pool).await?;
    let check = Check {
        audience_id: list.clone(),
        date_created: found.date_created.clone(),
        contacts: found.contacts,
        run_id,
    };
    drift::put(&mut conn, destination.id, &check).await?;
    conn.commit().await?;
    if !drifted {
        return Ok(Checked {
            found: Some(found),
            repair: None,
        });
    }
    tracing::info!(
        destination_id = destination.id,
        contacts = found.contacts,
        "the audience changed behind the console: reading its members to repair the ledger"
    );
    let mut present: HashMap<Hash, MemberStatus> = HashMap::new();
    gateway
        .members(list, |email, status| {
            present.insert(crate::domain::subscriber_digest(email), status);
        })
        .await?;
    let mut gone = Vec::new();
    let mut opted_out = Vec::new();
    let mut changed = Vec::new();
    for (hex, status) in drift::ledger_statuses(pool, destination.id).await? {
        let Some(hash) = hash_of(&hex) else {
            continue;
        };
        match present.get(&hash) {
            None if matches!(status.as_str(), "unsubscribed" | "cleaned") => opted_out.push(hex),
            None => gone.push(hex),
            Some(now) if now.as_str() != status => changed.push((hex, now.as_str())),
            Some(_) => {}
        }
    }
    let repair = Repair {
        missing: (gone.len() + opted_out.len()) as i64,
        resent: gone.len() as i64,
    };
    let mut tx = crate::db::begin_write(pool).await?;
    drift::forget(&mut tx, destination.id, &gone).await?;
    drift::keep_out(&mut tx, destination.id, &opted_out, KEPT_OUT).await?;
    drift::set_statuses(&mut tx, destination.id, &changed).await?;
    runs::note(&mut *tx, run_id, runs::Note::RepairMissing(repair.missing)).await?;
    tx.commit().await?;
    tracing::info!(
        destination_id = destination.id,
        missing = repair.missing,
        resent = repair.resent,
        status_changes = changed.len(),
        "the ledger was repaired"
    );
    Ok(Checked {
        found: Some(found),
        repair: Some(repair),
    })
}
