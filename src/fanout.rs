//! Delivery of server events to rooms and sockets through the Socket.IO
//! adapter (in-process, or Redis in cluster mode). The service decides who is
//! told what; this module only carries it out. Payloads are serialised once
//! per call, whatever the number of recipients.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::Value;
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;
use socketioxide::{BroadcastError, SocketIo};
use tokio::time::Instant;
use tracing::warn;

use crate::gateway::SocketState;
use crate::protocol::NAMESPACE;

/// Where an event goes: every socket in `to`, minus every socket in `except`.
#[derive(Debug, Clone, Default)]
pub struct Audience {
    pub to: Vec<String>,
    pub except: Vec<String>,
}

impl Audience {
    pub fn room(room: String) -> Self {
        Self {
            to: vec![room],
            except: Vec::new(),
        }
    }

    pub fn rooms(rooms: Vec<String>) -> Self {
        Self {
            to: rooms,
            except: Vec::new(),
        }
    }

    pub fn except(mut self, room: String) -> Self {
        self.except.push(room);
        self
    }
}

/// How far a broadcast went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivered {
    /// To every node holding sockets of the audience.
    Everywhere,
    /// To this node's sockets only: other nodes were not reached (Redis
    /// unreachable or too slow). The caller may tell them again later.
    ThisNodeOnly,
}

