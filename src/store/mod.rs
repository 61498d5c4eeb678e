//! Durable storage: narrow seams (traits) that change separately, the
//! [`Store`] handle holding one implementation of each, and the two
//! databases that implement them all (Postgres for production and clusters,
//! SQLite for the embedded single node).
//! Stores turn rows into domain types and enforce the integrity rules a
//! database enforces best (uniqueness, monotonic read cursors). They hold no
//! authorization rule: the service decides who may call what.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::domain::{
    Contact, ContactClaims, Conversation, ConversationId, ConversationSummary, DueNotification,
    Gathered, ListCursor, LogPage, Message, MessageId, NewConversation, NewMessage, NotificationId,
    OutboxEntry, Page, PageRequest, ReadCursor, RetentionCounts, RetentionCutoffs, Settlement,
    UserId,
};
use crate::observed::{Observable, Observer, Seam};

pub mod batched;
pub mod cached;
pub mod postgres;
mod rows;
mod seams;
pub mod sqlite;

pub use batched::{GroupCommit, GroupCommitLimits};
pub use cached::ParticipantCache;
pub use postgres::PostgresStore;
pub use seams::{
    Backend, Blocks, ConversationLog, Conversations, Health, MessageInserts, Messages,
    Notifications, Participants, ReadCursors, Retention,
};
pub use sqlite::SqliteStore;

/// Whether a create call made something new or found what already existed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    New,
    Existing,
}

/// Cheap to clone (sources are shared), so one failure of a batched write
/// can be handed to every caller in the batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or the pool had no connection in
    /// time. Nothing was written.
    #[error("storage unavailable during {op}")]
    Unavailable {
        op: &'static str,
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// A write whose answer never came: the database may or may not have
    /// committed it (the connection broke, or the answer came after the
    /// caller's deadline, after the commit). Only an idempotent retry settles it.
    #[error("storage did not answer {op}: it may or may not have been written")]
    OutcomeUnknown {
        op: &'static str,
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// The sender already used this `clientMessageId` in another conversation.
    #[error("clientMessageId was already used for another conversation")]
    ClientMessageIdReused,
    /// A query failed for a reason other than reachability (a bug or a schema mismatch).
    #[error("storage query {op} failed")]
    Query {
        op: &'static str,
        #[source]
        source: Arc<sqlx::Error>,
    },
    /// A row could not be turned into a domain value.
    #[error("stored row is invalid in {op}: {detail}")]
    Corrupt { op: &'static str, detail: String },
}

impl StoreError {
    /// Classifies a sqlx error: connection-level failures are `Unavailable`
    /// (the caller may retry later), everything else is a `Query` failure.
    pub fn from_sqlx(op: &'static str, source: sqlx::Error) -> Self {
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
            | sqlx::Error::Protocol(_) => Self::Unavailable {
                op,
                source: Arc::new(source),
            },
            sqlx::Error::Database(ref db)
                if db.code().is_some_and(|c| {
                    c.starts_with("08")
                        || matches!(c.as_ref(), "57P01" | "57P03" | "57014" | "55P03")
                }) =>
            {
                // 08xxx connection exceptions, admin shutdown, cannot connect
                // now; a statement cancelled at statement_timeout, a lock not
                // available: nothing was written, a retry may succeed.
                Self::Unavailable {
                    op,
                    source: Arc::new(source),
                }
            }
            _ => Self::Query {
                op,
                source: Arc::new(source),
            },
        }
    }
}

impl StoreError {
    /// Classifies the failure of a write that commits by itself (one
    /// statement): a connection that failed while the statement was sent or
    /// its answer awaited leaves its outcome unknown; a pool that gave no
    /// connection, or a database that refused or rolled back the
    /// statement, wrote nothing.
    pub fn from_sqlx_write(op: &'static str, source: sqlx::Error) -> Self {
        match source {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::WorkerCrashed => Self::OutcomeUnknown {
                op,
                source: Arc::new(source),
            },
            other => Self::from_sqlx(op, other),
        }
    }
}

impl Observable for StoreError {
    fn outcome(&self) -> &'static str {
        match self {
            Self::Unavailable { .. } => "unavailable",
            Self::OutcomeUnknown { .. } => "unknown",
            Self::ClientMessageIdReused => "conflict",
            Self::Query { .. } | Self::Corrupt { .. } => "error",
        }
    }

    fn timed_out(op: &'static str, after: tokio::time::error::Elapsed) -> Self {
        Self::Unavailable {
            op,
            source: Arc::new(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                after,
            ))),
        }
    }
}

