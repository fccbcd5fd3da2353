//! Reaching Mailchimp: where its OAuth and Marketing API live for this console, and the
//! OAuth app the console signs in as. The client code never knows whether the far end
//! is Mailchimp or the sandbox.

pub mod client;
pub mod gateway;
pub mod limiter;
pub mod merge_rules;
pub mod oauth;
pub mod refusal;

use std::fmt;

use url::Url;

use crate::domain::destination::Target;

pub const DEFAULT_OAUTH_BASE: &str = "https://login.mailchimp.com";
pub const DEFAULT_API_BASE: &str = "https://{dc}.api.mailchimp.com";
/// Where Mailchimp sends the browser back after consent, under the console's public URL.
pub const CALLBACK_PATH: &str = "oauth/mailchimp/callback";

/// The console's OAuth app registration with Mailchimp (or the sandbox).
#[derive(Clone)]
pub struct OAuthApp {
    pub client_id: String,
    pub client_secret: String,
}

impl fmt::Debug for OAuthApp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OAuthApp")
            .field("client_id", &self.client_id)
            .field("client_secret", &"redacted")
            .finish()
    }
}

/// The Mailchimps this console reaches: the real one (or what the settings name instead)
/// always, and its built-in sandbox when that is on. Each destination says which it uses.
#[derive(Debug, Clone)]
pub struct Reach {
    pub mailchimp: Endpoints,
    pub sandbox: Option<Endpoints>,
}

impl Reach {
    /// Where a destination on `target` finds its Mailchimp; an error a page can show when
    /// that Mailchimp is not available here.
    pub fn of(&self, target: Target) -> Result<&Endpoints, SandboxOff> {
        match target {
            Target::Mailchimp => Ok(&self.mailchimp),
            Target::Sandbox => self.sandbox.as_ref().ok_or(SandboxOff),
        }
    }

    /// What a new destination uses unless its administrator chooses: the sandbox when it is
    /// on and no Mailchimp OAuth app is configured (the zero-configuration start),
    /// otherwise Mailchimp.
    pub fn default_target(&self) -> Target {
        if self.sandbox.is_some() && self.mailchimp.app.is_none() {
            Target::Sandbox
        } else {
            Target::Mailchimp
        }
    }

    /// Whether a destination may use the built-in sandbox.
    pub fn offers_sandbox(&self) -> bool {
        self.sandbox.is_some()
    }
}

/// A destination on the built-in sandbox, in a console whose sandbox is turned off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SandboxOff;

impl fmt::Display for SandboxOff {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "This destination uses the built-in sandbox, which is turned off here (MAILCHIMP_SANDBOX=off). \
             Set up a destination on Mailchimp instead.",
        )
    }
}

/// Where the console finds one Mailchimp.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// The OAuth app the console signs in as; without one only API keys connect.
    pub app: Option<OAuthApp>,
    /// Base of `/oauth2/authorize`, `/oauth2/token` and `/oauth2/metadata`.
    pub oauth_base: Url,
    /// Base of the Marketing API for API keys; `{dc}` is replaced by the key's data centre.
    pub api_base_template: String,
    /// The redirect URI registered for the app.
    pub redirect_uri: Url,
    /// True when these point at the console's built-in sandbox.
    pub is_sandbox: bool,
}

impl Endpoints {
    pub fn authorize_url(&self) -> Url {
        join(&self.oauth_base, "oauth2/authorize")
    }

    pub fn token_url(&self) -> Url {
        join(&self.oauth_base, "oauth2/token")
    }

    pub fn metadata_url(&self) -> Url {
        join(&self.oauth_base, "oauth2/metadata")
    }

    /// The Marketing API base for an API key (`<key>-<dc>`), or None if it has no data centre.
    pub fn api_base_for_key(&self, api_key: &str) -> Option<String> {
        let (_, dc) = api_key.rsplit_once('-')?;
        (!dc.is_empty() && dc.chars().all(|c| c.is_ascii_alphanumeric()))
            .then(|| self.api_base_template.replace("{dc}", dc))
    }
}

/// Appends a relative path to a base URL whatever its trailing slash.
pub fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    let joined = format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    );
    url.set_path(&joined);
    url
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(template: &str) -> Endpoints {
        Endpoints {
            app: Some(OAuthApp {
                client_id: "id".into(),
                client_secret: "secret".into(),
            }),
            oauth_base: Url::parse("http://127.0.0.1:8080/sandbox/").unwrap(),
            api_base_template: template.into(),
            redirect_uri: Url::parse("http://127.0.0.1:8080/oauth/mailchimp/callback").unwrap(),
            is_sandbox: true,
        }
    }

    #[test]
    fn oauth_urls_hang_off_the_base_with_or_without_a_slash() {
        let e = endpoints(DEFAULT_API_BASE);
        assert_eq!(
            e.token_url().as_str(),
            "http://127.0.0.1:8080/sandbox/oauth2/token"
        );
        let mut e2 = e.clone();
        e2.oauth_base = Url::parse("https://login.mailchimp.com").unwrap();
        assert_eq!(
            e2.authorize_url().as_str(),
            "https://login.mailchimp.com/oauth2/authorize"
        );
    }

    #[test]
    fn the_api_base_of_a_key_comes_from_its_data_centre() {
        let e = endpoints(DEFAULT_API_BASE);
        assert_eq!(
            e.api_base_for_key("0123456789abcdef0123456789abcdef-us6")
                .as_deref(),
            Some("https://us6.api.mailchimp.com")
        );
        assert_eq!(e.api_base_for_key("no-data-centre-").as_deref(), None);
        assert_eq!(e.api_base_for_key("nodash"), None);
    }

    #[test]
    fn debug_never_shows_the_client_secret() {
        let app = OAuthApp {
            client_id: "id".into(),
            client_secret: "s3cret".into(),
        };
        assert!(!format!("{app:?}").contains("s3cret"));
    }
}
