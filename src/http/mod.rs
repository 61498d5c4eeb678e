//! The HTTP API (`/api/v1`), health endpoints and the OpenAPI document.
//! Handlers extract and validate, make one service call, and map the result.

mod auth;
mod conversations;
mod error;
mod health;
mod messages;
mod openapi;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::routing::{delete, get, post};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
pub use health::Readiness;

use crate::auth::Authenticator;
use crate::service::Messaging;

/// What HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub service: Messaging,
    pub authenticator: Authenticator,
    pub readiness: Readiness,
    /// Cluster mode: shared state lives in Redis, which readiness reports.
    pub cluster: bool,
}

/// The API router. Socket.IO and CORS layers are added by `app`.
pub fn router(state: HttpState, max_body_bytes: usize) -> Router {
    let api = Router::new()
        .route(
            "/conversations",
            post(conversations::create).get(conversations::list),
        )
        .route(
            "/conversations/{id}/messages",
            get(conversations::history).post(messages::send),
        )
        .route("/conversations/{id}/read", post(conversations::mark_read))
        .route("/messages/{id}", delete(messages::delete))
        .route("/unread", get(conversations::unread))
        .route("/openapi.json", get(openapi::document));
    Router::new()
        .nest("/api/v1", api)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(TraceLayer::new_for_http().make_span_with(request_span))
        .with_state(state)
}

/// One span per request, named by route template (never the raw path, which
/// would carry ids into span names and metric labels).
fn request_span(req: &Request) -> tracing::Span {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    tracing::info_span!(
        "http.request",
        http.method = %req.method(),
        http.route = %route,
        user.id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    )
}
