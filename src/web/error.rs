//! The one error type of the web layer: each variant maps to a status and an error page;
//! internal errors are logged once with a reference and never shown.

use askama::Template;
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    #[error("CSRF token missing or wrong")]
    CsrfRejected,
    #[error("sign-in required")]
    SignInRequired { next: Option<String> },
    #[error("request body too large")]
    PayloadTooLarge,
    /// A request the console cannot act on; the message says why and is shown as is.
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The request is fine but the thing it acts on is not in a state that allows it.
    #[error("conflict: {0}")]
    Conflict(String),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sqlx::Error> for AppError {
    fn from(err: sqlx::Error) -> Self {
        Self::Internal(anyhow::Error::new(err).context("database"))
    }
}

impl From<tower_sessions::session::Error> for AppError {
    fn from(err: tower_sessions::session::Error) -> Self {
        Self::Internal(anyhow::Error::new(err).context("session"))
    }
}

impl From<askama::Error> for AppError {
    fn from(err: askama::Error) -> Self {
        Self::Internal(anyhow::Error::new(err).context("rendering a template"))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    status: u16,
    title: &'a str,
    message: &'a str,
    reference: Option<&'a str>,
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, title, message) = match &self {
            AppError::SignInRequired { next } => {
                let target = match next {
                    Some(next) => format!(
                        "/sign-in?next={}",
                        url::form_urlencoded::byte_serialize(next.as_bytes()).collect::<String>()
                    ),
                    None => "/sign-in".to_owned(),
                };
                return Redirect::to(&target).into_response();
            }
            AppError::NotFound => (
                StatusCode::NOT_FOUND,
                "Page not found",
                "There is nothing at this address. It may have been removed.",
            ),
            AppError::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your role does not allow this. Ask an administrator if you need it.",
            ),
            AppError::CsrfRejected => (
                StatusCode::FORBIDDEN,
                "This form could not be accepted",
                "The form was out of date or did not come from this console. Go back, reload \
                 the page and try again.",
            ),
            AppError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                "Too much data",
                "The request was larger than the console accepts.",
            ),
            AppError::BadRequest(message) => (
                StatusCode::BAD_REQUEST,
                "That did not work",
                message.as_str(),
            ),
            AppError::Conflict(message) => (StatusCode::CONFLICT, "Not now", message.as_str()),
            AppError::Internal(_) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The console could not complete this request. Nothing was changed by the \
                 part that failed; try again, and if it keeps failing, give an administrator \
                 the reference below.",
            ),
        };
        let reference = match &self {
            AppError::Internal(err) => {
                let reference = crate::crypto::random_token()[..10].to_owned();
                tracing::error!(%reference, error = format!("{err:#}"), "request failed");
                Some(reference)
            }
            _ => None,
        };
        error_page(status, title, message, reference.as_deref())
    }
}

/// Renders the error page; if even that fails, plain text.
pub fn error_page(
    status: StatusCode,
    title: &str,
    message: &str,
    reference: Option<&str>,
) -> Response {
    let page = ErrorPage {
        status: status.as_u16(),
        title,
        message,
        reference,
    };
    match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(err) => {
            tracing::error!(error = %err, "rendering the error page");
            (
                status,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                title.to_owned(),
            )
                .into_response()
        }
    }
}
