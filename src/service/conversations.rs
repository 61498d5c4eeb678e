//! Conversation use cases: create, list, join, leave, read history.

use tracing::instrument;

use super::{Messaging, ServiceError, ServiceResult};
use crate::auth::User;
use crate::domain::{
    self, Conversation, ConversationId, JoinRequest, ListCursor, ListRequest, NewConversation,
    PageRequest, UserId,
};
use crate::fanout::Audience;
use crate::protocol::{
    ConversationAck, ConversationCreated, ConversationList, History, MemberEvent, ev, rooms,
};
use crate::store::Created;

impl Messaging {
    /// Creates a conversation (or finds the existing one for a pair) and
    /// tells every device of every participant when it is new.
    #[instrument(skip_all, fields(user.id = %user.id, conversation.id = tracing::field::Empty))]
    pub async fn create_conversation(
        &self,
        user: &User,
        new: NewConversation,
    ) -> ServiceResult<(Conversation, Created)> {
        match self.ephemeral().quotas.try_acquire_create(&user.id).await {
            Ok(true) => {}
            Ok(false) => {
                crate::instruments::refusal(crate::instruments::Refusal::CreateRate);
                return Err(ServiceError::RateLimited);
            }
            // Failing open, as for sends: a limiter outage must not stop conversations.
            Err(e) => tracing::warn!(error = %e, "rate limiter unavailable; creation allowed"),
        }
        self.refuse_if_blocked_by(&user.id, &new.participant_ids)
            .await?;
        let (conversation, created) = self
            .store()
            .conversations
            .create_conversation(ConversationId::new_random(), &new, domain::now_millis())
            .await?;
        tracing::Span::current()
            .record("conversation.id", tracing::field::display(conversation.id));
        // Starting (or reopening) a conversation is taking part in it.
        self.take_part(conversation.id, &user.id).await?;
        if created == Created::New {
            self.inner.contacts.forget(&conversation.participant_ids);
            let rooms = conversation
                .participant_ids
                .iter()
                .map(rooms::user)
                .collect();
            // A conversation's creation is the first entry of its log.
            let created = ConversationCreated {
                conversation: conversation.clone(),
                seq: 1,
            };
            self.emit_logged(
                conversation.id,
                Audience::rooms(rooms),
                ev::CONVERSATION_CREATED,
                &created,
            )
            .await;
        }
        Ok((conversation, created))
    }

    /// Records that `user` takes part in `conversation`; the first time, the
    /// participants' contacts are read again on this node (the others'
    /// within a second: `contacts`).
    async fn take_part(&self, conversation: ConversationId, user: &UserId) -> ServiceResult<()> {
        // Taking part is for good (nothing clears it): once known, a join
        // after a reconnect writes nothing, which a reconnect storm needs.
        let key = (conversation, user.clone());
        if self.inner.engaged.get(&key).is_some() {
            return Ok(());
        }
        let first = self
            .store()
            .conversations
            .mark_engaged(conversation, user, domain::now_millis())
            .await?;
        self.inner.engaged.insert(key, ());
        if first {
            let participants = self.store().participants.participants(conversation).await?;
            self.inner.contacts.forget(&participants);
        }
        Ok(())
    }

    /// The caller's conversations, most recent activity first: the archived
    /// ones only when asked for, else the others.
    #[instrument(skip_all, fields(user.id = %user.id))]
    pub async fn list_conversations(
        &self,
        user: &User,
        request: ListRequest,
    ) -> ServiceResult<ConversationList> {
        let ListRequest {
            limit,
            cursor,
            archived,
        } = request;
        // One extra row tells whether another page exists.
        let store = &self.store().conversations;
        let mut conversations = if archived {
            store
                .list_archived_conversations(&user.id, limit + 1, cursor)
                .await?
        } else {
            store
                .list_conversations(&user.id, limit + 1, cursor)
                .await?
        };
        let next_cursor = if conversations.len() > limit as usize {
            conversations.truncate(limit as usize);
            conversations.last().map(|s| {
                let c = &s.conversation;
                ListCursor {
                    activity_at: c.last_message_at.unwrap_or(c.created_at),
                    id: c.id,
                }
                .encode()
            })
        } else {
            None
        };
        Ok(ConversationList {
            conversations,
            next_cursor,
        })
    }

