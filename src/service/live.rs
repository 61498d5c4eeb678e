//! Live state use cases: read receipts and unread counters, typing,
//! presence, and what happens when a socket connects or disconnects.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::Serialize;
use tracing::{instrument, warn};

use super::{Messaging, ServiceError, ServiceResult};
use crate::auth::User;
use crate::domain::{self, ConversationId, MessageId, UserId, format_time};
use crate::ephemeral::{Typist, UnixMillis, UnreadCounts};
use crate::fanout::Audience;
use crate::protocol::{ev, rooms};

/// Ack of `mark-as-read` / `mark-conversation-as-read`; also the
/// `message-read` payload (with `user_id`).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReadReceipt {
    #[schema(value_type = String, format = Uuid)]
    pub conversation_id: ConversationId,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub message_id: Option<MessageId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub user_id: Option<UserId>,
    pub read_at: Option<String>,
}

/// `unread-count-updated`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct UnreadUpdate {
    total_unread: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_id: Option<ConversationId>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conversation_unread: Option<u64>,
}

/// `GET /api/v1/unread`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnreadReport {
    pub total_unread: u64,
    /// Conversation id → unread count, non-zero only.
    #[schema(value_type = Object)]
    pub conversations: HashMap<ConversationId, u64>,
}

/// `get-presence` ack data.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PresenceReport {
    pub online: HashMap<UserId, bool>,
    pub last_seen: HashMap<UserId, Option<String>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct TypingEvent<'a> {
    conversation_id: ConversationId,
    user_id: &'a UserId,
    user_name: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OnlineEvent<'a> {
    user_id: &'a UserId,
    at: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct OfflineEvent<'a> {
    user_id: &'a UserId,
    last_seen_at: String,
}

impl Messaging {
    // ---------------------------------------------------------------- reads

    /// `mark-as-read`: moves the caller's cursor to `message` (never back).
    #[instrument(skip_all, fields(user.id = %user.id, message.id = %message_id, conversation.id = tracing::field::Empty))]
    pub async fn mark_as_read(
        &self,
        user: &User,
        message_id: MessageId,
    ) -> ServiceResult<ReadReceipt> {
        let Some(message) = self.store().message(message_id).await? else {
            return Err(ServiceError::NotFound("message"));
        };
        let conversation = message.conversation_id;
        tracing::Span::current().record("conversation.id", tracing::field::display(conversation));
        if !self.store().is_participant(conversation, &user.id).await? {
            return Err(ServiceError::NotFound("message"));
        }
        self.advance_cursor(user, conversation, message_id).await
    }

    /// `mark-conversation-as-read`: moves the caller's cursor to the latest message.
    #[instrument(skip_all, fields(user.id = %user.id, conversation.id = %conversation))]
    pub async fn mark_conversation_as_read(
        &self,
        user: &User,
        conversation: ConversationId,
    ) -> ServiceResult<ReadReceipt> {
        self.require_participant(conversation, &user.id).await?;
        match self.store().latest_message_id(conversation).await? {
            Some(latest) => self.advance_cursor(user, conversation, latest).await,
            None => {
                let cursor = self.store().read_cursor(conversation, &user.id).await?;
                Ok(ReadReceipt {
                    conversation_id: conversation,
                    message_id: cursor.message_id,
                    user_id: None,
                    read_at: cursor.read_at.as_ref().map(format_time),
                })
            }
        }
    }

    async fn advance_cursor(
        &self,
        user: &User,
        conversation: ConversationId,
        to: MessageId,
    ) -> ServiceResult<ReadReceipt> {
        let moved = self
            .store()
            .advance_read_cursor(conversation, &user.id, to, domain::now_millis())
            .await?;
        let receipt = ReadReceipt {
            conversation_id: conversation,
            message_id: moved.cursor.message_id,
            user_id: None,
            read_at: moved.cursor.read_at.as_ref().map(format_time),
        };
        if moved.moved {
            let event = ReadReceipt {
                user_id: Some(user.id.clone()),
                ..receipt.clone()
            };
            self.emit(
                Audience::room(rooms::conversation(conversation)),
                ev::MESSAGE_READ,
                &event,
            )
            .await;
            self.refresh_unread(&user.id, Some(conversation)).await;
        }
        Ok(receipt)
    }