/// Whether `insert_message` stored a new row or returned the one already
/// stored under the same `(sender, clientMessageId)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Inserted {
    New,
    Duplicate,
}

/// One message to store, as `insert_message` takes it, for `insert_messages`.
#[derive(Debug, Clone)]
pub struct MessageInsert {
    pub id: MessageId,
    pub sender: UserId,
    pub message: NewMessage,
    pub now: DateTime<Utc>,
}

impl MessageInsert {
    /// The arguments of `insert_message`, owned.
    pub fn new(id: MessageId, sender: &UserId, message: &NewMessage, now: DateTime<Utc>) -> Self {
        Self {
            id,
            sender: sender.clone(),
            message: message.clone(),
            now,
        }
    }
}

/// What `insert_message` answers for one message.
pub type InsertOutcome = Result<(Message, Inserted), StoreError>;

/// `insert_message` for a store whose one write path is `insert_messages`:
/// a batch of one.
async fn insert_alone<S: MessageInserts + ?Sized>(
    store: &S,
    insert: MessageInsert,
) -> InsertOutcome {
    store
        .insert_messages(std::slice::from_ref(&insert))
        .await?
        .pop()
        .unwrap_or_else(|| {
            Err(StoreError::Corrupt {
                op: "insert_message",
                detail: "no outcome for the message".to_owned(),
            })
        })
}

/// The outcome for `attempt` when its `(sender, clientMessageId)` is
/// already stored as `stored`: a duplicate, unless it named another
/// conversation.
fn duplicate_of(stored: &Message, attempt: &MessageInsert) -> InsertOutcome {
    if stored.conversation_id != attempt.message.conversation_id {
        return Err(StoreError::ClientMessageIdReused);
    }
    Ok((stored.clone(), Inserted::Duplicate))
}

/// The blocks a user is part of (`Blocks::block_relations`), each sorted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockRelations {
    /// The users `user` blocks.
    pub blocks: Vec<UserId>,
    /// The users who block `user`.
    pub blocked_by: Vec<UserId>,
}

/// Notifications not settled for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Backlog {
    /// Pending or being sent (retries included).
    pub queued: u64,
    /// The earliest `due_at` among them.
    pub oldest_due: Option<DateTime<Utc>>,
}

/// The result of an attempt to move a read cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorMove {
    /// The cursor after the call (unchanged if the target was not newer).
    pub cursor: ReadCursor,
    /// False when the target was at or before the existing cursor.
    pub moved: bool,
    /// The move's number in the conversation's log, when it moved.
    pub seq: Option<u64>,
}

/// One batch of `archive_idle_conversations`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArchiveBatch {
    /// Conversations this batch archived.
    pub archived: u64,
    /// Where the next batch starts (the last conversation this one
    /// visited), or `None` when no conversation is left to visit.
    pub next: Option<ConversationId>,
}

/// The right to run the retention job, as a backend holds it. Postgres: a
/// session advisory lock on a connection outside the pool, so that whatever
/// ends a run (its end, an error, a cancelled future, a dead node) ends the
/// lock with the connection, and a lock can never be left behind on a
/// pooled connection. SQLite: nothing to hold.
pub struct RetentionLease {
    held: Option<Box<dyn HeldLock>>,
}

/// A lock a backend holds for a `RetentionLease`; dropping it must release
/// it too, if only later.
#[async_trait::async_trait]
pub(crate) trait HeldLock: Send + Sync {
    /// What it is, for logs.
    fn describe(&self) -> &'static str;
    /// Releases it now, waiting for the backend to confirm.
    async fn release(self: Box<Self>) -> Result<(), StoreError>;
}

