//! HTTP: one router per feature, merged here behind sessions, CSRF checks, role gates,
//! security headers, body limits and request tracing.

mod account;
mod assets;
mod audit;
mod auth_pages;
pub mod csrf;
pub mod current_user;
mod destinations;
mod error;
mod fields;
mod forget;
pub mod format;
mod found;
mod health;
mod hooks;
pub use health::metrics_router;
mod limits;
mod notifications;
pub mod page;
mod pairs;
mod profiles;
mod segments;
mod sources;
mod system;
mod tokens;
mod users;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{from_fn, from_fn_with_state};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use tower_sessions::SessionManagerLayer;

pub use auth_pages::HOME;
pub use current_user::CurrentUser;
pub use error::AppError;

use crate::auth::session_store::DbSessionStore;
use crate::domain::Role;
use crate::state::AppState;
use crate::web::csrf::verify_csrf;
use crate::web::current_user::{require, require_sign_in};

/// The CSP; forms may also be sent on to Mailchimp's OAuth site (the "Authenticate with
/// Mailchimp" form redirects there).
fn content_security_policy(oauth_origin: &str) -> String {
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self' {oauth_origin}"
    )
    .trim_end()
    .to_owned()
}

pub fn router(state: AppState, sessions: SessionManagerLayer<DbSessionStore>) -> Router {
    let administrators = users::router()
        .merge(destinations::admin_router())
        .merge(audit::router())
        .merge(fields::admin_router())
        .merge(sources::admin_router())
        .route_layer(axum::middleware::from_fn_with_state(
            Role::Administrator,
            require,
        ));
    let signed_in = Router::new()
        .merge(profiles::router())
        .merge(fields::router())
        .merge(sources::router())
        .merge(segments::router())
        .merge(destinations::router())
        .merge(forget::router())
        .merge(system::router())
        .merge(notifications::router())
        .merge(tokens::router())
        .merge(account::router())
        .merge(administrators)
        .route_layer(from_fn_with_state(state.clone(), require_sign_in));
    let sandbox_sessions = sessions.clone();
    let pages = Router::new()
        .merge(auth_pages::router())
        .merge(signed_in)
        .layer(from_fn_with_state(state.clone(), verify_csrf))
        .layer(sessions)
        .layer(from_fn(limits::bounded_forms));
    let https = state.public_url.scheme() == "https";
    let api = crate::api::router(state.clone());
    // Authenticate with Mailchimp posts a form that redirects to Mailchimp's sign-in.
    let oauth_origin = match &state.mailchimp.mailchimp.app {
        Some(_) => state
            .mailchimp
            .mailchimp
            .oauth_base
            .origin()
            .ascii_serialization(),
        None => String::new(),
    };
    let csp = content_security_policy(&oauth_origin);
    let sandbox = state.sandbox.clone();
    let sandbox_state = state.clone();
    let mut router = Router::new()
        .merge(health::router())
        .merge(hooks::router())
        .merge(assets::router())
        .merge(pages)
        .fallback(|| async { AppError::NotFound })
        .with_state(state)
        .merge(api);
    if let Some(sandbox) = sandbox {
        // The sandbox stands for another site: no console CSRF tokens, exactly as Mailchimp
        // would not. But its pages are the console's Mailchimp account: they show members,
        // so only people signed in to this console see them, and they show credentials and
        // can disconnect the console's app, so those are for administrators only. Its API
        // and token calls (made by programs, with their own credentials) are open, as
        // Mailchimp's are.
        let guarded = Router::new()
            .nest_service("/sandbox", sandbox.router())
            .layer(from_fn_with_state(sandbox_state, guard_sandbox_pages))
            .layer(sandbox_sessions);
        router = router.merge(guarded);
    }
    let router = if https {
        router.layer(header_layer(
            header::STRICT_TRANSPORT_SECURITY,
            "max-age=31536000; includeSubDomains",
        ))
    } else {
        router
    };
    router
        .layer(SetResponseHeaderLayer::if_not_present(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_str(&csp).expect("an origin is a valid header value"),
        ))
        .layer(header_layer(header::X_FRAME_OPTIONS, "DENY"))
        .layer(header_layer(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .layer(header_layer(header::REFERRER_POLICY, "same-origin"))
        .layer(header_layer(
            HeaderName::from_static("cross-origin-opener-policy"),
            "same-origin",
        ))
        .layer(header_layer(
            HeaderName::from_static("permissions-policy"),
            "camera=(), microphone=(), geolocation=()",
        ))
        .layer(header_layer(header::CACHE_CONTROL, "no-store"))
        .layer(DefaultBodyLimit::max(crate::config::MAX_BODY_BYTES))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            // The path only: query strings can carry OAuth codes and state.
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path())
        }))
}

/// Who may use the built-in sandbox's pages:
/// - programs, with credentials of their own: the Marketing API (`/3.0/`), the OAuth token
///   and metadata calls, the stylesheet;
/// - anyone signed in: reading the account page (without API keys or connected apps),
///   audiences and their members, the `/inspect/` views;
/// - administrators only: everything else, so anything but GET or HEAD (Disconnect, the
///   consent answer), the consent page itself (part of "Authenticate with Mailchimp", which
///   only administrators reach), and the API keys and connected apps on the account page.
async fn guard_sandbox_pages(
    axum::extract::State(state): axum::extract::State<AppState>,
    session: tower_sessions::Session,
    mut request: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse;
    let path = request.uri().path().to_owned();
    let for_programs = path.starts_with("/sandbox/3.0/")
        || path == "/sandbox/oauth2/token"
        || path == "/sandbox/oauth2/metadata"
        || path.starts_with("/sandbox/static/");
    if for_programs {
        return next.run(request).await;
    }
    let user = match crate::web::current_user::signed_in_user(&state, &session).await {
        Ok(Some(user)) => user,
        Ok(None) => {
            let next = (request.method() == axum::http::Method::GET).then_some(path);
            return AppError::SignInRequired { next }.into_response();
        }
        Err(err) => return err.into_response(),
    };
    let reading = matches!(
        *request.method(),
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let access = if user.is_administrator() {
        crate::sandbox::PageAccess::Everything
    } else if reading
        && (path == "/sandbox/"
            || path.starts_with("/sandbox/audiences/")
            || path.starts_with("/sandbox/inspect/"))
    {
        crate::sandbox::PageAccess::WithoutCredentials
    } else {
        return AppError::Forbidden.into_response();
    };
    request.extensions_mut().insert(access);
    next.run(request).await
}

fn header_layer(name: HeaderName, value: &'static str) -> SetResponseHeaderLayer<HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, HeaderValue::from_static(value))
}
