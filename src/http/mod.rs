//! The HTTP API (`/api/v1`), health endpoints and the OpenAPI document.
//! Handlers extract and validate, make one service call, and map the result.

mod auth;
mod conversations;
mod devpage;
mod error;
mod extract;
mod health;
mod me;
mod messages;
mod openapi;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::response::IntoResponse as _;
use axum::routing::{delete, get, post, put};
use tower_http::trace::TraceLayer;

pub use error::ApiError;
use error::ErrorResponse;
pub use health::Readiness;

use crate::auth::Authenticator;
use crate::service::Messaging;

/// What HTTP handlers share.
#[derive(Clone)]
pub struct HttpState {
    pub service: Messaging,
    pub authenticator: Authenticator,
    pub readiness: Readiness,
    /// The node's long-lived tasks: the node is not ready while one is down.
    pub supervisor: crate::supervisor::Supervisor,
    /// Cluster mode: shared state lives in Redis, which readiness reports.
    pub cluster: bool,
    /// Renders `/metrics`; `None` when another recorder owns the process.
    pub metrics: Option<metrics_exporter_prometheus::PrometheusHandle>,
    /// Per-user request budget (and the node's other budgets).
    pub budget: crate::budget::NodeBudget,
    /// Cluster mode: the Socket.IO adapter's traffic, read at each scrape.
    pub adapter_stats: Option<std::sync::Arc<socketioxide_sharded::Stats>>,
    /// Dev mode only: the HS256 secret the demo page's sign-in mints tokens
    /// with. `None` in production, where the page and sign-in do not exist.
    pub dev_signing_secret: Option<secrecy::SecretString>,
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
        .route("/me/notifications", put(me::set_notifications))
        .route("/me/blocks", get(me::blocks))
        .route("/me/blocks/{user_id}", post(me::block).delete(me::unblock))
        .route("/openapi.json", get(openapi::document))
        .route("/asyncapi.json", get(openapi::asyncapi));
    let dev_page = if state.dev_signing_secret.is_some() {
        devpage::routes()
    } else {
        Router::new()
    };
    Router::new()
        .nest("/api/v1", api)
        .merge(dev_page)
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(health::metrics))
        .layer(DefaultBodyLimit::max(max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            max_body_bytes,
            refuse_oversized_bodies,
        ))
        .layer(axum::middleware::from_fn(count_request))
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
    let span = tracing::info_span!(
        "http.request",
        http.method = %req.method(),
        http.route = %route,
        user.id = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    crate::telemetry::continue_trace(&span, req.headers());
    span
}

/// Counts requests by route template and status, with their latency.
async fn count_request(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let started = tokio::time::Instant::now();
    let response = next.run(req).await;
    // Unmatched paths share one label so scanners cannot grow the label set.
    let route = route.unwrap_or_else(|| "unmatched".to_owned());
    crate::instruments::http_request(route, response.status().as_u16(), started.elapsed());
    response
}

/// A `/socket.io/` request without a `sid`: it opens a new Engine.IO session.
fn opens_engine_io_session(uri: &axum::http::Uri) -> bool {
    uri.path().starts_with("/socket.io")
        && !uri
            .query()
            .is_some_and(|q| q.split('&').any(|kv| kv.starts_with("sid=")))
}

/// While draining, a new Engine.IO session is answered 503, so the client's
/// reconnect logic tries again — through the load balancer, on another node.
/// Established sessions go on until the node closes them.
pub async fn refuse_new_sessions_while_draining(
    axum::extract::State(readiness): axum::extract::State<Readiness>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if opens_engine_io_session(req.uri()) && readiness.is_draining() {
        return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
    }
    next.run(req).await
}

/// Engine.IO keeps the request head (URI, headers) of every session for the
/// session's lifetime. hyper parses that head without copying: the URI and
/// every header value are slices of the connection's read buffer (16 KiB),
/// so each idle socket pinned a whole buffer. Copying the few bytes of the
/// head releases it: about half of an idle socket's memory (README,
/// "Performance", idle). Only the headers something reads after this point
/// are kept: a browser's cookies, user agent and language would otherwise
/// stay in memory for as long as its socket is open.
pub async fn own_new_session_head(
    mut req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if opens_engine_io_session(req.uri()) {
        detach_head(&mut req);
    }
    next.run(req).await
}

