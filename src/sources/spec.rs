//! What a source is, parsed once from what a person typed or a pipeline sent: every field
//! is checked here, and each problem is named with the input it belongs to.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use url::Url;

use crate::crypto::SecretKey;
use crate::domain::FieldType;
use crate::profiles::ImportOptions;
use crate::store::sources::SourceRow;

/// The longest query a source keeps.
pub const MAX_QUERY_CHARS: usize = 20_000;
/// Full pulls come at least this often (incremental pulls in between).
pub const DEFAULT_FULL_EVERY: i64 = 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceKind {
    Postgres,
    Mysql,
    CsvUrl,
}

impl SourceKind {
    pub const ALL: [SourceKind; 3] = [SourceKind::Postgres, SourceKind::Mysql, SourceKind::CsvUrl];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Postgres => "postgres",
            SourceKind::Mysql => "mysql",
            SourceKind::CsvUrl => "csv_url",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            SourceKind::Postgres => "PostgreSQL",
            SourceKind::Mysql => "MySQL / MariaDB",
            SourceKind::CsvUrl => "CSV file at a URL",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == raw.trim())
    }

    pub fn is_database(self) -> bool {
        !matches!(self, SourceKind::CsvUrl)
    }

    fn schemes(self) -> &'static [&'static str] {
        match self {
            SourceKind::Postgres => &["postgres", "postgresql"],
            SourceKind::Mysql => &["mysql", "mariadb"],
            SourceKind::CsvUrl => &["https", "http"],
        }
    }

    pub fn example(self) -> &'static str {
        match self {
            SourceKind::Postgres => "postgres://reader:password@db.example.com:5432/shop",
            SourceKind::Mysql => "mysql://reader:password@db.example.com:3306/shop",
            SourceKind::CsvUrl => "https://files.example.com/customers.csv",
        }
    }
}

/// How a CSV file's server wants to be asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Credentials {
    #[default]
    None,
    Bearer {
        token: String,
    },
    Basic {
        user: String,
        password: String,
    },
}

/// Profiles of the source that a full pull did not return.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    Delete,
    Keep,
}

impl Missing {
    pub fn as_str(self) -> &'static str {
        match self {
            Missing::Delete => "delete",
            Missing::Keep => "keep",
        }
    }
}

/// A checked source.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    pub name: String,
    pub kind: SourceKind,
    /// With any user name and password: never shown, stored sealed.
    pub url: Url,
    pub credentials: Credentials,
    pub query: Option<String>,
    pub id_column: Option<String>,
    pub changed_at_column: Option<String>,
    pub field_types: BTreeMap<String, FieldType>,
    pub missing: Missing,
    pub full_every: i64,
    pub every_minutes: Option<i64>,
}

/// What a form or an API body gives, as text; [`SourceInput::parse`] checks it.
#[derive(Debug, Clone, Default)]
pub struct SourceInput {
    pub name: String,
    pub kind: String,
    /// Empty on an edit: the stored URL is kept.
    pub url: String,
    /// "none", "bearer" or "basic" (CSV files); empty on an edit keeps the stored ones.
    pub auth: String,
    pub token: String,
    pub user: String,
    pub password: String,
    pub query: String,
    pub id_column: String,
    pub changed_at_column: String,
    /// "Age=number, Joined=date".
    pub field_types: String,
    pub missing_profiles: String,
    pub full_every: String,
    pub every_minutes: String,
}

