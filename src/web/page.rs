//! What every console page shows around its content: the user, the navigation, the
//! CSRF token for its forms and a one-time message.

use askama::Template;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::response::Html;
use tower_sessions::Session;

use crate::auth::session;
use crate::web::AppError;
use crate::web::current_user::CurrentUser;

/// The navigation entry a page belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Profiles,
    Fields,
    Sources,
    Segments,
    ExportDestinations,
    Users,
    AuditLog,
    Schedule,
    Notifications,
    Status,
    ApiTokens,
    Account,
}

pub struct PageContext {
    pub user: CurrentUser,
    pub csrf_token: String,
    pub flash: Option<String>,
    pub nav: Nav,
}

impl PageContext {
    pub fn at(mut self, nav: Nav) -> Self {
        self.nav = nav;
        self
    }

    /// The navigation entry to highlight, as the template names it.
    pub fn nav_name(&self) -> &'static str {
        match self.nav {
            Nav::Profiles => "profiles",
            Nav::Fields => "fields",
            Nav::Sources => "sources",
            Nav::Segments => "segments",
            Nav::ExportDestinations => "export-destinations",
            Nav::Users => "users",
            Nav::AuditLog => "audit-log",
            Nav::Schedule => "schedule",
            Nav::Notifications => "notifications",
            Nav::Status => "status",
            Nav::ApiTokens => "api-tokens",
            Nav::Account => "account",
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for PageContext {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        let user = CurrentUser::from_request_parts(parts, state).await?;
        let session = Session::from_request_parts(parts, state)
            .await
            .map_err(|(_, msg)| AppError::Internal(anyhow::anyhow!(msg)))?;
        Ok(Self {
            user,
            csrf_token: session::csrf_token(&session).await?,
            flash: session::take_flash(&session).await?,
            nav: Nav::ExportDestinations,
        })
    }
}

/// Renders a page template; a failure becomes a logged internal error, never a panic.
pub fn render(template: &impl Template) -> Result<Html<String>, AppError> {
    Ok(Html(template.render()?))
}