#[async_trait]
pub trait Fanout: Send + Sync + 'static {
    /// Broadcasts to an audience. Failures are logged here (the caller has
    /// already committed what the event announces, so there is nothing to
    /// undo); the answer says whether other nodes were reached.
    async fn emit(&self, audience: Audience, event: &'static str, payload: Value) -> Delivered;

    /// Sends to the sockets of this node in `room` only.
    fn emit_local(&self, room: String, event: &'static str, payload: &Value);

    /// The rooms this node has sockets in.
    async fn local_rooms(&self) -> Vec<String>;

    /// Sends to one socket of this node; a socket that has gone is ignored.
    fn emit_to_socket(&self, socket_id: &str, event: &'static str, payload: &Value);

    /// Adds a socket of this node to a room. Returns once broadcasts to the
    /// room from any node reach the socket (in cluster mode, once this node
    /// is subscribed to the room); while Redis is unreachable the socket is
    /// in the room locally and the subscription follows when Redis is back.
    async fn join(&self, socket_id: &str, room: String);

    /// Removes a socket of this node from a room.
    async fn leave(&self, socket_id: &str, room: String);

    /// This node's authenticated sockets: (socket id, user).
    fn local_sockets(&self) -> Vec<(String, crate::auth::User)>;
}

/// During a Redis outage every broadcast fails to reach other nodes: one
/// warning per this interval says so, the metric counts each.
const FAILURE_WARNING_EVERY: Duration = Duration::from_secs(5);

/// [`Fanout`] over a socketioxide instance, generic over its adapter.
pub struct SioFanout<A: Adapter> {
    io: SocketIo<A>,
    last_failure_warning: Mutex<Option<Instant>>,
}

impl<A: Adapter> SioFanout<A> {
    pub fn new(io: SocketIo<A>) -> Self {
        Self {
            io,
            last_failure_warning: Mutex::new(None),
        }
    }

    /// Whether a failure now deserves a warning (the first of its interval).
    fn warn_now(&self) -> bool {
        let mut last = self
            .last_failure_warning
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let due = last.is_none_or(|at| at.elapsed() >= FAILURE_WARNING_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    fn socket(&self, socket_id: &str) -> Option<socketioxide::extract::SocketRef<A>> {
        let sid: Sid = socket_id.parse().ok()?;
        self.io.of(NAMESPACE)?.get_socket(sid)
    }
}

#[async_trait]
impl<A: Adapter> Fanout for SioFanout<A> {
    async fn emit(&self, audience: Audience, event: &'static str, payload: Value) -> Delivered {
        if audience.to.is_empty() {
            return Delivered::Everywhere;
        }
        let Some(ns) = self.io.of(NAMESPACE) else {
            // While the node stops, whatever still emits (presence
            // announcements among them: 1,035 in one bench run) lands here:
            // one line per interval, not one per event.
            if self.warn_now() {
                warn!(
                    event,
                    "namespace not registered (the node is stopping); events dropped"
                );
            }
            return Delivered::ThisNodeOnly;
        };
        match ns
            .to(audience.to)
            .except(audience.except)
            .emit(event, &payload)
            .await
        {
            Ok(()) => Delivered::Everywhere,
            // Some sockets were closing or full; the others got the event.
            Err(BroadcastError::Socket(failed)) => {
                tracing::debug!(
                    event,
                    sockets = failed.len(),
                    "event not delivered to closing sockets"
                );
                Delivered::Everywhere
            }
            Err(BroadcastError::Serialize(e)) => {
                tracing::error!(event, error = %e, "event payload failed to serialise");
                Delivered::ThisNodeOnly
            }
            // The adapter delivers to this node's sockets before it
            // publishes, so only other nodes may have missed the event.
            Err(BroadcastError::Adapter(e)) => {
                crate::instruments::broadcast_failure();
                if self.warn_now() {
                    warn!(event, error = %e, "broadcast to other nodes failed; delivered on this node \
                        (further failures within 5 s are counted in parloir_broadcast_failures_total only)");
                } else {
                    tracing::debug!(event, error = %e, "broadcast to other nodes failed");
                }
                Delivered::ThisNodeOnly
            }
        }
    }

    fn emit_local(&self, room: String, event: &'static str, payload: &Value) {
        let Some(ns) = self.io.of(NAMESPACE) else {
            return;
        };
        // A local broadcast never touches the adapter; its future only
        // fills this node's socket queues.
        let (local, payload) = (ns.local().to(room), payload.clone());
        tokio::spawn(async move {
            if let Err(e) = local.emit(event, &payload).await {
                tracing::debug!(event, error = %e, "local event not delivered to closing sockets");
            }
        });
    }

    async fn local_rooms(&self) -> Vec<String> {
        let Some(ns) = self.io.of(NAMESPACE) else {
            return Vec::new();
        };
        match ns.local().rooms().await {
            Ok(rooms) => rooms.into_iter().map(|r| r.to_string()).collect(),
            Err(e) => {
                tracing::debug!(error = %e, "this node's rooms unavailable");
                Vec::new()
            }
        }
    }

    fn emit_to_socket(&self, socket_id: &str, event: &'static str, payload: &Value) {
        if let Some(s) = self.socket(socket_id)
            && let Err(e) = s.emit(event, payload)
        {
            tracing::debug!(event, error = %e, "emit to socket failed (socket closing)");
        }
    }

    async fn join(&self, socket_id: &str, room: String) {
        if let Some(s) = self.socket(socket_id) {
            join_room(&s, room).await;
        }
    }

    async fn leave(&self, socket_id: &str, room: String) {
        if let Some(s) = self.socket(socket_id)
            && let Err(e) = s.local().leave(room).await
        {
            warn!(error = %e, "leaving a room: the adapter failed");
        }
    }

    fn local_sockets(&self) -> Vec<(String, crate::auth::User)> {
        let Some(ns) = self.io.of(NAMESPACE) else {
            return Vec::new();
        };
        ns.sockets()
            .into_iter()
            .filter_map(|s| {
                let state = s.extensions.get::<Arc<SocketState>>()?;
                Some((s.id.to_string(), state.user.clone()))
            })
            .collect()
    }
}

/// Joins a room through the adapter, which is how a cluster node learns to
/// subscribe to it (`SocketRef::join` changes only the local rooms).
pub async fn join_room<A: Adapter>(s: &socketioxide::extract::SocketRef<A>, room: String) {
    if let Err(e) = s.local().join(room).await {
        // The socket is in the room locally; the adapter subscribes the
        // room again when Redis is back.
        warn!(error = %e, "room subscription failed; cross-node delivery to it resumes with Redis");
    }
}
