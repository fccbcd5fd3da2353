//! Connecting a destination to its Mailchimp audience, whichever layer asks (the set-up
//! pages or the automation API): the credential is checked against the audience first, and
//! only then sealed, stored and audited. Each layer turns a [`ConnectError`] into its own
//! answer once (an HTML page, a problem+json field error).

use std::fmt;

use sqlx::AnyConnection;

use crate::domain::destination::{ApiKey, AudienceId, CONSENT_VERSION, DisplayName, Target};
use crate::mailchimp::SandboxOff;
use crate::mailchimp::client::{Connection, Credential};
use crate::mailchimp::gateway::Gateway;
pub use crate::mailchimp::refusal::{Refusal, RefusalKind};
use crate::state::AppState;
use crate::store::audit::{self, Actor};
use crate::store::destinations::{self, Authentication, Configuration};

pub use crate::domain::destination::AuthMethod as Method;

/// A credential Mailchimp accepted for the audience: what is stored for the destination.
pub struct Verified {
    pub method: Method,
    /// The credential, sealed with the console's key.
    pub sealed: String,
    pub api_base: String,
    /// The Mailchimp account, as the set-up page shows it.
    pub account: String,
    pub audience_id: String,
    pub audience_name: String,
    pub audience_members: i64,
}

/// Why a destination cannot be connected.
#[derive(Debug)]
pub enum ConnectError {
    /// The Mailchimp asked for is neither `mailchimp` nor `sandbox`.
    UnknownMailchimp,
    /// The destination is on the built-in sandbox, which is turned off here.
    SandboxOff(SandboxOff),
    /// An API key whose suffix names no data centre.
    NoDataCentre,
    /// Mailchimp said no, or could not be reached.
    Refused(Refusal),
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::UnknownMailchimp => {
                f.write_str("Mailchimp: choose Mailchimp or the built-in sandbox.")
            }
            ConnectError::SandboxOff(off) => off.fmt(f),
            ConnectError::NoDataCentre => f.write_str("API key: it names no data centre."),
            ConnectError::Refused(refusal) => {
                write!(f, "{}. {}", refusal.title(), refusal.explanation())
            }
        }
    }
}

/// The Mailchimp a new destination is to use: the one asked for (`mailchimp` or
/// `sandbox`), or the console's default when none is, and only one available here.
pub fn choose_target(state: &AppState, asked: Option<&str>) -> Result<Target, ConnectError> {
    let target = match asked {
        None => state.mailchimp.default_target(),
        Some(raw) => Target::parse(raw).map_err(|_| ConnectError::UnknownMailchimp)?,
    };
    state
        .mailchimp
        .of(target)
        .map_err(ConnectError::SandboxOff)?;
    Ok(target)
}

/// Checks an API key against the audience on the destination's Mailchimp.
pub async fn verify_api_key(
    state: &AppState,
    target: Target,
    audience_id: &str,
    key: &ApiKey,
) -> Result<Verified, ConnectError> {
    let endpoints = state
        .mailchimp
        .of(target)
        .map_err(ConnectError::SandboxOff)?;
    let api_base = endpoints
        .api_base_for_key(key.expose())
        .ok_or(ConnectError::NoDataCentre)?;
    let account = format!("(API key, {})", key.data_centre());
    let connection = Connection {
        api_base,
        credential: Credential::ApiKey(key.expose().to_owned()),
    };
    verify(state, connection, Method::ApiKey, &account, audience_id).await
}

/// Checks an OAuth access token (and the API base and account Mailchimp's metadata gave
/// with it) against the audience.
pub async fn verify_token(
    state: &AppState,
    token: &str,
    api_base: &str,
    account: &str,
    audience_id: &str,
) -> Result<Verified, ConnectError> {
    let connection = Connection {
        api_base: api_base.to_owned(),
        credential: Credential::OAuth(token.to_owned()),
    };
    verify(state, connection, Method::OAuth, account, audience_id).await
}

async fn verify(
    state: &AppState,
    connection: Connection,
    method: Method,
    account: &str,
    audience_id: &str,
) -> Result<Verified, ConnectError> {
    // Within the account's connection budget, like every other call to it.
    let gateway = Gateway::for_a_person(
        state.mailchimp_client.clone(),
        connection.clone(),
        &state.engine.limiters,
    );
    let audience = gateway
        .audience(audience_id)
        .await
        .map_err(|err| ConnectError::Refused(Refusal::of(&err, account, audience_id)))?;
    let secret = match &connection.credential {
        Credential::ApiKey(key) => key,
        Credential::OAuth(token) => token,
    };
    Ok(Verified {
        method,
        sealed: state.secret_key.seal(secret),
        api_base: connection.api_base,
        account: account.to_owned(),
        audience_id: audience.id,
        audience_name: audience.name,
        audience_members: audience.member_count,
    })
}