impl RetentionLease {
    /// One node at a time is guaranteed by other means (one process owns the file).
    fn uncontended() -> Self {
        Self { held: None }
    }

    fn holding(lock: impl HeldLock + 'static) -> Self {
        Self {
            held: Some(Box::new(lock)),
        }
    }

    /// Releases the lock now and waits for the backend to confirm it, so
    /// that another node may take it at once. Dropping the lease releases
    /// it too, as soon as the server notices its connection closed.
    pub async fn release(self) -> Result<(), StoreError> {
        match self.held {
            None => Ok(()),
            Some(lock) => lock.release().await,
        }
    }
}

impl std::fmt::Debug for RetentionLease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let held = self.held.as_ref().map_or("nothing", |l| l.describe());
        f.debug_struct("RetentionLease")
            .field("held", &held)
            .finish()
    }
}

/// Durable storage as the service sees it: one handle per seam, so that a
/// decorator replaces only the seam it changes (group commit the inserts,
/// the participant cache the participants) and forwards nothing else.
/// Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pub health: Arc<dyn Health>,
    pub conversations: Arc<dyn Conversations>,
    pub participants: Arc<dyn Participants>,
    pub inserts: Arc<dyn MessageInserts>,
    pub messages: Arc<dyn Messages>,
    pub cursors: Arc<dyn ReadCursors>,
    pub notifications: Arc<dyn Notifications>,
    pub retention: Arc<dyn Retention>,
    pub blocks: Arc<dyn Blocks>,
    pub log: Arc<dyn ConversationLog>,
}

/// How the node decorates its store (see [`Store::decorated`]).
#[derive(Clone)]
pub struct Decorations {
    /// Names the database in spans (`postgresql`, `sqlite`).
    pub system: &'static str,
    /// Every call but an insert fails `Unavailable` past it.
    pub call_deadline: Option<Duration>,
    pub group_commit: GroupCommitLimits,
    /// Conversations whose participants are remembered; 0 remembers none.
    pub participant_cache: usize,
    /// Runs the group commit's dispatcher.
    pub supervisor: crate::supervisor::Supervisor,
}

impl Store {
    /// Every seam served by `backend`, undecorated.
    pub fn new<B: Backend>(backend: Arc<B>) -> Self {
        Self {
            health: backend.clone(),
            conversations: backend.clone(),
            participants: backend.clone(),
            inserts: backend.clone(),
            messages: backend.clone(),
            cursors: backend.clone(),
            retention: backend.clone(),
            blocks: backend.clone(),
            log: backend.clone(),
            notifications: backend,
        }
    }

    /// `backend` as the node uses it: inserts group-committed, every call
    /// observed, participants cached. Must run inside a tokio runtime (the
    /// group commit starts its dispatcher).
    pub fn decorated<B: Backend>(backend: Arc<B>, with: Decorations) -> Self {
        let store = Self::new(backend);
        let observer = Observer::new(Seam::Store, with.system).with_deadline(with.call_deadline);
        let inserts: Arc<dyn MessageInserts> = Arc::new(GroupCommit::new(
            store.inserts,
            with.group_commit,
            &with.supervisor,
        ));
        let participants: Arc<dyn Participants> = Arc::new(observer.wrap(store.participants));
        Self {
            health: Arc::new(observer.wrap(store.health)),
            conversations: Arc::new(observer.wrap(store.conversations)),
            participants: match with.participant_cache {
                0 => participants,
                capacity => Arc::new(ParticipantCache::new(participants, capacity)),
            },
            // A send waits in its group commit, whose statements have their
            // own deadline; its wait is observed without one.
            inserts: Arc::new(observer.with_deadline(None).wrap(inserts)),
            messages: Arc::new(observer.wrap(store.messages)),
            cursors: Arc::new(observer.wrap(store.cursors)),
            notifications: Arc::new(observer.wrap(store.notifications)),
            retention: Arc::new(observer.wrap(store.retention)),
            blocks: Arc::new(observer.wrap(store.blocks)),
            log: Arc::new(observer.wrap(store.log)),
        }
    }
}
