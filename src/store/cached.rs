//! A `Store` decorator that remembers each conversation's participants.
//!
//! Every send, read, typing event and join asks "is this user a
//! participant?", and every send asks "who are the participants?". A
//! conversation's participants never change once it exists (the contract
//! has no way to add or remove one), so the answer can be cached on every
//! node without invalidation; a future "add participant" must invalidate
//! here (and on the other nodes).
//!
//! Unknown conversation ids are remembered as absent for a short while, so
//! that a client probing random ids costs a memory lookup per probe, not a
//! query; both answers then come from memory, so a cached conversation and
//! a missing one cost the same order of time and timing tells a stranger
//! nothing. (Ids are random and made by the server: nobody can ask about a
//! conversation before it exists, except by guessing its UUID.)

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::time::Instant;

use super::{Created, CursorMove, InsertOutcome, Inserted, MessageInsert, Store, StoreError};
use crate::domain::{
    Conversation, ConversationId, ConversationSummary, ListCursor, Message, MessageId,
    NewConversation, NewMessage, Page, PageRequest, ReadCursor, UserId,
};

/// How long an unknown conversation id reads as absent without a query.
const ABSENT_FOR: Duration = Duration::from_secs(30);
/// Most unknown ids remembered at once.
const MAX_ABSENT: usize = 100_000;

pub struct ParticipantCache {
    inner: Arc<dyn Store>,
    participants: quick_cache::sync::Cache<ConversationId, Arc<[UserId]>>,
    /// Unknown ids, with when they were found missing.
    absent: quick_cache::sync::Cache<ConversationId, Instant>,
}

impl ParticipantCache {
    /// Remembers the participants of up to `capacity` conversations.
    pub fn new(inner: Arc<dyn Store>, capacity: usize) -> Self {
        Self {
            inner,
            participants: quick_cache::sync::Cache::new(capacity),
            absent: quick_cache::sync::Cache::new(capacity.clamp(1, MAX_ABSENT)),
        }
    }

    async fn cached_participants(
        &self,
        conversation: ConversationId,
    ) -> Result<Arc<[UserId]>, StoreError> {
        if let Some(known) = self.participants.get(&conversation) {
            return Ok(known);
        }
        if self
            .absent
            .get(&conversation)
            .is_some_and(|since| since.elapsed() < ABSENT_FOR)
        {
            return Ok(Arc::from([]));
        }
        let loaded: Arc<[UserId]> = self.inner.participants(conversation).await?.into();
        if loaded.is_empty() {
            self.absent.insert(conversation, Instant::now());
        } else {
            self.participants.insert(conversation, loaded.clone());
        }
        Ok(loaded)
    }
}

#[async_trait]
impl Store for ParticipantCache {
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn create_conversation(
        &self,
        id: ConversationId,
        new: &NewConversation,
        now: DateTime<Utc>,
    ) -> Result<(Conversation, Created), StoreError> {
        let (conversation, created) = self.inner.create_conversation(id, new, now).await?;
        self.absent.remove(&conversation.id);
        self.participants
            .insert(conversation.id, conversation.participant_ids.clone().into());
        Ok((conversation, created))
    }

    async fn conversation(&self, id: ConversationId) -> Result<Option<Conversation>, StoreError> {
        self.inner.conversation(id).await
    }

    async fn is_participant(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, StoreError> {
        // Participant lists are sorted (see `Store::participants`).
        Ok(self
            .cached_participants(conversation)
            .await?
            .binary_search(user)
            .is_ok())
    }

    async fn participants(&self, conversation: ConversationId) -> Result<Vec<UserId>, StoreError> {
        Ok(self.cached_participants(conversation).await?.to_vec())
    }

    async fn list_conversations(
        &self,
        user: &UserId,
        limit: u32,
        cursor: Option<ListCursor>,
    ) -> Result<Vec<ConversationSummary>, StoreError> {
        self.inner.list_conversations(user, limit, cursor).await
    }

    async fn insert_message(
        &self,
        id: MessageId,
        sender: &UserId,
        message: &NewMessage,
        now: DateTime<Utc>,
    ) -> Result<(Message, Inserted), StoreError> {
        self.inner.insert_message(id, sender, message, now).await
    }

    async fn insert_messages(
        &self,
        batch: &[MessageInsert],
    ) -> Result<Vec<InsertOutcome>, StoreError> {
        self.inner.insert_messages(batch).await
    }

    async fn history(
        &self,
        conversation: ConversationId,
        page: &PageRequest,
    ) -> Result<Page, StoreError> {
        self.inner.history(conversation, page).await
    }

    async fn message(&self, id: MessageId) -> Result<Option<Message>, StoreError> {
        self.inner.message(id).await
    }

    async fn soft_delete_message(
        &self,
        id: MessageId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        self.inner.soft_delete_message(id, now).await
    }

    async fn latest_message_id(
        &self,
        conversation: ConversationId,
    ) -> Result<Option<MessageId>, StoreError> {
        self.inner.latest_message_id(conversation).await
    }

    async fn advance_read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
        to: MessageId,
        now: DateTime<Utc>,
    ) -> Result<CursorMove, StoreError> {
        self.inner
            .advance_read_cursor(conversation, user, to, now)
            .await
    }

    async fn read_cursor(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<ReadCursor, StoreError> {
        self.inner.read_cursor(conversation, user).await
    }

    async fn unread_counts(
        &self,
        user: &UserId,
    ) -> Result<HashMap<ConversationId, u64>, StoreError> {
        self.inner.unread_counts(user).await
    }

    async fn unread_in_conversation(
        &self,
        conversation: ConversationId,
    ) -> Result<Vec<(UserId, u64)>, StoreError> {
        self.inner.unread_in_conversation(conversation).await
    }

    async fn contacts(&self, user: &UserId) -> Result<Vec<UserId>, StoreError> {
        self.inner.contacts(user).await
    }
}
