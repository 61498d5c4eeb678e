//! The demo page (dev mode only): the static files of `web/`, embedded in the
//! binary, and a loopback-only dev sign-in (`POST /dev/token`) that mints
//! short-lived HS256 tokens with the dev secret.
//!
//! `http::router` merges these routes only when a dev signing secret exists,
//! so in production mode none of them exist (404). Nothing here touches
//! storage or business rules; the page speaks the public protocol only.

use std::net::SocketAddr;

use axum::extract::rejection::JsonRejection;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::{Deserialize, Serialize};

use super::{ApiError, HttpState};
use crate::auth::{Role, mint_hs256};
use crate::domain::{UserId, ValidationError};
use crate::service::ServiceError;

/// Lifetime of a token minted by the dev sign-in.
const DEV_TOKEN_TTL_HOURS: i64 = 12;
/// Longest display name the sign-in accepts (the authenticator drops longer ones).
const MAX_NAME_CHARS: usize = 128;

const INDEX_HTML: &str = include_str!("../../web/index.html");
const APP_JS: &str = include_str!("../../web/app.js");
const STYLE_CSS: &str = include_str!("../../web/style.css");
const SOCKET_IO_JS: &str = include_str!("../../web/vendor/socket.io.min.js");

/// The page may load scripts and styles from this node only; attachment
/// thumbnails may come from any http(s) origin (http only matters in dev mode).
const PAGE_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; \
    img-src 'self' https: http: data:; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'; object-src 'none'";

/// Routes of the demo page; merged into the router only in dev mode.
pub fn routes() -> Router<HttpState> {
    Router::new()
        .route("/", get(index))
        .route("/app.js", get(app_js))
        .route("/style.css", get(style_css))
        .route("/vendor/socket.io.min.js", get(socket_io_js))
        .route("/dev/token", post(dev_token))
}

/// A static file with its content type; never cached stale across rebuilds.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    let mut response = asset("text/html; charset=utf-8", INDEX_HTML);
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    // Attachment thumbnails are third-party URLs: do not tell them who looks.
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

async fn app_js() -> Response {
    asset("text/javascript; charset=utf-8", APP_JS)
}

async fn style_css() -> Response {
    asset("text/css; charset=utf-8", STYLE_CSS)
}

async fn socket_io_js() -> Response {
    asset("text/javascript; charset=utf-8", SOCKET_IO_JS)
}

/// `POST /dev/token` body.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DevTokenRequest {
    pub user_id: String,
    pub role: Role,
    pub name: Option<String>,
}

/// `POST /dev/token` answer.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DevToken {
    pub token: String,
    pub user_id: String,
    pub expires_at: String,
}

/// Mints a token for any user: dev mode only, and only for callers on this
/// machine. The peer address comes from `ConnectInfo` (the server is served
/// with `into_make_service_with_connect_info`); without it, the caller is
/// refused rather than trusted.
async fn dev_token(
    State(state): State<HttpState>,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    headers: HeaderMap,
    body: Result<Json<DevTokenRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let peer = peer.map(|Extension(ConnectInfo(addr))| addr);
    check_local_caller(peer, &headers)?;
    let secret = state
        .dev_signing_secret
        .as_ref()
        .ok_or(ServiceError::NotFound("route"))?;
    let Json(body) = body?;
    let user = UserId::parse("userId", &body.user_id)?;
    let name = display_name(body.name.as_deref())?;
    let ttl = chrono::Duration::hours(DEV_TOKEN_TTL_HOURS);
    let expires_at = chrono::Utc::now() + ttl;
    let token = mint_hs256(secret, &user, Some(body.role), name, None, ttl)
        .map_err(|e| ServiceError::Internal(Box::new(e)))?;
    let answer = DevToken {
        token,
        user_id: user.as_str().to_owned(),
        expires_at: expires_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    };
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(answer)).into_response())
}

