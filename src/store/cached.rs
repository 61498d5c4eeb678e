//! A [`Participants`] decorator that remembers each conversation's participants.
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
//! conversation before it exists, except by guessing its UUID, so a new
//! conversation is loaded here the first time a node is asked about it.)

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::time::Instant;

use super::{Participants, StoreError};
use crate::domain::{ConversationId, UserId};

/// How long an unknown conversation id reads as absent without a query.
const ABSENT_FOR: Duration = Duration::from_secs(30);
/// Most unknown ids remembered at once.
const MAX_ABSENT: usize = 100_000;

pub struct ParticipantCache {
    inner: Arc<dyn Participants>,
    participants: quick_cache::sync::Cache<ConversationId, Arc<[UserId]>>,
    /// Unknown ids, with when they were found missing.
    absent: quick_cache::sync::Cache<ConversationId, Instant>,
}

impl ParticipantCache {
    /// Remembers the participants of up to `capacity` conversations.
    pub fn new(inner: Arc<dyn Participants>, capacity: usize) -> Self {
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
impl Participants for ParticipantCache {
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
}
