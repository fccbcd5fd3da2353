//! Profile fields: names, types, and how a cell of text becomes a typed value.

use super::Invalid;
use std::fmt;
use std::str::FromStr;

use serde_json::Value;
use time::Date;
use time::macros::format_description;

/// The type of a profile field, as the field catalogue records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldType {
    Text,
    Email,
    Number,
    Date,
    Boolean,
}

impl FieldType {
    pub const ALL: [FieldType; 5] = [
        FieldType::Text,
        FieldType::Email,
        FieldType::Number,
        FieldType::Date,
        FieldType::Boolean,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Text => "text",
            FieldType::Email => "email",
            FieldType::Number => "number",
            FieldType::Date => "date",
            FieldType::Boolean => "boolean",
        }
    }

    /// Turns one cell into the stored value: empty → null; numbers, dates (YYYY-MM-DD) and
    /// booleans must parse. Email cells are kept as written: an address is checked when it
    /// is exported, so that a bad one is reported for its profile instead of being lost.
    pub fn parse_cell(self, raw: &str) -> Result<Value, Invalid> {
        let cell = raw.trim();
        if cell.is_empty() {
            return Ok(Value::Null);
        }
        match self {
            FieldType::Text | FieldType::Email => Ok(Value::String(cell.to_owned())),
            FieldType::Number => parse_number(cell)
                .map(number_value)
                .ok_or_else(|| format!("{:?} is not a number", super::text::excerpt(cell)).into()),
            FieldType::Date => parse_date(cell).map(Value::String).ok_or_else(|| {
                format!(
                    "{:?} is not a date (YYYY-MM-DD)",
                    super::text::excerpt(cell)
                )
                .into()
            }),
            FieldType::Boolean => parse_bool(cell).map(Value::Bool).ok_or_else(|| {
                format!("{:?} is not true or false", super::text::excerpt(cell)).into()
            }),
        }
    }
}

pub fn parse_number(cell: &str) -> Option<f64> {
    cell.trim().parse::<f64>().ok().filter(|n| n.is_finite())
}

fn number_value(n: f64) -> Value {
    if n.fract() == 0.0 && n.abs() < 9.0e15 {
        Value::from(n as i64)
    } else {
        Value::from(n)
    }
}

/// A calendar date as YYYY-MM-DD; a timestamp's date part is accepted.
pub fn parse_date(cell: &str) -> Option<String> {
    let cell = cell.trim();
    let date_part = cell.get(..10)?;
    if cell.len() > 10 && !matches!(cell.as_bytes()[10], b'T' | b' ') {
        return None;
    }
    Date::parse(date_part, format_description!("[year]-[month]-[day]"))
        .ok()
        .map(|_| date_part.to_owned())
}

pub fn parse_bool(cell: &str) -> Option<bool> {
    match cell.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "y" | "1" => Some(true),
        "false" | "no" | "n" | "0" => Some(false),
        _ => None,
    }
}

/// "Age=number, Joined=date": types for new columns, overriding inference.
pub fn parse_types(raw: &str) -> Result<std::collections::HashMap<String, FieldType>, String> {
    raw.split([',', '\n'])
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, kind) = pair.split_once('=').ok_or_else(|| {
                format!(
                    "Column types: write COLUMN=TYPE, got “{}”.",
                    super::text::excerpt(pair)
                )
            })?;
            let kind = kind
                .parse()
                .map_err(|e: String| format!("Column types: {e}."))?;
            Ok((name.trim().to_owned(), kind))
        })
        .collect()
}

impl FromStr for FieldType {
    type Err = String;
    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        FieldType::ALL
            .into_iter()
            .find(|t| t.as_str() == raw.trim().to_ascii_lowercase())
            .ok_or_else(|| {
                format!(
                    "{:?} is not a field type (text, email, number, date, boolean)",
                    super::text::excerpt(raw)
                )
            })
    }
}

impl fmt::Display for FieldType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A field's name: a CSV header, trimmed; 1 to 100 characters without control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FieldName(String);

impl FieldName {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim().trim_start_matches('\u{feff}');
        super::text::clean_name(raw, 100)
            .map(Self)
            .map_err(|err| match err {
                super::text::NameError::Empty => "a column has no name".into(),
                err => format!(
                    "the column name “{}” is not accepted: {err}",
                    super::text::excerpt(raw.trim())
                )
                .into(),
            })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn cells_become_typed_values() {
        assert_eq!(FieldType::Number.parse_cell(" 42 ").unwrap(), json!(42));
        assert_eq!(FieldType::Number.parse_cell("1.5").unwrap(), json!(1.5));
        assert_eq!(
            FieldType::Date.parse_cell("2026-02-28").unwrap(),
            json!("2026-02-28")
        );
        assert_eq!(
            FieldType::Date.parse_cell("2026-02-28T10:00:00Z").unwrap(),
            json!("2026-02-28")
        );
        assert_eq!(FieldType::Boolean.parse_cell("Yes").unwrap(), json!(true));
        assert_eq!(FieldType::Text.parse_cell("  ").unwrap(), Value::Null);
        assert_eq!(
            FieldType::Email.parse_cell("not an email").unwrap(),
            json!("not an email")
        );
    }

    #[test]
    fn cells_that_do_not_fit_their_type_say_why() {
        assert_eq!(
            FieldType::Number.parse_cell("abc").unwrap_err(),
            "\"abc\" is not a number"
        );
        assert!(FieldType::Number.parse_cell("NaN").is_err());
        assert!(FieldType::Date.parse_cell("2026-02-30").is_err());
        assert!(FieldType::Date.parse_cell("28/02/2026").is_err());
        assert!(FieldType::Boolean.parse_cell("maybe").is_err());
    }

    #[test]
    fn field_names_come_from_headers_without_a_bom() {
        assert_eq!(
            FieldName::parse("\u{feff}CustomerId").unwrap().as_str(),
            "CustomerId"
        );
        assert!(FieldName::parse("  ").is_err());
        assert!(FieldName::parse("a\tb").is_err());
    }
}
