//! The demo page (dev mode only): static files embedded in the binary and a
//! loopback-only dev sign-in. TODO(#7)

use axum::Router;

use super::HttpState;

/// Routes of the demo page; merged into the router only in dev mode.
pub fn routes() -> Router<HttpState> {
    Router::new()
}
