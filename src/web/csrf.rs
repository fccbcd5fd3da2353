//! CSRF protection for every state-changing request: a per-session synchronizer token,
//! sent back in the form field `csrf_token` (URL-encoded forms), in the `x-csrf-token`
//! header (scripts), or in the query string of multipart uploads.
//!
//! Pages shown before sign-in (sign-in, first administrator) create no session: their
//! token is a keyed digest of a random nonce kept in a cookie of its own, so a form posted
//! from another site (login CSRF) is refused without a session row per visitor.

use axum::body::Body;
use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_sessions::Session;

use crate::auth::session;
use crate::crypto::{SecretKey, constant_time_eq, random_token};
use crate::state::AppState;
use crate::web::AppError;

/// The cookie holding the nonce of pages shown before sign-in.
pub const PRE_SESSION_COOKIE: &str = "export_destinations_presession";
const PRE_SESSION_PURPOSE: &str = "csrf-pre-session";

/// The CSRF token of a page shown before sign-in, and the cookie to set with it when the
/// browser has none yet.
pub struct PreSession {
    pub token: String,
    set_cookie: Option<HeaderValue>,
}

impl PreSession {
    /// The token for a page: the session's own when there is a session with one.
    pub async fn token_for(&self, session: &Session) -> Result<String, AppError> {
        Ok(session::existing_csrf_token(session)
            .await?
            .unwrap_or_else(|| self.token.clone()))
    }

    /// Sets the nonce cookie on `response` when the browser had none.
    pub fn attach(&self, mut response: Response) -> Response {
        if let Some(cookie) = &self.set_cookie {
            response
                .headers_mut()
                .append(header::SET_COOKIE, cookie.clone());
        }
        response
    }
}

impl FromRequestParts<AppState> for PreSession {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let (nonce, fresh) = match pre_session_nonce(&parts.headers) {
            Some(nonce) => (nonce, false),
            None => (random_token(), true),
        };
        let secure = if state.public_url.scheme() == "https" {
            "; Secure"
        } else {
            ""
        };
        let set_cookie = fresh
            .then(|| {
                HeaderValue::from_str(&format!(
                    "{PRE_SESSION_COOKIE}={nonce}; Path=/; HttpOnly; SameSite=Lax{secure}"
                ))
                .ok()
            })
            .flatten();
        Ok(Self {
            token: pre_session_token(&state.secret_key, &nonce),
            set_cookie,
        })
    }
}

fn pre_session_token(key: &SecretKey, nonce: &str) -> String {
    key.mac(PRE_SESSION_PURPOSE, nonce)
}

/// The nonce cookie's value, when it looks like one the console made.
fn pre_session_nonce(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == PRE_SESSION_COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|v| {
            (16..=128).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

pub const FORM_FIELD: &str = "csrf_token";
pub const HEADER: &str = "x-csrf-token";
/// URL-encoded forms are buffered to find the token; none of the console's is near this.
const MAX_FORM_BYTES: usize = 256 * 1024;

pub async fn verify_csrf(
    State(state): State<AppState>,
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
    let (parts, body) = request.into_parts();
    // Without a session, the token of a page shown before sign-in.
    let expected = match session::existing_csrf_token(&session).await? {
        Some(token) => Some(token),
        None => pre_session_nonce(&parts.headers)
            .map(|nonce| pre_session_token(&state.secret_key, &nonce)),
    };
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
