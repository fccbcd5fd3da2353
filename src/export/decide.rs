//! What happens to one member of an export, decided once: a run acts on the decision and a
//! preview counts it, so a run that follows its preview with nothing changed in between does
//! what the preview said.
//!
//! A member of the plan is skipped (Mailchimp refused it for good before, or it opted out and
//! then left the audience), fails (Mailchimp would refuse one of its merge-field values), stays
//! as it is, or is sent in a batch upsert (new, its data changed, or it gains a tag). Whatever
//! its fate, it loses the tags it has and should not. A member the ledger has and the plan does
//! not keeps only the ownership tag.

use crate::export::drift::KEPT_OUT;
use crate::export::engine::OWNERSHIP_TAG;
use crate::export::ledger_index::{Index, NO_TAGS, Slot};
use crate::export::plan::{Hash, Record};
use crate::export::webhooks::ADDRESS_CHANGED;
use crate::mailchimp::merge_rules::MergeRules;

/// What is known of a member's presence in the audience.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Nothing but the ledger: a run's case. The audience check before a run has already
    /// forgotten members who left the audience, so the ledger is what Mailchimp has.
    Ledger,
    /// The audience was read and the member is not in it.
    Absent,
    /// The audience was read and the member is in it.
    Present,
}

/// A member's tags: those it has (as the ledger knows them) and those it should have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tags {
    pub now: u32,
    pub wanted: u32,
}

impl Tags {
    /// Tags it has and should not: each taken off by a tag call.
    pub fn losing(&self, index: &Index) -> Vec<u16> {
        let want = index.tag_sets.tags(self.wanted);
        index
            .tag_sets
            .tags(self.now)
            .iter()
            .copied()
            .filter(|t| !want.contains(t))
            .collect()
    }

    /// Tags it should have and has not: carried by its upsert.
    pub fn gaining(&self, index: &Index) -> Vec<u16> {
        let now = index.tag_sets.tags(self.now);
        index
            .tag_sets
            .tags(self.wanted)
            .iter()
            .copied()
            .filter(|t| !now.contains(t))
            .collect()
    }
}

/// What happens to a member of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// Not sent, for a reason that holds until the person changes something.
    Skip { title: String, detail: &'static str },
    /// Mailchimp would refuse the member for this reason. `sent`: a run sends it all the
    /// same and learns the refusal from the answer (a preview alone knows the member is new).
    Fail {
        reason: String,
        tags: Tags,
        sent: bool,
    },
    /// Nothing to send.
    Unchanged { tags: Tags },
    /// Sent in a batch upsert. `data`: its merge fields go out (it is new, its data changed,
    /// or this is a full resync); otherwise it only gains tags and counts as unchanged.
    /// `new`: the audience does not have it (as far as is known).
    Send { data: bool, new: bool, tags: Tags },
}

/// The rules of one export: its ownership tag, whether it resends every member's data, and
/// the audience's merge fields.
pub struct Decider {
    pub ownership: u16,
    full: bool,
    rules: MergeRules,
}

impl Decider {
    pub fn new(index: &mut Index, full: bool, rules: MergeRules) -> Self {
        Self {
            ownership: index.tag_names.intern(OWNERSHIP_TAG),
            full,
            rules,
        }
    }

