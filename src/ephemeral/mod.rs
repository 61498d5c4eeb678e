//! Ephemeral shared state: presence, typing, unread counters and rate limits.
//! Everything here can be rebuilt (unread counters from the store's read
//! cursors) or may be lost (presence, typing) without losing messages.
//! It is six narrow seams, as the store is: `Health`, `Quotas`,
//! `PresenceState`, `TypingState`, `UnreadCounters` and `Unannounced`, held
//! together by the
//! `Ephemeral` handle. `MemoryEphemeral` serves a single node;
//! `RedisEphemeral` (cluster mode) implements the same seams over one Redis
//! shared by every node.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};

use crate::domain::{ConversationId, MessageId, UserId};
use crate::observed::{Observable, Observer, Seam, seam};

mod coalesce;
pub mod fred_client;
pub mod memory;
pub mod redis;

pub use memory::MemoryEphemeral;
pub use redis::{RedisEphemeral, RedisSettings};

#[derive(Debug, thiserror::Error)]
pub enum EphemeralError {
    /// The shared state backend could not be reached in time.
    #[error("ephemeral state unavailable during {op}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Observable for EphemeralError {
    fn outcome(&self) -> &'static str {
        "unavailable"
    }

    fn timed_out(op: &'static str, after: tokio::time::error::Elapsed) -> Self {
        Self::Unavailable {
            op,
            source: Box::new(after),
        }
    }
}

/// One user's presence as others may see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Presence {
    pub online: bool,
    /// When the user's last device went away; `None` while online or never seen.
    pub last_seen: Option<DateTime<Utc>>,
}

/// What `sweep_dead_nodes` claimed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// The dead nodes this caller claimed.
    pub nodes: Vec<String>,
    /// The users they left with no socket anywhere, and their last-seen time.
    pub users: Vec<(UserId, DateTime<Utc>)>,
}

/// What `admit_socket` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketAdmission {
    /// Recorded: the user's first live socket (the user just came online).
    First,
    /// Recorded: the user had other live sockets.
    Another,
    /// Not recorded: the user holds the cap already.
    OverCap,
}

/// A user typing in a conversation, as announced to others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Typist {
    pub conversation_id: ConversationId,
    pub user_id: UserId,
    pub user_name: String,
}

/// Wall-clock time in Unix milliseconds. Time-dependent operations take it
/// as an argument so every implementation (and every node of a cluster)
/// decides expiry from the caller's clock reading, and tests choose the time.
pub type UnixMillis = i64;

/// What `message_committed` changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageCommitted {
    /// The sender had a typing state in the conversation; it has ended.
    pub sender_was_typing: bool,
    /// Per recipient: `Some((conversation count, total))`, or `None` when the
    /// recipient's counters are missing (rebuild them from the store).
    pub unread: UnreadChanges,
}

/// Per user: `Some((conversation count, total))` after a change to one
/// conversation's count, or `None` when the user's counters are missing.
pub type UnreadChanges = Vec<(UserId, Option<(u64, u64)>)>;

/// Per-conversation unread counts of one user (zero entries may be absent).
pub type UnreadCounts = HashMap<ConversationId, u64>;

seam! {
    /// Whether the shared state answers: readiness checks.
    pub trait Health {
        /// Cheap round trip for readiness checks.
        async fn ping(&self) -> Result<(), EphemeralError> = "ping";
    }
}

seam! {
    /// Cluster-wide rate limits (token buckets) of sends and creations.
    pub trait Quotas {
        /// Takes one `send-message` token from the user's bucket; false when empty.
        async fn try_acquire_send(&self, user: &UserId) -> Result<bool, EphemeralError>
            = "try_acquire_send";

        /// Takes one conversation-creation token from the user's bucket (a
        /// slower one than sends); false when empty.
        async fn try_acquire_create(&self, user: &UserId) -> Result<bool, EphemeralError>
            = "try_acquire_create";
    }
}

