//! An `Ephemeral` decorator that makes every call a child span (`shared_state`
//! with `op`) and records its latency and failures — the Redis latency SREs
//! watch in cluster mode. `app` wraps the configured implementation once.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tracing::Instrument as _;

use super::{
    Ephemeral, EphemeralError, MessageCommitted, Presence, Typist, UnixMillis, UnreadChanges,
    UnreadCounts,
};
use crate::domain::{ConversationId, UserId};
use crate::instruments;

pub struct ObservedEphemeral {
    inner: Arc<dyn Ephemeral>,
    system: &'static str,
}

impl ObservedEphemeral {
    /// `system` names the backend in spans (`redis`, `memory`).
    pub fn new(inner: Arc<dyn Ephemeral>, system: &'static str) -> Self {
        Self { inner, system }
    }

    async fn observe<T>(
        &self,
        op: &'static str,
        call: impl Future<Output = Result<T, EphemeralError>>,
    ) -> Result<T, EphemeralError> {
        let span = tracing::info_span!(
            "shared_state",
            db.system = self.system,
            db.operation = op,
            outcome = tracing::field::Empty
        );
        let started = tokio::time::Instant::now();
        let result = call.instrument(span.clone()).await;
        let outcome = if result.is_ok() { "ok" } else { "unavailable" };
        span.record("outcome", outcome);
        instruments::shared_state_call(op, outcome, started.elapsed());
        result
    }
}

#[async_trait]
impl Ephemeral for ObservedEphemeral {
    async fn ping(&self) -> Result<(), EphemeralError> {
        self.observe("ping", self.inner.ping()).await
    }

    async fn try_acquire_send(&self, user: &UserId) -> Result<bool, EphemeralError> {
        self.observe("try_acquire_send", self.inner.try_acquire_send(user))
            .await
    }

    async fn try_acquire_create(&self, user: &UserId) -> Result<bool, EphemeralError> {
        self.observe("try_acquire_create", self.inner.try_acquire_create(user))
            .await
    }

    async fn socket_count(&self, user: &UserId) -> Result<usize, EphemeralError> {
        self.observe("socket_count", self.inner.socket_count(user))
            .await
    }

    async fn socket_connected(
        &self,
        user: &UserId,
        socket_id: &str,
    ) -> Result<bool, EphemeralError> {
        self.observe(
            "socket_connected",
            self.inner.socket_connected(user, socket_id),
        )
        .await
    }

    async fn socket_disconnected(
        &self,
        user: &UserId,
        socket_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, EphemeralError> {
        self.observe(
            "socket_disconnected",
            self.inner.socket_disconnected(user, socket_id, now),
        )
        .await
    }

    async fn presence(
        &self,
        users: &[UserId],
    ) -> Result<HashMap<UserId, Presence>, EphemeralError> {
        self.observe("presence", self.inner.presence(users)).await
    }

    async fn heartbeat(&self, now: UnixMillis, ttl: Duration) -> Result<bool, EphemeralError> {
        self.observe("heartbeat", self.inner.heartbeat(now, ttl))
            .await
    }

    async fn forget_own_sockets(
        &self,
        now: UnixMillis,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, EphemeralError> {
        self.observe("forget_own_sockets", self.inner.forget_own_sockets(now))
            .await
    }

    async fn sweep_dead_nodes(
        &self,
        now: UnixMillis,
    ) -> Result<Vec<(UserId, DateTime<Utc>)>, EphemeralError> {
        self.observe("sweep_dead_nodes", self.inner.sweep_dead_nodes(now))
            .await
    }

    async fn start_typing(
        &self,
        typist: &Typist,
        now: UnixMillis,
        ttl: Duration,
        relay_interval: Duration,
    ) -> Result<bool, EphemeralError> {
        self.observe(
            "start_typing",
            self.inner.start_typing(typist, now, ttl, relay_interval),
        )
        .await
    }

    async fn stop_typing(
        &self,
        conversation: ConversationId,
        user: &UserId,
    ) -> Result<bool, EphemeralError> {
        self.observe("stop_typing", self.inner.stop_typing(conversation, user))
            .await
    }

    async fn typing_conversations_of(
        &self,
        user: &UserId,
    ) -> Result<Vec<ConversationId>, EphemeralError> {
        self.observe(
            "typing_conversations_of",
            self.inner.typing_conversations_of(user),
        )
        .await
    }

    async fn typing_in(
        &self,
        conversation: ConversationId,
        now: UnixMillis,
    ) -> Result<Vec<Typist>, EphemeralError> {
        self.observe("typing_in", self.inner.typing_in(conversation, now))
            .await
    }

    async fn take_expired_typing(&self, now: UnixMillis) -> Result<Vec<Typist>, EphemeralError> {
        self.observe("take_expired_typing", self.inner.take_expired_typing(now))
            .await
    }

    async fn message_committed(
        &self,
        conversation: ConversationId,
        sender: &UserId,
        recipients: &[UserId],
    ) -> Result<MessageCommitted, EphemeralError> {
        self.observe(
            "message_committed",
            self.inner
                .message_committed(conversation, sender, recipients),
        )
        .await
    }

    async fn replace_unread(
        &self,
        user: &UserId,
        counts: &UnreadCounts,
    ) -> Result<(), EphemeralError> {
        self.observe("replace_unread", self.inner.replace_unread(user, counts))
            .await
    }

    async fn set_conversation_unread(
        &self,
        conversation: ConversationId,
        counts: &[(UserId, u64)],
    ) -> Result<UnreadChanges, EphemeralError> {
        self.observe(
            "set_conversation_unread",
            self.inner.set_conversation_unread(conversation, counts),
        )
        .await
    }

    async fn unread(&self, user: &UserId) -> Result<Option<UnreadCounts>, EphemeralError> {
        self.observe("unread", self.inner.unread(user)).await
    }
}
