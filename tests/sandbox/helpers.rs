//! Spawns a standalone sandbox on port 0 and speaks to it over HTTP like a Mailchimp client.

use std::time::Duration;

use export_destinations::sandbox::standalone::RunningSandbox;
use export_destinations::sandbox::store::{DEFAULT_ACCOUNT, OAuthClient};
use export_destinations::sandbox::{Sandbox, SandboxConfig};
use reqwest::{Method, StatusCode};
use serde_json::Value;

pub const CLIENT_ID: &str = "test-app";
pub const CLIENT_SECRET: &str = "test-app-secret";
pub const REDIRECT: &str = "http://127.0.0.1:1/callback";

pub struct TestSandbox {
    pub base: String,
    pub sandbox: Sandbox,
    pub key: String,
    pub newsletter: String,
    pub customers: String,
    pub http: reqwest::Client,
}

/// How a call identifies itself.
#[derive(Clone)]
pub enum Auth {
    Key(String),
    Bearer(String),
    None,
}

pub fn with_app(mut config: SandboxConfig) -> SandboxConfig {
    config.clients.push(OAuthClient {
        client_id: CLIENT_ID.into(),
        client_secret: CLIENT_SECRET.into(),
        name: "Test App".into(),
        redirect_uri: None,
    });
    config
}

pub async fn spawn_sandbox() -> TestSandbox {
    spawn_with(SandboxConfig::default()).await
}

pub async fn spawn_with(config: SandboxConfig) -> TestSandbox {
    let running = RunningSandbox::bind(with_app(config), "127.0.0.1:0".parse().unwrap(), None)
        .await
        .unwrap();
    let base = format!("http://{}", running.addr);
    let sandbox = running.sandbox.clone();
    tokio::spawn(running.serve(std::future::pending()));
    let (key, newsletter, customers) = {
        let store = sandbox.store();
        let key = store
            .api_keys
            .iter()
            .find(|(_, owner)| *owner == DEFAULT_ACCOUNT)
            .map(|(k, _)| k.clone())
            .unwrap();
        let id = |name: &str| {
            store
                .audiences
                .values()
                .find(|a| a.name == name)
                .map(|a| a.id.clone())
                .unwrap()
        };
        (key, id("Newsletter subscribers"), id("Customers"))
    };
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    TestSandbox {
        base,
        sandbox,
        key,
        newsletter,
        customers,
        http,
    }
}

impl TestSandbox {
    pub fn auth(&self) -> Auth {
        Auth::Key(self.key.clone())
    }

    pub async fn call_as(
        &self,
        auth: &Auth,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}/3.0{path}", self.base));
        request = match auth {
            Auth::Key(key) => request.basic_auth("anystring", Some(key)),
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::None => request,
        };
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap()
        };
        (status, json)
    }

    /// The path of a member of the newsletter audience.
    pub fn member_path(&self, email: &str) -> String {
        format!(
            "/lists/{}/members/{}",
            self.newsletter,
            export_destinations::domain::subscriber_hash(email)
        )
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call_as(&self.auth(), Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call_as(&self.auth(), Method::POST, path, Some(body))
            .await
    }

    pub async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call_as(&self.auth(), Method::PUT, path, Some(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call_as(&self.auth(), Method::PATCH, path, Some(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        self.call_as(&self.auth(), Method::DELETE, path, None).await
    }

    /// Batch-subscribes `members` (JSON member items) to the newsletter audience.
    pub async fn batch(&self, members: Value, update_existing: bool) -> Value {
        let (status, body) = self
            .post(
                &format!("/lists/{}", self.newsletter),
                serde_json::json!({ "members": members, "update_existing": update_existing }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body
    }

    pub async fn member(&self, email: &str) -> (StatusCode, Value) {
        let hash = export_destinations::domain::subscriber_hash(email);
        self.get(&format!("/lists/{}/members/{hash}", self.newsletter))
            .await
    }

    /// Goes through the consent page as a person would and returns the redirect's query.
    pub async fn consent(&self, decision: &str, account: &str, state: &str) -> url::Url {
        let page = self
            .http
            .get(format!("{}/oauth2/authorize", self.base))
            .query(&[
                ("response_type", "code"),
                ("client_id", CLIENT_ID),
                ("redirect_uri", REDIRECT),
                ("state", state),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200);
        let html = page.text().await.unwrap();
        assert!(
            html.contains("Sandbox Mailchimp: allow Test App to access your account?"),
            "{html}"
        );
        let response = self
            .http
            .post(format!("{}/oauth2/authorize", self.base))
            .form(&[
                ("consent_id", field(&html, "consent_id").as_str()),
                ("page_token", field(&html, "page_token").as_str()),
                ("account_id", account),
                ("decision", decision),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303);
        url::Url::parse(response.headers()["location"].to_str().unwrap()).unwrap()
    }

    pub async fn exchange(&self, code: &str, secret: &str, redirect: &str) -> (StatusCode, Value) {
        let response = self
            .http
            .post(format!("{}/oauth2/token", self.base))
            .form(&[
                ("grant_type", "authorization_code"),
                ("client_id", CLIENT_ID),
                ("client_secret", secret),
                ("code", code),
                ("redirect_uri", redirect),
            ])
            .send()
            .await
            .unwrap();
        (response.status(), response.json().await.unwrap())
    }

    /// A token for `account` through the whole OAuth flow.
    pub async fn token_for(&self, account: &str) -> String {
        let back = self.consent("allow", account, "s").await;
        let code = query(&back, "code").unwrap();
        let (status, body) = self.exchange(&code, CLIENT_SECRET, REDIRECT).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

pub fn query(url: &url::Url, name: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

pub fn field(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in page"))
        + marker.len();
    let end = html[start..].find('"').unwrap() + start;
    html[start..end].to_owned()
}

/// Asserts Mailchimp's problem+json shape and returns the title.
pub fn problem_title(status: StatusCode, body: &Value, expected_status: u16) -> String {
    assert_eq!(status.as_u16(), expected_status, "{body}");
    for field in ["type", "title", "detail", "instance"] {
        assert!(
            body[field].is_string(),
            "problem+json lacks {field}: {body}"
        );
    }
    assert_eq!(body["status"], expected_status);
    body["title"].as_str().unwrap().to_owned()
}