/// A problem with one input: its name (as the form and the API call it) and what is wrong.
pub type InputError = (&'static str, String);

impl SourceInput {
    /// Checks every input; `stored` is the source being edited (its URL and credentials
    /// stay when none are given).
    pub fn parse(&self, stored: Option<&SourceSpec>) -> Result<SourceSpec, Vec<InputError>> {
        let mut errors = Vec::new();
        let name = match crate::domain::text::clean_name(&self.name, 100) {
            Ok(name) => name,
            Err(e) => {
                errors.push(("name", format!("Name: {e}.")));
                String::new()
            }
        };
        let kind = match (stored, SourceKind::parse(&self.kind)) {
            (Some(stored), _) => stored.kind,
            (None, Some(kind)) => kind,
            (None, None) => {
                errors.push((
                    "kind",
                    "Kind: choose postgres, mysql or csv_url.".to_owned(),
                ));
                SourceKind::Postgres
            }
        };
        let url = self.parse_url(kind, stored, &mut errors);
        let credentials = self.parse_credentials(kind, stored, &mut errors);
        let query = self.parse_query(kind, &mut errors);
        let id_column = optional(&self.id_column);
        if kind.is_database() && id_column.is_none() {
            errors.push((
                "id_column",
                "Customer ID column: name the column of the query that holds the customer ID."
                    .to_owned(),
            ));
        }
        let changed_at_column = optional(&self.changed_at_column);
        if !kind.is_database() && changed_at_column.is_some() {
            errors.push((
                "changed_at_column",
                "Changed-at column: a CSV file is always read whole (an unchanged file costs one request), so it has none."
                    .to_owned(),
            ));
        }
        let field_types = match crate::domain::field::parse_types(&self.field_types) {
            Ok(types) => types.into_iter().collect(),
            Err(e) => {
                errors.push(("field_types", e));
                BTreeMap::new()
            }
        };
        let missing = match self.missing_profiles.trim() {
            "" | "delete" => Missing::Delete,
            "keep" => Missing::Keep,
            other => {
                errors.push((
                    "missing_profiles",
                    format!(
                        "Missing profiles: {:?} is neither delete nor keep.",
                        crate::domain::text::excerpt(other)
                    ),
                ));
                Missing::Delete
            }
        };
        let full_every = number(&self.full_every, "full_every", "Full pull every", 1..=1000)
            .map_err(|e| errors.push(e))
            .ok()
            .flatten()
            .unwrap_or(DEFAULT_FULL_EVERY);
        let every_minutes = number(
            &self.every_minutes,
            "every_minutes",
            "Pull every (minutes)",
            1..=10_080,
        )
        .map_err(|e| errors.push(e))
        .ok()
        .flatten();
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(SourceSpec {
            name,
            kind,
            url: url.expect("checked above"),
            credentials,
            query,
            id_column,
            changed_at_column,
            field_types,
            missing,
            full_every,
            every_minutes,
        })
    }

    fn parse_url(
        &self,
        kind: SourceKind,
        stored: Option<&SourceSpec>,
        errors: &mut Vec<InputError>,
    ) -> Option<Url> {
        let raw = self.url.trim();
        if raw.is_empty() {
            if let Some(stored) = stored {
                return Some(stored.url.clone());
            }
            errors.push((
                "url",
                format!("URL: it is required, for example {}.", kind.example()),
            ));
            return None;
        }
        let refuse = |why: String| ("url", format!("URL: {why}"));
        let url = match Url::parse(raw) {
            Ok(url) => url,
            Err(e) => {
                errors.push(refuse(format!(
                    "it is not a URL ({e}); for example {}.",
                    kind.example()
                )));
                return None;
            }
        };
        if !kind.schemes().contains(&url.scheme()) {
            errors.push(refuse(format!(
                "a {} source's URL starts with {}:// (this one starts with {}:); for example {}.",
                kind.label(),
                kind.schemes()[0],
                crate::domain::text::excerpt(url.scheme()),
                kind.example()
            )));
            return None;
        }
        if url.host_str().is_none_or(str::is_empty) {
            errors.push(refuse(
                "it names no host; give the server's host name or address.".into(),
            ));
            return None;
        }
        Some(url)
    }

    fn parse_credentials(
        &self,
        kind: SourceKind,
        stored: Option<&SourceSpec>,
        errors: &mut Vec<InputError>,
    ) -> Credentials {
        let kept = || stored.map(|s| s.credentials.clone()).unwrap_or_default();
        match self.auth.trim() {
            "" => kept(),
            "none" => Credentials::None,
            _ if kind.is_database() => {
                errors.push((
                    "auth",
                    "Authentication: a database's user name and password go in its URL.".into(),
                ));
                Credentials::None
            }
            "bearer" if !self.token.trim().is_empty() => Credentials::Bearer {
                token: self.token.trim().to_owned(),
            },
            "bearer" => match stored.map(|s| &s.credentials) {
                Some(Credentials::Bearer { token }) => Credentials::Bearer {
                    token: token.clone(),
                },
                _ => {
                    errors.push(("token", "Bearer token: it is required.".into()));
                    Credentials::None
                }
            },
            "basic" if !self.user.trim().is_empty() => {
                let password = match (self.password.is_empty(), stored.map(|s| &s.credentials)) {
                    (true, Some(Credentials::Basic { password, .. })) => password.clone(),
                    _ => self.password.clone(),
                };
                Credentials::Basic {
                    user: self.user.trim().to_owned(),
                    password,
                }
            }
            "basic" => {
                errors.push(("user", "User name: it is required.".into()));
                Credentials::None
            }
            other => {
                errors.push((
                    "auth",
                    format!(
                        "Authentication: {:?} is not none, bearer or basic.",
                        crate::domain::text::excerpt(other)
                    ),
                ));
                Credentials::None
            }
        }
    }

    fn parse_query(&self, kind: SourceKind, errors: &mut Vec<InputError>) -> Option<String> {
        // A trailing semicolon is what people type; the query is read inside another one.
        let query = self.query.trim().trim_end_matches(';').trim();
        if !kind.is_database() {
            if !query.is_empty() {
                errors.push((
                    "query",
                    "Query: a CSV file has no query; its columns are its fields.".into(),
                ));
            }
            return None;
        }
        if query.is_empty() {
            errors.push((
                "query",
                "Query: write the SELECT that returns one row per customer.".into(),
            ));
            return None;
        }
        if query.chars().count() > MAX_QUERY_CHARS {
            errors.push((
                "query",
                format!("Query: at most {MAX_QUERY_CHARS} characters."),
            ));
            return None;
        }
        Some(query.to_owned())
    }
}

fn optional(raw: &str) -> Option<String> {
    let raw = raw.trim();
    (!raw.is_empty()).then(|| raw.to_owned())
}

fn number(
    raw: &str,
    input: &'static str,
    label: &str,
    range: std::ops::RangeInclusive<i64>,
) -> Result<Option<i64>, InputError> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Ok(None);
    }
    match raw.parse::<i64>() {
        Ok(n) if range.contains(&n) => Ok(Some(n)),
        _ => Err((
            input,
            format!(
                "{label}: a whole number from {} to {}.",
                range.start(),
                range.end()
            ),
        )),
    }
}

