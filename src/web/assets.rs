//! The console's static files, compiled into the binary so that it runs from anywhere
//! and offline.

use axum::Router;
use axum::extract::Path;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

use crate::state::AppState;
use crate::web::AppError;

const FILES: &[(&str, &str, &str)] = &[
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../static/app.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../static/favicon.svg"),
    ),
    (
        "destinations.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/destinations.js"),
    ),
    (
        "import.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/import.js"),
    ),
    (
        "refresh.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/refresh.js"),
    ),
    (
        "run.js",
        "text/javascript; charset=utf-8",
        include_str!("../../static/run.js"),
    ),
];

pub fn router() -> Router<AppState> {
    Router::new().route("/static/{file}", get(serve))
}

async fn serve(Path(file): Path<String>) -> Result<impl IntoResponse, AppError> {
    let (_, content_type, body) = FILES
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or(AppError::NotFound)?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, "public, max-age=3600"),
        ],
        *body,
    ))
}
