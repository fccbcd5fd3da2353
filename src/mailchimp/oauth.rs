//! Mailchimp's OAuth 2 web-server flow with the `oauth2` crate: the authorize URL with a
//! CSRF `state`, and the code exchange. Mailchimp's token response has no `token_type`
//! (and `expires_in: 0` for a token that never expires), so it gets a response type of
//! its own.

use std::time::Duration;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AccessToken, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, RedirectUrl, RefreshToken, Scope, StandardRevocableToken,
    TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::mailchimp::Endpoints;

/// `{"access_token": "…", "expires_in": 0, "scope": null}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MailchimpToken {
    access_token: AccessToken,
    #[serde(default = "bearer")]
    token_type: BasicTokenType,
    expires_in: Option<u64>,
}

fn bearer() -> BasicTokenType {
    BasicTokenType::Bearer
}

impl TokenResponse for MailchimpToken {
    type TokenType = BasicTokenType;

    fn access_token(&self) -> &AccessToken {
        &self.access_token
    }

    fn token_type(&self) -> &BasicTokenType {
        &self.token_type
    }

    /// Mailchimp's tokens do not expire (it says `expires_in: 0`).
    fn expires_in(&self) -> Option<Duration> {
        self.expires_in.filter(|s| *s > 0).map(Duration::from_secs)
    }

    fn refresh_token(&self) -> Option<&RefreshToken> {
        None
    }

    fn scopes(&self) -> Option<&Vec<Scope>> {
        None
    }
}

/// Why Authenticate with Mailchimp cannot start without an OAuth app.
pub const NO_APP: &str = "Authenticate with Mailchimp needs this console's Mailchimp OAuth app, and none is \
     configured (MAILCHIMP_CLIENT_ID and MAILCHIMP_CLIENT_SECRET). Connect with a Mailchimp API key instead, \
     or ask whoever runs the console to register an app with Mailchimp and set both.";

type OAuthClient = oauth2::Client<
    BasicErrorResponse,
    MailchimpToken,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

fn client(endpoints: &Endpoints) -> anyhow::Result<OAuthClient> {
    let app = endpoints
        .app
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!(NO_APP))?;
    Ok(oauth2::Client::new(ClientId::new(app.client_id.clone()))
        .set_client_secret(ClientSecret::new(app.client_secret.clone()))
        .set_auth_uri(AuthUrl::from_url(endpoints.authorize_url()))
        .set_token_uri(TokenUrl::from_url(endpoints.token_url()))
        .set_redirect_uri(RedirectUrl::from_url(endpoints.redirect_uri.clone()))
        // Mailchimp documents the client credentials in the form body.
        .set_auth_type(AuthType::RequestBody))
}

/// Where to send the browser, and the `state` that must come back.
pub fn authorize_url(endpoints: &Endpoints) -> anyhow::Result<(Url, String)> {
    let (url, state) = client(endpoints)?
        .authorize_url(CsrfToken::new_random)
        .url();
    Ok((url, state.secret().clone()))
}

/// Exchanges a code for an access token.
pub async fn exchange(
    endpoints: &Endpoints,
    http: &reqwest::Client,
    code: &str,
) -> anyhow::Result<String> {
    let token = client(endpoints)?
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .request_async(http)
        .await
        .map_err(|e| anyhow::anyhow!("Mailchimp did not accept the authorization code: {e}"))?;
    Ok(token.access_token().secret().clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mailchimps_token_response_parses_without_a_token_type() {
        let token: MailchimpToken =
            serde_json::from_str(r#"{"access_token":"abc","expires_in":0,"scope":null}"#).unwrap();
        assert_eq!(token.access_token().secret(), "abc");
        assert_eq!(token.expires_in(), None);
    }
}
