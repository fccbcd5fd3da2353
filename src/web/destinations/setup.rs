//! Set up: the connect steps of the brief, in order: display name, data-privacy consent,
//! audience ID and Connect; Authenticate with Mailchimp (the OAuth round trip is in
//! `oauth`) or an API key; Add yourself as export user; Next. A half-finished set-up is a
//! draft its owner can resume.

use askama::Template;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use tower_sessions::Session;

use crate::auth::session;
use crate::auth::throttle::{self, Reentered};
use crate::connect;
use crate::domain::destination::{ApiKey, AudienceId, CONSENT_VERSION, DisplayName, Target};
use crate::mailchimp::oauth;
use crate::state::AppState;
use crate::store::audit;
use crate::store::destinations::{self, Destination};
use crate::store::{self as db_store, users};
use crate::web::current_user::CurrentUser;
use crate::web::destinations::{Editable, load};
use crate::web::page::{Nav, PageContext, render};
use crate::web::{AppError, format};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/admin/export-destinations/mailchimp/new", get(new_page))
        .route("/admin/export-destinations/mailchimp", post(create))
        .route("/admin/export-destinations/{id}/setup", get(setup_page))
        .route(
            "/admin/export-destinations/{id}/connect",
            post(update_connect),
        )
        .route("/admin/export-destinations/{id}/api-key", post(use_api_key))
        .route(
            "/admin/export-destinations/{id}/export-user",
            post(export_user),
        )
        .route(
            "/admin/export-destinations/{id}/discard",
            get(confirm_discard).post(discard),
        )
}

#[derive(Default)]
struct ConnectForm {
    display_name: String,
    audience_id: String,
    consent: bool,
    target: Target,
}

#[derive(Template)]
#[template(path = "destinations/setup.html")]
pub(super) struct SetupPage {
    ctx: PageContext,
    form: ConnectForm,
    errors: Vec<String>,
    destination: Option<Destination>,
    export_user_name: Option<String>,
    authenticated_at: String,
    /// The built-in sandbox may be chosen.
    offers_sandbox: bool,
    /// Why Authenticate with Mailchimp cannot be used for this destination, if it cannot.
    oauth_unavailable: Option<String>,
    pub(super) auth_error: Option<String>,
    key_error: Option<String>,
    password_error: Option<String>,
}

impl SetupPage {
    fn is_active(&self) -> bool {
        self.destination.as_ref().is_some_and(|d| d.is_active())
    }

    fn connect_action(&self) -> String {
        match &self.destination {
            Some(d) => format!("/admin/export-destinations/{}/connect", d.id),
            None => "/admin/export-destinations/mailchimp".into(),
        }
    }

    fn target_checked(&self, target: &str) -> bool {
        self.form.target.as_str() == target
    }

    /// Authenticate with Mailchimp is done.
    fn authenticated(&self) -> bool {
        self.destination
            .as_ref()
            .is_some_and(|d| d.is_authenticated())
    }

    /// Add yourself as export user is done.
    fn export_user_added(&self) -> bool {
        self.destination
            .as_ref()
            .is_some_and(|d| d.export_user_id.is_some())
    }

    /// Every connect step is done: Next may be taken.
    fn ready_for_next(&self) -> bool {
        self.destination.as_ref().is_some_and(|d| d.is_connected())
    }
}

pub(super) async fn page(
    state: &AppState,
    ctx: PageContext,
    destination: Option<Destination>,
) -> Result<SetupPage, AppError> {
    let export_user_name = match destination.as_ref().and_then(|d| d.export_user_id) {
        Some(id) => users::find_by_id(state.db.pool(), id)
            .await?
            .map(|u| u.name),
        None => None,
    };
    let form = destination
        .as_ref()
        .map(|d| ConnectForm {
            display_name: d.display_name.clone(),
            audience_id: d.audience_id.clone(),
            consent: d.consent_at.is_some(),
            target: d.target,
        })
        .unwrap_or_else(|| ConnectForm {
            target: state.mailchimp.default_target(),
            ..ConnectForm::default()
        });
    let oauth_unavailable = match state.mailchimp.of(form.target) {
        Err(off) => Some(off.to_string()),
        Ok(endpoints) if endpoints.app.is_none() => Some(oauth::NO_APP.to_owned()),
        Ok(_) => None,
    };
    Ok(SetupPage {
        ctx: ctx.at(Nav::ExportDestinations),
        form,
        errors: Vec::new(),
        authenticated_at: format::optional_timestamp(
            destination
                .as_ref()
                .and_then(|d| d.credential.as_ref())
                .and_then(|c| c.authenticated_at),
        ),
        destination,
        export_user_name,
        offers_sandbox: state.mailchimp.offers_sandbox(),
        oauth_unavailable,
        auth_error: None,
        key_error: None,
        password_error: None,
    })
}

