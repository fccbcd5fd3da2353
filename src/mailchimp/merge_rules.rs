//! What Mailchimp accepts in a merge field, known before anything is sent: a value it would
//! refuse makes it refuse the whole member ("Your merge fields were invalid"), so a preview
//! names such members and their reason instead of letting a run find out.
//!
//! The rules are Mailchimp's documented ones: text values up to the field's size (255
//! characters unless the field says otherwise), numbers that parse as numbers, dates as
//! `YYYY-MM-DD` or in the field's date format (`MM/DD/YYYY` unless it says otherwise),
//! birthdays as `MM/DD`, and required fields filled for new members unless the field has a
//! default value.

use std::collections::HashMap;

use chrono::NaiveDate;
use serde_json::{Map, Value};

use crate::mailchimp::client::MergeField;

/// The title of a member's result when a value was refused before sending.
pub const REFUSED_VALUE: &str = "Invalid merge field value";

/// An audience's merge fields, to check a member's values against.
#[derive(Debug, Default)]
pub struct MergeRules {
    fields: HashMap<String, MergeField>,
    required: Vec<MergeField>,
}

impl MergeRules {
    pub fn new(fields: &[MergeField]) -> Self {
        Self {
            fields: fields.iter().map(|f| (f.tag.clone(), f.clone())).collect(),
            required: fields.iter().filter(|f| needs_value(f)).cloned().collect(),
        }
    }

    /// Why Mailchimp would refuse a member with these merge-field values, if it would: a
    /// value it does not take, or a merge field the audience lacks.
    pub fn refusal(&self, values: &Map<String, Value>) -> Option<String> {
        for (tag, value) in values {
            let Some(field) = self.fields.get(tag) else {
                return Some(format!(
                    "The audience has no merge field {tag}: map the attribute to another one or create it"
                ));
            };
            if let Some(reason) = refusal(field, value) {
                return Some(reason);
            }
        }
        None
    }

    /// Why Mailchimp would refuse this member as a new contact: a required field left blank.
    pub fn refusal_as_new(&self, values: &Map<String, Value>) -> Option<String> {
        self.refusal(values).or_else(|| {
            self.required
                .iter()
                .find(|f| is_blank(values.get(&f.tag)))
                .map(|f| {
                    format!(
                        "{} ({}) is required in this audience and the member has no value for it",
                        f.tag, f.name
                    )
                })
        })
    }
}

/// A text merge field's size when the audience does not say.
pub const TEXT_SIZE: usize = 255;

impl MergeField {
    /// The most characters a text value may have.
    pub fn size(&self) -> usize {
        self.options
            .as_ref()
            .and_then(|o| o.size)
            .filter(|s| *s > 0)
            .unwrap_or(TEXT_SIZE)
    }

    /// The date format besides `YYYY-MM-DD`.
    pub fn date_format(&self) -> &str {
        self.options
            .as_ref()
            .and_then(|o| o.date_format.as_deref())
            .filter(|f| !f.is_empty())
            .unwrap_or("MM/DD/YYYY")
    }
}

/// Why Mailchimp would refuse this value for this merge field, if it would.
pub fn refusal(field: &MergeField, value: &Value) -> Option<String> {
    let tag = &field.tag;
    match (field.kind.as_str(), value) {
        (_, Value::Null) => None,
        // An empty value empties the field, whatever its kind.
        (_, Value::String(s)) if s.is_empty() => None,
        ("address", Value::Object(_) | Value::String(_)) => None,
        ("number", Value::Number(_)) => None,
        ("number", Value::String(s)) if s.is_empty() || s.trim().parse::<f64>().is_ok() => None,
        ("number", _) => Some(format!(
            "{tag} is a number field and {} is not a number",
            shown(value)
        )),
        ("date", Value::String(s)) if is_date(s.trim(), field.date_format()) => None,
        ("date", _) => Some(format!(
            "{tag} is a date field and {} is neither YYYY-MM-DD nor {}",
            shown(value),
            field.date_format()
        )),
        ("birthday", Value::String(s)) if is_birthday(s.trim()) => None,
        ("birthday", _) => Some(format!(
            "{tag} is a birthday field and {} is not MM/DD",
            shown(value)
        )),
        (_, Value::String(s)) => {
            let size = field.size();
            let length = s.chars().count();
            (length > size).then(|| {
                format!("{tag} takes at most {size} characters and this value has {length}")
            })
        }
        (kind, _) => Some(format!(
            "{tag} is a {kind} field and {} is not text",
            shown(value)
        )),
    }
}

