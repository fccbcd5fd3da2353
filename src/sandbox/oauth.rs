//! Mailchimp's OAuth 2 web-server flow: a consent page, single-use short-lived codes,
//! never-expiring tokens, and the metadata call that names the data centre.

use std::collections::HashMap;
use std::time::Instant;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::json;
use url::Url;

use crate::sandbox::pages::{PageError, PageForm};
use crate::sandbox::state::Sandbox;
use crate::sandbox::store::{AuthCode, Credential, PendingConsent, Token};

pub fn router() -> Router<Sandbox> {
    Router::new()
        .route("/oauth2/authorize", get(authorize).post(decide))
        .route("/oauth2/token", axum::routing::post(token))
        .route("/oauth2/metadata", get(metadata))
}

struct AccountChoice {
    id: String,
    name: String,
}

#[derive(Template)]
#[template(path = "sandbox/consent.html")]
struct ConsentPage {
    base: String,
    app_name: String,
    accounts: Vec<AccountChoice>,
    consent_id: String,
    page_token: String,
    redirect_host: String,
}

async fn authorize(
    State(sandbox): State<Sandbox>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, PageError> {
    let client_id = query.get("client_id").cloned().unwrap_or_default();
    let redirect_uri = query.get("redirect_uri").cloned().unwrap_or_default();
    if query.get("response_type").map(String::as_str) != Some("code") {
        return Err(PageError::bad_request("response_type must be \"code\"."));
    }
    let mut store = sandbox.store();
    let client = store.client(&client_id).cloned().ok_or_else(|| {
        PageError::bad_request("This app (client_id) is not registered with the sandbox.")
    })?;
    let redirect = Url::parse(&redirect_uri)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| PageError::bad_request("redirect_uri must be an http(s) URL."))?;
    if client
        .redirect_uri
        .as_ref()
        .is_some_and(|registered| *registered != redirect_uri)
    {
        return Err(PageError::bad_request(
            "redirect_uri does not match the app's registered redirect URI.",
        ));
    }
    let consent_id = store.random_hex(16);
    store.pending.insert(
        consent_id.clone(),
        PendingConsent {
            client_id,
            redirect_uri,
            state: query.get("state").cloned(),
        },
    );
    let page = ConsentPage {
        base: sandbox.base_path(),
        app_name: client.name,
        accounts: store
            .accounts
            .iter()
            .map(|a| AccountChoice {
                id: a.id.clone(),
                name: a.name.clone(),
            })
            .collect(),
        consent_id,
        page_token: sandbox.page_token().to_owned(),
        redirect_host: redirect.host_str().unwrap_or_default().to_owned(),
    };
    Ok(Html(page.render().map_err(PageError::internal)?).into_response())
}

#[derive(Deserialize)]
struct Decision {
    consent_id: String,
    account_id: Option<String>,
    decision: String,
}

async fn decide(
    State(sandbox): State<Sandbox>,
    PageForm(form): PageForm<Decision>,
) -> Result<Redirect, PageError> {
    let mut store = sandbox.store();
    let pending = store.pending.remove(&form.consent_id).ok_or_else(|| {
        PageError::bad_request("This authorization request was already answered or has expired.")
    })?;
    let mut target = Url::parse(&pending.redirect_uri).map_err(PageError::internal)?;
    {
        let mut pairs = target.query_pairs_mut();
        if form.decision == "allow" {
            let account_id = form.account_id.unwrap_or_default();
            if store.account(&account_id).is_none() {
                return Err(PageError::bad_request("Choose an account."));
            }
            let code = store.random_hex(16);
            store.codes.insert(
                code.clone(),
                AuthCode {
                    client_id: pending.client_id,
                    account_id,
                    redirect_uri: pending.redirect_uri.clone(),
                    expires_at: Instant::now() + sandbox.config().code_lifetime,
                },
            );
            pairs.append_pair("code", &code);
        } else {
            pairs.append_pair("error", "access_denied");
            pairs.append_pair("error_description", "The user denied access to the app.");
        }
        if let Some(state) = &pending.state {
            pairs.append_pair("state", state);
        }
    }
    Ok(Redirect::to(target.as_str()))
}

#[derive(Deserialize)]
struct TokenRequest {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        Json(json!({ "error": error, "error_description": description })),
    )
        .into_response()
}

async fn token(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Form(form): Form<TokenRequest>,
) -> Response {
    // Client credentials in the body (as Mailchimp documents) or by HTTP Basic.
    let basic = match Credential::from_header(
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok()),
    ) {
        Credential::ApiKey(secret) => basic_user(&headers).map(|user| (user, secret)),
        _ => None,
    };
    let (client_id, client_secret) =
        match (form.client_id.clone(), form.client_secret.clone(), basic) {
            (Some(id), Some(secret), _) => (id, secret),
            (_, _, Some((id, secret))) => (id, secret),
            _ => {
                return oauth_error(
                    StatusCode::UNAUTHORIZED,
                    "invalid_client",
                    "Client credentials are missing.",
                );
            }
        };
    if form.grant_type.as_deref() != Some("authorization_code") {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "grant_type must be authorization_code.",
        );
    }
    let mut store = sandbox.store();
    let known = store
        .client(&client_id)
        .is_some_and(|c| crate::crypto::constant_time_eq(&c.client_secret, &client_secret));
    if !known {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "Unknown client or wrong client secret.",
        );
    }
    // A code is removed when presented: it can never be used twice.
    let Some(code) = form.code.as_deref().and_then(|c| store.codes.remove(c)) else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The code is unknown or was already used.",
        );
    };
    if code.expires_at <= Instant::now() {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The code has expired.",
        );
    }
    if code.client_id != client_id {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "The code was issued to another app.",
        );
    }
    if form.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "redirect_uri does not match the authorization request.",
        );
    }
    let access_token = store.random_hex(16);
    store.tokens.insert(
        access_token.clone(),
        Token {
            account_id: code.account_id,
            client_id,
            created_at: crate::sandbox::clock::now(),
        },
    );
    Json(json!({ "access_token": access_token, "expires_in": 0, "scope": null })).into_response()
}

fn basic_user(headers: &HeaderMap) -> Option<String> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(value.strip_prefix("Basic ")?.trim())
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let user = decoded.split_once(':')?.0;
    Some(
        url::form_urlencoded::parse(format!("u={user}").as_bytes())
            .next()?
            .1
            .into_owned(),
    )
}

async fn metadata(State(sandbox): State<Sandbox>, headers: HeaderMap) -> Response {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("OAuth ")
                .or_else(|| v.strip_prefix("Bearer "))
        })
        .map(str::trim)
        .unwrap_or_default();
    let store = sandbox.store();
    let Some(account) = store
        .tokens
        .get(token)
        .and_then(|t| store.account(&t.account_id))
    else {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_token",
            "The access token is unknown or was revoked.",
        );
    };
    let api_endpoint = sandbox.base_url().as_str().trim_end_matches('/').to_owned();
    Json(json!({
        "dc": store.dc,
        "role": "owner",
        "accountname": account.name,
        "user_id": account.user_id,
        "login": {
            "email": account.login_email,
            "avatar": null,
            "login_id": account.user_id,
            "login_name": account.login_name,
            "login_email": account.login_email,
        },
        "login_url": format!("{api_endpoint}/"),
        "api_endpoint": api_endpoint,
    }))
    .into_response()
}