seam! {
    /// Who is connected where: sockets per user, nodes and their liveness.
    pub trait PresenceState {
        /// Records a connected socket. Returns true when it is the user's first
        /// live socket (the user just came online).
        async fn socket_connected(
            &self,
            user: &UserId,
            socket_id: &str,
        ) -> Result<bool, EphemeralError> = "socket_connected";

        /// Records a connected socket unless the user already has `cap` live
        /// sockets (a socket already recorded is admitted again), counting and
        /// recording in one atomic step: concurrent handshakes of one user
        /// cannot pass the cap between the count and the record.
        async fn admit_socket(
            &self,
            user: &UserId,
            socket_id: &str,
            cap: usize,
        ) -> Result<SocketAdmission, EphemeralError> = "admit_socket";

        /// Forgets a socket. Returns `Some(last_seen)` when it was the user's last
        /// live socket (the user just went offline), atomically with the removal
        /// so that two sockets closing together yield exactly one offline.
        async fn socket_disconnected(
            &self,
            user: &UserId,
            socket_id: &str,
            now: DateTime<Utc>,
        ) -> Result<Option<DateTime<Utc>>, EphemeralError> = "socket_disconnected";

        /// How many live sockets the user has, cluster-wide.
        async fn socket_count(&self, user: &UserId) -> Result<usize, EphemeralError>
            = "socket_count";

        /// Whether each user is online, and when the offline ones were last seen.
        async fn presence(&self, users: &[UserId])
        -> Result<HashMap<UserId, Presence>, EphemeralError> = "presence";

        /// Marks this node alive until `now + ttl`. Called periodically; a node
        /// whose heartbeat lapses is considered dead and swept by the others.
        /// Returns true when the node was not registered: its first heartbeat,
        /// or its sockets are forgotten (swept after a long outage, or a Redis
        /// that restarted empty) and must be recorded again.
        async fn heartbeat(
            &self,
            now: UnixMillis,
            ttl: std::time::Duration,
        ) -> Result<bool, EphemeralError> = "heartbeat";

        /// Forgets every socket this node id had recorded — what a previous
        /// process with the same node id (a restarted pod) left behind — and
        /// returns the users left with no socket anywhere, with `now` as their
        /// last-seen time. Call before serving.
        async fn forget_own_sockets(
            &self,
            now: UnixMillis,
        ) -> Result<Vec<(UserId, DateTime<Utc>)>, EphemeralError> = "forget_own_sockets";

        /// Removes the sockets of every node whose heartbeat lapsed before `now`
        /// and returns those nodes and the users left with no socket anywhere,
        /// with their last-seen time. Each node and each such user is returned
        /// to exactly one caller, cluster-wide, so exactly one node announces
        /// each `user-offline`.
        async fn sweep_dead_nodes(&self, now: UnixMillis) -> Result<Swept, EphemeralError>
            = "sweep_dead_nodes";
    }
}

seam! {
    /// Who is typing where, and when it expires.
    pub trait TypingState {
        /// Starts or refreshes typing state until `now + ttl`. Returns true when
        /// the state should be relayed to others: it is new, or it was last
        /// relayed at least `relay_interval` before `now`.
        async fn start_typing(
            &self,
            typist: &Typist,
            now: UnixMillis,
            ttl: std::time::Duration,
            relay_interval: std::time::Duration,
        ) -> Result<bool, EphemeralError> = "start_typing";

        /// Ends typing state. Returns true when the user was typing (so exactly
        /// one caller announces the stop).
        async fn stop_typing(
            &self,
            conversation: ConversationId,
            user: &UserId,
        ) -> Result<bool, EphemeralError> = "stop_typing";

        /// The conversations in which `user` has a typing state.
        async fn typing_conversations_of(
            &self,
            user: &UserId,
        ) -> Result<Vec<ConversationId>, EphemeralError> = "typing_conversations_of";

        /// Who is typing in a conversation at `now` (expired states excluded).
        async fn typing_in(
            &self,
            conversation: ConversationId,
            now: UnixMillis,
        ) -> Result<Vec<Typist>, EphemeralError> = "typing_in";

        /// Removes and returns every typing state expired at `now`. Each expired
        /// state is returned to exactly one caller, cluster-wide.
        async fn take_expired_typing(&self, now: UnixMillis) -> Result<Vec<Typist>, EphemeralError>
            = "take_expired_typing";
    }
}

