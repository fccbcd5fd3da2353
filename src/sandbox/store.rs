//! Everything the sandbox remembers: accounts, OAuth apps, codes and tokens, API keys
//! and audiences. Plain data behind one lock; saved to a file when one is configured.

use std::collections::{BTreeMap, HashMap};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::sandbox::audience::Audience;
use crate::sandbox::problem::MailchimpProblem;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Account {
    pub id: String,
    pub user_id: u64,
    pub name: String,
    pub login_name: String,
    pub login_email: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OAuthClient {
    pub client_id: String,
    pub client_secret: String,
    pub name: String,
    /// None: any http(s) redirect URI, which must then match between authorize and token.
    pub redirect_uri: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Token {
    pub account_id: String,
    pub client_id: String,
    pub created_at: String,
}

#[derive(Debug, Clone)]
pub struct AuthCode {
    pub client_id: String,
    pub account_id: String,
    pub redirect_uri: String,
    pub expires_at: std::time::Instant,
}

/// An authorization request waiting for the person's answer on the consent page.
#[derive(Debug, Clone)]
pub struct PendingConsent {
    pub client_id: String,
    pub redirect_uri: String,
    pub state: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Store {
    pub dc: String,
    pub accounts: Vec<Account>,
    pub clients: Vec<OAuthClient>,
    pub api_keys: HashMap<String, String>,
    pub tokens: HashMap<String, Token>,
    pub audiences: BTreeMap<String, Audience>,
    pub next_web_id: u64,
    pub next_segment_id: u64,
    #[serde(skip)]
    pub codes: HashMap<String, AuthCode>,
    #[serde(skip)]
    pub pending: HashMap<String, PendingConsent>,
    #[serde(skip, default = "fresh_rng")]
    pub rng: StdRng,
}

fn fresh_rng() -> StdRng {
    StdRng::from_entropy()
}

pub const DEFAULT_ACCOUNT: &str = "sandbox-account-1";

impl Store {
    /// The demo world: one account with two audiences. Ids derive from `seed`, so the same
    /// seed gives the same audience ids on every start.
    pub fn demo(seed: u64, dc: &str, now: &str) -> Self {
        let mut store = Self {
            dc: dc.to_owned(),
            accounts: Vec::new(),
            clients: Vec::new(),
            api_keys: HashMap::new(),
            tokens: HashMap::new(),
            audiences: BTreeMap::new(),
            next_web_id: 100_000,
            next_segment_id: 10_000,
            codes: HashMap::new(),
            pending: HashMap::new(),
            rng: StdRng::seed_from_u64(seed),
        };
        store.accounts.push(Account {
            id: DEFAULT_ACCOUNT.into(),
            user_id: 1_001,
            name: "Sandbox Marketing".into(),
            login_name: "sandbox.marketer".into(),
            login_email: "marketer@sandbox.mailchimp.local".into(),
        });
        store.create_audience(DEFAULT_ACCOUNT, "Newsletter subscribers", now);
        store.create_audience(DEFAULT_ACCOUNT, "Customers", now);
        store
    }

    /// Unguessable hex for secrets (codes, tokens, keys): never from the seeded generator.
    pub fn random_hex(&mut self, bytes: usize) -> String {
        let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
        hex::encode(raw)
    }

    pub fn create_audience(&mut self, account_id: &str, name: &str, now: &str) -> String {
        // Audience ids come from the seeded generator: the same seed, the same ids.
        let raw: Vec<u8> = (0..5).map(|_| self.rng.r#gen::<u8>()).collect();
        let id = hex::encode(raw);
        self.next_web_id += 1;
        let audience = Audience::new(
            id.clone(),
            self.next_web_id,
            account_id.into(),
            name.into(),
            now,
        );
        self.audiences.insert(id.clone(), audience);
        id
    }

    /// Adds another account (and returns its id), e.g. to test access across accounts.
    pub fn add_account(&mut self, name: &str) -> String {
        let number = self.accounts.len() as u64 + 1;
        let id = format!("sandbox-account-{number}");
        self.accounts.push(Account {
            id: id.clone(),
            user_id: 1_000 + number,
            name: name.into(),
            login_name: format!("user{number}"),
            login_email: format!("user{number}@sandbox.mailchimp.local"),
        });
        id
    }

    /// A new API key (`<32 hex>-<dc>`) for an account.
    pub fn issue_api_key(&mut self, account_id: &str) -> String {
        let key = format!("{}-{}", self.random_hex(16), self.dc);
        self.api_keys.insert(key.clone(), account_id.into());
        key
    }

    pub fn account(&self, id: &str) -> Option<&Account> {
        self.accounts.iter().find(|a| a.id == id)
    }

    pub fn client(&self, client_id: &str) -> Option<&OAuthClient> {
        self.clients.iter().find(|c| c.client_id == client_id)
    }

    pub fn register_client(&mut self, client: OAuthClient) {
        self.clients.retain(|c| c.client_id != client.client_id);
        self.clients.push(client);
    }

    /// Which account a credential belongs to: 401 when unknown, as Mailchimp answers.
    pub fn authenticate(&self, credential: &Credential) -> Result<String, MailchimpProblem> {
        let account = match credential {
            Credential::Bearer(token) => self.tokens.get(token).map(|t| t.account_id.clone()),
            Credential::ApiKey(key) => self.api_keys.get(key).cloned(),
            Credential::Missing => {
                return Err(MailchimpProblem::new(
                    axum::http::StatusCode::UNAUTHORIZED,
                    "API Key Missing",
                    "Your request did not include an API key.",
                ));
            }
        };
        account.ok_or_else(|| {
            MailchimpProblem::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "API Key Invalid",
                "Your API key may be invalid, or you've attempted to access the wrong datacenter.",
            )
        })
    }

    /// An audience the account may use: 404 when it does not exist, 403 when it is
    /// another account's.
    pub fn audience_mut(
        &mut self,
        account_id: &str,
        list_id: &str,
    ) -> Result<&mut Audience, MailchimpProblem> {
        let audience = self
            .audiences
            .get_mut(list_id)
            .ok_or_else(MailchimpProblem::not_found)?;
        if audience.account_id != account_id {
            return Err(MailchimpProblem::new(
                axum::http::StatusCode::FORBIDDEN,
                "Forbidden",
                "You don't have permission to access this resource.",
            ));
        }
        Ok(audience)
    }

    /// Revokes every token an app holds for an account ("disconnect").
    pub fn disconnect(&mut self, account_id: &str, client_id: &str) -> usize {
        let before = self.tokens.len();
        self.tokens
            .retain(|_, t| !(t.account_id == account_id && t.client_id == client_id));
        before - self.tokens.len()
    }
}

/// How a Marketing API call identified itself.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Credential {
    Bearer(String),
    ApiKey(String),
    Missing,
}

impl Credential {
    /// Reads `Authorization: Bearer <token>` or Basic auth whose password is an API key
    /// (Mailchimp accepts any user name).
    pub fn from_header(value: Option<&str>) -> Self {
        use base64::Engine;
        let Some(value) = value.map(str::trim) else {
            return Self::Missing;
        };
        if let Some(token) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("OAuth "))
        {
            return Self::Bearer(token.trim().to_owned());
        }
        if let Some(encoded) = value.strip_prefix("Basic ") {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            if let Some((_, key)) = decoded.as_deref().and_then(|d| d.split_once(':')) {
                return Self::ApiKey(key.to_owned());
            }
        }
        if let Some(key) = value.strip_prefix("apikey ") {
            return Self::ApiKey(key.trim().to_owned());
        }
        Self::Bearer(value.to_owned())
    }

    /// The key the connection limit counts by.
    pub fn limit_key(&self) -> Option<&str> {
        match self {
            Self::Bearer(s) | Self::ApiKey(s) => Some(s),
            Self::Missing => None,
        }
    }
}
