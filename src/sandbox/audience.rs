//! One sandbox audience (a Mailchimp "list") and Mailchimp's rules for changing it:
//! case-insensitive addresses, status only for new members, compliance states, forgotten
//! contacts, merge-field validation and tags.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::domain::subscriber_hash;
use crate::sandbox::problem::MailchimpProblem;
use crate::sandbox::status::{MemberStatus, plausible_address};
use crate::sandbox::webhooks::{Event, MemberChange, Webhook};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MergeField {
    pub merge_id: u64,
    pub tag: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    pub default_value: String,
    pub public: bool,
    pub display_order: u64,
    #[serde(default)]
    pub options: MergeOptions,
}

/// The options that limit a merge field's values.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MergeOptions {
    /// A text field's size (255 when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<usize>,
    /// A date field's format besides YYYY-MM-DD (MM/DD/YYYY when not given).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date_format: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Member {
    pub email_address: String,
    pub status: MemberStatus,
    pub merge_fields: BTreeMap<String, Value>,
    pub tags: BTreeSet<u64>,
    pub email_type: String,
    pub language: String,
    pub vip: bool,
    pub web_id: u64,
    pub timestamp_signup: String,
    pub last_changed: String,
    /// When the member last became unsubscribed (what `unsubscribed_since` filters on).
    #[serde(default)]
    pub unsubscribed_at: Option<String>,
    /// How many write requests have touched this member: lets tests prove that an
    /// acknowledged batch was not sent twice.
    pub writes: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    pub id: u64,
    pub name: String,
    pub created_at: String,
    pub updated_at: String,
    pub members: HashSet<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Audience {
    pub id: String,
    pub web_id: u64,
    pub account_id: String,
    pub name: String,
    pub date_created: String,
    pub double_optin: bool,
    pub from_name: String,
    pub from_email: String,
    pub permission_reminder: String,
    pub members: HashMap<String, Member>,
    pub merge_fields: Vec<MergeField>,
    pub segments: BTreeMap<u64, Segment>,
    /// Hashes of permanently deleted contacts: they cannot be added again by the API.
    pub forgotten: HashSet<String>,
    /// Where Mailchimp tells others of changes to the audience's contacts.
    #[serde(default)]
    pub webhooks: Vec<Webhook>,
}

/// Why one member write was refused: Mailchimp's title, its message, and the field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberError {
    pub title: &'static str,
    pub detail: String,
    pub code: &'static str,
    pub field: String,
    pub field_message: String,
}

impl MemberError {
    fn new(title: &'static str, detail: String) -> Self {
        Self {
            title,
            detail,
            code: "ERROR_GENERIC",
            field: String::new(),
            field_message: String::new(),
        }
    }

    pub fn into_problem(self) -> MailchimpProblem {
        let mut problem = MailchimpProblem::invalid(self.detail);
        problem.title = self.title;
        if !self.field.is_empty() {
            problem.errors.push(crate::sandbox::problem::FieldError {
                field: self.field,
                message: self.field_message,
            });
        }
        problem
    }
}

/// Domains reserved for documentation and testing (RFC 2606 and RFC 6761): Mailchimp
/// refuses addresses there as fake, and so does the sandbox.
pub fn looks_fake(email: &str) -> bool {
    let domain = email.rsplit('@').next().unwrap_or_default();
    matches!(domain, "example.com" | "example.net" | "example.org")
        || [".test", ".example", ".invalid", ".localhost"]
            .iter()
            .any(|suffix| domain.ends_with(suffix))
}

/// Parses an address as Mailchimp would accept it; returns it lower-cased.
pub fn check_email(raw: &str) -> Result<String, MemberError> {
    let email = plausible_address(raw).ok_or_else(|| {
        let mut error = MemberError::new(
            "Invalid Resource",
            format!("{raw} looks fake or invalid, please enter a real email address."),
        );
        error.field = "email_address".into();
        error.field_message = "Please provide a valid email address.".into();
        error
    })?;
    if looks_fake(&email) {
        return Err(MemberError::new(
            "Invalid Resource",
            format!("{raw} looks fake or invalid, please enter a real email address."),
        ));
    }
    Ok(email)
}