    /// A page of history, for participants only.
    #[instrument(skip_all, fields(user.id = %user.id, conversation.id = %conversation))]
    pub async fn history(
        &self,
        user: &User,
        conversation: ConversationId,
        page: PageRequest,
    ) -> ServiceResult<History> {
        self.require_participant(conversation, &user.id).await?;
        let page = self.store().messages.history(conversation, &page).await?;
        Ok(History::new(conversation, page))
    }

    /// `join-conversation`: the socket joins the room, gets the history (or,
    /// resuming, every log entry after the number it gives) and who is
    /// typing; the others in the room get `user-joined`.
    #[instrument(skip_all, fields(user.id = %user.id, socket.id = socket_id, conversation.id = %conversation))]
    pub async fn join_conversation(
        &self,
        user: &User,
        socket_id: &str,
        conversation: ConversationId,
        request: JoinRequest,
    ) -> ServiceResult<ConversationAck> {
        self.require_participant(conversation, &user.id).await?;
        // Joining is taking part: presence may now flow with the others who did.
        self.take_part(conversation, &user.id).await?;
        // Join before reading: a change committed in between then arrives
        // twice (read and live, with one id and number) rather than never.
        let room = rooms::conversation(conversation);
        self.fanout().join(socket_id, room.clone()).await;
        let read = match request {
            JoinRequest::History(page) => self.send_history(socket_id, conversation, page).await,
            JoinRequest::After(after) => {
                self.replay_to_socket(user, socket_id, conversation, after)
                    .await
            }
        };
        let ack = match read {
            Ok(ack) => ack,
            Err(e) => {
                self.fanout().leave(socket_id, room).await;
                return Err(e);
            }
        };
        let joined = MemberEvent {
            conversation_id: conversation,
            user_id: user.id.clone(),
        };
        self.emit(
            Audience::room(room).except(rooms::socket(socket_id)),
            ev::USER_JOINED,
            &joined,
        )
        .await;
        self.announce_typists_to(socket_id, user, conversation)
            .await;
        Ok(ack)
    }

    /// A history page to the socket; the ack carries the log's latest number
    /// read before the page, so that a client resuming later from it misses
    /// nothing (what came in between is in the page or follows live).
    async fn send_history(
        &self,
        socket_id: &str,
        conversation: ConversationId,
        page: PageRequest,
    ) -> ServiceResult<ConversationAck> {
        let latest = self
            .store()
            .log
            .latest_seqs(&[conversation])
            .await?
            .get(&conversation)
            .copied();
        let page = self.store().messages.history(conversation, &page).await?;
        let history = History::new(conversation, page);
        self.emit_to_socket(socket_id, ev::CONVERSATION_HISTORY, &history);
        let mut ack = ConversationAck::plain(conversation);
        ack.latest_seq = latest;
        Ok(ack)
    }

    /// `leave-conversation`: the socket leaves the room; the others get `user-left`.
    #[instrument(skip_all, fields(user.id = %user.id, socket.id = socket_id, conversation.id = %conversation))]
    pub async fn leave_conversation(
        &self,
        user: &User,
        socket_id: &str,
        conversation: ConversationId,
    ) -> ServiceResult<ConversationAck> {
        self.require_participant(conversation, &user.id).await?;
        let room = rooms::conversation(conversation);
        self.fanout().leave(socket_id, room.clone()).await;
        let left = MemberEvent {
            conversation_id: conversation,
            user_id: user.id.clone(),
        };
        self.emit(
            Audience::room(room).except(rooms::socket(socket_id)),
            ev::USER_LEFT,
            &left,
        )
        .await;
        self.end_typing(conversation, user).await;
        Ok(ConversationAck::plain(conversation))
    }
}
