//! The node's socket timers, in one task: token expiry (PROTOCOL.md §1: a
//! socket whose token expires gets `error {code: TOKEN_EXPIRED}` and is
//! disconnected) and the confirmation of handshakes. One timer queue for the
//! node costs each socket an entry in it, where a task per socket cost a
//! task, a timer and a span for the socket's whole life (README, Performance).
//!
//! Handshakes: presence is recorded in the connect middleware, before the
//! socket belongs to the namespace. If the connection drops then, socketioxide
//! never runs a disconnect handler for it (the socket never enters the
//! namespace, or leaves it without its handlers), and the recorded socket
//! would read online until the node dies. So the middleware watches every
//! socket it records: unless the socket is in the namespace when the watch
//! falls due, its presence is undone.
//!
//! Deadlines are clamped: tokio-util's `DelayQueue` refuses deadlines more
//! than about two years ahead (it panicked on a token valid for three years,
//! and token expiry stopped for the whole node). An entry whose real
//! deadline is further than `LONGEST_WAIT` fires early and is put back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use socketioxide::SocketIo;
use socketioxide::adapter::Adapter;
use socketioxide::socket::Sid;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::time::{DelayQueue, delay_queue};
use tracing::Instrument as _;

use crate::auth::User;
use crate::protocol::{ErrorCode, ErrorEvent, NAMESPACE, ev};
use crate::service::Messaging;

/// The longest wait handed to the timer queue (far below its limit).
const LONGEST_WAIT: Duration = Duration::from_secs(24 * 3600);

/// How long a handshake has to become a socket of the namespace, counted
/// from when the wheel reads the watch. socketioxide adds the socket in the
/// same step as the middleware's return, before the watch can be read:
/// this only has to outlast a thread descheduled at that very moment.
pub const HANDSHAKE_CONFIRMATION: Duration = Duration::from_secs(5);

enum Command {
    Watch(Sid, Watch),
    Forget(Sid),
}

/// What a socket is watched for.
enum Watch {
    /// The handshake of `user` recorded presence: it must become a socket
    /// of the namespace before `HANDSHAKE_CONFIRMATION` passes.
    Handshake(Box<User>),
    /// The socket's token expires after this long (`None`: beyond what a
    /// clock can represent, so never).
    Token(Option<Instant>),
}

/// Where sockets are put under watch and taken off it. Cheap to clone.
#[derive(Clone)]
pub struct Expiries {
    commands: mpsc::UnboundedSender<Command>,
}

/// The task's side. Its state outlives a run, so that a restarted run (see
/// `supervisor`) keeps every socket's deadline.
#[derive(Clone)]
pub struct ExpiryWheel {
    commands: Arc<tokio::sync::Mutex<mpsc::UnboundedReceiver<Command>>>,
    timers: Arc<Mutex<Timers>>,
}

/// Both sides. The queue is bounded by the sockets a node holds: a few
/// commands per connection.
pub fn expiries() -> (Expiries, ExpiryWheel) {
    let (commands, receiver) = mpsc::unbounded_channel();
    let wheel = ExpiryWheel {
        commands: Arc::new(tokio::sync::Mutex::new(receiver)),
        timers: Arc::new(Mutex::new(Timers::default())),
    };
    (Expiries { commands }, wheel)
}

impl Expiries {
    /// Undoes `user`'s presence for this socket unless it is a socket of the
    /// namespace within `HANDSHAKE_CONFIRMATION`.
    pub fn confirm_handshake(&self, sid: Sid, user: &User) {
        // The wheel is gone only when the node stops: nothing left to watch.
        let _ = self.commands.send(Command::Watch(
            sid,
            Watch::Handshake(Box::new(user.clone())),
        ));
    }

    /// Disconnects the socket once `remaining` has passed, unless it is
    /// forgotten first. Replaces its handshake watch.
    pub fn watch_token(&self, sid: Sid, remaining: Duration) {
        let at = Instant::now().checked_add(remaining);
        let _ = self.commands.send(Command::Watch(sid, Watch::Token(at)));
    }

    pub fn forget(&self, sid: Sid) {
        let _ = self.commands.send(Command::Forget(sid));
    }
}

struct Timer {
    key: delay_queue::Key,
    watch: Watch,
}

#[derive(Default)]
struct Timers {
    queue: DelayQueue<Sid>,
    watched: HashMap<Sid, Timer>,
}

