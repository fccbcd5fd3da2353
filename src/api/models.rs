//! What the API answers, as types: the handlers return them and the served OpenAPI
//! description is derived from them, so the two cannot drift apart.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::domain::FieldType;
use crate::domain::segment_rules::{Condition, Match, Operator};
use crate::store::destinations::{Destination, Stage};
use crate::store::profiles::Outcome;
use crate::store::runs::Run;
use crate::store::segments::{Definition, Segment};

/// A destination as the API shows it.
#[derive(Serialize, ToSchema)]
pub struct DestinationOut {
    pub id: i64,
    pub display_name: String,
    /// Always `mailchimp`.
    #[serde(rename = "type")]
    pub kind: DestinationKind,
    pub status: DestinationStatus,
    /// Which Mailchimp: the real one or the console's built-in sandbox.
    pub mailchimp: MailchimpTarget,
    pub audience_id: String,
    pub audience_name: Option<String>,
    pub email_field: Option<String>,
    pub merge_fields: Vec<MergeFieldOut>,
    pub segment_ids: Vec<i64>,
    pub new_member_status: NewMemberStatusOut,
    /// Changed members are exported within seconds, without a person or the schedule.
    pub keep_in_sync: bool,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
}

impl DestinationOut {
    pub fn of(d: &Destination, segment_ids: &[i64]) -> Self {
        Self {
            id: d.id,
            display_name: d.display_name.clone(),
            kind: DestinationKind::Mailchimp,
            status: match d.stage {
                Stage::Active => DestinationStatus::Active,
                Stage::Removing => DestinationStatus::Removing,
                Stage::Draft => DestinationStatus::Draft,
            },
            mailchimp: match d.target {
                crate::domain::destination::Target::Mailchimp => MailchimpTarget::Mailchimp,
                crate::domain::destination::Target::Sandbox => MailchimpTarget::Sandbox,
            },
            audience_id: d.audience_id.clone(),
            audience_name: d.audience_name.clone(),
            email_field: d.email_field.clone(),
            merge_fields: d
                .field_mappings
                .iter()
                .map(|m| MergeFieldOut {
                    tag: m.tag.clone(),
                    field: m.field.clone(),
                })
                .collect(),
            segment_ids: segment_ids.to_vec(),
            new_member_status: if d.new_member_status == "pending" {
                NewMemberStatusOut::Pending
            } else {
                NewMemberStatusOut::Subscribed
            },
            keep_in_sync: d.keep_in_sync,
            created_at: d.created_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestinationKind {
    Mailchimp,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DestinationStatus {
    Active,
    Draft,
    Removing,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MailchimpTarget {
    Mailchimp,
    Sandbox,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum NewMemberStatusOut {
    Subscribed,
    Pending,
}

/// One merge field filled from one profile field.
#[derive(Serialize, ToSchema)]
#[schema(as = MergeField)]
pub struct MergeFieldOut {
    /// A Mailchimp merge tag: 1 to 10 uppercase letters, digits or underscores.
    #[schema(pattern = "^[A-Z0-9_]{1,10}$", max_length = 10)]
    pub tag: String,
    /// The profile field that fills it.
    pub field: String,
}

#[derive(Serialize, ToSchema)]
pub struct DestinationList {
    pub destinations: Vec<DestinationOut>,
}

/// A run and its counts.
#[derive(Serialize, ToSchema)]
pub struct RunOut {
    pub id: i64,
    pub destination_id: i64,
    pub status: RunStatusOut,
    pub full: bool,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
    pub counts: Counts,
    pub message: Option<String>,
    /// Set when the run found its audience changed in Mailchimp: how many members this
    /// console had sent were missing.
    pub repair_missing: Option<i64>,
}

impl RunOut {
    pub fn of(run: &Run) -> Self {
        Self {
            id: run.id,
            destination_id: run.destination_id,
            status: run.status,
            full: run.full_resync,
            created_at: run.created_at,
            started_at: run.started_at,
            finished_at: run.finished_at,
            counts: run.counters,
            message: run.message.clone(),
            repair_missing: run.repair_missing,
        }
    }
}

pub use crate::store::runs::RunStatus as RunStatusOut;

pub use crate::store::runs::Counters as Counts;

/// A segment: its members as last computed, and its rules (none for a static list).
#[derive(Serialize, ToSchema)]
pub struct SegmentOut {
    pub id: i64,
    pub name: String,
    /// Members as last computed; while `refreshing`, those of the definition before.
    pub member_count: i64,
    pub last_refreshed_at: Option<i64>,
    pub kind: SegmentKind,
    /// True while the members of the definition as saved are being computed (after it was
    /// created or changed); `member_count` is then not theirs yet.
    pub refreshing: bool,
    /// Whether all conditions must hold or any one; null for a static list.
    #[serde(rename = "match")]
    pub match_: Option<Match>,
    /// Null for a static list.
    pub conditions: Option<Vec<ConditionOut>>,
}

impl SegmentOut {
    /// `catalogue`: the profile fields and their types, which tell whether the segment's
    /// members are being computed.
    pub fn of(s: &Segment, catalogue: &HashMap<String, FieldType>) -> Self {
        let rules = match &s.definition {
            Definition::Rules(rules) => Some(rules),
            Definition::Static => None,
        };
        Self {
            id: s.id,
            name: s.name.clone(),
            member_count: s.member_count,
            last_refreshed_at: s.last_refreshed_at,
            kind: if rules.is_some() {
                SegmentKind::Rules
            } else {
                SegmentKind::Static
            },
            refreshing: crate::segments::is_refreshing(s, catalogue),
            match_: rules.map(|r| r.match_),
            conditions: rules.map(|r| r.conditions.iter().map(ConditionOut::of).collect()),
        }
    }
}

/// One condition of a rules segment.
#[derive(Serialize, ToSchema)]
#[schema(as = SegmentCondition)]
pub struct ConditionOut {
    pub field: String,
    pub operator: Operator,
    /// What the field is compared with, as text; `is_empty` and `is_not_empty` use none.
    pub value: String,
}

impl ConditionOut {
    fn of(c: &Condition) -> Self {
        Self {
            field: c.field.clone(),
            operator: c.op,
            value: c.value.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SegmentKind {
    Rules,
    Static,
}

#[derive(Serialize, ToSchema)]
pub struct SegmentList {
    pub segments: Vec<SegmentOut>,
}

/// What a refresh of every segment did.
#[derive(Serialize, ToSchema)]
pub struct RefreshOut {
    pub profiles_scanned: u64,
    pub duration_ms: i64,
    pub segments: Vec<RefreshedSegment>,
}

/// One segment's refresh: its new member count, or why its rules no longer fit.
#[derive(Serialize, ToSchema)]
pub struct RefreshedSegment {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<String>>,
}

/// A profile field's value as sent: text, a number or a boolean, each read as an import
/// reads its cell's text; `null` clears the field.
#[derive(ToSchema)]
#[serde(untagged)]
pub enum FieldValueIn {
    Text(String),
    Number(f64),
    Boolean(bool),
    /// Clears the field.
    Null,
}

/// A profile's fields, by name: the fields given are set and the others kept; `null`
/// clears one. A field the catalogue does not have yet is added, typed from its value.
#[derive(ToSchema)]
pub struct ProfileFieldsIn {
    #[serde(flatten)]
    pub fields: std::collections::HashMap<String, FieldValueIn>,
}

/// One profile of a bulk write: its customer ID and fields, as a PUT's body takes them.
#[derive(ToSchema)]
pub struct ProfileIn {
    /// 1 to 200 characters (a number is read as its text).
    #[schema(min_length = 1, max_length = 200)]
    pub customer_id: String,
    #[serde(flatten)]
    pub fields: std::collections::HashMap<String, FieldValueIn>,
}

/// What a write did to a profile.
pub use crate::store::profiles::Outcome as ProfileOutcome;

/// A profile after a write: its customer ID, what the write did, and its fields now.
#[derive(Serialize, ToSchema)]
pub struct ProfileWritten {
    pub customer_id: String,
    pub outcome: ProfileOutcome,
    /// Every field the profile holds a value for, typed as its field is.
    #[schema(value_type = std::collections::HashMap<String, FieldValueIn>)]
    pub fields: Map<String, Value>,
}

/// What became of one row of a bulk write.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RowOutcome {
    Created,
    Updated,
    Unchanged,
    /// Not written: `reason` says why.
    Rejected,
}

impl From<Outcome> for RowOutcome {
    fn from(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Created => Self::Created,
            Outcome::Updated => Self::Updated,
            Outcome::Unchanged => Self::Unchanged,
        }
    }
}

/// One row of a bulk write, in the order sent.
#[derive(Serialize, ToSchema)]
pub struct RowResult {
    /// A JSON array's row: its place, from 0.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// An NDJSON row: its line, from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The row's customer ID (an over-long one in part); absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer_id: Option<String>,
    pub outcome: RowOutcome,
    /// Why the row was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A bulk write's rows, in the order sent, and how many had each outcome.
#[derive(Serialize, ToSchema, Default)]
pub struct ProfilesPushed {
    pub results: Vec<RowResult>,
    pub created: u64,
    pub updated: u64,
    pub unchanged: u64,
    pub rejected: u64,
}

impl ProfilesPushed {
    /// Adds the next row's result and counts it.
    pub fn add(&mut self, result: RowResult) {
        match result.outcome {
            RowOutcome::Created => self.created += 1,
            RowOutcome::Updated => self.updated += 1,
            RowOutcome::Unchanged => self.unchanged += 1,
            RowOutcome::Rejected => self.rejected += 1,
        }
        self.results.push(result);
    }
}