async fn new_page(State(state): State<AppState>, ctx: PageContext) -> Result<Response, AppError> {
    Ok(render(&page(&state, ctx, None).await?)?.into_response())
}

async fn setup_page(
    State(state): State<AppState>,
    ctx: PageContext,
    Editable(destination): Editable,
) -> Result<Response, AppError> {
    Ok(render(&page(&state, ctx, Some(destination)).await?)?.into_response())
}

#[derive(Deserialize)]
struct ConnectInput {
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    audience_id: String,
    consent: Option<String>,
    /// Which Mailchimp: absent when the page offered no choice.
    mailchimp: Option<String>,
}

fn parse_connect(
    state: &AppState,
    input: &ConnectInput,
) -> Result<(DisplayName, AudienceId, Target), Vec<String>> {
    let name = DisplayName::parse(&input.display_name);
    let audience = AudienceId::parse(&input.audience_id);
    let target =
        connect::choose_target(state, input.mailchimp.as_deref()).map_err(|e| e.to_string());
    let mut errors = Vec::new();
    if let Err(e) = &name {
        errors.push(e.to_string());
    }
    if input.consent.as_deref() != Some("yes") {
        errors.push("Data privacy and compliance: select I agree to continue.".into());
    }
    if let Err(e) = &target {
        errors.push(e.clone());
    }
    if let Err(e) = &audience {
        errors.push(e.to_string());
    }
    match (name, audience, target) {
        (Ok(name), Ok(audience), Ok(target)) if errors.is_empty() => Ok((name, audience, target)),
        _ => Err(errors),
    }
}

