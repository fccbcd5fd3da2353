//! Typed access to what the console keeps in a session, under namespaced keys.

use tower_sessions::Session;

use crate::crypto::random_token;

const USER_ID: &str = "auth.user_id";
const PASSWORD_AT: &str = "auth.password_changed_at";
const CSRF_TOKEN: &str = "csrf.token";
const FLASH: &str = "ui.flash";

type Result<T> = std::result::Result<T, tower_sessions::session::Error>;

/// Signs `user_id` in: a new session id (against fixation) and a new CSRF token. The
/// session remembers which password it was opened with (`password_changed_at`).
pub async fn sign_in(session: &Session, user_id: i64, password_changed_at: i64) -> Result<()> {
    session.cycle_id().await?;
    session.insert(USER_ID, user_id).await?;
    session.insert(PASSWORD_AT, password_changed_at).await?;
    session.insert(CSRF_TOKEN, random_token()).await?;
    Ok(())
}

/// Ends the session everywhere: the record is deleted and the cookie cleared.
pub async fn sign_out(session: &Session) -> Result<()> {
    session.flush().await
}

pub async fn user_id(session: &Session) -> Result<Option<i64>> {
    session.get(USER_ID).await
}

/// When the password this session was opened with was set (0 for sessions from before).
pub async fn password_changed_at(session: &Session) -> Result<i64> {
    Ok(session.get(PASSWORD_AT).await?.unwrap_or(0))
}

/// This session's CSRF token, created on first use.
pub async fn csrf_token(session: &Session) -> Result<String> {
    if let Some(token) = session.get::<String>(CSRF_TOKEN).await? {
        return Ok(token);
    }
    let token = random_token();
    session.insert(CSRF_TOKEN, &token).await?;
    Ok(token)
}

/// The token the session holds, without creating one.
pub async fn existing_csrf_token(session: &Session) -> Result<Option<String>> {
    session.get(CSRF_TOKEN).await
}

/// A one-line message shown on the next page (after a redirect).
pub async fn set_flash(session: &Session, message: impl Into<String>) -> Result<()> {
    session.insert(FLASH, message.into()).await
}

pub async fn take_flash(session: &Session) -> Result<Option<String>> {
    session.remove(FLASH).await
}
