//! The record a page's path names (`…/{id}`): found, or the page answers Not found. Handlers
//! take `Found<T>` instead of an ID and a lookup of their own.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;
use crate::store::Record;
use crate::web::AppError;

/// A record found by the ID in the path.
pub struct Found<T>(pub T);

impl<T: Record> FromRequestParts<AppState> for Found<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // A path whose ID is not a number is refused as before, by the Path extractor.
        let Path(id) = Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match T::find(state.db.pool(), id).await {
            Ok(Some(found)) => Ok(Found(found)),
            Ok(None) => Err(AppError::NotFound.into_response()),
            Err(err) => Err(AppError::from(err).into_response()),
        }
    }
}
