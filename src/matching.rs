//! Data matching, checked one way for the configure page and the API: the profile field
//! that holds the email address, the merge fields filled from profile fields, the segments
//! to export (at most [`MAX_SEGMENTS`], at most [`MAX_EXPORT_PROFILES`] distinct profiles)
//! and the status of new members. Each layer words a [`MatchingRefusal`] once (a sentence under its
//! section on the page, a field error in the API).

use std::collections::BTreeSet;

use sqlx::AnyPool;

use crate::domain::destination::{MAX_EXPORT_PROFILES, MergeTag, NewMemberStatus};
use crate::domain::{FieldType, Invalid};
use crate::store::destinations::{self, FieldMapping};
use crate::store::{fields, segments};

/// The most segments one destination exports (each becomes a tag in the audience).
pub const MAX_SEGMENTS: usize = 1_000;

/// What was asked for, as typed.
pub struct Asked<'a> {
    pub email_field: &'a str,
    /// Merge tag and profile field, row by row.
    pub mappings: &'a [FieldMapping],
    pub segment_ids: &'a [i64],
    pub new_member_status: &'a str,
}

/// What passed: the merge tags in Mailchimp's form, the status typed.
#[derive(Debug)]
pub struct Checked {
    pub mappings: Vec<FieldMapping>,
    pub new_member_status: NewMemberStatus,
}

/// One thing to fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MatchingRefusal {
    /// The email field is not a profile field.
    EmailField,
    /// Row `index` names no profile field the console has.
    MappingField {
        index: usize,
        tag: String,
    },
    /// Row `index`'s merge tag is not one Mailchimp takes (the domain says why).
    MergeTag {
        index: usize,
        why: Invalid,
    },
    /// Row `index` fills a merge field an earlier row fills too.
    MergeTagTwice {
        index: usize,
        tag: String,
    },
    NoSegments,
    TooManySegments,
    SegmentsTwice(Vec<i64>),
    NoSuchSegment(i64),
    TooManyProfiles(i64),
    Status(String),
}

impl MatchingRefusal {
    /// The request field it is about, as the API names it.
    pub fn field(&self) -> String {
        match self {
            MatchingRefusal::EmailField => "email_field".into(),
            MatchingRefusal::MappingField { index, .. } => format!("merge_fields[{index}].field"),
            MatchingRefusal::MergeTag { index, .. }
            | MatchingRefusal::MergeTagTwice { index, .. } => {
                format!("merge_fields[{index}].tag")
            }
            MatchingRefusal::NoSegments
            | MatchingRefusal::TooManySegments
            | MatchingRefusal::SegmentsTwice(_)
            | MatchingRefusal::NoSuchSegment(_)
            | MatchingRefusal::TooManyProfiles(_) => "segment_ids".into(),
            MatchingRefusal::Status(_) => "new_member_status".into(),
        }
    }

    /// What to fix, as a sentence.
    pub fn message(&self) -> String {
        match self {
            MatchingRefusal::EmailField => {
                "Email: choose the profile field that holds the customer's email address.".into()
            }
            MatchingRefusal::MappingField { tag, .. } => {
                format!("Attribute {tag}: choose both a Mailchimp field and a profile field.")
            }
            MatchingRefusal::MergeTag { why, .. } => why.to_string(),
            MatchingRefusal::MergeTagTwice { tag, .. } => format!(
                "Attribute {tag}: each Mailchimp field can be filled from one profile field only."
            ),
            MatchingRefusal::NoSegments => {
                "Segments: choose at least one segment to export.".into()
            }
            MatchingRefusal::TooManySegments => {
                format!("Segments: at most {MAX_SEGMENTS} segments per destination.")
            }
            MatchingRefusal::SegmentsTwice(ids) => format!(
                "Segments: a segment is chosen more than once ({}); choose each once.",
                ids.iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            MatchingRefusal::NoSuchSegment(id) => format!(
                "Segments: segment {id} does not exist (it may have just been deleted); choose the segments again."
            ),
            MatchingRefusal::TooManyProfiles(total) => format!(
                "Segments: the selected segments hold {total} profiles; at most {MAX_EXPORT_PROFILES} can be \
                 exported to Mailchimp. Choose fewer segments."
            ),
            MatchingRefusal::Status(why) => why.clone(),
        }
    }
}

/// Why data matching was not accepted.
#[derive(Debug)]
pub enum MatchingError {
    Refused(Vec<MatchingRefusal>),
    Database(sqlx::Error),
}

impl From<sqlx::Error> for MatchingError {
    fn from(err: sqlx::Error) -> Self {
        MatchingError::Database(err)
    }
}

/// Checks everything before anything is written; every refusal is reported at once.
pub async fn check(pool: &AnyPool, asked: &Asked<'_>) -> Result<Checked, MatchingError> {
    let mut refused = Vec::new();
    let catalogue = fields::as_catalogue(&fields::list(pool).await?);
    if !catalogue.contains_key(asked.email_field) {
        refused.push(MatchingRefusal::EmailField);
    }
    let mut mappings: Vec<FieldMapping> = Vec::new();
    for (index, mapping) in asked.mappings.iter().enumerate() {
        let tag = mapping.tag.trim();
        if !catalogue.contains_key(&mapping.field) {
            refused.push(MatchingRefusal::MappingField {
                index,
                tag: tag.to_owned(),
            });
            continue;
        }
        match MergeTag::parse(tag) {
            Err(why) => refused.push(MatchingRefusal::MergeTag { index, why }),
            Ok(tag) if mappings.iter().any(|m| m.tag == tag.as_str()) => {
                refused.push(MatchingRefusal::MergeTagTwice {
                    index,
                    tag: tag.as_str().to_owned(),
                });
            }
            Ok(tag) => mappings.push(FieldMapping {
                tag: tag.as_str().to_owned(),
                field: mapping.field.clone(),
            }),
        }
    }
    let mut seen = BTreeSet::new();
    let twice: BTreeSet<i64> = asked
        .segment_ids
        .iter()
        .filter(|id| !seen.insert(**id))
        .copied()
        .collect();
    if asked.segment_ids.is_empty() {
        refused.push(MatchingRefusal::NoSegments);
    } else if asked.segment_ids.len() > MAX_SEGMENTS {
        refused.push(MatchingRefusal::TooManySegments);
    } else if !twice.is_empty() {
        refused.push(MatchingRefusal::SegmentsTwice(twice.into_iter().collect()));
    } else {
        let known: BTreeSet<i64> = segments::list(pool).await?.iter().map(|s| s.id).collect();
        for id in asked.segment_ids.iter().filter(|id| !known.contains(id)) {
            refused.push(MatchingRefusal::NoSuchSegment(*id));
        }
        let total = destinations::distinct_profiles(pool, asked.segment_ids).await?;
        if total > MAX_EXPORT_PROFILES {
            refused.push(MatchingRefusal::TooManyProfiles(total));
        }
    }
    let status = asked
        .new_member_status
        .parse::<NewMemberStatus>()
        .map_err(|why| refused.push(MatchingRefusal::Status(why)))
        .ok();
    match status {
        Some(new_member_status) if refused.is_empty() => Ok(Checked {
            mappings,
            new_member_status,
        }),
        _ => Err(MatchingError::Refused(refused)),
    }
}
/// What the configure page offers before a person chooses: the email field when one field
/// is plainly it, and first and last name rows paired with the profile fields named so.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Suggested {
    pub email_field: Option<String>,
    pub mappings: Vec<FieldMapping>,
}