/// A write to one member: what the request asked for.
#[derive(Debug, Clone, Default)]
pub struct MemberWrite {
    pub email_address: String,
    /// `status` of batch items and PATCH/PUT: applied to existing members too.
    pub status: Option<MemberStatus>,
    /// PUT's `status_if_new`: applied only when the member is created.
    pub status_if_new: Option<MemberStatus>,
    pub merge_fields: serde_json::Map<String, Value>,
    pub email_type: Option<String>,
    pub language: Option<String>,
    pub vip: Option<bool>,
    pub skip_merge_validation: bool,
}

/// What happened to a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Written {
    Created,
    Updated,
}

/// How an existing member is treated by a write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExistingPolicy {
    /// Batch subscribe with `update_existing` and PUT: update.
    Update,
    /// Batch subscribe without `update_existing`: report ERROR_CONTACT_EXISTS.
    Report,
    /// POST /members: 400 "Member Exists".
    Refuse,
    /// PATCH: the member must exist.
    MustExist,
}

impl Audience {
    pub fn new(id: String, web_id: u64, account_id: String, name: String, now: &str) -> Self {
        let field = |merge_id: u64, tag: &str, name: &str, kind: &str| MergeField {
            merge_id,
            tag: tag.into(),
            name: name.into(),
            kind: kind.into(),
            required: false,
            default_value: String::new(),
            options: MergeOptions::default(),
            public: false,
            display_order: merge_id + 1,
        };
        Self {
            id,
            web_id,
            account_id,
            name,
            date_created: now.to_owned(),
            double_optin: false,
            from_name: "Sandbox".into(),
            from_email: "news@sandbox.mailchimp.local".into(),
            permission_reminder: "You signed up on our website.".into(),
            members: HashMap::new(),
            merge_fields: vec![
                field(1, "FNAME", "First Name", "text"),
                field(2, "LNAME", "Last Name", "text"),
                field(3, "ADDRESS", "Address", "address"),
                field(4, "PHONE", "Phone Number", "phone"),
            ],
            segments: BTreeMap::new(),
            forgotten: HashSet::new(),
            webhooks: Vec::new(),
        }
    }

    pub fn count(&self, status: MemberStatus) -> usize {
        self.members.values().filter(|m| m.status == status).count()
    }

    /// Applies one member write under Mailchimp's rules.
    pub fn write_member(
        &mut self,
        write: MemberWrite,
        existing: ExistingPolicy,
        web_id: &mut u64,
        now: &str,
    ) -> Result<(String, Written), MemberError> {
        let email = check_email(&write.email_address)?;
        let hash = subscriber_hash(&email);
        let present = self.may_write(&hash, &write.email_address, existing)?;
        let merge_fields =
            self.check_merge_fields(&write.merge_fields, !present, write.skip_merge_validation)?;
        if present {
            let member = self.members.get_mut(&hash).expect("present");
            if let Some(status) = write.status {
                check_settable(status)?;
                if member.status.is_compliance_state() && status.is_opt_in() {
                    return Err(MemberError::new(
                        "Member In Compliance State",
                        format!(
                            "{} is in a compliance state due to unsubscribe, bounce, or \
                             compliance review and cannot be subscribed.",
                            write.email_address
                        ),
                    ));
                }
                if status == MemberStatus::Unsubscribed && member.status != status {
                    member.unsubscribed_at = Some(now.to_owned());
                }
                member.status = status;
            }
            member.merge_fields.extend(merge_fields);
            apply_details(member, &write);
            member.last_changed = now.to_owned();
            member.writes += 1;
            return Ok((hash, Written::Updated));
        }
        let Some(status) = write.status.or(write.status_if_new) else {
            let mut error = MemberError::new(
                "Invalid Resource",
                "The resource submitted could not be validated. For field-specific details, \
                 see the 'errors' array."
                    .into(),
            );
            error.field = "status_if_new".into();
            error.field_message = "This value should not be blank.".into();
            return Err(error);
        };
        check_settable(status)?;
        let previous = self.members.remove(&hash);
        *web_id += 1;
        let mut member = Member {
            email_address: write.email_address.trim().to_owned(),
            status,
            merge_fields: previous.map(|p| p.merge_fields).unwrap_or_default(),
            tags: BTreeSet::new(),
            email_type: "html".into(),
            language: String::new(),
            vip: false,
            web_id: *web_id,
            timestamp_signup: now.to_owned(),
            last_changed: now.to_owned(),
            unsubscribed_at: (status == MemberStatus::Unsubscribed).then(|| now.to_owned()),
            writes: 1,
        };
        member.merge_fields.extend(merge_fields);
        apply_details(&mut member, &write);
        self.members.insert(hash.clone(), member);
        Ok((hash, Written::Created))
    }

