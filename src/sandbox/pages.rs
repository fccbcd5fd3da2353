//! The sandbox's own pages: the account with its audiences (ids to copy), API keys and
//! connected apps, each audience's members with status, merge fields and tags; and JSON
//! views for tests and benchmarks (`/inspect/...`).

use std::collections::HashMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::sandbox::state::Sandbox;
use crate::sandbox::status::MemberStatus;

const PAGE_SIZE: usize = 100;

/// What the person looking at the pages may see, set as a request extension by whoever
/// mounts the sandbox (the console, from the person's role). Without one, everything: the
/// standalone sandbox has no people of its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PageAccess {
    Everything,
    /// Audiences and members, but no API keys, connected apps or forms.
    WithoutCredentials,
}

/// What the person looking may do: as the server hosting the pages says (an `Extension`),
/// or everything on the sandbox's own server.
impl axum::extract::FromRequestParts<Sandbox> for PageAccess {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &Sandbox,
    ) -> Result<Self, Self::Rejection> {
        Ok(parts
            .extensions
            .get::<PageAccess>()
            .copied()
            .unwrap_or(PageAccess::Everything))
    }
}

pub fn router() -> Router<Sandbox> {
    Router::new()
        .route("/", get(account))
        .route("/audiences/{list_id}", get(audience))
        .route("/audiences/{list_id}/members/{hash}", post(change_member))
        .route("/apps/disconnect", post(disconnect))
        .route("/inspect/stats.json", get(stats))
        .route(
            "/inspect/lists/{list_id}/members.json",
            get(inspect_members),
        )
        .route("/static/sandbox.css", get(stylesheet))
}

async fn stylesheet() -> impl IntoResponse {
    (
        [(axum::http::header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../static/sandbox.css"),
    )
}

/// An error on a sandbox page, shown as a small HTML page.
#[derive(Debug)]
pub struct PageError {
    status: StatusCode,
    message: String,
}

impl PageError {
    pub fn bad_request(message: &str) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.to_owned(),
        }
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "sandbox page failed");
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: "The sandbox could not show this page.".into(),
        }
    }
}

#[derive(Template)]
#[template(path = "sandbox/error.html")]
struct ErrorPage<'a> {
    base: String,
    message: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let html = ErrorPage {
            base: String::new(),
            message: &self.message,
        }
        .render()
        .unwrap_or_else(|_| self.message.clone());
        (self.status, Html(html)).into_response()
    }
}

fn check_page_token(sandbox: &Sandbox, token: &str) -> Result<(), PageError> {
    if crate::crypto::constant_time_eq(sandbox.page_token(), token) {
        Ok(())
    } else {
        Err(PageError {
            status: StatusCode::FORBIDDEN,
            message: "This form did not come from the sandbox's pages. Reload and try again."
                .into(),
        })
    }
}

/// A form sent from one of the sandbox's pages: refused unless it carries the pages'
/// token, so that no other site can make a person's browser change the sandbox.
pub struct PageForm<T>(pub T);

#[derive(Deserialize)]
struct WithToken<T> {
    /// Missing is refused as forged is.
    #[serde(default)]
    page_token: String,
    #[serde(flatten)]
    form: T,
}

impl<T: serde::de::DeserializeOwned + Send> axum::extract::FromRequest<Sandbox> for PageForm<T> {
    type Rejection = PageError;

    async fn from_request(
        request: axum::extract::Request,
        sandbox: &Sandbox,
    ) -> Result<Self, PageError> {
        let Form(sent) = Form::<WithToken<T>>::from_request(request, sandbox)
            .await
            .map_err(|e| PageError::bad_request(&e.body_text()))?;
        check_page_token(sandbox, &sent.page_token)?;
        Ok(PageForm(sent.form))
    }
}

struct AudienceRow {
    id: String,
    name: String,
    subscribed: usize,
    total: usize,
    tags: usize,
}

struct AppRow {
    client_id: String,
    name: String,
    tokens: usize,
}

struct AccountView {
    id: String,
    name: String,
    login_email: String,
    audiences: Vec<AudienceRow>,
    api_keys: Vec<String>,
    apps: Vec<AppRow>,
}

