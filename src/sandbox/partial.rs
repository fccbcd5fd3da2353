//! Partial answers: Mailchimp's `fields` and `exclude_fields` query parameters, honoured on
//! every JSON answer of the Marketing API. Both take comma-separated dotted paths
//! (`members.email_address`); a path through an array applies to each of its elements;
//! `fields` keeps only the paths named (and what lies under them), `exclude_fields` then
//! takes the paths named away. Paths that name nothing are ignored.

use std::collections::BTreeMap;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::Response;
use serde_json::Value;

/// Paths, as a tree of their names.
#[derive(Debug, Default)]
struct Paths {
    /// Named itself: kept (or taken away) whole, whatever is named under it.
    whole: bool,
    under: BTreeMap<String, Paths>,
}

impl Paths {
    /// The paths of a parameter's value; None when it names none.
    fn parse(list: &str) -> Option<Self> {
        let mut root = Self::default();
        for path in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let mut node = &mut root;
            for name in path.split('.').filter(|n| !n.is_empty()) {
                node = node.under.entry(name.to_owned()).or_default();
            }
            node.whole = true;
        }
        (!root.under.is_empty()).then_some(root)
    }

    /// Keeps only these paths of `value`.
    fn keep(&self, value: &mut Value) {
        match value {
            Value::Object(object) => object.retain(|key, inner| match self.under.get(key) {
                None => false,
                Some(paths) if paths.whole => true,
                Some(paths) => match inner {
                    Value::Object(_) | Value::Array(_) => {
                        paths.keep(inner);
                        true
                    }
                    // A path that goes on below a plain value names nothing.
                    _ => false,
                },
            }),
            Value::Array(items) => items.iter_mut().for_each(|item| self.keep(item)),
            _ => {}
        }
    }

    /// Takes these paths out of `value`.
    fn take_away(&self, value: &mut Value) {
        match value {
            Value::Object(object) => {
                for (key, paths) in &self.under {
                    if paths.whole {
                        object.remove(key);
                    } else if let Some(inner) = object.get_mut(key) {
                        paths.take_away(inner);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|item| self.take_away(item)),
            _ => {}
        }
    }
}

/// `value` as a call with these `fields` and `exclude_fields` parameters receives it.
pub fn filter(value: &mut Value, fields: Option<&str>, exclude_fields: Option<&str>) {
    if let Some(paths) = fields.and_then(Paths::parse) {
        paths.keep(value);
    }
    if let Some(paths) = exclude_fields.and_then(Paths::parse) {
        paths.take_away(value);
    }
}

/// The middleware: a successful JSON answer is cut to what the query asks for. Problem
/// documents are left whole, as Mailchimp leaves them.
pub async fn only_the_fields_asked(request: Request, next: Next) -> Response {
    let (mut fields, mut exclude) = (None, None);
    for (key, value) in url::form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
    {
        match &*key {
            "fields" => fields = Some(value.into_owned()),
            "exclude_fields" => exclude = Some(value.into_owned()),
            _ => {}
        }
    }
    let response = next.run(request).await;
    if fields.is_none() && exclude.is_none() || !response.status().is_success() {
        return response;
    }
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return Response::from_parts(parts, Body::empty());
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    filter(&mut value, fields.as_deref(), exclude.as_deref());
    let filtered = serde_json::to_vec(&value).unwrap_or_default();
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(filtered))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::filter;

    fn page() -> serde_json::Value {
        json!({
            "members": [
                { "email_address": "ada@northwind.io", "status": "subscribed",
                  "merge_fields": { "FNAME": "Ada", "LNAME": "Lovelace" },
                  "tags": [ { "id": 1, "name": "Germany" } ] },
                { "email_address": "bob@fabrikam.io", "status": "unsubscribed",
                  "merge_fields": { "FNAME": "Bob", "LNAME": "" },
                  "tags": [] }
            ],
            "list_id": "abc123",
            "total_items": 2,
            "_links": []
        })
    }

    #[test]
    fn fields_keep_dotted_paths_inside_every_element_of_an_array() {
        let mut value = page();
        filter(
            &mut value,
            Some("members.email_address,members.merge_fields.FNAME,total_items"),
            None,
        );
        assert_eq!(
            value,
            json!({
                "members": [
                    { "email_address": "ada@northwind.io", "merge_fields": { "FNAME": "Ada" } },
                    { "email_address": "bob@fabrikam.io", "merge_fields": { "FNAME": "Bob" } }
                ],
                "total_items": 2
            })
        );
    }

    #[test]
    fn a_field_named_whole_is_kept_whole_whatever_is_named_under_it() {
        let mut value = page();
        filter(&mut value, Some("members.tags.name,members.tags"), None);
        assert_eq!(
            value["members"][0],
            json!({ "tags": [ { "id": 1, "name": "Germany" } ] })
        );
        let mut value = page();
        filter(&mut value, Some("members.tags.name"), None);
        assert_eq!(
            value["members"][0],
            json!({ "tags": [ { "name": "Germany" } ] })
        );
    }

    #[test]
    fn exclude_fields_take_paths_away_after_fields_kept_theirs() {
        let mut value = page();
        filter(
            &mut value,
            None,
            Some("members.merge_fields,members.tags.id,_links"),
        );
        assert_eq!(
            value["members"][0],
            json!({ "email_address": "ada@northwind.io", "status": "subscribed",
                    "tags": [ { "name": "Germany" } ] })
        );
        assert!(value.get("_links").is_none());
        assert_eq!(value["list_id"], "abc123");
        let mut value = page();
        filter(
            &mut value,
            Some("members.email_address,members.status,total_items"),
            Some("members.status"),
        );
        assert_eq!(
            value,
            json!({ "members": [ { "email_address": "ada@northwind.io" },
                                 { "email_address": "bob@fabrikam.io" } ],
                    "total_items": 2 })
        );
    }

    #[test]
    fn unknown_paths_and_empty_parameters_are_ignored() {
        let mut value = page();
        filter(
            &mut value,
            Some("total_items,no_such_field,members.nothing.here,list_id.deeper"),
            None,
        );
        assert_eq!(value, json!({ "members": [ {}, {} ], "total_items": 2 }));
        let mut value = page();
        filter(
            &mut value,
            None,
            Some("no_such_field,members.email_address.x"),
        );
        assert_eq!(value, page());
        let mut value = page();
        filter(&mut value, Some(" , "), Some(""));
        assert_eq!(
            value,
            page(),
            "a parameter that names nothing changes nothing"
        );
    }
}