    /// Whether the member is in the audience (not archived), or why the write is refused:
    /// the address was deleted for good, or `existing` does not allow the write.
    fn may_write(
        &self,
        hash: &str,
        email_address: &str,
        existing: ExistingPolicy,
    ) -> Result<bool, MemberError> {
        if self.forgotten.contains(hash) {
            return Err(MemberError::new(
                "Forgotten Email Not Subscribed",
                format!(
                    "{} was permanently deleted and cannot be re-imported. The contact must \
                     re-subscribe to get back on the list.",
                    email_address
                ),
            ));
        }
        let present = self
            .members
            .get(hash)
            .is_some_and(|m| m.status != MemberStatus::Archived);
        if present {
            match existing {
                ExistingPolicy::Report => {
                    let mut error = MemberError::new(
                        "Member Exists",
                        format!(
                            "{} is already a list member. Use PUT to insert or update list members.",
                            email_address
                        ),
                    );
                    error.code = "ERROR_CONTACT_EXISTS";
                    return Err(error);
                }
                ExistingPolicy::Refuse => {
                    return Err(MemberError::new(
                        "Member Exists",
                        format!(
                            "{} is already a list member. Use PUT to insert or update list members.",
                            email_address
                        ),
                    ));
                }
                ExistingPolicy::Update | ExistingPolicy::MustExist => {}
            }
        } else if existing == ExistingPolicy::MustExist {
            return Err(MemberError::new(
                "Resource Not Found",
                "The requested resource could not be found.".into(),
            ));
        }
        Ok(present)
    }

    fn check_merge_fields(
        &self,
        given: &serde_json::Map<String, Value>,
        is_new: bool,
        skip_validation: bool,
    ) -> Result<BTreeMap<String, Value>, MemberError> {
        let invalid = |tag: &str, message: String| {
            let mut error =
                MemberError::new("Invalid Resource", "Your merge fields were invalid.".into());
            error.field = tag.to_owned();
            error.field_message = message;
            error
        };
        let mut accepted = BTreeMap::new();
        for (tag, value) in given {
            let Some(field) = self.merge_fields.iter().find(|f| f.tag == *tag) else {
                return Err(invalid(
                    tag,
                    format!("Merge field {tag} does not exist in this audience."),
                ));
            };
            let ok = match (field.kind.as_str(), value) {
                // An empty value empties the field, whatever its kind.
                (_, Value::Null) => true,
                (_, Value::String(s)) if s.is_empty() => true,
                ("number", Value::Number(_)) => true,
                ("number", Value::String(s)) => s.is_empty() || s.trim().parse::<f64>().is_ok(),
                ("address", Value::Object(_) | Value::String(_)) => true,
                ("date", Value::String(s)) => valid_date(s.trim(), &field.options),
                ("birthday", Value::String(s)) => {
                    chrono::NaiveDate::parse_from_str(&format!("{}/2000", s.trim()), "%m/%d/%Y")
                        .is_ok()
                }
                (_, Value::String(s)) => {
                    s.chars().count() <= field.options.size.filter(|n| *n > 0).unwrap_or(255)
                }
                _ => false,
            };
            if !ok {
                return Err(invalid(
                    tag,
                    format!("Please enter a valid {} value.", field.kind),
                ));
            }
            accepted.insert(tag.clone(), value.clone());
        }
        if is_new && !skip_validation {
            for field in self.merge_fields.iter().filter(|f| f.required) {
                let blank = match given.get(&field.tag) {
                    None | Some(Value::Null) => true,
                    Some(Value::String(s)) => s.trim().is_empty(),
                    _ => false,
                };
                if blank && field.default_value.is_empty() {
                    return Err(invalid(&field.tag, "Please enter a value".into()));
                }
            }
        }
        Ok(accepted)
    }