    /// The fate of one member of the plan. Marks its ledger entry as planned.
    pub fn member(&self, index: &mut Index, record: &Record, presence: Presence) -> Fate {
        let wanted: Vec<u16> = std::iter::once(self.ownership)
            .chain(record.tags.iter().map(|t| index.tag_names.intern(t)))
            .collect();
        let wanted = index.tag_sets.intern(wanted);
        let known = index.get_mut(record.hash).map(|slot| {
            slot.planned = true;
            *slot
        });
        let (now, data) = match known {
            Some(slot) if slot.refused.is_some() => {
                let title = index.statuses.name(slot.refused.unwrap_or(0)).to_owned();
                let detail = if title == ADDRESS_CHANGED {
                    "The contact moved to another address in Mailchimp; this one is not sent \
                     again. Change the profile's address to export it under the new one."
                } else {
                    "Mailchimp refused this contact for good before; it is not sent again."
                };
                return Fate::Skip { title, detail };
            }
            // Gone from the audience: the run's audience check forgets it and sends it
            // again, unless it had opted out.
            Some(slot) if presence == Presence::Absent => {
                if matches!(index.statuses.name(slot.status), "unsubscribed" | "cleaned") {
                    return Fate::Skip {
                        title: KEPT_OUT.to_owned(),
                        detail: "The contact opted out and then left the audience; it is not \
                                 added again.",
                    };
                }
                (NO_TAGS, true)
            }
            Some(slot) => (slot.tags, self.full || slot.content != record.content_hash),
            None => (NO_TAGS, true),
        };
        let after = index.tag_sets.union(now, wanted);
        let tags = Tags { now, wanted };
        if !data && after == now {
            return Fate::Unchanged { tags };
        }
        let new = match presence {
            Presence::Ledger => known.is_none(),
            Presence::Absent => true,
            Presence::Present => false,
        };
        // Mailchimp refuses a whole member for one value it does not take: such a member is
        // not sent.
        if let Some(reason) = self.rules.refusal(&record.merge_fields) {
            let sent = false;
            return Fate::Fail { reason, tags, sent };
        }
        // A new member with a required field left blank is refused too. Only a read of the
        // audience knows the member is new: a run sends it and learns from the answer.
        let as_new = (presence == Presence::Absent)
            .then(|| self.rules.refusal_as_new(&record.merge_fields))
            .flatten();
        match as_new {
            Some(reason) => Fate::Fail {
                reason,
                tags,
                sent: true,
            },
            None => Fate::Send { data, new, tags },
        }
    }

    /// Members the ledger has and the plan does not, with tags to lose: they keep only the
    /// ownership tag (tags of segments the destination no longer exports go too).
    pub fn leavers(&self, index: &mut Index) -> Vec<(Hash, Tags)> {
        let only_ours = index.tag_sets.intern(vec![self.ownership]);
        let leaving: Vec<Slot> = index
            .leavers()
            .filter(|s| s.tags != only_ours && s.tags != NO_TAGS)
            .copied()
            .collect();
        leaving
            .into_iter()
            .map(|slot| {
                let tags = Tags {
                    now: slot.tags,
                    wanted: only_ours,
                };
                (slot.hash, tags)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mailchimp::client::MergeField;

    fn record(email: &str, city: Option<&str>, tags: &[&str]) -> Record {
        let mut merge_fields = serde_json::Map::new();
        if let Some(city) = city {
            merge_fields.insert("CITY".into(), city.into());
        }
        Record {
            customer_id: email.into(),
            email: email.into(),
            hash: crate::domain::subscriber_digest(email),
            merge_fields,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            content_hash: 7,
        }
    }

    fn rules() -> MergeRules {
        MergeRules::new(&[MergeField {
            tag: "CITY".into(),
            name: "City".into(),
            kind: "text".into(),
            required: true,
            default_value: String::new(),
            options: None,
        }])
    }

    #[test]
    fn a_new_member_without_a_required_field_is_sent_by_a_run_and_failed_by_a_preview() {
        let mut index = Index::default();
        let decider = Decider::new(&mut index, false, rules());
        let ada = record("ada@example.com", None, &["Berlin"]);
        assert!(matches!(
            decider.member(&mut index, &ada, Presence::Ledger),
            Fate::Send {
                data: true,
                new: true,
                ..
            }
        ));
        let fate = decider.member(&mut index, &ada, Presence::Absent);
        let Fate::Fail { reason, sent, tags } = fate else {
            panic!("{fate:?}")
        };
        assert!(sent, "a run sends it and Mailchimp refuses it");
        assert!(reason.contains("CITY (City) is required"), "{reason}");
        let gaining: Vec<&str> = tags
            .gaining(&index)
            .into_iter()
            .map(|t| index.tag_names.name(t))
            .collect();
        assert_eq!(gaining, [OWNERSHIP_TAG, "Berlin"]);
        // A value Mailchimp refuses is not sent, whatever is known of the audience.
        let long = record("bob@example.com", Some(&"x".repeat(300)), &[]);
        for presence in [Presence::Ledger, Presence::Absent, Presence::Present] {
            assert!(matches!(
                decider.member(&mut index, &long, presence),
                Fate::Fail { sent: false, .. }
            ));
        }
    }
}
