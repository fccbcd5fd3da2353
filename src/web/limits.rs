//! Bounds on what a person can type into a form, checked before anything else reads the
//! request: an over-long field is refused with a message that names the field and never
//! repeats its value, so nothing unbounded is parsed, stored or echoed.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::domain::text::excerpt;
use crate::web::error::error_page;

/// The most characters any one field of a page's form may hold. The longest legitimate
/// values (passwords, segment condition values, merge tags) are far below it; each field's
/// own rule (a name's 100 characters, …) is checked later by its domain type.
pub const MAX_FIELD_CHARS: usize = 1_000;
/// The most fields one form may send (a segment with a hundred conditions sends ~300).
pub const MAX_FIELDS: usize = 2_000;
/// URL-encoded forms are buffered whole to be checked; none of the console's is near this.
pub const MAX_FORM_BYTES: usize = 256 * 1024;

/// Why a form was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum FormTooBig {
    Body,
    Fields,
    Field(String),
}

impl FormTooBig {
    pub fn message(&self) -> String {
        match self {
            FormTooBig::Body => format!(
                "The form sent more than {} KiB; nothing was saved.",
                MAX_FORM_BYTES / 1024
            ),
            FormTooBig::Fields => {
                format!("The form sent more than {MAX_FIELDS} fields; nothing was saved.")
            }
            FormTooBig::Field(name) => format!(
                "The field “{}” holds more than {MAX_FIELD_CHARS} characters, more than any field of this console takes; nothing was saved.",
                excerpt(name)
            ),
        }
    }

    pub fn into_response(self) -> Response {
        let status = match self {
            FormTooBig::Body => StatusCode::PAYLOAD_TOO_LARGE,
            _ => StatusCode::UNPROCESSABLE_ENTITY,
        };
        error_page(status, "Too much in one field", &self.message(), None)
    }
}

/// Checks every field of a URL-encoded body.
pub fn check_fields(encoded: &[u8]) -> Result<(), FormTooBig> {
    let mut count = 0;
    for (name, value) in url::form_urlencoded::parse(encoded) {
        count += 1;
        if count > MAX_FIELDS {
            return Err(FormTooBig::Fields);
        }
        if value.chars().count() > MAX_FIELD_CHARS || name.chars().count() > MAX_FIELD_CHARS {
            return Err(FormTooBig::Field(name.into_owned()));
        }
    }
    Ok(())
}

/// Middleware for every page route: URL-encoded bodies are read (up to
/// [`MAX_FORM_BYTES`]) and every field checked before the request goes any further.
pub async fn bounded_forms(request: Request, next: Next) -> Response {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded")
        });
    if !is_form {
        return next.run(request).await;
    }
    let (parts, body) = request.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, MAX_FORM_BYTES).await else {
        return FormTooBig::Body.into_response();
    };
    if let Err(refusal) = check_fields(&bytes) {
        tracing::info!(path = %parts.uri.path(), "form refused: a field is too long");
        return refusal.into_response();
    }
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
        .into_response()
}

/// Reads a text field of a multipart form, refusing it past `max` characters without
/// holding more than that in memory.
pub async fn multipart_text(
    field: &mut axum::extract::multipart::Field<'_>,
    max: usize,
) -> Result<String, String> {
    let name = field.name().unwrap_or_default().to_owned();
    let mut bytes = Vec::new();
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| format!("The upload could not be read: {e}"))?
    {
        bytes.extend_from_slice(&chunk);
        // A character is at most four bytes.
        if bytes.len() > max * 4 {
            return Err(FormTooBig::Field(name).message());
        }
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("The field “{}” is not UTF-8 text.", excerpt(&name)))?;
    if text.chars().count() > max {
        return Err(format!(
            "The field “{}” holds more than {max} characters; nothing was imported.",
            excerpt(&name)
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_is_bounded_and_the_refusal_names_it_without_its_value() {
        assert_eq!(check_fields(b"name=Ada&csrf_token=x"), Ok(()));
        let long = format!("name=Ada&display_name={}", "x".repeat(MAX_FIELD_CHARS + 1));
        let refusal = check_fields(long.as_bytes()).unwrap_err();
        assert_eq!(refusal, FormTooBig::Field("display_name".into()));
        let message = refusal.message();
        assert!(message.contains("display_name") && !message.contains("xxxx"));
        // Characters, not bytes: a thousand accented letters fit.
        let accented = format!("v={}", "%C3%A9".repeat(MAX_FIELD_CHARS));
        assert_eq!(check_fields(accented.as_bytes()), Ok(()));
        let many = "a=1&".repeat(MAX_FIELDS + 1);
        assert_eq!(check_fields(many.as_bytes()), Err(FormTooBig::Fields));
    }
}
