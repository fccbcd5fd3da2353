//! Liveness and readiness for process supervisors and load balancers, and metrics for
//! Prometheus (behind `METRICS_TOKEN`).

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::state::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

/// `GET /metrics` alone, for the metrics' own address (METRICS_BIND_ADDR).
pub fn metrics_router(state: AppState) -> Router {
    Router::new()
        .route("/metrics", get(own_address))
        .with_state(state)
}

/// On the metrics' own address the token is asked for only when one is set.
async fn own_address(State(state): State<AppState>, headers: HeaderMap) -> Response {
    match state.settings.metrics_token.clone() {
        Some(token) => guarded(&state, &headers, &token).await,
        None => serve(&state).await,
    }
}

/// The metrics on the console's address, to a request bearing `METRICS_TOKEN`; off (404)
/// when no token is set or they have an address of their own.
async fn metrics(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if state.metrics_addr.is_some() {
        return (
            StatusCode::NOT_FOUND,
            "Metrics are served on their own address (METRICS_BIND_ADDR).",
        )
            .into_response();
    }
    let Some(token) = state.settings.metrics_token.clone() else {
        return (
            StatusCode::NOT_FOUND,
            "Metrics are off: set METRICS_TOKEN to serve them.",
        )
            .into_response();
    };
    guarded(&state, &headers, &token).await
}

async fn guarded(state: &AppState, headers: &HeaderMap, token: &str) -> Response {
    let offered = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if !crate::crypto::constant_time_eq(offered, token) {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "Send the metrics token: Authorization: Bearer <METRICS_TOKEN>.",
        )
            .into_response();
    }
    serve(state).await
}

async fn serve(state: &AppState) -> Response {
    match crate::metrics::render(&state.db).await {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(err) => {
            tracing::error!(error = %err, "the metrics could not be read");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "The metrics could not be read.",
            )
                .into_response()
        }
    }
}

async fn ready(State(state): State<AppState>) -> (StatusCode, &'static str) {
    if state.db.is_ready().await {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "database unreachable")
    }
}
