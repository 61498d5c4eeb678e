//! Durable storage: the `Store` trait and its two implementations (Postgres
//! for production and clusters, SQLite for the embedded single node).
//! Stores turn rows into domain types and enforce the integrity rules a
//! database enforces best (uniqueness, monotonic read cursors). They hold no
//! authorization rule: the service decides who may call what.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::domain::{
    Conversation, ConversationId, ConversationSummary, ListCursor, Message, MessageId,
    NewConversation, NewMessage, Page, PageRequest, ReadCursor, UserId,
};

pub mod batched;
pub mod cached;
pub mod observed;
pub mod postgres;
pub mod sqlite;

pub use batched::{GroupCommit, GroupCommitLimits};
pub use cached::ParticipantCache;
pub use observed::ObservedStore;
pub use postgres::PostgresStore;
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
async fn insert_alone<S: Store + ?Sized>(store: &S, insert: MessageInsert) -> InsertOutcome {
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

/// The result of an attempt to move a read cursor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CursorMove {
    /// The cursor after the call (unchanged if the target was not newer).
    pub cursor: ReadCursor,
    /// False when the target was at or before the existing cursor.
    pub moved: bool,
}

/// Durable storage of conversations, participants, messages and read cursors.
///
/// Every method is cancel-safe in the sense that a dropped future leaves the
/// database consistent (each write is one statement or one transaction).
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Cheap round trip for readiness checks.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Creates a conversation. For exactly two participants the pair is unique
    /// (even under concurrent calls): the existing conversation is returned
    /// with `Created::Existing`. `id` and `now` are used only when new.
    async fn create_conversation(
        &self,
        id: ConversationId,
        new: &NewConversation,
        now: DateTime<Utc>,
    ) -> Result<(Conversation, Created), StoreError>;

    /// The conversation with its participants, or `None` if it does not exist.
    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError>;

    /// Whether `user` is a participant of `conversation` (false if it does not exist).
    async fn is_participant(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError>;

    /// The participants of a conversation, sorted (empty if it does not exist).
    async fn participants(&self, conversation: ConversationId) -> Result<Vec<UserId>, StoreError>;

    /// The user's conversations, most recent activity (`last_message_at`, else
    /// `created_at`) first, then by id descending; at most `limit`, strictly
    /// after `cursor`. Each carries the user's unread count and the newest
    /// non-deleted message.
    async fn list_conversations(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<Vec<ConversationSummary>, StoreError>;

    /// Stores a message and bumps the conversation's `last_message_at`, in one
    /// transaction. Idempotent on `(sender, client_message_id)`: a repeat
    /// (also a concurrent one) returns the stored message and
    /// `Inserted::Duplicate`; a repeat naming another conversation is
    /// `StoreError::ClientMessageIdReused`. `id` and `now` are used only when new.
    async fn insert_message(
        &self,
        id: MessageId,
        sender: &UserId,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<(Message, Inserted), StoreError>;

    /// Stores several messages with one commit (group commit): one outcome
    /// per input, in input order, each exactly what `insert_message` would
    /// answer for it had the messages been inserted one after the other in
    /// that order (a repeat of a `clientMessageId` earlier in the batch is a
    /// `Duplicate` of it). `Err` means nothing was stored; the caller may
    /// retry the messages one by one. The default inserts one by one.
    async fn insert_messages(
        &self,
        batch: &[MessageInsert],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        let mut outcomes = Vec::with_capacity(batch.len());
        for m in batch {
            outcomes.push(
                self.insert_message(m.id, &m.sender, &m.message, m.now)
                    .await,
            );
        }
        Ok(outcomes)
    }

    /// A page of non-deleted messages of a conversation (see [`PageRequest`]).
    async fn history(
        &self,
        conversation: ConversationId,
        page: &PageRequest,
    ) -> Result<Page, StoreError>;

    /// A non-deleted message by id.
    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError>;

    /// Soft-deletes a message. Returns false if it did not exist or was already deleted.
    async fn soft_delete_message(
        &self,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError>;

    /// The newest non-deleted message of a conversation.
    async fn latest_message_id(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MessageId>, StoreError>;

    /// Moves `user`'s read cursor in `conversation` to `to`, never backwards,
    /// atomically (two devices marking concurrently end at the newer one).
    /// The caller guarantees `user` is a participant and `to` belongs to the
    /// conversation.
    async fn advance_read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
        to: MessageId,
        now: DateTime<Utc>,
    ) -> Result<CursorMove, StoreError>;

    /// The user's current read cursor in a conversation.
    async fn read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<ReadCursor, StoreError>;

    /// Unread counts recomputed from the source of truth: per conversation of
    /// the user, non-deleted messages newer than the cursor and not sent by
    /// the user. Conversations with zero unread are omitted.
    async fn unread_counts(
        &self,
        user: &UserId,
    ) -> Result<HashMap<ConversationId, u64>, StoreError>;

    /// Every participant's unread count in one conversation, counted as
    /// `unread_counts` counts (zeros included): what a delete changes, in
    /// one query however many participants there are.
    async fn unread_in_conversation(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<(UserId, u64)>, StoreError>;

    /// Every user who shares at least one conversation with `user` (not `user` itself).
    async fn contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError>;
}