/// The headers of a new session's request that are read after it opened:
/// the token and the client's address by the handshake (`gateway::connect`,
/// `budget::client_address`), the websocket key by Engine.IO's upgrade, and
/// the content type by its polling transport. CORS has read `Origin` before.
const SESSION_HEADERS: [axum::http::HeaderName; 4] = [
    axum::http::header::AUTHORIZATION,
    axum::http::HeaderName::from_static("x-forwarded-for"),
    axum::http::header::SEC_WEBSOCKET_KEY,
    axum::http::header::CONTENT_TYPE,
];

fn detach_head(req: &mut Request) {
    if let Ok(uri) = axum::http::Uri::try_from(req.uri().to_string()) {
        // The router keeps a clone of the URI as it arrived, too.
        if let Some(axum::extract::OriginalUri(original)) = req.extensions_mut().get_mut() {
            *original = uri.clone();
        }
        *req.uri_mut() = uri;
    }
    let headers = req.headers();
    // Sized to what is kept: a header map grows to eight slots of ~80 bytes
    // on its first insert, more than a session usually keeps in all.
    let count = SESSION_HEADERS
        .iter()
        .map(|name| headers.get_all(name).iter().count())
        .sum();
    let mut kept = axum::http::HeaderMap::with_capacity(count);
    for name in SESSION_HEADERS {
        for value in headers.get_all(&name) {
            // Bytes hyper accepted are valid header bytes; keep the value if not.
            let mut owned = axum::http::HeaderValue::from_bytes(value.as_bytes())
                .unwrap_or_else(|_| value.clone());
            owned.set_sensitive(value.is_sensitive());
            kept.append(name.clone(), owned);
        }
    }
    *req.headers_mut() = kept;
}

/// Answers 413 from `Content-Length` alone, before reading a byte of the
/// body: a client that waits for `100 Continue` gets the answer instead of a
/// reset connection, and no memory is spent on a body that will be refused.
/// (Bodies without a length are still cut off by `DefaultBodyLimit`.)
async fn refuse_oversized_bodies(
    axum::extract::State(max_body_bytes): axum::extract::State<usize>,
    req: Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let declared = req
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > max_body_bytes as u64) {
        return ApiError::TooLarge.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, Bytes};
    use axum::http::{HeaderValue, Uri};

    use super::*;

    #[test]
    fn detached_head_keeps_what_is_read_later_and_no_longer_holds_the_read_buffer() {
        // What hyper hands over: URI and header values sliced from one buffer.
        let buffer = Bytes::from(
            b"/socket.io/?EIO=4&transport=websocket Bearer abc 203.0.113.7, 10.0.0.1".to_vec(),
        );
        let mut req = Request::new(Body::empty());
        *req.uri_mut() = Uri::from_maybe_shared(buffer.slice(0..37)).expect("valid uri");
        let original = axum::extract::OriginalUri(req.uri().clone());
        req.extensions_mut().insert(original);
        let mut auth = HeaderValue::from_maybe_shared(buffer.slice(38..48)).expect("valid value");
        auth.set_sensitive(true);
        req.headers_mut().insert("authorization", auth);
        req.headers_mut().append(
            "x-forwarded-for",
            HeaderValue::from_maybe_shared(buffer.slice(49..)).expect("valid value"),
        );
        req.headers_mut()
            .append("cookie", HeaderValue::from_static("session=a-long-cookie"));
        req.headers_mut()
            .append("user-agent", HeaderValue::from_static("Mozilla/5.0"));
        assert!(!buffer.is_unique(), "the request shares the buffer");

        detach_head(&mut req);

        assert!(
            buffer.is_unique(),
            "the request no longer shares the buffer"
        );
        assert_eq!(req.uri().path(), "/socket.io/");
        assert_eq!(req.uri().query(), Some("EIO=4&transport=websocket"));
        let axum::extract::OriginalUri(original) = req.extensions().get().expect("kept");
        assert_eq!(original, req.uri());
        assert_eq!(req.headers()["authorization"], "Bearer abc");
        assert!(req.headers()["authorization"].is_sensitive());
        assert_eq!(req.headers()["x-forwarded-for"], "203.0.113.7, 10.0.0.1");
        assert!(
            !req.headers().contains_key("cookie") && !req.headers().contains_key("user-agent"),
            "headers nothing reads later are not kept"
        );
    }

    #[test]
    fn only_requests_without_a_sid_open_sessions() {
        let opens = |uri: &str| opens_engine_io_session(&uri.parse().expect("valid uri"));
        assert!(opens("/socket.io/?EIO=4&transport=polling"));
        assert!(!opens("/socket.io/?EIO=4&transport=polling&sid=abc"));
        assert!(!opens("/conversations"));
    }
}