    // --------------------------------------------------------------- unread

    /// `GET /api/v1/unread`: recounted from the store (the source of truth),
    /// which also heals the maintained counters.
    #[instrument(skip_all, fields(user.id = %user.id))]
    pub async fn unread(&self, user: &User) -> ServiceResult<UnreadReport> {
        let counts = self.store().unread_counts(&user.id).await?;
        if let Err(e) = self.ephemeral().replace_unread(&user.id, &counts).await {
            warn!(error = %e, "unread counters not refreshed");
        }
        let conversations: HashMap<_, _> = counts.into_iter().filter(|(_, n)| *n > 0).collect();
        Ok(UnreadReport {
            total_unread: conversations.values().sum(),
            conversations,
        })
    }

    /// After a message is stored (one ephemeral round trip): the sender's
    /// typing state ends, and each recipient gets one more unread on the
    /// maintained counters (O(1) per recipient); a recipient whose counters
    /// are missing gets them rebuilt from the store, which already holds the
    /// message. All of the recipients' devices are told.
    pub(super) async fn message_committed(
        &self,
        sender: &User,
        conversation: ConversationId,
        recipients: &[UserId],
    ) {
        let effects = match self
            .ephemeral()
            .message_committed(conversation, &sender.id, recipients)
            .await
        {
            Ok(effects) => effects,
            Err(e) => {
                warn!(error = %e, "typing state and unread counters unavailable");
                return;
            }
        };
        if effects.sender_was_typing {
            self.announce_typing(ev::USER_STOPPED_TYPING, &typist(sender, conversation))
                .await;
        }
        let updated = effects.unread;
        for (user, counts) in updated {
            match counts {
                Some(counts) => self.tell_unread(&user, conversation, counts).await,
                None => self.refresh_unread(&user, Some(conversation)).await,
            }
        }
    }

    /// After a delete: recounts the conversation's unread for every
    /// participant but `except` in one store query, sets them on the
    /// maintained counters in one ephemeral round trip, and tells each
    /// participant whose counters are present. The cost does not grow with
    /// the participants' other conversations, nor by a round trip per
    /// participant; missing counters stay missing (rebuilt when next needed).
    pub(super) async fn recount_conversation_unread(
        &self,
        conversation: ConversationId,
        except: &UserId,
    ) {
        let counts = match self.store().unread_in_conversation(conversation).await {
            Ok(mut counts) => {
                counts.retain(|(user, _)| user != except);
                counts
            }
            Err(e) => {
                warn!(error = %e, "unread recount failed");
                return;
            }
        };
        let changes = match self
            .ephemeral()
            .set_conversation_unread(conversation, &counts)
            .await
        {
            Ok(changes) => changes,
            Err(e) => {
                warn!(error = %e, "unread counters not refreshed");
                return;
            }
        };
        for (user, counts) in changes {
            if let Some(counts) = counts {
                self.tell_unread(&user, conversation, counts).await;
            }
        }
    }

    /// Tells all of a user's devices one conversation's count and the total.
    async fn tell_unread(
        &self,
        user: &UserId,
        conversation: ConversationId,
        (in_conversation, total): (u64, u64),
    ) {
        let update = UnreadUpdate {
            total_unread: total,
            conversation_id: Some(conversation),
            conversation_unread: Some(in_conversation),
        };
        self.emit(
            Audience::room(rooms::user(user)),
            ev::UNREAD_COUNT_UPDATED,
            &update,
        )
        .await;
    }