seam! {
    /// Unread counters: a cache of counts the store can always recount.
    pub trait UnreadCounters {
        /// After a message is committed: ends the sender's typing state in the
        /// conversation and counts one more unread for each recipient whose
        /// counters are present — the hot path of a send, in one round trip. A
        /// recipient's entry is `Some((conversation count, total))`, or `None`
        /// when that user's counters are missing and must be rebuilt from the store.
        async fn message_committed(
            &self,
            conversation: ConversationId,
            sender: &UserId,
            recipients: &[UserId],
        ) -> Result<MessageCommitted, EphemeralError> = "message_committed";

        /// Replaces a user's counters with counts recomputed from the store.
        async fn replace_unread(
            &self,
            user: &UserId,
            counts: &UnreadCounts,
        ) -> Result<(), EphemeralError> = "replace_unread";

        /// Sets one conversation's count in each listed user's counters, in one
        /// round trip (after a delete, with counts from the store). Only present
        /// counters change; a user's entry is `Some((conversation count, total))`,
        /// or `None` when that user's counters are missing — they stay missing and
        /// are rebuilt from the store when next needed.
        async fn set_conversation_unread(
            &self,
            conversation: ConversationId,
            counts: &[(UserId, u64)],
        ) -> Result<UnreadChanges, EphemeralError> = "set_conversation_unread";

        /// A user's counters, or `None` when missing.
        async fn unread(&self, user: &UserId) -> Result<Option<UnreadCounts>, EphemeralError>
            = "unread";

        /// `unread` for many users at once (a batch of handshakes): the
        /// users whose counters are present, with them.
        async fn unread_of(
            &self,
            users: &[UserId],
        ) -> Result<HashMap<UserId, UnreadCounts>, EphemeralError> = "unread_of";
    }
}

seam! {
    /// Messages whose sender was told `UNKNOWN_OUTCOME` (the store may have
    /// committed them after all). The retry that finds one stored announces
    /// it: exactly one caller takes each.
    pub trait Unannounced {
        /// Remembers `message` for `ttl`.
        async fn remember_unannounced(
            &self,
            message: MessageId,
            ttl: std::time::Duration,
        ) -> Result<(), EphemeralError> = "remember_unannounced";

        /// Forgets `message`; true when it was remembered.
        async fn take_unannounced(&self, message: MessageId) -> Result<bool, EphemeralError>
            = "take_unannounced";
    }
}

/// Shared state that implements every seam (in process, Redis).
pub trait Backend:
    Health + Quotas + PresenceState + TypingState + UnreadCounters + Unannounced
{
}

impl<T> Backend for T where
    T: Health + Quotas + PresenceState + TypingState + UnreadCounters + Unannounced
{
}

/// The shared state as the service sees it: one handle per seam, every
/// call observed. Cheap to clone.
#[derive(Clone)]
pub struct Ephemeral {
    pub health: Arc<dyn Health>,
    pub quotas: Arc<dyn Quotas>,
    pub presence: Arc<dyn PresenceState>,
    pub typing: Arc<dyn TypingState>,
    pub unread: Arc<dyn UnreadCounters>,
    pub unannounced: Arc<dyn Unannounced>,
}

impl Ephemeral {
    /// Every seam served by `backend`, each call a `shared_state` span and a
    /// latency sample; `system` names the backend (`memory`, `redis`).
    pub fn observed<B: Backend>(backend: Arc<B>, system: &'static str) -> Self {
        let observe = Observer::new(Seam::SharedState, system);
        Self {
            health: Arc::new(observe.wrap(backend.clone())),
            quotas: Arc::new(observe.wrap(backend.clone())),
            presence: Arc::new(observe.wrap(backend.clone())),
            typing: Arc::new(observe.wrap(backend.clone())),
            unread: Arc::new(observe.wrap(backend.clone())),
            unannounced: Arc::new(observe.wrap(backend)),
        }
    }
}
