//! Forgetting a customer everywhere: the profile and its traces leave the console, every
//! destination that exported it deletes the member for good in Mailchimp (the erasure
//! Mailchimp offers, `…/actions/delete-permanent`), and each ledger keeps only that the
//! address hash was forgotten, so a later import of the same address is not sent.
//!
//! The console's side is one transaction. Mailchimp's side follows at once; a deletion
//! Mailchimp could not take (unreachable, throttled, a credential to renew) stays pending
//! and the destination's next run makes it before anything else.

use crate::export::engine::{Engine, fatal_message};
use crate::mailchimp::gateway::Archived;
use crate::store::audit::{self, Actor};
use crate::store::destinations::Destination;
use crate::store::forgetting;

/// What became of the customer in one destination's audience.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Erasure {
    pub destination_id: i64,
    pub destination: String,
    /// `deleted` (for good, in Mailchimp), `not_in_audience` (nothing to delete) or
    /// `pending` (made by the destination's next run; `detail` says why).
    pub outcome: ErasureOutcome,
    pub detail: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErasureOutcome {
    Deleted,
    NotInAudience,
    Pending,
}

impl ErasureOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureOutcome::Deleted => "deleted",
            ErasureOutcome::NotInAudience => "not_in_audience",
            ErasureOutcome::Pending => "pending",
        }
    }
}

/// A customer forgotten.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Forgotten {
    pub customer_id: String,
    /// The destinations that had exported the customer.
    pub erasures: Vec<Erasure>,
}

/// Forgets a customer; `None` when no profile has this customer ID.
#[tracing::instrument(name = "forget", skip_all)]
pub async fn forget(
    engine: &Engine,
    customer_id: &str,
    actor: &Actor<'_>,
) -> anyhow::Result<Option<Forgotten>> {
    let pool = engine.db.pool();
    let Some(profile) = crate::store::profiles::find_by_customer(pool, customer_id).await? else {
        return Ok(None);
    };
    let destinations = crate::store::destinations::list(pool).await?;
    let mut tx = crate::db::begin_write(pool).await?;
    if !forgetting::take_profile(&mut tx, profile.id).await? {
        // Forgotten by a request that came at the same moment.
        return Ok(None);
    }
    // The profile leaves its segments (and their counts) at once.
    crate::segments::follow::follow(
        &mut tx,
        engine.db.backend(),
        crate::store::profiles::Which::Profiles(&[profile.id]),
    )
    .await?;
    let exported = forgetting::ledger_entries(&mut tx, customer_id).await?;
    // Every destination keeps the forgotten address out from now on: the address it would
    // read from the profile, and any address it exported for the customer.
    let mut tombstones: Vec<(i64, String, bool)> = exported.clone();
    for destination in &destinations {
        if let Some(hash) = address_hash(&profile.attributes, destination) {
            if !tombstones
                .iter()
                .any(|(d, h, _)| *d == destination.id && *h == hash)
            {
                tombstones.push((destination.id, hash, false));
            }
        }
    }
    forgetting::delete_traces(&mut tx, profile.id, customer_id).await?;
    for (destination_id, hash, in_mailchimp) in &tombstones {
        forgetting::tombstone(&mut tx, *destination_id, hash, *in_mailchimp).await?;
        // The next run reads the whole plan, not only what changed.
        crate::store::marks::clear(&mut *tx, *destination_id).await?;
    }
    let erasing: Vec<&Destination> = destinations
        .iter()
        .filter(|d| exported.iter().any(|(id, _, sent)| *id == d.id && *sent))
        .collect();
    audit::record(
        &mut *tx,
        actor,
        "forget",
        None,
        "a customer",
        &format!(
            "profile and its traces deleted; deletion for good requested in {} audience(s)",
            erasing.len()
        ),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        destinations = erasing.len(),
        "a customer was forgotten in the console"
    );
    let mut erasures = Vec::new();
    for destination in erasing {
        for (_, hash, _) in exported
            .iter()
            .filter(|(id, _, sent)| *id == destination.id && *sent)
        {
            erasures.push(erase(engine, destination, hash).await?);
        }
    }
    Ok(Some(Forgotten {
        customer_id: customer_id.to_owned(),
        erasures,
    }))
}

/// Makes the deletions still pending for a destination (its run does this first);
/// returns how many remain pending.
pub async fn erase_pending(engine: &Engine, destination: &Destination) -> anyhow::Result<usize> {
    let hashes = forgetting::pending(engine.db.pool(), destination.id).await?;
    let mut left = 0;
    for hash in hashes {
        if erase(engine, destination, &hash).await?.outcome == ErasureOutcome::Pending {
            left += 1;
        }
    }
    Ok(left)
}

/// Deletes one member for good in a destination's audience.
async fn erase(engine: &Engine, destination: &Destination, hash: &str) -> anyhow::Result<Erasure> {
    let pool = engine.db.pool();
    let erasure = |outcome, detail: String| Erasure {
        destination_id: destination.id,
        destination: destination.display_name.clone(),
        outcome,
        detail,
    };
    let gateway = match engine.gateway(destination) {
        Ok(gateway) => gateway,
        Err(err) => {
            return Ok(erasure(
                ErasureOutcome::Pending,
                format!(
                    "The destination's credential cannot be used ({err}); the deletion is made once it is authenticated again and exports."
                ),
            ));
        }
    };
    match gateway
        .delete_permanently(&destination.audience_id, hash)
        .await
    {
        Ok(done) => {
            let was_there = done == Archived::Done;
            forgetting::erased(pool, destination.id, hash, was_there).await?;
            Ok(if was_there {
                erasure(
                    ErasureOutcome::Deleted,
                    "Deleted for good in Mailchimp.".into(),
                )
            } else {
                erasure(
                    ErasureOutcome::NotInAudience,
                    "Not in the audience any more: nothing to delete.".into(),
                )
            })
        }
        Err(err) => {
            tracing::warn!(destination_id = destination.id, error = %err, "a deletion for good is pending");
            Ok(erasure(
                ErasureOutcome::Pending,
                format!(
                    "Mailchimp did not take the deletion ({}); the destination's next run makes it.",
                    fatal_message(&err)
                ),
            ))
        }
    }
}

/// The subscriber hash of the address a destination would read from these attributes.
fn address_hash(attributes: &str, destination: &Destination) -> Option<String> {
    let field = destination.email_field.as_deref()?;
    let values: serde_json::Value = serde_json::from_str(attributes).ok()?;
    let email = values.get(field)?.as_str()?.trim();
    let email = crate::domain::EmailAddress::parse(email).ok()?;
    Some(crate::domain::subscriber_hash(email.as_str()))
}