/// The dev sign-in hands out tokens for anyone, so it answers only to:
/// - a loopback peer (unknown peer: refused);
/// - a request addressed to a loopback host name, so a DNS-rebound name
///   pointing at 127.0.0.1 cannot reach it from a hostile page;
/// - when the browser names an `Origin`, that same origin (the node mirrors
///   any CORS origin in dev mode, so this is the cross-site guard).
fn check_local_caller(peer: Option<SocketAddr>, headers: &HeaderMap) -> Result<(), ServiceError> {
    const REFUSED: &str = "the dev sign-in answers only to this machine's own page";
    let loopback_peer = peer.is_some_and(|p| p.ip().to_canonical().is_loopback());
    if !loopback_peer {
        return Err(ServiceError::Forbidden(REFUSED));
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .ok_or(ServiceError::Forbidden(REFUSED))?;
    if !is_loopback_host(host) {
        return Err(ServiceError::Forbidden(REFUSED));
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let same = origin
            .to_str()
            .ok()
            .and_then(|o| o.strip_prefix("http://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(ServiceError::Forbidden(REFUSED));
        }
    }
    Ok(())
}

/// `127.0.0.1:3000`, `localhost`, `[::1]:3000`…: the host part names this machine.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, _port)| name)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

/// An optional display name: blank means none; otherwise at most 128
/// characters, no control characters.
fn display_name(raw: Option<&str>) -> Result<Option<&str>, ValidationError> {
    let Some(name) = raw.map(str::trim).filter(|n| !n.is_empty()) else {
        return Ok(None);
    };
    if name.chars().count() > MAX_NAME_CHARS || name.chars().any(char::is_control) {
        return Err(ValidationError::new(
            "name",
            "must be at most 128 characters, without control characters",
        ));
    }
    Ok(Some(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(host: &str, origin: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::HOST,
            HeaderValue::from_str(host).expect("a header value"),
        );
        if let Some(o) = origin {
            h.insert(
                header::ORIGIN,
                HeaderValue::from_str(o).expect("a header value"),
            );
        }
        h
    }

    fn peer(addr: &str) -> Option<SocketAddr> {
        Some(addr.parse().expect("a socket address"))
    }

    #[test]
    fn loopback_callers_of_their_own_page_are_served() {
        let same = headers("127.0.0.1:3000", Some("http://127.0.0.1:3000"));
        assert!(check_local_caller(peer("127.0.0.1:5555"), &same).is_ok());
        let no_origin = headers("localhost:3000", None);
        assert!(check_local_caller(peer("[::1]:5555"), &no_origin).is_ok());
        let mapped = headers("[::1]:3000", Some("http://[::1]:3000"));
        assert!(check_local_caller(peer("[::ffff:127.0.0.1]:5555"), &mapped).is_ok());
    }

    #[test]
    fn unknown_or_remote_peers_are_refused() {
        let h = headers("127.0.0.1:3000", None);
        assert!(matches!(
            check_local_caller(None, &h),
            Err(ServiceError::Forbidden(_))
        ));
        assert!(check_local_caller(peer("192.168.1.20:5555"), &h).is_err());
    }

    #[test]
    fn other_sites_and_rebound_host_names_are_refused() {
        let cross_site = headers("127.0.0.1:3000", Some("http://evil.example"));
        assert!(check_local_caller(peer("127.0.0.1:5555"), &cross_site).is_err());
        let other_port = headers("127.0.0.1:3000", Some("http://127.0.0.1:8080"));
        assert!(check_local_caller(peer("127.0.0.1:5555"), &other_port).is_err());
        let rebound = headers("evil.example:3000", Some("http://evil.example:3000"));
        assert!(check_local_caller(peer("127.0.0.1:5555"), &rebound).is_err());
        let no_host = HeaderMap::new();
        assert!(check_local_caller(peer("127.0.0.1:5555"), &no_host).is_err());
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(display_name(None).ok(), Some(None));
        assert_eq!(display_name(Some("   ")).ok(), Some(None));
        assert_eq!(display_name(Some(" Alice ")).ok(), Some(Some("Alice")));
        assert!(display_name(Some(&"é".repeat(129))).is_err());
        assert!(display_name(Some("a\u{7}b")).is_err());
    }
}