impl SourceSpec {
    /// The URL without user name, password or query string: what pages show.
    pub fn url_shown(&self) -> String {
        let mut shown = self.url.clone();
        let _ = shown.set_username("");
        let _ = shown.set_password(None);
        shown.set_query(None);
        shown.set_fragment(None);
        shown.to_string()
    }

    /// The import's options for this source's rows.
    pub fn import_options(&self, max_rows: Option<u64>) -> ImportOptions {
        ImportOptions {
            id_column: self.id_column.clone(),
            types: self
                .field_types
                .iter()
                .map(|(k, v)| (k.clone(), *v))
                .collect::<HashMap<_, _>>(),
            max_rows,
        }
    }

    /// Whether `column` is the customer ID among `columns` (named, or found as a CSV
    /// import finds it).
    pub fn is_id_column(&self, column: &str, columns: &[String]) -> bool {
        crate::profiles::import::id_column(columns, self.id_column.as_deref())
            .ok()
            .and_then(|i| columns.get(i))
            .is_some_and(|c| c == column)
    }

    /// "Age=number, Joined=date", as the form shows the set types.
    pub fn field_types_text(&self) -> String {
        self.field_types
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Reads a stored source back, opening its sealed URL and credentials.
    pub fn from_row(row: &SourceRow, key: &SecretKey) -> anyhow::Result<Self> {
        let kind = SourceKind::parse(&row.kind)
            .ok_or_else(|| anyhow::anyhow!("unknown source kind {}", row.kind))?;
        let url = Url::parse(&key.open(&row.url_sealed)?)?;
        let credentials = match &row.credentials_sealed {
            Some(sealed) => serde_json::from_str(&key.open(sealed)?)?,
            None => Credentials::None,
        };
        let types: BTreeMap<String, String> =
            serde_json::from_str(&row.field_types).unwrap_or_default();
        Ok(Self {
            name: row.name.clone(),
            kind,
            url,
            credentials,
            query: row.query.clone(),
            id_column: Some(row.id_column.clone()).filter(|c| !c.is_empty()),
            changed_at_column: row.changed_at_column.clone(),
            field_types: types
                .into_iter()
                .filter_map(|(k, v)| v.parse().ok().map(|t| (k, t)))
                .collect(),
            missing: if row.missing_profiles == "keep" {
                Missing::Keep
            } else {
                Missing::Delete
            },
            full_every: row.full_every,
            every_minutes: row.every_minutes,
        })
    }

    /// The field types as stored (JSON).
    pub fn field_types_json(&self) -> String {
        let types: BTreeMap<&str, &str> = self
            .field_types
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        serde_json::to_string(&types).unwrap_or_else(|_| "{}".into())
    }

    /// The credentials as stored: sealed JSON, or None when there are none.
    pub fn credentials_sealed(&self, key: &SecretKey) -> Option<String> {
        (self.credentials != Credentials::None)
            .then(|| key.seal(&serde_json::to_string(&self.credentials).unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(kind: &str, url: &str) -> SourceInput {
        SourceInput {
            name: "Shop".into(),
            kind: kind.into(),
            url: url.into(),
            query: "SELECT id, email FROM customers;".into(),
            id_column: "id".into(),
            ..SourceInput::default()
        }
    }

    #[test]
    fn a_database_source_needs_its_scheme_a_host_a_query_and_an_id_column() {
        let spec = input("postgres", "postgres://u:secret@db:5432/shop")
            .parse(None)
            .unwrap();
        assert_eq!(
            spec.query.as_deref(),
            Some("SELECT id, email FROM customers")
        );
        assert_eq!(spec.url_shown(), "postgres://db:5432/shop");
        assert_eq!(spec.missing, Missing::Delete);
        assert_eq!(spec.full_every, DEFAULT_FULL_EVERY);

        let errors = input("postgres", "file:///etc/passwd")
            .parse(None)
            .unwrap_err();
        assert!(
            errors[0].1.contains("starts with postgres://"),
            "{errors:?}"
        );
        let errors = input("mysql", "https://x.example/a.csv")
            .parse(None)
            .unwrap_err();
        assert_eq!(errors[0].0, "url");
        let mut no_query = input("mysql", "mysql://u:p@db/shop");
        no_query.query = " ; ".into();
        no_query.id_column.clear();
        let fields: Vec<_> = no_query
            .parse(None)
            .unwrap_err()
            .into_iter()
            .map(|e| e.0)
            .collect();
        assert_eq!(fields, ["query", "id_column"]);
    }

    #[test]
    fn an_edit_without_a_url_keeps_the_stored_one() {
        let stored = input("csv_url", "https://files.example/c.csv");
        let mut stored = stored;
        stored.query.clear();
        stored.auth = "bearer".into();
        stored.token = "t0ken".into();
        let stored = stored.parse(None).unwrap();
        let edit = SourceInput {
            name: "Shop file".into(),
            ..SourceInput::default()
        };
        let edited = edit.parse(Some(&stored)).unwrap();
        assert_eq!(edited.url, stored.url);
        assert_eq!(
            edited.credentials,
            Credentials::Bearer {
                token: "t0ken".into()
            }
        );
    }
}