#[derive(Template)]
#[template(path = "sandbox/account.html")]
struct AccountPage {
    base: String,
    back: Option<String>,
    accounts: Vec<AccountView>,
    page_token: String,
    api_base: String,
    show_credentials: bool,
}

async fn account(
    State(sandbox): State<Sandbox>,
    access: PageAccess,
) -> Result<Html<String>, PageError> {
    let show_credentials = access == PageAccess::Everything;
    let store = sandbox.store();
    let accounts = store
        .accounts
        .iter()
        .map(|account| AccountView {
            id: account.id.clone(),
            name: account.name.clone(),
            login_email: account.login_email.clone(),
            audiences: store
                .audiences
                .values()
                .filter(|a| a.account_id == account.id)
                .map(|a| AudienceRow {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    subscribed: a.count(MemberStatus::Subscribed),
                    total: a
                        .members
                        .values()
                        .filter(|m| m.status != MemberStatus::Archived)
                        .count(),
                    tags: a.segments.len(),
                })
                .collect(),
            api_keys: if !show_credentials {
                Vec::new()
            } else {
                let mut keys: Vec<String> = store
                    .api_keys
                    .iter()
                    .filter(|(_, owner)| **owner == account.id)
                    .map(|(key, _)| key.clone())
                    .collect();
                keys.sort();
                keys
            },
            apps: store
                .clients
                .iter()
                .map(|client| AppRow {
                    client_id: client.client_id.clone(),
                    name: client.name.clone(),
                    tokens: store
                        .tokens
                        .values()
                        .filter(|t| t.account_id == account.id && t.client_id == client.client_id)
                        .count(),
                })
                .filter(|app| show_credentials && app.tokens > 0)
                .collect(),
        })
        .collect();
    let page = AccountPage {
        base: sandbox.base_path(),
        back: sandbox.config().back_link.clone(),
        accounts,
        page_token: if show_credentials {
            sandbox.page_token().to_owned()
        } else {
            String::new()
        },
        api_base: sandbox.base_url().as_str().trim_end_matches('/').to_owned(),
        show_credentials,
    };
    Ok(Html(page.render().map_err(PageError::internal)?))
}

struct MemberRow {
    hash: String,
    email: String,
    status: String,
    first_name: String,
    last_name: String,
    other_fields: String,
    tags: Vec<String>,
}

struct TagRow {
    name: String,
    members: usize,
}

#[derive(Template)]
#[template(path = "sandbox/audience.html")]
struct AudiencePage {
    base: String,
    back: Option<String>,
    id: String,
    name: String,
    counts: Vec<(String, usize)>,
    tags: Vec<TagRow>,
    members: Vec<MemberRow>,
    page: usize,
    pages: usize,
    status: String,
    /// Empty when the person looking may not change contacts.
    page_token: String,
}

async fn audience(
    State(sandbox): State<Sandbox>,
    access: PageAccess,
    Path(list_id): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Html<String>, PageError> {
    let may_change = access == PageAccess::Everything;
    let page: usize = query
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let status_filter = query
        .get("status")
        .and_then(|s| s.parse::<MemberStatus>().ok());
    let store = sandbox.store();
    let audience = store.audiences.get(&list_id).ok_or(PageError {
        status: StatusCode::NOT_FOUND,
        message: "There is no audience with this ID.".into(),
    })?;
    let mut members: Vec<_> = audience
        .members
        .iter()
        .filter(|(_, m)| status_filter.is_none_or(|s| m.status == s))
        .collect();
    members.sort_unstable_by_key(|(_, m)| m.web_id);
    let pages = members.len().div_ceil(PAGE_SIZE).max(1);
    let text = |m: &crate::sandbox::audience::Member, tag: &str| match m.merge_fields.get(tag) {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Null) | None => String::new(),
        Some(other) => other.to_string(),
    };
    let rows = members
        .iter()
        .skip((page - 1) * PAGE_SIZE)
        .take(PAGE_SIZE)
        .map(|(hash, m)| MemberRow {
            hash: (*hash).clone(),
            email: m.email_address.clone(),
            status: m.status.to_string(),
            first_name: text(m, "FNAME"),
            last_name: text(m, "LNAME"),
            other_fields: m
                .merge_fields
                .iter()
                .filter(|(tag, v)| {
                    *tag != "FNAME" && *tag != "LNAME" && !v.is_null() && v.as_str() != Some("")
                })
                .map(|(tag, _)| format!("{tag}={}", text(m, tag)))
                .collect::<Vec<_>>()
                .join(", "),
            tags: audience
                .tag_names(m)
                .into_iter()
                .map(|(_, name)| name)
                .collect(),
        })
        .collect();
    let page = AudiencePage {
        base: sandbox.base_path(),
        back: sandbox.config().back_link.clone(),
        id: audience.id.clone(),
        name: audience.name.clone(),
        counts: MemberStatus::ALL
            .iter()
            .map(|s| (s.to_string(), audience.count(*s)))
            .collect(),
        tags: audience
            .segments
            .values()
            .map(|s| TagRow {
                name: s.name.clone(),
                members: s.members.len(),
            })
            .collect(),
        members: rows,
        page,
        pages,
        status: status_filter.map(|s| s.to_string()).unwrap_or_default(),
        page_token: if may_change {
            sandbox.page_token().to_owned()
        } else {
            String::new()
        },
    };
    Ok(Html(page.render().map_err(PageError::internal)?))
}

