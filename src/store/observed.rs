//! A `Store` decorator that makes every call a child span (`store` with
//! `db.operation`) and records its latency and failures, whichever
//! implementation it wraps. `app` wraps the configured store once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use super::{Created, CursorMove, InsertOutcome, Inserted, MessageInsert, Store, StoreError};
use crate::domain::{
    Conversation, ConversationId, ConversationSummary, ListCursor, Message, MessageId,
    NewConversation, NewMessage, Page, PageRequest, ReadCursor, UserId,
};
use crate::instruments;

pub struct ObservedStore {
    inner: Arc<dyn Store>,
    system: &'static str,
    deadline: Option<Duration>,
}

impl ObservedStore {
    /// `system` names the database in spans (`postgresql`, `sqlite`).
    pub fn new(inner: Arc<dyn Store>, system: &'static str) -> Self {
        Self {
            inner,
            system,
            deadline: None,
        }
    }

    /// Every call but `insert_message` fails `Unavailable` past `deadline`
    /// (a send waits in its group commit, whose statements have their own).
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    async fn observe<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        self.observe_within(op, self.deadline, call).await
    }

    async fn observe_within<T>(
        &self,
        op: &'static str,
        deadline: Option<Duration>,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let span = tracing::info_span!(
            "store",
            db.system = self.system,
            db.operation = op,
            outcome = tracing::field::Empty
        );
        let started = tokio::time::Instant::now();
        let result = within(op, deadline, call.instrument(span.clone())).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err(StoreError::Unavailable { .. }) => "unavailable",
            Err(StoreError::ClientMessageIdReused) => "conflict",
            Err(_) => "error",
        };
        span.record("outcome", outcome);
        instruments::store_call(op, outcome, started.elapsed());
        result
    }
}

/// `call`, or `Unavailable` once `deadline` has passed (nothing is known of
/// what the store did with it; the caller is told to retry).
pub(crate) async fn within<T>(
    op: &'static str,
    deadline: Option<Duration>,
    call: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let Some(deadline) = deadline else {
        return call.await;
    };
    match tokio::time::timeout(deadline, call).await {
        Ok(result) => result,
        Err(elapsed) => Err(StoreError::Unavailable {
            op,
            source: Arc::new(sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                elapsed,
            ))),
        }),
    }
}

#[async_trait]
impl Store for ObservedStore {
    async fn ping(&self) -> Result<(), StoreError> {
        self.observe("ping", self.inner.ping()).await
    }

    async fn create_conversation(
        &self,
        id: ConversationId,
        new: &NewConversation,
        now: DateTime<Utc>,
    ) -> Result<(Conversation, Created), StoreError> {
        self.observe(
            "create_conversation",
            self.inner.create_conversation(id, new, now),
        )
        .await
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.observe("conversation", self.inner.conversation(id))
            .await
    }

    async fn is_participant(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        self.observe(
            "is_participant",
            self.inner.is_participant(conversation, user),
        )
        .await
    }

    async fn participants(&self, conversation: ConversationId) -> Result<Vec<UserId>, StoreError> {
        self.observe("participants", self.inner.participants(conversation))
            .await
    }

    async fn list_conversations(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.observe(
            "list_conversations",
            self.inner.list_conversations(user, limit, cursor),
        )
        .await
    }

    async fn insert_message(
        &self,
        id: MessageId,
        sender: &UserId,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<(Message, Inserted), StoreError> {
        self.observe_within(
            "insert_message",
            None,
            self.inner.insert_message(id, sender, message, now),
        )
        .await
    }

    async fn insert_messages(
        &self,
        batch: &[MessageInsert],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        self.observe("insert_messages", self.inner.insert_messages(batch))
            .await
    }

    async fn history(
        &self,
        conversation: ConversationId,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.observe("history", self.inner.history(conversation, page))
            .await
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        self.observe("message", self.inner.message(id)).await
    }

    async fn soft_delete_message(
        &self,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.observe(
            "soft_delete_message",
            self.inner.soft_delete_message(id, now),
        )
        .await
    }

    async fn latest_message_id(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        self.observe(
            "latest_message_id",
            self.inner.latest_message_id(conversation),
        )
        .await
    }

    async fn advance_read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
        to: MessageId,
        now: DateTime<Utc>,
    ) -> Result<CursorMove, StoreError> {
        self.observe(
            "advance_read_cursor",
            self.inner.advance_read_cursor(conversation, user, to, now),
        )
        .await
    }

    async fn read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<ReadCursor, StoreError> {
        self.observe("read_cursor", self.inner.read_cursor(conversation, user))
            .await
    }

    async fn unread_counts(
        &self,
        user: &UserId,
    ) -> Result<HashMap<ConversationId, u64>, StoreError> {
        self.observe("unread_counts", self.inner.unread_counts(user))
            .await
    }

    async fn unread_in_conversation(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<(UserId, u64)>, StoreError> {
        self.observe(
            "unread_in_conversation",
            self.inner.unread_in_conversation(conversation),
        )
        .await
    }

    async fn contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        self.observe("contacts", self.inner.contacts(user)).await
    }
}