/// Stores a verified credential for the destination and notes it in the audit log.
pub async fn record(
    conn: &mut AnyConnection,
    actor: &Actor<'_>,
    destination_id: i64,
    display_name: &str,
    verified: &Verified,
) -> sqlx::Result<()> {
    let auth = Authentication {
        method: verified.method.as_str(),
        credential_sealed: &verified.sealed,
        api_base: &verified.api_base,
        account: &verified.account,
        audience_name: &verified.audience_name,
        audience_members: verified.audience_members,
        by: actor.user_id,
    };
    destinations::set_authentication(&mut *conn, destination_id, &auth).await?;
    let details = format!(
        "{}: account {}, audience “{}” ({})",
        verified.method.as_str(),
        verified.account,
        verified.audience_name,
        verified.audience_id
    );
    audit::record(
        &mut *conn,
        actor,
        "authenticate",
        Some(destination_id),
        display_name,
        &details,
    )
    .await
}

/// Where a step of the set-up was taken, as the audit log notes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Pages,
    Api,
}

/// Why a draft was not started.
#[derive(Debug, thiserror::Error)]
pub enum DraftError {
    #[error("a destination named “{0}” already exists")]
    NameTaken(String),
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The set-up's first step, whoever takes it: the draft with its name, audience and
/// Mailchimp, and the consent (who, when, which notice) in the audit log with the audience.
pub async fn start_draft(
    conn: &mut AnyConnection,
    actor: &Actor<'_>,
    name: &DisplayName,
    audience: &AudienceId,
    target: Target,
    via: Via,
) -> Result<i64, DraftError> {
    let created = destinations::create_draft(
        &mut *conn,
        name.as_str(),
        audience.as_str(),
        target,
        actor.user_id,
        CONSENT_VERSION,
    )
    .await;
    let id = match created {
        Ok(id) => id,
        Err(err) if crate::store::is_unique_violation(&err) => {
            return Err(DraftError::NameTaken(name.to_string()));
        }
        Err(err) => return Err(err.into()),
    };
    let consent = match via {
        Via::Pages => format!("agreed to notice {CONSENT_VERSION}"),
        Via::Api => format!("agreed to notice {CONSENT_VERSION} (API)"),
    };
    let connected = format!("audience {} on {}", audience.as_str(), target.label());
    for (action, details) in [("consent", consent), ("connect", connected)] {
        audit::record(&mut *conn, actor, action, Some(id), name.as_str(), &details).await?;
    }
    Ok(id)
}

/// Makes the acting person the destination's export user (after their password was
/// checked again by the caller), noted in the audit log.
pub async fn make_export_user(
    conn: &mut AnyConnection,
    actor: &Actor<'_>,
    destination_id: i64,
    display_name: &str,
) -> sqlx::Result<()> {
    destinations::set_export_user(&mut *conn, destination_id, actor.user_id).await?;
    let details = format!("{} is the export user", actor.email);
    audit::record(
        &mut *conn,
        actor,
        "export user",
        Some(destination_id),
        display_name,
        &details,
    )
    .await
}

/// Whether a save of the data matching finishes the set-up or edits a saved destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Save {
    First,
    Edit,
}

/// Saves a destination's data matching, whoever saves it: the settings, an audit record of
/// what was chosen, and the end of the preview made before (it no longer says what an export
/// does). A display name another destination has is refused.
pub async fn save_matching(
    conn: &mut AnyConnection,
    actor: &Actor<'_>,
    destination_id: i64,
    config: &Configuration<'_>,
    save: Save,
) -> Result<(), DraftError> {
    match destinations::save_configuration(&mut *conn, destination_id, config).await {
        Ok(()) => {}
        Err(err) if crate::store::is_unique_violation(&err) => {
            return Err(DraftError::NameTaken(config.display_name.to_owned()));
        }
        Err(err) => return Err(err.into()),
    }
    let mappings: Vec<String> = config
        .field_mappings
        .iter()
        .map(|m| format!("{}={}", m.tag, m.field))
        .collect();
    let details = format!(
        "email field {}; merge fields {}; {} segment(s); new members {}; keep in sync {}",
        config.email_field,
        mappings.join(", "),
        config.segment_ids.len(),
        config.new_member_status,
        if config.keep_in_sync { "on" } else { "off" }
    );
    let action = match save {
        Save::First => "save",
        Save::Edit => "edit",
    };
    let name = config.display_name;
    audit::record(
        &mut *conn,
        actor,
        action,
        Some(destination_id),
        name,
        &details,
    )
    .await?;
    crate::store::previews::delete(&mut *conn, destination_id).await?;
    Ok(())
}
