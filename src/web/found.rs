//! The record a page's path names (`…/{id}`): found, or the page answers Not found. Handlers
//! take `Found<T>` instead of an ID and a lookup of their own.

use std::future::Future;

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};

use crate::state::AppState;
use crate::store;
use crate::web::AppError;

/// A record found by the ID in the path.
pub struct Found<T>(pub T);

/// A kind of record a page can be about.
pub trait Findable: Sized + Send {
    fn find(state: &AppState, id: i64) -> impl Future<Output = sqlx::Result<Option<Self>>> + Send;
}

impl<T: Findable> FromRequestParts<AppState> for Found<T> {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Response> {
        // A path whose ID is not a number is refused as before, by the Path extractor.
        let Path(id) = Path::<i64>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        match T::find(state, id).await {
            Ok(Some(found)) => Ok(Found(found)),
            Ok(None) => Err(AppError::NotFound.into_response()),
            Err(err) => Err(AppError::from(err).into_response()),
        }
    }
}

impl Findable for store::sources::SourceRow {
    async fn find(state: &AppState, id: i64) -> sqlx::Result<Option<Self>> {
        store::sources::find(state.db.pool(), id).await
    }
}

impl Findable for store::segments::Segment {
    async fn find(state: &AppState, id: i64) -> sqlx::Result<Option<Self>> {
        store::segments::find(state.db.pool(), id).await
    }
}

impl Findable for store::profiles::Profile {
    async fn find(state: &AppState, id: i64) -> sqlx::Result<Option<Self>> {
        store::profiles::find(state.db.pool(), id).await
    }
}

impl Findable for store::sources::PullRow {
    async fn find(state: &AppState, id: i64) -> sqlx::Result<Option<Self>> {
        store::sources::find_pull(state.db.pool(), id).await
    }
}

impl Findable for store::imports::ImportRecord {
    async fn find(state: &AppState, id: i64) -> sqlx::Result<Option<Self>> {
        store::imports::find(state.db.pool(), id).await
    }
}

impl Findable for store::runs::Run {
    async fn find(state: &AppState, id: i64) -> sqlx::Result<Option<Self>> {
        store::runs::find(state.db.pool(), id).await
    }
}
