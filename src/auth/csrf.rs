//! CSRF protection for every state-changing request: a per-session synchronizer token,
//! sent back in the form field `csrf_token` (URL-encoded forms), in the `x-csrf-token`
//! header (scripts), or in the query string of multipart uploads.

use axum::body::Body;
use axum::extract::Request;
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_sessions::Session;

use crate::auth::session;
use crate::crypto::constant_time_eq;
use crate::web::AppError;

pub const FORM_FIELD: &str = "csrf_token";
pub const HEADER: &str = "x-csrf-token";
/// URL-encoded forms are buffered to find the token; none of the console's is near this.
const MAX_FORM_BYTES: usize = 256 * 1024;

pub async fn verify_csrf(
    session: Session,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if matches!(
        *request.method(),
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
    ) {
        return Ok(next.run(request).await);
    }
    let expected = session::existing_csrf_token(&session).await?;
    let (parts, body) = request.into_parts();
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let header_token = parts
        .headers
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (provided, body) = if let Some(token) = header_token {
        (Some(token), body)
    } else if content_type.starts_with("application/x-www-form-urlencoded") {
        let bytes = axum::body::to_bytes(body, MAX_FORM_BYTES)
            .await
            .map_err(|_| AppError::PayloadTooLarge)?;
        (field(&bytes), Body::from(bytes))
    } else if content_type.starts_with("multipart/form-data") {
        (parts.uri.query().map(str::as_bytes).and_then(field), body)
    } else {
        (None, body)
    };
    match (expected, provided) {
        (Some(expected), Some(provided)) if constant_time_eq(&expected, &provided) => {
            Ok(next.run(Request::from_parts(parts, body)).await)
        }
        _ => Err(AppError::CsrfRejected),
    }
}

fn field(encoded: &[u8]) -> Option<String> {
    url::form_urlencoded::parse(encoded)
        .find(|(name, _)| name == FORM_FIELD)
        .map(|(_, value)| value.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_is_found_among_other_fields() {
        assert_eq!(field(b"a=1&csrf_token=abc%2B&b=2").as_deref(), Some("abc+"));
        assert_eq!(field(b"a=1"), None);
    }
}