/// A field name folded for matching: ASCII letters and digits, lowercase.
fn folded(name: &str) -> String {
    name.chars()
        .filter(char::is_ascii_alphanumeric)
        .collect::<String>()
        .to_ascii_lowercase()
}

/// The names a profile field holding a merge tag's value is usually given.
fn usual_names(tag: &str) -> &'static [&'static str] {
    match tag {
        "FNAME" => &["firstname", "givenname", "forename", "fname", "first"],
        "LNAME" => &["lastname", "familyname", "surname", "lname", "last"],
        _ => &[],
    }
}

/// The profile field that plainly holds `tag`'s value, if exactly one does.
pub fn field_for(tag: &str, fields: &[(String, FieldType)]) -> Option<String> {
    let names = usual_names(tag);
    let mut found = fields
        .iter()
        .filter(|(name, kind)| *kind != FieldType::Email && names.contains(&folded(name).as_str()));
    let first = found.next()?;
    found.next().is_none().then(|| first.0.clone())
}

/// The email field when the profile has one email field, or one field named like an email.
fn email_field(fields: &[(String, FieldType)]) -> Option<String> {
    let typed: Vec<&String> = fields
        .iter()
        .filter(|(_, kind)| *kind == FieldType::Email)
        .map(|(name, _)| name)
        .collect();
    if let [only] = typed.as_slice() {
        return Some((*only).clone());
    }
    let named: Vec<&String> = fields
        .iter()
        .filter(|(name, _)| folded(name).contains("email"))
        .map(|(name, _)| name)
        .collect();
    match named.as_slice() {
        [only] => Some((*only).clone()),
        _ => None,
    }
}

/// The suggestions for a destination nobody has matched yet. `audience_tags` are the
/// audience's merge tags when they could be read (a row is offered only for a tag the
/// audience has; when unread, FNAME and LNAME, which every new audience has).
pub fn suggest(fields: &[(String, FieldType)], audience_tags: Option<&[&str]>) -> Suggested {
    let mappings = ["FNAME", "LNAME"]
        .into_iter()
        .filter(|tag| audience_tags.is_none_or(|tags| tags.contains(tag)))
        .filter_map(|tag| {
            field_for(tag, fields).map(|field| FieldMapping {
                tag: tag.to_owned(),
                field,
            })
        })
        .collect();
    Suggested {
        email_field: email_field(fields),
        mappings,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(list: &[(&str, FieldType)]) -> Vec<(String, FieldType)> {
        list.iter().map(|(n, t)| ((*n).to_owned(), *t)).collect()
    }

    #[test]
    fn plain_fields_are_matched_and_unclear_ones_left_to_the_person() {
        let profile = fields(&[
            ("CustomerId", FieldType::Text),
            ("Email", FieldType::Email),
            ("First_Name", FieldType::Text),
            ("Surname", FieldType::Text),
        ]);
        let offered = suggest(&profile, None);
        assert_eq!(offered.email_field.as_deref(), Some("Email"));
        let rows: Vec<(&str, &str)> = offered
            .mappings
            .iter()
            .map(|m| (m.tag.as_str(), m.field.as_str()))
            .collect();
        assert_eq!(rows, [("FNAME", "First_Name"), ("LNAME", "Surname")]);

        // An audience without LNAME gets no LNAME row.
        assert_eq!(suggest(&profile, Some(&["FNAME"])).mappings.len(), 1);

        // Two email fields and two name-like fields: nothing is guessed.
        let unclear = fields(&[
            ("WorkEmail", FieldType::Email),
            ("HomeEmail", FieldType::Email),
            ("GivenName", FieldType::Text),
            ("FirstName", FieldType::Text),
        ]);
        assert_eq!(suggest(&unclear, None), Suggested::default());

        // No email-typed field, but one named like an email.
        let named = fields(&[("E-mail", FieldType::Text), ("Name", FieldType::Text)]);
        assert_eq!(suggest(&named, None).email_field.as_deref(), Some("E-mail"));
    }
}