    /// Archives a member (DELETE): they leave the audience's counts but keep their data.
    pub fn archive(&mut self, hash: &str, now: &str) -> Result<(), MailchimpProblem> {
        let member = self
            .members
            .get_mut(hash)
            .filter(|m| m.status != MemberStatus::Archived)
            .ok_or_else(MailchimpProblem::not_found)?;
        member.status = MemberStatus::Archived;
        member.last_changed = now.to_owned();
        for segment in self.segments.values_mut() {
            segment.members.remove(hash);
        }
        member.tags.clear();
        Ok(())
    }

    /// Erases a member for good; the address can never be added again by the API.
    pub fn delete_permanently(&mut self, hash: &str) -> Result<(), MailchimpProblem> {
        self.members
            .remove(hash)
            .ok_or_else(MailchimpProblem::not_found)?;
        for segment in self.segments.values_mut() {
            segment.members.remove(hash);
        }
        self.forgotten.insert(hash.to_owned());
        Ok(())
    }

    pub fn segment_by_name(&self, name: &str) -> Option<u64> {
        self.segments
            .values()
            .find(|s| s.name == name)
            .map(|s| s.id)
    }

    /// Creates a tag (static segment); names are unique within an audience.
    pub fn create_segment(
        &mut self,
        id: u64,
        name: &str,
        now: &str,
    ) -> Result<u64, MailchimpProblem> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(MailchimpProblem::field(
                "name",
                "A tag name needs 1 to 100 characters.",
            ));
        }
        if self.segment_by_name(name).is_some() {
            return Err(MailchimpProblem::invalid(format!(
                "A tag named \"{name}\" already exists."
            )));
        }
        self.segments.insert(
            id,
            Segment {
                id,
                name: name.to_owned(),
                created_at: now.to_owned(),
                updated_at: now.to_owned(),
                members: HashSet::new(),
            },
        );
        Ok(id)
    }

    /// Tags (`add`) or untags a present member; false when the address is not on the audience.
    pub fn set_tag(&mut self, segment_id: u64, email: &str, add: bool, now: &str) -> bool {
        let hash = subscriber_hash(email);
        let Some(member) = self
            .members
            .get_mut(&hash)
            .filter(|m| m.status != MemberStatus::Archived)
        else {
            return false;
        };
        let Some(segment) = self.segments.get_mut(&segment_id) else {
            return false;
        };
        if add {
            member.tags.insert(segment_id);
            segment.members.insert(hash);
        } else {
            member.tags.remove(&segment_id);
            segment.members.remove(&hash);
        }
        segment.updated_at = now.to_owned();
        true
    }

    pub fn tag_names(&self, member: &Member) -> Vec<(u64, String)> {
        member
            .tags
            .iter()
            .filter_map(|id| self.segments.get(id).map(|s| (*id, s.name.clone())))
            .collect()
    }

    /// Applies a change made outside the API to a present member; returns the event it
    /// makes for the audience's webhooks.
    pub fn change_member(
        &mut self,
        email: &str,
        change: MemberChange,
        now: &str,
    ) -> Result<Event, MailchimpProblem> {
        let hash = subscriber_hash(email);
        let member = self
            .members
            .get_mut(&hash)
            .filter(|m| m.status != MemberStatus::Archived)
            .ok_or_else(MailchimpProblem::not_found)?;
        member.last_changed = now.to_owned();
        let email = member.email_address.clone();
        Ok(match change {
            MemberChange::Unsubscribe => {
                if member.status != MemberStatus::Unsubscribed {
                    member.unsubscribed_at = Some(now.to_owned());
                }
                member.status = MemberStatus::Unsubscribed;
                Event::Unsubscribe {
                    email,
                    merges: merges_of(member),
                }
            }
            MemberChange::Subscribe => {
                member.status = MemberStatus::Subscribed;
                Event::Subscribe {
                    email,
                    merges: merges_of(member),
                }
            }
            MemberChange::Clean { abuse } => {
                member.status = MemberStatus::Cleaned;
                Event::Cleaned {
                    email,
                    reason: if abuse { "abuse" } else { "hard" },
                }
            }
            MemberChange::Profile(fields) => {
                for (tag, value) in fields {
                    if !self.merge_fields.iter().any(|f| f.tag == tag) {
                        return Err(MailchimpProblem::field(
                            &tag,
                            format!("Merge field {tag} does not exist in this audience."),
                        ));
                    }
                    member.merge_fields.insert(tag, value);
                }
                Event::Profile {
                    email,
                    merges: merges_of(member),
                }
            }
            MemberChange::Email(new_email) => self.rename(&hash, &new_email)?,
        })
    }

    /// Gives a present member another address (`PATCH` with a new `email_address`, or the
    /// contact changing it): the contact keeps its status, merge fields, tags and history,
    /// under the new address's subscriber hash. An address another contact has (archived
    /// or not) is refused: two people are never merged.
    pub fn rename(&mut self, hash: &str, new_email: &str) -> Result<Event, MailchimpProblem> {
        let old_email = self
            .members
            .get(hash)
            .filter(|m| m.status != MemberStatus::Archived)
            .ok_or_else(MailchimpProblem::not_found)?
            .email_address
            .clone();
        let new_email = check_email(new_email).map_err(|e| e.into_problem())?;
        let new_hash = subscriber_hash(&new_email);
        if new_hash == hash {
            // The same address, written otherwise: only its spelling changes.
            self.members.get_mut(hash).expect("present").email_address = new_email.clone();
        } else {
            if self.members.contains_key(&new_hash) || self.forgotten.contains(&new_hash) {
                return Err(MailchimpProblem::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "Member Exists",
                    format!("{new_email} is already a list member."),
                ));
            }
            let mut moved = self.members.remove(hash).expect("present");
            moved.email_address = new_email.clone();
            self.members.insert(new_hash.clone(), moved);
            for segment in self.segments.values_mut() {
                if segment.members.remove(hash) {
                    segment.members.insert(new_hash.clone());
                }
            }
        }
        Ok(Event::Upemail {
            old_email,
            new_email,
        })
    }
}

