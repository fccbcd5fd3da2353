//! Mailchimp's error shape: `application/problem+json` with type, title, status, detail,
//! instance, and for validation failures an `errors` array of field messages.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

const ERROR_DOCS: &str = "https://mailchimp.com/developer/marketing/docs/errors/";

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// An API error as Mailchimp reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailchimpProblem {
    pub status: StatusCode,
    pub title: &'static str,
    pub detail: String,
    pub errors: Vec<FieldError>,
}

impl MailchimpProblem {
    pub fn new(status: StatusCode, title: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }

    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Resource Not Found",
            "The requested resource could not be found.",
        )
    }

    pub fn invalid(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Invalid Resource", detail)
    }

    /// A validation failure naming the fields at fault.
    pub fn invalid_fields(errors: Vec<FieldError>) -> Self {
        Self {
            errors,
            ..Self::invalid(
                "The resource submitted could not be validated. For field-specific details, \
                 see the 'errors' array.",
            )
        }
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::invalid_fields(vec![FieldError {
            field: field.to_owned(),
            message: message.into(),
        }])
    }
}

#[derive(Serialize)]
struct Body<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    title: &'a str,
    status: u16,
    detail: &'a str,
    instance: String,
    #[serde(skip_serializing_if = "<[FieldError]>::is_empty")]
    errors: &'a [FieldError],
}

impl IntoResponse for MailchimpProblem {
    fn into_response(self) -> Response {
        let body = Body {
            kind: ERROR_DOCS,
            title: self.title,
            status: self.status.as_u16(),
            detail: &self.detail,
            instance: uuid_like(),
            errors: &self.errors,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, json).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/problem+json; charset=utf-8"),
        );
        response
    }
}

/// A random id in UUID layout, as Mailchimp's `instance` values look.
fn uuid_like() -> String {
    let hex = hex::encode(rand::random::<[u8; 16]>());
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}