impl Timers {
    fn watch(&mut self, sid: Sid, watch: Watch) {
        let due = match &watch {
            Watch::Handshake(_) => Some(Instant::now() + HANDSHAKE_CONFIRMATION),
            Watch::Token(at) => *at,
        };
        let key = self.queue.insert_at(sid, clamped(due));
        if let Some(previous) = self.watched.insert(sid, Timer { key, watch }) {
            self.queue.try_remove(&previous.key);
        }
    }

    fn forget(&mut self, sid: Sid) {
        if let Some(timer) = self.watched.remove(&sid) {
            self.queue.try_remove(&timer.key);
        }
    }

    /// A queue entry fired: what is due for it, if anything. An entry fired
    /// early by the clamp goes back into the queue.
    fn fired(&mut self, sid: Sid) -> Option<Watch> {
        let timer = self.watched.remove(&sid)?;
        match timer.watch {
            Watch::Token(at) if at.is_none_or(|at| at > Instant::now()) => {
                let key = self.queue.insert_at(sid, clamped(at));
                self.watched.insert(sid, Timer { key, ..timer });
                None
            }
            watch => Some(watch),
        }
    }
}

/// A deadline the timer queue accepts.
fn clamped(due: Option<Instant>) -> Instant {
    let latest = Instant::now() + LONGEST_WAIT;
    due.map_or(latest, |due| due.min(latest))
}

impl ExpiryWheel {
    /// Acts on each watched socket when its time comes, until `stop`.
    pub async fn run<A: Adapter>(self, io: SocketIo<A>, svc: Messaging, stop: CancellationToken) {
        let mut commands = self.commands.lock().await;
        loop {
            let fired = tokio::select! {
                _ = stop.cancelled() => return,
                command = commands.recv() => {
                    let mut timers = self.lock();
                    match command {
                        None => return, // every sender is gone: the node is stopping
                        Some(Command::Watch(sid, watch)) => timers.watch(sid, watch),
                        Some(Command::Forget(sid)) => timers.forget(sid),
                    }
                    continue;
                }
                Some(expired) = std::future::poll_fn(|cx| self.lock().queue.poll_expired(cx)) => {
                    let sid = expired.into_inner();
                    self.lock().fired(sid).map(|watch| (sid, watch))
                }
            };
            match fired {
                Some((sid, Watch::Token(_))) => expire(&io, sid),
                Some((sid, Watch::Handshake(user))) => confirm(&io, &svc, sid, *user),
                None => {}
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Timers> {
        self.timers.lock().unwrap_or_else(|p| p.into_inner())
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

/// A handshake's watch fell due. A socket in the namespace has connected
/// (its disconnection will be handled as any other); one that is not never
/// will, and its presence is undone.
fn confirm<A: Adapter>(io: &SocketIo<A>, svc: &Messaging, sid: Sid, user: User) {
    if io
        .of(NAMESPACE)
        .is_some_and(|ns| ns.get_socket(sid).is_some())
    {
        return;
    }
    let span =
        tracing::info_span!("socket.handshake_abandoned", socket.id = %sid, user.id = %user.id);
    let svc = svc.clone();
    // Its own task: the wheel never waits on shared state.
    tokio::spawn(
        async move {
            tracing::debug!("a handshake never became a socket; its presence is undone");
            if let Err(e) = svc.socket_disconnected(&user, &sid.to_string()).await {
                tracing::warn!(error = %e, "presence state unavailable for an abandoned handshake");
            }
        }
        .instrument(span),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_token_valid_for_years_waits_in_the_queue_and_fires_on_time() {
        let mut timers = Timers::default();
        let sid = Sid::new();
        let three_years = Duration::from_secs(3 * 365 * 24 * 3600);
        let at = Instant::now() + three_years;
        timers.watch(sid, Watch::Token(Some(at)));
        timers.watch(Sid::new(), Watch::Token(None));
        // Each day the entry fires early and goes back.
        tokio::time::advance(LONGEST_WAIT).await;
        let early = std::future::poll_fn(|cx| timers.queue.poll_expired(cx)).await;
        let early = early.expect("an entry fires at the clamp").into_inner();
        assert!(timers.fired(early).is_none(), "not due yet");
        assert_eq!(timers.watched.len(), 2, "still watched");
        tokio::time::advance(three_years).await;
        let mut due = Vec::new();
        while let Some(e) = std::future::poll_fn(|cx| timers.queue.poll_expired(cx)).await {
            if let Some(w) = timers.fired(e.into_inner()) {
                due.push(w);
            }
            if !due.is_empty() {
                break;
            }
        }
        assert!(matches!(due.as_slice(), [Watch::Token(Some(_))]));
    }
}
