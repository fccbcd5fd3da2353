//! Typed calls to Mailchimp's Marketing API and OAuth metadata, with Mailchimp's errors
//! (problem+json) sorted into what a caller can act on.

use std::fmt;
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::mailchimp::Endpoints;

/// Mailchimp's own clients wait 120 s for an answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);

/// How a destination signs its API calls.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    OAuth(String),
    ApiKey(String),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::OAuth(_) => f.write_str("OAuth(redacted)"),
            Credential::ApiKey(_) => f.write_str("ApiKey(redacted)"),
        }
    }
}

/// A Marketing API base (e.g. `https://us6.api.mailchimp.com`) and a credential for it.
#[derive(Debug, Clone)]
pub struct Connection {
    pub api_base: String,
    pub credential: Credential,
}

impl Connection {
    /// The account's key: a digest of its API base and credential (the credential never
    /// leaves the process, and the digest is what the database keeps).
    pub fn account_key(&self) -> String {
        let secret = match &self.credential {
            Credential::OAuth(s) | Credential::ApiKey(s) => s,
        };
        account_digest(&self.api_base, secret)
    }
}

/// The digest of an API base and credential that names an account (in the slot table and,
/// cut to 12 digits, in the metrics).
pub fn account_digest(api_base: &str, secret: &str) -> String {
    use sha2::{Digest, Sha256};
    let mut digest = Sha256::new();
    digest.update(api_base.as_bytes());
    digest.update(b"|");
    digest.update(secret.as_bytes());
    hex::encode(digest.finalize())
}

/// The account label the metrics give an API base and credential.
pub fn account_label(api_base: &str, secret: &str) -> String {
    account_digest(api_base, secret)[..12].to_owned()
}

/// What kind of failure a call met, for deciding what to do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 401: the token or key is wrong or was revoked.
    Unauthorized,
    /// 403 with Mailchimp's problem document: this account may not use the resource.
    Forbidden,
    /// 404: no such audience, member or segment.
    NotFound,
    /// 429, or a 403 without Mailchimp's problem document: too many connections; slow
    /// down and retry.
    Throttled,
    /// 5xx, timeouts, connection failures: retry later.
    Transient,
    /// Any other 4xx: the request itself is wrong; retrying will not help.
    Invalid,
    /// Not sent at all: the run it belonged to had stopped.
    NotSent,
}

/// A failed call: Mailchimp's title and detail, or what went wrong on the way.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{title}: {detail}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub status: Option<u16>,
    pub title: String,
    pub detail: String,
    /// How long Mailchimp asked the caller to wait (a `Retry-After` header), if it did.
    pub retry_after: Option<Duration>,
}

impl ApiError {
    fn from_status(status: StatusCode, body: &str) -> Self {
        let problem: Value = serde_json::from_str(body).unwrap_or(Value::Null);
        let text = |key: &str| problem.get(key).and_then(Value::as_str).map(str::to_owned);
        // Mailchimp explains every refusal of its own with a problem document that has a
        // title (its OAuth server, with an `error`). Under heavy load it has also answered
        // a bare 403 (no body, or a proxy's HTML page) where it means 429: that one is
        // throttling, not a lack of access, and is retried like a 429.
        let explained = ["title", "error"]
            .iter()
            .any(|key| text(key).is_some_and(|t| !t.trim().is_empty()));
        if status == StatusCode::FORBIDDEN && !explained {
            return Self {
                kind: ErrorKind::Throttled,
                status: Some(status.as_u16()),
                title: "Too Many Requests".into(),
                detail: "Mailchimp answered 403 Forbidden without saying why, as it does \
                         instead of 429 when it throttles"
                    .into(),
                retry_after: None,
            };
        }
        let kind = match status.as_u16() {
            401 => ErrorKind::Unauthorized,
            403 => ErrorKind::Forbidden,
            404 => ErrorKind::NotFound,
            429 => ErrorKind::Throttled,
            500..=599 => ErrorKind::Transient,
            _ => ErrorKind::Invalid,
        };
        Self {
            kind,
            status: Some(status.as_u16()),
            title: text("title")
                .or_else(|| text("error"))
                .unwrap_or_else(|| status.to_string()),
            detail: text("detail")
                .or_else(|| text("error_description"))
                .unwrap_or_default(),
            retry_after: None,
        }
    }

    pub(crate) fn not_sent() -> Self {
        Self {
            kind: ErrorKind::NotSent,
            status: None,
            title: "Not sent".into(),
            detail: "the run stopped before this call left".into(),
            retry_after: None,
        }
    }

    /// The console's database could not lend a connection slot: try again later.
    pub(crate) fn no_slot(err: &sqlx::Error) -> Self {
        Self {
            kind: ErrorKind::Transient,
            status: None,
            title: "No connection slot".into(),
            detail: format!("the account's shared connection slots could not be read: {err}"),
            retry_after: None,
        }
    }

    fn transport(err: reqwest::Error) -> Self {
        Self {
            kind: ErrorKind::Transient,
            status: None,
            title: if err.is_timeout() {
                "Timed out".into()
            } else {
                "Connection failed".into()
            },
            // Without the URL: it can carry a data centre, never a secret, but stay terse.
            detail: err.without_url().to_string(),
            retry_after: None,
        }
    }
}

