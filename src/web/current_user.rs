//! The signed-in user, loaded once per request, and the role gates in front of routes.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::Response;
use tower_sessions::Session;

use crate::auth::session;
use crate::domain::Role;
use crate::state::AppState;
use crate::store::users;
use crate::web::AppError;

/// The account behind this request, checked active on every request.
#[derive(Debug, Clone)]
pub struct CurrentUser {
    pub id: i64,
    pub email: String,
    pub name: String,
    pub role: Role,
}

impl CurrentUser {
    /// The person as the audit log records them.
    pub fn actor(&self) -> crate::store::audit::Actor<'_> {
        crate::store::audit::Actor {
            user_id: self.id,
            email: &self.email,
        }
    }
}

impl CurrentUser {
    pub fn is_administrator(&self) -> bool {
        self.role.allows(Role::Administrator)
    }

    pub fn can_contribute(&self) -> bool {
        self.role.allows(Role::Contributor)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        parts
            .extensions
            .get::<CurrentUser>()
            .cloned()
            .ok_or(AppError::SignInRequired { next: None })
    }
}

/// Lets signed-in, active accounts through; anyone else goes to the sign-in page, and the
/// session of a deactivated account, or of one whose password changed since, ends.
pub async fn require_sign_in(
    State(state): State<AppState>,
    session: Session,
    mut request: Request,
    next: Next,
) -> Result<Response, AppError> {
    let return_to = (request.method() == Method::GET)
        .then(|| {
            request
                .uri()
                .path_and_query()
                .map(|pq| pq.as_str().to_owned())
        })
        .flatten();
    let Some(user) = signed_in_user(&state, &session).await? else {
        return Err(AppError::SignInRequired { next: return_to });
    };
    request.extensions_mut().insert(user);
    Ok(next.run(request).await)
}

/// The active account this session is signed in as, if any; the session of a deactivated
/// account, or of one whose password changed since, ends here.
pub async fn signed_in_user(
    state: &AppState,
    session: &Session,
) -> Result<Option<CurrentUser>, AppError> {
    let Some(user_id) = session::user_id(session).await? else {
        return Ok(None);
    };
    let opened_with = session::password_changed_at(session).await?;
    match users::find_by_id(state.db.pool(), user_id).await? {
        // A password changed since this session began ends it.
        Some(user) if user.is_active() && user.password_changed_at <= opened_with => {
            Ok(Some(CurrentUser {
                id: user.id,
                email: user.email,
                name: user.name,
                role: user.role,
            }))
        }
        _ => {
            session::sign_out(session).await?;
            Ok(None)
        }
    }
}

/// The gate in front of routes that need `role` or a higher one:
/// `.route_layer(from_fn_with_state(Role::Contributor, require))`. Anyone else is
/// answered Forbidden.
pub async fn require(
    State(role): State<Role>,
    user: CurrentUser,
    request: Request,
    next: Next,
) -> Result<Response, AppError> {
    if !user.role.allows(role) {
        return Err(AppError::Forbidden);
    }
    Ok(next.run(request).await)
}