    /// Recounts one user's unread from the store, stores the counters and
    /// tells all the user's devices.
    async fn refresh_unread(&self, user: &UserId, conversation: Option<ConversationId>) {
        let counts = match self.store().unread_counts(user).await {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "unread recount failed");
                return;
            }
        };
        if let Err(e) = self.ephemeral().replace_unread(user, &counts).await {
            warn!(error = %e, "unread counters not refreshed");
        }
        let update = unread_update(&counts, conversation);
        self.emit(
            Audience::room(rooms::user(user)),
            ev::UNREAD_COUNT_UPDATED,
            &update,
        )
        .await;
    }

    /// The user's counters, rebuilt from the store when missing.
    async fn current_unread(&self, user: &UserId) -> ServiceResult<UnreadCounts> {
        match self.ephemeral().unread(user).await {
            Ok(Some(counts)) => return Ok(counts),
            Ok(None) => {}
            Err(e) => warn!(error = %e, "unread counters unavailable; recounting"),
        }
        let counts = self.store().unread_counts(user).await?;
        if let Err(e) = self.ephemeral().replace_unread(user, &counts).await {
            warn!(error = %e, "unread counters not stored");
        }
        Ok(counts)
    }

    // --------------------------------------------------------------- typing

    /// `user-typing`: relayed to the others in the room at most once per
    /// relay interval; the state expires after the typing TTL.
    #[instrument(skip_all, fields(user.id = %user.id, conversation.id = %conversation))]
    pub async fn start_typing(
        &self,
        user: &User,
        conversation: ConversationId,
    ) -> ServiceResult<()> {
        self.require_participant(conversation, &user.id).await?;
        let typing = typist(user, conversation);
        let settings = &self.inner.settings;
        let relay = self
            .ephemeral()
            .start_typing(
                &typing,
                now_unix_millis(),
                settings.typing_ttl,
                settings.rate_limits.typing_relay_interval,
            )
            .await?;
        if relay {
            self.announce_typing(ev::USER_TYPING, &typing).await;
        }
        Ok(())
    }

    /// `user-stopped-typing`.
    #[instrument(skip_all, fields(user.id = %user.id, conversation.id = %conversation))]
    pub async fn stop_typing(
        &self,
        user: &User,
        conversation: ConversationId,
    ) -> ServiceResult<()> {
        self.require_participant(conversation, &user.id).await?;
        self.end_typing(conversation, user).await;
        Ok(())
    }

    /// Ends the user's typing state, announcing the stop once if there was one.
    pub(super) async fn end_typing(&self, conversation: ConversationId, user: &User) {
        match self.ephemeral().stop_typing(conversation, &user.id).await {
            Ok(true) => {
                self.announce_typing(ev::USER_STOPPED_TYPING, &typist(user, conversation))
                    .await;
            }
            Ok(false) => {}
            Err(e) => warn!(error = %e, "typing state unavailable"),
        }
    }

    /// Announces the stop of every typing state expired at `now`. Called
    /// periodically by the node's typing sweeper.
    pub async fn sweep_expired_typing_once(&self, now: UnixMillis) -> ServiceResult<usize> {
        let expired = self.ephemeral().take_expired_typing(now).await?;
        for typist in &expired {
            self.announce_typing(ev::USER_STOPPED_TYPING, typist).await;
        }
        Ok(expired.len())
    }

    async fn announce_typing(&self, event: &'static str, typist: &Typist) {
        let payload = TypingEvent {
            conversation_id: typist.conversation_id,
            user_id: &typist.user_id,
            user_name: &typist.user_name,
        };
        let audience = Audience::room(rooms::conversation(typist.conversation_id))
            .except(rooms::user(&typist.user_id));
        self.emit(audience, event, &payload).await;
    }

    /// Tells a socket that just joined who is typing in the conversation.
    pub(super) async fn announce_typists_to(
        &self,
        socket_id: &str,
        user: &User,
        conversation: ConversationId,
    ) {
        let typists = match self
            .ephemeral()
            .typing_in(conversation, now_unix_millis())
            .await
        {
            Ok(t) => t,
            Err(e) => {
                warn!(error = %e, "typing state unavailable");
                return;
            }
        };
        for t in typists.iter().filter(|t| t.user_id != user.id) {
            let payload = TypingEvent {
                conversation_id: conversation,
                user_id: &t.user_id,
                user_name: &t.user_name,
            };
            self.emit_to_socket(socket_id, ev::USER_TYPING, &payload);
        }
    }

    // ------------------------------------------------------------- presence

    /// `get-presence`: answers only for users sharing a conversation with the
    /// caller; everyone else reads as offline with no last-seen time.
    #[instrument(skip_all, fields(user.id = %user.id))]
    pub async fn presence(&self, user: &User, ids: Vec<UserId>) -> ServiceResult<PresenceReport> {
        let contacts = self
            .inner
            .contacts
            .visible(self.store(), &user.id, &ids)
            .await?;
        let visible: Vec<UserId> = ids
            .iter()
            .filter(|id| contacts.contains(*id))
            .cloned()
            .collect();
        let known = self.ephemeral().presence(&visible).await?;
        let mut report = PresenceReport {
            online: HashMap::new(),
            last_seen: HashMap::new(),
        };
        for id in ids {
            let p = known.get(&id);
            report
                .online
                .insert(id.clone(), p.is_some_and(|p| p.online));
            report
                .last_seen
                .insert(id, p.and_then(|p| p.last_seen).as_ref().map(format_time));
        }
        Ok(report)
    }

    /// A socket of `user` connected: presence, `user-online` to contacts when
    /// it is the first device, and the unread totals to that socket.
    #[instrument(skip_all, fields(user.id = %user.id, socket.id = socket_id))]
    pub async fn socket_connected(&self, user: &User, socket_id: &str) -> ServiceResult<()> {
        let first = self
            .ephemeral()
            .socket_connected(&user.id, socket_id)
            .await?;
        if first {
            let event = OnlineEvent {
                user_id: &user.id,
                at: format_time(&domain::now_millis()),
            };
            self.tell_contacts(&user.id, ev::USER_ONLINE, &event).await;
        }
        let counts = self.current_unread(&user.id).await?;
        self.emit_to_socket(
            socket_id,
            ev::UNREAD_COUNT_UPDATED,
            &unread_update(&counts, None),
        );
        Ok(())
    }

    /// A socket of `user` disconnected: when it was the last device, typing
    /// states end and contacts get `user-offline`. When shared state cannot
    /// be told, the disconnection is kept and told again after the next
    /// successful heartbeat (otherwise the user would read online until this
    /// node dies).
    #[instrument(skip_all, fields(user.id = %user.id, socket.id = socket_id))]
    pub async fn socket_disconnected(&self, user: &User, socket_id: &str) -> ServiceResult<()> {
        let now: DateTime<Utc> = domain::now_millis();
        match self
            .ephemeral()
            .socket_disconnected(&user.id, socket_id, now)
            .await
        {
            Ok(Some(last_seen)) => self.went_offline(user, last_seen).await,
            Ok(None) => Ok(()),
            Err(e) => {
                self.inner
                    .pending_disconnects
                    .keep(user.clone(), socket_id.to_owned());
                Err(e.into())
            }
        }
    }

    /// A disconnection that failed to be recorded, again. The first attempt
    /// may have reached Redis and only its answer been lost: then the socket
    /// is gone already, and if the user has no socket left, nobody has
    /// announced the offline yet.
    async fn retry_disconnection(&self, user: &User, socket_id: &str) -> ServiceResult<()> {
        let now: DateTime<Utc> = domain::now_millis();
        let recorded = self
            .ephemeral()
            .socket_disconnected(&user.id, socket_id, now)
            .await;
        match recorded {
            Ok(Some(last_seen)) => self.went_offline(user, last_seen).await,
            Ok(None) if self.ephemeral().socket_count(&user.id).await? == 0 => {
                let last_seen = self
                    .ephemeral()
                    .presence(std::slice::from_ref(&user.id))
                    .await?
                    .get(&user.id)
                    .and_then(|p| p.last_seen)
                    .unwrap_or(now);
                self.went_offline(user, last_seen).await
            }
            Ok(None) => Ok(()),
            Err(e) => {
                self.inner
                    .pending_disconnects
                    .keep(user.clone(), socket_id.to_owned());
                Err(e.into())
            }
        }
    }

    /// The user's last device is gone: typing ends, contacts are told.
    async fn went_offline(&self, user: &User, last_seen: DateTime<Utc>) -> ServiceResult<()> {
        for conversation in self.ephemeral().typing_conversations_of(&user.id).await? {
            self.end_typing(conversation, user).await;
        }
        let event = OfflineEvent {
            user_id: &user.id,
            last_seen_at: format_time(&last_seen),
        };
        self.tell_contacts(&user.id, ev::USER_OFFLINE, &event).await;
        Ok(())
    }

    /// One round of cluster membership: renew this node's heartbeat (valid
    /// for `node_ttl`), then sweep nodes whose heartbeat lapsed and announce
    /// `user-offline` for every user they leave without a device. Each such
    /// user is claimed by exactly one node, so each offline is announced once.
    #[instrument(skip_all)]
    ///
    /// Shared state that lost this node (swept after an outage longer than
    /// the node TTL, or a Redis that restarted empty) gets its live sockets
    /// again, and disconnections that could not be recorded are retried.
    pub async fn cluster_membership_once(
        &self,
        node_ttl: std::time::Duration,
    ) -> ServiceResult<usize> {
        let now = now_unix_millis();
        if self.ephemeral().heartbeat(now, node_ttl).await? {
            self.record_local_sockets_again().await;
        }
        for (user, socket_id) in self.inner.pending_disconnects.take() {
            if let Err(e) = self.retry_disconnection(&user, &socket_id).await {
                tracing::debug!(error = %e, "disconnection still not recorded; kept for later");
            }
        }
        let gone = self.ephemeral().sweep_dead_nodes(now).await?;
        self.announce_offline(&gone).await;
        if !gone.is_empty() {
            tracing::info!(users = gone.len(), "users of dead nodes went offline");
        }
        Ok(gone.len())
    }

    /// Before serving: forgets the sockets an earlier process with this node
    /// id left in shared state (a restarted pod keeps its name) and
    /// announces the users it leaves without a device.
    #[instrument(skip_all)]
    pub async fn forget_previous_life(&self) -> ServiceResult<usize> {
        let gone = self
            .ephemeral()
            .forget_own_sockets(now_unix_millis())
            .await?;
        self.announce_offline(&gone).await;
        if !gone.is_empty() {
            tracing::info!(
                users = gone.len(),
                "users left by this node's previous process went offline"
            );
        }
        Ok(gone.len())
    }

    async fn announce_offline(&self, gone: &[(UserId, DateTime<Utc>)]) {
        for (user, last_seen) in gone {
            let event = OfflineEvent {
                user_id: user,
                last_seen_at: format_time(last_seen),
            };
            self.tell_contacts(user, ev::USER_OFFLINE, &event).await;
        }
    }

    /// Records every socket of this node in shared state again; users who
    /// read offline meanwhile are announced online.
    async fn record_local_sockets_again(&self) {
        let sockets = self.fanout().local_sockets();
        let mut recorded = 0;
        for (socket_id, user) in &sockets {
            match self.ephemeral().socket_connected(&user.id, socket_id).await {
                Ok(first) => {
                    recorded += 1;
                    if first {
                        let event = OnlineEvent {
                            user_id: &user.id,
                            at: format_time(&domain::now_millis()),
                        };
                        self.tell_contacts(&user.id, ev::USER_ONLINE, &event).await;
                    }
                }
                Err(e) => {
                    warn!(error = %e, "recording this node's sockets again failed; retried at the next registration");
                    break;
                }
            }
        }
        if recorded > 0 {
            tracing::info!(
                sockets = recorded,
                "this node's sockets recorded again in shared state"
            );
        }
    }

    async fn tell_contacts<T: Serialize>(&self, user: &UserId, event: &'static str, payload: &T) {
        match self.store().contacts(user).await {
            Ok(contacts) if !contacts.is_empty() => {
                let rooms = contacts.iter().map(rooms::user).collect();
                self.emit(Audience::rooms(rooms), event, payload).await;
            }
            Ok(_) => {}
            Err(e) => {
                warn!(error = %e, event, "contacts unavailable; presence change not announced")
            }
        }
    }
}

fn unread_update(counts: &UnreadCounts, conversation: Option<ConversationId>) -> UnreadUpdate {
    UnreadUpdate {
        total_unread: counts.values().sum(),
        conversation_id: conversation,
        conversation_unread: conversation.map(|c| counts.get(&c).copied().unwrap_or(0)),
    }
}

/// The wall clock in the unit the ephemeral state keeps time in.
pub fn now_unix_millis() -> UnixMillis {
    Utc::now().timestamp_millis()
}

/// How `user` appears as a typist in `conversation`.
fn typist(user: &User, conversation: ConversationId) -> Typist {
    Typist {
        conversation_id: conversation,
        user_id: user.id.clone(),
        user_name: user.display_name().to_owned(),
    }
}