#[derive(Deserialize)]
struct ChangeForm {
    action: String,
}

/// A user of the account unsubscribes a contact or marks it as bounced, as in Mailchimp's
/// own pages: the audience's webhooks that hear admins are told.
async fn change_member(
    State(sandbox): State<Sandbox>,
    Path((list_id, hash)): Path<(String, String)>,
    PageForm(form): PageForm<ChangeForm>,
) -> Result<Redirect, PageError> {
    use crate::sandbox::webhooks::{MemberChange, Source};
    let change = match form.action.as_str() {
        "unsubscribe" => MemberChange::Unsubscribe,
        "clean" => MemberChange::Clean { abuse: false },
        _ => return Err(PageError::bad_request("Choose unsubscribe or clean.")),
    };
    let email = {
        let store = sandbox.store();
        store
            .audiences
            .get(&list_id)
            .and_then(|a| a.members.get(&hash))
            .map(|m| m.email_address.clone())
            .ok_or(PageError {
                status: StatusCode::NOT_FOUND,
                message: "There is no such contact in this audience.".into(),
            })?
    };
    sandbox
        .change_member(&list_id, &email, change, Source::Admin)
        .map_err(|problem| PageError::bad_request(&problem.detail))?;
    Ok(Redirect::to(&format!(
        "{}/audiences/{list_id}",
        sandbox.base_path()
    )))
}

#[derive(Deserialize)]
struct DisconnectForm {
    account_id: String,
    client_id: String,
}

async fn disconnect(
    State(sandbox): State<Sandbox>,
    PageForm(form): PageForm<DisconnectForm>,
) -> Result<Redirect, PageError> {
    let revoked = sandbox
        .store()
        .disconnect(&form.account_id, &form.client_id);
    tracing::info!(revoked, client_id = %form.client_id, "sandbox app disconnected");
    Ok(Redirect::to(&format!("{}/", sandbox.base_path())))
}

async fn stats(State(sandbox): State<Sandbox>) -> Json<crate::sandbox::limits::Stats> {
    Json(sandbox.stats())
}

/// Every member with status, merge fields, tag names and write count.
async fn inspect_members(
    State(sandbox): State<Sandbox>,
    Path(list_id): Path<String>,
) -> Result<Json<Value>, PageError> {
    let store = sandbox.store();
    let audience = store.audiences.get(&list_id).ok_or(PageError {
        status: StatusCode::NOT_FOUND,
        message: "There is no audience with this ID.".into(),
    })?;
    let members: Vec<Value> = audience
        .members
        .iter()
        .map(|(hash, m)| {
            json!({
                "id": hash,
                "email_address": m.email_address,
                "status": m.status,
                "merge_fields": m.merge_fields,
                "tags": audience.tag_names(m).into_iter().map(|(_, n)| n).collect::<Vec<_>>(),
                "writes": m.writes,
            })
        })
        .collect();
    Ok(Json(json!({ "list_id": audience.id, "members": members })))
}
