//! One profile row as it is written: a customer ID and values, each typed by its field.
//! CSV imports, sources' pulls and the automation API all type their rows here, so a row
//! is accepted or rejected for the same reasons whichever way it comes.

use std::fmt;

use serde_json::{Map, Value};

use crate::domain::FieldType;
use crate::store::profiles::ProfileWrite;

/// The longest customer ID; a longer one rejects its row.
pub const MAX_CUSTOMER_ID_CHARS: usize = 200;
/// The longest value one cell may hold; a longer one rejects its row.
pub const MAX_CELL_CHARS: usize = 10_000;

/// A field as rows are typed by it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Column {
    pub name: String,
    pub field_type: FieldType,
}

/// Why a row is rejected: the field at fault, when one is, and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub field: Option<String>,
    pub message: String,
}

impl Fault {
    /// A fault of the row as a whole (its customer ID, its shape).
    pub fn row(message: impl Into<String>) -> Self {
        Self {
            field: None,
            message: message.into(),
        }
    }

    /// A fault of one field's value.
    pub fn field(name: &str, message: impl Into<String>) -> Self {
        Self {
            field: Some(name.to_owned()),
            message: message.into(),
        }
    }
}

/// "Age: "forty" is not a number.", as reports show it.
impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{field}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// A row as a write: its customer ID (trimmed; 1 to 200 characters) and its values, each
/// as text typed by its column (an empty one clears the field). A value longer than
/// [`MAX_CELL_CHARS`] or one that does not fit its field's type rejects the row. The value
/// of `primary_email` (the catalogue's first email field), trimmed and lower-cased, is the
/// row's email key.
pub fn typed<'a>(
    customer_id: &str,
    values: impl IntoIterator<Item = (&'a Column, &'a str)>,
    primary_email: Option<&str>,
) -> Result<ProfileWrite, Fault> {
    let customer_id = customer_id.trim();
    if customer_id.is_empty() {
        return Err(Fault::row("The customer ID is empty."));
    }
    if customer_id.chars().count() > MAX_CUSTOMER_ID_CHARS {
        return Err(Fault::row(format!(
            "The customer ID is longer than {MAX_CUSTOMER_ID_CHARS} characters."
        )));
    }
    let mut attributes = Map::new();
    let mut email_key = None;
    for (column, cell) in values {
        if cell.chars().count() > MAX_CELL_CHARS {
            return Err(Fault::field(
                &column.name,
                format!("the value is longer than {MAX_CELL_CHARS} characters."),
            ));
        }
        let value = column
            .field_type
            .parse_cell(cell)
            .map_err(|reason| Fault::field(&column.name, format!("{reason}.")))?;
        if primary_email == Some(column.name.as_str()) {
            email_key = Some(cell.trim().to_lowercase()).filter(|e| !e.is_empty());
        }
        attributes.insert(column.name.clone(), value);
    }
    Ok(ProfileWrite {
        customer_id: customer_id.to_owned(),
        attributes: Value::Object(attributes).to_string(),
        email_key,
    })
}

/// What a report repeats of a customer ID: an over-long one only in part.
pub fn shown_id(customer_id: &str) -> String {
    let customer_id = customer_id.trim();
    if customer_id.chars().count() > MAX_CUSTOMER_ID_CHARS {
        crate::domain::text::excerpt(customer_id)
    } else {
        customer_id.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn column(name: &str, field_type: FieldType) -> Column {
        Column {
            name: name.into(),
            field_type,
        }
    }

    #[test]
    fn a_row_is_typed_and_keyed_by_its_primary_email() {
        let (email, age) = (
            column("Email", FieldType::Email),
            column("Age", FieldType::Number),
        );
        let row = typed(
            " C1 ",
            [(&email, " Ada@Northwind.IO "), (&age, "36")],
            Some("Email"),
        )
        .unwrap();
        assert_eq!(row.customer_id, "C1");
        assert_eq!(row.email_key.as_deref(), Some("ada@northwind.io"));
        let attributes: Value = serde_json::from_str(&row.attributes).unwrap();
        assert_eq!(
            attributes,
            serde_json::json!({"Age": 36, "Email": "Ada@Northwind.IO"})
        );
        let cleared = typed("C1", [(&email, "")], Some("Email")).unwrap();
        assert_eq!(
            (cleared.attributes.as_str(), cleared.email_key),
            (r#"{"Email":null}"#, None)
        );
    }

    #[test]
    fn a_bad_row_says_which_field_and_why() {
        let age = column("Age", FieldType::Number);
        let fault = typed("C1", [(&age, "forty")], None).unwrap_err();
        assert_eq!(fault.to_string(), "Age: \"forty\" is not a number.");
        assert_eq!(fault.field.as_deref(), Some("Age"));
        let long = "9".repeat(MAX_CELL_CHARS + 1);
        assert!(
            typed("C1", [(&age, long.as_str())], None)
                .unwrap_err()
                .to_string()
                .starts_with("Age: the value is longer than")
        );
        assert_eq!(
            typed("  ", [], None).unwrap_err().to_string(),
            "The customer ID is empty."
        );
        let id = "x".repeat(MAX_CUSTOMER_ID_CHARS + 1);
        assert!(typed(&id, [], None).is_err());
        assert!(shown_id(&id).ends_with('…'));
    }
}
