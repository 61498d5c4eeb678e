//! The handshake: token verification (connect middleware), then per-socket
//! setup — rooms, event handlers, presence, token expiry.

use std::sync::Arc;

use serde::Deserialize;
use socketioxide::adapter::Adapter;
use socketioxide::extract::{Extension, SocketRef, State, TryData};
use tracing::{Instrument, info_span, instrument};

use super::events;
use super::expiry::Expiries;
use super::socket_state::SocketState;

use crate::auth::{AuthError, Authenticator, bearer};
use crate::budget::NodeBudget;
use crate::fanout;
use crate::instruments::{self, Refusal};
use crate::protocol::rooms;
use crate::service::{Admission, Messaging};

/// The handshake `auth` object: `io(url, { auth: { token } })`.
#[derive(Debug, Default, Deserialize)]
pub struct HandshakeAuth {
    token: Option<String>,
}

/// Why a handshake was refused: exactly the `connect_error` message of
/// PROTOCOL.md §1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandshakeRefusal {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("too_many_connections")]
    TooManyConnections,
    #[error("rate_limited")]
    RateLimited,
}

impl HandshakeRefusal {
    /// Every `outcome` of `parloir_handshakes_total`.
    pub const OUTCOMES: [&'static str; 5] = [
        "ok",
        Self::Auth(AuthError::Unauthorized).label(),
        Self::Auth(AuthError::Expired).label(),
        Self::TooManyConnections.label(),
        Self::RateLimited.label(),
    ];

    const fn label(self) -> &'static str {
        match self {
            Self::Auth(AuthError::Unauthorized) => "unauthorized",
            Self::Auth(AuthError::Expired) => "token_expired",
            Self::TooManyConnections => "too_many_connections",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// Connect middleware: a refused handshake never reaches a handler. The
/// client's `connect_error` message is the refusal's text. Tokens are read
/// from `auth.token` or `Authorization: Bearer`, never from the query string.
/// The address budget comes first, so a flood costs no token check.
///
/// The socket is admitted (under the user's socket cap, counted and recorded
/// in one atomic step, so parallel handshakes cannot pass the cap) before
/// the CONNECT packet goes out, so that once a client reads itself connected
/// its device counts: a user who connects a second device and closes the
/// first is never seen offline in between.
#[instrument(skip_all, fields(socket.id = %s.id, user.id = tracing::field::Empty, outcome = tracing::field::Empty))]
pub async fn authenticate<A: Adapter>(
    s: SocketRef<A>,
    TryData(auth): TryData<HandshakeAuth>,
    State(authenticator): State<Authenticator>,
    State(budget): State<NodeBudget>,
    State(svc): State<Messaging>,
    State(expiries): State<Expiries>,
) -> Result<(), HandshakeRefusal> {
    let span = tracing::Span::current();
    let refuse = |refusal: HandshakeRefusal| {
        span.record("outcome", refusal.label());
        tracing::debug!(reason = %refusal, "handshake refused");
        instruments::handshake(refusal.label());
        if matches!(
            refusal,
            HandshakeRefusal::RateLimited | HandshakeRefusal::TooManyConnections
        ) {
            instruments::refusal(match refusal {
                HandshakeRefusal::RateLimited => Refusal::HandshakeRate,
                _ => Refusal::SocketsPerUser,
            });
        }
        Err(refusal)
    };
    if !budget.admit_handshake(s.req_parts()) {
        return refuse(HandshakeRefusal::RateLimited);
    }
    let from_auth = auth.ok().and_then(|a| a.token).filter(|t| !t.is_empty());
    let from_header = || {
        s.req_parts()
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer)
            .map(str::to_owned)
    };
    let user = match from_auth
        .or_else(from_header)
        .ok_or(AuthError::Unauthorized)
        .and_then(|t| authenticator.verify(&t))
    {
        Ok(user) => user,
        Err(e) => return refuse(e.into()),
    };
    span.record("user.id", tracing::field::display(&user.id));
    let socket_id = s.id.to_string();
    let cap = budget.budgets().max_sockets_per_user;
    let first = match svc.admit_socket(&user, &socket_id, cap).await {
        Ok(Admission::Admitted { first }) => first,
        Ok(Admission::OverCap) => return refuse(HandshakeRefusal::TooManyConnections),
        // Failing open: presence being unreachable must not lock users out.
        Err(e) => {
            tracing::warn!(error = %e, "presence state unavailable at connect; handshake allowed");
            false
        }
    };
    span.record("outcome", "ok");
    instruments::handshake("ok");
    let state = SocketState::new(user, budget.budgets());
    state.set_first_device(first);
    prepare_socket(&s, &state).await;
    // The socket counts as connected now. socketioxide adds it to the
    // namespace as this returns, with no wait in between, unless the
    // connection dropped meanwhile: then no disconnect handler will ever
    // run for it, and the watch undoes its presence.
    expiries.confirm_handshake(s.id, &state.user);
    Ok(())
}

/// Readies an authenticated socket before its CONNECT packet goes out:
/// socketioxide sends CONNECT and only then spawns the connect handler, so
/// handlers registered there would miss an event the client emits the
/// moment it is connected (the event would be dropped without an ack), and
/// in cluster mode the user's room must be subscribed before the client can
/// expect what other nodes send to it.
async fn prepare_socket<A: Adapter>(s: &SocketRef<A>, state: &Arc<SocketState>) {
    let socket_id = s.id.to_string();
    s.extensions.insert(state.clone());
    fanout::join_room(s, rooms::user(&state.user.id)).await;
    // Only ever excluded (`except`), which each node applies to its own
    // sockets: never subscribed, so it stays out of the adapter.
    s.join(rooms::socket(&socket_id));
    events::register(s);
    s.on_disconnect(on_disconnect::<A>);
}

/// A socket is connected (its presence already recorded): schedule the
/// disconnect at token expiry, and queue its welcome (the user online on
/// their first device, the unread totals, the token's e-mail and name
/// remembered for offline notifications).
#[instrument(skip_all, fields(socket.id = %s.id, user.id = %state.user.id))]
pub async fn on_connect<A: Adapter>(
    s: SocketRef<A>,
    Extension(state): Extension<Arc<SocketState>>,
    State(svc): State<Messaging>,
    State(expiries): State<Expiries>,
) {
    let user = &state.user;
    instruments::socket_connected();
    let socket_id = s.id.to_string();
    let remaining = (user.expires_at - chrono::Utc::now())
        .to_std()
        .unwrap_or_default();
    expiries.watch_token(s.id, remaining);
    // The rest (contacts told, unread totals, the token's e-mail and name
    // remembered) is done in batches, off the handshake's path.
    svc.welcome(user, &socket_id, state.is_first_device()).await;
}

async fn on_disconnect<A: Adapter>(
    s: SocketRef<A>,
    Extension(state): Extension<Arc<SocketState>>,
    State(svc): State<Messaging>,
    State(expiries): State<Expiries>,
) {
    let user = &state.user;
    expiries.forget(s.id);
    instruments::socket_disconnected();
    let socket_id = s.id.to_string();
    let span = info_span!("socket.disconnect", socket.id = %socket_id, user.id = %user.id);
    async {
        if let Err(e) = svc.socket_disconnected(user, &socket_id).await {
            tracing::warn!(error = %e, "presence state unavailable at disconnect");
        }
    }
    .instrument(span)
    .await;
}