/// Whether a new member lacking this field would be refused (a required field with no
/// default value).
pub fn needs_value(field: &MergeField) -> bool {
    field.required && field.default_value.trim().is_empty()
}

/// Whether a value leaves a required field blank.
fn is_blank(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.trim().is_empty(),
        _ => false,
    }
}

fn shown(value: &Value) -> String {
    let text = match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let short: String = text.chars().take(40).collect();
    if short.len() < text.len() {
        format!("“{short}…”")
    } else {
        format!("“{short}”")
    }
}

fn is_date(text: &str, format: &str) -> bool {
    let pattern = match format.to_ascii_uppercase().as_str() {
        "DD/MM/YYYY" => "%d/%m/%Y",
        _ => "%m/%d/%Y",
    };
    NaiveDate::parse_from_str(text, "%Y-%m-%d").is_ok()
        || NaiveDate::parse_from_str(text, pattern).is_ok()
}

fn is_birthday(text: &str) -> bool {
    // A leap year, so that 02/29 is a birthday.
    NaiveDate::parse_from_str(&format!("{text}/2000"), "%m/%d/%Y").is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(kind: &str) -> MergeField {
        MergeField {
            tag: "F".into(),
            name: "F".into(),
            kind: kind.into(),
            required: false,
            default_value: String::new(),
            options: None,
        }
    }

    #[test]
    fn text_is_refused_only_beyond_its_size() {
        let text = field("text");
        assert_eq!(refusal(&text, &Value::from("a".repeat(255))), None);
        assert_eq!(
            refusal(&text, &Value::from("é".repeat(256))).as_deref(),
            Some("F takes at most 255 characters and this value has 256")
        );
        assert_eq!(refusal(&text, &Value::Null), None);
    }

    #[test]
    fn numbers_dates_and_birthdays_follow_mailchimp() {
        let number = field("number");
        assert_eq!(refusal(&number, &Value::from(3)), None);
        assert_eq!(refusal(&number, &Value::from(" 4.5 ")), None);
        assert!(
            refusal(&number, &Value::from("four"))
                .unwrap()
                .contains("“four”")
        );
        let date = field("date");
        assert_eq!(refusal(&date, &Value::from("2026-02-28")), None);
        assert_eq!(refusal(&date, &Value::from("02/28/2026")), None);
        assert!(refusal(&date, &Value::from("2026-02-30")).is_some());
        assert!(refusal(&date, &Value::from("28/02/2026")).is_some());
        let birthday = field("birthday");
        assert_eq!(refusal(&birthday, &Value::from("02/29")), None);
        assert!(refusal(&birthday, &Value::from("13/01")).is_some());
    }

    #[test]
    fn an_empty_value_empties_a_field_of_any_kind() {
        for kind in [
            "text", "number", "date", "birthday", "phone", "url", "address",
        ] {
            assert_eq!(
                refusal(&field(kind), &Value::String(String::new())),
                None,
                "{kind}"
            );
        }
        assert!(
            refusal(&field("date"), &Value::String(" ".into())).is_some(),
            "a blank is not empty"
        );
    }

    #[test]
    fn a_required_field_with_a_default_needs_no_value() {
        let mut f = field("text");
        f.required = true;
        assert!(needs_value(&f));
        f.default_value = "Friend".into();
        assert!(!needs_value(&f));
        assert!(is_blank(Some(&Value::from("  "))));
        assert!(!is_blank(Some(&Value::from(0))));
    }
}