async fn refuse(
    state: &AppState,
    ctx: PageContext,
    destination: Option<Destination>,
    input: ConnectInput,
    errors: Vec<String>,
) -> Result<Response, AppError> {
    let mut page = page(state, ctx, destination).await?;
    let target = input
        .mailchimp
        .as_deref()
        .and_then(|raw| Target::parse(raw).ok())
        .unwrap_or(page.form.target);
    page.form = ConnectForm {
        display_name: input.display_name,
        audience_id: input.audience_id,
        consent: input.consent.is_some(),
        target,
    };
    page.errors = errors;
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

/// Connect: records the name, the consent (who, when, which notice) and the audience.
async fn create(
    State(state): State<AppState>,
    ctx: PageContext,
    Form(input): Form<ConnectInput>,
) -> Result<Response, AppError> {
    let (name, audience, target) = match parse_connect(&state, &input) {
        Ok(parsed) => parsed,
        Err(errors) => return refuse(&state, ctx, None, input, errors).await,
    };
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    let who = ctx.user.actor();
    let started =
        connect::start_draft(&mut tx, &who, &name, &audience, target, connect::Via::Pages).await;
    let id = match started {
        Ok(id) => id,
        Err(taken @ connect::DraftError::NameTaken(_)) => {
            drop(tx);
            let message = format!("Display name: {taken}.");
            return refuse(&state, ctx, None, input, vec![message]).await;
        }
        Err(connect::DraftError::Database(err)) => return Err(err.into()),
    };
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/export-destinations/{id}/setup")).into_response())
}

async fn update_connect(
    State(state): State<AppState>,
    ctx: PageContext,
    Editable(destination): Editable,
    Form(input): Form<ConnectInput>,
) -> Result<Response, AppError> {
    let id = destination.id;
    if destination.is_active() {
        return Err(AppError::BadRequest(
            "Changing the audience means a new destination: set up another one.".into(),
        ));
    }
    let (name, audience, target) = match parse_connect(&state, &input) {
        Ok(parsed) => parsed,
        Err(errors) => return refuse(&state, ctx, Some(destination), input, errors).await,
    };
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    match destinations::update_connect(
        &mut *tx,
        id,
        name.as_str(),
        audience.as_str(),
        target,
        ctx.user.id,
        CONSENT_VERSION,
    )
    .await
    {
        Ok(()) => {}
        Err(err) if db_store::is_unique_violation(&err) => {
            drop(tx);
            let message = format!("Display name: a destination named “{name}” already exists.");
            return refuse(&state, ctx, Some(destination), input, vec![message]).await;
        }
        Err(err) => return Err(err.into()),
    }
    audit::record(
        &mut *tx,
        &ctx.user.actor(),
        "connect",
        Some(id),
        name.as_str(),
        &format!("audience {} on {}", audience.as_str(), target.label()),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/admin/export-destinations/{id}/setup")).into_response())
}

pub(super) async fn setup_or_edit(state: &AppState, id: i64) -> Result<String, AppError> {
    let active = destinations::find(state.db.pool(), id)
        .await?
        .is_some_and(|d| d.is_active());
    Ok(if active {
        format!("/admin/export-destinations/{id}/edit")
    } else {
        format!("/admin/export-destinations/{id}/setup")
    })
}

/// Stores a credential Mailchimp accepted for the audience.
pub(super) async fn store_verified(
    state: &AppState,
    ctx: &PageContext,
    destination: &Destination,
    verified: &connect::Verified,
) -> Result<(), AppError> {
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    connect::record(
        &mut tx,
        &ctx.user.actor(),
        destination.id,
        &destination.display_name,
        verified,
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

#[derive(Deserialize)]
struct ApiKeyInput {
    #[serde(default)]
    api_key: String,
}

/// The alternative to OAuth: a Mailchimp API key, checked against the audience.
async fn use_api_key(
    State(state): State<AppState>,
    ctx: PageContext,
    Editable(destination): Editable,
    Form(input): Form<ApiKeyInput>,
) -> Result<Response, AppError> {
    let id = destination.id;
    let key = match ApiKey::parse(&input.api_key) {
        Ok(key) => key,
        Err(message) => return refuse_key(&state, message.into(), ctx, destination).await,
    };
    let verified =
        match connect::verify_api_key(&state, destination.target, &destination.audience_id, &key)
            .await
        {
            Ok(verified) => verified,
            Err(err) => return refuse_key(&state, err.to_string(), ctx, destination).await,
        };
    store_verified(&state, &ctx, &destination, &verified).await?;
    Ok(Redirect::to(&setup_or_edit(&state, id).await?).into_response())
}

async fn refuse_key(
    state: &AppState,
    message: String,
    ctx: PageContext,
    destination: Destination,
) -> Result<Response, AppError> {
    let mut page = page(state, ctx, Some(destination)).await?;
    page.key_error = Some(message);
    Ok((StatusCode::UNPROCESSABLE_ENTITY, render(&page)?).into_response())
}

#[derive(Deserialize)]
struct PasswordInput {
    #[serde(default)]
    password: String,
}

/// Add yourself as export user: re-entering one's own password proves it is them.
async fn export_user(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<std::net::SocketAddr>,
    ctx: PageContext,
    Editable(destination): Editable,
    Form(input): Form<PasswordInput>,
) -> Result<Response, AppError> {
    let id = destination.id;
    let me = users::find_by_id(state.db.pool(), ctx.user.id)
        .await?
        .ok_or(AppError::SignInRequired { next: None })?;
    let refusal = match throttle::reenter(
        state.db.pool(),
        state.settings.sign_in_throttle,
        &state.hasher,
        &me.email,
        me.password_hash,
        input.password,
        peer.ip(),
    )
    .await?
    {
        Reentered::Right => None,
        Reentered::Wrong => Some((
            StatusCode::UNPROCESSABLE_ENTITY,
            "That is not your console password.".to_owned(),
        )),
        Reentered::Paused { remaining_ms } => Some((
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "Too many wrong passwords, so password checks are paused; {}.",
                throttle::try_again_in(remaining_ms)
            ),
        )),
    };
    if let Some((status, message)) = refusal {
        tracing::warn!(
            user_id = me.id,
            destination_id = id,
            "export user: wrong password"
        );
        let mut page = page(&state, ctx, Some(destination)).await?;
        page.password_error = Some(message);
        return Ok((status, render(&page)?).into_response());
    }
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    connect::make_export_user(&mut tx, &ctx.user.actor(), id, &destination.display_name).await?;
    tx.commit().await?;
    Ok(Redirect::to(&setup_or_edit(&state, id).await?).into_response())
}

#[derive(Template)]
#[template(path = "destinations/discard.html")]
struct DiscardPage {
    ctx: PageContext,
    destination: Destination,
}

/// Asks before a draft and what was entered for it are thrown away.
async fn confirm_discard(
    ctx: PageContext,
    Editable(destination): Editable,
) -> Result<Response, AppError> {
    if destination.is_active() {
        return Err(AppError::BadRequest(
            "Only a draft can be discarded; remove a saved destination instead.".into(),
        ));
    }
    let page = DiscardPage {
        ctx: ctx.at(Nav::ExportDestinations),
        destination,
    };
    Ok(render(&page)?.into_response())
}

/// Discards a draft (its owner only).
async fn discard(
    State(state): State<AppState>,
    user: CurrentUser,
    session: Session,
    Path(id): Path<i64>,
) -> Result<Redirect, AppError> {
    let destination = load(&state, &user, id).await?;
    if destination.is_active() {
        return Err(AppError::BadRequest(
            "Only a draft can be discarded; remove a saved destination instead.".into(),
        ));
    }
    let mut tx = crate::db::begin_write(state.db.pool()).await?;
    destinations::delete(&mut tx, id).await?;
    audit::record(
        &mut *tx,
        &user.actor(),
        "discard draft",
        Some(id),
        &destination.display_name,
        "",
    )
    .await?;
    tx.commit().await?;
    session::set_flash(
        &session,
        format!("Discarded the draft “{}”.", destination.display_name),
    )
    .await?;
    Ok(Redirect::to("/admin/export-destinations"))
}
