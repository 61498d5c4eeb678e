//! Token expiry for all of a node's sockets, in one task (PROTOCOL.md §1: a
//! socket whose token expires gets `error {code: TOKEN_EXPIRED}` and is
//! disconnected). One timer queue for the node costs each socket an entry
//! in it, where a task per socket cost a task, a timer and a span for the
//! socket's whole life (README, Performance).

use std::collections::HashMap;

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};

use crate::protocol::{ErrorCode, ErrorEvent, NAMESPACE, ev};

enum Command {
    Watch(Sid, Instant),
    Forget(Sid),
}

/// Where sockets are put under watch (at connect) and taken off it (at
/// disconnect). Cheap to clone.
#[derive(Clone)]
pub struct Expiries {
    commands: mpsc::UnboundedSender<Command>,
}

/// The task's side: run it once the Socket.IO instance exists.
pub struct ExpiryWheel {
    commands: mpsc::UnboundedReceiver<Command>,
}

/// Both sides. The queue is bounded by the sockets a node holds: one
/// command in per connection and one per disconnection.
pub fn expiries() -> (Expiries, ExpiryWheel) {
    let (commands, receiver) = mpsc::unbounded_channel();
    (Expiries { commands }, ExpiryWheel { commands: receiver })
}

impl Expiries {
    /// Disconnects the socket at `at` unless it is forgotten first.
    pub fn watch(&self, sid: Sid, at: Instant) {
        // The wheel is gone only when the node stops: nothing left to expire.
        let _ = self.commands.send(Command::Watch(sid, at));
    }

    pub fn forget(&self, sid: Sid) {
        let _ = self.commands.send(Command::Forget(sid));
    }
}

impl ExpiryWheel {
    /// Disconnects each watched socket when its token expires, until `stop`.
    pub async fn run<A: Adapter>(mut self, io: SocketIo<A>, stop: CancellationToken) {
        let mut queue: DelayQueue<Sid> = DelayQueue::new();
        let mut keys: HashMap<Sid, delay_queue::Key> = HashMap::new();
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                command = self.commands.recv() => match command {
                    None => break,
                    Some(Command::Watch(sid, at)) => {
                        let key = queue.insert_at(sid, at);
                        if let Some(previous) = keys.insert(sid, key) {
                            queue.try_remove(&previous);
                        }
                    }
                    Some(Command::Forget(sid)) => {
                        if let Some(key) = keys.remove(&sid) {
                            queue.try_remove(&key);
                        }
                    }
                },
                Some(expired) = std::future::poll_fn(|cx| queue.poll_expired(cx)), if !queue.is_empty() => {
                    let sid = expired.into_inner();
                    keys.remove(&sid);
                    expire(&io, sid);
                }
            }
        }
    }
}

fn expire<A: Adapter>(io: &SocketIo<A>, sid: Sid) {
    let Some(s) = io.of(NAMESPACE).and_then(|ns| ns.get_socket(sid)) else {
        return; // Gone already.
    };
    let _span = tracing::info_span!("socket.token_expiry", socket.id = %sid).entered();
    let error = ErrorEvent {
        code: ErrorCode::TokenExpired,
        message: "token expired",
        event: None,
    };
    if let Err(e) = s.emit(ev::ERROR, &error) {
        tracing::debug!(error = %e, "token expiry notice not sent");
    }
    if let Err(e) = s.disconnect() {
        tracing::debug!(error = %e, "socket already gone at token expiry");
    }
}