/// `/oauth2/metadata`: which Mailchimp account a token belongs to and where its API is.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    pub dc: String,
    pub api_endpoint: String,
    pub accountname: String,
    #[serde(default)]
    pub login: Option<Login>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Login {
    #[serde(default)]
    pub login_email: Option<String>,
}

/// What the console needs to know of an audience.
#[derive(Debug, Clone)]
pub struct AudienceInfo {
    pub id: String,
    pub name: String,
    pub member_count: i64,
}

/// The parts of a merge field that [`MergeField`] reads: asked for with `fields=` so that
/// Mailchimp leaves out the rest.
pub(crate) const MERGE_FIELD_PARTS: [&str; 7] = [
    "tag",
    "name",
    "type",
    "required",
    "default_value",
    "options.size",
    "options.date_format",
];

/// `fields=` for a page of merge fields: the parts read of each.
pub(crate) fn merge_field_page_fields() -> String {
    MERGE_FIELD_PARTS
        .iter()
        .map(|part| format!("merge_fields.{part}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeField {
    pub tag: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub required: bool,
    /// What Mailchimp fills in when a new member has no value.
    #[serde(default)]
    pub default_value: String,
    #[serde(default)]
    pub options: Option<MergeFieldOptions>,
}

/// A merge field's options that limit its values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct MergeFieldOptions {
    /// A text field's size in characters.
    #[serde(default)]
    pub size: Option<usize>,
    /// A date field's format, such as `MM/DD/YYYY`.
    #[serde(default)]
    pub date_format: Option<String>,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

impl Client {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("export-destinations/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("a TLS-capable HTTP client");
        Self { http }
    }

    /// The underlying HTTP client (for the OAuth code exchange).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub async fn metadata(&self, endpoints: &Endpoints, token: &str) -> Result<Metadata, ApiError> {
        let response = self
            .http
            .get(endpoints.metadata_url())
            .header("Authorization", format!("OAuth {token}"))
            .send()
            .await
            .map_err(ApiError::transport)?;
        read(response).await
    }

    /// Sends one Marketing API call and reads its JSON answer.
    pub async fn call<T: DeserializeOwned>(
        &self,
        connection: &Connection,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<T, ApiError> {
        self.call_with(connection, method, path, body).await
    }

    /// Sends one Marketing API call with a typed body and reads its JSON answer.
    pub async fn call_with<T: DeserializeOwned, B: Serialize + ?Sized>(
        &self,
        connection: &Connection,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let url = format!("{}/3.0{path}", connection.api_base.trim_end_matches('/'));
        let mut request = self.http.request(method, url);
        request = match &connection.credential {
            Credential::OAuth(token) => request.bearer_auth(token),
            Credential::ApiKey(key) => request.basic_auth("export-destinations", Some(key)),
        };
        if let Some(body) = body {
            request = request.json(body);
        }
        let account = &connection.account_key()[..12];
        let started = std::time::Instant::now();
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                crate::metrics::observe_call(account, None, false, started.elapsed());
                return Err(ApiError::transport(err));
            }
        };
        let status = response.status().as_u16();
        // Read before counting: only the body tells a throttling 403 from a refusal.
        let answer = read(response).await;
        let throttled = matches!(&answer, Err(err) if err.kind == ErrorKind::Throttled);
        crate::metrics::observe_call(account, Some(status), throttled, started.elapsed());
        answer
    }
}

async fn read<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, ApiError> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let body = response.text().await.map_err(ApiError::transport)?;
    if !status.is_success() {
        let mut error = ApiError::from_status(status, &body);
        error.retry_after = retry_after;
        return Err(error);
    }
    // 204 No Content (DELETE, tag updates) reads as JSON null.
    let body = if body.trim().is_empty() {
        "null".to_owned()
    } else {
        body
    };
    serde_json::from_str(&body).map_err(|e| ApiError {
        kind: ErrorKind::Transient,
        status: Some(status.as_u16()),
        title: "Unreadable answer".into(),
        detail: format!("Mailchimp's answer could not be read: {e}"),
        retry_after: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_403_without_mailchimps_explanation_is_throttling_and_one_with_it_is_a_refusal() {
        let forbidden = StatusCode::FORBIDDEN;
        for bare in [
            "",
            "<html><body><h1>403 Forbidden</h1></body></html>",
            "{}",
            r#"{"title": ""}"#,
        ] {
            let err = ApiError::from_status(forbidden, bare);
            assert_eq!(err.kind, ErrorKind::Throttled, "{bare:?}");
            assert_eq!(err.status, Some(403));
        }
        let refused = ApiError::from_status(
            forbidden,
            r#"{"type": "https://mailchimp.com/developer/marketing/docs/errors/",
                "title": "Forbidden", "status": 403,
                "detail": "You don't have permission to access this resource."}"#,
        );
        assert_eq!(refused.kind, ErrorKind::Forbidden);
        assert_eq!(refused.title, "Forbidden");
        let oauth = ApiError::from_status(forbidden, r#"{"error": "forbidden"}"#);
        assert_eq!(oauth.kind, ErrorKind::Forbidden);
        // Other statuses are sorted by their status alone, body or not.
        assert_eq!(
            ApiError::from_status(StatusCode::UNAUTHORIZED, "").kind,
            ErrorKind::Unauthorized
        );
        assert_eq!(
            ApiError::from_status(StatusCode::TOO_MANY_REQUESTS, "").kind,
            ErrorKind::Throttled
        );
    }
}