/// A member's merge fields as text, for an event's `data[merges]`.
fn merges_of(member: &Member) -> Vec<(String, String)> {
    member
        .merge_fields
        .iter()
        .map(|(tag, value)| {
            let text = match value {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                other => other.to_string(),
            };
            (tag.clone(), text)
        })
        .collect()
}

/// What an API write did to a member, as events: a new status of unsubscribed, cleaned or
/// subscribed, or (a member already there keeping its status) changed merge fields.
pub fn events_of_write(before: Option<&Member>, after: &Member) -> Vec<Event> {
    let email = after.email_address.clone();
    let was = before
        .map(|m| m.status)
        .filter(|s| *s != MemberStatus::Archived);
    if was != Some(after.status) {
        return match after.status {
            MemberStatus::Unsubscribed => vec![Event::Unsubscribe {
                email,
                merges: merges_of(after),
            }],
            MemberStatus::Cleaned => vec![Event::Cleaned {
                email,
                reason: "hard",
            }],
            MemberStatus::Subscribed => vec![Event::Subscribe {
                email,
                merges: merges_of(after),
            }],
            _ => Vec::new(),
        };
    }
    match before {
        Some(before) if before.merge_fields != after.merge_fields => vec![Event::Profile {
            email,
            merges: merges_of(after),
        }],
        _ => Vec::new(),
    }
}

/// A date as Mailchimp takes it: YYYY-MM-DD, or in the field's own format.
fn valid_date(text: &str, options: &MergeOptions) -> bool {
    let own = match options.date_format.as_deref() {
        Some(f) if f.eq_ignore_ascii_case("DD/MM/YYYY") => "%d/%m/%Y",
        _ => "%m/%d/%Y",
    };
    chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
        || chrono::NaiveDate::parse_from_str(text, own).is_ok()
}

fn check_settable(status: MemberStatus) -> Result<(), MemberError> {
    if status == MemberStatus::Archived {
        let mut error = MemberError::new(
            "Invalid Resource",
            "The resource submitted could not be validated. For field-specific details, see \
             the 'errors' array."
                .into(),
        );
        error.field = "status".into();
        error.field_message =
            "archived is not a status that can be set; DELETE archives a member.".into();
        return Err(error);
    }
    Ok(())
}

fn apply_details(member: &mut Member, write: &MemberWrite) {
    if let Some(kind) = &write.email_type {
        member.email_type = kind.clone();
    }
    if let Some(language) = &write.language {
        member.language = language.clone();
    }
    if let Some(vip) = write.vip {
        member.vip = vip;
    }
}
