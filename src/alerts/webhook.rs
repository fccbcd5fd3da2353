//! Alerts posted to a webhook: the URL as an administrator may set it, the signature a
//! receiver checks, and one POST with what it was answered.

use std::fmt;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use url::Url;

use crate::domain::Invalid;
use crate::domain::text::excerpt;
use crate::store::alerts::Answer;

/// The header carrying `sha256=<hex>`, the HMAC-SHA256 under the webhook's secret of the
/// timestamp header's value, a full stop, and the body exactly as sent.
pub const SIGNATURE_HEADER: &str = "X-Export-Destinations-Signature";
/// Seconds since the Unix epoch when the request was signed (part of what is signed, so
/// that a receiver can refuse old requests replayed).
pub const TIMESTAMP_HEADER: &str = "X-Export-Destinations-Timestamp";
/// The delivery's number: the same on every try of one alert, so a receiver can drop a
/// repeat.
pub const DELIVERY_HEADER: &str = "X-Export-Destinations-Delivery";
/// What happened: `run.failed`, `run.members_failed` or `test`.
pub const EVENT_HEADER: &str = "X-Export-Destinations-Event";

/// How long a webhook has to answer.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The most characters of an answer that are kept.
pub const ANSWER_CHARS: usize = 500;

/// An http:// or https:// URL with a host and no user name or password in it (those
/// would be shown on the page and in the audit log).
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, Invalid> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Invalid::new(
                "Webhook URL: give the address alerts are posted to, e.g. https://hooks.example.com/alerts.",
            ));
        }
        let shown = excerpt(raw);
        let Ok(url) = Url::parse(raw) else {
            return Err(Invalid::new(format!(
                "Webhook URL: “{shown}” is not a web address; it starts with https:// or http://."
            )));
        };
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Invalid::new(format!(
                "Webhook URL: “{shown}” is not an http:// or https:// address."
            )));
        }
        if url.host().is_none() {
            return Err(Invalid::new(format!(
                "Webhook URL: “{shown}” names no host."
            )));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Invalid::new(
                "Webhook URL: put no user name or password in the address; check the signature instead.",
            ));
        }
        Ok(Self(url))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// Scheme, host and port: what the audit log and the server's log name.
    pub fn origin(&self) -> String {
        self.0.origin().ascii_serialization()
    }
}

impl fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths of webhook URLs often carry a token of their own: logs get the origin only.
        write!(f, "WebhookUrl({})", self.origin())
    }
}

/// `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" under the secret>`.
pub fn signature(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// The HTTP client alerts are posted with: no redirects followed (a webhook answers
/// itself), a time limit.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(TIMEOUT)
        .user_agent(concat!("export-destinations/", env!("CARGO_PKG_VERSION")))
        .build()
        .expect("a client with rustls and no custom roots builds")
}

/// What one POST was answered, and whether another try may do better.
#[derive(Debug, Clone)]
pub struct Posted {
    pub answer: Answer,
    pub delivered: bool,
    /// A connection error, a time-out, a 5xx or a 429: worth another try. Other answers
    /// (a 4xx) would be the same again.
    pub retry: bool,
}

/// POSTs `body` to the webhook, signed with `secret`.
pub async fn post(
    client: &reqwest::Client,
    url: &str,
    secret: &str,
    delivery_id: i64,
    event: &str,
    body: &str,
) -> Posted {
    let timestamp = (crate::db::now_millis() / 1000).to_string();
    let signed = signature(secret, &timestamp, body.as_bytes());
    let sent = client
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(SIGNATURE_HEADER, signed)
        .header(TIMESTAMP_HEADER, &timestamp)
        .header(DELIVERY_HEADER, delivery_id.to_string())
        .header(EVENT_HEADER, event)
        .body(body.to_owned())
        .send()
        .await;
    match sent {
        Ok(response) => {
            let status = response.status();
            let text = read_excerpt(response).await;
            let delivered = status.is_success();
            Posted {
                answer: Answer {
                    status_code: Some(i64::from(status.as_u16())),
                    error: (!delivered).then(|| format!("The webhook answered {status}.")),
                    excerpt: Some(text).filter(|t| !t.is_empty()),
                },
                delivered,
                retry: status.is_server_error() || status.as_u16() == 429,
            }
        }
        Err(err) => Posted {
            answer: Answer {
                status_code: None,
                error: Some(describe(&err)),
                excerpt: None,
            },
            delivered: false,
            retry: true,
        },
    }
}

/// At most 500 characters of an answer's body, read no further than needed.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    // Four bytes a character at most: enough for 500 characters.
    while bytes.len() < ANSWER_CHARS * 4 {
        match response.chunk().await {
            Ok(Some(chunk)) => bytes.extend_from_slice(&chunk),
            _ => break,
        }
    }
    String::from_utf8_lossy(&bytes)
        .chars()
        .take(ANSWER_CHARS)
        .collect()
}

/// Why a POST got no answer, without the URL (its path may hold a token).
fn describe(err: &reqwest::Error) -> String {
    if err.is_timeout() {
        return format!(
            "The webhook did not answer within {} seconds.",
            TIMEOUT.as_secs()
        );
    }
    let mut cause: &dyn std::error::Error = err;
    while let Some(source) = cause.source() {
        cause = source;
    }
    if err.is_connect() {
        format!("Could not connect to the webhook: {cause}.")
    } else {
        format!("The request to the webhook failed: {cause}.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_http_with_a_host_and_no_credentials() {
        assert_eq!(
            WebhookUrl::parse(" https://hooks.example.com/a?b=1 ")
                .unwrap()
                .as_str(),
            "https://hooks.example.com/a?b=1"
        );
        for (raw, says) in [
            ("", "give the address"),
            ("hooks.example.com/a", "is not a web address"),
            (
                "ftp://hooks.example.com/",
                "is not an http:// or https:// address",
            ),
            (
                "https://user:pw@hooks.example.com/",
                "no user name or password",
            ),
        ] {
            let err = WebhookUrl::parse(raw).unwrap_err();
            assert!(err.as_str().contains(says), "{raw}: {err}");
        }
    }

    #[test]
    fn the_debug_form_shows_the_origin_only() {
        let url = WebhookUrl::parse("https://hooks.example.com/T0/secret-path").unwrap();
        assert_eq!(format!("{url:?}"), "WebhookUrl(https://hooks.example.com)");
    }

    #[test]
    fn the_signature_covers_the_timestamp_and_the_body() {
        // HMAC-SHA256 under "key" of "1700000000.{}", computed with another tool.
        let expected = "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae";
        assert_eq!(signature("key", "1700000000", b"{}"), expected);
        assert_ne!(signature("key", "1700000001", b"{}"), expected);
        assert_ne!(signature("key", "1700000000", b"{ }"), expected);
    }
}
